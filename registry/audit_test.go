package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// listEvents pages through GET /api/v0/events with pageSize and returns
// every event, checking that pages neither overlap nor skip.
func listEvents(t *testing.T, r *registrytest.Replica, query string, pageSize int) []meta.Event {
	t.Helper()
	var all []meta.Event
	seen := map[string]bool{}
	start := ""
	for page := 0; page < 1000; page++ {
		path := fmt.Sprintf("/api/v0/events?pageSize=%d&pageStart=%s&%s", pageSize, start, query)
		st, h, body := r.Do(t, "GET", path, r.Token(t, registrytest.AdminUser, registrytest.AdminPassword, "api:v0:*"), nil, nil)
		if st != 200 {
			t.Fatalf("GET %s: %d %s", path, st, body)
		}
		var out struct{ Events []meta.Event }
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Events) > pageSize {
			t.Fatalf("page of %d events, asked for %d", len(out.Events), pageSize)
		}
		for _, e := range out.Events {
			if seen[e.ID] {
				t.Fatalf("event %s on two pages", e.ID)
			}
			seen[e.ID] = true
			all = append(all, e)
		}
		if start = h.Get("X-Next-Page-Start"); start == "" {
			return all
		}
	}
	t.Fatal("events: more than 1000 pages")
	return nil
}

