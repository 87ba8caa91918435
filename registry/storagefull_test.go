package registry_test

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// mountTmpfs mounts a tmpfs of size (mount's syntax: "8m") on a new
// directory and unmounts it when the test ends, after the replica stops.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "storage")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() {
		// A stopped replica's last storage call may still be closing its
		// file: give it a few seconds, then name what holds the mount.
		var out []byte
		var err error
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if out, err = exec.Command("umount", dir).CombinedOutput(); err == nil {
				return
			}
			if time.Now().After(deadline) {
				break
			}
		}
		t.Errorf("unmounting %s: %v: %s; open in this process: %v", dir, err, out, openFilesUnder(dir))
	})
	return dir
}

// openFilesUnder lists this process's open files below dir.
func openFilesUnder(dir string) []string {
	var open []string
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, dir+"/") {
			open = append(open, target)
		}
	}
	return open
}

// uploadPath turns an upload Location into a path on the replica.
func uploadPath(loc string) string {
	if u, err := url.Parse(loc); err == nil && u.Host != "" {
		return u.RequestURI()
	}
	return loc
}

// registryAnswer is one answer of the registry API, kept whole for the checks.
type registryAnswer struct {
	status int
	header http.Header
	body   []byte
}

// uploadBlob pushes b as docker does, in one PATCH then the closing PUT
// (chunked), or in the closing PUT alone; it returns the first answer that
// is not a success.
func uploadBlob(t *testing.T, r *registrytest.Replica, tok, repo string, b []byte, chunked bool) registryAnswer {
	t.Helper()
	st, h, body := r.Do(t, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", tok, nil, nil)
	if st != http.StatusAccepted {
		return registryAnswer{st, h, body}
	}
	loc, final := uploadPath(h.Get("Location")), b
	if chunked {
		st, h, body = r.Do(t, http.MethodPatch, loc, tok, b, map[string]string{"Content-Type": "application/octet-stream"})
		if st != http.StatusAccepted {
			return registryAnswer{st, h, body}
		}
		loc, final = uploadPath(h.Get("Location")), nil
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	st, h, body = r.Do(t, http.MethodPut, loc+sep+"digest="+registrytest.Digest(b), tok, final, map[string]string{"Content-Type": "application/octet-stream"})
	return registryAnswer{st, h, body}
}

func randomBlob(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// pingReplica asks the replica's /_ping (with query q) and decodes its answer.
func pingReplica(t *testing.T, r *registrytest.Replica, q string) (int, registry.Health) {
	t.Helper()
	resp, err := r.Client.Get(r.URL + "/_ping" + q)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h registry.Health
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("/_ping%s: %v: %s", q, err, b)
	}
	return resp.StatusCode, h
}

// waitPushPing polls /_ping?for=push until it answers want and returns how long
// that took.
func waitPushPing(t *testing.T, r *registrytest.Replica, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		st, h := pingReplica(t, r, "?for=push")
		if st == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("/_ping?for=push: %d %+v after %v, want %d", st, h, within, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkRefused checks a push refused for a full storage: 507, Retry-After,
// an error body in Distribution's format, and no path of the host.
func checkRefused(t *testing.T, what string, a registryAnswer, storage string) {
	t.Helper()
	if a.status != http.StatusInsufficientStorage || a.header.Get("Retry-After") == "" {
		t.Errorf("%s on a full storage: %d Retry-After=%q %s; want 507 with Retry-After", what, a.status, a.header.Get("Retry-After"), a.body)
	}
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(a.body, &e); err != nil || len(e.Errors) == 0 || !strings.Contains(e.Errors[0].Message, "full") {
		t.Errorf("%s: body %s is not an error naming the full storage (%v)", what, a.body, err)
	}
	for _, leak := range []string{storage, "/tmp", "docker/registry", "no space left"} {
		if strings.Contains(string(a.body), leak) {
			t.Errorf("%s: body %s shows %q", what, a.body, leak)
		}
	}
}

// TestStorageFull fills a replica's storage (an 8 MiB tmpfs): pushes, chunked
// or not, and manifest PUTs get 507 with Retry-After and no host path; pulls
// of an earlier image still answer with their bytes; /_ping stays 200 while
// /_ping?for=push turns 503 and names the full storage; growing the tmpfs
// lets the next push through, with no restart. It logs the times to detect
// and to recover, which docs/reliability.md quotes.
func TestStorageFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	storage := mountTmpfs(t, "8m")
	o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
	o.StorageRoot = storage
	r := registrytest.Start(t, o)
	const repo = "admin/full"
	tok := r.Token(t, registrytest.AdminUser, registrytest.AdminPassword, "repository:"+repo+":push,pull")

	img, st := r.PushImage(t, tok, repo, "before", randomBlob(t, 1<<20))
	if st != http.StatusCreated {
		t.Fatalf("pushing the first image: %d", st)
	}

	// An upload started now gets its bytes once the storage is full.
	st, h0, _ := r.Do(t, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", tok, nil, nil)
	if st != http.StatusAccepted {
		t.Fatalf("starting an upload: %d", st)
	}
	late := uploadPath(h0.Get("Location"))

	// Fill it: 1 MiB blobs, alternately chunked, then 16 KiB ones for what
	// is left, each until the storage refuses.
	var refused time.Time
	var detect time.Duration
	for _, size := range []int{1 << 20, 16 << 10} {
		for i := 0; ; i++ {
			if i == 2000 {
				t.Fatalf("%d blobs of %d bytes fit in an 8 MiB storage", i, size)
			}
			a := uploadBlob(t, r, tok, repo, randomBlob(t, size), i%2 == 1)
			if a.status == http.StatusCreated {
				continue
			}
			checkRefused(t, "blob push ("+map[bool]string{true: "chunked", false: "monolithic"}[i%2 == 1]+")", a, storage)
			break
		}
	}
	// A refused upload's partial bytes are freed at once (the upload is
	// cancelled), so the last pages go to a file of the test's: then even
	// the health probe's few bytes do not fit.
	fill(t, storage, "filler", 0)
	a := uploadBlob(t, r, tok, repo, randomBlob(t, 16<<10), false)
	checkRefused(t, "blob push on a storage full to the last byte", a, storage)
	refused = time.Now()
	waitPushPing(t, r, http.StatusServiceUnavailable, 10*time.Second)
	detect = time.Since(refused)
	manifest := strings.Replace(string(img.Manifest), `"schemaVersion":2`, `"schemaVersion":2,"annotations":{"a":"b"}`, 1)
	st, h, body := r.Do(t, http.MethodPut, "/v2/"+repo+"/manifests/after", tok, []byte(manifest), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
	checkRefused(t, "manifest PUT", registryAnswer{st, h, body}, storage)

	// A chunk smaller than Distribution's write buffer fails only when the
	// upload's file is closed (its flush): the file must not stay open.
	st, h, body = r.Do(t, http.MethodPatch, late, tok, randomBlob(t, 1<<10), map[string]string{"Content-Type": "application/octet-stream"})
	checkRefused(t, "a small chunk", registryAnswer{st, h, body}, storage)
	if open := openFilesUnder(storage); len(open) > 0 {
		t.Errorf("files left open after refused uploads: %v", open)
	}

	// Pulls keep working, bytes and all.
	st, _, body = r.Do(t, http.MethodGet, "/v2/"+repo+"/manifests/before", tok, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	if st != http.StatusOK || string(body) != string(img.Manifest) {
		t.Errorf("manifest pull on a full storage: %d %s", st, body)
	}
	st, _, body = r.Do(t, http.MethodGet, "/v2/"+repo+"/blobs/"+registrytest.Digest(img.Layer), tok, nil, nil)
	if st != http.StatusOK || string(body) != string(img.Layer) {
		t.Errorf("layer pull on a full storage: %d, %d bytes of %d", st, len(body), len(img.Layer))
	}

	st, health := pingReplica(t, r, "")
	if st != http.StatusOK || !health.Healthy || !strings.Contains(health.WriteError, "full") || strings.Contains(health.Error, "chown") {
		t.Errorf("/_ping on a full storage: %d %+v; want 200, healthy, a WriteError naming the full storage and no chown", st, health)
	}
	if strings.Contains(health.Error, storage) {
		t.Errorf("/_ping shows the storage path: %+v", health)
	}

	// Grow the storage: the next push goes through at once.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", storage).CombinedOutput(); err != nil {
		t.Fatalf("growing the tmpfs: %v: %s", err, out)
	}
	freed := time.Now()
	if a := uploadBlob(t, r, tok, repo, randomBlob(t, 1<<20), true); a.status != http.StatusCreated {
		t.Fatalf("push after space was freed: %d %s", a.status, a.body)
	}
	pushBack := time.Since(freed)
	st, _, body = r.Do(t, http.MethodPut, "/v2/"+repo+"/manifests/after", tok, []byte(manifest), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
	if st != http.StatusCreated {
		t.Fatalf("manifest PUT after space was freed: %d %s", st, body)
	}
	waitPushPing(t, r, http.StatusOK, 10*time.Second)
	recovered := time.Since(freed)
	t.Logf("health interval %v: /_ping?for=push said 503 %v after the first refused push; after space was freed the next push passed in %v and /_ping?for=push said 200 after %v",
		o.HealthInterval, detect.Round(time.Millisecond), pushBack.Round(time.Millisecond), recovered.Round(time.Millisecond))
}
