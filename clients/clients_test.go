// Package clients_test runs registry clients that dtr did not write against
// an in-process replica: the docker CLI and engine, skopeo, podman, buildah,
// containerd's ctr (Debian packages), and crane, oras, regctl, helm and
// cosign (built from the versions tools/clients pins). Each client gets a
// replica of its own and one subtest per operation it has, so a failure
// names the client and the operation; a client that is not there is skipped
// with the reason. docs/clients.md has the recipe each subtest follows.
package clients_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Words a client's message holds when the registry refused it.
var (
	refusedLogin  = []string{"unauthorized", "incorrect username or password", "invalid username/password", "401"}
	refusedAccess = []string{"unauthorized", "denied", "forbidden", "not found", "401", "403", "404", "authentication required"}
)

func TestClients(t *testing.T) {
	if testing.Short() {
		t.Skip("client matrix: skipped with -short")
	}
	for _, c := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"docker", testDocker},
		{"skopeo", testSkopeo},
		{"podman", testPodman},
		{"buildah", testBuildah},
		{"ctr", testCtr},
		{"crane", testCrane},
		{"oras", testOras},
		{"regctl", testRegctl},
		{"helm", testHelm},
		{"cosign", testCosign},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			defer func() { t.Logf("%s: %v", c.name, time.Since(start).Round(100*time.Millisecond)) }()
			c.fn(t)
		})
	}
	t.Run("notation", func(t *testing.T) {
		t.Skip("notation: not available: its module (github.com/notaryproject/notation) is not served by the module proxy this project reaches")
	})
}

// matrix runs one client's operations as named subtests, in order; an
// operation that needs an earlier one that did not pass is skipped naming it.
type matrix struct {
	t  *testing.T
	r  *replica
	ok map[string]bool
}

func newMatrix(t *testing.T, r *replica) *matrix {
	m := &matrix{t: t, r: r, ok: map[string]bool{}}
	// Last: whatever the client did, the replica answered no 5xx.
	t.Cleanup(func() {
		if errs := r.log.serverErrors(); len(errs) > 0 {
			var b strings.Builder
			for _, q := range errs {
				fmt.Fprintf(&b, "\n  %s %s → %d", q.method, q.path, q.status)
			}
			t.Errorf("the replica answered %d requests with a server error:%s", len(errs), b.String())
		}
	})
	return m
}

func (m *matrix) step(name string, needs []string, fn func(t *testing.T)) {
	m.t.Run(name, func(t *testing.T) {
		for _, n := range needs {
			if !m.ok[n] {
				t.Skipf("needs %q, which did not pass", n)
			}
		}
		mark := m.r.log.mark()
		defer func() {
			if !t.Failed() && !t.Skipped() {
				m.ok[name] = true
			}
			if t.Failed() {
				// What the replica answered, for the report.
				var b strings.Builder
				for _, q := range m.r.log.since(mark) {
					fmt.Fprintf(&b, "\n  %s %s → %d", q.method, q.path, q.status)
				}
				t.Logf("the replica's access log during %s:%s", name, b.String())
			}
		}()
		fn(t)
	})
}

// containersEnv gives the containers tools (skopeo, podman, buildah) files
// of the test's own: a registries.conf with no search registries (only
// fully qualified names), a storage and a credentials file.
func containersEnv(t *testing.T) []string {
	dir := t.TempDir()
	conf := writeFile(t, dir, "registries.conf", []byte("unqualified-search-registries = []\n"))
	// Storage of the test's own, with vfs: no overlay mounts to leave behind.
	storage := writeFile(t, dir, "storage.conf", []byte(fmt.Sprintf(
		"[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n", filepath.Join(dir, "graph"), filepath.Join(dir, "run"))))
	return []string{
		"CONTAINERS_REGISTRIES_CONF=" + conf,
		"CONTAINERS_STORAGE_CONF=" + storage,
		"REGISTRY_AUTH_FILE=" + filepath.Join(dir, "auth.json"),
	}
}

// certDir is a directory holding the cluster CA as ca.crt, the layout the
// containers tools' --cert-dir and docker's certs.d read.
func certDir(t *testing.T, r *replica) string {
	d := t.TempDir()
	writeFile(t, d, "ca.crt", r.CACertPEM())
	return d
}

