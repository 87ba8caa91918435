package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"

	"github.com/dtr-registry/dtr/orchestrator"
)

// replicaUID is the user the dtr-registry image runs as (Dockerfile USER).
const replicaUID = 10001

// childDirEnv tells a re-executed test binary to probe this directory and
// print the result: the way to run the probe as uid 10001 when the tests
// run as root, for whom permission bits stop nothing.
const childDirEnv = "DTR_TEST_STORAGE_PROBE_DIR"

func filesystemDriver(t *testing.T, root string) driver.StorageDriver {
	t.Helper()
	d, err := filesystem.FromParameters(map[string]any{"rootdirectory": root})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestStorageProbeUnwritable: a storage root owned by root with mode 0755,
// as `mkdir /srv/dtr` leaves it, probed by the replica's user, makes the
// probe fail naming the storage and the chown that fixes it, although
// Stat("/") (what the probe did before) succeeds there.
func TestStorageProbeUnwritable(t *testing.T) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		err := storageProbe(func() driver.StorageDriver { return filesystemDriver(t, dir) })(context.Background())
		if err == nil {
			os.Stdout.WriteString("PROBE-RESULT: ok\n")
			return
		}
		os.Stdout.WriteString("PROBE-RESULT: " + err.Error() + "\n")
		return
	}
	base, err := os.MkdirTemp("", "dtr-probe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "storage")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}

	var got string
	if os.Geteuid() != 0 {
		// Not root: the permission bits are enough.
		if err := os.Chmod(root, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(root, 0o755) })
		if err := storageProbe(func() driver.StorageDriver { return filesystemDriver(t, root) })(context.Background()); err != nil {
			got = err.Error()
		}
	} else {
		got = probeAsReplicaUser(t, base, root)
	}
	t.Logf("probe: %s", got)
	for _, want := range []string{orchestrator.StorageUnwritable, "permission denied", "uid 10001", "chown -R 10001:10001", "filesystem"} {
		if !strings.Contains(got, want) {
			t.Errorf("probe of a root-owned storage root: %q lacks %q", got, want)
		}
	}
	if _, err := filesystemDriver(t, root).Stat(context.Background(), "/"); err != nil {
		t.Fatalf("Stat of the root should succeed (the old probe's blind spot): %v", err)
	}
}

