package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/meta"
)

// loadKeyring reads the token keys from the metadata store: the signing key
// and the retired keys that still verify.
func (r *Replica) loadKeyring(ctx context.Context) error {
	cur, retired, err := r.store.TokenKeys(ctx, time.Now())
	if err != nil {
		return fmt.Errorf("reading the token keys: %w", err)
	}
	signer, err := auth.NewSigner([]byte(cur.CertPEM), []byte(cur.KeyPEM))
	if err != nil {
		return err
	}
	ring := &auth.Keyring{Current: signer}
	for _, k := range retired {
		v, err := auth.NewVerifyingKey([]byte(k.CertPEM))
		if err != nil {
			r.log.WithError(err).Warn("skipping a retired token key that does not load")
			continue
		}
		ring.Retired = append(ring.Retired, auth.RetiredSigner{Signer: v, RetiredAt: k.RetiredAt, ValidUntil: k.ValidUntil})
	}
	r.keys.Store(ring)
	return nil
}

// rotateTokenKey makes a new signing key current. The old one verifies for
// a token's lifetime and the replicas' clock allowance more.
func (r *Replica) rotateTokenKey(ctx context.Context) (contract.TokenKeyRotation, error) {
	certPEM, keyPEM, err := newTokenKey()
	if err != nil {
		return contract.TokenKeyRotation{}, err
	}
	next, err := auth.NewSigner(certPEM, keyPEM)
	if err != nil {
		return contract.TokenKeyRotation{}, err
	}
	keep := auth.TokenTTL + 2*time.Minute
	retired, err := r.store.RotateTokenKey(ctx, meta.KeyPair{CertPEM: string(certPEM), KeyPEM: string(keyPEM)}, keep, time.Now())
	if err != nil {
		return contract.TokenKeyRotation{}, err
	}
	// This replica switches at once; the others when their watch sees it.
	if err := r.loadKeyring(ctx); err != nil {
		return contract.TokenKeyRotation{}, err
	}
	res := contract.TokenKeyRotation{KeyID: next.KeyID(), PreviousKeyIDs: []string{}}
	for _, k := range retired {
		if v, err := auth.NewVerifyingKey([]byte(k.CertPEM)); err == nil {
			res.PreviousKeyIDs = append(res.PreviousKeyIDs, v.KeyID())
		}
		if k.ValidUntil.After(res.PreviousValidUntil) {
			res.PreviousValidUntil = k.ValidUntil
		}
	}
	return res, nil
}

// loadAccounts reads every account's token epoch into the verifier's view
// and returns the revision it read at.
func (r *Replica) loadAccounts(ctx context.Context) (int64, error) {
	accs, rev, err := loadRecords[meta.Account](ctx, r, meta.AccountsPrefix(), func(k string) bool {
		_, ok := meta.AccountNameOf(k)
		return ok
	})
	if err != nil {
		return 0, fmt.Errorf("reading the accounts: %w", err)
	}
	r.accounts.Replace(accs)
	return rev, nil
}

// loadRecords reads the records under prefix whose key is (nil: any key)
// and that decode, and the revision it read them at.
func loadRecords[T any](ctx context.Context, r *Replica, prefix string, is func(key string) bool) ([]T, int64, error) {
	resp, err := r.member.Client().Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if (is == nil || is(string(kv.Key))) && json.Unmarshal(kv.Value, &v) == nil {
			out = append(out, v)
		}
	}
	return out, resp.Header.Revision, nil
}

// watchAccounts keeps the token epochs current: a password change,
// deactivation or deletion on any replica ends the account's tokens here
// as soon as the change arrives (milliseconds; docs/security.md).
func (r *Replica) watchAccounts(ctx context.Context, rev int64) {
	r.follow(ctx, meta.AccountsPrefix(), rev, r.loadAccounts, func(ev *clientv3.Event) {
		name, ok := meta.AccountNameOf(string(ev.Kv.Key))
		if !ok {
			return
		}
		if ev.Type == clientv3.EventTypeDelete {
			r.accounts.Delete(name)
			return
		}
		var a meta.Account
		if err := json.Unmarshal(ev.Kv.Value, &a); err != nil {
			r.log.WithError(err).WithField("account", name).Warn("decoding a changed account")
			r.accounts.Delete(name) // fail closed
			return
		}
		r.accounts.Set(a)
	})
}

// follow applies every change under prefix after revision rev (0: load
// first) to the replica's view, and loads everything again whenever the
// watch ends (a lost leader, a compaction).
func (r *Replica) follow(ctx context.Context, prefix string, rev int64, load func(context.Context) (int64, error), apply func(*clientv3.Event)) {
	for ctx.Err() == nil {
		if rev == 0 {
			var err error
			if rev, err = load(ctx); err != nil {
				r.log.WithError(err).WithField("prefix", prefix).Debug("reloading a watched view")
				sleepCtx(ctx, time.Second)
				continue
			}
		}
		wch := r.member.Client().Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				apply(ev)
			}
		}
		rev = 0
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

// loadAPITokens reads every access token into the verifier's view and
// returns the revision it read at.
func (r *Replica) loadAPITokens(ctx context.Context) (int64, error) {
	ts, rev, err := loadRecords[meta.APIToken](ctx, r, meta.APITokenPrefixDir(), nil)
	if err != nil {
		return 0, fmt.Errorf("reading the access tokens: %w", err)
	}
	r.accounts.ReplaceTokens(ts)
	return rev, nil
}

// watchAPITokens ends the registry tokens issued with an access token on
// this replica as soon as the access token is revoked, deactivated or
// deleted anywhere.
func (r *Replica) watchAPITokens(ctx context.Context, rev int64) {
	r.follow(ctx, meta.APITokenPrefixDir(), rev, r.loadAPITokens, func(ev *clientv3.Event) {
		id, ok := meta.APITokenIDOf(string(ev.Kv.Key))
		if !ok {
			return
		}
		var t meta.APIToken
		if ev.Type == clientv3.EventTypeDelete || json.Unmarshal(ev.Kv.Value, &t) != nil {
			r.accounts.DeleteToken(id) // fail closed
			return
		}
		r.accounts.SetToken(t)
	})
}

// watchTokenKeys follows key rotations made through any replica.
func (r *Replica) watchTokenKeys(ctx context.Context) {
	for ctx.Err() == nil {
		wch := r.member.Client().Watch(clientv3.WithRequireLeader(ctx), meta.TokenKeysPrefix(), clientv3.WithPrefix())
		// A rotation between the last load and this watch would be missed.
		if err := r.loadKeyring(ctx); err != nil && ctx.Err() == nil {
			r.log.WithError(err).Warn("reloading the token keys")
		}
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			if err := r.loadKeyring(ctx); err != nil {
				r.log.WithError(err).Error("loading rotated token keys; keeping the previous ones")
			} else {
				r.log.WithField("key", r.keys.Load().Current.KeyID()).Info("token keys changed")
			}
		}
		sleepCtx(ctx, time.Second)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