// hostCerts installs the cluster CA in a system certs.d directory for the
// replica's host:port (docker's daemon reads it on every request), removed
// when the test ends.
func hostCerts(t *testing.T, r *replica, base string) {
	t.Helper()
	d := filepath.Join(base, r.Host)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Skipf("cannot write %s (run as root): %v", d, err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	writeFile(t, d, "ca.crt", r.CACertPEM())
}

// dockerContext is a build context whose image (FROM scratch) holds one
// random file.
func dockerContext(t *testing.T, name string) string {
	d := t.TempDir()
	writeFile(t, d, "data", randomBytes(t, 256<<10))
	writeFile(t, d, name, []byte("FROM scratch\nCOPY data /data\n"))
	return d
}

// ---- docker -----------------------------------------------------------------

func testDocker(t *testing.T) {
	bin := system(t, "docker", "docker.io")
	if out, err := exec.Command(bin, "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		t.Skipf("docker: no engine answers on its socket: %s", lastLines(string(out), 1))
	}
	r := startReplica(t)
	hostCerts(t, r, "/etc/docker/certs.d")
	c := newClient(t, bin, "DOCKER_CONFIG="+t.TempDir(), "DOCKER_BUILDKIT=0")
	m := newMatrix(t, r)
	repo := "admin/docker-app"
	ref := r.Host + "/" + repo + ":v1"
	var local []string // images to remove from the engine at the end
	t.Cleanup(func() {
		for _, i := range local {
			exec.Command(bin, "image", "rm", "-f", i).Run()
		}
	})
	var pushed string

	m.step("login", nil, func(t *testing.T) {
		c.refused(t, "wrong-password\n", refusedLogin, "login", r.Host, "-u", admin, "--password-stdin")
		c.ok(t, adminPW+"\n", "login", r.Host, "-u", admin, "--password-stdin")
	})
	m.step("push", []string{"login"}, func(t *testing.T) {
		local = append(local, ref)
		c.ok(t, "", "build", "-q", "-t", ref, dockerContext(t, "Dockerfile"))
		pushed = digestAfter(c.ok(t, "", "push", ref), "digest:")
		if got := r.digest(t, repo, "v1"); pushed == "" || got != pushed {
			t.Fatalf("docker push reported %q, the registry serves %s", pushed, got)
		}
	})
	m.step("pull", []string{"push"}, func(t *testing.T) {
		c.ok(t, "", "image", "rm", ref)
		byDigest := r.Host + "/" + repo + "@" + pushed
		local = append(local, byDigest)
		c.ok(t, "", "pull", byDigest)
		out := c.ok(t, "", "image", "inspect", "--format", "{{json .RepoDigests}}", byDigest)
		if !strings.Contains(out, byDigest) {
			t.Fatalf("pulled image's RepoDigests %s lack %s", strings.TrimSpace(out), byDigest)
		}
		c.ok(t, "", "tag", byDigest, ref)
	})
	m.step("copy-mount", []string{"pull"}, func(t *testing.T) {
		dst := r.Host + "/admin/docker-copy:v1"
		local = append(local, dst)
		c.ok(t, "", "tag", ref, dst)
		mark := r.log.mark()
		c.ok(t, "", "push", dst)
		r.log.wantMount(t, "admin/docker-copy", mark)
		if got := r.digest(t, "admin/docker-copy", "v1"); got != pushed {
			t.Fatalf("the copy is %s, the original %s", got, pushed)
		}
	})
	m.step("multi-platform", []string{"push"}, func(t *testing.T) {
		arm := r.Host + "/admin/docker-arm:v1"
		multi := r.Host + "/admin/docker-multi:v1"
		local = append(local, arm)
		c.ok(t, "", "build", "-q", "-t", arm, dockerContext(t, "Dockerfile"))
		c.ok(t, "", "push", arm)
		c.ok(t, "", "manifest", "create", multi, ref, arm)
		// The legacy builder makes images for the engine's platform; the
		// list says which platform each entry is for.
		c.ok(t, "", "manifest", "annotate", "--os", "linux", "--arch", "arm64", multi, arm)
		out, err := c.run(t, "", "manifest", "push", "--purge", multi)
		if err != nil && strings.Contains(out, "Client sent an HTTP request to an HTTPS server") {
			// The CLI's registry client takes 127.0.0.0/8 for an insecure
			// registry and sends it plain HTTP; only loopback replicas run here.
			t.Skipf("docker manifest push sends plain HTTP to a loopback registry: %s", lastLines(out, 1))
		}
		if err != nil {
			t.Fatalf("docker manifest push: %v\n%s", err, out)
		}
		r.wantPlatforms(t, "admin/docker-multi", "v1")
		if d := digestRE.FindString(lastLines(out, 1)); d == "" || d != r.digest(t, "admin/docker-multi", "v1") {
			t.Fatalf("docker manifest push reported %q, the registry serves %s", d, r.digest(t, "admin/docker-multi", "v1"))
		}
	})
	m.step("non-admin", []string{"push"}, func(t *testing.T) {
		d := c.with("DOCKER_CONFIG=" + t.TempDir())
		d.ok(t, devPW+"\n", "login", r.Host, "-u", dev, "--password-stdin")
		devRef := r.Host + "/" + repo + "@" + pushed
		// The engine serves a digest it holds without asking the registry:
		// remove the image, every name of it.
		id := strings.TrimSpace(c.ok(t, "", "image", "inspect", "--format", "{{.Id}}", devRef))
		c.ok(t, "", "image", "rm", "-f", id)
		d.refused(t, "", refusedAccess, "pull", devRef)
		r.grant(t, repo)
		d.ok(t, "", "pull", devRef)
	})
}

// ---- skopeo -----------------------------------------------------------------

func testSkopeo(t *testing.T) {
	bin := system(t, "skopeo", "skopeo")
	r := startReplica(t)
	certs := certDir(t, r)
	c := newClient(t, bin, containersEnv(t)...)
	m := newMatrix(t, r)
	repo := "admin/skopeo-app"
	ref := "docker://" + r.Host + "/" + repo + ":v1"
	img := newImage(t, "amd64")
	lay := t.TempDir()
	writeLayout(t, lay, layoutEntry{tag: "v1", img: &img})

	m.step("login", nil, func(t *testing.T) {
		c.refused(t, "wrong-password\n", refusedLogin, "login", "--cert-dir", certs, "-u", admin, "--password-stdin", r.Host)
		c.ok(t, adminPW+"\n", "login", "--cert-dir", certs, "-u", admin, "--password-stdin", r.Host)
	})
	m.step("push", []string{"login"}, func(t *testing.T) {
		c.ok(t, "", "copy", "--dest-cert-dir", certs, "oci:"+lay+":v1", ref)
		if got := r.digest(t, repo, "v1"); got != img.digest {
			t.Fatalf("pushed %s, the registry serves %s", img.digest, got)
		}
	})
	m.step("pull", []string{"push"}, func(t *testing.T) {
		out := t.TempDir()
		c.ok(t, "", "copy", "--src-cert-dir", certs, "docker://"+r.Host+"/"+repo+"@"+img.digest, "oci:"+out+":pulled")
		if got := layoutDigest(t, out, "pulled"); got != img.digest {
			t.Fatalf("pulled %s, pushed %s", got, img.digest)
		}
		layoutHasBlob(t, out, img.blobs[1])
	})
	m.step("tags", []string{"push"}, func(t *testing.T) {
		var out struct{ Tags []string }
		if err := json.Unmarshal([]byte(c.ok(t, "", "list-tags", "--cert-dir", certs, "docker://"+r.Host+"/"+repo)), &out); err != nil || strings.Join(out.Tags, ",") != "v1" {
			t.Fatalf("skopeo list-tags: %v %v, want [v1]", out.Tags, err)
		}
	})
	m.step("copy-mount", []string{"push"}, func(t *testing.T) {
		mark := r.log.mark()
		c.ok(t, "", "copy", "--src-cert-dir", certs, "--dest-cert-dir", certs, ref, "docker://"+r.Host+"/admin/skopeo-copy:v1")
		r.log.wantMount(t, "admin/skopeo-copy", mark)
		if got := r.digest(t, "admin/skopeo-copy", "v1"); got != img.digest {
			t.Fatalf("the copy is %s, the original %s", got, img.digest)
		}
	})
	m.step("delete", []string{"copy-mount"}, func(t *testing.T) {
		c.ok(t, "", "delete", "--cert-dir", certs, "docker://"+r.Host+"/admin/skopeo-copy:v1")
		r.wantGone(t, "admin/skopeo-copy", "v1")
		r.wantGone(t, "admin/skopeo-copy", img.digest)
		if got := r.digest(t, repo, "v1"); got != img.digest {
			t.Fatalf("deleting the copy touched the original: %s", got)
		}
	})
	m.step("multi-platform", []string{"login"}, func(t *testing.T) {
		amd, arm := newImage(t, "amd64"), newImage(t, "arm64")
		_, want := index(amd, arm)
		multi := t.TempDir()
		writeLayout(t, multi, layoutEntry{tag: "multi", multi: []image{amd, arm}})
		c.ok(t, "", "copy", "--all", "--dest-cert-dir", certs, "oci:"+multi+":multi", "docker://"+r.Host+"/admin/skopeo-multi:v1")
		r.wantPlatforms(t, "admin/skopeo-multi", "v1")
		if got := r.digest(t, "admin/skopeo-multi", "v1"); got != want {
			t.Fatalf("pushed the index %s, the registry serves %s", want, got)
		}
	})
	m.step("non-admin", []string{"push"}, func(t *testing.T) {
		auth := filepath.Join(t.TempDir(), "dev.json")
		c.ok(t, devPW+"\n", "login", "--authfile", auth, "--cert-dir", certs, "-u", dev, "--password-stdin", r.Host)
		c.refused(t, "", refusedAccess, "inspect", "--raw", "--authfile", auth, "--cert-dir", certs, ref)
		r.grant(t, repo)
		if got := sha([]byte(c.ok(t, "", "inspect", "--raw", "--authfile", auth, "--cert-dir", certs, ref))); got != img.digest {
			t.Fatalf("dev read %s, want %s", got, img.digest)
		}
	})
}

// ---- podman -----------------------------------------------------------------

func testPodman(t *testing.T) {
	bin := system(t, "podman", "podman")
	r := startReplica(t)
	certs := certDir(t, r)
	c := newClient(t, bin, containersEnv(t)...)
	m := newMatrix(t, r)
	repo := "admin/podman-app"
	ref := r.Host + "/" + repo + ":v1"
	var pushed string

	m.step("login", nil, func(t *testing.T) {
		c.refused(t, "wrong-password\n", refusedLogin, "login", "--cert-dir", certs, "-u", admin, "--password-stdin", r.Host)
		c.ok(t, adminPW+"\n", "login", "--cert-dir", certs, "-u", admin, "--password-stdin", r.Host)
	})
	m.step("push", []string{"login"}, func(t *testing.T) {
		c.ok(t, "", "build", "-q", "-t", ref, dockerContext(t, "Containerfile"))
		df := filepath.Join(t.TempDir(), "digest")
		c.ok(t, "", "push", "--cert-dir", certs, "--digestfile", df, ref)
		b, _ := os.ReadFile(df)
		pushed = strings.TrimSpace(string(b))
		if got := r.digest(t, repo, "v1"); got != pushed {
			t.Fatalf("podman push reported %q, the registry serves %s", pushed, got)
		}
	})
	m.step("pull", []string{"push"}, func(t *testing.T) {
		c.ok(t, "", "rmi", ref)
		byDigest := r.Host + "/" + repo + "@" + pushed
		c.ok(t, "", "pull", "-q", "--cert-dir", certs, byDigest)
		if got := strings.TrimSpace(c.ok(t, "", "image", "inspect", "--format", "{{.Digest}}", byDigest)); got != pushed {
			t.Fatalf("pulled %s, pushed %s", got, pushed)
		}
		c.ok(t, "", "tag", byDigest, ref)
	})
	m.step("tags", []string{"push"}, func(t *testing.T) {
		// podman search has no --cert-dir: it reads the system certs.d.
		hostCerts(t, r, "/etc/containers/certs.d")
		out := c.ok(t, "", "search", "--list-tags", r.Host+"/"+repo)
		found := false
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == r.Host+"/"+repo && f[1] == "v1" {
				found = true
			}
		}
		if !found {
			t.Fatalf("podman search --list-tags lacks v1:\n%s", out)
		}
	})
	m.step("copy-mount", []string{"pull"}, func(t *testing.T) {
		dst := r.Host + "/admin/podman-copy:v1"
		c.ok(t, "", "tag", ref, dst)
		mark := r.log.mark()
		c.ok(t, "", "push", "--cert-dir", certs, dst)
		r.log.wantMount(t, "admin/podman-copy", mark)
		if got := r.digest(t, "admin/podman-copy", "v1"); got != pushed {
			t.Fatalf("the copy is %s, the original %s", got, pushed)
		}
	})
	m.step("multi-platform", []string{"push"}, func(t *testing.T) {
		arm := r.Host + "/admin/podman-arm:v1"
		c.ok(t, "", "build", "-q", "-t", arm, dockerContext(t, "Containerfile"))
		c.ok(t, "", "push", "--cert-dir", certs, arm)
		list := r.Host + "/admin/podman-multi:v1"
		c.ok(t, "", "manifest", "create", list)
		c.ok(t, "", "manifest", "add", "--cert-dir", certs, list, "docker://"+ref)
		c.ok(t, "", "manifest", "add", "--cert-dir", certs, "--arch", "arm64", list, "docker://"+arm)
		df := filepath.Join(t.TempDir(), "digest")
		c.ok(t, "", "manifest", "push", "--all", "--cert-dir", certs, "--digestfile", df, list, "docker://"+list)
		r.wantPlatforms(t, "admin/podman-multi", "v1")
		b, _ := os.ReadFile(df)
		if got := r.digest(t, "admin/podman-multi", "v1"); strings.TrimSpace(string(b)) != got {
			t.Fatalf("podman manifest push reported %q, the registry serves %s", b, got)
		}
	})
	m.step("non-admin", []string{"push"}, func(t *testing.T) {
		auth := filepath.Join(t.TempDir(), "dev.json")
		c.ok(t, devPW+"\n", "login", "--authfile", auth, "--cert-dir", certs, "-u", dev, "--password-stdin", r.Host)
		byDigest := r.Host + "/" + repo + "@" + pushed
		// Nothing held locally: the pull must ask the registry.
		c.ok(t, "", "rmi", "--all", "--force")
		c.refused(t, "", refusedAccess, "pull", "-q", "--authfile", auth, "--cert-dir", certs, byDigest)
		r.grant(t, repo)
		c.ok(t, "", "pull", "-q", "--authfile", auth, "--cert-dir", certs, byDigest)
	})
}

