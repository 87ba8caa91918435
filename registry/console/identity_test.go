package console_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/identity/ldap/slapdtest"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

var (
	tokenSecret = regexp.MustCompile(`id="token-secret" readonly value="(dtr_[^"]+)"`)
	tokenID     = regexp.MustCompile(`name="token" value="([0-9a-f]{64})"`)
)

// TestAccessTokenPages: a user lists, creates and revokes their own access
// tokens; the secret is on the creation's answer only; nobody sees or
// revokes another user's tokens through the console, an administrator
// included; bad input, forged forms and an expired session change nothing.
func TestAccessTokenPages(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	store := openStore(t, r)
	alice := newBrowser(t, r)
	alice.login("alice", "alice-password")

	resp, body := alice.get("/account/tokens")
	wantPage(t, "no tokens", resp, body, http.StatusOK, "You have no access tokens", `value="read-only" checked`, `href="/account/tokens" class="on"`)

	// Bad input: the form comes back with the words to fix it.
	resp, body = alice.post("/account/tokens", url.Values{"action": {"create"}, "name": {"  "}})
	wantPage(t, "no name", resp, body, http.StatusBadRequest, "Give the token a name")
	resp, body = alice.post("/account/tokens", url.Values{"action": {"create"}, "name": {"old"}, "expires": {"2001-01-01"}})
	wantPage(t, "past expiry", resp, body, http.StatusBadRequest, "is in the past", `value="old"`)
	resp, body = alice.post("/account/tokens", url.Values{"action": {"create"}, "name": {"old"}, "expires": {"next week"}})
	wantPage(t, "bad expiry", resp, body, http.StatusBadRequest, "is not a date; give one as YYYY-MM-DD")
	if ts, _ := store.APITokens(ctx(t), "alice"); len(ts) != 0 {
		t.Fatalf("bad forms created tokens: %+v", ts)
	}

	// A read-only token with an expiry, and a read-write one.
	exp := time.Now().UTC().AddDate(0, 1, 0).Format("2006-01-02")
	resp, body = alice.post("/account/tokens", url.Values{"action": {"create"}, "name": {"ci-pull"}, "scope": {"read-only"}, "expires": {exp}})
	wantPage(t, "create", resp, body, http.StatusCreated, "Access token ci-pull created", "This is the only time it is shown",
		"docker login -u alice --password-stdin "+r.Host)
	m := tokenSecret.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no secret on the creation's page:\n%s", excerpt(body))
	}
	roSecret := m[1]
	resp, body = alice.post("/account/tokens", url.Values{"action": {"create"}, "name": {"ci-push"}, "scope": {"read-write"}})
	wantPage(t, "create read-write", resp, body, http.StatusCreated, "Access token ci-push created")
	rwSecret := tokenSecret.FindStringSubmatch(body)[1]
	if strings.Contains(body, roSecret) {
		t.Fatal("the second creation's page shows the first token's secret")
	}

	// The secrets work, within their scope.
	if st := r.API(t, "alice", roSecret, "GET", "/api/v0/accounts/alice", nil, nil); st != http.StatusOK {
		t.Fatalf("the read-only token on the API: %d", st)
	}
	if st := r.API(t, "alice", roSecret, "POST", "/api/v0/repositories/alice", map[string]any{"name": "ro"}, nil); st != http.StatusForbidden {
		t.Fatalf("the read-only token created a repository: %d", st)
	}
	if st := r.API(t, "alice", rwSecret, "POST", "/api/v0/repositories/alice", map[string]any{"name": "rw", "visibility": "private"}, nil); st != http.StatusCreated {
		t.Fatalf("the read-write token: %d", st)
	}

	// The list: names, scopes, expiry, last use; never a secret, on any page.
	body = reloadUntil(t, alice, "/account/tokens", "ci-push")
	wantPage(t, "list", &http.Response{StatusCode: 200}, body, http.StatusOK, "ci-pull", "read-only", "read-write", exp+" 23:59 UTC")
	ids := tokenID.FindAllStringSubmatch(body, -1)
	if len(ids) != 2 {
		t.Fatalf("%d tokens listed, want 2", len(ids))
	}
	for _, p := range []string{"/account/tokens", "/account/tokens?done=token-revoked", "/account", "/repositories", "/orgs/acme"} {
		_, body := alice.get(p)
		if strings.Contains(body, roSecret) || strings.Contains(body, rwSecret) || strings.Contains(body, "dtr_") {
			t.Fatalf("%s shows a token's secret", p)
		}
	}

	// Signing in to the console with a token is refused.
	other := newBrowser(t, r)
	other.get("/login")
	resp, body = other.post("/login", url.Values{"username": {"alice"}, "password": {rwSecret}})
	wantPage(t, "token sign-in", resp, body, http.StatusUnauthorized, "Sign in with your password")

	// Another user, and an administrator, see only their own tokens and
	// cannot revoke alice's through the console.
	for _, u := range []struct{ name, pw string }{{"carol", "carol-password"}, {admin, adminPW}} {
		b := newBrowser(t, r)
		b.login(u.name, u.pw)
		resp, body := b.get("/account/tokens")
		wantPage(t, u.name+"'s tokens", resp, body, http.StatusOK, "You have no access tokens")
		if strings.Contains(body, "ci-pull") {
			t.Fatalf("%s sees alice's tokens", u.name)
		}
		resp, body = b.post("/account/tokens", url.Values{"action": {"revoke"}, "token": {ids[0][1]}, "confirmed": {"yes"}})
		wantPage(t, u.name+" revokes alice's", resp, body, http.StatusNotFound, "You have no access token")
	}
	if ts, _ := store.APITokens(ctx(t), "alice"); len(ts) != 2 {
		t.Fatalf("alice has %d tokens after others tried to revoke them, want 2", len(ts))
	}
	resp, body = alice.post("/account/tokens", url.Values{"action": {"revoke"}, "token": {"../../accounts"}, "confirmed": {"yes"}})
	wantPage(t, "bad token ID", resp, body, http.StatusBadRequest, "is not a token")

	// Forged forms and an expired session change nothing.
	resp, body = alice.post("/account/tokens", url.Values{"action": {"create"}, "name": {"forged"}, "csrf": {""}})
	wantPage(t, "no CSRF token", resp, body, http.StatusForbidden, "nothing was changed")
	resp, body = alice.post("/account/tokens", url.Values{"action": {"revoke"}, "token": {ids[0][1]}, "confirmed": {"yes"}, "csrf": {"forged"}})
	wantPage(t, "forged CSRF token", resp, body, http.StatusForbidden, "nothing was changed")

	// Revoke: a confirmation page first (without JavaScript), then gone,
	// and the secret stops working.
	alice.get("/account/tokens")
	resp, body = alice.post("/account/tokens", url.Values{"action": {"revoke"}, "token": {ids[0][1]}})
	wantPage(t, "confirm revoke", resp, body, http.StatusOK, "Are you sure?", "Revoke access token", ids[0][1])
	resp, body = alice.post("/account/tokens", url.Values{"action": {"revoke"}, "token": {ids[0][1]}, "confirmed": {"yes"}})
	redirectTo(t, "revoke", resp, body, "/account/tokens?done=token-revoked")
	resp, body = alice.get("/account/tokens?done=token-revoked")
	wantPage(t, "after revoke", resp, body, http.StatusOK, "Access token revoked")
	if ts, _ := store.APITokens(ctx(t), "alice"); len(ts) != 1 {
		t.Fatalf("alice has %d tokens after a revocation, want 1", len(ts))
	}
	revoked, kept := roSecret, rwSecret
	if strings.Contains(body, "ci-pull") {
		revoked, kept = rwSecret, roSecret
	}
	if st := r.API(t, "alice", revoked, "GET", "/api/v0/accounts/alice", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("a revoked token still works: %d", st)
	}
	if st := r.API(t, "alice", kept, "GET", "/api/v0/accounts/alice", nil, nil); st != http.StatusOK {
		t.Fatalf("the other token stopped working: %d", st)
	}

	expireSession(t, store, alice)
	resp, body = alice.post("/account/tokens", url.Values{"action": {"create"}, "name": {"late"}})
	wantPage(t, "expired session", resp, body, http.StatusUnauthorized, "Session expired")
	if ts, _ := store.APITokens(ctx(t), "alice"); len(ts) != 1 {
		t.Fatalf("an expired session created a token: %d", len(ts))
	}
	resp, _ = alice.get("/account/tokens")
	redirectTo(t, "signed out", resp, "", "/login?next=%2Faccount%2Ftokens")
}

