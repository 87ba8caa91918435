package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// replicaContainer is a dtr-registry container on the local engine, reached
// through loopback ports, with its CA trusted as an operator would.
type replicaContainer struct {
	name, host string
	client     *http.Client
}

func startReplicaContainer(t *testing.T, adminPassword string) *replicaContainer {
	t.Helper()
	id := fmt.Sprintf("%012x", time.Now().UnixNano()&0xffffffffffff)
	name := "dtr-registry-" + id
	secrets := t.TempDir()
	pw := filepath.Join(secrets, "admin-password")
	if err := os.WriteFile(pw, []byte(adminPassword), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(secrets, 0o755); err != nil {
		t.Fatal(err)
	}
	// The external URL is where the token realm points, as an installer
	// sets it: the replica never builds it from the client's Host header.
	port := strconv.Itoa(registrytest.FreePort(t))
	MustDocker(t, "run", "-d", "--name", name, "--hostname", name,
		"-p", "127.0.0.1:"+port+":8443", "-p", "127.0.0.1::8080",
		"-v", secrets+":/run/secrets:ro",
		"-e", "DTR_REPLICA_ID="+id, "-e", "DTR_ADMIN_USERNAME=admin", "-e", "DTR_ADMIN_PASSWORD_FILE=/run/secrets/admin-password",
		"-e", "DTR_EXTERNAL_URL=https://127.0.0.1:"+port,
		images.Registry())
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := Docker(t, nil, "logs", "--tail", "50", name)
			t.Logf("replica log:\n%s", out)
		}
		_, _ = Docker(t, nil, "rm", "-f", "-v", name)
	})
	rc := &replicaContainer{name: name, host: "127.0.0.1:" + port}

	// Trust the replica's CA as an operator would: /etc/docker/certs.d.
	certs := filepath.Join("/etc/docker/certs.d", rc.host)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := Docker(t, nil, "cp", name+":/var/lib/dtr/ca/ca.pem", filepath.Join(secrets, "ca.pem")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica's CA did not appear")
		}
		time.Sleep(200 * time.Millisecond)
	}
	ca, err := os.ReadFile(filepath.Join(secrets, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(certs, 0o755); err != nil {
		t.Skipf("cannot write %s to trust the replica's CA: %v", certs, err)
	}
	t.Cleanup(func() { os.RemoveAll(certs) })
	if err := os.WriteFile(filepath.Join(certs, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	rc.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for {
		resp, err := rc.client.Get("https://" + rc.host + "/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not healthy within 60 s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return rc
}

func (rc *replicaContainer) api(t *testing.T, method, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, "https://"+rc.host+path, bytes.NewBufferString(body))
	req.SetBasicAuth("admin", "Admin-passw0rd")
	req.Header.Set("Content-Type", "application/json")
	resp, err := rc.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e any
		_ = json.NewDecoder(resp.Body).Decode(&e)
		t.Fatalf("%s %s: %s %v", method, path, resp.Status, e)
	}
}

// TestDockerCLI: docker login, push, pull, logout against a replica container,
// and the refusals an operator expects.
func TestDockerCLI(t *testing.T) {
	RequireImages(t)
	rc := startReplicaContainer(t, "Admin-passw0rd")
	rc.api(t, "POST", "/api/v0/accounts", `{"name":"reader","password":"reader-passw0rd"}`)
	rc.api(t, "POST", "/api/v0/repositories/admin", `{"name":"tiny","visibility":"private"}`)
	rc.api(t, "PUT", "/api/v0/repositories/admin/tiny/userAccess/reader", `{"accessLevel":"read-only"}`)

	cfg := t.TempDir() // the test's own docker config: the operator's stays untouched
	env := append(os.Environ(), "DOCKER_CONFIG="+cfg, "DOCKER_BUILDKIT=0")
	run := func(args ...string) (string, error) { return Docker(t, env, args...) }
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	login := func(user, pw string) (string, error) {
		return Docker(t, env, "login", rc.host, "-u", user, "-p", pw)
	}

	ctxDir := t.TempDir()
	os.WriteFile(filepath.Join(ctxDir, "hello.txt"), []byte("hello from dtr "+rc.name), 0o644)
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY hello.txt /\n"), 0o644)
	ref := rc.host + "/admin/tiny:1"
	must("build", "-q", "-t", ref, ctxDir)
	t.Cleanup(func() { _, _ = run("rmi", "-f", ref) })

	if out, err := login("admin", "wrong-password"); err == nil || !strings.Contains(out, "incorrect username or password") {
		t.Fatalf("login with a wrong password: %v\n%s", err, out)
	}
	if out, err := login("admin", "Admin-passw0rd"); err != nil || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("login: %v\n%s", err, out)
	}
	pushed := must("push", ref)
	must("rmi", ref)
	must("pull", ref)
	if !strings.Contains(pushed, "digest: sha256:") {
		t.Fatalf("push output lacks the digest:\n%s", pushed)
	}
	must("logout", rc.host)

	must("rmi", ref)
	if out, err := run("pull", ref); err == nil {
		t.Fatalf("pull of a private repository without login succeeded:\n%s", out)
	}
	if out, err := login("reader", "reader-passw0rd"); err != nil {
		t.Fatalf("reader login: %v\n%s", err, out)
	}
	must("pull", ref)
	if out, err := run("push", ref); err == nil || !strings.Contains(out, "denied") {
		t.Fatalf("push by a read-only user: %v\n%s", err, out)
	}
	t.Logf("docker login/push/pull/logout against %s: ok", rc.host)
}
