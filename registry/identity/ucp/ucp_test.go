package ucp_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/identity/ucp"
	"github.com/dtr-registry/dtr/ucp/ucptest"
)

const adminPW = "admin-Passw0rd"

// standIn is a UCP with users, organizations and teams, answering at most two
// items per page so that every list is read across pages. It has no engine.
func standIn(t *testing.T) *ucptest.Server {
	t.Helper()
	srv, err := ucptest.Start(ucptest.Options{
		EngineSocket: filepath.Join(t.TempDir(), "no-engine.sock"),
		Username:     "admin", Password: adminPW,
		PageSize: 2,
		Users: []ucptest.User{
			{Name: "alice", Password: "alice-Passw0rd", FullName: "Alice Liddell"},
			{Name: "bob", Password: "bob-Passw0rd", Admin: true},
			{Name: "carol", Password: "carol-Passw0rd", Inactive: true},
			{Name: "Dave", Password: "dave-Passw0rd"},
			{Name: "eve@corp", Password: "eve-Passw0rd"},
			{Name: "Frank", Password: "frank-Passw0rd"},
			{Name: "frank", Password: "frank2-Passw0rd"},
			{Name: "Grace", Password: "grace-Passw0rd"},
			{Name: "GRACE", Password: "grace2-Passw0rd"},
		},
		Orgs: []ucptest.Org{
			{Name: "engineering", Members: map[string]bool{"alice": true, "bob": false},
				Teams: map[string][]string{"backend": {"alice", "carol", "eve@corp"}, "frontend": {"Dave"}, "qa": nil}},
			{Name: "Ops", Members: map[string]bool{"bob": true},
				Teams: map[string][]string{"on-call": {"bob"}, "bad team!": {"bob"}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func source(t *testing.T, srv *ucptest.Server, user, pw string) (*ucp.Source, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	s, err := ucp.New(ucp.Config{URL: srv.URL, CAPEM: srv.CAPEM, Username: user, Password: pw, Log: l})
	if err != nil {
		t.Fatal(err)
	}
	return s, &buf
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestAuthenticate(t *testing.T) {
	srv := standIn(t)
	s, _ := source(t, srv, "admin", adminPW)
	if s.Kind() != identity.KindUCP {
		t.Errorf("Kind = %q", s.Kind())
	}
	for _, tc := range []struct {
		name, pw string
		want     identity.User
	}{
		{"alice", "alice-Passw0rd", identity.User{Name: "alice", FullName: "Alice Liddell", IsActive: true}},
		{"bob", "bob-Passw0rd", identity.User{Name: "bob", IsAdmin: true, IsActive: true}},
		{"admin", adminPW, identity.User{Name: "admin", IsAdmin: true, IsActive: true}},
		// Mixed case is lowercased for dtr.
		{"Dave", "dave-Passw0rd", identity.User{Name: "dave", IsActive: true}},
	} {
		got, err := s.Authenticate(ctx(t), tc.name, tc.pw)
		if err != nil || got != tc.want {
			t.Errorf("Authenticate(%s) = %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ what, name, pw string }{
		{"wrong password", "alice", "wrong-Passw0rd"},
		{"unknown user", "mallory", "whatever-Passw0rd"},
		{"deactivated user", "carol", "carol-Passw0rd"},
		{"empty password", "alice", ""},
		{"empty name", "", "alice-Passw0rd"},
		{"another user's password", "alice", "bob-Passw0rd"},
	} {
		_, err := s.Authenticate(ctx(t), tc.name, tc.pw)
		if !errors.Is(err, identity.ErrBadCredentials) || errors.Is(err, identity.ErrUnavailable) {
			t.Errorf("%s: got %v; want ErrBadCredentials", tc.what, err)
		}
	}
}

func TestOddNames(t *testing.T) {
	srv := standIn(t)
	s, _ := source(t, srv, "admin", adminPW)
	_, err := s.Authenticate(ctx(t), "eve@corp", "eve-Passw0rd")
	if !errors.Is(err, ucp.ErrInvalidName) || !errors.Is(err, identity.ErrBadCredentials) ||
		!strings.Contains(err.Error(), `"eve@corp"`) || !strings.Contains(err.Error(), "rename the account in UCP") {
		t.Errorf("eve@corp: got %v; want ErrInvalidName naming the account and the fix", err)
	}
	// "Frank" would become "frank", another UCP user: neither may take the
	// other's grants.
	_, err = s.Authenticate(ctx(t), "Frank", "frank-Passw0rd")
	if !errors.Is(err, ucp.ErrInvalidName) || !strings.Contains(err.Error(), `same dtr name "frank"`) {
		t.Errorf("Frank: got %v; want the name clash named", err)
	}
	// The lowercase one signs in as itself.
	if u, err := s.Authenticate(ctx(t), "frank", "frank2-Passw0rd"); err != nil || u.Name != "frank" {
		t.Errorf("frank: %+v, %v", u, err)
	}
	// Two mixed-case accounts and no lowercase one: once a directory read
	// has seen the clash, neither signs in.
	if _, err := s.Directory(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"Grace", "GRACE"} {
		pw := map[string]string{"Grace": "grace-Passw0rd", "GRACE": "grace2-Passw0rd"}[n]
		if _, err := s.Authenticate(ctx(t), n, pw); !errors.Is(err, ucp.ErrInvalidName) || !strings.Contains(err.Error(), `same dtr name "grace"`) {
			t.Errorf("%s: got %v; want the clash named", n, err)
		}
	}
}

func TestDirectory(t *testing.T) {
	srv := standIn(t)
	s, logBuf := source(t, srv, "admin", adminPW)
	dir, err := s.Directory(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := identity.Directory{
		Users: []identity.User{
			{Name: "admin", IsAdmin: true, IsActive: true},
			{Name: "alice", FullName: "Alice Liddell", IsActive: true},
			{Name: "bob", IsAdmin: true, IsActive: true},
			{Name: "carol", IsActive: false},
			{Name: "dave", IsActive: true},
			{Name: "frank", IsActive: true},
		},
		Orgs: []identity.Org{
			{Name: "engineering",
				Members: map[string]bool{"alice": true, "bob": false, "carol": false, "dave": false},
				Teams: []identity.Team{
					{Name: "backend", Members: []string{"alice", "carol"}},
					{Name: "frontend", Members: []string{"dave"}},
					{Name: "qa", Members: []string{}},
				}},
			{Name: "ops", Members: map[string]bool{"bob": true},
				Teams: []identity.Team{{Name: "on-call", Members: []string{"bob"}}}},
		},
	}
	if !reflect.DeepEqual(dir, want) {
		t.Errorf("Directory =\n%+v\nwant\n%+v", dir, want)
	}
	skipped := strings.Join(s.Skipped(), "\n")
	for _, w := range []string{`user "eve@corp"`, `"Frank": UCP account "frank" has their dtr name`,
		`"GRACE", "Grace": they all map to the dtr name "grace"`, "Ops/bad team!"} {
		if !strings.Contains(skipped, w) || !strings.Contains(logBuf.String(), strings.ReplaceAll(w, `"`, `\"`)) {
			t.Errorf("skipped list and log lack %q:\n%s\nlog:\n%s", w, skipped, logBuf)
		}
	}
	if strings.Contains(logBuf.String(), adminPW) {
		t.Errorf("the administrator's password is in the log")
	}
}

// A removed UCP user cannot sign in and is gone from the next directory read;
// membership changes show in it too.
func TestRemovedUser(t *testing.T) {
	srv := standIn(t)
	s, _ := source(t, srv, "admin", adminPW)
	if _, err := s.Authenticate(ctx(t), "alice", "alice-Passw0rd"); err != nil {
		t.Fatal(err)
	}
	if err := srv.RemoveUser("alice"); err != nil {
		t.Fatal(err)
	}
	if err := srv.RemoveTeamMember("engineering", "frontend", "Dave"); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetMember("Ops", "Dave", false); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetUserAdmin("bob", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx(t), "alice", "alice-Passw0rd"); !errors.Is(err, identity.ErrBadCredentials) {
		t.Errorf("removed user: got %v; want ErrBadCredentials", err)
	}
	if u, err := s.Authenticate(ctx(t), "bob", "bob-Passw0rd"); err != nil || u.IsAdmin {
		t.Errorf("bob after losing UCP admin: %+v, %v; want not admin", u, err)
	}
	dir, err := s.Directory(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range dir.Users {
		if u.Name == "alice" {
			t.Errorf("alice is still in the directory")
		}
	}
	if len(dir.Orgs) != 2 {
		t.Fatalf("orgs: %+v", dir.Orgs)
	}
	eng, ops := dir.Orgs[0], dir.Orgs[1]
	if _, ok := eng.Members["alice"]; ok || !reflect.DeepEqual(eng.Teams[0].Members, []string{"carol"}) {
		t.Errorf("alice still in engineering: %+v", eng)
	}
	if len(eng.Teams[1].Members) != 0 || !reflect.DeepEqual(ops.Members, map[string]bool{"bob": true, "dave": false}) {
		t.Errorf("membership changes missing: %+v %+v", eng.Teams[1], ops)
	}
}

// The administrator signs in once (Check); when UCP ends the session, once more.
func TestAdminSessionReused(t *testing.T) {
	srv := standIn(t)
	s, _ := source(t, srv, "admin", adminPW)
	if err := s.Check(ctx(t)); err != nil {
		t.Fatalf("Check: %v", err)
	}
	before := srv.Logins()
	for range 2 {
		if _, err := s.Directory(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Logins() - before; n != 0 {
		t.Errorf("%d logins for two directory reads after Check; want 0 (its session is reused)", n)
	}
	srv.ExpireSessions()
	if _, err := s.Directory(ctx(t)); err != nil {
		t.Fatalf("after the session expired: %v", err)
	}
	if n := srv.Logins() - before; n != 1 {
		t.Errorf("%d logins; want 1 (one more after expiry)", n)
	}
}

func TestSyncAccount(t *testing.T) {
	srv := standIn(t)
	for _, tc := range []struct{ user, pw, want string }{
		{"admin", "wrong-Passw0rd", `refused the administrator "admin": check the UCP username and password`},
		{"alice", "alice-Passw0rd", `"alice" at ` + srv.URL + ` is not a UCP administrator`},
	} {
		s, _ := source(t, srv, tc.user, tc.pw)
		if err := s.Check(ctx(t)); !errors.Is(err, ucp.ErrSyncAccount) {
			t.Errorf("Check(%s) = %v; want ErrSyncAccount", tc.user, err)
		}
		_, err := s.Directory(ctx(t))
		if !errors.Is(err, ucp.ErrSyncAccount) || !errors.Is(err, identity.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v; want ErrSyncAccount with %q", tc.user, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), tc.pw) {
			t.Errorf("the password is in the error")
		}
		// Users still sign in: the administrator is needed for the directory.
		if _, err := s.Authenticate(ctx(t), "alice", "alice-Passw0rd"); err != nil {
			t.Errorf("alice with a broken sync account: %v", err)
		}
	}
}

func TestUnavailable(t *testing.T) {
	srv := standIn(t)
	t.Run("stand-in down", func(t *testing.T) {
		down, err := ucptest.Start(ucptest.Options{Username: "admin", Password: adminPW})
		if err != nil {
			t.Fatal(err)
		}
		down.Close()
		s, _ := source(t, down, "admin", adminPW)
		_, err = s.Authenticate(ctx(t), "alice", "alice-Passw0rd")
		t.Log(err)
		if !errors.Is(err, identity.ErrUnavailable) || errors.Is(err, identity.ErrBadCredentials) || !strings.Contains(err.Error(), "UCP at "+down.URL+": cannot reach it") {
			t.Errorf("Authenticate: got %v; want ErrUnavailable naming %s", err, down.URL)
		}
		if _, err := s.Directory(ctx(t)); !errors.Is(err, identity.ErrUnavailable) || !strings.Contains(err.Error(), down.URL) {
			t.Errorf("Directory: got %v; want ErrUnavailable naming %s", err, down.URL)
		}
	})
	t.Run("another CA", func(t *testing.T) {
		other, err := ucptest.Start(ucptest.Options{Username: "admin", Password: adminPW})
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		s, err := ucp.New(ucp.Config{URL: srv.URL, CAPEM: other.CAPEM, Username: "admin", Password: adminPW})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Authenticate(ctx(t), "alice", "alice-Passw0rd")
		t.Log(err)
		want := "UCP at " + srv.URL + ": TLS: its certificate is not signed by the configured UCP CA"
		if !errors.Is(err, identity.ErrUnavailable) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), srv.URL+"/ca") {
			t.Errorf("got %v; want %q and where to get the CA", err, want)
		}
		// No CA configured: the system roots do not know the stand-in either.
		s, _ = ucp.New(ucp.Config{URL: srv.URL, Username: "admin", Password: adminPW})
		if _, err := s.Directory(ctx(t)); !errors.Is(err, identity.ErrUnavailable) || !strings.Contains(err.Error(), "not signed by the configured UCP CA") {
			t.Errorf("system roots: got %v", err)
		}
	})
	t.Run("wrong host name", func(t *testing.T) {
		named, err := ucptest.Start(ucptest.Options{Username: "admin", Password: adminPW, Hosts: []string{"ucp.example.invalid"}})
		if err != nil {
			t.Fatal(err)
		}
		defer named.Close()
		s, err := ucp.New(ucp.Config{URL: named.URL, CAPEM: named.CAPEM, Username: "admin", Password: adminPW})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Authenticate(ctx(t), "alice", "alice-Passw0rd")
		t.Log(err)
		if !errors.Is(err, identity.ErrUnavailable) || !strings.Contains(err.Error(), "not valid for this address") {
			t.Errorf("got %v; want the certificate's names named", err)
		}
	})
}

// notUCP is a TLS server that answers as h does, and a source pointed at it.
func notUCP(t *testing.T, h http.HandlerFunc) (*ucp.Source, string) {
	t.Helper()
	ts := httptest.NewTLSServer(h)
	t.Cleanup(ts.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	s, err := ucp.New(ucp.Config{URL: ts.URL, CAPEM: ca, Username: "admin", Password: adminPW})
	if err != nil {
		t.Fatal(err)
	}
	return s, ts.URL
}

func TestUnexpectedAnswers(t *testing.T) {
	for _, tc := range []struct {
		what string
		h    http.HandlerFunc
		want string
	}{
		{"HTML", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>hello</html>")) }, "did not answer UCP's JSON"},
		{"server error", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }, "POST /auth/login answered 500 Internal Server Error"},
		{"no token", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{}`)) }, "without an auth_token"},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
		}, "answered 302 Found"},
	} {
		s, u := notUCP(t, tc.h)
		_, err := s.Authenticate(ctx(t), "alice", "alice-Passw0rd")
		t.Logf("%s: %v", tc.what, err)
		if !errors.Is(err, identity.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), u) {
			t.Errorf("%s: got %v; want ErrUnavailable with %q and the URL", tc.what, err, tc.want)
		}
	}
	t.Run("slow", func(t *testing.T) {
		release := make(chan struct{})
		s, _ := notUCP(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		defer close(release)
		c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := s.Authenticate(c, "alice", "alice-Passw0rd")
		if !errors.Is(err, identity.ErrUnavailable) || time.Since(start) > 5*time.Second {
			t.Errorf("got %v after %s; want ErrUnavailable when the context ends", err, time.Since(start))
		}
	})
	t.Run("paging that does not advance", func(t *testing.T) {
		s, _ := notUCP(t, func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/auth/login":
				_, _ = w.Write([]byte(`{"auth_token":"t"}`))
			case "/id/":
				_, _ = w.Write([]byte(`{"name":"admin","isAdmin":true,"isActive":true}`))
			default:
				_, _ = w.Write([]byte(`{"accounts":[{"name":"a","isActive":true}],"nextPageStart":"b"}`))
			}
		})
		_, err := s.Directory(ctx(t))
		if !errors.Is(err, identity.ErrUnavailable) || !strings.Contains(err.Error(), "paging does not advance") {
			t.Errorf("got %v; want the loop refused", err)
		}
	})
}

func TestNewChecksConfig(t *testing.T) {
	good := ucp.Config{URL: "https://ucp.example.com", Username: "admin", Password: adminPW}
	if s, err := ucp.New(good); err != nil || s.URL() != "https://ucp.example.com" {
		t.Fatalf("New(good) = %v", err)
	}
	for _, tc := range []struct {
		what string
		edit func(*ucp.Config)
		want string
	}{
		{"no URL", func(c *ucp.Config) { c.URL = "" }, "the UCP URL is missing"},
		{"http", func(c *ucp.Config) { c.URL = "http://ucp.example.com" }, "use https://<ucp-host>"},
		{"no scheme", func(c *ucp.Config) { c.URL = "ucp.example.com" }, "use https://<ucp-host>"},
		{"no host", func(c *ucp.Config) { c.URL = "https:///x" }, "has no host"},
		{"credentials in URL", func(c *ucp.Config) { c.URL = "https://admin:pw@ucp.example.com" }, "must not hold credentials"},
		{"query", func(c *ucp.Config) { c.URL = "https://ucp.example.com/?x=1" }, "remove the query"},
		{"no admin", func(c *ucp.Config) { c.Username = "" }, "administrator's username and password are missing"},
		{"no admin password", func(c *ucp.Config) { c.Password = "" }, "administrator's username and password are missing"},
		{"bad CA", func(c *ucp.Config) { c.CAPEM = []byte("not a certificate") }, "holds no PEM certificate: give the content of https://ucp.example.com/ca"},
	} {
		c := good
		tc.edit(&c)
		_, err := ucp.New(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v; want %q", tc.what, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), adminPW) {
			t.Errorf("%s: the password is in the error", tc.what)
		}
	}
}
