package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/ucp/ucptest"
)

// These tests drive the real dtr binary against the local engine, a
// single-node swarm: replicas on one node with different ports, as DTR
// allows.

var dtrBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dtr-e2e")
	if err != nil {
		panic(err)
	}
	dtrBin = filepath.Join(dir, "dtr")
	build := exec.Command("go", "build", "-o", dtrBin, "../cmd/dtr")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("building dtr: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const adminPassword = "E2e-admin-passw0rd"

// dtr runs the installer with the admin's credentials from the environment,
// as an operator's script would, and returns stderr (the log) and the exit code.
func dtr(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return dtrIO(t, nil, nil, nil, args...)
}

// dtrIO is dtr with stdin and stdout of the caller's choosing (nil: none,
// and stdout into the log) and extra environment.
func dtrIO(t *testing.T, stdin io.Reader, stdout io.Writer, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dtrBin, args...)
	cmd.Env = append(append(os.Environ(), "UCP_URL=unix:///var/run/docker.sock", "UCP_USERNAME=admin", "UCP_PASSWORD="+adminPassword, "NO_COLOR=1"), env...)
	var out bytes.Buffer
	cmd.Stdin = stdin
	cmd.Stdout, cmd.Stderr = &out, &out
	if stdout != nil {
		cmd.Stdout = stdout
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running dtr: %v", err)
	}
	return out.String(), code
}

func mustDTR(t *testing.T, args ...string) string {
	t.Helper()
	start := time.Now()
	out, code := dtr(t, args...)
	if code != 0 {
		t.Fatalf("dtr %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	t.Logf("dtr %s: %v", args[0], time.Since(start).Round(100*time.Millisecond))
	return out
}

// labelled lists every object dtr created on the engine, for before/after
// comparisons.
func labelled(t *testing.T) string {
	t.Helper()
	var all []string
	for _, kind := range [][]string{
		{"service", "ls", "--format", "service {{.Name}}"},
		{"volume", "ls", "--format", "volume {{.Name}}"},
		{"network", "ls", "--format", "network {{.Name}}"},
		{"secret", "ls", "--format", "secret {{.Name}}"},
		{"config", "ls", "--format", "config {{.Name}}"},
	} {
		out := MustDocker(t, append(kind, "--filter", "label=com.docker.dtr.role")...)
		if kind[0] == "volume" {
			out = MustDocker(t, append(kind, "--filter", "label=com.docker.dtr.replica")...)
		}
		for _, l := range strings.Split(out, "\n") {
			if l != "" {
				all = append(all, l)
			}
		}
	}
	sort.Strings(all)
	return strings.Join(all, "\n")
}

func replicaID(t *testing.T, log string) string {
	t.Helper()
	i := strings.Index(log, "Replica ID is set to: ")
	if i < 0 {
		t.Fatalf("no replica ID in:\n%s", log)
	}
	return strings.Fields(log[i+len("Replica ID is set to: "):])[0]
}

func clusterStatus(t *testing.T, port int) map[string]any {
	t.Helper()
	ca := MustDocker(t, "config", "inspect", "dtr-ca-cert", "--format", "{{printf \"%s\" .Spec.Data}}")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, []byte(ca+"\n"), 0o644)
	var out []byte
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		out, err = exec.Command("curl", "-sf", "--cacert", caFile, "-u", "admin:"+adminPassword,
			fmt.Sprintf("https://127.0.0.1:%d/api/v0/meta/cluster_status", port)).Output()
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("cluster_status: %v", err)
	}
	var st map[string]any
	_ = json.Unmarshal(out, &st)
	return st
}

func voters(st map[string]any) int {
	n := 0
	for _, m := range st["members"].([]any) {
		if !m.(map[string]any)["isLearner"].(bool) {
			n++
		}
	}
	return n
}

