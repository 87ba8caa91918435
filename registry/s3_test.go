package registry_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestS3Storage pushes and pulls through a replica on a real S3 server
// (versitygw), then stops the server: /_ping must turn 503 naming storage,
// and recover when S3 is back.
func TestS3Storage(t *testing.T) {
	if testing.Short() {
		t.Skip("S3 test: skipped with -short")
	}
	s3 := registrytest.StartS3(t)
	o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
	o.Storage = s3.Storage()
	r := registrytest.Start(t, o)
	tok := r.Token(t, admin, adminPW, "repository:admin/s3:push,pull")
	layer := []byte(strings.Repeat("stored in S3 ", 100000)) // 1.3 MB
	img, st := r.PushImage(t, tok, "admin/s3", "v1", layer)
	if st != 201 {
		t.Fatalf("push to S3 storage: %d", st)
	}
	st, _, body := r.Do(t, "GET", "/v2/admin/s3/blobs/"+registrytest.Digest(layer), tok, nil, nil)
	if st != 200 || string(body) != string(layer) {
		t.Fatalf("pull from S3 storage: %d, %d bytes", st, len(body))
	}
	var settings map[string]any
	r.API(t, admin, adminPW, "GET", "/api/v0/meta/settings", nil, &settings)
	if b, _ := json.Marshal(settings); strings.Contains(string(b), s3.Secret) {
		t.Fatalf("the settings API shows the S3 secret key: %s", b)
	}

	s3.Stop()
	health := waitHealth(t, r, http.StatusServiceUnavailable, 15*time.Second)
	if !strings.Contains(health["Error"].(string), "storage") {
		t.Fatalf("/_ping with S3 down does not name storage: %v", health)
	}
	t.Logf("S3 down: /_ping says %q", health["Error"])
	s3.Start()
	waitHealth(t, r, http.StatusOK, 15*time.Second)
	st, _, body = r.Do(t, "GET", "/v2/admin/s3/manifests/v1", tok, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	if st != 200 || string(body) != string(img.Manifest) {
		t.Fatalf("manifest after S3 came back: %d", st)
	}
}

func waitHealth(t *testing.T, r *registrytest.Replica, want int, within time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		start := time.Now()
		resp, err := r.Client.Get(r.URL + "/_ping")
		if err != nil {
			t.Fatal(err)
		}
		var h map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("/_ping took %v; it must answer within ~2 s", took)
		}
		if resp.StatusCode == want {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("/_ping stayed %d (%v), want %d", resp.StatusCode, h, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
