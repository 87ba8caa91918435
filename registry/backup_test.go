package registry_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/pki"
	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// takeBackup asks a replica's admin API for a backup, as dtr backup does.
func takeBackup(t *testing.T, r *registrytest.Replica) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.URL+"/api/v0/meta/backup", nil)
	req.SetBasicAuth(admin, adminPW)
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v0/meta/backup: %v %s %.300s", err, resp.Status, b)
	}
	return b
}

// restoreOptions are options for a replica that restores bk in dir, with
// the backed-up CA handed over as the installer does.
func restoreOptions(t *testing.T, bk []byte, dir string) registry.Options {
	t.Helper()
	o := registrytest.Options(t, dir)
	o.AdminUsername, o.AdminPassword = "", ""
	o.Restore, o.RestoreStorage = true, contract.RestoreKeepStorage
	var caJSON []byte
	err := backup.Walk(bytes.NewReader(bk), func(p string, b []byte) error {
		if p == "certs/ca.json" {
			caJSON = b
		}
		return nil
	})
	if err != nil || caJSON == nil {
		t.Fatalf("certs/ca.json: %v", err)
	}
	rec, err := backup.ParseRecord("certs/ca.json", caJSON)
	if err != nil {
		t.Fatal(err)
	}
	var kp meta.KeyPair
	if err := json.Unmarshal(rec.Value, &kp); err != nil {
		t.Fatal(err)
	}
	o.CACertFile, o.CAKeyFile = filepath.Join(t.TempDir(), "ca.pem"), filepath.Join(t.TempDir(), "ca-key.pem")
	os.WriteFile(o.CACertFile, []byte(kp.CertPEM), 0o644)
	os.WriteFile(o.CAKeyFile, []byte(kp.KeyPEM), 0o600)
	return o
}

