package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestInstallOnRootOwnedHostPath: `install --dtr-storage-volume` on a host
// directory made by root (mode 0755, as mkdir leaves it) used to report a
// healthy install whose every push failed, because the replica runs as uid
// 10001. Now the replica's /_ping names the storage, install fails naming the
// chown, and nothing dtr created stays behind; after the chown it installs.
func TestInstallOnRootOwnedHostPath(t *testing.T) {
	node := cleanSwarm(t)
	dir, err := os.MkdirTemp("", "dtr-e2e-storage")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("storage directory: %v", err)
	}
	args := []string{"install", "--ucp-node", node, "--dtr-storage-volume", dir, "--replica-http-port", "36080", "--replica-https-port", "36443"}

	start := time.Now()
	out, code := dtr(t, args...)
	t.Logf("failed install took %v", time.Since(start).Round(100*time.Millisecond))
	if code == 0 || strings.Contains(out, "Installation is complete") {
		t.Fatalf("install on a root-owned host path succeeded (exit %d):\n%s", code, out)
	}
	for _, want := range []string{"chown -R 10001:10001 " + dir + " on node " + node, "permission denied", "everything this run created was removed"} {
		if !strings.Contains(out, want) {
			t.Errorf("install log lacks %q:\n%s", want, out)
		}
	}
	if left := labelled(t); left != "" {
		t.Fatalf("a failed install left objects behind:\n%s", left)
	}
	if jobs := MustDocker(t, "service", "ls", "-q", "--filter", "label=com.docker.dtr.role=job"); jobs != "" {
		t.Fatalf("node jobs left behind: %s", jobs)
	}

	// The fix the message names works.
	if err := os.Chown(dir, 10001, 10001); err != nil {
		t.Fatalf("chown: %v", err)
	}
	log := mustDTR(t, args...)
	if !strings.Contains(log, "Installation is complete") {
		t.Fatalf("install after the chown:\n%s", log)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) == 0 {
		t.Fatalf("the replica wrote nothing to %s: %v %v", dir, entries, err)
	}
}
