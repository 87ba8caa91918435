package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"image/color"
	"image/png"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

// The browser helpers below are small duplicates of registry/console's
// browser test (a test file of another package): sharing them would mean a
// new exported API for tests only.

// chromiumBin finds Debian's Chromium (DTR_CHROMIUM names another binary),
// or skips the test saying how to get it.
func chromiumBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DTR_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("the console's end-to-end test needs Chromium: apt-get install chromium fonts-dejavu-core (.ci/run does), or set DTR_CHROMIUM")
	return ""
}

// consoleShots is where the test saves its PNGs: a temporary directory,
// unless DTR_CONSOLE_SCREENSHOTS names one (relative to the repository's
// root), so that a test run leaves the checkout as it was.
func consoleShots(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("DTR_CONSOLE_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join("..", dir) // the test runs in e2e/
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("saving the screenshots in %s", dir)
	return dir
}

// notBlank fails unless b is a PNG of about the window's size that shows
// something: not one color all over.
func notBlank(b []byte) error {
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not a PNG: %w", err)
	}
	bd := img.Bounds()
	if bd.Dx() < 1000 || bd.Dy() < 600 {
		return fmt.Errorf("%dx%d pixels, want at least the window's 1280x860", bd.Dx(), bd.Dy())
	}
	colors := map[color.RGBA]bool{}
	for y := bd.Min.Y; y < bd.Max.Y; y += 7 {
		for x := bd.Min.X; x < bd.Max.X; x += 7 {
			r, g, b, a := img.At(x, y).RGBA()
			colors[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(a >> 8)}] = true
		}
	}
	if len(colors) < 8 {
		return fmt.Errorf("%d colors: a blank page", len(colors))
	}
	return nil
}

// s3OnBridge is versitygw listening on addr, an address the replica's
// container reaches (registrytest.StartS3 listens on loopback only).
type s3OnBridge struct {
	endpoint, bucket, access, secret, dir string
}

func startS3On(t *testing.T, host string) *s3OnBridge {
	t.Helper()
	bin := registrytest.VersityGW(t)
	s := &s3OnBridge{bucket: "dtr", access: "dtr-e2e", secret: "dtr-e2e-secret-key", dir: t.TempDir()}
	for _, d := range []string{"data/" + s.bucket, "meta"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("no free port on %s for versitygw: %v", host, err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "-q", "--port", addr, "posix", "--sidecar", filepath.Join(s.dir, "meta"), filepath.Join(s.dir, "data"))
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.access, "ROOT_SECRET_KEY="+s.secret)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting versitygw: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	s.endpoint = "http://" + addr
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(s.endpoint); err == nil {
			resp.Body.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not answer on %s", s.endpoint)
		}
	}
}