// ldapForm is System → Identity's form for the test's slapd.
func ldapForm(s *slapdtest.Server, readerPW string) url.Values {
	return url.Values{
		"kind": {"ldap"}, "serverURL": {s.URL}, "startTLS": {"on"}, "rootCerts": {string(s.CAPEM)},
		"readerDN": {slapdtest.ReaderDN}, "readerPassword": {readerPW},
		"baseDN": {slapdtest.People}, "filter": {"(objectClass=inetOrgPerson)"}, "usernameAttr": {"uid"},
		"adminGroupDN": {slapdtest.GroupDN("admins")}, "syncSchedule": {"@hourly"},
	}
}

// TestIdentityPages drives System → Identity against a real slapd: only
// administrators reach it; bad settings are refused in the API's words and
// nothing is saved; the test call reports what a user would get, before
// and after saving; the reader password is write-only and kept when left
// empty; a team is linked to a group, a sync run from the page makes the
// group's member a team member, and the link is removed. Without the LDAP
// source the team page says groups do not apply.
func TestIdentityPages(t *testing.T) {
	s := slapdtest.Start(t)
	s.AddUser("dora", "Dora Explorer", "dora-ldap-pw")
	s.AddUser("erin", "Erin Admin", "erin-ldap-pw")
	s.AddGroup("admins", "erin")
	s.AddGroup("devs", "dora")
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	store := openStore(t, r)
	a := newBrowser(t, r)
	a.login(admin, adminPW)

	// A user never sees the page, its tab or its forms.
	alice := newBrowser(t, r)
	alice.login("alice", "alice-password")
	resp, body := alice.get("/system/identity")
	wantPage(t, "alice's identity page", resp, body, http.StatusForbidden, "Only a system administrator")
	if strings.Contains(body, "/system/identity") {
		t.Fatal("alice's page links to System → Identity")
	}
	resp, body = alice.post("/system/identity", url.Values{"action": {"save"}, "kind": {"local"}})
	wantPage(t, "alice saves", resp, body, http.StatusForbidden, "Only a system administrator")
	resp, body = alice.post("/system/identity", url.Values{"action": {"sync"}})
	wantPage(t, "alice syncs", resp, body, http.StatusForbidden, "Only a system administrator")

	resp, body = a.get("/system/identity")
	wantPage(t, "identity page", resp, body, http.StatusOK, `value="local" checked`, `id="ldap-password-state">not set`, "There is nothing to sync")

	// Local accounts: the team page says directory groups do not apply.
	resp, body = a.get("/orgs/acme/teams/devs")
	wantPage(t, "team, local source", resp, body, http.StatusOK, "not LDAP: directory groups do not apply")
	if strings.Contains(body, `id="link-form"`) {
		t.Fatal("the team page offers a link without the LDAP source")
	}

	// UCP: its password is write-only too; groups do not apply.
	resp, body = a.post("/system/identity", url.Values{"action": {"save"}, "kind": {"ucp"}, "ucpURL": {"https://ucp.example.com"},
		"ucpUsername": {"ucp-admin"}, "ucpPassword": {"ucp-secret-pw"}})
	redirectTo(t, "save UCP", resp, body, "/system/identity?done=identity-saved")
	resp, body = a.get("/system/identity")
	wantPage(t, "UCP saved", resp, body, http.StatusOK, `value="ucp" checked`, `id="ucp-password-state">set`, "https://ucp.example.com", "Sync now")
	if strings.Contains(body, "ucp-secret-pw") {
		t.Fatal("the page shows the UCP password")
	}
	resp, body = a.get("/orgs/acme/teams/devs")
	wantPage(t, "team, UCP source", resp, body, http.StatusOK, "The identity source is UCP/MKE, not LDAP")
	resp, body = a.post("/system/identity", url.Values{"action": {"save"}, "kind": {"local"}})
	redirectTo(t, "back to local", resp, body, "/system/identity?done=identity-saved")
	if st, _, _ := store.Settings(ctx(t)); st.IdentityKind() != meta.IdentityLocal || st.Identity.UCP == nil || st.Identity.UCP.Password != "ucp-secret-pw" {
		t.Fatalf("back to local accounts: kind %s, UCP settings kept: %+v", st.IdentityKind(), st.Identity.UCP != nil)
	}

	// Bad settings: the API's words, nothing saved.
	bad := ldapForm(s, slapdtest.ReaderPW)
	bad.Set("serverURL", "http://ldap.example.com")
	bad.Set("action", "save")
	resp, body = a.post("/system/identity", bad)
	wantPage(t, "bad URL", resp, body, http.StatusBadRequest, "Nothing was saved", "give ldaps://host[:636] or ldap://host[:389]", `value="http://ldap.example.com"`)
	if strings.Contains(body, slapdtest.ReaderPW) {
		t.Fatal("the page shows the reader password typed")
	}
	if st, _, _ := store.Settings(ctx(t)); st.IdentityKind() != meta.IdentityLocal {
		t.Fatalf("refused settings saved: %s", st.IdentityKind())
	}
	resp, body = a.post("/system/identity", url.Values{"action": {"save"}, "kind": {"nis"}})
	wantPage(t, "bad kind", resp, body, http.StatusBadRequest, "Choose where users come from")

	// Test before saving: what dora and erin would get.
	test := func(f url.Values, user, pw string) (*http.Response, string) {
		t.Helper()
		f = cloneValues(f)
		f.Set("action", "test")
		f.Set("testUsername", user)
		f.Set("testPassword", pw)
		return a.post("/system/identity", f)
	}
	resp, body = test(ldapForm(s, slapdtest.ReaderPW), "dora", "dora-ldap-pw")
	wantPage(t, "test dora", resp, body, http.StatusOK, "dora signs in as dora", "Dora Explorer", `id="test-admin">no`, "type it again before you save")
	resp, body = test(ldapForm(s, slapdtest.ReaderPW), "erin", "erin-ldap-pw")
	wantPage(t, "test erin", resp, body, http.StatusOK, "erin signs in", `id="test-admin">yes`)
	resp, body = test(ldapForm(s, slapdtest.ReaderPW), "dora", "wrong")
	wantPage(t, "wrong password", resp, body, http.StatusOK, "The source refused dora.")
	resp, body = test(ldapForm(s, "not-the-reader-pw"), "dora", "dora-ldap-pw")
	wantPage(t, "wrong reader password", resp, body, http.StatusOK, `class="error"`, "could not be asked")
	if !strings.Contains(strings.ToLower(body), "reader") {
		t.Fatalf("the wrong reader password is not named:\n%s", excerpt(body))
	}
	resp, body = test(ldapForm(s, slapdtest.ReaderPW), "", "")
	wantPage(t, "test without a user", resp, body, http.StatusBadRequest, "give the username and password of a user")
	if st, _, _ := store.Settings(ctx(t)); st.IdentityKind() != meta.IdentityLocal {
		t.Fatal("a test saved the settings")
	}

	// Save; the password is then "set", never shown, and kept when the
	// form leaves it empty.
	save := ldapForm(s, slapdtest.ReaderPW)
	save.Set("action", "save")
	resp, body = a.post("/system/identity", save)
	redirectTo(t, "save", resp, body, "/system/identity?done=identity-saved")
	resp, body = a.get("/system/identity")
	wantPage(t, "saved", resp, body, http.StatusOK, `value="ldap" checked`, `id="ldap-password-state">set`, s.URL, "Sync now", "Next sync")
	if strings.Contains(body, slapdtest.ReaderPW) || strings.Contains(body, meta.SecretMask) {
		t.Fatal("the page shows the stored reader password or its mask")
	}
	keep := ldapForm(s, "")
	keep.Set("filter", "(objectClass=person)")
	keep.Set("action", "save")
	resp, body = a.post("/system/identity", keep)
	redirectTo(t, "save without the password", resp, body, "/system/identity?done=identity-saved")
	if st, _, _ := store.Settings(ctx(t)); st.Identity.LDAP.ReaderPassword != slapdtest.ReaderPW || st.Identity.LDAP.UserSearch.Filter != "(objectClass=person)" {
		t.Fatalf("saving with an empty password: filter %q, password kept %v", st.Identity.LDAP.UserSearch.Filter, st.Identity.LDAP.ReaderPassword == slapdtest.ReaderPW)
	}
	resp, body = test(ldapForm(s, ""), "dora", "dora-ldap-pw")
	wantPage(t, "test with the stored password", resp, body, http.StatusOK, "dora signs in")

	// Link the team to the devs group, sync from the page: dora joins.
	resp, body = a.get("/orgs/acme/teams/devs")
	wantPage(t, "team, LDAP source", resp, body, http.StatusOK, `id="link-form"`, "Not linked")
	resp, body = a.post("/orgs/acme/teams/devs", url.Values{"action": {"link-group"}, "groupDN": {""}})
	wantPage(t, "link without a DN", resp, body, http.StatusBadRequest, "Give the DN of the directory group")
	resp, body = a.post("/orgs/acme/teams/devs", url.Values{"action": {"link-group"}, "groupDN": {slapdtest.GroupDN("devs")}, "groupMemberAttr": {"member"}})
	redirectTo(t, "link", resp, body, "/orgs/acme/teams/devs?done=team-linked")
	resp, body = a.get("/orgs/acme/teams/devs")
	wantPage(t, "linked", resp, body, http.StatusOK, "Linked to <code>"+slapdtest.GroupDN("devs")+"</code>", "Remove the link")
	// alice, a member of the organization's team, sees the link but may
	// not change it.
	resp, body = alice.get("/orgs/acme/teams/devs")
	wantPage(t, "alice's team page", resp, body, http.StatusOK, "Linked to")
	if strings.Contains(body, `value="unlink-group"`) {
		t.Fatal("alice is offered to remove the link")
	}
	resp, body = alice.post("/orgs/acme/teams/devs", url.Values{"action": {"unlink-group"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("alice removed the link: %d\n%s", resp.StatusCode, excerpt(body))
	}

	a.get("/system/identity")
	resp, body = a.post("/system/identity", url.Values{"action": {"sync"}})
	redirectTo(t, "sync now", resp, body, "/system/identity?done=sync-started")
	// The sync runs on a replica's job runner, off the request's path.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, body = a.get("/system/identity")
		if !strings.Contains(body, "reading the directory") && !strings.Contains(body, "waiting for a replica") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sync did not end in 60 s:\n%s", excerpt(body[strings.Index(body, "Recent syncs"):]))
		}
	}
	wantPage(t, "sync done", &http.Response{StatusCode: 200}, body, http.StatusOK, "users in the source: 1 created", `<span class="health-ok">done</span>`)
	reloadUntil(t, a, "/orgs/acme/teams/devs", "<td>dora</td>")

	resp, body = a.post("/orgs/acme/teams/devs", url.Values{"action": {"unlink-group"}})
	redirectTo(t, "unlink", resp, body, "/orgs/acme/teams/devs?done=team-unlinked")
	resp, body = a.get("/orgs/acme/teams/devs")
	wantPage(t, "unlinked", resp, body, http.StatusOK, "Not linked", `id="link-form"`)

	// Forged forms and an expired session change nothing.
	local := url.Values{"action": {"save"}, "kind": {"local"}}
	for _, tok := range []string{"", "forged"} {
		f := cloneValues(local)
		f.Set("csrf", tok)
		resp, body = a.post("/system/identity", f)
		wantPage(t, "forged identity form", resp, body, http.StatusForbidden, "nothing was changed")
		resp, body = a.post("/orgs/acme/teams/devs", url.Values{"action": {"link-group"}, "groupDN": {slapdtest.GroupDN("admins")}, "csrf": {tok}})
		wantPage(t, "forged link form", resp, body, http.StatusForbidden, "nothing was changed")
	}
	expireSession(t, store, a)
	resp, body = a.post("/system/identity", local)
	wantPage(t, "expired session", resp, body, http.StatusUnauthorized, "Session expired")
	if st, _, _ := store.Settings(ctx(t)); st.IdentityKind() != meta.IdentityLDAP {
		t.Fatal("a forged form or an expired session changed the identity source")
	}
	if ts, _ := store.TeamSyncOf(ctx(t), "acme", "devs"); ts.EnableSync {
		t.Fatal("a forged form linked the team")
	}
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// TestServiceAccountPages: an organization's admin creates a service
// account and a token limited to one repository, sees its secret once,
// the token pulls and pushes there and nowhere else, and is revoked; the
// account is deleted. Members who are not admins, and outsiders, are
// refused; forged forms and an expired session change nothing.
func TestServiceAccountPages(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	store := openStore(t, r)
	// carol administers acme; alice is a member (team devs), bob too.
	if st := r.API(t, admin, adminPW, "PUT", "/api/v0/accounts/acme/members/carol", map[string]any{"isAdmin": true}, nil); st != http.StatusOK {
		t.Fatalf("making carol an admin of acme: %d", st)
	}
	carol := newBrowser(t, r)
	carol.login("carol", "carol-password")

	resp, body := carol.get("/orgs/acme")
	wantPage(t, "org page", resp, body, http.StatusOK, `href="/orgs/acme/serviceaccounts"`)
	resp, body = carol.get("/orgs/acme/serviceaccounts")
	wantPage(t, "no service accounts", resp, body, http.StatusOK, "acme has no service accounts")
	resp, body = carol.post("/orgs/acme/serviceaccounts", url.Values{"action": {"create"}, "name": {"Bad Name"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `value="Bad Name"`) {
		t.Fatalf("a bad name: %d\n%s", resp.StatusCode, excerpt(body))
	}
	resp, body = carol.post("/orgs/acme/serviceaccounts", url.Values{"action": {"create"}, "name": {"ci"}, "description": {"the app's pipeline"}})
	redirectTo(t, "create", resp, body, "/orgs/acme/serviceaccounts/ci?done=sa-created")
	resp, body = carol.get("/orgs/acme/serviceaccounts/ci")
	wantPage(t, "service account", resp, body, http.StatusOK, "Logs in as <code>acme+ci</code>", "No tokens yet", `<input type="checkbox" name="repo" value="app"> acme/app`)

	// A token needs a name and repositories.
	resp, body = carol.post("/orgs/acme/serviceaccounts/ci", url.Values{"action": {"create-token"}, "name": {"build"}})
	wantPage(t, "no repositories", resp, body, http.StatusBadRequest, "Choose the repositories")
	resp, body = carol.post("/orgs/acme/serviceaccounts/ci", url.Values{"action": {"create-token"}, "name": {"build"}, "repo": {"nosuch"}})
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Fatalf("a token for a repository that does not exist: %d\n%s", resp.StatusCode, excerpt(body))
	}
	resp, body = carol.post("/orgs/acme/serviceaccounts/ci", url.Values{"action": {"create-token"}, "name": {"build"}, "repo": {"app"}, "access": {"push"}})
	wantPage(t, "create token", resp, body, http.StatusCreated, "Token build created", "This is the only time it is shown", "docker login -u acme+ci --password-stdin "+r.Host)
	secret := tokenSecret.FindStringSubmatch(body)[1]

	// It pushes to acme/app only.
	tok := r.Token(t, "acme+ci", secret, "repository:acme/app:pull,push")
	if _, st := r.PushImage(t, tok, "acme/app", "ci-1", []byte("built by the pipeline")); st != http.StatusCreated {
		t.Fatalf("the service account's push to acme/app: %d", st)
	}
	tok = r.Token(t, "acme+ci", secret, "repository:acme/pub:pull,push")
	if _, st := r.PushImage(t, tok, "acme/pub", "ci-1", []byte("not allowed")); st == http.StatusCreated {
		t.Fatal("the service account's token pushed to acme/pub, which it does not list")
	}

	body = reloadUntil(t, carol, "/orgs/acme/serviceaccounts/ci", "acme/app <span class=\"hint\">pull, push</span>")
	if strings.Contains(body, secret) || strings.Contains(body, "dtr_") {
		t.Fatal("the service account's page shows the secret again")
	}
	id := tokenID.FindStringSubmatch(body)[1]

	// alice (a member, not an admin) and an outsider are refused.
	alice := newBrowser(t, r)
	alice.login("alice", "alice-password")
	for _, p := range []string{"/orgs/acme/serviceaccounts", "/orgs/acme/serviceaccounts/ci"} {
		resp, body := alice.get(p)
		wantPage(t, "alice "+p, resp, body, http.StatusForbidden, "only an admin of organization acme")
	}
	resp, body = alice.post("/orgs/acme/serviceaccounts/ci", url.Values{"action": {"revoke"}, "token": {id}, "confirmed": {"yes"}})
	wantPage(t, "alice revokes", resp, body, http.StatusForbidden)
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": "other", "isOrg": true}, nil); st != http.StatusCreated {
		t.Fatal(st)
	}
	resp, body = carol.get("/orgs/other/serviceaccounts")
	wantPage(t, "carol, another organization", resp, body, http.StatusNotFound)

	// Forged forms and an expired session change nothing.
	resp, body = carol.post("/orgs/acme/serviceaccounts/ci", url.Values{"action": {"delete"}, "confirmed": {"yes"}, "csrf": {""}})
	wantPage(t, "forged delete", resp, body, http.StatusForbidden, "nothing was changed")
	resp, body = carol.post("/orgs/acme/serviceaccounts", url.Values{"action": {"create"}, "name": {"forged"}, "csrf": {"forged"}})
	wantPage(t, "forged create", resp, body, http.StatusForbidden, "nothing was changed")

	// Revoke (confirmation first), then delete the account.
	carol.get("/orgs/acme/serviceaccounts/ci")
	resp, body = carol.post("/orgs/acme/serviceaccounts/ci", url.Values{"action": {"revoke"}, "token": {id}})
	wantPage(t, "confirm revoke", resp, body, http.StatusOK, "Are you sure?", "acme+ci")
	resp, body = carol.post("/orgs/acme/serviceaccounts/ci", url.Values{"action": {"revoke"}, "token": {id}, "confirmed": {"yes"}})
	redirectTo(t, "revoke", resp, body, "/orgs/acme/serviceaccounts/ci?done=token-revoked")
	if st := r.API(t, "acme+ci", secret, "GET", "/api/v0/accounts/acme/serviceAccounts/ci", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("the revoked token still works: %d", st)
	}
	resp, body = carol.post("/orgs/acme/serviceaccounts/ci", url.Values{"action": {"delete"}, "confirmed": {"yes"}})
	redirectTo(t, "delete", resp, body, "/orgs/acme/serviceaccounts?done=sa-deleted")
	if _, err := store.ServiceAccount(ctx(t), "acme", "ci"); err == nil {
		t.Fatal("the service account is still there")
	}
	expireSession(t, store, carol)
	resp, body = carol.post("/orgs/acme/serviceaccounts", url.Values{"action": {"create"}, "name": {"late"}})
	wantPage(t, "expired session", resp, body, http.StatusUnauthorized, "Session expired")
	if sas, _ := store.ServiceAccounts(ctx(t), "acme"); len(sas) != 0 {
		t.Fatalf("service accounts after an expired session's form: %+v", sas)
	}
}