// TestBackupRestore: a backup taken while accounts are being created is one
// consistent revision, and a replica restored from it (sharing the blob
// storage) has the same cluster, accounts, passwords, permissions and images.
func TestBackupRestore(t *testing.T) {
	a := registrytest.StartNew(t)
	setupAccounts(t, a)
	scope := "repository:acme/app:push,pull"
	img, st := a.PushImage(t, a.Token(t, "alice", "alice-password", scope), "acme/app", "v1", []byte("private layer"))
	if st != 201 {
		t.Fatalf("push: %d", st)
	}
	// A nested repository, created on push, with a grant on its full name.
	nested, st := a.PushImage(t, a.Token(t, "alice", "alice-password", "repository:alice/charts/hello:push,pull"), "alice/charts/hello", "v1", []byte("nested layer"))
	if st != 201 {
		t.Fatalf("push alice/charts/hello: %d", st)
	}
	if st := a.API(t, "alice", "alice-password", "PUT", "/api/v0/repositories/alice/charts/hello/userAccess/bob", map[string]any{"accessLevel": "read-only"}, nil); st != 200 {
		t.Fatalf("granting bob alice/charts/hello: %d", st)
	}

	// A writer creates accounts w0, w1, … one after another during the backup.
	var created atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if st := a.API(t, admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": fmt.Sprintf("w%04d", i), "isOrg": true}, nil); st != 201 {
				t.Errorf("creating w%04d: %d", i, st)
				return
			}
			created.Add(1)
		}
	}()
	for created.Load() < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	bk := takeBackup(t, a)
	close(stop)
	wg.Wait()

	m, err := backup.Verify(bytes.NewReader(bk))
	if err != nil {
		t.Fatalf("the backup does not verify: %v", err)
	}
	if m.SourceReplica != a.Opts.ReplicaID || m.ClusterID == "" || m.EtcdRevision == 0 {
		t.Fatalf("manifest: %+v", m)
	}
	var writes []string
	paths := map[string]bool{}
	err = backup.Walk(bytes.NewReader(bk), func(p string, b []byte) error {
		paths[p] = true
		if name, ok := strings.CutPrefix(p, "meta/accounts/w"); ok {
			writes = append(writes, strings.TrimSuffix(name, ".json"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// One revision: the writer's accounts form an unbroken prefix.
	sort.Strings(writes)
	for i, w := range writes {
		if w != fmt.Sprintf("%04d", i) {
			t.Fatalf("accounts in the backup skip w%04d (have %v): not one revision", i, writes)
		}
	}
	for _, p := range []string{"config/cluster.json", "config/settings.json", "certs/ca.json", "certs/token-key.json", "meta/accounts/alice.json"} {
		if !paths[p] {
			t.Errorf("the backup lacks %s", p)
		}
	}
	for p := range paths {
		if strings.HasPrefix(p, "meta/replicas/") {
			t.Errorf("the backup holds a replica health report: %s", p)
		}
	}
	t.Logf("backup: %d bytes, %d files, revision %d, %d of %d concurrent accounts", len(bk), len(m.Files), m.EtcdRevision, len(writes), created.Load())

	// Restore on a new replica that shares the blob storage.
	o := restoreOptions(t, bk, filepath.Join(t.TempDir(), "restored"))
	o.ReplicaID = "bbbbbbbbbbbb"
	o.StorageRoot = filepath.Join(a.Opts.DataDir, "registry")
	os.MkdirAll(filepath.Join(o.DataDir, "restore"), 0o700)
	if err := os.WriteFile(filepath.Join(o.DataDir, "restore", "backup.tar"), bk, 0o600); err != nil {
		t.Fatal(err)
	}
	a.Stop()
	b := registrytest.Start(t, o)
	checkRestored(t, b, img, nested)
	if _, err := os.Stat(filepath.Join(o.DataDir, "restore", "backup.tar")); !os.IsNotExist(err) {
		t.Errorf("the received backup is still on disk after the load: %v", err)
	}
	var status struct {
		Members       []map[string]any          `json:"members"`
		ReplicaHealth map[string]map[string]any `json:"replica_health"`
	}
	if st := b.API(t, admin, adminPW, "GET", "/api/v0/meta/cluster_status", nil, &status); st != 200 || len(status.Members) != 1 {
		t.Fatalf("cluster_status after restore: %d %+v", st, status)
	}
	if _, old := status.ReplicaHealth[a.Opts.ReplicaID]; old {
		t.Errorf("the old replica's health report came back: %+v", status.ReplicaHealth)
	}
	// A restart starts from the loaded metadata, not from the backup again.
	checkRestored(t, b.Restart(), img, nested)
}

func checkRestored(t *testing.T, b *registrytest.Replica, img, nested registrytest.Image) {
	t.Helper()
	for _, u := range []string{"alice", "bob", "carol"} {
		b.Token(t, u, u+"-password") // fails the test if the password is not accepted
	}
	accept := map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}
	for _, c := range []struct {
		user, repo string
		img        registrytest.Image
		want       int
	}{
		{"alice", "acme/app", img, 200}, {"bob", "acme/app", img, 200}, {"carol", "acme/app", img, 401},
		{"bob", "alice/charts/hello", nested, 200}, {"carol", "alice/charts/hello", nested, 401},
	} {
		tok := b.Token(t, c.user, c.user+"-password", "repository:"+c.repo+":pull")
		st, h, _ := b.Do(t, "GET", "/v2/"+c.repo+"/manifests/v1", tok, nil, accept)
		if st != c.want || (st == 200 && h.Get("Docker-Content-Digest") != c.img.ManifestDigest) {
			t.Errorf("%s pulls %s:v1 after restore: %d %s, want %d %s", c.user, c.repo, st, h.Get("Docker-Content-Digest"), c.want, c.img.ManifestDigest)
		}
	}
	for _, p := range []string{"acme/app", "alice/charts%2Fhello"} {
		var repo map[string]any
		if st := b.API(t, admin, adminPW, "GET", "/api/v0/repositories/"+p, nil, &repo); st != 200 || repo["visibility"] != "private" {
			t.Errorf("%s after restore: %d %v", p, st, repo)
		}
	}
}

// TestRestoreUpload: a replica started with Restore waits, stays live, takes
// a backup only from a client holding the backed-up CA's restore
// certificate, refuses damaged ones, and loads the first one that verifies.
func TestRestoreUpload(t *testing.T) {
	a := registrytest.StartNew(t)
	setupAccounts(t, a)
	bk := takeBackup(t, a)
	a.Stop()

	o := restoreOptions(t, bk, filepath.Join(t.TempDir(), "restored"))
	o.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t))
	o.HTTPSAddr = fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type started struct {
		r   *registry.Replica
		err error
	}
	done := make(chan started, 1)
	go func() {
		r, err := registry.Start(ctx, o)
		done <- started{r, err}
	}()

	caPEM, _ := os.ReadFile(o.CACertFile)
	keyPEM, _ := os.ReadFile(o.CAKeyFile)
	ca, err := pki.ParseCA(caPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := func(cn string, signer *pki.CA) *http.Client {
		cfg := &tls.Config{RootCAs: pool, ServerName: "dtr-replica"}
		if signer != nil {
			kp, err := signer.Issue(cn, nil, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			cert, _ := kp.TLSCertificate()
			cfg.Certificates = []tls.Certificate{cert}
		}
		return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + o.HTTPAddr + "/_live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the waiting replica is not live: %v", err)
		}
	}
	if resp, err := http.Get("http://" + o.HTTPAddr + "/_ping"); err != nil || resp.StatusCode != 503 {
		t.Fatalf("/_ping while waiting: %v %v", err, resp)
	}
	put := func(c *http.Client, body []byte) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, "https://"+o.HTTPSAddr+backup.RestorePath, bytes.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	other, _ := pki.NewCA("another cluster")
	flipped := append([]byte(nil), bk...)
	i := bytes.Index(flipped, []byte(`"key":"/dtr/accounts/alice"`))
	if i < 0 {
		t.Fatal("no alice record in the backup")
	}
	flipped[i+len(`"key":"/dtr/accounts/`)] ^= 0x20 // alice → Alice, a record that still parses
	for _, c := range []struct {
		name   string
		client *http.Client
		body   []byte
		status int
		want   string
	}{
		{"no client certificate", client("", nil), bk, 401, "client certificate"},
		{"another CA's certificate", client(backup.RestoreClientName, other), bk, 401, "client certificate"},
		{"the CA's certificate for another purpose", client("dtr-replica", ca), bk, 401, "client certificate"},
		{"a truncated backup", client(backup.RestoreClientName, ca), bk[:len(bk)/3], 400, "truncated"},
		{"a flipped byte", client(backup.RestoreClientName, ca), flipped, 400, "does not match its sha256"},
	} {
		st, body := put(c.client, c.body)
		if st != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s, want %d %q", c.name, st, body, c.status, c.want)
		}
	}
	select {
	case s := <-done:
		t.Fatalf("the replica stopped waiting after refused uploads: %v", s.err)
	default:
	}
	if st, body := put(client(backup.RestoreClientName, ca), bk); st != 200 {
		t.Fatalf("upload: %d %s", st, body)
	}
	s := <-done
	if s.err != nil {
		t.Fatalf("the replica did not start from the backup: %v", s.err)
	}
	httpLn, _ := net.Listen("tcp", o.HTTPAddr)
	httpsLn, _ := net.Listen("tcp", o.HTTPSAddr)
	sctx, scancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.r.ServeListeners(sctx, httpLn, httpsLn) }()
	defer func() { scancel(); <-served; s.r.Close() }()
	req, _ := http.NewRequest(http.MethodGet, "https://"+o.HTTPSAddr+"/api/v0/accounts/alice", nil)
	req.SetBasicAuth("alice", "alice-password")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := client("", nil).Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice after the restore: %v %v", err, resp)
		}
	}
}
