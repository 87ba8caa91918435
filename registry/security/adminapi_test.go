package security_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

// adminAPIScope is the dedicated admin-API token scope (issue 12, point 2).
const adminAPIScope = "api:v0:*"

// send sends a request with the headers and body and answers the status and
// body; an empty user means no Basic credentials.
func send(t *testing.T, r *registrytest.Replica, method, path, user, password string, header map[string]string, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, r.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body = nil
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, drain(resp)
}

// accountExists asks the admin API (as admin) whether name exists.
func accountExists(t *testing.T, r *registrytest.Replica, name string) bool {
	t.Helper()
	var acc map[string]any
	switch st := r.API(t, admin, adminPW, "GET", "/api/v0/accounts/"+name, nil, &acc); st {
	case http.StatusOK:
		return true
	case http.StatusNotFound:
		return false
	default:
		t.Fatalf("GET account %s: %d", name, st)
		return false
	}
}

// isAdminAccount asks whether name exists and is an admin.
func isAdminAccount(t *testing.T, r *registrytest.Replica, name string) bool {
	t.Helper()
	var acc struct {
		IsAdmin bool `json:"isAdmin"`
	}
	return r.API(t, admin, adminPW, "GET", "/api/v0/accounts/"+name, nil, &acc) == http.StatusOK && acc.IsAdmin
}

// pullTokenOnAdminAPI: a registry-scoped token is no admin-API credential;
// a token for the admin-API scope is (point 2).
func pullTokenOnAdminAPI(t *testing.T, p *report) {
	r := startReplica(t, nil)
	pullTok := r.Token(t, admin, adminPW, "repository:admin/x:pull")
	bearer := map[string]string{"Authorization": "Bearer " + pullTok, "Content-Type": "application/json"}
	backupSt, _ := send(t, r, "GET", "/api/v0/meta/backup", "", "", bearer, "")
	createSt, _ := send(t, r, "POST", "/api/v0/accounts", "", "", bearer, `{"name":"pt-made","password":"Made-by-a-pull-token1","isAdmin":true}`)
	apiTok := r.Token(t, admin, adminPW, adminAPIScope)
	listSt, _ := send(t, r, "GET", "/api/v0/accounts", "", "", map[string]string{"Authorization": "Bearer " + apiTok}, "")
	p.notef("pull token: backup → %d, create account → %d; %s token: list accounts → %d", backupSt, createSt, adminAPIScope, listSt)
	refused := func(st int) bool { return st == http.StatusUnauthorized || st == http.StatusForbidden }
	p.check(refused(backupSt), "an admin's pull token downloaded the backup (%d)", backupSt)
	p.check(refused(createSt), "an admin's pull token created an account (%d)", createSt)
	p.check(!accountExists(t, r, "pt-made"), "the account made with a pull token exists")
	p.check(listSt == http.StatusOK, "a token for scope %s is refused on the admin API (%d)", adminAPIScope, listSt)
}

// csrf: a cross-site form POST carrying the browser's Basic credentials is
// refused; the CLI's JSON without Origin works (point 7).
func csrf(t *testing.T, p *report) {
	r := startReplica(t, nil)
	body := func(name string) string { return `{"name":"` + name + `","password":"Csrf-victim-pw1"}` }
	evil := "https://evil.example"
	plainSt, _ := send(t, r, "POST", "/api/v0/accounts", admin, adminPW, map[string]string{"Content-Type": "text/plain", "Origin": evil}, body("csrf-plain"))
	jsonSt, _ := send(t, r, "POST", "/api/v0/accounts", admin, adminPW, map[string]string{"Content-Type": "application/json", "Origin": evil}, body("csrf-json"))
	okSt, _ := send(t, r, "POST", "/api/v0/accounts", admin, adminPW, map[string]string{"Content-Type": "application/json"}, body("csrf-ok"))
	p.notef("text/plain + foreign Origin → %d, JSON + foreign Origin → %d, JSON without Origin → %d", plainSt, jsonSt, okSt)
	p.check(plainSt == http.StatusForbidden || plainSt == http.StatusUnsupportedMediaType, "a text/plain POST with a foreign Origin answered %d", plainSt)
	p.check(jsonSt == http.StatusForbidden, "a JSON POST with a foreign Origin answered %d, want 403", jsonSt)
	p.check(okSt == http.StatusCreated, "the CLI's JSON POST without Origin answered %d, want 201", okSt)
	p.check(!accountExists(t, r, "csrf-plain"), "the cross-site text/plain POST created its account")
	p.check(!accountExists(t, r, "csrf-json"), "the cross-site JSON POST created its account")
}

