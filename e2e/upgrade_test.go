package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// The upgrade tests: version A is this tree as it is; version B is the same
// tree with the next minor version in images/VERSION, built into its own
// binaries and images (dtr:B, dtr-registry:B) by the same Makefile target.
// B's images are removed when the test ends.

// release is another version of dtr built from a copy of this tree.
type release struct {
	version string
	dir     string // the copy
	dtr     string // its installer binary
	images  bool   // dtr:<version> and dtr-registry:<version> were built
	took    time.Duration
}

func (r *release) refs() []string {
	return []string{"dtr:" + r.version, "dtr-registry:" + r.version}
}

// otherMinor is images.Version with its minor version raised by n, patch 0.
func otherMinor(t *testing.T, n int) string {
	t.Helper()
	p := strings.SplitN(images.Version, ".", 3)
	minor, err := strconv.Atoi(p[1])
	if len(p) != 3 || err != nil {
		t.Fatalf("images/VERSION %q is not major.minor.patch", images.Version)
	}
	return fmt.Sprintf("%s.%d.0", p[0], minor+n)
}

// copyTree copies the repository's working tree, without .git and the build
// outputs, into dst (symbolic links as links: VERSION points at
// images/VERSION).
func copyTree(dst string) error {
	return filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("..", p)
		if d.IsDir() && (rel == ".git" || rel == "bin" || rel == "build") {
			return filepath.SkipDir
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, to)
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, info.Mode().Perm())
		}
		return nil
	})
}

// buildRelease builds version from a copy of this tree: with withImages,
// make images there (its binaries and images tagged version), else only
// its installer binary, as make build would. It returns an error instead
// of failing the test so that it can run beside the test's other work.
func buildRelease(version string, withImages bool) (*release, error) {
	start := time.Now()
	dir, err := os.MkdirTemp("", "dtr-release-"+version+"-")
	if err != nil {
		return nil, err
	}
	r := &release{version: version, dir: dir, dtr: filepath.Join(dir, "bin", "dtr")}
	if err := copyTree(dir); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("copying the tree: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "images", "VERSION"), []byte(version+"\n"), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", "bin/dtr", "./cmd/dtr")
	if withImages {
		cmd = exec.Command("make", "--no-print-directory", "images")
		r.images = true
	}
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		r.remove()
		return nil, fmt.Errorf("building %s in %s: %v\n%s", version, dir, err, out)
	}
	r.took = time.Since(start)
	return r, nil
}

// remove deletes the copy and the release's images from the local engine.
func (r *release) remove() {
	if r.images {
		exec.Command("docker", append([]string{"rmi"}, r.refs()...)...).Run()
	}
	os.RemoveAll(r.dir)
}

// buildReleases builds each version in the background, one after the
// other (with its images where images says so), while the test does its
// other work. The returned function waits for them. The cleanup registered
// here removes them: register it before anything whose cleanup must run
// first (the destroy of the services that run their images).
func buildReleases(t *testing.T, versions []string, images []bool) func() []*release {
	t.Helper()
	rels := make([]*release, len(versions))
	var errs []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, v := range versions {
			r, err := buildRelease(v, images[i])
			rels[i] = r
			if err != nil {
				errs = append(errs, err)
			}
		}
	}()
	t.Cleanup(func() {
		<-done
		for _, r := range rels {
			if r != nil {
				r.remove()
			}
		}
	})
	return func() []*release {
		t.Helper()
		<-done
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		return rels
	}
}

// timedRun is one run of an installer binary: its log, its exit code, and
// how long each step of its plan took ("(i/n) …" lines, timed as they
// appear).
type timedRun struct {
	log   string
	code  int
	steps []time.Duration
	marks []time.Time // when each step began
	total time.Duration
}

var stepLine = regexp.MustCompile(`\((\d+)/(\d+)\) `)

