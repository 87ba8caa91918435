package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
)

// A service account's registry tokens stand while its access token is
// usable and its organization exists; it has no epoch of its own, never
// stands without an access token, and another account's token (or a
// user's epoch) does not stand in.
func TestAccountsServiceAccounts(t *testing.T) {
	var a Accounts
	a.Replace([]meta.Account{{Name: "alice", IsActive: true, Epoch: "e1"}, {Name: "acme", IsOrg: true, IsActive: true, Epoch: "o1"}})
	id := strings.Repeat("a", 64)
	short := id[:apiTokenIDLen]
	other := strings.Repeat("b", 64)
	a.ReplaceTokens([]meta.APIToken{
		{HashedToken: id, Username: "acme+ci", IsActive: true, Repositories: []string{"acme/app"}},
		{HashedToken: other, Username: "alice", IsActive: true},
	})
	past := time.Now().Add(-time.Minute)
	tests := []struct {
		name  string
		do    func()
		sub   string
		jti   string
		valid bool
	}{
		{"its token", func() {}, "acme+ci", "~" + short + ".n", true},
		{"no access token", func() {}, "acme+ci", ".n", false},
		{"a user's epoch", func() {}, "acme+ci", "o1.n", false},
		{"alice's token", func() {}, "acme+ci", "~" + other[:apiTokenIDLen] + ".n", false},
		{"another org's service account", func() {}, "globex+ci", "~" + short + ".n", false},
		{"expired", func() {
			a.SetToken(meta.APIToken{HashedToken: id, Username: "acme+ci", IsActive: true, ExpiresAt: &past})
		}, "acme+ci", "~" + short + ".n", false},
		{"usable again", func() { a.SetToken(meta.APIToken{HashedToken: id, Username: "acme+ci", IsActive: true}) }, "acme+ci", "~" + short + ".n", true},
		{"organization deleted", func() { a.Delete("acme") }, "acme+ci", "~" + short + ".n", false},
		{"organization back, token revoked", func() {
			a.Set(meta.Account{Name: "acme", IsOrg: true, IsActive: true, Epoch: "o2"})
			a.DeleteToken(id)
		}, "acme+ci", "~" + short + ".n", false},
	}
	for _, tt := range tests {
		tt.do()
		if got := a.Valid(tt.sub, tt.jti); got != tt.valid {
			t.Errorf("%s: Valid(%q, %q) = %v, want %v", tt.name, tt.sub, tt.jti, got, tt.valid)
		}
	}
}
