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
	resp, err := r.member.Client().Get(ctx, meta.AccountsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("reading the accounts: %w", err)
	}
	accs := make([]meta.Account, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var a meta.Account
		if _, ok := meta.AccountNameOf(string(kv.Key)); !ok || json.Unmarshal(kv.Value, &a) != nil {
			continue
		}
		accs = append(accs, a)
	}
	r.accounts.Replace(accs)
	return resp.Header.Revision, nil
}

// watchAccounts keeps the token epochs current: a password change,
// deactivation or deletion on any replica ends the account's tokens here
// as soon as the change arrives (milliseconds; docs/security.md).
func (r *Replica) watchAccounts(ctx context.Context, rev int64) {
	for ctx.Err() == nil {
		if rev == 0 {
			var err error
			if rev, err = r.loadAccounts(ctx); err != nil {
				r.log.WithError(err).Debug("reloading the accounts' token epochs")
				sleepCtx(ctx, time.Second)
				continue
			}
		}
		wch := r.member.Client().Watch(clientv3.WithRequireLeader(ctx), meta.AccountsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				name, ok := meta.AccountNameOf(string(ev.Kv.Key))
				if !ok {
					continue
				}
				if ev.Type == clientv3.EventTypeDelete {
					r.accounts.Delete(name)
					continue
				}
				var a meta.Account
				if err := json.Unmarshal(ev.Kv.Value, &a); err != nil {
					r.log.WithError(err).WithField("account", name).Warn("decoding a changed account")
					r.accounts.Delete(name) // fail closed
					continue
				}
				r.accounts.Set(a)
			}
		}
		rev = 0 // the watch ended (lost leader, compaction): read everything again
		sleepCtx(ctx, 200*time.Millisecond)
	}
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
