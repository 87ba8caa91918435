package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// The disaster-recovery drills: the real installer and replica containers
// on the local engine, as an operator runs them.

// blobVolume holds image blobs across destroy and restore: a backup has no
// blobs (they live in the storage), so the drill keeps them in a volume dtr
// did not create, named with --dtr-storage-volume.
const blobVolume = "dtr-e2e-blobs"

// remote is a client of a replica container through its published port,
// trusting the cluster CA as an operator would.
func remote(t *testing.T, httpsPort int) *registrytest.Replica {
	t.Helper()
	ca := MustDocker(t, "config", "inspect", "dtr-ca-cert", "--format", "{{printf \"%s\" .Spec.Data}}")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ca))
	host := fmt.Sprintf("127.0.0.1:%d", httpsPort)
	return &registrytest.Replica{URL: "https://" + host, Host: host,
		Client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "dtr-replica"}}}}
}

// registryState is what a restore must bring back: tag → manifest digest.
type registryState struct {
	mu   sync.Mutex
	tags map[string]string // "repo:tag" → digest
}

func (s *registryState) add(repo, tag, digest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tags[repo+":"+tag] = digest
}

// populate creates accounts, an org, teams, public and private repositories
// with permissions, and pushes several images and tags.
func populate(t *testing.T, r *registrytest.Replica) *registryState {
	t.Helper()
	registrytest.SetupAccounts(t, r, "admin", adminPassword)
	st := &registryState{tags: map[string]string{}}
	push := func(user, repo, tag, layer string) {
		pw := user + "-password"
		if user == "admin" {
			pw = adminPassword
		}
		tok := r.Token(t, user, pw, "repository:"+repo+":push,pull")
		img, code := r.PushImage(t, tok, repo, tag, []byte(layer))
		if code != http.StatusCreated {
			t.Fatalf("%s pushes %s:%s: %d", user, repo, tag, code)
		}
		st.add(repo, tag, img.ManifestDigest)
	}
	push("alice", "acme/app", "v1", "app layer 1")
	push("alice", "acme/app", "v2", "app layer 2")
	push("alice", "acme/app", "latest", "app layer 2")
	push("admin", "acme/pub", "1.0", "public layer")
	push("alice", "alice/own", "1", "alice's own layer")
	return st
}

// pusher pushes new tags of acme/pub until stop is closed.
func pusher(t *testing.T, r *registrytest.Replica, st *registryState, stop chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tok := r.Token(t, "admin", adminPassword, "repository:acme/pub:push,pull")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tag := fmt.Sprintf("bg-%d", i)
			img, code := r.PushImage(t, tok, "acme/pub", tag, []byte("background layer "+tag))
			if code != http.StatusCreated {
				t.Errorf("background push %s: %d", tag, code)
				return
			}
			st.add("acme/pub", tag, img.ManifestDigest)
		}
	}()
	return &wg
}

// verifyRestored checks what the drill promises: every account logs in with
// its old password, every permission holds, every tag pulls with the same
// digest, and every tag the registry lists pulls.
func verifyRestored(t *testing.T, r *registrytest.Replica, st *registryState) {
	t.Helper()
	accept := map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}
	r.Token(t, "admin", adminPassword)
	for _, u := range []string{"alice", "bob", "carol"} {
		r.Token(t, u, u+"-password")
	}
	pull := func(user, repo, ref string) (int, string) {
		pw := user + "-password"
		if user == "admin" {
			pw = adminPassword
		}
		tok := ""
		if user != "" {
			tok = r.Token(t, user, pw, "repository:"+repo+":pull")
		} else {
			tok = r.Token(t, "", "", "repository:"+repo+":pull")
		}
		code, h, _ := r.Do(t, "GET", "/v2/"+repo+"/manifests/"+ref, tok, nil, accept)
		return code, h.Get("Docker-Content-Digest")
	}
	for _, c := range []struct {
		user, repo string
		want       int
	}{{"alice", "acme/app", 200}, {"bob", "acme/app", 200}, {"carol", "acme/app", 401}, {"", "acme/app", 401}, {"", "acme/pub", 200}} {
		ref := "v1"
		if c.repo == "acme/pub" {
			ref = "1.0"
		}
		if code, _ := pull(c.user, c.repo, ref); code != c.want {
			t.Errorf("%q pulls %s after the restore: %d, want %d", c.user, c.repo, code, c.want)
		}
	}
	bobTok := r.Token(t, "bob", "bob-password", "repository:acme/app:push,pull")
	if code, _, _ := r.Do(t, "PUT", "/v2/acme/app/manifests/bob", bobTok, []byte("{}"), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}); code != 401 {
		t.Errorf("bob (read-only) pushes after the restore: %d, want 401", code)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	repos := map[string]bool{}
	for ref, digest := range st.tags {
		repo, tag, _ := strings.Cut(ref, ":")
		repos[repo] = true
		if code, got := pull("admin", repo, tag); code != 200 || got != digest {
			t.Errorf("%s after the restore: %d %s, want 200 %s", ref, code, got, digest)
		}
	}
	listed := 0
	for repo := range repos {
		tok := r.Token(t, "admin", adminPassword, "repository:"+repo+":pull")
		code, _, body := r.Do(t, "GET", "/v2/"+repo+"/tags/list", tok, nil, nil)
		var list struct{ Tags []string }
		if err := json.Unmarshal(body, &list); code != 200 || err != nil {
			t.Fatalf("tags of %s: %d %v %s", repo, code, err, body)
		}
		for _, tag := range list.Tags {
			listed++
			if code, _ := pull("admin", repo, tag); code != 200 {
				t.Errorf("%s:%s is listed but does not pull: %d", repo, tag, code)
			}
		}
	}
	t.Logf("verified %d pushed tags and %d listed tags in %d repositories", len(st.tags), listed, len(repos))
}