// runTimed runs bin with the admin's credentials from the environment, as
// dtr does, plus env. When killAt is set, the installer is killed (SIGKILL:
// the operator's machine dies) as soon as a line of its log contains it.
func runTimed(t *testing.T, bin string, env []string, killAt string, args ...string) timedRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "UCP_URL=unix:///var/run/docker.sock", "UCP_USERNAME=admin", "UCP_PASSWORD="+adminPassword, "NO_COLOR=1"), env...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	pw.Close()
	var log strings.Builder
	var marks []time.Time
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		if stepLine.MatchString(line) {
			marks = append(marks, time.Now())
		}
		if killAt != "" && strings.Contains(line, killAt) {
			_ = cmd.Process.Kill()
			killAt = ""
		}
	}
	pr.Close()
	err = cmd.Wait()
	end := time.Now()
	run := timedRun{log: log.String(), total: end.Sub(start), marks: marks}
	if ee, ok := err.(*exec.ExitError); ok {
		run.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s: %v", bin, err)
	}
	for i, m := range marks {
		next := end
		if i+1 < len(marks) {
			next = marks[i+1]
		}
		run.steps = append(run.steps, next.Sub(m).Round(100*time.Millisecond))
	}
	return run
}

// failureWindow is the time from the pull loop's first failure to its last.
func (p *puller) failureWindow() time.Duration {
	first, last := p.failureSpan()
	return last.Sub(first)
}

// failureSpan is when the pull loop failed first and last (zero: never).
func (p *puller) failureSpan() (first, last time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.failures) == 0 {
		return
	}
	return p.failures[0], p.failures[len(p.failures)-1]
}

// rotationWatch polls HAProxy's view of the lab's servers until stopped
// and adds up, for each, how long it was not UP: how long each replica was
// out of the balancer's rotation.
func rotationWatch(l *lab) (stop func() map[string]time.Duration) {
	out := map[string]time.Duration{}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		last := time.Now()
		for {
			select {
			case <-quit:
				return
			case <-time.After(200 * time.Millisecond):
			}
			st, err := l.readHAProxyStatus()
			now := time.Now()
			if err == nil {
				for n, s := range st {
					if s != "UP" {
						out[n] += now.Sub(last)
					}
				}
			}
			last = now
		}
	}()
	return func() map[string]time.Duration {
		close(quit)
		<-done
		for n, d := range out {
			out[n] = d.Round(100 * time.Millisecond)
		}
		return out
	}
}

// metadataSnapshot is what the admin API says about the accounts, the
// organization's members and teams, the repositories and their grants, for
// a before/after comparison.
func metadataSnapshot(t *testing.T, r *registrytest.Replica) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range []string{
		"/api/v0/accounts", "/api/v0/accounts/acme/members", "/api/v0/accounts/acme/teams",
		"/api/v0/accounts/acme/teams/devs/members", "/api/v0/accounts/acme/teams/readers/members",
		"/api/v0/repositories", "/api/v0/repositories/acme/app/teamAccess", "/api/v0/repositories/acme/app/userAccess",
		"/api/v0/repositoryNamespaces/acme/teamAccess", "/api/v0/meta/settings",
	} {
		var raw any
		code := r.API(t, "admin", adminPassword, "GET", p, nil, &raw)
		out[p] = fmt.Sprintf("%d %v", code, raw)
	}
	return out
}

func compareSnapshots(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, b := range before {
		if after[p] != b {
			t.Errorf("%s changed across the upgrade:\nbefore: %s\nafter:  %s", p, b, after[p])
		}
	}
}

// serviceState is everything the engine holds about a replica's service
// that an upgrade would change.
func serviceState(t *testing.T, id string) string {
	t.Helper()
	return MustDocker(t, "service", "inspect", "--format", "{{json .Spec}}", "dtr-registry-"+id)
}

