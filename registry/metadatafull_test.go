package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/member"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// freeBytes is what an unprivileged process may still write on dir's volume.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fill writes a new file in dir until the volume has at most leave bytes
// free (leave 0: until it is full) and returns the file's path.
func fill(t *testing.T, dir, name string, leave int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{0xa5}, 1<<20)
	for {
		free := freeBytes(t, dir)
		if free <= leave {
			return p
		}
		n := min(int64(len(buf)), free-leave)
		if _, err := f.Write(buf[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return p
			}
			t.Fatal(err)
		}
	}
}

// waitWriteError polls /_ping until its WriteError contains want ("" waits
// for no WriteError) and returns how long that took; /_ping must stay 200.
func waitWriteError(t *testing.T, r *registrytest.Replica, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		st, h := pingReplica(t, r, "")
		if st != http.StatusOK {
			t.Fatalf("/_ping answered %d %+v: pulls must go on with a full metadata volume", st, h)
		}
		if (want == "" && h.WriteError == "") || (want != "" && strings.Contains(h.WriteError, want)) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("/_ping's WriteError is %q after %v, want %q", h.WriteError, within, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkPull pulls img's manifest and layer and compares their bytes.
func checkPull(t *testing.T, r *registrytest.Replica, tok, repo, tag string, img registrytest.Image) {
	t.Helper()
	st, _, body := r.Do(t, http.MethodGet, "/v2/"+repo+"/manifests/"+tag, tok, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	if st != http.StatusOK || !bytes.Equal(body, img.Manifest) {
		t.Fatalf("pulling %s:%s: %d (same bytes: %v)", repo, tag, st, bytes.Equal(body, img.Manifest))
	}
	st, _, body = r.Do(t, http.MethodGet, "/v2/"+repo+"/blobs/"+registrytest.Digest(img.Layer), tok, nil, nil)
	if st != http.StatusOK || !bytes.Equal(body, img.Layer) {
		t.Fatalf("pulling the layer of %s:%s: %d", repo, tag, st)
	}
}

// TestMetadataVolumeFull puts a replica's data directory (its metadata
// member) on a 512 MiB tmpfs and fills it, as another process on the same
// disk would:
//   - under the guard's low mark the replica stays up, /_ping stays 200 and
//     names the full volume as a WriteError, pulls and logins are served,
//     pushes and admin changes get 507 with Retry-After;
//   - filled to the last byte, the guard releases its reserve and etcd keeps
//     running (an etcd write failure would exit this test process);
//   - freed, writes resume with no restart;
//   - stopped and started again on a full volume, it starts (the reserve is
//     released for the start) and serves pulls; with nothing left to
//     release, the start fails with an error that names the fix.
func TestMetadataVolumeFull(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a 512 MiB tmpfs: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	vol := mountTmpfs(t, "512m")
	o := registrytest.Options(t, filepath.Join(vol, "data"))
	o.StorageRoot = filepath.Join(t.TempDir(), "storage") // pushes must not fill the volume under test
	o.MetadataLowSpace, o.MetadataSpaceReserve = 0, 0     // the production guard
	r := registrytest.Start(t, o)
	reserve := filepath.Join(vol, "data", "metadata-space-reserve")
	if fi, err := os.Stat(reserve); err != nil || fi.Size() != member.DefaultSpaceReserve {
		t.Fatalf("the replica keeps no %d MiB space reserve at %s: %v", member.DefaultSpaceReserve>>20, reserve, err)
	}
	const repo = "admin/meta-full"
	tok := r.Token(t, registrytest.AdminUser, registrytest.AdminPassword, "repository:"+repo+":push,pull")
	img, st := r.PushImage(t, tok, repo, "before", randomBlob(t, 64<<10))
	if st != http.StatusCreated {
		t.Fatalf("pushing before the volume fills: %d", st)
	}
	t.Logf("metadata volume: %d MiB free after the first push", freeBytes(t, vol)>>20)

	// Under the low mark (128 MiB).
	filler := fill(t, vol, "filler", 100<<20)
	took := waitWriteError(t, r, "metadata volume", 5*time.Second)
	t.Logf("under the low mark: /_ping named the full metadata volume after %v", took.Round(time.Millisecond))
	if st, _ := pingReplica(t, r, "?for=push"); st != http.StatusServiceUnavailable {
		t.Errorf("/_ping?for=push answered %d with a full metadata volume, want 503", st)
	}
	checkMetadataRefusals(t, r, tok, repo, img)
	var cs struct {
		Alarms []struct{ Replica, Alarm string }
		Issues []struct{ Description string } `json:"current_issues"`
	}
	if st := r.API(t, registrytest.AdminUser, registrytest.AdminPassword, http.MethodGet, "/api/v0/meta/cluster_status", nil, &cs); st != http.StatusOK ||
		len(cs.Alarms) != 1 || cs.Alarms[0].Alarm != "NOSPACE" || cs.Alarms[0].Replica != o.ReplicaID {
		t.Errorf("cluster_status with a full metadata volume: %d %+v; want the NOSPACE alarm of %s", st, cs, o.ReplicaID)
	}

	// To the last byte: the guard gives its reserve back for etcd's writes.
	fill(t, vol, "filler", 0)
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, err := os.Stat(reserve); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the volume is full and the guard has not released its reserve")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // health reports and raft keep writing meanwhile
	checkPull(t, r, tok, repo, "before", img)
	checkMetadataRefusals(t, r, tok, repo, img)

	// Freed: writes resume with no restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	waitWriteError(t, r, "", 10*time.Second)
	for {
		if _, st := r.PushImage(t, tok, repo, "after", randomBlob(t, 64<<10)); st == http.StatusCreated {
			break
		}
		if time.Since(freed) > 10*time.Second {
			t.Fatal("pushes still refused 10 s after the metadata volume was freed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("freed: pushes resumed after %v", time.Since(freed).Round(time.Millisecond))
	if _, err := os.Stat(reserve); err != nil {
		t.Errorf("the reserve was not taken again once space was freed: %v", err)
	}

	// A restart on a full volume: the reserve is what lets it start.
	r.Stop()
	filler = fill(t, vol, "filler", 0)
	r = r.Restart()
	waitWriteError(t, r, "metadata", 5*time.Second)
	tok = r.Token(t, registrytest.AdminUser, registrytest.AdminPassword, "repository:"+repo+":push,pull")
	checkPull(t, r, tok, repo, "before", img)
	checkMetadataRefusals(t, r, tok, repo, img)

	// Nothing left to release: the start fails and says what to do.
	r.Stop()
	filler2 := fill(t, vol, "filler2", 0)
	o.AdminPassword = ""
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if rr, err := registry.Start(ctx, o); err == nil {
		rr.Close()
		t.Fatal("the replica started with no space at all on its metadata volume")
	} else if !strings.Contains(err.Error(), "full") || !strings.Contains(err.Error(), "free space") {
		t.Errorf("starting on a full volume failed with %q; it should say the volume is full and to free space", err)
	} else {
		t.Logf("start on a full volume: %v", err)
	}
	os.Remove(filler)
	os.Remove(filler2)
	r = registrytest.Start(t, o)
	waitWriteError(t, r, "", 10*time.Second)
	tok = r.Token(t, registrytest.AdminUser, registrytest.AdminPassword, "repository:"+repo+":push,pull")
	if _, st := r.PushImage(t, tok, repo, "restarted", randomBlob(t, 64<<10)); st != http.StatusCreated {
		t.Fatalf("pushing after the volume was freed and the replica restarted: %d", st)
	}
}

// checkMetadataRefusals checks what a replica answers while its metadata
// store refuses writes: pulls, logins and the token endpoint (without a
// refresh token) work; pushes and admin changes get 507 with Retry-After.
func checkMetadataRefusals(t *testing.T, r *registrytest.Replica, tok, repo string, img registrytest.Image) {
	t.Helper()
	checkPull(t, r, tok, repo, "before", img)
	q := url.Values{"service": {"dtr"}, "offline_token": {"true"}, "client_id": {"docker"}}
	a := send(t, r, http.MethodGet, "/auth/token?"+q.Encode(), registrytest.AdminUser, registrytest.AdminPassword, nil, nil)
	if a.status != http.StatusOK {
		t.Errorf("docker login with a full metadata volume: %d %s", a.status, a.body)
	}
	var ans registryAnswer
	ans.status, ans.header, ans.body = r.Do(t, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", tok, nil, nil)
	checkFullMetadata(t, "starting an upload", ans)
	ans.status, ans.header, ans.body = r.Do(t, http.MethodPut, "/v2/"+repo+"/manifests/again", tok, img.Manifest,
		map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
	checkFullMetadata(t, "a manifest PUT", ans)
	var out json.RawMessage
	if st := r.API(t, registrytest.AdminUser, registrytest.AdminPassword, http.MethodPost, "/api/v0/repositories/admin",
		map[string]any{"name": "new-while-full"}, &out); st != http.StatusInsufficientStorage {
		t.Errorf("creating a repository with a full metadata store: %d %s, want 507", st, out)
	}
}

func checkFullMetadata(t *testing.T, what string, a registryAnswer) {
	t.Helper()
	if a.status != http.StatusInsufficientStorage || a.header.Get("Retry-After") == "" || !strings.Contains(string(a.body), "metadata") {
		t.Errorf("%s with a full metadata volume: %d Retry-After=%q %s; want 507 naming the metadata store, with Retry-After",
			what, a.status, a.header.Get("Retry-After"), a.body)
	}
	if strings.Contains(string(a.body), "/tmp") {
		t.Errorf("%s: the answer shows a host path: %s", what, a.body)
	}
}

// TestSharedDiskSparesMetadata keeps the storage and the metadata on one
// volume, as a default install does on the node's Docker disk: once the
// disk is under the guard's low mark, an upload under way is refused (507)
// instead of filling the space the metadata store needs.
func TestSharedDiskSparesMetadata(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a 512 MiB tmpfs: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	vol := mountTmpfs(t, "512m")
	o := registrytest.Options(t, filepath.Join(vol, "data"))
	o.StorageRoot = filepath.Join(vol, "storage")
	o.MetadataLowSpace, o.MetadataSpaceReserve = 0, 0
	r := registrytest.Start(t, o)
	const repo = "admin/shared-disk"
	tok := r.Token(t, registrytest.AdminUser, registrytest.AdminPassword, "repository:"+repo+":push,pull")
	st, h, body := r.Do(t, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", tok, nil, nil)
	if st != http.StatusAccepted {
		t.Fatalf("starting an upload: %d %s", st, body)
	}
	loc := uploadPath(h.Get("Location"))
	filler := fill(t, vol, "filler", 100<<20)
	waitWriteError(t, r, "metadata volume", 5*time.Second)
	var a registryAnswer
	a.status, a.header, a.body = r.Do(t, http.MethodPatch, loc, tok, randomBlob(t, 8<<20), map[string]string{"Content-Type": "application/octet-stream"})
	if a.status != http.StatusInsufficientStorage || a.header.Get("Retry-After") == "" {
		t.Errorf("an upload under way on a disk shared with a nearly full metadata volume: %d %s; want 507 with Retry-After", a.status, a.body)
	}
	if free := freeBytes(t, vol); free < 90<<20 {
		t.Errorf("the refused upload still took the metadata's space: %d MiB free", free>>20)
	}
	os.Remove(filler)
	waitWriteError(t, r, "", 10*time.Second)
	if _, st := r.PushImage(t, tok, repo, "after", randomBlob(t, 1<<20)); st != http.StatusCreated {
		t.Fatalf("pushing once the shared disk has space again: %d", st)
	}
}
