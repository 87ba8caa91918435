package registry

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/pki"
)

// TestIssueFilesKeepsFittingCertificates: a restart keeps certificate files
// that still fit (it must not need to write on a full data volume), and
// issues new ones for a new name, a different CA or a close expiry.
func TestIssueFilesKeepsFittingCertificates(t *testing.T) {
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hosts := []string{"dtr-replica", "127.0.0.1", ""}
	cert, key, err := issueFiles(ca, dir, "server", hosts)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	for _, f := range []string{cert, key} {
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
	modified := func() bool {
		fi, err := os.Stat(cert)
		return err != nil || !fi.ModTime().Equal(old)
	}
	if _, _, err := issueFiles(ca, dir, "server", hosts); err != nil || modified() {
		t.Fatalf("a restart with the same names rewrote the certificate (err %v)", err)
	}
	if _, _, err := issueFiles(ca, dir, "server", append(hosts, "registry.example.com")); err != nil || !modified() {
		t.Fatalf("a new name did not issue a new certificate (err %v)", err)
	}
	other, _ := pki.NewCA("other CA")
	if !certFits(ca, cert, key, hosts) || certFits(other, cert, key, hosts) {
		t.Error("certFits does not tell the issuing CA from another")
	}
	kp, _ := ca.Issue("server", hosts, 10*24*time.Hour)
	_ = writePair(dir, cert, key, kp)
	if certFits(ca, cert, key, hosts) {
		t.Error("a certificate with 10 days left is kept; it should be issued again")
	}
	// A data directory that cannot be written (a full volume) gets its
	// certificate in a temporary directory instead; a file where the
	// directory should be fails every write, root's included.
	blocked := filepath.Join(t.TempDir(), "blocked")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c2, _, err := issueFiles(ca, filepath.Join(blocked, "tls"), "peer", hosts)
	if err != nil || filepath.Dir(c2) == filepath.Join(blocked, "tls") {
		t.Fatalf("an unwritable directory: %s, %v; want a temporary directory", c2, err)
	}
	os.RemoveAll(filepath.Dir(c2))
}
