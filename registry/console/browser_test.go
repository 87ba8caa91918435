package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/dtr-registry/dtr/registry/identity/ldap/slapdtest"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// chromium finds Debian's Chromium (DTR_CHROMIUM names another binary), or
// skips the test saying how to get it.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DTR_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("the console's browser test needs Chromium: apt-get install chromium fonts-dejavu-core (.ci/run does), or set DTR_CHROMIUM")
	return ""
}

// screenshotDir is where the browser test saves its PNGs: a temporary
// directory, unless DTR_CONSOLE_SCREENSHOTS names one (relative to the
// repository's root: DTR_CONSOLE_SCREENSHOTS=docs/console refreshes the
// documentation's), so that a test run leaves the checkout as it was.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("DTR_CONSOLE_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join("..", "..", dir) // the test runs in registry/console
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("saving the screenshots in %s", dir)
	return dir
}

// checkScreenshot fails unless b is a PNG of the window's size or more
// that shows something: not one color all over (a blank page).
func checkScreenshot(b []byte) error {
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

// TestConsoleInChromium drives the console in headless Chromium, as an
// operator and a developer would: sign in; create an organization, a team
// and a private repository; grant the team; a team member pushes and the
// tag, its digest, its pull line and who pushed it appear; a pruning
// policy is tested, added and deleted; a repository webhook is created,
// tested, delivers a push and is deleted, and one on System → Webhooks;
// the tag is deleted through the browser's confirmation dialog; the system
// pages; sign out; a second user sees only what they may. It takes a PNG
// of each page and checks it (screenshotDir says where they go).
func TestConsoleInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	bin := chromium(t)
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	shots := screenshotDir(t)
	var hooks atomic.Int64 // deliveries to the test's webhook endpoint
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		hooks.Add(1)
	}))
	defer receiver.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.IgnoreCertErrors, chromedp.WindowSize(1280, 860), chromedp.Flag("lang", "en-US"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel := context.WithTimeout(bctx, 3*time.Minute)
	defer cancel()

	// Accept the console's confirmation dialogs (deleting a tag).
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
			html, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
			t.Fatalf("%s: %v\npage text:\n%s", what, err, html)
		}
	}
	// waitText waits until the page shows text (after a form's navigation).
	waitText := func(text string) chromedp.Action[chromedp.Void] {
		q, _ := json.Marshal(text)
		expr := "document.readyState === 'complete' && !!document.body && document.body.innerText.includes(" + string(q) + ")"
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			// A form's navigation replaces the page under an evaluation:
			// try again until the new page shows the text.
			deadline := time.Now().Add(20 * time.Second)
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
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := checkScreenshot(png); err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := func() string {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body.innerText"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	submit := func(form, field, value string) chromedp.Action[chromedp.Void] {
		return chromedp.SetValue(chromedp.CSS(form+` [name="`+field+`"]`), value)
	}
	// wantDialog checks that the last click asked with a confirmation
	// dialog that said want.
	wantDialog := func(want string) {
		t.Helper()
		select {
		case msg := <-confirmed:
			if !strings.Contains(msg, want) {
				t.Errorf("confirmation dialog said %q, want %q", msg, want)
			}
		default:
			t.Errorf("no confirmation dialog (%q)", want)
		}
	}
	// reloadUntil loads url until an element sel
	// contains text: what the replica writes off the request's path (the
	// audit trail, webhook deliveries) shows up within seconds.
	reloadUntil := func(url, sel, text string) chromedp.Action[chromedp.Void] {
		sq, _ := json.Marshal(sel)
		tq, _ := json.Marshal(text)
		expr := "document.readyState === 'complete' && Array.from(document.querySelectorAll(" + string(sq) + ")).some(e => e.innerText.includes(" + string(tq) + "))"
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			deadline := time.Now().Add(20 * time.Second)
			for {
				_, err := chromedp.Navigate(url)(ctx, tg)
				if err == nil {
					ok, _ := chromedp.Evaluate[bool](expr)(ctx, tg)
					if ok {
						return chromedp.Void{}, nil
					}
				}
				if time.Now().After(deadline) {
					return chromedp.Void{}, fmt.Errorf("%s does not show %q after 20 s (%v)", sel, text, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}

	// Sign in.
	do("open the console", chromedp.Navigate(r.URL+"/"), waitText("Sign in to DTR"))
	shot("sign-in")
	do("sign in", chromedp.SetValue(chromedp.CSS(`input[name=username]`), admin), chromedp.SetValue(chromedp.CSS(`input[name=password]`), adminPW),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button`)), waitText("Repositories"), waitText("acme/app"))

	// An organization, a team with a member, a private repository, a grant.
	do("new organization", chromedp.Navigate(r.URL+"/orgs"), submit(`form[action="/orgs"]`, "name", "engineering"),
		chromedp.Click(chromedp.CSS(`form[action="/orgs"] button`)), waitText("Organization created."))
	do("new team", submit(`form[action="/orgs/engineering"]:has(input[value="create-team"])`, "team", "developers"),
		chromedp.Click(chromedp.CSS(`form[action="/orgs/engineering"]:has(input[value="create-team"]) button`)), waitText("Team created."))
	do("team member", submit(`form:has(input[value="add-member"])`, "user", "alice"),
		chromedp.Click(chromedp.CSS(`form:has(input[value="add-member"]) button`)), waitText("Member saved."), waitText("alice"))
	do("new repository", chromedp.Navigate(r.URL+"/repositories/new?namespace=engineering"), submit(`form`, "name", "webapp"),
		submit(`form`, "description", "The web front end"), chromedp.Click(chromedp.CSS(`form[action="/repositories/new"] button.primary`)),
		waitText("Repository created."), waitText("No tags yet"))
	do("grant the team", submit(`form:has(input[value="grant-team"])`, "level", "read-write"), chromedp.Click(chromedp.CSS(`form:has(input[value="grant-team"]) button`)), waitText("Access saved."), waitText("team developers\tread-write"))
	shot("repository-empty")

	// alice, a member of the team, pushes (the registry API, as docker does).
	tok := r.Token(t, "alice", "alice-password", "repository:engineering/webapp:pull,push")
	img, st := r.PushImage(t, tok, "engineering/webapp", "1.0", []byte("the web app's layer"))
	if st != http.StatusCreated {
		t.Fatalf("alice's push: %d", st)
	}
	hexd := strings.TrimPrefix(img.ManifestDigest, "sha256:")
	do("the tag appears", chromedp.Navigate(r.URL+"/repositories/engineering/webapp"), waitText("1.0"), waitText(hexd[:12]), waitText("linux/amd64"))
	pull, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("pull").value`))
	if err != nil || pull != "docker pull "+r.Host+"/engineering/webapp:1.0" {
		t.Fatalf("pull line %q (%v)", pull, err)
	}

	// Who pushed it: the audit trail's record of alice's push (written
	// off the push's path, so the page may need a reload).
	do("pushed by alice", reloadUntil(r.URL+"/repositories/engineering/webapp", `td.pusher`, "alice"))
	shot("repository")

	// A pruning policy: a dry run, then added, then deleted.
	tok = r.Token(t, "alice", "alice-password", "repository:engineering/webapp:pull,push")
	if _, st := r.PushImage(t, tok, "engineering/webapp", "dev-7", []byte("a dev build")); st != http.StatusCreated {
		t.Fatalf("alice's push of dev-7: %d", st)
	}
	do("test a policy", chromedp.Navigate(r.URL+"/repositories/engineering/webapp"), waitText("Add a pruning policy"),
		submit("#policy-form", "field0", "tag"), submit("#policy-form", "operator0", "sw"), submit("#policy-form", "values0", "dev-"),
		chromedp.Click(chromedp.CSS(`#policy-form button[value="test-policy"]`)), waitText("This policy would prune 1 tag now"))
	if s := text(); !strings.Contains(s, "dev-7") {
		t.Fatalf("the dry run does not name dev-7:\n%s", s)
	}
	do("add the policy", chromedp.Click(chromedp.CSS(`#policy-form button[value="add-policy"]`)), waitText("Pruning policy added."), waitText("tag sw dev-"))
	do("scroll to the policies", chromedp.ScrollIntoView(chromedp.CSS(`#policies`)))
	shot("repository-pruning")
	do("delete the policy", chromedp.Click(chromedp.CSS(`#policies form:has(input[value="delete-policy"]) button`)), waitText("Pruning policy deleted."), waitText("No pruning policies"))
	wantDialog("Delete pruning policy")

	// A webhook on the repository: created (its secret shown once), tested,
	// a push delivered and logged, deleted.
	do("add a webhook", submit("#webhook-form", "type", "TAG_PUSH"), submit("#webhook-form", "endpoint", receiver.URL),
		chromedp.Click(chromedp.CSS(`#webhook-form button.primary`)), waitText("Webhook created."), waitText("shown this once"))
	secret, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("webhook-secret").value`))
	if err != nil || len(secret) != 64 {
		t.Fatalf("the webhook's secret on the page: %q (%v)", secret, err)
	}
	do("test the webhook", chromedp.Click(chromedp.CSS(`#webhooks form:has(input[value="test-webhook"]) button`)), waitText("took the test event: it answered 200"))
	if hooks.Load() != 1 {
		t.Fatalf("the endpoint got %d requests, want the test's", hooks.Load())
	}
	shot("repository-webhooks")
	if _, st := r.PushImage(t, tok, "engineering/webapp", "1.1", []byte("the web app, again")); st != http.StatusCreated {
		t.Fatalf("alice's push of 1.1: %d", st)
	}
	logURL, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#webhooks a.button").href`))
	if err != nil || !strings.Contains(logURL, "/webhooks/") {
		t.Fatalf("the delivery log's link: %q (%v)", logURL, err)
	}
	do("the delivery log", reloadUntil(logURL, `#deliveries`, "delivered"))
	shot("webhook-deliveries")
	do("delete the webhook", chromedp.Navigate(r.URL+"/repositories/engineering/webapp"),
		chromedp.Click(chromedp.CSS(`#webhooks form:has(input[value="delete-webhook"]) button`)), waitText("Webhook deleted"))
	wantDialog("Delete this TAG_PUSH webhook")

	// Delete the tag, through the browser's confirmation.
	do("delete the tag", chromedp.Click(chromedp.CSS(`tr:has(td.tag) form:has(input[value="1.0"]) button`)), waitText("Tag deleted."))
	wantDialog("Delete tag 1.0")
	if strings.Contains(text(), hexd[:12]) {
		t.Fatal("the deleted tag is still listed")
	}

	// The other pages, for the README.
	for _, p := range []struct{ path, want, name string }{
		{"/repositories", "engineering/webapp", "repositories"},
		{"/orgs/engineering", "developers", "organization"},
		{"/orgs/engineering/teams/developers", "engineering/webapp", "team"},
		{"/users", "carol", "users"},
		{"/system", "External URL", "system-general"},
		{"/system/storage", "Test and save", "system-storage"},
		{"/system/replicas", "healthy", "system-replicas"},
		{"/system/gc", "Past runs", "system-gc"},
		{"/system/webhooks", "Add a webhook", "system-webhooks"},
	} {
		do(p.path, chromedp.Navigate(r.URL+p.path), waitText(p.want))
		if p.name == "system-storage" {
			// The S3 fields appear once S3 is chosen.
			do("choose S3", chromedp.Click(chromedp.CSS(`input[name=type][value=s3]`)), chromedp.WaitVisible(chromedp.CSS(`input[name=bucket]`)),
				submit("#storage", "bucket", "dtr-images"), submit("#storage", "region", "us-east-1"),
				submit("#storage", "regionEndpoint", "https://s3.example.com"))
		}
		if p.name == "system-webhooks" {
			do("a webhook for the organization", submit("#webhook-form", "type", "REPO_CREATED"), submit("#webhook-form", "key", "engineering"),
				submit("#webhook-form", "endpoint", receiver.URL), chromedp.Click(chromedp.CSS(`#webhook-form button.primary`)), waitText("Webhook created."),
				chromedp.Click(chromedp.CSS(`#webhooks form:has(input[value="test-webhook"]) button`)), waitText("took the test event"))
		}
		shot(p.name)
	}

	// An access token: created from the user menu, its secret shown once
	// with the docker login line, working, then revoked through the
	// confirmation dialog.
	do("access tokens", chromedp.Click(chromedp.CSS(`.me a[href="/account/tokens"]`)), waitText("New access token"),
		submit("#token-form", "name", "laptop"), chromedp.Click(chromedp.CSS(`#token-form button.primary`)),
		waitText("Access token laptop created"), waitText("only time it is shown"))
	secret, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("token-secret").value`))
	if err != nil || !strings.HasPrefix(secret, "dtr_") {
		t.Fatalf("the token's secret on the page: %q (%v)", secret, err)
	}
	login, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("token-login").value`))
	if err != nil || login != "docker login -u "+admin+" --password-stdin "+r.Host {
		t.Fatalf("the docker login line: %q (%v)", login, err)
	}
	shot("access-token-created")
	if st := r.API(t, admin, secret, "GET", "/api/v0/accounts/"+admin, nil, nil); st != http.StatusOK {
		t.Fatalf("the new token on the API: %d", st)
	}
	do("the token list", chromedp.Navigate(r.URL+"/account/tokens"), waitText("laptop"), waitText("read-only"))
	if html, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.documentElement.outerHTML")); strings.Contains(html, secret) {
		t.Fatal("the token list shows the secret again")
	}
	shot("access-tokens")
	do("revoke the token", chromedp.Click(chromedp.CSS(`#tokens form:has(input[value="revoke"]) button`)), waitText("Access token revoked"), waitText("You have no access tokens"))
	wantDialog("Revoke access token laptop")
	if st := r.API(t, admin, secret, "GET", "/api/v0/accounts/"+admin, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("the revoked token on the API: %d", st)
	}

	// A service account of the organization with a token for webapp.
	do("service account", chromedp.Navigate(r.URL+"/orgs/engineering"), chromedp.Click(chromedp.CSS(`a[href="/orgs/engineering/serviceaccounts"]`)),
		waitText("New service account"), submit("#sa-form", "name", "ci"), submit("#sa-form", "description", "the web app's pipeline"),
		chromedp.Click(chromedp.CSS(`#sa-form button.primary`)), waitText("Service account created"),
		submit("#token-form", "name", "build"), chromedp.Click(chromedp.CSS(`#token-form input[name=repo][value=webapp]`)), chromedp.Click(chromedp.CSS(`#token-form input[value=push]`)),
		chromedp.Click(chromedp.CSS(`#token-form button.primary`)), waitText("Token build created"), waitText("engineering/webapp pull, push"))
	if login, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("token-login").value`)); login != "docker login -u engineering+ci --password-stdin "+r.Host {
		t.Fatalf("the service account's docker login line: %q", login)
	}
	shot("service-account")

	// System → Identity against a real slapd: LDAP settings, the test of a
	// directory user, saved with the reader password then shown as set.
	if _, ok := slapdtest.Path(); ok {
		ldap := slapdtest.Start(t)
		ldap.AddUser("dora", "Dora Explorer", "dora-ldap-pw")
		ldap.AddGroup("admins", "dora")
		do("identity page", chromedp.Navigate(r.URL+"/system/identity"), waitText("Users come from"),
			chromedp.Click(chromedp.CSS(`input[name=kind][value=ldap]`)), chromedp.WaitVisible(chromedp.CSS(`input[name=serverURL]`)),
			submit("#identity", "serverURL", ldap.URL), chromedp.Click(chromedp.CSS(`input[name=startTLS]`)),
			submit("#identity", "rootCerts", string(ldap.CAPEM)), submit("#identity", "readerDN", slapdtest.ReaderDN),
			submit("#identity", "readerPassword", slapdtest.ReaderPW), submit("#identity", "baseDN", slapdtest.People),
			submit("#identity", "usernameAttr", "uid"), submit("#identity", "adminGroupDN", slapdtest.GroupDN("admins")),
			submit("#identity", "testUsername", "dora"), submit("#identity", "testPassword", "dora-ldap-pw"),
			chromedp.Click(chromedp.CSS(`#identity button[value=test]`)), waitText("dora signs in as dora"), waitText("Dora Explorer"))
		if s := text(); !strings.Contains(s, "Administrator\nyes") && !strings.Contains(s, "Administrator\tyes") {
			t.Fatalf("the test does not say dora is an administrator:\n%s", s)
		}
		shot("system-identity")
		do("save the identity settings", submit("#identity", "readerPassword", slapdtest.ReaderPW),
			chromedp.Click(chromedp.CSS(`#identity button[value=save]`)), waitText("Identity settings saved"), waitText("Sync now"))
		if state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("ldap-password-state").textContent`)); state != "set" {
			t.Fatalf("the reader password after saving: %q, want set", state)
		}
		if html, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.documentElement.outerHTML")); strings.Contains(html, slapdtest.ReaderPW) {
			t.Fatal("the identity page shows the reader password")
		}
	} else {
		t.Log("slapd is not installed (apt-get install slapd): System → Identity is not driven against a directory")
	}

	// Sign out; carol then sees only what she may.
	do("sign out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)), waitText("You are signed out."))
	do("carol signs in", chromedp.SetValue(chromedp.CSS(`input[name=username]`), "carol"), chromedp.SetValue(chromedp.CSS(`input[name=password]`), "carol-password"),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button`)), waitText("acme/pub"))
	if s := text(); strings.Contains(s, "engineering/webapp") || strings.Contains(s, "acme/app") || strings.Contains(s, "Users") {
		t.Fatalf("carol sees what she may not:\n%s", s)
	}
	do("carol opens a private repository", chromedp.Navigate(r.URL+"/repositories/engineering/webapp"), waitText("or you may not see it"))
	do("carol's list", chromedp.Navigate(r.URL+"/repositories"), waitText("acme/pub"))
	shot("repositories-other-user")
}
