package adminapi_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

const (
	admin   = registrytest.AdminUser
	adminPW = registrytest.AdminPassword
)

type accountJSON struct {
	Name     string `json:"name"`
	IsAdmin  *bool  `json:"isAdmin"`
	IsActive *bool  `json:"isActive"`
}

// errorBody is an admin API error answer.
type errorBody struct {
	Errors []struct{ Code, Message string } `json:"errors"`
}

// TestWhatUsersSee: a user sees other accounts without their admin and
// active flags (before, any user mapped out the system administrators), its
// own account in full; an organization's teams and team members are shown
// to its members and system administrators only (before, to every user).
// A system administrator sees everything.
func TestWhatUsersSee(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)

	var list struct{ Accounts []accountJSON }
	if st := r.API(t, "carol", "carol-password", "GET", "/api/v0/accounts", nil, &list); st != 200 {
		t.Fatalf("carol lists accounts: %d", st)
	}
	for _, a := range list.Accounts {
		own := a.Name == "carol"
		if (a.IsAdmin != nil) != own || (a.IsActive != nil) != own {
			t.Errorf("carol sees %s with isAdmin %v, isActive %v; want the flags on her own account only", a.Name, a.IsAdmin, a.IsActive)
		}
	}
	var one accountJSON
	if st := r.API(t, "carol", "carol-password", "GET", "/api/v0/accounts/"+admin, nil, &one); st != 200 || one.IsAdmin != nil || one.IsActive != nil {
		t.Errorf("carol gets %s: %d %+v, want no flags", admin, st, one)
	}
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/accounts/carol", nil, &one); st != 200 || one.IsAdmin == nil || *one.IsAdmin || one.IsActive == nil || !*one.IsActive {
		t.Errorf("admin gets carol: %d %+v, want both flags", st, one)
	}

	tests := []struct {
		name, user, path string
		want             int
	}{
		{"outsider lists teams", "carol", "/api/v0/accounts/acme/teams", 403},
		{"outsider gets a team", "carol", "/api/v0/accounts/acme/teams/devs", 403},
		{"outsider lists team members", "carol", "/api/v0/accounts/acme/teams/devs/members", 403},
		{"outsider gets a team that does not exist", "carol", "/api/v0/accounts/acme/teams/nothing", 403},
		{"outsider lists org members", "carol", "/api/v0/accounts/acme/members", 403},
		{"member lists teams", "bob", "/api/v0/accounts/acme/teams", 200},
		{"member of another team lists its members", "bob", "/api/v0/accounts/acme/teams/devs/members", 200},
		{"member gets a team", "alice", "/api/v0/accounts/acme/teams/readers", 200},
		{"admin lists team members", admin, "/api/v0/accounts/acme/teams/devs/members", 200},
		{"teams of an organization that does not exist", "carol", "/api/v0/accounts/nobody/teams", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pw := tt.user + "-password"
			if tt.user == admin {
				pw = adminPW
			}
			if st := r.API(t, tt.user, pw, "GET", tt.path, nil, nil); st != tt.want {
				t.Fatalf("GET %s as %s: %d, want %d", tt.path, tt.user, st, tt.want)
			}
		})
	}
}

// TestCreateHiddenRepository: creating a repository that exists but that
// the caller cannot see answers exactly as for a name that does not exist
// (403 "may not create"), never 409, which told the caller the private name.
func TestCreateHiddenRepository(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	var hidden, absent errorBody
	stHidden := r.API(t, "carol", "carol-password", "POST", "/api/v0/repositories/acme", map[string]any{"name": "app"}, &hidden)
	stAbsent := r.API(t, "carol", "carol-password", "POST", "/api/v0/repositories/acme", map[string]any{"name": "nothing"}, &absent)
	if stHidden != http.StatusForbidden || stAbsent != http.StatusForbidden {
		t.Fatalf("carol creates hidden acme/app: %d, absent acme/nothing: %d; want 403 for both", stHidden, stAbsent)
	}
	if len(hidden.Errors) != 1 || len(absent.Errors) != 1 || hidden.Errors[0] != absent.Errors[0] {
		t.Fatalf("answers differ: %+v and %+v", hidden, absent)
	}
	// Who can see it still learns that it exists.
	if st := r.API(t, "bob", "bob-password", "POST", "/api/v0/repositories/acme", map[string]any{"name": "app"}, nil); st != http.StatusConflict {
		t.Fatalf("bob (reads acme/app) creates it: %d, want 409", st)
	}
}

