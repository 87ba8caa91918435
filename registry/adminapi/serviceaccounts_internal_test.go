package adminapi

import (
	"net/http/httptest"
	"testing"

	"github.com/dtr-registry/dtr/registry/meta"
)

// A service account's token reaches one admin API route: reading the
// service account itself. A user's repository-limited token none.
func TestServiceAccountTokenLimits(t *testing.T) {
	sa := &meta.Account{Name: "acme+ci", IsActive: true, APIToken: &meta.APIToken{Username: "acme+ci", Repositories: []string{"acme/app"},
		RepositoryAccess: []meta.TokenRepositoryAccess{{Repository: "acme/app", Actions: []string{"pull"}}}}}
	user := &meta.Account{Name: "alice", IsActive: true, APIToken: &meta.APIToken{Username: "alice", Repositories: []string{"alice/app"}}}
	for _, tc := range []struct {
		me           *meta.Account
		method, path string
		allowed      bool
	}{
		{sa, "GET", "/api/v0/accounts/acme/serviceAccounts/ci", true},
		{sa, "HEAD", "/api/v0/accounts/acme/serviceAccounts/ci", false},
		{sa, "DELETE", "/api/v0/accounts/acme/serviceAccounts/ci", false},
		{sa, "GET", "/api/v0/accounts/acme/serviceAccounts/ci/tokens", false},
		{sa, "POST", "/api/v0/accounts/acme/serviceAccounts/ci/tokens", false},
		{sa, "GET", "/api/v0/accounts/acme/serviceAccounts/build", false},
		{sa, "GET", "/api/v0/accounts/globex/serviceAccounts/ci", false},
		{sa, "GET", "/api/v0/accounts/acme/serviceAccounts", false},
		{sa, "GET", "/api/v0/accounts/acme", false},
		{sa, "GET", "/api/v0/repositories/acme/app", false},
		{user, "GET", "/api/v0/accounts/acme/serviceAccounts/ci", false},
		{&meta.Account{Name: "alice", IsActive: true}, "GET", "/api/v0/accounts/acme", true},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		err := checkTokenLimits(r, tc.me)
		if (err == nil) != tc.allowed {
			t.Errorf("%s %s as %s: %v, want allowed %v", tc.method, tc.path, tc.me.Name, err, tc.allowed)
		}
	}
}