// TestAuditTrail: every mutating admin call and every push, delete and
// pull of a private repository has its record, with the right user,
// address and result, through GET /api/v0/events and as JSON in the log;
// pulls of a public repository have none; retention trims the oldest.
func TestAuditTrail(t *testing.T) {
	o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
	o.LogLevel = "info"
	o.Log.SetLevel(logrus.InfoLevel)
	o.Log.SetFormatter(&logrus.JSONFormatter{})
	logs := logtest.NewLocal(o.Log)
	r := registrytest.Start(t, o)

	registrytest.SetupAccounts(t, r, registrytest.AdminUser, registrytest.AdminPassword) // 12 admin API changes by admin
	apiCalls := 12
	if st := r.API(t, "alice", "alice-password", "POST", "/api/v0/repositories/alice", map[string]any{"name": "own", "visibility": "private"}, nil); st != 201 {
		t.Fatalf("alice creates a repository: %d", st)
	}
	if st := r.API(t, "bob", "bob-password", "POST", "/api/v0/accounts", map[string]any{"name": "mallory", "password": "mallory-password"}, nil); st != 403 {
		t.Fatalf("bob creates an account: %d, want 403", st)
	}
	apiCalls += 2
	alice := r.Token(t, "alice", "alice-password", "repository:acme/app:push,pull")
	img, st := r.PushImage(t, alice, "acme/app", "v1", []byte("audited layer"))
	if st != 201 {
		t.Fatalf("push: %d", st)
	}
	if _, st := r.PushImage(t, r.Token(t, registrytest.AdminUser, registrytest.AdminPassword, "repository:acme/pub:push,pull"), "acme/pub", "v1", []byte("public layer")); st != 201 {
		t.Fatalf("push acme/pub: %d", st)
	}
	bob := r.Token(t, "bob", "bob-password", "repository:acme/app:pull")
	for i := 0; i < 3; i++ {
		if st, _, _ := r.Do(t, "GET", "/v2/acme/app/manifests/v1", bob, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}); st != 200 {
			t.Fatalf("bob pulls: %d", st)
		}
	}
	anon := r.Token(t, "", "", "repository:acme/pub:pull")
	if st, _, _ := r.Do(t, "GET", "/v2/acme/pub/manifests/v1", anon, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}); st != 200 {
		t.Fatalf("anonymous pull of the public repository: %d", st)
	}
	admin := r.Token(t, registrytest.AdminUser, registrytest.AdminPassword, "repository:acme/app:delete")
	if st, _, b := r.Do(t, "DELETE", "/v2/acme/app/manifests/"+img.ManifestDigest, admin, nil, nil); st != 202 {
		t.Fatalf("delete: %d %s", st, b)
	}

	// Records are written off the request path: wait for the last one.
	var evs []meta.Event
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs = listEvents(t, r, "", 4)
		if len(evs) > 0 && evs[0].Type == "DELETE" && evs[0].Target.Type == "registry" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	count := func(pred func(meta.Event) bool) (n int) {
		for _, e := range evs {
			if pred(e) {
				n++
			}
		}
		return n
	}
	if n := count(func(e meta.Event) bool { return e.Target.Type == "api" }); n != apiCalls {
		t.Errorf("%d admin API records, want %d", n, apiCalls)
		for _, e := range evs {
			t.Logf("%s %s %s %d", e.Actor, e.Type, e.Target.Name, e.Status)
		}
	}
	if n := count(func(e meta.Event) bool { return e.Target.Type == "api" && e.Actor == "admin" && e.Success }); n != 12 {
		t.Errorf("%d successful admin API records by admin, want 12", n)
	}
	if n := count(func(e meta.Event) bool {
		return e.Actor == "bob" && e.Type == "CREATE" && e.Status == 403 && !e.Success && e.Object.Type == "accounts"
	}); n != 1 {
		t.Errorf("bob's refused account creation: %d records, want 1", n)
	}
	if n := count(func(e meta.Event) bool {
		return e.Actor == "alice" && e.Type == "CREATE" && e.Object.Type == "tag" && e.Object.Name == "acme/app:v1" &&
			e.Object.ID == img.ManifestDigest && e.Repository == "acme/app" && e.Status == 201
	}); n != 1 {
		t.Errorf("alice's push of acme/app:v1: %d records, want 1", n)
	}
	if n := count(func(e meta.Event) bool { return e.Actor == "bob" && e.Type == "GET" && e.Object.Name == "acme/app:v1" }); n != 3 {
		t.Errorf("bob's pulls of the private acme/app: %d records, want 3", n)
	}
	if n := count(func(e meta.Event) bool { return e.Type == "GET" && e.Repository == "acme/pub" }); n != 0 {
		t.Errorf("pulls of the public acme/pub: %d records, want none", n)
	}
	if n := count(func(e meta.Event) bool {
		return e.Actor == "admin" && e.Type == "DELETE" && e.Object.Type == "manifest" && e.Object.ID == img.ManifestDigest && e.Status == 202
	}); n != 1 {
		t.Errorf("admin's delete: %d records, want 1", n)
	}
	for _, e := range evs {
		if e.Address != "127.0.0.1" || e.Replica != o.ReplicaID || e.PublishedAt.IsZero() {
			t.Errorf("record %+v: want address 127.0.0.1, replica %s and a time", e, o.ReplicaID)
			break
		}
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].ID > evs[i-1].ID {
			t.Fatalf("events not newest first at %d", i)
		}
	}

	// Filters, and the per-repository list.
	if got := listEvents(t, r, "actorId=bob&eventType=GET", 2); len(got) != 3 {
		t.Errorf("actorId=bob&eventType=GET: %d records, want 3", len(got))
	}
	var repoEvs struct{ Events []meta.Event }
	if st := r.API(t, registrytest.AdminUser, registrytest.AdminPassword, "GET", "/api/v0/repositories/acme/app/events?excludePull=true&pageSize=100", nil, &repoEvs); st != 200 {
		t.Fatalf("repository events: %d", st)
	}
	for _, e := range repoEvs.Events {
		if e.Repository != "acme/app" || e.Type == "GET" {
			t.Errorf("acme/app events with excludePull: %+v", e)
		}
	}
	if len(repoEvs.Events) < 2 {
		t.Errorf("acme/app events: %d, want the push and the delete at least", len(repoEvs.Events))
	}
	if st := r.API(t, "alice", "alice-password", "GET", "/api/v0/events", nil, nil); st != 403 {
		t.Errorf("alice lists events: %d, want 403", st)
	}
	if st := r.API(t, registrytest.AdminUser, registrytest.AdminPassword, "GET", "/api/v0/events?publishedAfter=yesterday", nil, nil); st != 400 {
		t.Errorf("bad publishedAfter: %d, want 400", st)
	}

	// The log has each record as JSON.
	logged := 0
	for _, e := range logs.AllEntries() {
		if e.Message != "audit" {
			continue
		}
		raw, ok := e.Data["audit"].(json.RawMessage)
		var ev meta.Event
		if !ok || json.Unmarshal(raw, &ev) != nil || ev.ID == "" {
			t.Fatalf("audit log entry is not a JSON record: %#v", e.Data["audit"])
		}
		logged++
	}
	if logged != len(evs) {
		t.Errorf("%d audit records logged, %d stored", logged, len(evs))
	}

	// Retention: the oldest beyond the limit go.
	n, err := r.MetaStore().TrimEvents(context.Background(), time.Now(), 0, 5)
	if err != nil || int(n) != len(evs)-5 {
		t.Fatalf("trim to 5: deleted %d (%v), want %d", n, err, len(evs)-5)
	}
	left := listEvents(t, r, "", 100)
	if len(left) != 5 || left[0].ID != evs[0].ID {
		t.Errorf("after trimming: %d records, newest %v; want the 5 newest", len(left), left)
	}
	n, err = r.MetaStore().TrimEvents(context.Background(), time.Now().Add(time.Hour), time.Minute, 0)
	if err != nil || n < 5 {
		t.Errorf("trim by age: deleted %d (%v), want all", n, err)
	}
	// The access log names the user.
	for _, e := range logs.AllEntries() {
		if e.Message == "request" && e.Data["method"] == "DELETE" && strings.HasPrefix(e.Data["path"].(string), "/v2/acme/app/manifests/") {
			if e.Data["user"] != "admin" {
				t.Errorf("access log of the delete: user %v, want admin", e.Data["user"])
			}
		}
	}
}