// TestDeletedAccountLeavesNothing: deleting a user removes its organization
// membership, its team entries and its grants on other namespaces'
// repositories; a new account with the same name starts with nothing.
// Before, the new account inherited them all.
func TestDeletedAccountLeavesNothing(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	api := func(user, pw, method, path string, in any, want int) {
		t.Helper()
		if st := r.API(t, user, pw, method, path, in, nil); st != want {
			t.Fatalf("%s %s as %s: %d, want %d", method, path, user, st, want)
		}
	}
	api(admin, adminPW, "POST", "/api/v0/repositories/carol", map[string]any{"name": "tools"}, 201)
	api(admin, adminPW, "PUT", "/api/v0/repositories/carol/tools/userAccess/alice", map[string]any{"accessLevel": "read-write"}, 200)
	api(admin, adminPW, "PUT", "/api/v0/repositories/acme/app/userAccess/alice", map[string]any{"accessLevel": "admin"}, 200)
	// "al" shares a prefix with "alice": deleting alice must not touch it.
	api(admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": "al", "password": "al-password"}, 201)
	api(admin, adminPW, "PUT", "/api/v0/accounts/acme/teams/devs/members/al", nil, 200)

	api(admin, adminPW, "DELETE", "/api/v0/accounts/alice", nil, 204)
	api(admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": "alice", "password": "new-alice-password"}, 201)

	names := func(path, field string) []string {
		t.Helper()
		var out map[string][]map[string]any
		if st := r.API(t, admin, adminPW, "GET", path, nil, &out); st != 200 {
			t.Fatalf("GET %s: %d", path, st)
		}
		var ns []string
		for _, m := range out[field] {
			for _, k := range []string{"user", "name"} {
				if s, ok := m[k].(string); ok {
					ns = append(ns, s)
				}
			}
		}
		return ns
	}
	for _, c := range []struct{ path, field string }{
		{"/api/v0/accounts/acme/members", "members"},
		{"/api/v0/accounts/acme/teams/devs/members", "members"},
		{"/api/v0/repositories/acme/app/userAccess", "userAccessList"},
		{"/api/v0/repositories/carol/tools/userAccess", "userAccessList"},
	} {
		if got := names(c.path, c.field); slices.Contains(got, "alice") {
			t.Errorf("%s still lists alice after her deletion: %v", c.path, got)
		}
	}
	if got := names("/api/v0/accounts/acme/teams/devs/members", "members"); !slices.Contains(got, "al") {
		t.Errorf("deleting alice removed al from team devs: %v", got)
	}
	tok := r.Token(t, "alice", "new-alice-password", "repository:acme/app:pull", "repository:carol/tools:pull")
	for _, repo := range []string{"acme/app", "carol/tools"} {
		if st, _, _ := r.Do(t, "GET", "/v2/"+repo+"/tags/list", tok, nil, nil); st != http.StatusUnauthorized {
			t.Errorf("the new alice lists %s: %d, want 401", repo, st)
		}
	}
	if st := r.API(t, "alice", "new-alice-password", "GET", "/api/v0/accounts/acme/members", nil, nil); st != http.StatusForbidden {
		t.Errorf("the new alice lists acme's members: %d, want 403 (not a member)", st)
	}
}

// TestDeleteAccountWithRepositories: an account whose namespace holds
// repositories is not deleted (409 naming them and how to delete them);
// once they are deleted, it is. Before, the organization went and its
// repositories' images stayed for the next owner of the name.
func TestDeleteAccountWithRepositories(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	var e errorBody
	if st := r.API(t, admin, adminPW, "DELETE", "/api/v0/accounts/acme", nil, &e); st != http.StatusConflict {
		t.Fatalf("deleting acme with repositories: %d %+v, want 409", st, e)
	}
	if msg := e.Errors[0].Message; !strings.Contains(msg, "acme/app") || !strings.Contains(msg, "acme/pub") || !strings.Contains(msg, "DELETE /api/v0/repositories/") {
		t.Fatalf("the refusal does not name the repositories and the fix: %q", msg)
	}
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/accounts/acme/teams/devs/members", nil, nil); st != 200 {
		t.Fatalf("after the refusal acme's teams are gone: %d", st)
	}
	for _, repo := range []string{"acme/app", "acme/pub"} {
		if st := r.API(t, admin, adminPW, "DELETE", "/api/v0/repositories/"+repo, nil, nil); st != http.StatusNoContent {
			t.Fatalf("deleting %s: %d", repo, st)
		}
	}
	if st := r.API(t, admin, adminPW, "DELETE", "/api/v0/accounts/acme", nil, nil); st != http.StatusNoContent {
		t.Fatalf("deleting the emptied acme: %d", st)
	}
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/accounts/acme", nil, nil); st != http.StatusNotFound {
		t.Fatalf("acme after deletion: %d", st)
	}
}

// TestDeleteAccountWithManyGrants: an account named in more places than one
// etcd transaction may hold (128 operations) is still removed from all of
// them.
func TestDeleteAccountWithManyGrants(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	const n = 130
	for i := range n {
		repo := fmt.Sprintf("r%d", i)
		if st := r.API(t, admin, adminPW, "POST", "/api/v0/repositories/carol", map[string]any{"name": repo}, nil); st != 201 {
			t.Fatalf("creating carol/%s: %d", repo, st)
		}
		if st := r.API(t, admin, adminPW, "PUT", "/api/v0/repositories/carol/"+repo+"/userAccess/bob", map[string]any{"accessLevel": "read-only"}, nil); st != 200 {
			t.Fatalf("granting bob carol/%s: %d", repo, st)
		}
	}
	if st := r.API(t, admin, adminPW, "DELETE", "/api/v0/accounts/bob", nil, nil); st != http.StatusNoContent {
		t.Fatalf("deleting bob: %d", st)
	}
	for _, repo := range []string{"r0", "r99", "r100", fmt.Sprintf("r%d", n-1)} {
		var out struct{ UserAccessList []map[string]any }
		if st := r.API(t, admin, adminPW, "GET", "/api/v0/repositories/carol/"+repo+"/userAccess", nil, &out); st != 200 || len(out.UserAccessList) != 0 {
			t.Errorf("carol/%s after deleting bob: %d %v, want no grants", repo, st, out.UserAccessList)
		}
	}
	var members struct{ Members []map[string]any }
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/accounts/acme/teams/readers/members", nil, &members); st != 200 || len(members.Members) != 0 {
		t.Errorf("team readers after deleting bob: %d %v", st, members.Members)
	}
}
