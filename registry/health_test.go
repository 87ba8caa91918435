package registry

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

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
