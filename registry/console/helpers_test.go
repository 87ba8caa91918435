package console_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/member"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

const (
	admin   = registrytest.AdminUser
	adminPW = registrytest.AdminPassword
)

// openStore reads and writes the replica's metadata through its client
// socket, as a second replica would.
func openStore(t *testing.T, r *registrytest.Replica) *meta.Store {
	t.Helper()
	socket := r.Opts.ClientSocket
	if socket == "" {
		socket = member.ClientSocketIn(r.Opts.DataDir)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"unix://" + socket}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return meta.New(cli)
}

// browser is a client with a cookie jar that does not follow redirects, so
// tests see each answer.
type browser struct {
	t    *testing.T
	r    *registrytest.Replica
	c    *http.Client
	csrf string // the CSRF token of the last page that had one
	body string // the last page
}

func newBrowser(t *testing.T, r *registrytest.Replica) *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: r.Client.Transport, Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{t: t, r: r, c: c}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	b.body = string(body)
	if m := csrfField.FindStringSubmatch(b.body); m != nil {
		b.csrf = m[1]
	}
	return resp, b.body
}

func (b *browser) get(path string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.r.URL+path, nil)
	return b.do(req)
}

// post sends a form with the current CSRF token unless the form has one.
func (b *browser) post(path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf)
	}
	req, _ := http.NewRequest(http.MethodPost, b.r.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// login signs in through the form and fails the test unless it worked.
func (b *browser) login(user, pw string) {
	b.t.Helper()
	b.get("/login")
	resp, body := b.post("/login", url.Values{"username": {user}, "password": {pw}, "next": {"/repositories"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/repositories" {
		b.t.Fatalf("sign-in of %s: %d %s\n%s", user, resp.StatusCode, resp.Header.Get("Location"), body)
	}
	b.get("/account") // a page with the session's CSRF token
}

func (b *browser) sessionCookie() *http.Cookie {
	u, _ := url.Parse(b.r.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "__Host-dtr-session" {
			return c
		}
	}
	return nil
}

// wantPage checks a page's status and that it contains each of want.
func wantPage(t *testing.T, what string, resp *http.Response, body string, status int, want ...string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d\n%s", what, resp.StatusCode, status, excerpt(body))
	}
	for _, w := range want {
		// The page's text, or its HTML ("acme+ci" is "acme&#43;ci" there).
		if !strings.Contains(body, w) && !strings.Contains(html.UnescapeString(body), w) {
			t.Fatalf("%s: page lacks %q\n%s", what, w, excerpt(body))
		}
	}
}

func excerpt(body string) string {
	if i := strings.Index(body, "<main>"); i >= 0 {
		body = body[i:]
	}
	if len(body) > 3000 {
		body = body[:3000] + "…"
	}
	return body
}

// redirectTo checks a 303 to a path starting with prefix.
func redirectTo(t *testing.T, what string, resp *http.Response, body, prefix string) {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), prefix) {
		t.Fatalf("%s: %d to %q, want 303 to %s…\n%s", what, resp.StatusCode, resp.Header.Get("Location"), prefix, excerpt(body))
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}
