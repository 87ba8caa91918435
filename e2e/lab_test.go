package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

// The HA drills run against the lab of make lab-up (lab/up.sh): three
// engines in network namespaces, node1 the Swarm manager with its Engine API
// on tcp://10.231.0.11:2376 (mutual TLS), HAProxy on 127.0.0.1:443, S3 and
// NFS on 10.231.0.1. make e2e-ha sets DTR_LAB.

type lab struct {
	net, run, dir string
	s3Access      string
	s3Secret      string
	lb            string // https://127.0.0.1 (HAProxy)
	ca            []byte
}

func labEnv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func requireLab(t *testing.T) *lab {
	t.Helper()
	if os.Getenv("DTR_LAB") == "" {
		t.Skip("HA drill: needs the lab (make lab-up && make e2e-ha)")
	}
	l := &lab{net: labEnv("NET", "10.231.0"), run: labEnv("RUN", "/run/dtr-lab"), dir: labEnv("LAB", "/var/lib/dtr-lab"),
		s3Access: labEnv("S3_ACCESS", "labaccess"), s3Secret: labEnv("S3_SECRET", "lab-secret-key-0123456789"), lb: "https://127.0.0.1"}
	if _, err := os.Stat(filepath.Join(l.run, "up")); err != nil {
		t.Fatalf("DTR_LAB is set but no lab is up (%v): run make lab-up", err)
	}
	return l
}

func (l *lab) ip(i int) string { return fmt.Sprintf("%s.%d", l.net, 10+i) }

// docker runs the docker CLI against node i's engine.
func (l *lab) docker(t *testing.T, i int, args ...string) string {
	t.Helper()
	return MustDocker(t, append([]string{"-H", "unix://" + l.run + fmt.Sprintf("/node%d/docker.sock", i)}, args...)...)
}

// node kills or starts node i's engine (lab/node.sh).
func (l *lab) node(t *testing.T, op string, i int) {
	t.Helper()
	out, err := exec.Command("../lab/node.sh", op, fmt.Sprint(i)).CombinedOutput()
	if err != nil {
		t.Fatalf("node.sh %s %d: %v\n%s", op, i, err, out)
	}
}

// dtr runs the installer through the manager's mutual-TLS Engine API with
// the lab's client bundle, the way an operator reaches UCP/MKE.
func (l *lab) dtr(t *testing.T, stdin io.Reader, stdout io.Writer, args ...string) (string, int) {
	t.Helper()
	return dtrIO(t, stdin, stdout, []string{"UCP_URL=tcp://" + l.ip(1) + ":2376", "DOCKER_CERT_PATH=" + filepath.Join(l.dir, "tls")}, args...)
}

func (l *lab) mustDTR(t *testing.T, args ...string) string {
	t.Helper()
	start := time.Now()
	log, code := l.dtr(t, nil, nil, args...)
	if code != 0 {
		t.Fatalf("dtr %s: exit %d\n%s", strings.Join(args, " "), code, log)
	}
	t.Logf("dtr %s: %v", args[0], time.Since(start).Round(100*time.Millisecond))
	return log
}

// client reaches a replica or the load balancer, trusting the cluster CA.
func (l *lab) client(t *testing.T, url string) *registrytest.Replica {
	t.Helper()
	if l.ca == nil {
		l.ca = []byte(l.docker(t, 1, "config", "inspect", "dtr-ca-cert", "--format", "{{printf \"%s\" .Spec.Data}}"))
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(l.ca)
	host := strings.TrimPrefix(url, "https://")
	return &registrytest.Replica{URL: url, Host: host, Client: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "dtr-replica"}, MaxIdleConnsPerHost: 4}}}
}

// useS3 switches the cluster's storage to the lab's S3 bucket through c.
func (l *lab) useS3(t *testing.T, c *registrytest.Replica) {
	t.Helper()
	s3 := map[string]any{"type": "s3", "s3": map[string]any{"region": "us-east-1", "bucket": "dtr", "regionEndpoint": "http://" + l.net + ".1:7070",
		"accessKey": l.s3Access, "secretKey": l.s3Secret, "forcePathStyle": true, "secure": false}}
	if st := c.API(t, "admin", adminPassword, "PATCH", "/api/v0/meta/settings", map[string]any{"storage": s3}, nil); st != 200 {
		t.Fatalf("switching to S3: %d", st)
	}
}

