package auth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
)

// Access tokens (docs/security.md, "Access tokens"). A token is checked
// by its hash, without bcrypt: it is 256 random bits, so throttling
// protects the store, not the secret. A token works only for its own user,
// while the token is active and unexpired and the account is usable; the
// registry tokens issued with it name it (tokenEpoch), so that revoking
// it ends them on every replica as the change arrives.

// checkAPIToken is Check for a password shaped like an access token.
func (l *Logins) checkAPIToken(ctx context.Context, name, addr, pw string) (*meta.Account, error) {
	now := l.now()
	if err := l.throttled(name, addr, now); err != nil {
		return nil, err
	}
	t, err := l.Store.APIToken(ctx, meta.HashAPIToken(pw))
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		return nil, err
	}
	var a meta.Account
	ok := err == nil && t.Username == name && t.Usable(now)
	if org, sa, isSA := meta.SplitServiceAccount(name); ok && isSA {
		a, ok, err = l.serviceAccountLogin(ctx, org, sa, t)
		if err != nil {
			return nil, err
		}
	} else if ok {
		a, err = l.Store.Account(ctx, name)
		if err != nil && !errors.Is(err, meta.ErrNotFound) {
			return nil, err
		}
		// A token of a deleted account must not open a new account of the
		// same name: the account must be older than the token.
		ok = err == nil && !a.IsOrg && a.IsActive && !t.CreatedAt.Before(a.CreatedAt.Truncate(time.Second))
	}
	if !ok {
		l.failed(name, addr, now)
		return nil, ErrBadCredentials
	}
	l.succeeded(name)
	l.Store.TouchAPIToken(context.WithoutCancel(ctx), t, now)
	a.APIToken = &t
	return &a, nil
}

// serviceAccountLogin is the account a service account's token signs in
// as: never stored as an account, it has no password, no membership and no
// admin flag, and only the token's repositories (Grant).
func (l *Logins) serviceAccountLogin(ctx context.Context, org, name string, t meta.APIToken) (meta.Account, bool, error) {
	sa, err := l.Store.ServiceAccount(ctx, org, name)
	if errors.Is(err, meta.ErrNotFound) {
		return meta.Account{}, false, nil
	}
	if err != nil {
		return meta.Account{}, false, err
	}
	// A token of a deleted service account must not open a new one of the
	// same name, nor work for a token without repositories.
	if t.CreatedAt.Before(sa.CreatedAt.Truncate(time.Second)) || len(t.RepositoryAccess) == 0 {
		return meta.Account{}, false, nil
	}
	return meta.Account{Name: sa.Username, IsActive: true, CreatedAt: sa.CreatedAt}, true, nil
}

// tokenEpoch is the epoch a registry token is issued in: the account's,
// and for a login with an access token the token's ID after a "~".
func tokenEpoch(user *meta.Account) string {
	if user.APIToken == nil {
		return user.Epoch
	}
	return user.Epoch + "~" + user.APIToken.HashedToken[:apiTokenIDLen]
}

// apiTokenIDLen is how much of a token's hash a registry token carries:
// enough to tell a user's tokens apart, short enough to keep tokens small.
const apiTokenIDLen = 16

// SplitEpoch splits a registry token's epoch into the account's epoch and
// the access token's short ID ("" for a password login).
func SplitEpoch(epoch string) (account, apiToken string) {
	account, apiToken, _ = strings.Cut(epoch, "~")
	return account, apiToken
}

// narrow removes what an access token does not allow from actions on a
// repository: anything but pull for a read-only token, everything outside
// the token's repositories.
func narrow(user *meta.Account, repo string, actions []string) []string {
	t := user.APIToken
	if t == nil {
		return actions
	}
	if len(t.Repositories) > 0 && !slices.Contains(t.Repositories, repo) {
		return nil
	}
	if t.ReadOnly {
		if slices.Contains(actions, "pull") {
			return []string{"pull"}
		}
		return nil
	}
	return actions
}