// probeAsReplicaUser runs this test again as uid 10001 on root and returns
// the probe's error ("" when it passed). The test binary is copied to base
// because the go build directory is private to root.
func probeAsReplicaUser(t *testing.T, base, root string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "registry.test")
	if err := copyFile(self, bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestStorageProbeUnwritable$", "-test.count=1")
	cmd.Dir = base
	cmd.Env = []string{childDirEnv + "=" + root, "HOME=" + base, "TMPDIR=" + os.TempDir(), "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: replicaUID, Gid: replicaUID}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the probe as uid %d: %v\n%s", replicaUID, err, out)
	}
	_, res, ok := strings.Cut(string(out), "PROBE-RESULT: ")
	if !ok {
		t.Fatalf("no probe result from the child:\n%s", out)
	}
	res, _, _ = strings.Cut(res, "\n")
	if res == "ok" {
		return ""
	}
	return res
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// TestStorageProbeWritesAndRecovers: a writable root passes and keeps no
// probe object; a root that is a file (a wrong mount) fails the write even
// for root; once fixed, the next round passes, since a failed write is
// retried every round rather than every storageWriteEvery.
func TestStorageProbeWritesAndRecovers(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "storage")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	drv := filesystemDriver(t, root)
	probe := storageProbe(func() driver.StorageDriver { return drv })
	if err := probe(ctx); err != nil {
		t.Fatalf("writable storage: %v", err)
	}
	left, err := os.ReadDir(filepath.Join(root, "dtr-health"))
	if err != nil || len(left) != 0 {
		t.Fatalf("the probe object was left behind: %v %v", left, err)
	}

	broken := filepath.Join(t.TempDir(), "storage")
	if err := os.WriteFile(broken, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filesystemDriver(t, broken)
	probe = storageProbe(func() driver.StorageDriver { return bad })
	if err := probe(ctx); err == nil || !strings.Contains(err.Error(), orchestrator.StorageUnwritable) {
		t.Fatalf("storage root that is a file: %v", err)
	}
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := probe(ctx); err != nil {
		t.Fatalf("the next round after the fix: %v", err)
	}

	// A new driver (the storage settings changed) is written to at once.
	bad2 := filesystemDriver(t, filepath.Join(broken, "x"))
	if err := os.WriteFile(filepath.Join(broken, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	drvNow := bad
	probe = storageProbe(func() driver.StorageDriver { return drvNow })
	if err := probe(ctx); err != nil {
		t.Fatal(err)
	}
	drvNow = bad2
	if err := probe(ctx); err == nil {
		t.Fatal("a replaced, unwritable driver passed on a Stat alone")
	}
}

// BenchmarkStorageProbe measures one round on a local filesystem: a write
// and delete (the first round) and a Stat (the rounds between writes).
func BenchmarkStorageProbe(b *testing.B) {
	ctx := context.Background()
	d, err := filesystem.FromParameters(map[string]any{"rootdirectory": b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("write", func(b *testing.B) {
		for range b.N {
			if err := writeProbe(ctx, d, "/dtr-health/bench"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stat", func(b *testing.B) {
		probe := storageProbe(func() driver.StorageDriver { return d })
		for range b.N {
			if err := probe(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestClassifyStorageError: the errno under a driver's error (which the
// drivers' base wraps without Unwrap) decides full, failing or neither.
func TestClassifyStorageError(t *testing.T) {
	pathErr := func(errno syscall.Errno) error {
		return &os.PathError{Op: "write", Path: "/srv/dtr/docker/registry/v2/x/data", Err: errno}
	}
	for _, tc := range []struct {
		name string
		err  error
		want storageFault
	}{
		{"nil", nil, faultNone},
		{"ENOSPC in a driver error", driver.Error{DriverName: "filesystem", Detail: pathErr(syscall.ENOSPC)}, faultFull},
		{"EDQUOT", pathErr(syscall.EDQUOT), faultFull},
		{"ENOSPC joined at Close", errors.Join(pathErr(syscall.ENOSPC), errors.New("close")), faultFull},
		{"EROFS", driver.Error{DriverName: "filesystem", Detail: pathErr(syscall.EROFS)}, faultFailing},
		{"EIO wrapped", fmt.Errorf("commit: %w", pathErr(syscall.EIO)), faultFailing},
		{"EACCES", pathErr(syscall.EACCES), faultNone},
		{"not found", driver.PathNotFoundError{Path: "/x"}, faultNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := classifyStorageError(tc.err); got != tc.want {
				t.Errorf("classifyStorageError(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

// TestAppErrorsWithoutPaths: a 5xx from the App keeps its status and code
// but loses every host path; other answers pass unchanged.
func TestAppErrorsWithoutPaths(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"500 with a driver path", `{"errors":[{"code":"UNKNOWN","message":"unknown error","detail":"filesystem: open /var/lib/dtr/storage/docker/registry/v2/x: input/output error"}]}`,
			500, `{"errors":[{"code":"UNKNOWN","message":"unknown error","detail":"filesystem: open <path>: input/output error"}]}`},
		{"500 with a structured detail", `{"errors":[{"code":"UNKNOWN","detail":{"driver":"filesystem","detail":"mkdir /srv/dtr/a: x"}}]}`,
			500, `{"errors":[{"code":"UNKNOWN","detail":{"driver":"filesystem","detail":"mkdir <path>: x"}}]}`},
		{"URLs stay", `{"errors":[{"code":"UNKNOWN","detail":"GET https://s3.local/bucket/x: 500"}]}`,
			500, `{"errors":[{"code":"UNKNOWN","detail":"GET https://s3.local/bucket/x: 500"}]}`},
		{"4xx passes", `{"errors":[{"code":"BLOB_UNKNOWN","detail":"/v2/x"}]}`,
			404, `{"errors":[{"code":"BLOB_UNKNOWN","detail":"/v2/x"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(len(tc.body)))
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			rec := httptest.NewRecorder()
			answerStorageErrors(app, rec, httptest.NewRequest(http.MethodGet, "/v2/x/blobs/sha256:00", nil))
			if rec.Code != tc.status || rec.Body.String() != tc.want {
				t.Errorf("got %d %s\nwant %d %s", rec.Code, rec.Body, tc.status, tc.want)
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Errorf("not JSON any more: %s", rec.Body)
			}
		})
	}
}

// TestHealthWritesRefused: a check that refuses writes only (a full
// storage) keeps /_ping at 200 for the load balancer's pulls and turns
// /_ping?for=push to 503; any other failure turns both.
func TestHealthWritesRefused(t *testing.T) {
	for _, tc := range []struct {
		name           string
		err            error
		ping, pushPing int
	}{
		{"healthy", nil, 200, 200},
		{"storage full", &writesRefusedError{msg: "the registry storage is full"}, 200, 503},
		{"storage unwritable", errors.New(orchestrator.StorageUnwritable), 503, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHealthChecker(time.Second, time.Second, check{"storage", func(context.Context) error { return tc.err }})
			h.probe(context.Background())
			for q, want := range map[string]int{"/_ping": tc.ping, "/_ping?for=push": tc.pushPing} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, q, nil))
				if rec.Code != want {
					t.Errorf("%s: %d %s, want %d", q, rec.Code, rec.Body, want)
				}
			}
			if cur := h.Current(); tc.err != nil && !strings.Contains(cur.Error, tc.err.Error()) {
				t.Errorf("Error %q does not say %q (cluster_status shows Error)", cur.Error, tc.err)
			}
		})
	}
}