// ---- buildah ----------------------------------------------------------------

func testBuildah(t *testing.T) {
	bin := system(t, "buildah", "buildah")
	r := startReplica(t)
	certs := certDir(t, r)
	c := newClient(t, bin, containersEnv(t)...)
	m := newMatrix(t, r)
	repo := "admin/buildah-app"
	ref := r.Host + "/" + repo + ":v1"
	var pushed string
	// build makes an image FROM scratch holding one random file.
	build := func(t *testing.T, name string) {
		t.Helper()
		ctr := strings.TrimSpace(c.ok(t, "", "from", "scratch"))
		data := writeFile(t, t.TempDir(), "data", randomBytes(t, 256<<10))
		c.ok(t, "", "copy", ctr, data, "/data")
		c.ok(t, "", "commit", "-q", ctr, name)
		c.ok(t, "", "rm", ctr)
	}

	m.step("login", nil, func(t *testing.T) {
		c.refused(t, "wrong-password\n", refusedLogin, "login", "--cert-dir", certs, "-u", admin, "--password-stdin", r.Host)
		c.ok(t, adminPW+"\n", "login", "--cert-dir", certs, "-u", admin, "--password-stdin", r.Host)
	})
	m.step("push", []string{"login"}, func(t *testing.T) {
		build(t, ref)
		df := filepath.Join(t.TempDir(), "digest")
		c.ok(t, "", "push", "-q", "--cert-dir", certs, "--digestfile", df, ref)
		b, _ := os.ReadFile(df)
		pushed = strings.TrimSpace(string(b))
		if got := r.digest(t, repo, "v1"); got != pushed {
			t.Fatalf("buildah push reported %q, the registry serves %s", pushed, got)
		}
	})
	m.step("pull", []string{"push"}, func(t *testing.T) {
		c.ok(t, "", "rmi", ref)
		byDigest := r.Host + "/" + repo + "@" + pushed
		c.ok(t, "", "pull", "-q", "--cert-dir", certs, byDigest)
		if got := strings.TrimSpace(c.ok(t, "", "inspect", "--type", "image", "--format", "{{.FromImageDigest}}", byDigest)); got != pushed {
			t.Fatalf("pulled %s, pushed %s", got, pushed)
		}
		c.ok(t, "", "tag", byDigest, ref)
	})
	m.step("copy-mount", []string{"pull"}, func(t *testing.T) {
		mark := r.log.mark()
		c.ok(t, "", "push", "-q", "--cert-dir", certs, ref, "docker://"+r.Host+"/admin/buildah-copy:v1")
		r.log.wantMount(t, "admin/buildah-copy", mark)
		if got := r.digest(t, "admin/buildah-copy", "v1"); got != pushed {
			t.Fatalf("the copy is %s, the original %s", got, pushed)
		}
	})
	m.step("multi-platform", []string{"push"}, func(t *testing.T) {
		arm := r.Host + "/admin/buildah-arm:v1"
		build(t, arm)
		c.ok(t, "", "push", "-q", "--cert-dir", certs, arm)
		list := r.Host + "/admin/buildah-multi:v1"
		c.ok(t, "", "manifest", "create", list)
		c.ok(t, "", "manifest", "add", "--cert-dir", certs, list, "docker://"+ref)
		c.ok(t, "", "manifest", "add", "--cert-dir", certs, "--arch", "arm64", list, "docker://"+arm)
		df := filepath.Join(t.TempDir(), "digest")
		c.ok(t, "", "manifest", "push", "-q", "--all", "--cert-dir", certs, "--digestfile", df, list, "docker://"+list)
		r.wantPlatforms(t, "admin/buildah-multi", "v1")
		b, _ := os.ReadFile(df)
		if got := r.digest(t, "admin/buildah-multi", "v1"); strings.TrimSpace(string(b)) != got {
			t.Fatalf("buildah manifest push reported %q, the registry serves %s", b, got)
		}
	})
	m.step("non-admin", []string{"push"}, func(t *testing.T) {
		auth := filepath.Join(t.TempDir(), "dev.json")
		c.ok(t, devPW+"\n", "login", "--authfile", auth, "--cert-dir", certs, "-u", dev, "--password-stdin", r.Host)
		byDigest := r.Host + "/" + repo + "@" + pushed
		// Nothing held locally: the pull must ask the registry.
		c.ok(t, "", "rmi", "--all", "--force")
		c.refused(t, "", refusedAccess, "pull", "-q", "--authfile", auth, "--cert-dir", certs, byDigest)
		r.grant(t, repo)
		c.ok(t, "", "pull", "-q", "--authfile", auth, "--cert-dir", certs, byDigest)
	})
}

