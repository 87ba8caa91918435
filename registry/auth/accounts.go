package auth

import (
	"strings"
	"sync"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
)

// Accounts is every replica's view of the accounts' token epochs, kept
// current by a watch on the metadata store (registry/revocation.go). A
// token names its account's epoch when it was issued; deactivating,
// deleting or changing the password of the account changes the epoch, and
// from that moment the token fails on every replica that saw the change,
// whatever is left of its 5 minutes.
type Accounts struct {
	mu     sync.RWMutex
	states map[string]accountState
	tokens map[string]meta.APIToken // access tokens by their short ID
}

type accountState struct {
	epoch  string
	active bool
}

// Replace sets the whole view, from a fresh read of the accounts.
func (a *Accounts) Replace(accs []meta.Account) {
	m := make(map[string]accountState, len(accs))
	for _, acc := range accs {
		m[acc.Name] = accountState{epoch: acc.Epoch, active: acc.IsActive && !acc.IsOrg}
	}
	a.mu.Lock()
	a.states = m
	a.mu.Unlock()
}

// Set records an account's current state.
func (a *Accounts) Set(acc meta.Account) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.states == nil {
		a.states = map[string]accountState{}
	}
	a.states[acc.Name] = accountState{epoch: acc.Epoch, active: acc.IsActive && !acc.IsOrg}
}

// Delete forgets a deleted account: its tokens fail from now on.
func (a *Accounts) Delete(name string) {
	a.mu.Lock()
	delete(a.states, name)
	a.mu.Unlock()
}

// Valid reports whether a token with ID jti for subject still stands: its
// account's epoch is current, and the access token it was issued with (if
// any) is still usable.
func (a *Accounts) Valid(subject, jti string) bool {
	epoch, apiToken := SplitEpoch(TokenEpoch(jti))
	a.mu.RLock()
	defer a.mu.RUnlock()
	if org, _, isSA := meta.SplitServiceAccount(subject); isSA {
		// A service account has no epoch of its own: its registry tokens
		// stand while its access token does (deleting the service account
		// deletes its tokens) and its organization exists.
		t, ok := a.tokens[apiToken]
		_, orgExists := a.states[org]
		return apiToken != "" && ok && orgExists && t.Username == subject && t.Usable(time.Now())
	}
	st, ok := a.states[subject]
	if !ok || !st.active || epoch != st.epoch {
		return false
	}
	if apiToken == "" {
		return true
	}
	t, ok := a.tokens[apiToken]
	return ok && t.Username == subject && t.Usable(time.Now())
}

// ReplaceTokens sets the whole view of access tokens.
func (a *Accounts) ReplaceTokens(ts []meta.APIToken) {
	m := make(map[string]meta.APIToken, len(ts))
	for _, t := range ts {
		if len(t.HashedToken) >= apiTokenIDLen {
			m[t.HashedToken[:apiTokenIDLen]] = t
		}
	}
	a.mu.Lock()
	a.tokens = m
	a.mu.Unlock()
}

// SetToken records an access token's current state.
func (a *Accounts) SetToken(t meta.APIToken) {
	if len(t.HashedToken) < apiTokenIDLen {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tokens == nil {
		a.tokens = map[string]meta.APIToken{}
	}
	a.tokens[t.HashedToken[:apiTokenIDLen]] = t
}

// DeleteToken forgets a deleted access token: the registry tokens issued
// with it fail from now on.
func (a *Accounts) DeleteToken(hashed string) {
	if len(hashed) < apiTokenIDLen {
		return
	}
	a.mu.Lock()
	delete(a.tokens, hashed[:apiTokenIDLen])
	a.mu.Unlock()
}

// TokenEpoch is the epoch part of a token ID ("<epoch>.<nonce>"); tokens of
// versions before epochs have none, like accounts that never changed since.
func TokenEpoch(jti string) string {
	epoch, _, found := strings.Cut(jti, ".")
	if !found {
		return ""
	}
	return epoch
}
