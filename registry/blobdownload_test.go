package registry_test

import (
	"crypto/rand"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestBlobDownload: a whole-blob GET is answered by dtr's own download path
// with the headers and bytes Distribution sends (compared with a request
// Distribution answers: a conditional one); ranges, HEAD, a blob the
// repository does not link, and requests without the right token get what
// Distribution gives them.
func TestBlobDownload(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	tok := r.Token(t, admin, adminPW, "repository:admin/dl:push,pull", "repository:admin/other:push,pull")
	blob := make([]byte, 3<<20+17)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	d, st := r.PushBlob(t, tok, "admin/dl", blob)
	if st != 201 {
		t.Fatalf("push: %d", st)
	}
	if _, st := r.PushBlob(t, tok, "admin/other", []byte("another blob")); st != 201 {
		t.Fatalf("push: %d", st)
	}
	path := "/v2/admin/dl/blobs/" + d

	st, ours, body := r.Do(t, "GET", path, tok, nil, nil)
	if st != 200 || string(body) != string(blob) {
		t.Fatalf("GET: %d, %d bytes (want %d)", st, len(body), len(blob))
	}
	// If-None-Match with another ETag: Distribution serves the whole blob.
	st, dist, body := r.Do(t, "GET", path, tok, nil, map[string]string{"If-None-Match": `"sha256:0"`})
	if st != 200 || string(body) != string(blob) {
		t.Fatalf("GET through Distribution: %d, %d bytes", st, len(body))
	}
	for _, h := range []string{"Content-Type", "Content-Length", "Docker-Content-Digest", "Etag", "Cache-Control", "Accept-Ranges", "Docker-Distribution-Api-Version"} {
		if ours.Get(h) != dist.Get(h) || ours.Get(h) == "" {
			t.Errorf("header %s: %q, Distribution sends %q", h, ours.Get(h), dist.Get(h))
		}
	}
	if st, _, _ := r.Do(t, "GET", path, tok, nil, map[string]string{"If-None-Match": `"` + d + `"`}); st != 304 {
		t.Errorf("GET If-None-Match its own ETag: %d, want 304", st)
	}
	st, h, body := r.Do(t, "GET", path, tok, nil, map[string]string{"Range": "bytes=10-19"})
	if st != 206 || string(body) != string(blob[10:20]) || h.Get("Content-Range") == "" {
		t.Errorf("range: %d %q", st, h.Get("Content-Range"))
	}
	if st, h, _ := r.Do(t, "HEAD", path, tok, nil, nil); st != 200 || h.Get("Content-Length") != ours.Get("Content-Length") {
		t.Errorf("HEAD: %d, length %q", st, h.Get("Content-Length"))
	}
	// The blob is in storage, but admin/other never linked it.
	if st, _, body := r.Do(t, "GET", "/v2/admin/other/blobs/"+d, tok, nil, nil); st != 404 || !strings.Contains(string(body), "BLOB_UNKNOWN") {
		t.Errorf("a blob the repository does not link: %d %s", st, body)
	}
	if st, h, _ := r.Do(t, "GET", path, "", nil, nil); st != 401 || !strings.Contains(h.Get("WWW-Authenticate"), `scope="repository:admin/dl:pull"`) {
		t.Errorf("anonymous: %d %q", st, h.Get("WWW-Authenticate"))
	}
	otherOnly := r.Token(t, admin, adminPW, "repository:admin/other:pull")
	if st, h, _ := r.Do(t, "GET", path, otherOnly, nil, nil); st != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Errorf("a token for another repository: %d %q", st, h.Get("WWW-Authenticate"))
	}
}

// TestBlobDownloadMemory: a download allocates a small fraction of what
// Distribution's reader does (a 4 MiB buffer each), measured over 20
// downloads of a 1 MiB blob each way in this process.
func TestBlobDownloadMemory(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	tok := r.Token(t, admin, adminPW, "repository:admin/mem:push,pull")
	blob := make([]byte, 1<<20)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	d, st := r.PushBlob(t, tok, "admin/mem", blob)
	if st != 201 {
		t.Fatalf("push: %d", st)
	}
	perDownload := func(header map[string]string) uint64 {
		const n = 20
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		buf := make([]byte, 32<<10)
		for range n {
			req, _ := http.NewRequest("GET", r.URL+"/v2/admin/mem/blobs/"+d, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			for k, v := range header {
				req.Header.Set(k, v)
			}
			resp, err := r.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := io.CopyBuffer(io.Discard, resp.Body, buf); err != nil || n != int64(len(blob)) || resp.StatusCode != 200 {
				t.Fatalf("download: %d, %d bytes, %v", resp.StatusCode, n, err)
			}
			resp.Body.Close()
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / n
	}
	dist := perDownload(map[string]string{"If-None-Match": `"sha256:0"`})
	ours := perDownload(nil)
	t.Logf("allocated per 1 MiB download: %d KiB by dtr's path, %d KiB through Distribution's reader", ours>>10, dist>>10)
	if ours > 1<<20 || dist < 4<<20 {
		t.Errorf("allocated per download: %d KiB by dtr's path (want under 1024), %d KiB by Distribution's (expected 4 MiB or more)", ours>>10, dist>>10)
	}
}
