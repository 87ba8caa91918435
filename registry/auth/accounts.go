package auth

import (
	"strings"
	"sync"

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

// Valid reports whether a token with ID jti for subject still stands.
func (a *Accounts) Valid(subject, jti string) bool {
	a.mu.RLock()
	st, ok := a.states[subject]
	a.mu.RUnlock()
	return ok && st.active && TokenEpoch(jti) == st.epoch
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