// laxJSON: strict JSON is strict: trailing delimiters, null, duplicate and
// case-variant keys are 400 and create nothing (point 7).
func laxJSON(t *testing.T, p *report) {
	r := startReplica(t, nil)
	cases := []struct {
		name, body string
		creates    []string // accounts it must not create
	}{
		{"trailing brace", `{"name":"lax-x1","password":"Lax-password-1"}}`, []string{"lax-x1"}},
		{"null", `null`, nil},
		{"duplicate key", `{"name":"lax-a","name":"lax-b","password":"Lax-password-1"}`, []string{"lax-a", "lax-b"}},
		{"case-variant key", `{"name":"lax-x2","password":"Lax-password-1","ISADMIN":true}`, []string{"lax-x2"}},
	}
	var got []string
	for _, tc := range cases {
		st, _ := send(t, r, "POST", "/api/v0/accounts", admin, adminPW, map[string]string{"Content-Type": "application/json"}, tc.body)
		got = append(got, tc.name+" → "+itoa(st))
		p.check(st == http.StatusBadRequest, "%s answered %d, want 400", tc.name, st)
		for _, name := range tc.creates {
			p.check(!accountExists(t, r, name), "%s created account %s", tc.name, name)
		}
	}
	p.check(!isAdminAccount(t, r, "lax-x2"), `"ISADMIN":true made an admin`)
	p.notef("%s", strings.Join(got, ", "))
}

// hiddenRepoCreate: creating a repository the caller cannot see answers as
// for a name that does not exist, so names do not leak (point 7).
func hiddenRepoCreate(t *testing.T, p *report) {
	r := startReplica(t, nil)
	pw := "Carol-" + randomWord()
	createUser(t, r, "hr-carol", pw)
	createOrg(t, r, "hr-acme")
	apiMust(t, r, "POST", "/api/v0/repositories/hr-acme", map[string]any{"name": "secret", "visibility": "private"}, 201)
	answer := func(name string) (int, string) {
		st, b := send(t, r, "POST", "/api/v0/repositories/hr-acme", "hr-carol", pw, map[string]string{"Content-Type": "application/json"}, `{"name":"`+name+`"}`)
		var e struct {
			Errors []struct {
				Code string `json:"code"`
			} `json:"errors"`
		}
		_ = json.Unmarshal(b, &e)
		code := ""
		if len(e.Errors) > 0 {
			code = e.Errors[0].Code
		}
		return st, code
	}
	hiddenSt, hiddenCode := answer("secret")
	absentSt, absentCode := answer("nothing-here")
	p.notef("hidden name → %d %s, absent name → %d %s", hiddenSt, hiddenCode, absentSt, absentCode)
	p.check(hiddenSt != http.StatusConflict, "a private repository the caller cannot see answers 409")
	p.check(hiddenSt == absentSt && hiddenCode == absentCode, "a hidden name answers %d %s, an absent one %d %s", hiddenSt, hiddenCode, absentSt, absentCode)
}

// accountVisibility: a non-admin sees no admin flags of others and no
// team members of an organization it is not in (point 7).
func accountVisibility(t *testing.T, p *report) {
	r := startReplica(t, nil)
	pw := "Viewer-" + randomWord()
	createUser(t, r, "av-viewer", pw)
	createUser(t, r, "av-peer", "Peer-"+randomWord())
	createOrg(t, r, "av-org")
	apiMust(t, r, "POST", "/api/v0/accounts/av-org/teams", map[string]any{"name": "devs"}, 201)
	apiMust(t, r, "PUT", "/api/v0/accounts/av-org/members/av-peer", nil, 200)
	apiMust(t, r, "PUT", "/api/v0/accounts/av-org/teams/devs/members/av-peer", nil, 200)

	var list struct {
		Accounts []map[string]any `json:"accounts"`
	}
	if st := r.API(t, "av-viewer", pw, "GET", "/api/v0/accounts", nil, &list); st != http.StatusOK {
		t.Fatalf("a user lists accounts: %d", st)
	}
	flags := map[string]any{} // name → its isAdmin as shown (nil: absent)
	for _, a := range list.Accounts {
		name, _ := a["name"].(string)
		if name != "av-viewer" {
			flags[name] = a["isAdmin"]
		}
	}
	// No admin flag shows, and admin's entry looks like av-peer's: the
	// listing must not tell admins apart.
	for name, f := range flags {
		p.check(f != true, "a non-admin sees that %s is an admin", name)
	}
	if _, ok := flags[admin]; ok {
		p.check(flags[admin] == flags["av-peer"], "admin's entry shows isAdmin=%v, a user's %v", flags[admin], flags["av-peer"])
	}
	teamSt, _ := send(t, r, "GET", "/api/v0/accounts/av-org/teams/devs/members", "av-viewer", pw, nil, "")
	p.notef("%d accounts listed, admin's isAdmin shown as %v; a non-member lists team members → %d", len(list.Accounts), flags[admin], teamSt)
	p.check(teamSt == http.StatusForbidden || teamSt == http.StatusNotFound, "a non-member listed av-org's team members (%d)", teamSt)
}

// itoa renders a status.
func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
