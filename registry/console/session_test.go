package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestSessions: sign-in with the registry's accounts; the cookie is
// HttpOnly, Secure, SameSite=Strict and never in a URL; the session is a
// record in the metadata store (so any replica accepts it); sign-out ends
// it; idle and absolute expiry and a changed account give the "session
// expired" page; wrong passwords are refused and throttled like the API's.
func TestSessions(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	store := openStore(t, r)

	b := newBrowser(t, r)
	resp, body := b.get("/")
	redirectTo(t, "/ without a session", resp, body, "/login?next=%2F")

	t.Run("wrong password", func(t *testing.T) {
		b.get("/login")
		resp, body := b.post("/login", url.Values{"username": {"alice"}, "password": {"wrong-password"}})
		wantPage(t, "wrong password", resp, body, http.StatusUnauthorized, "Wrong username or password.")
		if b.sessionCookie() != nil {
			t.Fatal("a refused sign-in set a session cookie")
		}
	})

	t.Run("access token instead of a password", func(t *testing.T) {
		_, secret, err := store.CreateAPIToken(ctx(t), meta.APIToken{TokenLabel: "ci", Username: "alice", ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		b.get("/login")
		resp, body := b.post("/login", url.Values{"username": {"alice"}, "password": {secret}})
		wantPage(t, "sign-in with an access token", resp, body, http.StatusUnauthorized, "Sign in with your password")
		if b.sessionCookie() != nil {
			t.Fatal("a sign-in with an access token set a session cookie")
		}
	})

	t.Run("sign-in form without its cookie", func(t *testing.T) {
		other := newBrowser(t, r)
		resp, body := other.post("/login", url.Values{"username": {"alice"}, "password": {"alice-password"}, "csrf": {"forged"}})
		wantPage(t, "forged sign-in", resp, body, http.StatusForbidden, "sign-in form expired")
	})

	t.Run("cookie", func(t *testing.T) {
		b.get("/login")
		resp, body := b.post("/login", url.Values{"username": {"alice"}, "password": {"alice-password"}, "next": {"/orgs"}})
		redirectTo(t, "sign-in", resp, body, "/orgs")
		sc := ""
		for _, h := range resp.Header.Values("Set-Cookie") {
			if strings.HasPrefix(h, "__Host-dtr-session=") {
				sc = h
			}
		}
		for _, attr := range []string{"HttpOnly", "Secure", "SameSite=Strict", "Path=/"} {
			if !strings.Contains(sc, attr) {
				t.Errorf("session cookie %q lacks %s", sc, attr)
			}
		}
		if strings.Contains(sc, "Domain=") {
			t.Errorf("session cookie %q names a domain", sc)
		}
		ck := b.sessionCookie()
		if ck == nil {
			t.Fatal("no session cookie")
		}
		if strings.Contains(resp.Header.Get("Location"), ck.Value) {
			t.Fatal("the session is in the redirect URL")
		}
		sess, _, err := store.Session(ctx(t), ck.Value)
		if err != nil || sess.User != "alice" || sess.CSRF == "" {
			t.Fatalf("session record: %+v %v", sess, err)
		}
		_, page := b.get("/repositories")
		if strings.Contains(page, ck.Value) {
			t.Fatal("a page contains the session's cookie value")
		}
		if !strings.Contains(page, "acme/app") {
			t.Fatalf("alice does not see acme/app:\n%s", excerpt(page))
		}
	})

	t.Run("open redirect refused", func(t *testing.T) {
		o := newBrowser(t, r)
		o.get("/login")
		resp, body := o.post("/login", url.Values{"username": {"bob"}, "password": {"bob-password"}, "next": {"//evil.example/x"}})
		redirectTo(t, "next=//evil", resp, body, "/repositories")
	})

	t.Run("sign out", func(t *testing.T) {
		o := newBrowser(t, r)
		o.login("bob", "bob-password")
		ck := o.sessionCookie()
		resp, body := o.post("/logout", url.Values{})
		redirectTo(t, "sign out", resp, body, "/login?signedout=1")
		if _, _, err := store.Session(ctx(t), ck.Value); err != meta.ErrSessionEnded {
			t.Fatalf("the session record outlived sign-out: %v", err)
		}
		// The old cookie, replayed, is refused with the expired page.
		replay := newBrowser(t, r)
		u, _ := url.Parse(r.URL)
		replay.c.Jar.SetCookies(u, []*http.Cookie{{Name: ck.Name, Value: ck.Value, Path: "/", Secure: true}})
		resp, body = replay.get("/repositories")
		wantPage(t, "replayed cookie", resp, body, http.StatusUnauthorized, "Your session expired", "Sign in again")
	})

	// expire rewrites a signed-in browser's session record as another
	// replica would see it later.
	expire := func(t *testing.T, o *browser, fn func(*meta.Session)) {
		t.Helper()
		ck := o.sessionCookie()
		sess, rev, err := store.Session(ctx(t), ck.Value)
		if err != nil {
			t.Fatal(err)
		}
		fn(&sess)
		if err := store.TouchSession(ctx(t), ck.Value, sess, rev, sess.LastSeen); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("idle expiry", func(t *testing.T) {
		o := newBrowser(t, r)
		o.login("carol", "carol-password")
		expire(t, o, func(s *meta.Session) { s.LastSeen = time.Now().Add(-31 * time.Minute) })
		ck := o.sessionCookie()
		resp, body := o.get("/orgs")
		wantPage(t, "idle session", resp, body, http.StatusUnauthorized, "Your session expired", "idle too long", "/login?next=%2forgs")
		if o.sessionCookie() != nil {
			t.Error("the expired page did not clear the cookie")
		}
		if _, _, err := store.Session(ctx(t), ck.Value); err != meta.ErrSessionEnded {
			t.Fatalf("an expired session stayed in the store: %v", err)
		}
	})
	t.Run("absolute expiry", func(t *testing.T) {
		o := newBrowser(t, r)
		o.login("carol", "carol-password")
		expire(t, o, func(s *meta.Session) { s.ExpiresAt = time.Now().Add(-time.Second) })
		resp, body := o.get("/repositories")
		wantPage(t, "old session", resp, body, http.StatusUnauthorized, "Your session expired", "signed in too long ago")
	})
	t.Run("expired session cannot post", func(t *testing.T) {
		o := newBrowser(t, r)
		o.login(admin, adminPW)
		expire(t, o, func(s *meta.Session) { s.LastSeen = time.Now().Add(-time.Hour) })
		resp, body := o.post("/orgs", url.Values{"name": {"latecomer"}})
		wantPage(t, "post with an expired session", resp, body, http.StatusUnauthorized, "Your session expired")
		if _, err := store.Account(ctx(t), "latecomer"); err == nil {
			t.Fatal("a POST with an expired session created an organization")
		}
	})
	t.Run("password change ends sessions", func(t *testing.T) {
		o := newBrowser(t, r)
		o.login("carol", "carol-password")
		if st := r.API(t, admin, adminPW, "POST", "/api/v0/accounts/carol/changePassword", map[string]string{"newPassword": "carol-password-2"}, nil); st/100 != 2 {
			t.Fatalf("changing carol's password: %d", st)
		}
		resp, body := o.get("/repositories")
		wantPage(t, "after a password change", resp, body, http.StatusUnauthorized, "the account changed")
	})
	t.Run("deactivation ends sessions", func(t *testing.T) {
		o := newBrowser(t, r)
		o.login("bob", "bob-password")
		if st := r.API(t, admin, adminPW, "PATCH", "/api/v0/accounts/bob", map[string]bool{"isActive": false}, nil); st/100 != 2 {
			t.Fatalf("deactivating bob: %d", st)
		}
		resp, body := o.get("/repositories")
		wantPage(t, "after deactivation", resp, body, http.StatusUnauthorized, "Your session expired")
		o.get("/login")
		resp, body = o.post("/login", url.Values{"username": {"bob"}, "password": {"bob-password"}})
		wantPage(t, "deactivated sign-in", resp, body, http.StatusUnauthorized, "Wrong username or password.")
	})
	t.Run("throttled like the API", func(t *testing.T) {
		o := newBrowser(t, r)
		var resp *http.Response
		var body string
		for range 8 {
			o.get("/login")
			resp, body = o.post("/login", url.Values{"username": {"alice"}, "password": {"guess"}})
		}
		wantPage(t, "eighth wrong password", resp, body, http.StatusTooManyRequests, "Too many failed sign-ins")
		if resp.Header.Get("Retry-After") == "" {
			t.Error("no Retry-After on a throttled sign-in")
		}
	})
}

// TestCSRF: every POST without the session's own CSRF token is refused
// before it changes anything: no token, another session's token, and the
// sign-out form.
func TestCSRF(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	store := openStore(t, r)
	a := newBrowser(t, r)
	a.login(admin, adminPW)
	other := newBrowser(t, r)
	other.login("alice", "alice-password")

	forms := []struct {
		path string
		form url.Values
	}{
		{"/repositories/new", url.Values{"namespace": {admin}, "name": {"forged"}, "visibility": {"public"}}},
		{"/repositories/acme/app", url.Values{"action": {"delete-repo"}, "confirmed": {"yes"}}},
		{"/orgs", url.Values{"name": {"forged"}}},
		{"/orgs/acme", url.Values{"action": {"add-member"}, "user": {"carol"}}},
		{"/orgs/acme/teams/devs", url.Values{"action": {"delete-team"}, "confirmed": {"yes"}}},
		{"/users", url.Values{"action": {"make-admin"}, "user": {"carol"}}},
		{"/account", url.Values{"old": {adminPW}, "new": {"forged-password"}, "repeat": {"forged-password"}}},
		{"/system", url.Values{"externalURL": {"https://evil.example"}}},
		{"/system/storage", url.Values{"type": {"filesystem"}, "action": {"save"}}},
		{"/system/gc", url.Values{"action": {"run"}}},
		{"/repositories/acme/app", url.Values{"action": {"add-policy"}, "field0": {"tag"}, "operator0": {"sw"}, "values0": {"forged"}, "enabled": {"on"}}},
		{"/repositories/acme/app", url.Values{"action": {"test-policy"}, "field0": {"tag"}, "operator0": {"sw"}, "values0": {"forged"}}},
		{"/repositories/acme/app", url.Values{"action": {"delete-policy"}, "policy": {"p"}, "confirmed": {"yes"}}},
		{"/repositories/acme/app", url.Values{"action": {"create-webhook"}, "type": {"TAG_PUSH"}, "endpoint": {"https://evil.example"}}},
		{"/repositories/acme/app", url.Values{"action": {"test-webhook"}, "webhook": {"00"}}},
		{"/system/webhooks", url.Values{"action": {"create-webhook"}, "type": {"TAG_PUSH"}, "endpoint": {"https://evil.example"}}},
		{"/system/webhooks", url.Values{"action": {"delete-webhook"}, "webhook": {"00"}, "confirmed": {"yes"}}},
		{"/account/tokens", url.Values{"action": {"create"}, "name": {"forged"}, "scope": {"read-write"}}},
		{"/system/identity", url.Values{"action": {"save"}, "kind": {"ucp"}, "ucpURL": {"https://evil.example"}, "ucpUsername": {"x"}, "ucpPassword": {"x"}}},
		{"/system/identity", url.Values{"action": {"sync"}}},
		{"/orgs/acme/teams/devs", url.Values{"action": {"unlink-group"}}},
		{"/orgs/acme/serviceaccounts", url.Values{"action": {"create"}, "name": {"forged"}}},
		{"/logout", url.Values{}},
	}
	for _, f := range forms {
		for _, tok := range []struct{ name, value string }{{"no token", ""}, {"another session's token", other.csrf}} {
			t.Run(f.path+" "+tok.name, func(t *testing.T) {
				form := url.Values{"csrf": {tok.value}}
				for k, v := range f.form {
					form[k] = v
				}
				resp, body := a.post(f.path, form)
				wantPage(t, "forged POST "+f.path, resp, body, http.StatusForbidden, "nothing was changed")
			})
		}
	}
	// Nothing changed.
	if _, err := store.Repository(ctx(t), admin, "forged"); err == nil {
		t.Error("a forged form created a repository")
	}
	if _, err := store.Repository(ctx(t), "acme", "app"); err != nil {
		t.Errorf("a forged form deleted acme/app: %v", err)
	}
	if acc, _ := store.Account(ctx(t), "carol"); acc.IsAdmin {
		t.Error("a forged form made carol an admin")
	}
	if ps, err := store.PruningPolicies(ctx(t), "acme", "app"); err != nil || len(ps) != 0 {
		t.Errorf("forged forms and pruning policies: %+v %v", ps, err)
	}
	if hs, err := store.Webhooks(ctx(t)); err != nil || len(hs) != 0 {
		t.Errorf("forged forms created webhooks: %+v %v", hs, err)
	}
	if ts, err := store.APITokens(ctx(t), admin); err != nil || len(ts) != 0 {
		t.Errorf("forged forms created access tokens: %+v %v", ts, err)
	}
	if sas, err := store.ServiceAccounts(ctx(t), "acme"); err != nil || len(sas) != 0 {
		t.Errorf("forged forms created service accounts: %+v %v", sas, err)
	}
	if st, _, _ := store.Settings(ctx(t)); st.IdentityKind() != meta.IdentityLocal {
		t.Error("a forged form changed the identity source")
	}
	if st, _, _ := store.Settings(ctx(t)); st.ExternalURL == "https://evil.example" {
		t.Error("a forged form changed the external URL")
	}
	if resp, _ := a.get("/repositories"); resp.StatusCode != 200 {
		t.Errorf("the session did not survive the forged sign-out: %d", resp.StatusCode)
	}
}

// join adds a second replica to r's cluster as the installer does: the
// learner is added through r's admin API, started with the cluster CA, and
// promoted once it has caught up.
func join(t *testing.T, r *registrytest.Replica, id string) *registrytest.Replica {
	t.Helper()
	return registrytest.Join(t, r, admin, adminPW, id)
}

// TestSessionOnEveryReplica: behind a load balancer, the next request of a
// session may reach another replica: a session started on one is accepted
// by the other, its CSRF token too, and signing out on one ends it on both.
func TestSessionOnEveryReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two replicas")
	}
	a := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, a, admin, adminPW)
	b := join(t, a, "bbbbbbbbbbbb")

	onA := newBrowser(t, a)
	onA.login("alice", "alice-password")
	// The same browser (one cookie jar: cookies are per host, not port) on B.
	onB := &browser{t: t, r: b, c: onA.c, csrf: onA.csrf}
	resp, body := onB.get("/repositories")
	wantPage(t, "replica B with A's session", resp, body, http.StatusOK, "acme/app", "replica bbbbbbbbbbbb")
	resp, body = onB.post("/repositories/new", url.Values{"namespace": {"alice"}, "name": {"from-b"}, "visibility": {"private"}})
	redirectTo(t, "a form of A's page posted to B", resp, body, "/repositories/alice/from-b?done=repo-created")
	ck := onA.sessionCookie()
	resp, body = onB.post("/logout", url.Values{})
	redirectTo(t, "sign out on B", resp, body, "/login?signedout=1")
	// Replay the cookie on A: the session ended cluster-wide.
	replay := newBrowser(t, a)
	u, _ := url.Parse(a.URL)
	replay.c.Jar.SetCookies(u, []*http.Cookie{{Name: ck.Name, Value: ck.Value, Path: "/", Secure: true}})
	resp, body = replay.get("/repositories")
	wantPage(t, "A after sign-out on B", resp, body, http.StatusUnauthorized, "Your session expired")
}

// TestSessionsPerUser: one account keeps at most meta.MaxSessionsPerUser
// sessions; a further sign-in ends the oldest.
func TestSessionsPerUser(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	first := newBrowser(t, r)
	first.login("carol", "carol-password")
	for range meta.MaxSessionsPerUser {
		newBrowser(t, r).login("carol", "carol-password")
	}
	resp, body := first.get("/repositories")
	wantPage(t, "the oldest session", resp, body, http.StatusUnauthorized, "Your session expired")
}
