package registry_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/adminapi"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestServiceAccounts: an organization's admins create service accounts
// ("<org>+<name>") and tokens for them limited to chosen repositories of
// the organization; docker login with such a token pulls and pushes
// exactly there, nowhere else, never through the admin API, the console or
// a password; members who are not admins and outsiders cannot manage or
// see them; names never collide; revocation ends the registry tokens on
// both replicas within 2 s; expiry, a re-created repository, deleting the
// service account or the organization end them too; the audit trail names
// the service account.
func TestServiceAccounts(t *testing.T) {
	r1 := registrytest.StartNew(t)
	setupAccounts(t, r1) // acme: alice in devs (read-write on acme/app), bob in readers
	api := func(user, pw, method, path string, in, out any, want int) {
		t.Helper()
		if st := r1.API(t, user, pw, method, path, in, out); st != want {
			t.Fatalf("%s %s as %s: %d, want %d", method, path, user, st, want)
		}
	}
	const carolPW = "carol-password"
	api(admin, adminPW, "PUT", "/api/v0/accounts/acme/members/carol", map[string]any{"isAdmin": true}, nil, 200)
	api(admin, adminPW, "POST", "/api/v0/repositories/acme", map[string]any{"name": "other", "visibility": "private"}, nil, 201)
	api(admin, adminPW, "POST", "/api/v0/repositories/acme", map[string]any{"name": "redo", "visibility": "private"}, nil, 201)
	api(admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": "globex", "isOrg": true}, nil, 201)
	api(admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": "dave", "password": "dave-password"}, nil, 201)
	api(admin, adminPW, "PUT", "/api/v0/accounts/globex/members/dave", map[string]any{"isAdmin": true}, nil, 200)
	api(admin, adminPW, "POST", "/api/v0/repositories/globex", map[string]any{"name": "app", "visibility": "private"}, nil, 201)
	adminPush := r1.Token(t, admin, adminPW, "repository:acme/other:push,pull", "repository:globex/app:push,pull", "repository:acme/pub:push,pull")
	for _, repo := range []string{"acme/other", "globex/app", "acme/pub"} {
		if _, st := r1.PushImage(t, adminPush, repo, "v1", []byte("layer of "+repo)); st != 201 {
			t.Fatalf("admin push to %s: %d", repo, st)
		}
	}

	// Who manages them: the org's admins and system admins; members are
	// refused, outsiders told the organization does not exist.
	const sas = "/api/v0/accounts/acme/serviceAccounts"
	var ci meta.ServiceAccount
	api("carol", carolPW, "POST", sas, adminapi.CreateServiceAccountRequest{Name: "ci", Description: "pipelines"}, &ci, 201)
	if ci.Username != "acme+ci" || ci.Org != "acme" || ci.CreatedBy != "carol" {
		t.Fatalf("created service account: %+v", ci)
	}
	api("alice", "alice-password", "POST", sas, adminapi.CreateServiceAccountRequest{Name: "mine"}, nil, 403)
	api("alice", "alice-password", "GET", sas, nil, nil, 403)
	api("dave", "dave-password", "GET", sas, nil, nil, 404)
	api("dave", "dave-password", "GET", sas+"/ci", nil, nil, 404)
	api("dave", "dave-password", "GET", "/api/v0/accounts/nosuchorg/serviceAccounts", nil, nil, 404)
	api("dave", "dave-password", "POST", sas+"/ci/tokens", map[string]any{"tokenLabel": "x", "repositoryAccess": []map[string]any{{"repository": "acme/app", "actions": []string{"pull"}}}}, nil, 404)
	api("alice", "alice-password", "GET", "/api/v0/accounts/alice/serviceAccounts", nil, nil, 404) // a user is no organization
	var list []meta.ServiceAccount
	api(admin, adminPW, "GET", sas, nil, &list, 200)
	if len(list) != 1 || list[0].Username != "acme+ci" {
		t.Fatalf("list: %+v", list)
	}

	// Names: unique in the org, valid, and never an account's.
	api("carol", carolPW, "POST", sas, adminapi.CreateServiceAccountRequest{Name: "ci"}, nil, 409)
	api("carol", carolPW, "POST", sas, adminapi.CreateServiceAccountRequest{Name: "CI!"}, nil, 400)
	api("carol", carolPW, "POST", sas, adminapi.CreateServiceAccountRequest{Name: "a+b"}, nil, 400)
	api("dave", "dave-password", "POST", "/api/v0/accounts/globex/serviceAccounts", adminapi.CreateServiceAccountRequest{Name: "ci"}, nil, 201)
	api(admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": "acme+ci", "password": "some-password"}, nil, 400)
	api(admin, adminPW, "PUT", "/api/v0/accounts/acme/members/acme+ci", map[string]any{"isAdmin": true}, nil, 404)
	api(admin, adminPW, "PUT", "/api/v0/accounts/acme/teams/devs/members/acme+ci", nil, nil, 404)

	// Tokens: only the org's existing repositories, pull or pull+push.
	grant := func(repo string, acts ...string) adminapi.ServiceAccountTokenGrant {
		return adminapi.ServiceAccountTokenGrant{Repository: repo, Actions: acts}
	}
	newToken := func(user, pw, sa string, req adminapi.CreateServiceAccountTokenRequest, want int) adminapi.NewAPIToken {
		t.Helper()
		var nt adminapi.NewAPIToken
		api(user, pw, "POST", sas+"/"+sa+"/tokens", req, &nt, want)
		return nt
	}
	for _, bad := range []adminapi.CreateServiceAccountTokenRequest{
		{TokenLabel: "none"},
		{TokenLabel: "other org", RepositoryAccess: []adminapi.ServiceAccountTokenGrant{grant("globex/app", "pull")}},
		{TokenLabel: "missing", RepositoryAccess: []adminapi.ServiceAccountTokenGrant{grant("acme/nope", "pull")}},
		{TokenLabel: "delete", RepositoryAccess: []adminapi.ServiceAccountTokenGrant{grant("acme/app", "pull", "delete")}},
		{TokenLabel: "push only", RepositoryAccess: []adminapi.ServiceAccountTokenGrant{grant("acme/app", "push")}},
		{TokenLabel: "", RepositoryAccess: []adminapi.ServiceAccountTokenGrant{grant("acme/app", "pull")}},
		{TokenLabel: "twice", RepositoryAccess: []adminapi.ServiceAccountTokenGrant{grant("acme/app", "pull"), grant("acme/app", "pull", "push")}},
		{TokenLabel: "past", ExpiresAt: ptr(time.Now().Add(-time.Minute)), RepositoryAccess: []adminapi.ServiceAccountTokenGrant{grant("acme/app", "pull")}},
	} {
		newToken("carol", carolPW, "ci", bad, 400)
	}
	good := adminapi.CreateServiceAccountTokenRequest{TokenLabel: "deploy", RepositoryAccess: []adminapi.ServiceAccountTokenGrant{
		grant("acme/app", "pull", "push"), grant("acme/other", "pull"),
	}}
	newToken("alice", "alice-password", "ci", good, 403)
	newToken("carol", carolPW, "nosuch", good, 404)
	var carolTok adminapi.NewAPIToken
	api("carol", carolPW, "POST", "/api/v0/api_tokens", adminapi.CreateAPITokenRequest{TokenLabel: "mine"}, &carolTok, 200)
	newToken("carol", carolTok.Token, "ci", good, 403) // managing takes a password
	api(admin, adminPW, "POST", "/api/v0/api_tokens?username=acme%2Bci", adminapi.CreateAPITokenRequest{TokenLabel: "x"}, nil, 404)
	deploy := newToken("carol", carolPW, "ci", good, 200)
	if deploy.Username != "acme+ci" || !strings.HasPrefix(deploy.Token, meta.APITokenPrefix) || len(deploy.RepositoryAccess) != 2 || deploy.ReadOnly {
		t.Fatalf("created token: %+v", deploy)
	}

	// docker login and push/pull: exactly the listed repositories.
	all := []string{"repository:acme/app:push,pull", "repository:acme/other:push,pull", "repository:acme/pub:push,pull",
		"repository:globex/app:push,pull", "repository:acme/newrepo:push,pull"}
	st, ans := login(t, r1, "acme+ci", deploy.Token, true, all...)
	if st != 200 || ans.Token == "" || ans.RefreshToken != "" {
		t.Fatalf("docker login with the service account's token: %d, refresh token %q", st, ans.RefreshToken)
	}
	img, st := r1.PushImage(t, ans.Token, "acme/app", "v1", []byte("pushed by a pipeline"))
	if st != 201 {
		t.Fatalf("push to a pull+push repository: %d", st)
	}
	pull := func(r *registrytest.Replica, tok, repo string) int {
		st, _, _ := r.Do(t, "GET", "/v2/"+repo+"/manifests/v1", tok, nil, map[string]string{"Accept": ociManifest})
		return st
	}
	for repo, want := range map[string]int{"acme/app": 200, "acme/other": 200, "acme/pub": 401, "globex/app": 401} {
		if got := pull(r1, ans.Token, repo); got != want {
			t.Errorf("pull %s with the service account: %d, want %d", repo, got, want)
		}
	}
	for _, repo := range []string{"acme/other", "acme/pub", "globex/app", "acme/newrepo"} {
		if _, st := r1.PushBlob(t, ans.Token, repo, []byte("refused")); st != 401 {
			t.Errorf("push to %s with the service account: %d, want 401", repo, st)
		}
	}
	// Its name is no namespace: nothing to push to there.
	if st, _ := login(t, r1, "acme+ci", deploy.Token, false, "repository:acme+ci/x:push,pull"); st == 200 {
		if _, st := r1.PushBlob(t, r1.Token(t, "acme+ci", deploy.Token, "repository:acme+ci/x:push,pull"), "acme+ci/x", []byte("refused")); st < 400 {
			t.Errorf("push to the service account's own name: %d", st)
		}
	}
	// A password, another org's service account name, and the admin API.
	if st, _ := login(t, r1, "acme+ci", "some-password", false); st != 401 {
		t.Errorf("service account with a password: %d, want 401", st)
	}
	if st, _ := login(t, r1, "globex+ci", deploy.Token, false, all...); st != 401 {
		t.Errorf("another org's service account name with this token: %d, want 401", st)
	}
	if st := r1.API(t, "acme+ci", deploy.Token, "GET", "/api/v0/accounts/acme", nil, nil); st != 403 {
		t.Errorf("admin API with the service account's token: %d, want 403", st)
	}
	if st := r1.API(t, "acme+ci", deploy.Token, "GET", sas, nil, nil); st != 403 {
		t.Errorf("listing service accounts with the service account's token: %d, want 403", st)
	}
	var self meta.ServiceAccount
	if st := r1.API(t, "acme+ci", deploy.Token, "GET", sas+"/ci", nil, &self); st != 200 || self.Username != "acme+ci" {
		t.Errorf("the service account reading itself: %d %+v", st, self)
	}
	if st := r1.API(t, "acme+ci", deploy.Token, "GET", "/api/v0/accounts/globex/serviceAccounts/ci", nil, nil); st != 403 {
		t.Errorf("the service account reading another: %d, want 403", st)
	}
	if st, _ := login(t, r1, "acme+ci", deploy.Token, false, "api:v0:*"); st == 200 {
		tok := r1.Token(t, "acme+ci", deploy.Token, "api:v0:*")
		if st, _, _ := r1.Do(t, "GET", "/api/v0/accounts/acme", tok, nil, nil); st != 401 {
			t.Errorf("admin API with a bearer token of the service account: %d, want 401", st)
		}
	}
	if st := consoleSignIn(t, r1, "acme+ci", deploy.Token); st == http.StatusSeeOther {
		t.Errorf("the service account signed in to the console")
	}

	// Listed without the secret, with when it was last used.
	var toks []map[string]any
	api("carol", carolPW, "GET", sas+"/ci/tokens", nil, &toks, 200)
	if len(toks) != 1 || toks[0]["lastUsed"] == nil || toks[0]["token"] != nil {
		t.Fatalf("token list: %v", toks)
	}
	api("dave", "dave-password", "GET", sas+"/ci/tokens", nil, nil, 404)
	api("carol", carolPW, "GET", sas+"/ci/tokens/"+carolTok.HashedToken, nil, nil, 404) // not the service account's

	// Revocation: within 2 s on both replicas.
	r2 := join(t, r1, "bbbbbbbbbbbb")
	_, ans2 := login(t, r2, "acme+ci", deploy.Token, false, "repository:acme/app:pull")
	pullDigest := func(r *registrytest.Replica, tok string) int {
		st, _, _ := r.Do(t, "GET", "/v2/acme/app/manifests/"+img.ManifestDigest, tok, nil, map[string]string{"Accept": ociManifest})
		return st
	}
	// The second replica keeps its own storage: authorized is 404 there.
	if a, b := pullDigest(r1, ans.Token), pullDigest(r2, ans2.Token); a != 200 || b != 404 {
		t.Fatalf("before the revocation: %d on the first replica (want 200), %d on the second (want 404)", a, b)
	}
	api("carol", carolPW, "DELETE", sas+"/ci/tokens/"+deploy.HashedToken, nil, nil, 204)
	revoked := time.Now()
	if st, _ := login(t, r2, "acme+ci", deploy.Token, false, "repository:acme/app:pull"); st != 401 {
		t.Errorf("login with a revoked token: %d, want 401", st)
	}
	for _, c := range []struct {
		r   *registrytest.Replica
		tok string
	}{{r1, ans.Token}, {r2, ans2.Token}, {r2, ans.Token}} {
		for pullDigest(c.r, c.tok) != 401 {
			if time.Since(revoked) > 2*time.Second {
				t.Fatalf("a registry token of the revoked service account token still pulls after 2 s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("the revoked token's registry tokens failed on both replicas %v after the revocation", time.Since(revoked).Round(time.Millisecond))
	api("carol", carolPW, "DELETE", sas+"/ci/tokens/"+deploy.HashedToken, nil, nil, 404)

	// Expiry.
	expires := time.Now().Add(3 * time.Second)
	short := newToken("carol", carolPW, "ci", adminapi.CreateServiceAccountTokenRequest{TokenLabel: "short", ExpiresAt: &expires,
		RepositoryAccess: []adminapi.ServiceAccountTokenGrant{grant("acme/app", "pull")}}, 200)
	if st, _ := login(t, r1, "acme+ci", short.Token, false, "repository:acme/app:pull"); st != 200 && time.Now().Before(expires) {
		t.Errorf("an unexpired token: %d", st)
	}
	time.Sleep(time.Until(expires) + 100*time.Millisecond)
	if st, _ := login(t, r1, "acme+ci", short.Token, false, "repository:acme/app:pull"); st != 401 {
		t.Errorf("an expired token: %d, want 401", st)
	}

	// A repository deleted and created again under its name is another one.
	redo := newToken("carol", carolPW, "ci", adminapi.CreateServiceAccountTokenRequest{TokenLabel: "redo",
		RepositoryAccess: []adminapi.ServiceAccountTokenGrant{grant("acme/redo", "pull", "push")}}, 200)
	if _, st := r1.PushBlob(t, r1.Token(t, "acme+ci", redo.Token, "repository:acme/redo:push,pull"), "acme/redo", []byte("before")); st != 201 {
		t.Fatalf("push to acme/redo: %d", st)
	}
	api(admin, adminPW, "DELETE", "/api/v0/repositories/acme/redo", nil, nil, 204)
	api(admin, adminPW, "POST", "/api/v0/repositories/acme", map[string]any{"name": "redo", "visibility": "private"}, nil, 201)
	if _, st := r1.PushBlob(t, r1.Token(t, "acme+ci", redo.Token, "repository:acme/redo:push,pull"), "acme/redo", []byte("after")); st != 401 {
		t.Errorf("push to a re-created repository of the same name: %d, want 401", st)
	}

	// Deleting the service account ends its tokens; one created again
	// under the name does not get them back.
	api("carol", carolPW, "POST", sas, adminapi.CreateServiceAccountRequest{Name: "build"}, nil, 201)
	build := newToken("carol", carolPW, "build", adminapi.CreateServiceAccountTokenRequest{TokenLabel: "b", RepositoryAccess: []adminapi.ServiceAccountTokenGrant{grant("acme/app", "pull")}}, 200)
	_, bans := login(t, r1, "acme+build", build.Token, false, "repository:acme/app:pull")
	if st := pullDigest(r2, bans.Token); st != 404 {
		t.Fatalf("pull with the build token on the second replica: %d, want 404", st)
	}
	api("dave", "dave-password", "DELETE", sas+"/build", nil, nil, 404)
	api("carol", carolPW, "DELETE", sas+"/build", nil, nil, 204)
	deleted := time.Now()
	for pullDigest(r2, bans.Token) != 401 {
		if time.Since(deleted) > 2*time.Second {
			t.Fatalf("a registry token of a deleted service account still pulls after 2 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	api("carol", carolPW, "POST", sas, adminapi.CreateServiceAccountRequest{Name: "build"}, nil, 201)
	if st, _ := login(t, r1, "acme+build", build.Token, false, "repository:acme/app:pull"); st != 401 {
		t.Errorf("a deleted service account's token for a new one of the same name: %d, want 401", st)
	}

	// Deleting the organization ends its service accounts' tokens.
	api(admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": "initech", "isOrg": true}, nil, 201)
	api(admin, adminPW, "POST", "/api/v0/repositories/initech", map[string]any{"name": "app", "visibility": "private"}, nil, 201)
	api(admin, adminPW, "POST", "/api/v0/accounts/initech/serviceAccounts", adminapi.CreateServiceAccountRequest{Name: "ci"}, nil, 201)
	var itok adminapi.NewAPIToken
	api(admin, adminPW, "POST", "/api/v0/accounts/initech/serviceAccounts/ci/tokens", adminapi.CreateServiceAccountTokenRequest{TokenLabel: "i",
		RepositoryAccess: []adminapi.ServiceAccountTokenGrant{grant("initech/app", "pull")}}, &itok, 200)
	if st, _ := login(t, r1, "initech+ci", itok.Token, false, "repository:initech/app:pull"); st != 200 {
		t.Fatalf("initech's service account: %d", st)
	}
	api(admin, adminPW, "DELETE", "/api/v0/repositories/initech/app", nil, nil, 204)
	api(admin, adminPW, "DELETE", "/api/v0/accounts/initech", nil, nil, 204)
	if st, _ := login(t, r1, "initech+ci", itok.Token, false); st != 401 {
		t.Errorf("a deleted organization's service account token: %d, want 401", st)
	}
	var left []meta.APIToken
	api(admin, adminPW, "GET", "/api/v0/api_tokens?username=initech%2Bci", nil, &left, 200)
	if len(left) != 0 {
		t.Errorf("a deleted organization's service account tokens are left: %+v", left)
	}
	api(admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": "initech", "isOrg": true}, nil, 201)
	api(admin, adminPW, "GET", "/api/v0/accounts/initech/serviceAccounts/ci", nil, nil, 404)

	// The audit trail names the service account.
	deadline := time.Now().Add(20 * time.Second)
	for {
		found := false
		for _, e := range listEvents(t, r1, "", 100) {
			if e.Actor == "acme+ci" && e.ActorType == "serviceAccount" && e.Type == "CREATE" && e.Repository == "acme/app" {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no audit event of the service account's push")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var consoleCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// consoleSignIn posts the console's sign-in form and returns its status
// (303 when signed in).
func consoleSignIn(t *testing.T, r *registrytest.Replica, user, pw string) int {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: r.Client.Transport, Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(r.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := consoleCSRF.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("no CSRF field on the sign-in page: %d", resp.StatusCode)
	}
	form := url.Values{"username": {user}, "password": {pw}, "csrf": {m[1]}, "next": {"/repositories"}}
	resp, err = c.PostForm(r.URL+"/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAPITokenLimitsKeptForBearer: a read-only or repository-limited
// access token gets no admin API bearer token, which would lose its
// limits (the admin API reads the account again); an unlimited one does.
func TestAPITokenLimitsKeptForBearer(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	for _, tc := range []struct {
		req  adminapi.CreateAPITokenRequest
		want int
	}{
		{adminapi.CreateAPITokenRequest{TokenLabel: "full"}, 200},
		{adminapi.CreateAPITokenRequest{TokenLabel: "ro", ReadOnly: true}, 401},
		{adminapi.CreateAPITokenRequest{TokenLabel: "repos", Repositories: []string{"acme/app"}}, 401},
	} {
		var nt adminapi.NewAPIToken
		if st := r.API(t, "alice", "alice-password", "POST", "/api/v0/api_tokens", tc.req, &nt); st != 200 {
			t.Fatalf("create %s: %d", tc.req.TokenLabel, st)
		}
		bearer := r.Token(t, "alice", nt.Token, "api:v0:*")
		if st, _, _ := r.Do(t, "PATCH", "/api/v0/accounts/alice", bearer, []byte(`{"fullName":"x"}`), map[string]string{"Content-Type": "application/json"}); st != tc.want {
			t.Errorf("admin API change with a bearer token got with the %s token: %d, want %d", tc.req.TokenLabel, st, tc.want)
		}
	}
}
