package registry_test

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/member"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// gcProcess is a dtr-registry binary and the configuration it is started
// with, again and again on the same data and ports.
type gcProcess struct {
	bin, dir, pw, socket, peer string
	httpPort, httpsPort        int
}

// newGCProcess builds cmd/dtr-registry and picks its directories, ports and
// admin password.
func newGCProcess(t *testing.T) *gcProcess {
	t.Helper()
	dir := t.TempDir()
	p := &gcProcess{bin: filepath.Join(dir, "dtr-registry"), dir: dir, pw: "gc-" + hex.EncodeToString(randomBytes(12)),
		httpPort: registrytest.FreePort(t), httpsPort: registrytest.FreePort(t),
		peer: fmt.Sprintf("http://127.0.0.1:%d", registrytest.FreePort(t))}
	build := exec.Command("go", "build", "-o", p.bin, "github.com/dtr-registry/dtr/cmd/dtr-registry")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building dtr-registry: %v\n%s", err, out)
	}
	p.socket = member.ClientSocketIn(filepath.Join(dir, "data"))
	if len(p.socket) > member.MaxClientSocketPath {
		short, err := os.MkdirTemp("", "dtr-gc-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(short) })
		p.socket = filepath.Join(short, "etcd.sock")
	}
	if err := os.WriteFile(filepath.Join(dir, "admin-password"), []byte(p.pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// storage is the filesystem storage's root.
func (p *gcProcess) storage() string { return filepath.Join(p.dir, "storage") }

// start starts the replica (a new single-replica cluster the first time,
// the same member afterwards) and waits until it answers /_ping; it is
// killed when the test ends if still running.
func (p *gcProcess) start(t *testing.T, n int) *loadReplica {
	t.Helper()
	logPath := filepath.Join(p.dir, fmt.Sprintf("replica-%d.log", n))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd := exec.Command(p.bin, "serve",
		"--replica-id", "aaaaaaaaaaaa",
		"--data-dir", filepath.Join(p.dir, "data"),
		"--storage-root", p.storage(),
		"--client-socket", p.socket,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", p.httpPort),
		"--https-addr", fmt.Sprintf("127.0.0.1:%d", p.httpsPort),
		"--public-https-port", strconv.Itoa(p.httpsPort),
		"--peer-listen", p.peer, "--peer-advertise", p.peer, "--insecure-peers",
		"--admin-username", registrytest.AdminUser,
		"--admin-password-file", filepath.Join(p.dir, "admin-password"),
		"--external-url", fmt.Sprintf("https://127.0.0.1:%d", p.httpsPort),
		"--log-level", "info",
	)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DTR_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rep := &loadReplica{pid: cmd.Process.Pid, url: fmt.Sprintf("https://127.0.0.1:%d", p.httpsPort), adminPW: p.pw, logPath: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(rep.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-rep.exited:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-rep.exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-rep.exited
		}
		if t.Failed() {
			t.Logf("replica log %d, warnings and errors:\n%s", n, rep.logTail())
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	caFile := filepath.Join(p.dir, "data", "ca", "ca.pem")
	for {
		if pem, err := os.ReadFile(caFile); err == nil {
			if pool := x509.NewCertPool(); pool.AppendCertsFromPEM(pem) {
				rep.pool = pool
				break
			}
		}
		rep.alive(t, deadline, "writing "+caFile)
		time.Sleep(100 * time.Millisecond)
	}
	rep.admin = rep.client(registrytest.AdminUser, p.pw, nil)
	for {
		resp, err := rep.admin.http.Get(rep.url + "/_ping")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return rep
			}
		}
		rep.alive(t, deadline, "answering /_ping with 200")
		time.Sleep(100 * time.Millisecond)
	}
}

// api calls the admin API of rep as the admin, decoding into out.
func gcAPI(rep *loadReplica, method, path string, in, out any) (int, error) {
	var body []byte
	if in != nil {
		body, _ = json.Marshal(in)
	}
	req, err := http.NewRequest(method, rep.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth(registrytest.AdminUser, rep.adminPW)
	req.Header.Set("Content-Type", "application/json")
	resp, err := rep.admin.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decoding %q: %w", method, path, b, err)
		}
	}
	return resp.StatusCode, nil
}

func gcProcJob(t *testing.T, rep *loadReplica, id string) gcJob {
	t.Helper()
	var j gcJob
	if st, err := gcAPI(rep, "GET", "/api/v0/jobs/"+id, nil, &j); err != nil || st != 200 {
		t.Fatalf("GET job %s: %d %v", id, st, err)
	}
	return j
}

// writeGarbage writes n unreferenced blobs straight into the storage under
// root, as pushes whose manifests never came would leave them, and
// returns their digests.
func writeGarbage(t testing.TB, root string, n int, prefix string) []string {
	t.Helper()
	out := make([]string, n)
	for i := range n {
		b := []byte(fmt.Sprintf("%s garbage blob %d", prefix, i))
		d := registrytest.Digest(b)
		hexd := strings.TrimPrefix(d, "sha256:")
		dir := filepath.Join(root, "docker/registry/v2/blobs/sha256", hexd[:2], hexd)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "data"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		out[i] = d
	}
	return out
}

// TestGCReplicaKilledDuringSweep runs a replica as its own process, starts
// a run over 30,000 unreferenced blobs with one sweeper, and SIGKILLs the
// replica once the sweep has deleted some. Restarted on the same data and
// storage, the replica marks the killed job errored once the dead
// process's lease expires and queues its retry; the next run deletes
// exactly what was left, the retry finds nothing, and every tag pulls with
// the bytes pushed.
func TestGCReplicaKilledDuringSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("kill test: skipped with -short")
	}
	p := newGCProcess(t)
	rep := p.start(t, 1)
	repos := []string{"admin/kept0", "admin/kept1", "admin/kept2"}
	var scopes []string
	for _, r := range repos {
		scopes = append(scopes, "repository:"+r+":push,pull,delete")
	}
	tok := rep.token(t, registrytest.AdminUser, p.pw, scopes...)
	st := &loadStats{}
	shared := randomBytes(64 << 10)
	var imgs []loadImage
	for _, repo := range repos {
		for _, tag := range []string{"v1", "v2"} {
			img, err := rep.admin.pushImage(tok, repo, tag, [][]byte{gcConfig, shared, randomBytes(16 << 10)}, st)
			if err != nil {
				t.Fatal(err)
			}
			imgs = append(imgs, img)
		}
	}
	// An image whose manifest is deleted: its own layer and manifest are
	// garbage, the shared layer and config are not.
	gone, err := rep.admin.pushImage(tok, repos[0], "gone", [][]byte{gcConfig, shared, randomBytes(20 << 10)}, st)
	if err != nil {
		t.Fatal(err)
	}
	goneDigest := registrytest.Digest(gone.manifest)
	if resp, b, err := rep.admin.do("DELETE", "/v2/"+repos[0]+"/manifests/"+goneDigest, tok, nil, nil); err != nil || resp.StatusCode != 202 {
		t.Fatalf("deleting %s: %v %s", goneDigest, err, b)
	}
	root := p.storage()
	if _, ok := storedBlobs(t, root)[registrytest.Digest(shared)]; !ok {
		t.Fatalf("the pushed layer is not under %s: the storage layout is not the one this test writes garbage into", root)
	}
	const garbageBlobs = 30000
	garbage := append(writeGarbage(t, root, garbageBlobs, "kill test"), goneDigest, registrytest.Digest(gone.blobs[2]))

	var queued gcJob
	job := map[string]any{"action": "onlinegc", "parameters": map[string]string{"gracePeriod": "0s", "workers": "1"}, "retries": 1}
	if st, err := gcAPI(rep, "POST", "/api/v0/jobs", job, &queued); err != nil || st != http.StatusAccepted {
		t.Fatalf("POST /api/v0/jobs: %d %v", st, err)
	}
	// Killed once the progress (written every second) shows deletions.
	deadline := time.Now().Add(2 * time.Minute)
	var seen gcJob
	for {
		seen = gcProcJob(t, rep, queued.ID)
		if seen.Progress.Phase == "sweeping" && seen.Progress.BlobsSwept > 0 {
			break
		}
		if seen.Finished() || time.Now().After(deadline) {
			t.Fatalf("the run was never seen sweeping: %s %+v; it needs more garbage to be killed in the middle", seen.Status, seen.Progress)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(rep.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-rep.exited
	left := 0
	stored := storedBlobs(t, root)
	for _, d := range garbage {
		if _, ok := stored[d]; ok {
			left++
		}
	}
	t.Logf("killed with %d blobs swept by the last progress report; %d of %d garbage blobs left", seen.Progress.BlobsSwept, left, len(garbage))
	if left == 0 || left == len(garbage) {
		t.Fatalf("%d of %d garbage blobs left at the kill: the kill did not land in the middle of the sweep", left, len(garbage))
	}

	rep = p.start(t, 2)
	var next gcJob
	if st, err := gcAPI(rep, "POST", "/api/v0/jobs", map[string]any{"action": "onlinegc", "parameters": map[string]string{"gracePeriod": "0s"}}, &next); err != nil || st != http.StatusAccepted {
		t.Fatalf("POST /api/v0/jobs after the restart: %d %v", st, err)
	}
	// The dead process's lease lives up to its 30 s after the restart.
	deadline = time.Now().Add(3 * time.Minute)
	for {
		next = gcProcJob(t, rep, next.ID)
		if next.Finished() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run after the restart is still %s: %+v", next.Status, next.Progress)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if next.Status != meta.JobDone || next.Progress.BlobsSwept != int64(left) {
		t.Fatalf("the run after the restart: %s (%s), %d blobs deleted; want done with the %d left", next.Status, next.Error, next.Progress.BlobsSwept, left)
	}
	killed := gcProcJob(t, rep, queued.ID)
	if killed.Status != meta.JobErrored || !strings.Contains(killed.Error, "stopped during the run") || killed.EndTime.IsZero() {
		t.Fatalf("the killed job: %s %q, want errored with the reason", killed.Status, killed.Error)
	}
	// Its retry, queued by the next holder of the lease, finds nothing.
	var list struct{ Jobs []gcJob }
	if st, err := gcAPI(rep, "GET", "/api/v0/jobs?action=onlinegc&limit=10", nil, &list); err != nil || st != 200 {
		t.Fatalf("GET /api/v0/jobs: %d %v", st, err)
	}
	var retry *gcJob
	for i := range list.Jobs {
		if list.Jobs[i].RetryFromID == queued.ID {
			retry = &list.Jobs[i]
		}
	}
	if retry == nil {
		t.Fatalf("no retry of the killed job %s among %d jobs", queued.ID, len(list.Jobs))
	}
	for deadline = time.Now().Add(time.Minute); !retry.Finished(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the retry is still %s", retry.Status)
		}
		*retry = gcProcJob(t, rep, retry.ID)
	}
	if retry.Status != meta.JobDone || retry.Progress.BlobsSwept != 0 {
		t.Fatalf("the retry: %s (%s), %d deleted; want done with nothing to delete", retry.Status, retry.Error, retry.Progress.BlobsSwept)
	}

	stored = storedBlobs(t, root)
	for _, d := range garbage {
		if _, ok := stored[d]; ok {
			t.Fatalf("garbage blob %s survived both runs", d)
		}
	}
	tok = rep.token(t, registrytest.AdminUser, p.pw, scopes...)
	for _, img := range imgs {
		if err := rep.admin.pullImage(tok, img, st); err != nil {
			t.Fatal(err)
		}
	}
	if d := danglingManifests(t, root); len(d) > 0 {
		t.Fatalf("manifests with missing blobs:\n%s", strings.Join(d, "\n"))
	}
}