// takeBackup runs dtr backup from replica id into a file.
func takeBackup(t *testing.T, id string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dtr.bkp")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	log, code := dtrIO(t, nil, f, nil, "backup", "--existing-replica-id", id)
	f.Close()
	if code != 0 || !strings.Contains(log, "Backup complete.") || !strings.Contains(log, "private keys") {
		t.Fatalf("backup: exit %d\n%s", code, log)
	}
	st, _ := os.Stat(path)
	t.Logf("backup from %s: %d bytes in %v", id, st.Size(), time.Since(start).Round(10*time.Millisecond))
	return path
}

func restoreArgs(node string, extra ...string) []string {
	return append([]string{"restore", "--ucp-node", node, "--replica-http-port", "31080", "--replica-https-port", "31443"}, extra...)
}

// restoreFrom runs dtr restore with the file on stdin.
func restoreFrom(t *testing.T, path string, args []string) (string, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return dtrIO(t, f, nil, nil, args...)
}

// restoreInContainer runs restore from the dtr image, the backup on stdin:
// docker run -i --rm -e UCP_PASSWORD -v /var/run/docker.sock:… dtr:<v> restore … < dtr.bkp
func restoreInContainer(t *testing.T, path string, args []string) (string, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// --network host: the test swarm advertises 127.0.0.1, which inside the
	// container's own network namespace would be the container itself.
	cmd := exec.Command("docker", append([]string{"run", "-i", "--rm", "--network", "host", "-e", "UCP_PASSWORD", "-e", "NO_COLOR=1",
		"-v", "/var/run/docker.sock:/var/run/docker.sock", images.Installer(),
		args[0], "--ucp-url", "unix:///var/run/docker.sock", "--ucp-username", "admin"}, args[1:]...)...)
	cmd.Env = append(os.Environ(), "UCP_PASSWORD="+adminPassword)
	cmd.Stdin = f
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func destroyAll(t *testing.T) {
	t.Helper()
	for _, id := range replicaIDs(t) {
		mustDTR(t, "destroy", "--replica-id", id)
	}
	if left := labelled(t); left != "" {
		t.Fatalf("objects remain after destroying every replica:\n%s", left)
	}
}

// otherVersion rewrites a backup as if another minor version wrote it,
// re-hashed and re-sealed, so that only the version rule can refuse it.
func otherVersion(t *testing.T, path, version string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := backup.Verify(f)
	if err != nil {
		t.Fatal(err)
	}
	f.Seek(0, io.SeekStart)
	var out bytes.Buffer
	w, err := backup.NewWriter(&out, version)
	if err != nil {
		t.Fatal(err)
	}
	if err := backup.Walk(f, func(p string, b []byte) error { return w.Add(p, int64(len(b)), bytes.NewReader(b)) }); err != nil {
		t.Fatal(err)
	}
	m.DTRVersion = version
	if err := w.Close(m); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Verify(bytes.NewReader(out.Bytes())); err != nil {
		t.Fatalf("the rewritten backup must verify: %v", err)
	}
	return out.Bytes()
}

// TestDisasterRecovery: backup while a pusher runs, destroy, restore; bad
// input refused with the cluster untouched; then with three replicas; then
// an emergency repair after two of three replicas stop.
func TestDisasterRecovery(t *testing.T) {
	node := cleanSwarm(t, blobVolume)

	first := replicaID(t, mustDTR(t, "install", "--ucp-node", node, "--replica-http-port", "31080", "--replica-https-port", "31443", "--dtr-storage-volume", blobVolume))
	reg := remote(t, 31443)
	state := populate(t, reg)

	// Back up while a client pushes.
	stop := make(chan struct{})
	wg := pusher(t, reg, state, stop)
	time.Sleep(500 * time.Millisecond)
	bk := takeBackup(t, first)
	close(stop)
	wg.Wait()
	if out, err := exec.Command("tar", "-tf", bk).Output(); err != nil || !strings.HasPrefix(string(out), backup.Root(images.Version)+"/\n") || !strings.Contains(string(out), "/manifest.json") {
		t.Fatalf("tar -tf dtr.bkp: %v\n%.500s", err, out)
	}
	raw, _ := os.ReadFile(bk)

	// Refusals while the replica exists.
	before := labelled(t)
	var out bytes.Buffer
	if log, code := dtrIO(t, nil, &out, []string{"UCP_PASSWORD=wrong-password"}, "backup", "--existing-replica-id", first); code == 0 || !strings.Contains(log, "refused the credentials") || out.Len() != 0 {
		t.Errorf("backup with a wrong password: exit %d, %d bytes on stdout\n%s", code, out.Len(), log)
	}
	if log, code := dtrIO(t, nil, &out, nil, "backup", "--existing-replica-id", "0123456789ab"); code != 2 || !strings.Contains(log, "could not be found") || out.Len() != 0 {
		t.Errorf("backup from an unknown replica: exit %d\n%s", code, log)
	}
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	log, code := dtrIO(t, nil, tty, nil, "backup", "--existing-replica-id", first)
	tty.Close()
	ptmx.Close()
	if code != 2 || !strings.Contains(log, "Terminal mode detected.") {
		t.Errorf("backup with a terminal on stdout: exit %d\n%s", code, log)
	}
	if log, code := restoreFrom(t, bk, restoreArgs(node, "--dtr-storage-volume", blobVolume)); code == 0 || !strings.Contains(log, "destroy every replica first") {
		t.Errorf("restore while a replica exists: exit %d\n%s", code, log)
	}
	if after := labelled(t); after != before {
		t.Fatalf("refused commands changed the cluster:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	destroyAll(t)

	// Bad backups: each refused before anything is created.
	flip := func(at int) []byte {
		c := append([]byte(nil), raw...)
		c[at] ^= 0x20
		return c
	}
	alice := bytes.Index(raw, []byte(`"key":"/dtr/accounts/alice"`)) + len(`"key":"/dtr/accounts/`)
	// A letter of the cluster ID: flipped, it is another valid ID, so only the
	// manifest's checksum can tell.
	cluster := bytes.Index(raw, []byte(`"clusterID": "`)) + len(`"clusterID": "`)
	for raw[cluster] < 'a' {
		cluster++
	}
	var unrelated bytes.Buffer
	tw := tar.NewWriter(&unrelated)
	for _, name := range []string{"etc/hostname", "etc/motd"} {
		tw.WriteHeader(&tar.Header{Name: name, Size: 4, Mode: 0o644})
		tw.Write([]byte("data"))
	}
	tw.Close()
	bad := []struct {
		name string
		data []byte
		want string
	}{
		{"empty stdin", nil, "the stream is empty"},
		{"a flipped byte in a record", flip(alice), "does not match its sha256"},
		{"a flipped byte in the manifest", flip(cluster), "does not match its checksum"},
		{"a tar of unrelated files", unrelated.Bytes(), "this is not a dtr backup"},
		{"a backup of another minor version", otherVersion(t, bk, "0.9.0"), "Couldn't restore from backup version 0.9.0 on " + images.Version},
	}
	for _, cut := range []int{1, 700, len(raw) / 3, len(raw) * 2 / 3, len(raw) - 600} {
		bad = append(bad, struct {
			name string
			data []byte
			want string
		}{fmt.Sprintf("truncated at %d of %d bytes", cut, len(raw)), raw[:cut], "trunc"})
	}
	for _, c := range bad {
		log, code := dtrIO(t, bytes.NewReader(c.data), nil, nil, restoreArgs(node, "--dtr-storage-volume", blobVolume)...)
		if code == 0 || !strings.Contains(log, c.want) || !strings.Contains(log, "nothing was changed") {
			t.Errorf("restore of %s: exit %d, log lacks %q:\n%s", c.name, code, c.want, log)
		}
		if left := labelled(t); left != "" {
			t.Fatalf("restore of %s left objects behind:\n%s", c.name, left)
		}
	}
	if log, code := restoreFrom(t, bk, restoreArgs(node)); code != 2 || !strings.Contains(log, "Must explicitly set one of --dtr-use-default-storage, --dtr-storage-volume, or --nfs-storage-url") {
		t.Errorf("restore without a storage flag: exit %d\n%s", code, log)
	}
	if left := labelled(t); left != "" {
		t.Fatalf("a refused restore left objects behind:\n%s", left)
	}

	// Restore; the replica gets the backed-up replica's ID.
	start := time.Now()
	log, code = restoreFrom(t, bk, restoreArgs(node, "--dtr-storage-volume", blobVolume))
	if code != 0 || !strings.Contains(log, "Restore complete.") {
		t.Fatalf("restore: exit %d\n%s", code, log)
	}
	t.Logf("restore to healthy: %v", time.Since(start).Round(100*time.Millisecond))
	if !strings.Contains(log, "--existing-replica-id "+first) {
		t.Errorf("the restored replica should keep the ID %s:\n%s", first, log)
	}
	reg = remote(t, 31443)
	verifyRestored(t, reg, state)

	// Three replicas: back up from a joined one, destroy all, restore, join two.
	second := replicaID(t, mustDTR(t, "join", "--ucp-node", node, "--existing-replica-id", first, "--replica-http-port", "32080", "--replica-https-port", "32443"))
	mustDTR(t, "join", "--ucp-node", node, "--existing-replica-id", first, "--replica-http-port", "33080", "--replica-https-port", "33443")
	bk2 := takeBackup(t, second)
	destroyAll(t)
	// This time as the README shows it: the installer image, the backup on stdin.
	log, code = restoreInContainer(t, bk2, restoreArgs(node, "--dtr-storage-volume", blobVolume))
	if code != 0 || !strings.Contains(log, "Restore complete.") || !strings.Contains(log, "--existing-replica-id "+second) {
		t.Fatalf("restore of the 3-replica backup with docker run -i dtr restore: exit %d\n%s", code, log)
	}
	j1 := replicaID(t, mustDTR(t, "join", "--ucp-node", node, "--existing-replica-id", second, "--replica-http-port", "32080", "--replica-https-port", "32443"))
	j2 := replicaID(t, mustDTR(t, "join", "--ucp-node", node, "--existing-replica-id", second, "--replica-http-port", "33080", "--replica-https-port", "33443"))
	if st := clusterStatus(t, 31443); voters(st) != 3 || st["hasQuorum"] != true {
		t.Fatalf("after restore and two joins: %v", st)
	}
	reg = remote(t, 31443)
	verifyRestored(t, reg, state)
	verifyRestored(t, remote(t, 33443), state)

	// Emergency repair: two of three replicas stop, quorum is lost.
	for _, id := range []string{j1, j2} {
		MustDocker(t, "service", "scale", "-d", "dtr-registry-"+id+"=0")
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		resp, err := reg.Client.Get(reg.URL + "/_ping")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 503 && strings.Contains(string(b), "quorum") {
				t.Logf("after two replicas stopped, /_ping: %s", bytes.TrimSpace(b))
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/_ping of the survivor did not report lost quorum: %v", err)
		}
	}
	if log, code := dtr(t, "emergency-repair", "--existing-replica-id", second); code != 2 || !strings.Contains(log, "--yes") {
		t.Errorf("emergency-repair without --yes and without a terminal: exit %d\n%s", code, log)
	}
	start = time.Now()
	log = mustDTR(t, "emergency-repair", "--existing-replica-id", second, "--prune", "--yes")
	if !strings.Contains(log, "Emergency repair is complete.") || !strings.Contains(log, "Your cluster size is now 1") {
		t.Fatalf("emergency-repair log:\n%s", log)
	}
	t.Logf("emergency repair to healthy: %v", time.Since(start).Round(100*time.Millisecond))
	if st := clusterStatus(t, 31443); voters(st) != 1 || st["hasQuorum"] != true || len(st["replica_health"].(map[string]any)) != 1 {
		t.Fatalf("after the repair: %v", st)
	}
	verifyRestored(t, reg, state)
	if left := labelled(t); strings.Contains(left, j1) || strings.Contains(left, j2) {
		t.Fatalf("objects of the dropped replicas remain after --prune:\n%s", left)
	}
	mustDTR(t, "join", "--ucp-node", node, "--existing-replica-id", second, "--replica-http-port", "32080", "--replica-https-port", "32443")
	if st := clusterStatus(t, 31443); voters(st) != 2 || st["hasQuorum"] != true {
		t.Fatalf("join after the repair: %v", st)
	}
	verifyRestored(t, remote(t, 32443), state)
	destroyAll(t)
}