// TestConsoleEndToEnd drives the web console in headless Chromium against a
// replica installed by the real installer on the local engine (a
// single-node swarm), as `make up` deploys it, with the real docker CLI:
// the administrator signs in, creates two users, an organization, a team
// with a member, a private and a public repository, and grants the team;
// the member `docker push`es and the tag, its digest, "pushed by" and pull
// line appear; the tag is deleted through the page's confirmation; storage
// is switched to S3 (versitygw) on System → Storage after its "test" (a
// wrong bucket refused first), and a second push lands in the bucket and on
// the page; a second user sees the public repository and no private
// repository's name; sign-out, a replayed signed-out session and a session
// ended by a password change land on the sign-in page.
func TestConsoleEndToEnd(t *testing.T) {
	bin := chromiumBin(t)
	registrytest.VersityGW(t)
	node := cleanSwarm(t)
	const port = "37443"
	host := "127.0.0.1:" + port
	base := "https://" + host
	mustDTR(t, "install", "--ucp-node", node, "--replica-http-port", "37080", "--replica-https-port", port, "--dtr-external-url", base)

	// Trust the cluster's CA as an operator would: docker through
	// /etc/docker/certs.d, the test's API client through a pool. Chromium
	// ignores certificate errors (its trust store is NSS's).
	ca := MustDocker(t, "config", "inspect", "dtr-ca-cert", "--format", "{{printf \"%s\" .Spec.Data}}")
	certs := filepath.Join("/etc/docker/certs.d", host)
	if err := os.MkdirAll(certs, 0o755); err != nil {
		t.Skipf("cannot trust the CA in %s: %v", certs, err)
	}
	t.Cleanup(func() { os.RemoveAll(certs) })
	if err := os.WriteFile(filepath.Join(certs, "ca.crt"), []byte(ca+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(ca)) {
		t.Fatalf("the cluster's CA is not PEM:\n%s", ca)
	}
	api := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	apiCall := func(method, path, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.SetBasicAuth("admin", adminPassword)
		req.Header.Set("Content-Type", "application/json")
		resp, err := api.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// docker as alice, with the test's own config.
	dockerEnv := append(os.Environ(), "DOCKER_CONFIG="+t.TempDir(), "DOCKER_BUILDKIT=0")
	docker := func(args ...string) string {
		t.Helper()
		out, err := Docker(t, dockerEnv, args...)
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	repo := host + "/engineering/webapp"
	// push builds a one-file image and pushes it as repo:tag, returning
	// the manifest's digest docker reports.
	push := func(tag string) string {
		t.Helper()
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "f"), []byte("the web app, "+tag+", "+time.Now().String()), 0o644)
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY f /\n"), 0o644)
		ref := repo + ":" + tag
		docker("build", "-q", "-t", ref, dir)
		t.Cleanup(func() { Docker(t, dockerEnv, "rmi", "-f", ref) })
		out := docker("push", ref)
		m := regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("docker push %s: no digest in\n%s", ref, out)
		}
		return m[1]
	}

	shots := consoleShots(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.IgnoreCertErrors, chromedp.WindowSize(1280, 860), chromedp.Flag("lang", "en-US"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel := context.WithTimeout(bctx, 5*time.Minute)
	defer cancel()

	// Accept the console's confirmation dialogs, keeping what they said.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	confirmed := make(chan string, 16)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			confirmed <- ev.Message
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			text, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
			t.Fatalf("%s: %v\npage text:\n%s", what, err, text)
		}
	}
	// waitText waits until the page shows text, retrying while a form's
	// navigation replaces the page under the evaluation.
	waitText := func(text string) chromedp.Action[chromedp.Void] {
		q, _ := json.Marshal(text)
		expr := "document.readyState === 'complete' && !!document.body && document.body.innerText.includes(" + string(q) + ")"
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			deadline := time.Now().Add(30 * time.Second)
			for {
				ok, err := chromedp.Evaluate[bool](expr)(ctx, tg)
				if err == nil && ok {
					return chromedp.Void{}, nil
				}
				if time.Now().After(deadline) {
					return chromedp.Void{}, fmt.Errorf("the page does not show %q (last error: %v)", text, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	// reloadUntil loads url until an element sel contains text: the
	// audit trail ("pushed by") is written off the push's path.
	reloadUntil := func(url, sel, text string) chromedp.Action[chromedp.Void] {
		sq, _ := json.Marshal(sel)
		tq, _ := json.Marshal(text)
		expr := "document.readyState === 'complete' && Array.from(document.querySelectorAll(" + string(sq) + ")).some(e => e.innerText.includes(" + string(tq) + "))"
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			deadline := time.Now().Add(30 * time.Second)
			for {
				_, err := chromedp.Navigate(url)(ctx, tg)
				if err == nil {
					if ok, _ := chromedp.Evaluate[bool](expr)(ctx, tg); ok {
						return chromedp.Void{}, nil
					}
				}
				if time.Now().After(deadline) {
					return chromedp.Void{}, fmt.Errorf("%s does not show %q after 30 s (%v)", sel, text, err)
				}
				time.Sleep(300 * time.Millisecond)
			}
		}
	}
	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := notBlank(b); err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, "e2e-"+name+".png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	html := func() string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.documentElement.outerHTML"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	value := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return s
	}
	set := func(form, field, v string) chromedp.Action[chromedp.Void] {
		return chromedp.SetValue(chromedp.CSS(form+` [name="`+field+`"]`), v)
	}
	wantDialog := func(want string) {
		t.Helper()
		select {
		case msg := <-confirmed:
			if !strings.Contains(msg, want) {
				t.Errorf("confirmation dialog said %q, want %q", msg, want)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("no confirmation dialog (%q)", want)
		}
	}
	signIn := func(user, pw, want string) {
		t.Helper()
		do("sign in as "+user, waitText("Sign in to DTR"), chromedp.SetValue(chromedp.CSS(`input[name=username]`), user),
			chromedp.SetValue(chromedp.CSS(`input[name=password]`), pw), chromedp.Click(chromedp.CSS(`form[action="/login"] button`)), waitText(want))
	}
	sessionCookie := func() *network.Cookie {
		t.Helper()
		res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
		if err != nil {
			t.Fatalf("reading the browser's cookies: %v", err)
		}
		for _, c := range res.Cookies {
			if c.Name == "__Host-dtr-session" {
				return c
			}
		}
		t.Fatalf("no session cookie in the browser: %d cookies", len(res.Cookies))
		return nil
	}

	// The load balancer's address in a browser: the sign-in page.
	do("open the console", chromedp.Navigate(base+"/"), waitText("Sign in to DTR"))
	shot("sign-in")
	signIn("admin", adminPassword, "Repositories")
	if c := sessionCookie(); !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteStrict || c.Path != "/" {
		t.Fatalf("session cookie: HttpOnly %v, Secure %v, SameSite %q, Path %q", c.HTTPOnly, c.Secure, c.SameSite, c.Path)
	}

	// Two users, an organization, a team with alice, a private repository
	// and the team's grant, all through the pages.
	for _, u := range []string{"alice", "carol"} {
		do("new user "+u, chromedp.Navigate(base+"/users"), set(`form:has(input[value="create"])`, "user", u),
			set(`form:has(input[value="create"])`, "password", u+"-passw0rd"),
			chromedp.Click(chromedp.CSS(`form:has(input[value="create"]) button.primary`)), waitText("User created."))
	}
	do("new organization", chromedp.Navigate(base+"/orgs"), set(`form[action="/orgs"]`, "name", "engineering"),
		chromedp.Click(chromedp.CSS(`form[action="/orgs"] button`)), waitText("Organization created."))
	do("new team", set(`form[action="/orgs/engineering"]:has(input[value="create-team"])`, "team", "developers"),
		chromedp.Click(chromedp.CSS(`form[action="/orgs/engineering"]:has(input[value="create-team"]) button`)), waitText("Team created."))
	do("team member", set(`form:has(input[value="add-member"])`, "user", "alice"),
		chromedp.Click(chromedp.CSS(`form:has(input[value="add-member"]) button`)), waitText("Member saved."), waitText("alice"))
	shot("team")
	do("new repository", chromedp.Navigate(base+"/repositories/new?namespace=engineering"), set(`form`, "name", "webapp"),
		set(`form`, "description", "The web front end"), chromedp.Click(chromedp.CSS(`input[name=visibility][value=private]`)),
		chromedp.Click(chromedp.CSS(`form[action="/repositories/new"] button.primary`)), waitText("Repository created."), waitText("No tags yet"))
	do("grant the team", set(`form:has(input[value="grant-team"])`, "level", "read-write"),
		chromedp.Click(chromedp.CSS(`form:has(input[value="grant-team"]) button`)), waitText("Access saved."), waitText("team developers\tread-write"))

	do("a public repository", chromedp.Navigate(base+"/repositories/new?namespace=engineering"), set(`form`, "name", "docs"),
		chromedp.Click(chromedp.CSS(`input[name=visibility][value=public]`)),
		chromedp.Click(chromedp.CSS(`form[action="/repositories/new"] button.primary`)), waitText("Repository created."))

	// alice pushes with the docker CLI; her tag appears with its digest,
	// her name and the pull line.
	if out, err := Docker(t, dockerEnv, "login", host, "-u", "alice", "-p", "alice-passw0rd"); err != nil {
		t.Fatalf("docker login as alice: %v\n%s", err, out)
	}
	digest := push("1.0")
	hexd := strings.TrimPrefix(digest, "sha256:")
	do("the tag appears", chromedp.Navigate(base+"/repositories/engineering/webapp"), waitText("1.0"), waitText(hexd[:12]))
	if pull := value(`document.getElementById("pull").value`); pull != "docker pull "+repo+":1.0" {
		t.Fatalf("pull line %q, want %q", pull, "docker pull "+repo+":1.0")
	}
	do("pushed by alice", reloadUntil(base+"/repositories/engineering/webapp", `td.pusher`, "alice"))
	shot("repository")

	// Delete the tag through the page's confirmation: docker can no
	// longer pull the tag, and still pulls the digest.
	do("delete the tag", chromedp.Click(chromedp.CSS(`tr:has(td.tag) form:has(input[value="1.0"]) button`)), waitText("Tag deleted."))
	wantDialog("Delete tag 1.0")
	if strings.Contains(html(), hexd[:12]) {
		t.Fatal("the deleted tag is still listed")
	}
	docker("rmi", repo+":1.0")
	if out, err := Docker(t, dockerEnv, "pull", repo+":1.0"); err == nil {
		t.Fatalf("docker pull of the deleted tag succeeded:\n%s", out)
	}
	docker("pull", repo+"@"+digest)
	t.Cleanup(func() { Docker(t, dockerEnv, "rmi", "-f", repo+"@"+digest) })

	// System → Storage: S3 on versitygw, listening where the replica's
	// container reaches the host (the docker_gwbridge gateway, the
	// container's default route), tested, then saved.
	gw := MustDocker(t, "network", "inspect", "docker_gwbridge", "--format", "{{range .IPAM.Config}}{{.Gateway}}{{end}}")
	if net.ParseIP(gw) == nil {
		t.Fatalf("docker_gwbridge's gateway: %q", gw)
	}
	s3 := startS3On(t, gw)
	const form = "#storage"
	do("storage page", chromedp.Navigate(base+"/system/storage"), waitText("Test and save"),
		chromedp.Click(chromedp.CSS(`input[name=type][value=s3]`)), chromedp.WaitVisible(chromedp.CSS(`input[name=bucket]`)),
		set(form, "bucket", "no-such-bucket"), set(form, "region", "us-east-1"), set(form, "regionEndpoint", s3.endpoint),
		set(form, "accessKey", s3.access), set(form, "secretKey", s3.secret))
	if v := value(`String(document.querySelector("#storage [name=forcePathStyle]").checked)`); v != "true" {
		do("path-style", chromedp.Click(chromedp.CSS(`#storage [name=forcePathStyle]`)))
	}
	if v := value(`String(document.querySelector("#storage [name=secure]").checked)`); v == "true" {
		do("plain HTTP", chromedp.Click(chromedp.CSS(`#storage [name=secure]`)))
	}
	// A wrong bucket: the test fails in the operator's words, nothing saved.
	do("test a wrong bucket", chromedp.Click(chromedp.CSS(`#storage button[value=test]`)), waitText("The test failed, so nothing was saved"))
	do("test", set(form, "bucket", s3.bucket), set(form, "secretKey", s3.secret),
		chromedp.Click(chromedp.CSS(`#storage button[value=test]`)), waitText("these settings work"))
	shot("system-storage-tested")
	do("save", set(form, "secretKey", s3.secret), chromedp.Click(chromedp.CSS(`#storage button[value=save]`)), waitText("Storage tested and saved."))
	if strings.Contains(html(), s3.secret) {
		t.Fatal("the storage page shows the secret key after saving")
	}
	shot("system-storage")

	// alice pushes again: the tag lands in the bucket (the replica follows
	// the saved settings within seconds: push until it has) and on the page.
	tagFile := filepath.Join(s3.dir, "data", s3.bucket, "docker/registry/v2/repositories/engineering/webapp/_manifests/tags/2.0")
	var digest2 string
	for n, deadline := 1, time.Now().Add(30*time.Second); ; n++ {
		digest2 = push("2.0")
		if _, err := os.Stat(tagFile); err == nil {
			t.Logf("push %d after saving S3 landed in the bucket", n)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after saving S3, pushes do not reach the bucket (%s missing)", tagFile)
		}
		time.Sleep(time.Second)
	}
	do("the S3 tag appears", chromedp.Navigate(base+"/repositories/engineering/webapp"), waitText("2.0"),
		waitText(strings.TrimPrefix(digest2, "sha256:")[:12]))
	do("pushed by alice on S3", reloadUntil(base+"/repositories/engineering/webapp", `td.pusher`, "alice"))
	shot("repository-s3")

	// Sign out; the signed-out session, replayed, is refused.
	old := sessionCookie()
	do("sign out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)), waitText("You are signed out."))
	do("a page after signing out", chromedp.Navigate(base+"/repositories"), waitText("Sign in to DTR"))
	secure, httpOnly := true, true
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: old.Name, Value: old.Value, URL: base + "/", Path: "/",
		Secure: &secure, HTTPOnly: &httpOnly, SameSite: network.CookieSameSiteStrict}); err != nil {
		t.Fatalf("replaying the signed-out session's cookie: %v", err)
	}
	do("the signed-out session replayed", chromedp.Navigate(base+"/repositories"), waitText("Your session expired"), waitText("it was signed out or removed"))
	shot("session-expired")
	do("sign in again", chromedp.Click(chromedp.CSS(`a.button.primary`)), waitText("Sign in to DTR"))

	// carol, with no grant, sees no private repository's name anywhere.
	signIn("carol", "carol-passw0rd", "Repositories")
	for _, p := range []string{"/repositories", "/repositories?q=web", "/orgs", "/orgs/engineering", "/repositories/engineering/webapp"} {
		do("carol opens "+p, chromedp.Navigate(base+p), chromedp.WaitReady(chromedp.CSS(`body`)))
		if h := html(); strings.Contains(h, "webapp") && !strings.Contains(p, "webapp") {
			t.Fatalf("carol sees the private repository's name on %s:\n%s", p, h)
		}
	}
	do("carol and the private repository", chromedp.Navigate(base+"/repositories/engineering/webapp"), waitText("or you may not see it"))
	if h := html(); strings.Contains(h, hexd[:12]) || strings.Contains(h, strings.TrimPrefix(digest2, "sha256:")[:12]) {
		t.Fatal("carol sees the private repository's tags")
	}
	do("carol's list", chromedp.Navigate(base+"/repositories"), waitText("engineering/docs"))
	if s := value("document.body.innerText"); strings.Contains(s, "webapp") || strings.Contains(s, "Users") {
		t.Fatalf("carol sees what she may not:\n%s", s)
	}
	shot("repositories-other-user")

	// A session ended by the account's change (a new password set by the
	// administrator) lands on the expired page, then on sign-in.
	if st := apiCall("POST", "/api/v0/accounts/carol/changePassword", `{"newPassword":"carol-new-passw0rd"}`); st >= 300 {
		t.Fatalf("changing carol's password: %d", st)
	}
	do("carol's ended session", chromedp.Navigate(base+"/repositories"), waitText("Your session expired"), waitText("the account changed"))
	do("back to sign-in", chromedp.Click(chromedp.CSS(`a.button.primary`)), waitText("Sign in to DTR"))
	t.Logf("console end to end on %s: users, organization, team, grant, docker push (%s), tag deleted, S3 on %s, second user, sign-out and ended sessions: ok",
		host, digest[:19], s3.endpoint)
}
