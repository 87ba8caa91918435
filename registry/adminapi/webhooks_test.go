package adminapi_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

// basic is an Authorization header for r.Do.
func basic(user, pw string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))}
}

type webhookJSON struct {
	ID, Type, Key, Endpoint, Secret string
}

// TestRepositoryAndNamespaceWebhooks: DTR's per-repository and
// per-namespace webhook lists show the webhooks on exactly that key,
// without secrets, to its administrators (the repository's admins, the
// namespace's user or organization admins, system administrators). Others
// get 403, or, for a private repository they cannot see, the very answer
// of a repository that does not exist.
func TestRepositoryAndNamespaceWebhooks(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	api := func(user, method, path string, in, out any, want int) {
		t.Helper()
		pw := user + "-password"
		if user == admin {
			pw = adminPW
		}
		if st := r.API(t, user, pw, method, path, in, out); st != want {
			t.Fatalf("%s %s as %s: %d, want %d", method, path, user, st, want)
		}
	}
	api(admin, "POST", "/api/v0/accounts", map[string]any{"name": "dave", "password": "dave-password"}, nil, 201)
	api(admin, "PUT", "/api/v0/accounts/acme/members/dave", map[string]any{"isAdmin": true}, nil, 200)
	api(admin, "PUT", "/api/v0/accounts/acme/members/alice", map[string]any{"isAdmin": false}, nil, 200)
	api(admin, "PUT", "/api/v0/repositories/acme/app/userAccess/alice", map[string]any{"accessLevel": "admin"}, nil, 200)
	api("carol", "POST", "/api/v0/repositories/carol", map[string]any{"name": "tools", "visibility": "private"}, nil, 201)

	hook := func(user, typ, key string) string {
		t.Helper()
		var h webhookJSON
		api(user, "POST", "/api/v0/webhooks", map[string]any{"type": typ, "key": key, "endpoint": "https://ci.example.com/" + strings.ReplaceAll(key, "/", "-")}, &h, 201)
		if h.Secret == "" {
			t.Fatalf("created webhook %+v shows no secret", h)
		}
		return h.Secret
	}
	secrets := []string{
		hook(admin, "TAG_PUSH", "acme/app"), hook("alice", "TAG_DELETE", "acme/app"), hook(admin, "TAG_PUSH", "acme/pub"),
		hook(admin, "TAG_PUSH", "acme"), hook("dave", "REPO_CREATED", "acme"), hook("carol", "TAG_PUSH", "carol"),
		hook("carol", "TAG_PUSH", "carol/tools"), hook(admin, "GC_COMPLETED", ""),
	}
	// An organization member who is not its admin may not watch it.
	api("alice", "POST", "/api/v0/webhooks", map[string]any{"type": "TAG_PUSH", "key": "acme", "endpoint": "https://ci.example.com/x"}, nil, 403)

	list := func(user, path string, want int) []webhookJSON {
		t.Helper()
		var hooks []webhookJSON
		pw := user + "-password"
		if user == admin {
			pw = adminPW
		}
		st, _, body := r.Do(t, "GET", path, "", nil, basic(user, pw))
		if st != want {
			t.Fatalf("GET %s as %s: %d, want %d: %s", path, user, st, want, body)
		}
		for _, s := range secrets {
			if strings.Contains(string(body), s) {
				t.Fatalf("GET %s as %s shows a webhook's secret", path, user)
			}
		}
		if st == 200 {
			if err := json.Unmarshal(body, &hooks); err != nil {
				t.Fatalf("GET %s: %v: %s", path, err, body)
			}
		}
		return hooks
	}
	keys := func(hooks []webhookJSON) string {
		var out []string
		for _, h := range hooks {
			out = append(out, h.Type+" "+h.Key)
		}
		return strings.Join(out, ", ")
	}
	for _, tc := range []struct {
		name, user, path string
		status           int
		want             string
	}{
		{"system admin, repository", admin, "/api/v0/repositories/acme/app/webhooks", 200, "TAG_PUSH acme/app, TAG_DELETE acme/app"},
		{"repository admin", "alice", "/api/v0/repositories/acme/app/webhooks", 200, "TAG_PUSH acme/app, TAG_DELETE acme/app"},
		{"type filter", "alice", "/api/v0/repositories/acme/app/webhooks?webhookType=TAG_DELETE", 200, "TAG_DELETE acme/app"},
		{"organization admin, repository", "dave", "/api/v0/repositories/acme/pub/webhooks", 200, "TAG_PUSH acme/pub"},
		{"own repository", "carol", "/api/v0/repositories/carol/tools/webhooks", 200, "TAG_PUSH carol/tools"},
		{"reader of the repository", "bob", "/api/v0/repositories/acme/app/webhooks", 403, ""},
		{"reader of a public repository", "carol", "/api/v0/repositories/acme/pub/webhooks", 403, ""},
		{"repository without webhooks", admin, "/api/v0/repositories/acme/pub/webhooks?webhookType=TAG_DELETE", 200, ""},
		{"system admin, namespace", admin, "/api/v0/repositoryNamespaces/acme/webhooks", 200, "TAG_PUSH acme, REPO_CREATED acme"},
		{"organization admin", "dave", "/api/v0/repositoryNamespaces/acme/webhooks", 200, "TAG_PUSH acme, REPO_CREATED acme"},
		{"own namespace", "carol", "/api/v0/repositoryNamespaces/carol/webhooks", 200, "TAG_PUSH carol"},
		{"organization member", "alice", "/api/v0/repositoryNamespaces/acme/webhooks", 403, ""},
		{"another user's namespace", "carol", "/api/v0/repositoryNamespaces/alice/webhooks", 403, ""},
		{"repository admin, not of the namespace", "alice", "/api/v0/repositoryNamespaces/carol/webhooks", 403, ""},
		{"namespace that does not exist", admin, "/api/v0/repositoryNamespaces/nobody/webhooks", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := keys(list(tc.user, tc.path, tc.status)); got != tc.want {
				t.Fatalf("GET %s as %s: [%s], want [%s]", tc.path, tc.user, got, tc.want)
			}
		})
	}

	// A private repository the caller cannot see answers exactly as one
	// that does not exist; anonymous callers are asked to log in.
	stHidden, _, hidden := r.Do(t, "GET", "/api/v0/repositories/carol/tools/webhooks", "", nil, basic("alice", "alice-password"))
	stAbsent, _, absent := r.Do(t, "GET", "/api/v0/repositories/carol/nothing/webhooks", "", nil, basic("alice", "alice-password"))
	if stHidden != 404 || stAbsent != 404 || strings.ReplaceAll(string(hidden), "tools", "nothing") != string(absent) {
		t.Fatalf("hidden carol/tools: %d %s; absent carol/nothing: %d %s", stHidden, hidden, stAbsent, absent)
	}
	for _, p := range []string{"/api/v0/repositories/acme/pub/webhooks", "/api/v0/repositoryNamespaces/acme/webhooks"} {
		if st, _, _ := r.Do(t, "GET", p, "", nil, nil); st != http.StatusUnauthorized {
			t.Errorf("anonymous GET %s: %d, want 401", p, st)
		}
	}
}
