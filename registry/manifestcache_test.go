package registry_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestManifestCache: manifest pulls answered from memory carry the bytes
// and headers Distribution sends (compared with a conditional request,
// which Distribution answers); a push or delete through the replica is
// seen at once; a tag moved behind the replica's back (another replica, as
// shared storage shows it) is served stale for at most the cache's 1 s;
// a client that does not accept the type, and one without a pull token,
// get what Distribution gives them. It also times cached pulls against
// Distribution's.
func TestManifestCache(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	tok := r.Token(t, admin, adminPW, "repository:admin/cached:push,pull,delete")
	accept := map[string]string{"Accept": ociManifest + ", application/vnd.oci.image.index.v1+json"}
	get := func(ref string, extra map[string]string) (int, http.Header, []byte) {
		h := map[string]string{}
		for k, v := range accept {
			h[k] = v
		}
		for k, v := range extra {
			h[k] = v
		}
		return r.Do(t, "GET", "/v2/admin/cached/manifests/"+ref, tok, nil, h)
	}
	one, st := r.PushImage(t, tok, "admin/cached", "v1", []byte("first image"))
	if st != 201 {
		t.Fatalf("push: %d", st)
	}
	for _, ref := range []string{"v1", one.ManifestDigest} {
		st, ours, body := get(ref, nil)
		if st != 200 || string(body) != string(one.Manifest) {
			t.Fatalf("GET %s: %d %q", ref, st, body)
		}
		st, dist, _ := get(ref, map[string]string{"If-None-Match": `"sha256:0"`})
		if st != 200 {
			t.Fatalf("GET %s through Distribution: %d", ref, st)
		}
		for _, h := range []string{"Content-Type", "Content-Length", "Docker-Content-Digest", "Etag", "Docker-Distribution-Api-Version"} {
			if ours.Get(h) != dist.Get(h) || ours.Get(h) == "" {
				t.Errorf("GET %s header %s: %q, Distribution sends %q", ref, h, ours.Get(h), dist.Get(h))
			}
		}
		if st, h, body := r.Do(t, "HEAD", "/v2/admin/cached/manifests/"+ref, tok, nil, accept); st != 200 || len(body) != 0 || h.Get("Content-Length") != ours.Get("Content-Length") {
			t.Errorf("HEAD %s: %d, %d bytes, length %q", ref, st, len(body), h.Get("Content-Length"))
		}
	}

	// A push through this replica is seen at once.
	two, st := r.PushImage(t, tok, "admin/cached", "v1", []byte("second image"))
	if st != 201 {
		t.Fatalf("push: %d", st)
	}
	if _, h, _ := get("v1", nil); h.Get("Docker-Content-Digest") != two.ManifestDigest {
		t.Fatalf("v1 right after its push here: %s, want %s", h.Get("Docker-Content-Digest"), two.ManifestDigest)
	}
	// So is a delete.
	if st, _, _ := r.Do(t, "DELETE", "/v2/admin/cached/manifests/"+one.ManifestDigest, tok, nil, nil); st != 202 {
		t.Fatalf("delete: %d", st)
	}
	if st, _, _ := get(one.ManifestDigest, nil); st != 404 {
		t.Errorf("a manifest right after its deletion here: %d, want 404", st)
	}

	// Another replica moves the tag (in the shared storage): stale for at
	// most a second.
	three, st := r.PushImage(t, tok, "admin/cached", "v3", []byte("third image"))
	if st != 201 {
		t.Fatalf("push: %d", st)
	}
	get("v1", nil) // cached again
	link := filepath.Join(r.Opts.DataDir, "registry/docker/registry/v2/repositories/admin/cached/_manifests/tags/v1/current/link")
	if err := os.WriteFile(link, []byte(three.ManifestDigest), 0o644); err != nil {
		t.Fatal(err)
	}
	moved := time.Now()
	for {
		_, h, _ := get("v1", nil)
		if h.Get("Docker-Content-Digest") == three.ManifestDigest {
			break
		}
		if time.Since(moved) > 1500*time.Millisecond { // the TTL, and the requests of a loaded machine
			t.Fatalf("v1 moved behind the replica's back still answers %s after %v", h.Get("Docker-Content-Digest"), time.Since(moved))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("a tag moved by another replica was seen after %v", time.Since(moved).Round(time.Millisecond))

	// No accepted type: Distribution's answer, whatever it is.
	noAccept := func(extra map[string]string) int {
		st, _, _ := r.Do(t, "GET", "/v2/admin/cached/manifests/v3", tok, nil, extra)
		return st
	}
	if a, b := noAccept(nil), noAccept(map[string]string{"If-None-Match": `"sha256:0"`}); a != b {
		t.Errorf("without Accept: %d, Distribution answers %d", a, b)
	}
	if st, h, _ := r.Do(t, "GET", "/v2/admin/cached/manifests/v3", "", nil, accept); st != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "admin/cached:pull") {
		t.Errorf("anonymous: %d %q", st, h.Get("WWW-Authenticate"))
	}

	// Cached pulls against Distribution's, interleaved.
	const n = 300
	var cached, dist time.Duration
	for range n {
		start := time.Now()
		get("v3", nil)
		cached += time.Since(start)
		start = time.Now()
		get("v3", map[string]string{"If-None-Match": `"sha256:0"`})
		dist += time.Since(start)
	}
	t.Logf("manifest GET, mean of %d: %v from memory, %v through Distribution (%.2fx)", n, cached/n, dist/n, float64(dist)/float64(cached))
}
