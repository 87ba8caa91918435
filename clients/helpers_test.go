package clients_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

const (
	admin   = registrytest.AdminUser
	adminPW = registrytest.AdminPassword
	// dev is the non-admin account every replica gets.
	dev   = "dev"
	devPW = "dev-Passw0rd-9"
)

// cmdTimeout bounds one client command: a hung client fails its subtest
// instead of the whole run.
const cmdTimeout = 3 * time.Minute

// ---- the replica ------------------------------------------------------------

// replica is a test replica with its access log recorded, so that a subtest
// can see what a client asked (a cross-repository mount is a POST to
// /blobs/uploads/ answered 201) and the run can report every 5xx.
type replica struct {
	*registrytest.Replica
	t      *testing.T
	log    *accessLog
	caFile string // the cluster CA, PEM
}

func startReplica(t *testing.T) *replica {
	t.Helper()
	o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
	rec := &accessLog{}
	o.Log.SetLevel(logrus.InfoLevel) // the access log is written at info
	o.Log.AddHook(rec)
	r := registrytest.Start(t, o)
	if os.Getenv("DTR_TEST_LOG") == "" {
		// Distribution logs each refused or unknown request at error level
		// through logrus's standard logger; the access log above keeps what
		// the tests need.
		logrus.StandardLogger().SetOutput(io.Discard)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, r.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := &replica{Replica: r, t: t, log: rec, caFile: ca}
	rep.api("POST", "/api/v0/accounts", map[string]any{"name": dev, "password": devPW}, 201)
	return rep
}

// api calls the admin API as the admin and checks the status.
func (r *replica) api(method, path string, in any, want int) {
	r.t.Helper()
	if got := r.API(r.t, admin, adminPW, method, path, in, nil); got != want {
		r.t.Fatalf("%s %s: %d, want %d", method, path, got, want)
	}
}

// grant gives dev read-only access to ns/repo.
func (r *replica) grant(t *testing.T, repo string) {
	t.Helper()
	if got := r.API(t, admin, adminPW, "PUT", "/api/v0/repositories/"+repo+"/userAccess/"+dev, map[string]any{"accessLevel": "read-only"}, nil); got != 200 {
		t.Fatalf("granting %s read-only on %s: %d", dev, repo, got)
	}
}

// manifest fetches repo:ref as the admin, straight from the registry API.
func (r *replica) manifest(t *testing.T, repo, ref string) (status int, digest, mediaType string, body []byte) {
	t.Helper()
	tok := r.Token(t, admin, adminPW, "repository:"+repo+":pull")
	st, h, b := r.Do(t, http.MethodGet, "/v2/"+repo+"/manifests/"+ref, tok, nil, map[string]string{"Accept": strings.Join([]string{
		"application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
		"application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v2+json",
	}, ", ")})
	return st, h.Get("Docker-Content-Digest"), h.Get("Content-Type"), b
}

// digest is the digest the registry serves for repo:ref; the test fails if
// there is none.
func (r *replica) digest(t *testing.T, repo, ref string) string {
	t.Helper()
	st, d, _, b := r.manifest(t, repo, ref)
	if st != http.StatusOK || d == "" {
		t.Fatalf("GET /v2/%s/manifests/%s: %d %s", repo, ref, st, b)
	}
	return d
}

// tags lists repo's tags from the registry API.
func (r *replica) tags(t *testing.T, repo string) []string {
	t.Helper()
	tok := r.Token(t, admin, adminPW, "repository:"+repo+":pull")
	st, _, b := r.Do(t, http.MethodGet, "/v2/"+repo+"/tags/list", tok, nil, nil)
	if st != http.StatusOK {
		t.Fatalf("tags of %s: %d %s", repo, st, b)
	}
	var out struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out.Tags
}

// referrers lists the referrers of repo@digest from the registry's
// referrers API.
func (r *replica) referrers(t *testing.T, repo, digest string) []descriptor {
	t.Helper()
	tok := r.Token(t, admin, adminPW, "repository:"+repo+":pull")
	st, _, b := r.Do(t, http.MethodGet, "/v2/"+repo+"/referrers/"+digest, tok, nil, nil)
	if st != http.StatusOK {
		t.Fatalf("referrers of %s@%s: %d %s", repo, digest, st, b)
	}
	var idx struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("referrers of %s@%s: %v: %s", repo, digest, err, b)
	}
	return idx.Manifests
}