// ---- ctr --------------------------------------------------------------------

// containerdSocket finds a running containerd: its own service's, or the
// one dockerd starts for itself.
func containerdSocket() string {
	for _, s := range []string{"/run/containerd/containerd.sock", "/var/run/docker/containerd/containerd.sock"} {
		if fi, err := os.Stat(s); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return s
		}
	}
	return ""
}

func testCtr(t *testing.T) {
	bin := system(t, "ctr", "containerd")
	sock := containerdSocket()
	if sock == "" {
		t.Skip("ctr: no containerd socket (/run/containerd/containerd.sock or dockerd's /var/run/docker/containerd/containerd.sock)")
	}
	ns := fmt.Sprintf("dtr-clients-%d", os.Getpid())
	base := newClient(t, bin)
	if out, err := base.run(t, "", "--address", sock, "version"); err != nil {
		t.Skipf("ctr: containerd at %s does not answer: %s", sock, lastLines(out, 1))
	}
	r := startReplica(t)
	// ctr talks plain HTTP to a loopback registry unless a hosts.toml says
	// https; the same file names the CA.
	hosts := t.TempDir()
	writeFile(t, hosts, filepath.Join(r.Host, "hosts.toml"), []byte(fmt.Sprintf(
		"server = \"https://%s\"\n\n[host.\"https://%s\"]\n  ca = %q\n", r.Host, r.Host, r.caFile)))
	ctr := func(args ...string) []string { return append([]string{"--address", sock, "-n", ns}, args...) }
	t.Cleanup(func() {
		if out, err := exec.Command(bin, ctr("images", "ls", "-q")...).Output(); err == nil {
			refs := strings.Fields(string(out))
			if len(refs) > 0 {
				exec.Command(bin, ctr(append([]string{"images", "rm", "--sync"}, refs...)...)...).Run()
			}
		}
		exec.Command(bin, "--address", sock, "namespaces", "rm", ns).Run()
	})
	c := base
	m := newMatrix(t, r)
	repo := "admin/ctr-app"
	ref := r.Host + "/" + repo + ":v1"
	img := newImage(t, "amd64")
	amd, arm := newImage(t, "amd64"), newImage(t, "arm64")
	_, multiDigest := index(amd, arm)
	lay := t.TempDir()
	writeLayout(t, lay,
		layoutEntry{tag: "v1", img: &img, prefix: r.Host + "/" + repo},
		layoutEntry{tag: "v1", multi: []image{amd, arm}, prefix: r.Host + "/admin/ctr-multi"})
	archive := filepath.Join(t.TempDir(), "images.tar")
	tarDir(t, lay, archive)
	// as runs "ctr images push|pull" with --hosts-dir and --user, typing
	// the password at ctr's prompt.
	as := func(t *testing.T, user, pw string, args ...string) (string, error) {
		t.Helper()
		cmd := ctr(append([]string{args[0], args[1], "--hosts-dir", hosts, "--user", user}, args[2:]...)...)
		out, err := c.runTTY(t, pw, cmd...)
		if err != nil && ctrPusherRace(out) {
			// containerd 1.6's pusher closes its channel while a request
			// may still hand it a pipe; later versions check first. A
			// client panic, not the registry's answer: once more.
			t.Logf("ctr panicked in its pusher (a race of containerd 1.6's client); pushing again")
			out, err = c.runTTY(t, pw, cmd...)
		}
		return out, err
	}

	m.step("import", nil, func(t *testing.T) {
		c.ok(t, "", ctr("images", "import", "--all-platforms", "--no-unpack", archive)...)
	})
	m.step("login", []string{"import"}, func(t *testing.T) {
		// ctr has no login: --user on each command; a wrong password is
		// refused by the first request that needs it.
		out, err := as(t, admin, "wrong-password", "images", "push", ref)
		if err == nil || !strings.Contains(strings.ToLower(out), "401") {
			t.Fatalf("a push with a wrong password: %v, want 401:\n%s", err, out)
		}
		t.Logf("refused as expected: %s", lastLines(out, 1))
	})
	m.step("push", []string{"import"}, func(t *testing.T) {
		if out, err := as(t, admin, adminPW, "images", "push", ref); err != nil {
			t.Fatalf("ctr images push: %v\n%s", err, out)
		}
		if got := r.digest(t, repo, "v1"); got != img.digest {
			t.Fatalf("pushed %s, the registry serves %s", img.digest, got)
		}
	})
	m.step("pull", []string{"push"}, func(t *testing.T) {
		c.ok(t, "", ctr("images", "rm", "--sync", ref)...)
		if out, err := as(t, admin, adminPW, "images", "pull", ref); err != nil {
			t.Fatalf("ctr images pull: %v\n%s", err, out)
		}
		out := c.ok(t, "", ctr("images", "ls", "name=="+ref)...)
		if !strings.Contains(out, img.digest) {
			t.Fatalf("pulled image is not %s:\n%s", img.digest, out)
		}
	})
	m.step("copy-mount", []string{"pull"}, func(t *testing.T) {
		dst := r.Host + "/admin/ctr-copy:v1"
		c.ok(t, "", ctr("images", "tag", ref, dst)...)
		mark := r.log.mark()
		if out, err := as(t, admin, adminPW, "images", "push", dst); err != nil {
			t.Fatalf("ctr images push: %v\n%s", err, out)
		}
		r.log.wantMount(t, "admin/ctr-copy", mark)
		if got := r.digest(t, "admin/ctr-copy", "v1"); got != img.digest {
			t.Fatalf("the copy is %s, the original %s", got, img.digest)
		}
	})
	m.step("multi-platform", []string{"import"}, func(t *testing.T) {
		if out, err := as(t, admin, adminPW, "images", "push", r.Host+"/admin/ctr-multi:v1"); err != nil {
			t.Fatalf("ctr images push: %v\n%s", err, out)
		}
		r.wantPlatforms(t, "admin/ctr-multi", "v1")
		if got := r.digest(t, "admin/ctr-multi", "v1"); got != multiDigest {
			t.Fatalf("pushed the index %s, the registry serves %s", multiDigest, got)
		}
	})
	m.step("non-admin", []string{"push"}, func(t *testing.T) {
		c.ok(t, "", ctr("images", "rm", "--sync", ref)...)
		out, err := as(t, dev, devPW, "images", "pull", ref)
		if err == nil {
			t.Fatalf("dev pulled a private repository without a grant:\n%s", out)
		}
		t.Logf("refused as expected: %s", lastLines(out, 1))
		r.grant(t, repo)
		if out, err := as(t, dev, devPW, "images", "pull", ref); err != nil {
			t.Fatalf("dev's pull after the grant: %v\n%s", err, out)
		}
	})
}

