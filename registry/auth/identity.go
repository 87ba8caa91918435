package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/meta"
)

// Sign-in through the identity source (docs/identity.md): a name dtr does
// not know, or an account the source made, is checked by the source; on
// success the account is created or brought up to date (administrator as
// the source says, active, no local password) and the login goes on as a
// local one. Throttling and the verified-credentials cache are the same;
// a source that cannot answer is the replica's fault, not the user's, and
// counts as no failure.

// maxSourceChecks bounds the identity source checks that run at once: each
// is a connection to the directory, which a flood of logins must not
// exhaust.
const maxSourceChecks = 16

// sourceCheckTimeout bounds one check by the source.
const sourceCheckTimeout = 15 * time.Second

func (l *Logins) source() identity.Source {
	if l.Identity == nil {
		return nil
	}
	return l.Identity()
}

// sourceMark is what the verified-credentials cache keeps for a source
// account in place of a password hash: its epoch, which changes when the
// account is deactivated or its administrator flag changes.
func sourceMark(a meta.Account) string { return "source:" + a.Source + ":" + a.Epoch }

func (l *Logins) checkSource(ctx context.Context, src identity.Source, remote, addr, name, pw string, ck [32]byte, cached string, a meta.Account, known bool, now time.Time) (*meta.Account, error) {
	// The source is asked even for credentials verified a moment ago: a
	// user it removed or disabled is refused at the next sign-in, not
	// after a sync. What the replica remembers serves only while the
	// source cannot answer (or a flood keeps every check busy), and
	// passes a locked account as a local hit does.
	fresh := known && a.IsActive && cached != "" && cached == sourceMark(a)
	if cached != "" && !fresh {
		if err := l.throttled(name, addr, now); err != nil {
			return nil, err
		}
	}
	still := func() error { return l.throttled(name, addr, l.now()) }
	if fresh {
		still = func() error { return nil }
	}
	// Concurrent logins with the same credentials share one check.
	flight := l.flights.DoChan("source\x00"+string(ck[:]), func() (any, error) {
		return l.authenticate(context.WithoutCancel(ctx), src, name, pw, still)
	})
	var u identity.User
	select {
	case res := <-flight:
		if fresh && res.Err != nil && !errors.Is(res.Err, identity.ErrBadCredentials) {
			l.succeeded(name)
			return &a, nil
		}
		if res.Err != nil {
			return nil, l.sourceFailed(src, remote, name, addr, res.Err)
		}
		u = res.Val.(identity.User)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if !u.IsActive {
		return nil, l.sourceFailed(src, remote, name, addr, identity.ErrBadCredentials)
	}
	acc, err := l.Store.UpsertSourceUser(ctx, src.Kind(), u.Name, u.FullName, u.IsAdmin)
	if errors.Is(err, meta.ErrExists) || errors.Is(err, meta.ErrInvalid) || errors.Is(err, meta.ErrDeactivated) {
		// A local account holds the name (the directory's user never
		// signs in as it), or an administrator deactivated the account.
		if l.Log != nil {
			l.Log.WithFields(logrus.Fields{"user": u.Name, "remote": remote, "source": src.Kind()}).Warnf("sign-in refused: %v", err)
		}
		return nil, l.sourceFailed(src, remote, name, addr, identity.ErrBadCredentials)
	}
	if err != nil {
		return nil, err
	}
	l.succeeded(name)
	l.remember(ck, sourceMark(acc), now)
	return &acc, nil
}

// authenticate asks the source, at most maxSourceChecks at once; past
// waitForHasher of waiting, ErrBusy. still is asked again once a slot is
// free: logins queued behind a flood's failures are throttled without
// reaching the directory.
func (l *Logins) authenticate(ctx context.Context, src identity.Source, name, pw string, still func() error) (identity.User, error) {
	wait, cancel := context.WithTimeout(ctx, waitForHasher)
	defer cancel()
	select {
	case l.sources <- struct{}{}:
	case <-wait.Done():
		return identity.User{}, ErrBusy
	}
	defer func() { <-l.sources }()
	if err := still(); err != nil {
		return identity.User{}, err
	}
	ctx, cancel = context.WithTimeout(ctx, sourceCheckTimeout)
	defer cancel()
	return src.Authenticate(ctx, name, pw)
}

// sourceFailed counts a refused password like a local one; a source that
// could not answer is logged (never the password) and not counted.
func (l *Logins) sourceFailed(src identity.Source, remote, name, addr string, err error) error {
	if errors.Is(err, identity.ErrBadCredentials) {
		if t := l.failed(name, addr, l.now()); t != nil && l.Log != nil {
			l.Log.WithFields(logrus.Fields{"user": name, "remote": remote, "failures": t.count}).Warn("repeated failed logins: throttling")
		}
		return ErrBadCredentials
	}
	var te *ThrottledError
	if errors.Is(err, ErrBusy) || errors.As(err, &te) {
		return err
	}
	if l.Log != nil {
		l.Log.WithFields(logrus.Fields{"user": name, "remote": remote, "source": src.Kind()}).WithError(err).Error("identity source cannot check a sign-in")
	}
	if !errors.Is(err, identity.ErrUnavailable) {
		err = fmt.Errorf("%w: %v", identity.ErrUnavailable, err)
	}
	return err
}

// SourceUnavailable is what a client is told when the identity source
// cannot check its password (errors.Is(err, identity.ErrUnavailable)):
// the cause is in the replica's log, since it names servers an anonymous
// client need not learn.
const SourceUnavailable = "the identity source (LDAP or UCP) cannot check this password now; try again, or sign in with a local account or an access token (the replica's log names the cause)"