// platforms reads the platforms of the index repo:ref serves.
func (r *replica) platforms(t *testing.T, repo, ref string) []string {
	t.Helper()
	st, _, mt, b := r.manifest(t, repo, ref)
	if st != http.StatusOK {
		t.Fatalf("GET %s:%s: %d %s", repo, ref, st, b)
	}
	if !strings.Contains(mt, "index") && !strings.Contains(mt, "list") {
		t.Fatalf("%s:%s is a %s, not an index: %s", repo, ref, mt, b)
	}
	var idx struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range idx.Manifests {
		if m.Platform != nil {
			out = append(out, m.Platform.OS+"/"+m.Platform.Architecture)
		}
	}
	return out
}

// wantPlatforms checks that repo:ref is an index of linux/amd64 and
// linux/arm64 (and perhaps more, e.g. attestation entries).
func (r *replica) wantPlatforms(t *testing.T, repo, ref string) {
	t.Helper()
	got := strings.Join(r.platforms(t, repo, ref), " ")
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if !strings.Contains(got, p) {
			t.Fatalf("index %s:%s has platforms %q, want linux/amd64 and linux/arm64", repo, ref, got)
		}
	}
}

// wantGone checks that repo:ref no longer resolves.
func (r *replica) wantGone(t *testing.T, repo, ref string) {
	t.Helper()
	if st, _, _, b := r.manifest(t, repo, ref); st != http.StatusNotFound {
		t.Fatalf("after delete, GET /v2/%s/manifests/%s: %d %s, want 404", repo, ref, st, b)
	}
}

// ---- the access log ---------------------------------------------------------

type request struct {
	method, path string
	status       int
}

// accessLog is a logrus hook that keeps the replica's access log lines.
type accessLog struct {
	mu   sync.Mutex
	reqs []request
}

func (a *accessLog) Levels() []logrus.Level { return logrus.AllLevels }

func (a *accessLog) Fire(e *logrus.Entry) error {
	if e.Message != "request" {
		return nil
	}
	m, _ := e.Data["method"].(string)
	p, _ := e.Data["path"].(string)
	s, _ := e.Data["status"].(int)
	a.mu.Lock()
	a.reqs = append(a.reqs, request{m, p, s})
	a.mu.Unlock()
	return nil
}

// mark is where the log is now; since(mark) is what came after.
func (a *accessLog) mark() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.reqs)
}

func (a *accessLog) since(mark int) []request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]request(nil), a.reqs[mark:]...)
}

// wantMount checks that a blob was mounted into repo after mark (a POST to
// its uploads answered 201 Created, not 202 Accepted), and logs how many
// blobs were mounted and how many uploaded.
func (a *accessLog) wantMount(t *testing.T, repo string, mark int) {
	t.Helper()
	mounts, uploads := 0, 0
	for _, q := range a.since(mark) {
		switch {
		case q.method == "POST" && q.path == "/v2/"+repo+"/blobs/uploads/" && q.status == 201:
			mounts++
		case q.method == "PUT" && strings.HasPrefix(q.path, "/v2/"+repo+"/blobs/uploads/") && q.status == 201:
			uploads++
		}
	}
	t.Logf("into %s: %d blobs mounted, %d uploaded", repo, mounts, uploads)
	if mounts == 0 {
		t.Fatalf("no cross-repository mount into %s: every blob was uploaded again", repo)
	}
}

// serverErrors lists the requests answered 5xx.
func (a *accessLog) serverErrors() []request {
	var out []request
	for _, q := range a.since(0) {
		if q.status >= 500 {
			out = append(out, q)
		}
	}
	return out
}

// ---- running a client -------------------------------------------------------

// client runs one client binary with its own environment (configuration and
// credential files in a directory of the test's own).
type client struct {
	t   *testing.T
	bin string
	env []string
	dir string
}

func newClient(t *testing.T, bin string, env ...string) *client {
	return &client{t: t, bin: bin, env: append(os.Environ(), env...), dir: t.TempDir()}
}

// with returns a copy of c with more environment.
func (c *client) with(env ...string) *client {
	cp := *c
	cp.env = append(append([]string(nil), c.env...), env...)
	return &cp
}

// run runs the client with stdin and returns its combined output. Arguments
// never carry a secret: passwords go through stdin, a file or a terminal.
func (c *client) run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env
	cmd.Dir = c.dir
	cmd.Stdin = strings.NewReader(stdin)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("$ %s %s  (%v)", filepath.Base(c.bin), shown(args), time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", cmdTimeout, err)
	}
	return string(out), err
}

// ok runs the client and fails the test if it fails.
func (c *client) ok(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := c.run(t, stdin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(c.bin), shown(args), err, out)
	}
	return out
}