// ---- crane ------------------------------------------------------------------

func testCrane(t *testing.T) {
	bin := goClient(t, "crane")
	r := startReplica(t)
	// crane has no CA flag: Go's SSL_CERT_FILE.
	c := newClient(t, bin, "DOCKER_CONFIG="+t.TempDir(), "SSL_CERT_FILE="+r.caFile)
	m := newMatrix(t, r)
	repo := "admin/crane-app"
	ref := r.Host + "/" + repo + ":v1"
	img, arm := newImage(t, "amd64"), newImage(t, "arm64")
	lay, armLay := t.TempDir(), t.TempDir()
	writeLayout(t, lay, layoutEntry{tag: "v1", img: &img})
	writeLayout(t, armLay, layoutEntry{tag: "v1", img: &arm})

	m.step("login", nil, func(t *testing.T) {
		// crane auth login only stores the credentials; the first request
		// with them is refused.
		c.ok(t, "wrong-password\n", "auth", "login", r.Host, "-u", admin, "--password-stdin")
		c.refused(t, "", refusedLogin, "ls", r.Host+"/"+repo)
		c.ok(t, adminPW+"\n", "auth", "login", r.Host, "-u", admin, "--password-stdin")
	})
	m.step("push", []string{"login"}, func(t *testing.T) {
		c.ok(t, "", "push", lay, ref)
		if got := r.digest(t, repo, "v1"); got != img.digest {
			t.Fatalf("pushed %s, the registry serves %s", img.digest, got)
		}
	})
	m.step("pull", []string{"push"}, func(t *testing.T) {
		if got := strings.TrimSpace(c.ok(t, "", "digest", ref)); got != img.digest {
			t.Fatalf("crane digest: %s, want %s", got, img.digest)
		}
		out := t.TempDir()
		c.ok(t, "", "pull", "--format", "oci", r.Host+"/"+repo+"@"+img.digest, out)
		if got := layoutDigest(t, out, ""); got != img.digest {
			t.Fatalf("pulled %s, pushed %s", got, img.digest)
		}
		layoutHasBlob(t, out, img.blobs[1])
	})
	m.step("tags", []string{"push"}, func(t *testing.T) {
		if out := strings.TrimSpace(c.ok(t, "", "ls", r.Host+"/"+repo)); out != "v1" {
			t.Fatalf("crane ls: %q, want v1", out)
		}
	})
	m.step("copy-mount", []string{"push"}, func(t *testing.T) {
		mark := r.log.mark()
		c.ok(t, "", "copy", ref, r.Host+"/admin/crane-copy:v1")
		r.log.wantMount(t, "admin/crane-copy", mark)
		if got := r.digest(t, "admin/crane-copy", "v1"); got != img.digest {
			t.Fatalf("the copy is %s, the original %s", got, img.digest)
		}
	})
	m.step("delete", []string{"copy-mount"}, func(t *testing.T) {
		c.ok(t, "", "delete", r.Host+"/admin/crane-copy@"+img.digest)
		r.wantGone(t, "admin/crane-copy", img.digest)
		r.wantGone(t, "admin/crane-copy", "v1")
	})
	m.step("multi-platform", []string{"push"}, func(t *testing.T) {
		armRef := r.Host + "/admin/crane-arm:v1"
		c.ok(t, "", "push", armLay, armRef)
		out := c.ok(t, "", "index", "append", "-m", ref, "-m", armRef, "-t", r.Host+"/admin/crane-multi:v1")
		r.wantPlatforms(t, "admin/crane-multi", "v1")
		if d := digestRE.FindString(lastLines(out, 1)); d != r.digest(t, "admin/crane-multi", "v1") {
			t.Fatalf("crane index append reported %q, the registry serves %s", d, r.digest(t, "admin/crane-multi", "v1"))
		}
	})
	m.step("non-admin", []string{"push"}, func(t *testing.T) {
		d := c.with("DOCKER_CONFIG=" + t.TempDir())
		d.ok(t, devPW+"\n", "auth", "login", r.Host, "-u", dev, "--password-stdin")
		d.refused(t, "", refusedAccess, "manifest", ref)
		r.grant(t, repo)
		if got := sha([]byte(d.ok(t, "", "manifest", ref))); got != img.digest {
			t.Fatalf("dev read %s, want %s", got, img.digest)
		}
		// Read-only: a push is refused. crane reports the refused manifest
		// PUT as "authentication required" (docs/clients.md).
		d.refused(t, "", refusedAccess, "tag", ref, "v2")
	})
}

// ---- oras -------------------------------------------------------------------

