package registry_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestConformance runs the OCI distribution-spec conformance suite (pinned in
// tools/conformance, outside dtr's module) against a replica with
// authentication on: the suite does the token flow as the admin.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite: skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "conformance")
	build := exec.Command("go", "build", "-o", bin, "github.com/opencontainers/distribution-spec/conformance")
	build.Dir = filepath.Join("..", "tools", "conformance")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the conformance suite: %v\n%s", err, out)
	}
	r := registrytest.StartNew(t)
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": "conformance", "isOrg": true}, nil); st != 201 {
		t.Fatalf("creating the conformance org: %d", st)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, r.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	results := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = results
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+r.Host, "OCI_TLS=enabled", "SSL_CERT_FILE="+caFile,
		"OCI_USERNAME="+admin, "OCI_PASSWORD="+adminPW,
		"OCI_REPO1=conformance/repo1", "OCI_REPO2=conformance/repo2",
		"OCI_RESULTS_DIR="+results, "OCI_LOG=warn",
		// Tags pushed with the manifest (?tag=) and sparse manifests (an
		// index or image whose children are not all pushed) are off by
		// default in the suite; dtr supports both.
		"OCI_API_MANIFESTS_TAG_PARAM=true", "OCI_DATA_SPARSE=true",
	)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	counts := summary(out)
	t.Logf("OCI conformance against dtr in %v: %d pass, %d fail, %d error, %d skip, %d disabled, %d total",
		time.Since(start).Round(time.Second), counts["Pass"], counts["FAIL"], counts["Error"], counts["Skip"], counts["Disabled"], counts["Total"])
	if err != nil || counts["FAIL"] != 0 || counts["Error"] != 0 || counts["Pass"] == 0 {
		t.Fatalf("conformance failed (%v); failing tests:\n%s", err, failures(out))
	}
}

var countLine = regexp.MustCompile(`^\s*(Disabled|Skip|Pass|FAIL|Error|Total)\.+:\s+(\d+)`)

// summary reads the suite's "Pass....: N" lines.
func summary(out []byte) map[string]int {
	m := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if g := countLine.FindStringSubmatch(sc.Text()); g != nil {
			if _, seen := m[g[1]]; !seen {
				m[g[1]], _ = strconv.Atoi(g[2])
			}
		}
	}
	return m
}

// failures keeps the lines of failing tests and their messages.
func failures(out []byte) string {
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	keep := 0
	for sc.Scan() {
		line := sc.Text()
		if bytes.Contains([]byte(line), []byte(": FAIL")) || bytes.Contains([]byte(line), []byte(": Error")) {
			keep = 4
		}
		if keep > 0 {
			b.WriteString(line + "\n")
			keep--
		}
	}
	if b.Len() > 20000 {
		return b.String()[:20000] + "\n…"
	}
	return b.String()
}