// TestInstallJoinRemoveDestroy is the operator's life cycle on one node.
func TestInstallJoinRemoveDestroy(t *testing.T) {
	node := cleanSwarm(t)

	log := mustDTR(t, "install", "--ucp-node", node, "--replica-http-port", "31080", "--replica-https-port", "31443")
	first := replicaID(t, log)
	for _, line := range []string{"Installation is complete", "Replica ID is set to: " + first, "You can use flag '--existing-replica-id " + first + "' when joining other replicas to your Docker Trusted Registry Cluster"} {
		if !strings.Contains(log, line) {
			t.Errorf("install log lacks %q", line)
		}
	}
	if out, err := exec.Command("curl", "-sk", "https://127.0.0.1:31443/_ping").Output(); err != nil || !strings.Contains(string(out), `"Healthy":true`) {
		t.Fatalf("/_ping after install: %v %s", err, out)
	}
	pushPull(t, "127.0.0.1:31443")

	log = mustDTR(t, "join", "--ucp-node", node, "--existing-replica-id", first, "--replica-http-port", "32080", "--replica-https-port", "32443")
	if !strings.Contains(log, "There are currently 2 replicas") || !strings.Contains(log, "You currently have an even number of replicas which can impact cluster availability") ||
		!strings.Contains(log, "It is recommended that you have 3, 5 or 7 replicas in your cluster") {
		t.Fatalf("first join log:\n%s", log)
	}
	second := replicaID(t, log)
	log = mustDTR(t, "join", "--ucp-node", node, "--existing-replica-id", first, "--replica-http-port", "33080", "--replica-https-port", "33443")
	if !strings.Contains(log, "There are currently 3 replicas") || strings.Contains(log, "even number") {
		t.Fatalf("second join log:\n%s", log)
	}
	third := replicaID(t, log)
	if st := clusterStatus(t, 31443); voters(st) != 3 || st["hasQuorum"] != true {
		t.Fatalf("after two joins: %v", st)
	}

	// Bad input: each refused with a clear error, nothing changed.
	before := labelled(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"install", "--ucp-node", "dtr9"}, 2, "node dtr9 not found; nodes: " + node},
		{[]string{"install", "--ucp-node", node}, 1, "We don't currently support running multiple DTRs on the same UCP cluster. You have 3 existing DTR replicas."},
		{[]string{"join", "--ucp-node", node, "--existing-replica-id", first, "--replica-https-port", "31443", "--replica-http-port", "34080"}, 2, "port 31443 is already published on node " + node},
		{[]string{"join", "--ucp-node", node, "--existing-replica-id", "xyz"}, 2, "Replica IDs must be hexadecimal: xyz"},
		{[]string{"join", "--ucp-node", node, "--existing-replica-id", "0123456789ab"}, 2, "The replica '0123456789ab' you specified could not be found. Valid replicas:"},
		{[]string{"remove", "--replica-ids", first + "," + second + "," + third}, 2, "would leave no replica"},
		{[]string{"install", "--ucp-url", "tcp://127.0.0.1:1"}, 3, "needs TLS"},
	} {
		out, code := dtr(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("dtr %s: exit %d (want %d), log lacks %q:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}
	// Remove that would lose quorum: a replica that stays is down.
	MustDocker(t, "service", "scale", "-d", "dtr-registry-"+second+"=0")
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := clusterStatus(t, 31443)
		if h, ok := st["replica_health"].(map[string]any)[second].(map[string]any); ok && h["healthy"] == false {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s still reported healthy after it was stopped", second)
		}
		time.Sleep(time.Second)
	}
	if out, code := dtr(t, "remove", "--replica-ids", third, "--existing-replica-id", first); code == 0 || !strings.Contains(out, "could lose quorum") {
		t.Errorf("remove while another replica is down: exit %d\n%s", code, out)
	}
	MustDocker(t, "service", "scale", "-d", "dtr-registry-"+second+"=1")
	if after := labelled(t); after != before {
		t.Fatalf("refused commands changed the cluster:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	deadline = time.Now().Add(90 * time.Second)
	for {
		st := clusterStatus(t, 31443)
		if h, ok := st["replica_health"].(map[string]any)[second].(map[string]any); ok && h["healthy"] == true && h["stale"] == false {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s did not come back healthy: %v", second, st)
		}
		time.Sleep(time.Second)
	}

	log = mustDTR(t, "remove", "--replica-ids", third, "--existing-replica-id", first)
	if !strings.Contains(log, "Done. Your cluster size is now 2") {
		t.Fatalf("remove log:\n%s", log)
	}
	if st := clusterStatus(t, 31443); voters(st) != 2 {
		t.Fatalf("after remove: %v", st)
	}
	if left := labelled(t); strings.Contains(left, third) {
		t.Fatalf("objects of the removed replica remain:\n%s", left)
	}
	// Reconfigure: a rolling update; refusals change nothing.
	if out, code := dtr(t, "reconfigure", "--existing-replica-id", first, "--dtr-storage-volume", "/srv/elsewhere"); code != 2 || !strings.Contains(out, "--storage-migrated") {
		t.Errorf("storage change without --storage-migrated: exit %d\n%s", code, out)
	}
	if out, code := dtr(t, "reconfigure", "--existing-replica-id", first, "--replica-https-port", "35443"); code != 2 || !strings.Contains(out, "share node") {
		t.Errorf("port change for replicas sharing a node: exit %d\n%s", code, out)
	}
	log = mustDTR(t, "reconfigure", "--existing-replica-id", first, "--dtr-external-url", "dtr.example.com")
	if !strings.Contains(log, "Reconfiguration is complete") {
		t.Fatalf("reconfigure log:\n%s", log)
	}
	if env := MustDocker(t, "service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}", "dtr-registry-"+second); !strings.Contains(env, "DTR_EXTERNAL_URL=https://dtr.example.com") {
		t.Fatalf("replica %s after reconfigure: %s", second, env)
	}
	if st := clusterStatus(t, 31443); voters(st) != 2 || st["hasQuorum"] != true {
		t.Fatalf("after reconfigure: %v", st)
	}
	for _, id := range []string{second, first} {
		if log := mustDTR(t, "destroy", "--replica-id", id); !strings.Contains(log, "Replica removed.") {
			t.Fatalf("destroy log:\n%s", log)
		}
	}
	if log := mustDTR(t, "destroy", "--replica-id", first); !strings.Contains(log, "Replica removed.") {
		t.Fatalf("second destroy of the same replica:\n%s", log)
	}
	if left := labelled(t); left != "" {
		t.Fatalf("objects remain after destroying every replica:\n%s", left)
	}
}

// cleanSwarm readies the local engine for a test that installs replicas: the
// images, a swarm, no dtr objects yet (and the named volumes gone); every
// replica is destroyed and the volumes removed when the test ends. It
// returns the node's hostname.
func cleanSwarm(t *testing.T, volumes ...string) string {
	t.Helper()
	RequireImages(t)
	ucptest.EnsureSwarm(t)
	if before := labelled(t); before != "" {
		t.Fatalf("dtr objects exist before the test (a dtr is installed here: make down first):\n%s", before)
	}
	t.Cleanup(func() {
		for _, id := range replicaIDs(t) {
			dtr(t, "destroy", "--replica-id", id)
		}
		for _, v := range volumes {
			Docker(t, nil, "volume", "rm", v)
		}
	})
	for _, v := range volumes {
		Docker(t, nil, "volume", "rm", v)
	}
	return MustDocker(t, "info", "--format", "{{.Name}}")
}

// pushPull logs in, pushes and pulls a small image through a replica's port,
// trusting the cluster CA in /etc/docker/certs.d as an operator would.
func pushPull(t *testing.T, host string) {
	t.Helper()
	ca := MustDocker(t, "config", "inspect", "dtr-ca-cert", "--format", "{{printf \"%s\" .Spec.Data}}")
	certs := filepath.Join("/etc/docker/certs.d", host)
	if err := os.MkdirAll(certs, 0o755); err != nil {
		t.Skipf("cannot trust the CA in %s: %v", certs, err)
	}
	t.Cleanup(func() { os.RemoveAll(certs) })
	os.WriteFile(filepath.Join(certs, "ca.crt"), []byte(ca+"\n"), 0o644)
	cfg := t.TempDir()
	env := append(os.Environ(), "DOCKER_CONFIG="+cfg, "DOCKER_BUILDKIT=0")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte(host), 0o644)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY f /\n"), 0o644)
	ref := host + "/admin/e2e:1"
	for _, args := range [][]string{
		{"build", "-q", "-t", ref, dir},
		{"login", host, "-u", "admin", "-p", adminPassword},
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