// refused runs the client, which must fail, and checks its output says so
// in one of the words given.
func (c *client) refused(t *testing.T, stdin string, words []string, args ...string) string {
	t.Helper()
	out, err := c.run(t, stdin, args...)
	if err == nil {
		t.Fatalf("%s %s succeeded, want it refused:\n%s", filepath.Base(c.bin), shown(args), out)
	}
	low := strings.ToLower(out)
	for _, w := range words {
		if strings.Contains(low, w) {
			t.Logf("refused as expected: %s", lastLines(out, 2))
			return out
		}
	}
	t.Fatalf("%s %s failed, but not with %q:\n%s", filepath.Base(c.bin), shown(args), words, out)
	return out
}

// runTTY runs the client on a pseudo-terminal and types password at its
// "Password:" prompt, as a person does (ctr takes no password on stdin).
func (c *client) runTTY(t *testing.T, password string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env
	cmd.Dir = c.dir
	start := time.Now()
	f, err := pty.Start(cmd)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var out bytes.Buffer
	done := make(chan struct{})
	typed := false
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			out.Write(buf[:n])
			if !typed && strings.Contains(out.String(), "Password:") {
				typed = true
				io.WriteString(f, password+"\n")
			}
			if err != nil {
				return
			}
		}
	}()
	err = cmd.Wait()
	f.Close()
	<-done
	t.Logf("$ %s %s  (%v, password typed on the terminal)", filepath.Base(c.bin), shown(args), time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", cmdTimeout, err)
	}
	return out.String(), err
}