// TestUpgrade: install version A (this tree), fill it, build version B
// (the next minor) and upgrade with B's dtr while a client pulls; every
// account, grant and tag is intact and the replica runs B. An installer
// killed in the middle leaves the replica serving and the next run
// finishes; a run on an upgraded cluster changes nothing; a dtr two minor
// versions ahead (C) and A's dtr (a downgrade) are refused, exit 2, with
// nothing changed.
//
// C is only an installer binary: the version rules refuse before any image
// is looked at, so C's images would add a build and change nothing.
func TestUpgrade(t *testing.T) {
	RequireImages(t)
	from, to, skip := images.Version, otherMinor(t, 1), otherMinor(t, 2)
	// B and C build while A installs; registered before the cluster's
	// cleanup, so removed after its destroy, when no service uses them.
	built := buildReleases(t, []string{to, skip}, []bool{true, false})
	node := cleanSwarm(t)
	id := replicaID(t, mustDTR(t, "install", "--ucp-node", node, "--replica-http-port", "31080", "--replica-https-port", "31443"))
	reg := remote(t, 31443)
	state := populate(t, reg)
	before := metadataSnapshot(t, reg)
	rels := built()
	b, c := rels[0], rels[1]
	t.Logf("built %s (binaries and images) in %v and %s (installer) in %v", b.version, b.took.Round(100*time.Millisecond), c.version, c.took.Round(100*time.Millisecond))
	newImage := MustDocker(t, "image", "inspect", "--format", "{{.ID}}", "dtr-registry:"+to)

	unchanged := func(what, spec, objects string) {
		t.Helper()
		if s := serviceState(t, id); s != spec {
			t.Errorf("%s changed the replica's service:\nbefore: %s\nafter:  %s", what, spec, s)
		}
		if o := labelled(t); o != objects {
			t.Errorf("%s changed the cluster's objects:\nbefore:\n%s\nafter:\n%s", what, objects, o)
		}
	}
	specA, objects := serviceState(t, id), labelled(t)

	// Skipping a minor version: refused before anything changes.
	run := runTimed(t, c.dtr, nil, "", "upgrade", "--existing-replica-id", id)
	if run.code != 2 || !strings.Contains(run.log, "one minor version at a time") || !strings.Contains(run.log, "upgrade to the latest "+images.MinorVersion(to)+".x first") || !strings.Contains(run.log, "nothing was changed") {
		t.Errorf("%s's upgrade of a %s cluster: exit %d\n%s", skip, from, run.code, run.log)
	}
	unchanged(skip+"'s refused upgrade", specA, objects)

	// --dry-run prints the change and makes none.
	run = runTimed(t, b.dtr, nil, "", "upgrade", "--existing-replica-id", id, "--dry-run")
	if run.code != 0 || !strings.Contains(run.log, fmt.Sprintf("upgrade replica %s on node %s from %s to %s", id, node, from, to)) || !strings.Contains(run.log, `"Image": "`+newImage+`"`) {
		t.Errorf("upgrade --dry-run: exit %d\n%s", run.code, run.log)
	}
	unchanged("upgrade --dry-run", specA, objects)

	p := startPullLoop(t, reg, "acme/pub", "1.0")
	time.Sleep(time.Second)

	// The installer dies as the replica's step begins (during the drain
	// wait, before its service changes): the replica still runs A and
	// serves, drained at most; the next run resumes.
	run = runTimed(t, b.dtr, nil, "(1/1) upgrade replica "+id, "upgrade", "--existing-replica-id", id)
	if run.code != -1 {
		t.Fatalf("the killed upgrade: exit %d, want killed\n%s", run.code, run.log)
	}
	if s := serviceState(t, id); s != specA {
		t.Fatalf("the killed upgrade changed the service; the test meant to kill it before:\n%s", run.log)
	}
	okBefore := p.ok.Load()
	time.Sleep(2 * time.Second)
	if p.ok.Load() == okBefore || p.failed.Load() != 0 {
		t.Errorf("after the installer was killed the replica must serve: %d pulls in 2 s, %d failed", p.ok.Load()-okBefore, p.failed.Load())
	}

	run = runTimed(t, b.dtr, nil, "", "upgrade", "--existing-replica-id", id)
	if run.code != 0 || !strings.Contains(run.log, "Upgrade complete: 1 replica(s) run "+to) {
		t.Fatalf("the resumed upgrade: exit %d\n%s", run.code, run.log)
	}
	t.Logf("the resumed upgrade's log:\n%s", run.log)
	time.Sleep(2 * time.Second)
	p.finish()
	failed, ok := p.failed.Load(), p.ok.Load()
	down, up := p.failureSpan()
	t.Logf("MEASURE upgrade of 1 replica %s → %s: %v (its step %v); pulls through its port: %d failed of %d, unavailable for %v (first to last failure, from %v to %v into the step)",
		from, to, run.total.Round(100*time.Millisecond), run.steps, failed, failed+ok, p.failureWindow().Round(100*time.Millisecond),
		down.Sub(run.marks[0]).Round(100*time.Millisecond), up.Sub(run.marks[0]).Round(100*time.Millisecond))

	// It runs B: the service (label and image ID) and the replica's own
	// health report say so; and it is no longer drained.
	if v := MustDocker(t, "service", "inspect", "--format", `{{index .Spec.Labels "com.docker.dtr.version"}} {{.Spec.TaskTemplate.ContainerSpec.Image}}`, "dtr-registry-"+id); v != to+" "+newImage {
		t.Errorf("the service after the upgrade: %s, want %s %s", v, to, newImage)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, _ := clusterStatus(t, 31443)["replica_health"].(map[string]any)[id].(map[string]any)
		if h["version"] == to && h["healthy"] == true {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s's health report after the upgrade: %v, want version %s, healthy", id, h, to)
		}
		time.Sleep(time.Second)
	}
	if resp, err := reg.Client.Get(reg.URL + "/_ping"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/_ping after the upgrade: %v %v (still drained?)", err, resp)
	} else {
		resp.Body.Close()
	}
	compareSnapshots(t, before, metadataSnapshot(t, reg))
	verifyRestored(t, reg, state)

	// Again: nothing to do, and nothing done.
	specB, objects := serviceState(t, id), labelled(t)
	run = runTimed(t, b.dtr, nil, "", "upgrade", "--existing-replica-id", id)
	if run.code != 0 || !strings.Contains(run.log, "runs "+to+" already") {
		t.Errorf("upgrade of an upgraded cluster: exit %d\n%s", run.code, run.log)
	}
	unchanged("upgrade of an upgraded cluster", specB, objects)

	// A's dtr against B's cluster: a downgrade, refused.
	run = runTimed(t, dtrBin, nil, "", "upgrade", "--existing-replica-id", id)
	if run.code != 2 || !strings.Contains(run.log, "downgrades are not supported") || !strings.Contains(run.log, "nothing was changed") {
		t.Errorf("%s's upgrade of a %s cluster: exit %d\n%s", from, to, run.code, run.log)
	}
	unchanged("a refused downgrade", specB, objects)
	verifyRestored(t, reg, state)
}

