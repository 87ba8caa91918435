package registry_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestTracingOTLP: with an OTLP endpoint set, request spans named by route
// (never by repository) reach the collector, with Distribution's own spans;
// without one (the default), nothing is sent.
func TestTracingOTLP(t *testing.T) {
	var mu sync.Mutex
	spans := map[string]int{}
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			t.Errorf("collector got %s %s (%d bytes) that is not an OTLP trace export", r.Method, r.URL.Path, len(body))
			return
		}
		mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					spans[s.Name]++
				}
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(nil)
	}))
	defer collector.Close()

	o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
	o.OTLPEndpoint = collector.URL
	r := registrytest.Start(t, o)
	tok := r.Token(t, registrytest.AdminUser, registrytest.AdminPassword, "repository:admin/traced:push,pull")
	if _, st := r.PushImage(t, tok, "admin/traced", "v1", []byte("traced layer")); st != 201 {
		t.Fatalf("push: %d", st)
	}
	r.Stop() // flushes the spans
	mu.Lock()
	defer mu.Unlock()
	if spans["PUT v2_manifest"] != 1 || spans["POST v2_blob_upload"] != 2 {
		t.Errorf("request spans: %v", spans)
	}
	for name := range spans {
		if strings.Contains(name, "admin/traced") {
			t.Errorf("span named after a repository: %q", name)
		}
	}
	storage := 0
	for _, n := range []string{"GetContent", "PutContent", "Writer", "Stat", "Move"} {
		storage += spans[n]
	}
	if storage == 0 {
		t.Errorf("no storage driver spans from Distribution: %v", spans)
	}
	t.Logf("%d span names, e.g. %v", len(spans), spans)
}
