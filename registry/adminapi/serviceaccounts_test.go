package adminapi_test

import (
	"strings"
	"testing"

	"github.com/dtr-registry/dtr/registry/adminapi"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestServiceAccountAPI: whoever is outside an organization gets the same
// answer for its service accounts as for an organization that does not
// exist; a member who is not an admin is told who may; bad input is named
// with its fix; service accounts are not accounts (not listed, no
// account record) and their tokens are not their creator's.
func TestServiceAccountAPI(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/accounts/acme/serviceAccounts", adminapi.CreateServiceAccountRequest{Name: "ci"}, nil); st != 201 {
		t.Fatalf("create: %d", st)
	}
	call := func(user, method, path string, in any) (int, errorBody) {
		t.Helper()
		pw := user + "-password"
		if user == admin {
			pw = adminPW
		}
		var e errorBody
		st := r.API(t, user, pw, method, path, in, &e)
		return st, e
	}
	stOut, outsider := call("carol", "GET", "/api/v0/accounts/acme/serviceAccounts/ci", nil)
	stNone, missing := call("carol", "GET", "/api/v0/accounts/nothing/serviceAccounts/ci", nil)
	if stOut != 404 || stNone != 404 || len(outsider.Errors) != 1 || len(missing.Errors) != 1 || outsider.Errors[0].Code != missing.Errors[0].Code ||
		strings.ReplaceAll(outsider.Errors[0].Message, "acme", "nothing") != missing.Errors[0].Message {
		t.Errorf("outsider: %d %+v; missing organization: %d %+v; want the same 404", stOut, outsider, stNone, missing)
	}
	if st, e := call("bob", "GET", "/api/v0/accounts/acme/serviceAccounts", nil); st != 403 || len(e.Errors) == 0 || !strings.Contains(e.Errors[0].Message, "admin of organization acme") {
		t.Errorf("member: %d %+v", st, e)
	}
	if st, e := call(admin, "POST", "/api/v0/accounts/acme/serviceAccounts", map[string]any{"name": "Bad Name"}); st != 400 || len(e.Errors) == 0 || !strings.Contains(e.Errors[0].Message, "lowercase letters") {
		t.Errorf("bad name: %d %+v", st, e)
	}
	if st, e := call(admin, "POST", "/api/v0/accounts/acme/serviceAccounts", map[string]any{"name": "x1", "password": "p"}); st != 400 {
		t.Errorf("unknown field password: %d %+v", st, e)
	}
	if st, e := call(admin, "POST", "/api/v0/accounts/acme/serviceAccounts/ci/tokens", map[string]any{"tokenLabel": "t",
		"repositoryAccess": []map[string]any{{"repository": "acme/app", "actions": []string{"write"}}}}); st != 400 || len(e.Errors) == 0 || !strings.Contains(e.Errors[0].Message, `["pull", "push"]`) {
		t.Errorf("bad action: %d %+v", st, e)
	}
	if st, e := call(admin, "POST", "/api/v0/accounts/acme/serviceAccounts/ci/tokens", map[string]any{"tokenLabel": "t",
		"repositoryAccess": []map[string]any{{"repository": "acme/nope", "actions": []string{"pull"}}}}); st != 400 || len(e.Errors) == 0 || !strings.Contains(e.Errors[0].Message, "create it first") {
		t.Errorf("missing repository: %d %+v", st, e)
	}
	if st, _ := call(admin, "POST", "/api/v0/accounts/acme/serviceAccounts/ci/tokens", map[string]any{"tokenLabel": "t",
		"repositoryAccess": []map[string]any{{"repository": "acme/app", "actions": []string{"pull"}}}}); st != 200 {
		t.Fatalf("token: %d", st)
	}

	var list struct{ Accounts []accountJSON }
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/accounts", nil, &list); st != 200 {
		t.Fatalf("accounts: %d", st)
	}
	for _, a := range list.Accounts {
		if strings.Contains(a.Name, "+") {
			t.Errorf("a service account is listed as an account: %s", a.Name)
		}
	}
	if st, _ := call(admin, "GET", "/api/v0/accounts/acme+ci", nil); st != 404 {
		t.Errorf("GET the service account as an account: %d, want 404", st)
	}
	var mine []map[string]any
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/api_tokens", nil, &mine); st != 200 || len(mine) != 0 {
		t.Errorf("the admin's own tokens: %d %v, want none", st, mine)
	}
}