func testOras(t *testing.T) {
	bin := goClient(t, "oras")
	r := startReplica(t)
	cfg := filepath.Join(t.TempDir(), "auth.json")
	c := newClient(t, bin)
	tls := []string{"--ca-file", r.caFile, "--registry-config", cfg}
	o := func(args ...string) []string {
		// oras's flags follow the subcommand (two words for some).
		n := 1
		if len(args) > 1 && (args[0] == "repo" || args[0] == "manifest") {
			n = 2
			if len(args) > 2 && args[1] == "index" {
				n = 3
			}
		}
		return append(append(append([]string(nil), args[:n]...), tls...), args[n:]...)
	}
	m := newMatrix(t, r)
	repo := "admin/oras-app"
	ref := r.Host + "/" + repo + ":v1"
	work := c.dir
	payload := randomBytes(t, 128<<10)
	writeFile(t, work, "payload.bin", payload)
	var pushed string

	m.step("login", nil, func(t *testing.T) {
		c.refused(t, "wrong-password\n", refusedLogin, o("login", "-u", admin, "--password-stdin", r.Host)...)
		c.ok(t, adminPW+"\n", o("login", "-u", admin, "--password-stdin", r.Host)...)
	})
	m.step("push", []string{"login"}, func(t *testing.T) {
		pushed = digestAfter(c.ok(t, "", o("push", ref, "payload.bin")...), "Digest:")
		if got := r.digest(t, repo, "v1"); pushed == "" || got != pushed {
			t.Fatalf("oras push reported %q, the registry serves %s", pushed, got)
		}
	})
	m.step("pull", []string{"push"}, func(t *testing.T) {
		out := t.TempDir()
		got := digestAfter(c.ok(t, "", o("pull", "-o", out, r.Host+"/"+repo+"@"+pushed)...), "Digest:")
		b, err := os.ReadFile(filepath.Join(out, "payload.bin"))
		if got != pushed || err != nil || string(b) != string(payload) {
			t.Fatalf("oras pull: digest %q (pushed %s), file %d bytes (%v), want %d", got, pushed, len(b), err, len(payload))
		}
	})
	m.step("tags", []string{"push"}, func(t *testing.T) {
		if out := strings.TrimSpace(c.ok(t, "", o("repo", "tags", r.Host+"/"+repo)...)); out != "v1" {
			t.Fatalf("oras repo tags: %q, want v1", out)
		}
	})
	m.step("copy-mount", []string{"push"}, func(t *testing.T) {
		mark := r.log.mark()
		c.ok(t, "", "cp", "--from-ca-file", r.caFile, "--to-ca-file", r.caFile, "--from-registry-config", cfg, "--to-registry-config", cfg,
			ref, r.Host+"/admin/oras-copy:v1")
		r.log.wantMount(t, "admin/oras-copy", mark)
		if got := r.digest(t, "admin/oras-copy", "v1"); got != pushed {
			t.Fatalf("the copy is %s, the original %s", got, pushed)
		}
	})
	m.step("delete", []string{"copy-mount"}, func(t *testing.T) {
		c.ok(t, "", o("manifest", "delete", "--force", r.Host+"/admin/oras-copy:v1")...)
		r.wantGone(t, "admin/oras-copy", "v1")
		r.wantGone(t, "admin/oras-copy", pushed)
	})
	m.step("multi-platform", []string{"login"}, func(t *testing.T) {
		amd, arm := newImage(t, "amd64"), newImage(t, "arm64")
		lay := t.TempDir()
		writeLayout(t, lay, layoutEntry{tag: "amd64", img: &amd}, layoutEntry{tag: "arm64", img: &arm})
		multi := r.Host + "/admin/oras-multi"
		for _, tag := range []string{"amd64", "arm64"} {
			c.ok(t, "", "cp", "--to-ca-file", r.caFile, "--to-registry-config", cfg, "--from-oci-layout", lay+":"+tag, multi+":"+tag)
		}
		out := c.ok(t, "", o("manifest", "index", "create", multi+":v1", "amd64", "arm64")...)
		r.wantPlatforms(t, "admin/oras-multi", "v1")
		if d := digestAfter(out, "Digest:"); d != r.digest(t, "admin/oras-multi", "v1") {
			t.Fatalf("oras manifest index create reported %q, the registry serves %s", d, r.digest(t, "admin/oras-multi", "v1"))
		}
	})
	m.step("artifact-type", []string{"login"}, func(t *testing.T) {
		const at = "application/vnd.dtr.test.report.v1+json"
		art := r.Host + "/admin/oras-artifact:v1"
		c.ok(t, "", o("push", "--artifact-type", at, art, "payload.bin")...)
		_, _, _, b := r.manifest(t, "admin/oras-artifact", "v1")
		var mf struct{ ArtifactType string }
		if json.Unmarshal(b, &mf); mf.ArtifactType != at {
			t.Fatalf("the manifest's artifactType is %q, want %q: %s", mf.ArtifactType, at, b)
		}
		out := t.TempDir()
		c.ok(t, "", o("pull", "-o", out, art)...)
		if b, _ := os.ReadFile(filepath.Join(out, "payload.bin")); string(b) != string(payload) {
			t.Fatalf("the artifact pulled back differs (%d bytes, want %d)", len(b), len(payload))
		}
	})
	m.step("referrers", []string{"push"}, func(t *testing.T) {
		const at = "application/vnd.dtr.test.sbom.v1+json"
		writeFile(t, work, "sbom.json", []byte(`{"packages":[]}`))
		att := digestAfter(c.ok(t, "", o("attach", "--artifact-type", at, ref, "sbom.json")...), "Digest:")
		out := c.ok(t, "", o("discover", "--format", "json", ref)...)
		if att == "" || !strings.Contains(out, att) || !strings.Contains(out, at) {
			t.Fatalf("oras discover does not list the attached %s (%s):\n%s", att, at, out)
		}
		if !hasReferrer(r.referrers(t, repo, pushed), att, at) {
			t.Fatalf("the referrers API lacks %s", att)
		}
	})
	m.step("non-admin", []string{"push"}, func(t *testing.T) {
		devCfg := filepath.Join(t.TempDir(), "dev.json")
		d := []string{"--ca-file", r.caFile, "--registry-config", devCfg}
		c.ok(t, devPW+"\n", append([]string{"login"}, append(d, "-u", dev, "--password-stdin", r.Host)...)...)
		out := t.TempDir()
		c.refused(t, "", refusedAccess, append([]string{"pull"}, append(d, "-o", out, ref)...)...)
		r.grant(t, repo)
		c.ok(t, "", append([]string{"pull"}, append(d, "-o", out, ref)...)...)
	})
}

func hasReferrer(refs []descriptor, digest, artifactType string) bool {
	for _, d := range refs {
		if (digest == "" || d.Digest == digest) && d.ArtifactType == artifactType {
			return true
		}
	}
	return false
}

// ---- regctl -----------------------------------------------------------------

