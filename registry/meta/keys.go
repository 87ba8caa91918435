package meta

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// RetiredKey is a token key that no longer signs but still verifies the
// tokens it signed, until ValidUntil. Its private key is not kept.
type RetiredKey struct {
	CertPEM    string    `json:"certPEM"`
	RetiredAt  time.Time `json:"retiredAt"`
	ValidUntil time.Time `json:"validUntil"`
}

// TokenKeys returns the token key that signs and the retired keys that
// still verify.
func (s *Store) TokenKeys(ctx context.Context, now time.Time) (KeyPair, []RetiredKey, error) {
	resp, err := s.KV.Txn(ctx).Then(clientv3.OpGet(key("keys", "token")), clientv3.OpGet(key("keys", "token-retired"))).Commit()
	if err != nil {
		return KeyPair{}, nil, fmt.Errorf("reading the token keys: %w", err)
	}
	var cur KeyPair
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return cur, nil, fmt.Errorf("token key: %w", ErrNotFound)
	}
	if err := jsonUnmarshal(kvs[0].Value, &cur); err != nil {
		return cur, nil, err
	}
	var retired []RetiredKey
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := jsonUnmarshal(kvs[0].Value, &retired); err != nil {
			return cur, nil, err
		}
	}
	return cur, liveKeys(retired, now), nil
}

func liveKeys(ks []RetiredKey, now time.Time) []RetiredKey {
	out := []RetiredKey{}
	for _, k := range ks {
		if now.Before(k.ValidUntil) {
			out = append(out, k)
		}
	}
	return out
}

// RotateTokenKey makes next the signing key; the key it replaces verifies
// for keepFor more (the longest a token it signed can still be in use).
// Every replica watches TokenKeysPrefix and switches within moments.
func (s *Store) RotateTokenKey(ctx context.Context, next KeyPair, keepFor time.Duration, now time.Time) ([]RetiredKey, error) {
	if next.CertPEM == "" || next.KeyPEM == "" {
		return nil, errors.New("rotating the token key: the new key pair is empty")
	}
	for {
		resp, err := s.KV.Txn(ctx).Then(clientv3.OpGet(key("keys", "token")), clientv3.OpGet(key("keys", "token-retired"))).Commit()
		if err != nil {
			return nil, fmt.Errorf("reading the token keys: %w", err)
		}
		curKVs, oldKVs := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
		if len(curKVs) == 0 {
			return nil, fmt.Errorf("token key: %w", ErrNotFound)
		}
		var cur KeyPair
		if err := jsonUnmarshal(curKVs[0].Value, &cur); err != nil {
			return nil, err
		}
		var retired []RetiredKey
		oldRev := int64(0)
		if len(oldKVs) > 0 {
			oldRev = oldKVs[0].ModRevision
			if err := jsonUnmarshal(oldKVs[0].Value, &retired); err != nil {
				return nil, err
			}
		}
		retired = append(liveKeys(retired, now), RetiredKey{CertPEM: cur.CertPEM, RetiredAt: now.UTC(), ValidUntil: now.Add(keepFor).UTC()})
		putNext, err := putOp(key("keys", "token"), next)
		if err != nil {
			return nil, err
		}
		putRetired, err := putOp(key("keys", "token-retired"), retired)
		if err != nil {
			return nil, err
		}
		t, err := s.KV.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(key("keys", "token")), "=", curKVs[0].ModRevision),
			clientv3.Compare(clientv3.ModRevision(key("keys", "token-retired")), "=", oldRev),
		).Then(putNext, putRetired).Commit()
		if err != nil {
			return nil, fmt.Errorf("rotating the token key: %w", err)
		}
		if t.Succeeded {
			return retired, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// TokenKeysPrefix is watched by replicas to follow key rotations.
func TokenKeysPrefix() string { return dir("keys") }

// AccountsPrefix is where the accounts live, for the replicas' watch of
// their token epochs.
func AccountsPrefix() string { return dir("accounts") }

// AccountNameOf returns the account name of a key under AccountsPrefix.
func AccountNameOf(k string) (string, bool) {
	parts, ok := keyParts(k, dir("accounts"), 1)
	if !ok {
		return "", false
	}
	return parts[0], true
}