// haproxyStatus reads each lab server's status from HAProxy's admin socket.
func (l *lab) haproxyStatus(t *testing.T) map[string]string {
	t.Helper()
	out, err := l.readHAProxyStatus()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readHAProxyStatus is haproxyStatus for a goroutine: an error, not a
// failed test.
func (l *lab) readHAProxyStatus() (map[string]string, error) {
	c, err := net.Dial("unix", filepath.Join(l.run, "haproxy", "admin.sock"))
	if err != nil {
		return nil, fmt.Errorf("haproxy admin socket: %v", err)
	}
	defer c.Close()
	fmt.Fprint(c, "show stat\n")
	b, _ := io.ReadAll(c)
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(b, []byte("# "))))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		return nil, fmt.Errorf("show stat: %v %s", err, b)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	out := map[string]string{}
	for _, row := range rows[1:] {
		if len(row) > col["status"] && row[col["pxname"]] == "registry_nodes" && strings.HasPrefix(row[col["svname"]], "node") {
			out[row[col["svname"]]] = row[col["status"]]
		}
	}
	return out, nil
}

func (l *lab) waitLB(t *testing.T, node, status string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if l.haproxyStatus(t)[node] == status {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("HAProxy did not mark %s %s within %v: %v", node, status, within, l.haproxyStatus(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitPing waits until the replica on node i answers /_ping with want.
func (l *lab) waitPing(t *testing.T, i, want int, within time.Duration) time.Duration {
	t.Helper()
	r := l.client(t, "https://"+l.ip(i))
	r.Client.Timeout = 3 * time.Second
	start := time.Now()
	last := ""
	for time.Since(start) < within {
		resp, err := r.Client.Get(r.URL + "/_ping")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b))
			if resp.StatusCode == want {
				return time.Since(start)
			}
		} else {
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("node%d /_ping: no %d within %v (last: %s)", i, want, within, last)
	return 0
}

// puller pulls a manifest and its layer through the load balancer in a
// loop, each pull on a new connection as a fresh docker pull would, and
// counts the failures with their times.
type puller struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []time.Time
	stop       chan struct{}
	done       sync.WaitGroup
}

func startPuller(t *testing.T, l *lab, repo, tag string) *puller {
	return startPullLoop(t, l.client(t, l.lb), repo, tag)
}

// startPullLoop is the pull loop against lb: the load balancer, or one
// replica's port.
func startPullLoop(t *testing.T, lb *registrytest.Replica, repo, tag string) *puller {
	p := &puller{stop: make(chan struct{})}
	tok := lb.Token(t, "admin", adminPassword, "repository:"+repo+":pull")
	accept := "application/vnd.oci.image.manifest.v1+json"
	pull := func() error {
		tr := &http.Transport{TLSClientConfig: lb.Client.Transport.(*http.Transport).TLSClientConfig, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		req, _ := http.NewRequest("GET", lb.URL+"/v2/"+repo+"/manifests/"+tag, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", accept)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("manifest: %s", resp.Status)
		}
		i := bytes.Index(body, []byte(`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"`))
		if i < 0 {
			return fmt.Errorf("manifest without a layer")
		}
		rest := body[i+len(`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"`):]
		digest := string(rest[:bytes.IndexByte(rest, '"')])
		req, _ = http.NewRequest("GET", lb.URL+"/v2/"+repo+"/blobs/"+digest, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err = c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("blob: %s", resp.Status)
		}
		return nil
	}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			if err := pull(); err != nil {
				p.failed.Add(1)
				p.mu.Lock()
				p.failures = append(p.failures, time.Now())
				p.mu.Unlock()
			} else {
				p.ok.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return p
}

func (p *puller) finish() {
	close(p.stop)
	p.done.Wait()
}

func (p *puller) failedAfter(at time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, f := range p.failures {
		if f.After(at) {
			n++
		}
	}
	return n
}

// labReplicaIDs maps node number → replica ID from the manager's services.
func (l *lab) replicas(t *testing.T) map[int]string {
	t.Helper()
	out := map[int]string{}
	for _, line := range strings.Split(l.docker(t, 1, "service", "ls", "--filter", "label=com.docker.dtr.role=registry",
		"--format", `{{.Name}}`), "\n") {
		if line == "" {
			continue
		}
		lbl := l.docker(t, 1, "service", "inspect", "--format", `{{index .Spec.Labels "com.docker.dtr.node"}} {{index .Spec.Labels "com.docker.dtr.replica"}}`, line)
		var n int
		var id string
		fmt.Sscanf(lbl, "node%d %s", &n, &id)
		out[n] = id
	}
	return out
}

func (l *lab) destroyAll(t *testing.T) {
	t.Helper()
	for _, id := range l.replicas(t) {
		l.mustDTR(t, "destroy", "--replica-id", id)
	}
}

// labPushPull pushes and pulls an image with the real docker CLI through
// the load balancer, trusting the cluster CA as an operator would.
func (l *lab) pushPull(t *testing.T, tag string) {
	t.Helper()
	certs := "/etc/docker/certs.d/127.0.0.1"
	if err := os.MkdirAll(certs, 0o755); err != nil {
		t.Skipf("cannot trust the CA in %s: %v", certs, err)
	}
	t.Cleanup(func() { os.RemoveAll(certs) })
	os.WriteFile(filepath.Join(certs, "ca.crt"), l.ca, 0o644)
	cfg := t.TempDir()
	env := append(os.Environ(), "DOCKER_CONFIG="+cfg, "DOCKER_BUILDKIT=0")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte(tag+time.Now().String()), 0o644)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY f /\n"), 0o644)
	ref := "127.0.0.1/admin/ha:" + tag
	for _, args := range [][]string{
		{"build", "-q", "-t", ref, dir},
		{"login", "127.0.0.1", "-u", "admin", "-p", adminPassword},
		{"push", ref},
		{"rmi", ref},
		{"pull", ref},
		{"rmi", ref},
	} {
		if out, err := Docker(t, env, args...); err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestHA runs the drills in order on one lab.
func TestHA(t *testing.T) {
	l := requireLab(t)
	if left := l.replicas(t); len(left) != 0 {
		t.Fatalf("replicas exist before the drills: %v (make lab-down && make lab-up)", left)
	}
	t.Cleanup(func() {
		for i := 1; i <= 3; i++ {
			exec.Command("../lab/node.sh", "status", fmt.Sprint(i)).Run()
		}
	})
	report := map[string]string{}
	defer func() {
		var b strings.Builder
		for _, k := range []string{"install", "join", "failover window", "failed pulls during failover", "failed pulls after LB marked down", "rejoin to healthy", "quorum lost detected", "emergency repair", "graceful remove failures", "backup", "restore"} {
			if v, ok := report[k]; ok {
				fmt.Fprintf(&b, "MEASURE %s: %s\n", k, v)
			}
		}
		t.Log("\n" + b.String())
	}()

	// 1. Install on node1 through the mTLS manager API, S3 storage, join node2 and node3.
	start := time.Now()
	l.mustDTR(t, "install", "--ucp-node", "node1", "--replica-http-port", "80", "--replica-https-port", "443", "--dtr-external-url", "https://127.0.0.1")
	report["install"] = time.Since(start).Round(100 * time.Millisecond).String()
	lb := l.client(t, l.lb)
	l.waitLB(t, "node1", "UP", 30*time.Second)
	l.useS3(t, lb)
	first := l.replicas(t)[1]
	for _, n := range []string{"node2", "node3"} {
		start = time.Now()
		l.mustDTR(t, "join", "--ucp-node", n, "--existing-replica-id", first, "--replica-http-port", "80", "--replica-https-port", "443")
		report["join"] += time.Since(start).Round(100*time.Millisecond).String() + " "
	}
	for _, n := range []string{"node2", "node3"} {
		l.waitLB(t, n, "UP", 30*time.Second)
	}
	if st := clusterStatusAt(t, lb); voters(st) != 3 {
		t.Fatalf("after two joins: %v", st)
	}
	l.pushPull(t, "1")
	tok := lb.Token(t, "admin", adminPassword, "repository:admin/drill:push,pull")
	img, code := lb.PushImage(t, tok, "admin/drill", "v1", bytes.Repeat([]byte("drill layer "), 20000))
	if code != 201 {
		t.Fatalf("push through the LB: %d", code)
	}
	if s3Files, _ := filepath.Glob(filepath.Join(l.dir, "s3", "data", "dtr", "docker", "registry", "v2", "repositories", "admin", "*")); len(s3Files) == 0 {
		t.Fatalf("nothing in the S3 bucket: the replicas do not use S3")
	}

	// 2. Kill node2's engine while a client pulls through the load balancer.
	p := startPuller(t, l, "admin/drill", "v1")
	time.Sleep(2 * time.Second)
	killed := time.Now()
	l.node(t, "kill", 2)
	window := l.waitLB(t, "node2", "DOWN", 30*time.Second)
	markedDown := time.Now()
	time.Sleep(10 * time.Second)
	during, after := int(p.failed.Load()), p.failedAfter(markedDown)
	report["failover window"] = window.Round(100 * time.Millisecond).String()
	report["failed pulls during failover"] = fmt.Sprintf("%d of %d", during, p.ok.Load()+int64(during))
	report["failed pulls after LB marked down"] = fmt.Sprint(after)
	if after != 0 {
		t.Errorf("%d pulls failed after HAProxy marked node2 down", after)
	}
	l.node(t, "start", 2)
	report["rejoin to healthy"] = l.waitPing(t, 2, 200, 3*time.Minute).Round(100*time.Millisecond).String() + " after the engine started"
	_ = killed
	p.finish()

	// 3. Kill two of three engines: quorum is lost; emergency-repair on node1.
	l.node(t, "kill", 2)
	l.node(t, "kill", 3)
	report["quorum lost detected"] = l.waitPing(t, 1, 503, time.Minute).Round(100 * time.Millisecond).String()
	start = time.Now()
	log := l.mustDTR(t, "emergency-repair", "--existing-replica-id", first, "--yes")
	report["emergency repair"] = time.Since(start).Round(100 * time.Millisecond).String()
	if !strings.Contains(log, "Emergency repair is complete.") {
		t.Fatalf("emergency-repair:\n%s", log)
	}
	// The repair ends when the replica answers healthy; HAProxy, which
	// marked it down during the outage, takes it back after "rise 2"
	// checks a second apart.
	report["emergency repair"] += ", in HAProxy " + l.waitLB(t, "node1", "UP", 30*time.Second).Round(100*time.Millisecond).String() + " later"
	l.verifyPull(t, img)
	l.node(t, "start", 2)
	l.node(t, "start", 3)
	for _, n := range []string{"node2", "node3"} {
		l.mustDTR(t, "join", "--ucp-node", n, "--existing-replica-id", first, "--replica-http-port", "80", "--replica-https-port", "443")
	}
	for _, n := range []string{"node2", "node3"} {
		l.waitLB(t, n, "UP", 30*time.Second)
	}

	// 4. Remove a replica gracefully while clients pull: no failure.
	p = startPuller(t, l, "admin/drill", "v1")
	time.Sleep(2 * time.Second)
	l.mustDTR(t, "remove", "--existing-replica-id", first, "--replica-ids", l.replicas(t)[3])
	time.Sleep(3 * time.Second)
	p.finish()
	report["graceful remove failures"] = fmt.Sprintf("%d of %d", p.failed.Load(), p.ok.Load()+p.failed.Load())
	if p.failed.Load() != 0 {
		t.Errorf("%d pulls failed while a replica was removed", p.failed.Load())
	}
	l.mustDTR(t, "join", "--ucp-node", "node3", "--existing-replica-id", first, "--replica-http-port", "80", "--replica-https-port", "443")

	// 5. Backup from node3's replica, destroy all, restore on node2, join the others.
	bk := filepath.Join(t.TempDir(), "dtr.bkp")
	f, _ := os.Create(bk)
	start = time.Now()
	log, code = l.dtr(t, nil, f, "backup", "--existing-replica-id", l.replicas(t)[3])
	f.Close()
	report["backup"] = time.Since(start).Round(10 * time.Millisecond).String()
	if code != 0 {
		t.Fatalf("backup: %d\n%s", code, log)
	}
	l.destroyAll(t)
	in, _ := os.Open(bk)
	start = time.Now()
	log, code = l.dtr(t, in, nil, "restore", "--ucp-node", "node2", "--replica-http-port", "80", "--replica-https-port", "443", "--dtr-use-default-storage")
	in.Close()
	report["restore"] = time.Since(start).Round(100 * time.Millisecond).String()
	if code != 0 || !strings.Contains(log, "Restore complete.") {
		t.Fatalf("restore: %d\n%s", code, log)
	}
	restored := l.replicas(t)[2]
	for _, n := range []string{"node1", "node3"} {
		l.mustDTR(t, "join", "--ucp-node", n, "--existing-replica-id", restored, "--replica-http-port", "80", "--replica-https-port", "443")
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		l.waitLB(t, n, "UP", 30*time.Second)
	}
	l.verifyPull(t, img)
	l.pushPull(t, "2")

	// 6. Shared host-path storage: the same directory on every node.
	l.destroyAll(t)
	shared := filepath.Join(l.dir, "shared")
	l.mustDTR(t, "install", "--ucp-node", "node1", "--replica-http-port", "80", "--replica-https-port", "443", "--dtr-storage-volume", shared)
	first = l.replicas(t)[1]
	for _, n := range []string{"node2", "node3"} {
		l.mustDTR(t, "join", "--ucp-node", n, "--existing-replica-id", first, "--replica-http-port", "80", "--replica-https-port", "443")
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		l.waitLB(t, n, "UP", 30*time.Second)
	}
	l.ca = nil
	l.pushPull(t, "shared")
	if repos, _ := filepath.Glob(filepath.Join(shared, "docker", "registry", "v2", "repositories", "admin", "ha")); len(repos) == 0 {
		t.Fatalf("the push is not in the shared directory %s", shared)
	}
	l.destroyAll(t)
}

func clusterStatusAt(t *testing.T, r *registrytest.Replica) map[string]any {
	t.Helper()
	var st map[string]any
	if code := r.API(t, "admin", adminPassword, "GET", "/api/v0/meta/cluster_status", nil, &st); code != 200 {
		t.Fatalf("cluster_status: %d", code)
	}
	return st
}

// verifyPull pulls img through the load balancer.
func (l *lab) verifyPull(t *testing.T, img registrytest.Image) {
	t.Helper()
	lb := l.client(t, l.lb)
	tok := lb.Token(t, "admin", adminPassword, "repository:admin/drill:pull")
	code, h, _ := lb.Do(t, "GET", "/v2/admin/drill/manifests/v1", tok, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	if code != 200 || h.Get("Docker-Content-Digest") != img.ManifestDigest {
		t.Fatalf("admin/drill:v1 through the LB: %d %s", code, h.Get("Docker-Content-Digest"))
	}
}

// TestHANFS: the lab's NFS server is reachable from a node with the
// userspace client; a real NFS-backed replica needs an NFS-capable kernel.
func TestHANFS(t *testing.T) {
	l := requireLab(t)
	url := "nfs://" + l.net + ".1/export"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src := filepath.Join(t.TempDir(), "probe.txt")
	os.WriteFile(src, []byte("written from node2\n"), 0o644)
	out, err := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/node2", "--", "nfs-cp", src, url+"/probe.txt?version=4").CombinedOutput()
	if err != nil {
		t.Fatalf("nfs-cp from node2 to %s: %v\n%s", url, err, out)
	}
	if b, err := os.ReadFile(filepath.Join(l.dir, "nfs", "probe.txt")); err != nil || string(b) != "written from node2\n" {
		t.Fatalf("the file node2 wrote is not in the export: %v %q", err, b)
	}
	out, err = exec.CommandContext(ctx, "nsenter", "--net=/run/netns/node3", "--", "nfs-ls", url+"?version=4").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "probe.txt") {
		t.Fatalf("nfs-ls from node3: %v\n%s", err, out)
	}
	// The volume dtr would create for --nfs-storage-url, on the lab's engine.
	plan, code := l.dtr(t, nil, nil, "install", "--ucp-node", "node2", "--nfs-storage-url", url, "--dry-run")
	if code != 0 || !strings.Contains(plan, "NFS volume") || !strings.Contains(plan, url) {
		t.Fatalf("install --dry-run with NFS: %d\n%s", code, plan)
	}
	fs, _ := os.ReadFile("/proc/filesystems")
	if !bytes.Contains(fs, []byte("\tnfs\n")) && !bytes.Contains(fs, []byte("\tnfs4\n")) {
		t.Skip("this kernel has no NFS client (/proc/filesystems): a replica on an NFS mount is tested where it has one")
	}
	l.mustDTR(t, "install", "--ucp-node", "node2", "--nfs-storage-url", url, "--replica-http-port", "80", "--replica-https-port", "443")
	defer l.destroyAll(t)
	l.ca = nil
	l.pushPull(t, "nfs")
}

// TestHABench measures pulls through the lab's load balancer next to pulls
// from one replica directly, for make bench when the lab is up: three
// replicas on S3, a 1 MiB blob, 1, 8 and 32 clients, 3 runs of 10 s each.
// It writes a markdown section to $DTR_BENCH_LAB.
func TestHABench(t *testing.T) {
	out := os.Getenv("DTR_BENCH_LAB")
	if out == "" {
		t.Skip("load-balancer benchmark: run make bench with the lab up")
	}
	l := requireLab(t)
	if left := l.replicas(t); len(left) != 0 {
		t.Fatalf("replicas exist in the lab: %v (make lab-down && make lab-up)", left)
	}
	l.mustDTR(t, "install", "--ucp-node", "node1", "--replica-http-port", "80", "--replica-https-port", "443", "--dtr-external-url", "https://127.0.0.1")
	defer l.destroyAll(t)
	first := l.replicas(t)[1]
	lb := l.client(t, l.lb)
	l.waitLB(t, "node1", "UP", 30*time.Second)
	l.useS3(t, lb)
	for _, n := range []string{"node2", "node3"} {
		l.mustDTR(t, "join", "--ucp-node", n, "--existing-replica-id", first, "--replica-http-port", "80", "--replica-https-port", "443")
		l.waitLB(t, n, "UP", 30*time.Second)
	}
	tok := lb.Token(t, "admin", adminPassword, "repository:admin/bench:push,pull")
	d, code := lb.PushBlob(t, tok, "admin/bench", randomBlob(1<<20))
	if code != 201 {
		t.Fatalf("push: %d", code)
	}
	measure := func(url string, conc int) (mbps float64, p50, p99 time.Duration) {
		c := l.client(t, url)
		c.Client.Transport.(*http.Transport).MaxIdleConnsPerHost = conc
		var mu sync.Mutex
		var lat []time.Duration
		var bytes int64
		stop := time.Now().Add(10 * time.Second)
		start := time.Now()
		var wg sync.WaitGroup
		for i := 0; i < conc; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					s := time.Now()
					req, _ := http.NewRequest("GET", c.URL+"/v2/admin/bench/blobs/"+d, nil)
					req.Header.Set("Authorization", "Bearer "+tok)
					resp, err := c.Client.Do(req)
					if err != nil {
						continue
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					lat = append(lat, time.Since(s))
					bytes += n
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return float64(bytes) / time.Since(start).Seconds() / 1e6, lat[len(lat)/2], lat[len(lat)*99/100]
	}
	var b strings.Builder
	b.WriteString("## Through the lab's load balancer\n\nThree replicas on S3 (versitygw) in the lab of `make lab-up`, HAProxy in TCP passthrough; pulls of a 1 MiB blob for 10 s, 3 runs: median MB/s [range], p50 / p99 of the median run. **direct** is node1's replica alone.\n\n")
	b.WriteString("| clients | direct MB/s | through HAProxy MB/s | direct p50 / p99 | HAProxy p50 / p99 | LB/direct |\n|---|---|---|---|---|---|\n")
	for _, conc := range []int{1, 8, 32} {
		var dm, lm []float64
		var dl, ll [2]time.Duration
		for r := 0; r < 3; r++ {
			m, p50, p99 := measure("https://"+l.ip(1), conc)
			dm = append(dm, m)
			if r == 1 {
				dl = [2]time.Duration{p50, p99}
			}
			m, p50, p99 = measure(l.lb, conc)
			lm = append(lm, m)
			if r == 1 {
				ll = [2]time.Duration{p50, p99}
			}
		}
		med := func(v []float64) (float64, float64, float64) {
			s := append([]float64(nil), v...)
			sort.Float64s(s)
			return s[len(s)/2], s[0], s[len(s)-1]
		}
		a, a0, a1 := med(dm)
		c, c0, c1 := med(lm)
		fmt.Fprintf(&b, "| %d | %.1f [%.1f–%.1f] | %.1f [%.1f–%.1f] | %v / %v | %v / %v | %.2f× |\n", conc, a, a0, a1, c, c0, c1,
			dl[0].Round(100*time.Microsecond), dl[1].Round(100*time.Microsecond), ll[0].Round(100*time.Microsecond), ll[1].Round(100*time.Microsecond), c/a)
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
}