func testRegctl(t *testing.T) {
	bin := goClient(t, "regctl")
	r := startReplica(t)
	c := newClient(t, bin, "REGCTL_CONFIG="+filepath.Join(t.TempDir(), "regctl.json"))
	// The CA goes into regctl's configuration, as PEM text (not a file).
	c.ok(t, "", "registry", "set", r.Host, "--cacert", string(r.CACertPEM()))
	m := newMatrix(t, r)
	repo := "admin/regctl-app"
	ref := r.Host + "/" + repo + ":v1"
	img, arm := newImage(t, "amd64"), newImage(t, "arm64")
	lay := t.TempDir()
	writeLayout(t, lay, layoutEntry{tag: "v1", img: &img}, layoutEntry{tag: "arm64", img: &arm})

	m.step("login", nil, func(t *testing.T) {
		c.refused(t, "wrong-password\n", refusedLogin, "registry", "login", r.Host, "-u", admin, "--pass-stdin")
		c.ok(t, adminPW+"\n", "registry", "login", r.Host, "-u", admin, "--pass-stdin")
	})
	m.step("push", []string{"login"}, func(t *testing.T) {
		c.ok(t, "", "image", "copy", "ocidir://"+lay+":v1", ref)
		if got := r.digest(t, repo, "v1"); got != img.digest {
			t.Fatalf("pushed %s, the registry serves %s", img.digest, got)
		}
	})
	m.step("pull", []string{"push"}, func(t *testing.T) {
		if got := strings.TrimSpace(c.ok(t, "", "image", "digest", ref)); got != img.digest {
			t.Fatalf("regctl image digest: %s, want %s", got, img.digest)
		}
		out := t.TempDir()
		c.ok(t, "", "image", "copy", r.Host+"/"+repo+"@"+img.digest, "ocidir://"+out+":pulled")
		if got := layoutDigest(t, out, "pulled"); got != img.digest {
			t.Fatalf("pulled %s, pushed %s", got, img.digest)
		}
		layoutHasBlob(t, out, img.blobs[1])
	})
	m.step("tags", []string{"push"}, func(t *testing.T) {
		if out := strings.TrimSpace(c.ok(t, "", "tag", "ls", r.Host+"/"+repo)); out != "v1" {
			t.Fatalf("regctl tag ls: %q, want v1", out)
		}
	})
	m.step("copy-mount", []string{"push"}, func(t *testing.T) {
		mark := r.log.mark()
		c.ok(t, "", "image", "copy", ref, r.Host+"/admin/regctl-copy:v1")
		r.log.wantMount(t, "admin/regctl-copy", mark)
		if got := r.digest(t, "admin/regctl-copy", "v1"); got != img.digest {
			t.Fatalf("the copy is %s, the original %s", got, img.digest)
		}
	})
	m.step("delete", []string{"copy-mount"}, func(t *testing.T) {
		c.ok(t, "", "manifest", "delete", r.Host+"/admin/regctl-copy@"+img.digest)
		r.wantGone(t, "admin/regctl-copy", img.digest)
		r.wantGone(t, "admin/regctl-copy", "v1")
	})
	m.step("multi-platform", []string{"push"}, func(t *testing.T) {
		armRef := r.Host + "/admin/regctl-arm:v1"
		c.ok(t, "", "image", "copy", "ocidir://"+lay+":arm64", armRef)
		multi := r.Host + "/admin/regctl-multi:v1"
		c.ok(t, "", "index", "create", multi, "--ref", ref, "--ref", armRef)
		r.wantPlatforms(t, "admin/regctl-multi", "v1")
		if got := strings.TrimSpace(c.ok(t, "", "image", "digest", multi)); got != r.digest(t, "admin/regctl-multi", "v1") {
			t.Fatalf("regctl sees %s, the registry serves %s", got, r.digest(t, "admin/regctl-multi", "v1"))
		}
	})
	payload := writeFile(t, t.TempDir(), "report.json", []byte(`{"findings":[]}`))
	m.step("artifact-type", []string{"login"}, func(t *testing.T) {
		const at = "application/vnd.dtr.test.report.v1+json"
		art := r.Host + "/admin/regctl-artifact:v1"
		c.ok(t, "", "artifact", "put", "--artifact-type", at, "--file", payload, "--file-media-type", "application/json", art)
		_, _, _, b := r.manifest(t, "admin/regctl-artifact", "v1")
		var mf struct{ ArtifactType string }
		if json.Unmarshal(b, &mf); mf.ArtifactType != at {
			t.Fatalf("the manifest's artifactType is %q, want %q: %s", mf.ArtifactType, at, b)
		}
		if got := c.ok(t, "", "artifact", "get", art); got != `{"findings":[]}` {
			t.Fatalf("regctl artifact get: %q", got)
		}
	})
	m.step("referrers", []string{"push"}, func(t *testing.T) {
		const at = "application/vnd.dtr.test.sbom.v1+json"
		c.ok(t, "", "artifact", "put", "--subject", ref, "--artifact-type", at, "--file", payload, "--file-media-type", "application/json")
		out := c.ok(t, "", "artifact", "list", ref, "--format", "{{json .Descriptors}}")
		var ds []descriptor
		if err := json.Unmarshal([]byte(out), &ds); err != nil || !hasReferrer(ds, "", at) {
			t.Fatalf("regctl artifact list lacks %s (%v):\n%s", at, err, out)
		}
		if !hasReferrer(r.referrers(t, repo, img.digest), "", at) {
			t.Fatalf("the referrers API lacks the %s referrer", at)
		}
	})
	m.step("non-admin", []string{"push"}, func(t *testing.T) {
		d := c.with("REGCTL_CONFIG=" + filepath.Join(t.TempDir(), "dev.json"))
		d.ok(t, "", "registry", "set", r.Host, "--cacert", string(r.CACertPEM()))
		d.ok(t, devPW+"\n", "registry", "login", r.Host, "-u", dev, "--pass-stdin")
		d.refused(t, "", refusedAccess, "manifest", "get", "--format", "raw-body", ref)
		r.grant(t, repo)
		if got := sha([]byte(d.ok(t, "", "manifest", "get", "--format", "raw-body", ref))); got != img.digest {
			t.Fatalf("dev read %s, want %s", got, img.digest)
		}
	})
}

// ---- helm -------------------------------------------------------------------