// shown is args for the log, a multi-line argument (a PEM) cut short.
func shown(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.Contains(a, "\n") {
			a = fmt.Sprintf("%q…(%d bytes)", a[:min(len(a), 27)], len(a))
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

var digestRE = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// digestAfter finds the first digest after prefix in out ("" if none).
func digestAfter(out, prefix string) string {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if _, rest, ok := strings.Cut(sc.Text(), prefix); ok {
			if d := digestRE.FindString(rest); d != "" {
				return d
			}
		}
	}
	return ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// ---- content built here -----------------------------------------------------

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Platform     *platform         `json:"platform,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// image is an OCI image built here: one gzipped layer holding a random file.
type image struct {
	manifest []byte
	digest   string
	arch     string
	blobs    [][]byte // config, layer
}

func (im image) desc() descriptor {
	return descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: im.digest, Size: int64(len(im.manifest)),
		Platform: &platform{Architecture: im.arch, OS: "linux"}}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func newImage(t *testing.T, arch string) image {
	t.Helper()
	file := randomBytes(t, 256<<10)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "data", Mode: 0o644, Size: int64(len(file)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
	tw.Write(file)
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb.Bytes())
	zw.Close()
	layer := gz.Bytes()
	config, _ := json.Marshal(map[string]any{
		"architecture": arch, "os": "linux",
		"config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{sha(tb.Bytes())}},
	})
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: sha(config), Size: int64(len(config))},
		"layers":        []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: sha(layer), Size: int64(len(layer))}},
	})
	return image{manifest: manifest, digest: sha(manifest), arch: arch, blobs: [][]byte{config, layer}}
}

// index is an OCI image index of images.
func index(images ...image) ([]byte, string) {
	var ms []descriptor
	for _, im := range images {
		ms = append(ms, im.desc())
	}
	b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": ms})
	return b, sha(b)
}

// layout writes an OCI image layout in dir: the images, and the index (if
// any) of the multi-platform ones, each named in index.json by its tag
// (org.opencontainers.image.ref.name) and, for containerd's import, by its
// full reference (io.containerd.image.name, when prefix is set).
type layoutEntry struct {
	tag    string
	img    *image
	multi  []image // an index of these instead of img
	prefix string  // host/repo for io.containerd.image.name
}

func writeLayout(t *testing.T, dir string, entries ...layoutEntry) {
	t.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) {
		if err := os.WriteFile(filepath.Join(blobs, strings.TrimPrefix(sha(b), "sha256:")), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	putImage := func(im image) {
		put(im.manifest)
		for _, b := range im.blobs {
			put(b)
		}
	}
	var top []descriptor
	for _, e := range entries {
		var d descriptor
		if e.img != nil {
			putImage(*e.img)
			d = e.img.desc()
			d.Platform = nil
		} else {
			for _, im := range e.multi {
				putImage(im)
			}
			b, dg := index(e.multi...)
			put(b)
			d = descriptor{MediaType: "application/vnd.oci.image.index.v1+json", Digest: dg, Size: int64(len(b))}
		}
		d.Annotations = map[string]string{"org.opencontainers.image.ref.name": e.tag}
		if e.prefix != "" {
			d.Annotations["io.containerd.image.name"] = e.prefix + ":" + e.tag
		}
		top = append(top, d)
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": top})
	if err := os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tarDir packs dir into a tar file (an OCI archive for `ctr images import`).
func tarDir(t *testing.T, dir, file string) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr, _ := tar.FileInfoHeader(info, "")
		hdr.Name = rel
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// layoutDigest reads the digest of the manifest tagged tag in the OCI
// layout in dir.
func layoutDigest(t *testing.T, dir, tag string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	for _, m := range idx.Manifests {
		if tag == "" || m.Annotations["org.opencontainers.image.ref.name"] == tag {
			return m.Digest
		}
	}
	t.Fatalf("no manifest tagged %q in the layout %s: %s", tag, dir, b)
	return ""
}

// layoutHasBlob checks that the layout in dir holds blob, byte for byte.
func layoutHasBlob(t *testing.T, dir string, blob []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(sha(blob), "sha256:")))
	if err != nil || !bytes.Equal(b, blob) {
		t.Fatalf("the pulled layout lacks the layer %s (%v)", sha(blob), err)
	}
}

// ---- the Go clients ---------------------------------------------------------

// goClients are the clients built from tools/clients at the versions its
// go.mod pins.
var goClients = map[string]string{
	"crane":  "github.com/google/go-containerregistry/cmd/crane",
	"oras":   "oras.land/oras/cmd/oras",
	"regctl": "github.com/regclient/regclient/cmd/regctl",
	"helm":   "helm.sh/helm/v3/cmd/helm",
	"cosign": "github.com/sigstore/cosign/v2/cmd/cosign",
}

var (
	buildOnce sync.Once
	built     map[string]string // name → binary, or "" and a reason in buildErr
	buildErr  map[string]string
)

// clientCache is where the built clients are kept between runs:
// $DTR_CLIENTS_CACHE, else dtr-clients beside Go's build cache, in a
// directory named after the pins (go.mod, go.sum) and the Go version, so a
// new pin builds afresh.
func clientCache(t *testing.T) string {
	t.Helper()
	base := os.Getenv("DTR_CLIENTS_CACHE")
	if base == "" {
		out, err := exec.Command("go", "env", "GOCACHE").Output()
		if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == "off" {
			base = filepath.Join(os.TempDir(), "dtr-clients")
		} else {
			base = filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "dtr-clients")
		}
	}
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join("..", "tools", "clients", f))
		if err != nil {
			t.Fatalf("reading the client pins: %v", err)
		}
		h.Write(b)
	}
	v, _ := exec.Command("go", "env", "GOVERSION").Output()
	h.Write(v)
	return filepath.Join(base, hex.EncodeToString(h.Sum(nil))[:16])
}

// buildGoClients builds each missing client into the cache, once per run.
func buildGoClients(t *testing.T) {
	buildOnce.Do(func() {
		built, buildErr = map[string]string{}, map[string]string{}
		dir := clientCache(t)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// Builds of older pins are of no more use (about 260 MB a set).
		if old, err := filepath.Glob(filepath.Join(filepath.Dir(dir), strings.Repeat("[0-9a-f]", 16))); err == nil {
			for _, o := range old {
				if o != dir {
					os.RemoveAll(o)
				}
			}
		}
		for _, name := range []string{"crane", "oras", "regctl", "helm", "cosign"} {
			bin := filepath.Join(dir, name)
			if _, err := os.Stat(bin); err == nil {
				built[name] = bin
				continue
			}
			start := time.Now()
			tmp := bin + ".tmp"
			cmd := exec.Command("go", "build", "-trimpath", "-o", tmp, goClients[name])
			cmd.Dir = filepath.Join("..", "tools", "clients")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			out, err := cmd.CombinedOutput()
			if err == nil {
				err = os.Rename(tmp, bin)
			}
			if err != nil {
				buildErr[name] = fmt.Sprintf("building %s from tools/clients failed (%v): %s", goClients[name], err, lastLines(string(out), 3))
				continue
			}
			t.Logf("built %s in %v into %s", name, time.Since(start).Round(time.Second), dir)
			built[name] = bin
		}
	})
}

// goClient returns the built binary of name, or skips the test naming why.
func goClient(t *testing.T, name string) string {
	t.Helper()
	buildGoClients(t)
	if bin := built[name]; bin != "" {
		return bin
	}
	t.Skipf("%s: %s", name, buildErr[name])
	return ""
}

// system returns the path of a client installed on the machine, or skips
// the test naming the package that brings it.
func system(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (apt-get install %s)", name, pkg)
	}
	return p
}

// writeFile writes b to a new file in dir and returns its path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