// dockerPullLoop pulls ref with the real docker CLI in a loop (pull, then
// remove it so the next pull fetches again) until stop is closed; env
// carries the login.
func dockerPullLoop(t *testing.T, env []string, ref string, stop chan struct{}) (wait func() (ok, failed int, first string)) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var nOK, nFailed int
	var firstErr string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, err := Docker(t, env, "pull", "-q", ref)
			mu.Lock()
			if err != nil {
				nFailed++
				if firstErr == "" {
					firstErr = time.Now().Format("15:04:05.000 ") + out
				}
			} else {
				nOK++
			}
			mu.Unlock()
			Docker(t, env, "rmi", ref)
		}
	}()
	return func() (int, int, string) {
		wg.Wait()
		return nOK, nFailed, firstErr
	}
}

// TestHAUpgrade is the upgrade drill on the lab: three replicas on S3
// behind HAProxy, A → B while a client pulls through the balancer (its own
// loop of manifest and layer GETs, each on a new connection) and the docker
// CLI pulls in another loop. No pull may fail: each replica is drained
// (HAProxy takes it out within about 2 s) 6 s before it restarts.
func TestHAUpgrade(t *testing.T) {
	l := requireLab(t)
	if left := l.replicas(t); len(left) != 0 {
		t.Fatalf("replicas exist before the drill: %v (make lab-down && make lab-up)", left)
	}
	from, to := images.Version, otherMinor(t, 1)
	built := buildReleases(t, []string{to}, []bool{true})
	// B's images off the nodes, before (a drill run earlier in this lab may
	// have left them) and after, with the exited containers of jobs and
	// replicas that still hold them.
	removeB := func() {
		for i := 1; i <= 3; i++ {
			host := "unix://" + l.run + fmt.Sprintf("/node%d/docker.sock", i)
			for _, ref := range []string{"dtr:" + to, "dtr-registry:" + to} {
				if ids, err := Docker(t, nil, "-H", host, "ps", "-aq", "--filter", "ancestor="+ref); err == nil && ids != "" {
					Docker(t, nil, append([]string{"-H", host, "rm", "-f"}, strings.Fields(ids)...)...)
				}
				Docker(t, nil, "-H", host, "rmi", ref)
			}
		}
	}
	removeB()
	t.Cleanup(removeB)
	labEnv := []string{"UCP_URL=tcp://" + l.ip(1) + ":2376", "DOCKER_CERT_PATH=" + filepath.Join(l.dir, "tls")}
	report := map[string]string{}
	defer func() {
		var sb strings.Builder
		for _, k := range []string{"build B", "load B on 3 nodes", "refused (node3 lacks the images)", "upgrade total", "upgrade per replica", "out of HAProxy's rotation", "failed pulls (HTTP loop)", "failed pulls (docker pull loop)", "no-op rerun"} {
			if v, ok := report[k]; ok {
				fmt.Fprintf(&sb, "MEASURE %s: %s\n", k, v)
			}
		}
		t.Log("\n" + sb.String())
	}()

	l.mustDTR(t, "install", "--ucp-node", "node1", "--replica-http-port", "80", "--replica-https-port", "443", "--dtr-external-url", "https://127.0.0.1")
	defer l.destroyAll(t)
	lb := l.client(t, l.lb)
	l.waitLB(t, "node1", "UP", 30*time.Second)
	l.useS3(t, lb)
	first := l.replicas(t)[1]
	for _, n := range []string{"node2", "node3"} {
		l.mustDTR(t, "join", "--ucp-node", n, "--existing-replica-id", first, "--replica-http-port", "80", "--replica-https-port", "443")
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		l.waitLB(t, n, "UP", 30*time.Second)
	}
	state := populate(t, lb)
	tok := lb.Token(t, "admin", adminPassword, "repository:admin/drill:push,pull")
	if _, code := lb.PushImage(t, tok, "admin/drill", "v1", []byte(strings.Repeat("drill layer ", 20000))); code != 201 {
		t.Fatalf("push through the LB: %d", code)
	}

	// The docker CLI: trust the cluster CA, log in, push the image it pulls.
	certs := "/etc/docker/certs.d/127.0.0.1"
	if err := os.MkdirAll(certs, 0o755); err != nil {
		t.Skipf("cannot trust the CA in %s: %v", certs, err)
	}
	t.Cleanup(func() { os.RemoveAll(certs) })
	os.WriteFile(filepath.Join(certs, "ca.crt"), l.ca, 0o644)
	env := append(os.Environ(), "DOCKER_CONFIG="+t.TempDir(), "DOCKER_BUILDKIT=0")
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "f"), []byte("upgrade drill "+time.Now().String()), 0o644)
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM scratch\nCOPY f /\n"), 0o644)
	ref := "127.0.0.1/admin/upgrade:1"
	for _, args := range [][]string{{"build", "-q", "-t", ref, ctx}, {"login", "127.0.0.1", "-u", "admin", "-p", adminPassword}, {"push", ref}, {"rmi", ref}} {
		if out, err := Docker(t, env, args...); err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	before := metadataSnapshot(t, lb)

	// B's images on every node, as an operator loads them.
	b := built()[0]
	report["build B"] = fmt.Sprintf("%v (%s: binaries and images, from a copy of the tree)", b.took.Round(100*time.Millisecond), to)
	start := time.Now()
	tar := filepath.Join(t.TempDir(), "images.tar")
	MustDocker(t, append([]string{"save", "-o", tar}, b.refs()...)...)
	for i := 1; i <= 2; i++ {
		l.docker(t, i, "load", "-q", "-i", tar)
	}
	loading := time.Since(start)
	// node3 lacks them: refused, naming it, before anything changes.
	specs := l.docker(t, 1, "service", "inspect", "--format", "{{json .Spec}}", "dtr-registry-"+l.replicas(t)[1], "dtr-registry-"+l.replicas(t)[2], "dtr-registry-"+l.replicas(t)[3])
	run := runTimed(t, b.dtr, labEnv, "", "upgrade", "--existing-replica-id", first)
	if run.code == 0 || !strings.Contains(run.log, "these nodes lack this version's images") || !strings.Contains(run.log, "node3 (") ||
		strings.Contains(run.log, "node1 (") || strings.Contains(run.log, "node2 (") || !strings.Contains(run.log, "docker load") || !strings.Contains(run.log, "nothing was changed") {
		t.Fatalf("upgrade with node3 lacking %s's images: exit %d\n%s", to, run.code, run.log)
	}
	if now := l.docker(t, 1, "service", "inspect", "--format", "{{json .Spec}}", "dtr-registry-"+l.replicas(t)[1], "dtr-registry-"+l.replicas(t)[2], "dtr-registry-"+l.replicas(t)[3]); now != specs {
		t.Fatalf("the refused upgrade changed the replicas' services")
	}
	report["refused (node3 lacks the images)"] = run.total.Round(100 * time.Millisecond).String()
	start = time.Now()
	l.docker(t, 3, "load", "-q", "-i", tar)
	report["load B on 3 nodes"] = (loading + time.Since(start)).Round(100*time.Millisecond).String() + " (docker save once, docker load on each)"

	p := startPuller(t, l, "admin/drill", "v1")
	stop := make(chan struct{})
	waitDocker := dockerPullLoop(t, env, ref, stop)
	rotation := rotationWatch(l)
	time.Sleep(2 * time.Second)
	run = runTimed(t, b.dtr, labEnv, "", "upgrade", "--existing-replica-id", first)
	t.Logf("the upgrade's log:\n%s", run.log)
	if run.code != 0 || !strings.Contains(run.log, "Upgrade complete: 3 replica(s) run "+to) {
		close(stop)
		p.finish()
		waitDocker()
		rotation()
		t.Fatalf("upgrade %s → %s: exit %d\n%s", from, to, run.code, run.log)
	}
	report["upgrade total"] = run.total.Round(100 * time.Millisecond).String()
	report["upgrade per replica"] = fmt.Sprint(run.steps)
	for _, n := range []string{"node1", "node2", "node3"} {
		l.waitLB(t, n, "UP", 30*time.Second)
	}
	report["out of HAProxy's rotation"] = fmt.Sprint(rotation())
	time.Sleep(3 * time.Second)
	close(stop)
	p.finish()
	dOK, dFailed, dFirst := waitDocker()
	report["failed pulls (HTTP loop)"] = fmt.Sprintf("%d of %d", p.failed.Load(), p.failed.Load()+p.ok.Load())
	report["failed pulls (docker pull loop)"] = fmt.Sprintf("%d of %d", dFailed, dFailed+dOK)
	if p.failed.Load() != 0 {
		t.Errorf("%d pulls through HAProxy failed during the upgrade (between the first and the last: %v)", p.failed.Load(), p.failureWindow().Round(100*time.Millisecond))
	}
	if dFailed != 0 {
		t.Errorf("%d docker pulls through HAProxy failed during the upgrade; the first: %s", dFailed, dFirst)
	}

	// Every replica runs B, as its service and its own report say.
	newImage := MustDocker(t, "image", "inspect", "--format", "{{.ID}}", "dtr-registry:"+to)
	for n, id := range l.replicas(t) {
		if v := l.docker(t, 1, "service", "inspect", "--format", `{{index .Spec.Labels "com.docker.dtr.version"}} {{.Spec.TaskTemplate.ContainerSpec.Image}}`, "dtr-registry-"+id); v != to+" "+newImage {
			t.Errorf("node%d's replica after the upgrade: %s, want %s %s", n, v, to, newImage)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := clusterStatusAt(t, lb)
		all := len(st["replica_health"].(map[string]any)) == 3
		for _, h := range st["replica_health"].(map[string]any) {
			h := h.(map[string]any)
			all = all && h["version"] == to && h["healthy"] == true
		}
		if all && voters(st) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster status after the upgrade: %v", st)
		}
		time.Sleep(time.Second)
	}
	compareSnapshots(t, before, metadataSnapshot(t, lb))
	verifyRestored(t, lb, state)

	run = runTimed(t, b.dtr, labEnv, "", "upgrade", "--existing-replica-id", first)
	report["no-op rerun"] = run.total.Round(100 * time.Millisecond).String()
	if run.code != 0 || strings.Count(run.log, "runs "+to+" already") != 3 {
		t.Errorf("upgrade of the upgraded cluster: exit %d\n%s", run.code, run.log)
	}
}