func testHelm(t *testing.T) {
	bin := goClient(t, "helm")
	r := startReplica(t)
	home := t.TempDir()
	c := newClient(t, bin,
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"), "HELM_REGISTRY_CONFIG="+filepath.Join(home, "registry.json"))
	m := newMatrix(t, r)
	ca := []string{"--ca-file", r.caFile}
	c.ok(t, "", "create", "hello")
	pkg := c.ok(t, "", "package", "hello")
	chart := filepath.Join(c.dir, "hello-0.1.0.tgz")
	if !strings.Contains(pkg, chart) {
		t.Fatalf("helm package: %s", pkg)
	}
	chartBytes, _ := os.ReadFile(chart)
	var pushed string

	m.step("login", nil, func(t *testing.T) {
		c.refused(t, "wrong-password\n", refusedLogin, append([]string{"registry", "login", r.Host}, append(ca, "-u", admin, "--password-stdin")...)...)
		c.ok(t, adminPW+"\n", append([]string{"registry", "login", r.Host}, append(ca, "-u", admin, "--password-stdin")...)...)
	})
	m.step("push", []string{"login"}, func(t *testing.T) {
		pushed = digestAfter(c.ok(t, "", append([]string{"push", chart, "oci://" + r.Host + "/admin"}, ca...)...), "Digest:")
		if got := r.digest(t, "admin/hello", "0.1.0"); pushed == "" || got != pushed {
			t.Fatalf("helm push reported %q, the registry serves %s", pushed, got)
		}
	})
	m.step("pull", []string{"push"}, func(t *testing.T) {
		out := t.TempDir()
		got := digestAfter(c.ok(t, "", append([]string{"pull", "oci://" + r.Host + "/admin/hello", "--version", "0.1.0", "-d", out}, ca...)...), "Digest:")
		b, err := os.ReadFile(filepath.Join(out, "hello-0.1.0.tgz"))
		if got != pushed || err != nil || string(b) != string(chartBytes) {
			t.Fatalf("helm pull: digest %q (pushed %s), chart %d bytes (%v), want the %d pushed", got, pushed, len(b), err, len(chartBytes))
		}
	})
	m.step("push-nested", []string{"login"}, func(t *testing.T) {
		// oci://host/admin/charts names the three-level repository
		// admin/charts/hello.
		out, err := c.run(t, "", append([]string{"push", chart, "oci://" + r.Host + "/admin/charts"}, ca...)...)
		if err != nil {
			t.Skipf("three-level repository names are refused today: %s", lastLines(out, 1))
		}
		d := digestAfter(out, "Digest:")
		if got := r.digest(t, "admin/charts/hello", "0.1.0"); got != d {
			t.Fatalf("helm push reported %q, the registry serves %s", d, got)
		}
		dir := t.TempDir()
		c.ok(t, "", append([]string{"pull", "oci://" + r.Host + "/admin/charts/hello", "--version", "0.1.0", "-d", dir}, ca...)...)
	})
	m.step("non-admin", []string{"push"}, func(t *testing.T) {
		d := c.with("HELM_REGISTRY_CONFIG=" + filepath.Join(t.TempDir(), "dev.json"))
		d.ok(t, devPW+"\n", append([]string{"registry", "login", r.Host}, append(ca, "-u", dev, "--password-stdin")...)...)
		pull := append([]string{"pull", "oci://" + r.Host + "/admin/hello", "--version", "0.1.0", "-d", t.TempDir()}, ca...)
		d.refused(t, "", refusedAccess, pull...)
		r.grant(t, "admin/hello")
		d.ok(t, "", pull...)
	})
}

// ---- cosign -----------------------------------------------------------------

func testCosign(t *testing.T) {
	bin := goClient(t, "cosign")
	r := startReplica(t)
	tuf := filepath.Join(t.TempDir(), "tuf")
	c := newClient(t, bin, "DOCKER_CONFIG="+t.TempDir(), "COSIGN_PASSWORD=key-Passw0rd", "TUF_ROOT="+tuf)
	other := c.with() // a second key pair: a signature it did not make must not verify
	other.dir = t.TempDir()
	c.ok(t, "", "generate-key-pair")
	other.ok(t, "", "generate-key-pair")
	// An empty trusted root: with --key and no transparency log, verify then
	// fetches no Sigstore TUF metadata (TUF_ROOT stays empty).
	c.ok(t, "", "trusted-root", "create", "--out", "trusted-root.json")
	ca := []string{"--registry-cacert", r.caFile}
	verify := func(cl *client, ref string, extra ...string) []string {
		return append(append([]string{"verify", "--key", filepath.Join(cl.dir, "cosign.pub"), "--insecure-ignore-tlog",
			"--trusted-root", filepath.Join(c.dir, "trusted-root.json")}, append(ca, extra...)...), ref)
	}
	m := newMatrix(t, r)
	repo := "admin/cosign-app"
	tok := r.Token(t, admin, adminPW, "repository:"+repo+":pull,push")
	one, st1 := r.PushImage(t, tok, repo, "v1", randomBytes(t, 64<<10))
	two, st2 := r.PushImage(t, tok, repo, "v2", randomBytes(t, 64<<10))
	if st1 != 201 || st2 != 201 {
		t.Fatalf("pushing the images to sign: %d %d", st1, st2)
	}
	tagged := r.Host + "/" + repo + "@" + one.ManifestDigest
	referred := r.Host + "/" + repo + "@" + two.ManifestDigest
	sigTag := strings.Replace(one.ManifestDigest, ":", "-", 1) + ".sig"

	m.step("login", nil, func(t *testing.T) {
		// cosign login only stores the credentials: the first request with
		// them is refused.
		c.ok(t, "wrong-password\n", "login", r.Host, "-u", admin, "--password-stdin")
		c.refused(t, "", refusedLogin, verify(c, tagged)...)
		c.ok(t, adminPW+"\n", "login", r.Host, "-u", admin, "--password-stdin")
	})
	m.step("sign-tag", []string{"login"}, func(t *testing.T) {
		c.ok(t, "", append(append([]string{"sign", "--key", "cosign.key", "--tlog-upload=false", "-y"}, ca...), tagged)...)
		if !strings.Contains(strings.Join(r.tags(t, repo), " "), sigTag) {
			t.Fatalf("no signature tag %s in %v", sigTag, r.tags(t, repo))
		}
	})
	m.step("verify-tag", []string{"sign-tag"}, func(t *testing.T) {
		out := c.ok(t, "", verify(c, tagged)...)
		if !strings.Contains(out, one.ManifestDigest) {
			t.Fatalf("cosign verify did not name %s:\n%s", one.ManifestDigest, out)
		}
		c.refused(t, "", []string{"no matching signatures", "no signatures found"}, verify(other, tagged)...)
	})
	m.step("sign-referrers", []string{"login"}, func(t *testing.T) {
		c.with("COSIGN_EXPERIMENTAL=1").ok(t, "", append(append([]string{"sign", "--key", "cosign.key", "--tlog-upload=false", "-y",
			"--registry-referrers-mode=oci-1-1"}, ca...), referred)...)
		if !hasReferrer(r.referrers(t, repo, two.ManifestDigest), "", "application/vnd.dev.cosign.artifact.sig.v1+json") {
			t.Fatalf("the referrers API lists no cosign signature of %s", two.ManifestDigest)
		}
		if tags := strings.Join(r.tags(t, repo), " "); strings.Contains(tags, strings.Replace(two.ManifestDigest, ":", "-", 1)) {
			t.Fatalf("referrers mode also wrote a tag: %s", tags)
		}
	})
	m.step("verify-referrers", []string{"sign-referrers"}, func(t *testing.T) {
		c.ok(t, "", verify(c, referred, "--experimental-oci11")...)
		c.refused(t, "", []string{"no matching signatures", "no signatures found"}, verify(other, referred, "--experimental-oci11")...)
	})
	m.step("non-admin", []string{"sign-tag"}, func(t *testing.T) {
		d := c.with("DOCKER_CONFIG=" + t.TempDir())
		d.ok(t, devPW+"\n", "login", r.Host, "-u", dev, "--password-stdin")
		d.refused(t, "", refusedAccess, verify(c, tagged)...)
		r.grant(t, repo)
		d.ok(t, "", verify(c, tagged)...)
	})
	m.step("offline", nil, func(t *testing.T) {
		if entries, err := os.ReadDir(tuf); err == nil && len(entries) > 0 {
			t.Fatalf("cosign wrote Sigstore TUF metadata to %s (it tried the public TUF repository)", tuf)
		}
	})
}

// ctrPusherRace recognises containerd 1.6's client panic in
// pushWriter.setPipe ("send on closed channel").
func ctrPusherRace(out string) bool {
	return strings.Contains(out, "panic: send on closed channel") && strings.Contains(out, "(*pushWriter).setPipe")
}
