package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

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

// TestConsoleInChromium drives the console in headless Chromium, as an
// operator and a developer would: sign in; create an organization, a team
// and a private repository; grant the team; a team member pushes and the
// tag, its digest and its pull line appear; the tag is deleted through the
// browser's confirmation dialog; the system pages; sign out; a second user
// sees only what they may. It saves a PNG of each page in docs/console/.
func TestConsoleInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	bin := chromium(t)
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	shots := filepath.Join("..", "..", "docs", "console")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

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
	confirmed := make(chan string, 4)
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
	shot("repository")

	// Delete the tag, through the browser's confirmation.
	do("delete the tag", chromedp.Click(chromedp.CSS(`form:has(input[value="delete-tag"]) button`)), waitText("Tag deleted."))
	select {
	case msg := <-confirmed:
		if !strings.Contains(msg, "Delete tag 1.0") {
			t.Errorf("confirmation dialog said %q", msg)
		}
	default:
		t.Error("the tag was deleted without a confirmation dialog")
	}
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
	} {
		do(p.path, chromedp.Navigate(r.URL+p.path), waitText(p.want))
		if p.name == "system-storage" {
			// The S3 fields appear once S3 is chosen.
			do("choose S3", chromedp.Click(chromedp.CSS(`input[name=type][value=s3]`)), chromedp.WaitVisible(chromedp.CSS(`input[name=bucket]`)),
				submit("#storage", "bucket", "dtr-images"), submit("#storage", "region", "us-east-1"),
				submit("#storage", "regionEndpoint", "https://s3.example.com"))
		}
		shot(p.name)
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
