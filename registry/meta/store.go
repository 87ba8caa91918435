// Package meta is the replica's metadata: accounts, organizations, teams,
// repositories, permissions, settings, refresh tokens, the referrers index
// and replica health reports, kept as JSON records in the replicated etcd
// keyspace. Nothing that must survive a restart is kept in process memory.
package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Prefix is the root of dtr's keyspace; a backup reads everything under it.
const Prefix = "/dtr/"

// ErrNotFound means the record does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists means a record that must be new already exists.
var ErrExists = errors.New("already exists")

// ErrConflict means the record changed between read and write; retry.
var ErrConflict = errors.New("changed concurrently")

// Store reads and writes records through an etcd client.
type Store struct {
	KV clientv3.KV
}

// New returns a Store on kv (an in-process or remote etcd client).
func New(kv clientv3.KV) *Store { return &Store{KV: kv} }

// key joins escaped components under Prefix: names may contain "/", so each
// component is escaped and prefixes of one name never match another.
func key(parts ...string) string {
	esc := make([]string, len(parts))
	for i, p := range parts {
		esc[i] = url.PathEscape(p)
	}
	return Prefix + strings.Join(esc, "/")
}

// dir is key(parts...) + "/", for listing children.
func dir(parts ...string) string { return key(parts...) + "/" }

func (s *Store) get(ctx context.Context, k string, v any) (int64, error) {
	resp, err := s.KV.Get(ctx, k)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", k, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, ErrNotFound
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, v); err != nil {
		return 0, fmt.Errorf("decoding %s: %w", k, err)
	}
	return resp.Kvs[0].ModRevision, nil
}

func (s *Store) put(ctx context.Context, k string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := s.KV.Put(ctx, k, string(b)); err != nil {
		return fmt.Errorf("writing %s: %w", k, err)
	}
	return nil
}

// create writes k only if it does not exist.
func (s *Store) create(ctx context.Context, k string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	resp, err := s.KV.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("creating %s: %w", k, err)
	}
	if !resp.Succeeded {
		return ErrExists
	}
	return nil
}

// update writes k only if it was not modified since rev.
func (s *Store) update(ctx context.Context, k string, rev int64, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	resp, err := s.KV.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
		Then(clientv3.OpPut(k, string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("updating %s: %w", k, err)
	}
	if !resp.Succeeded {
		return ErrConflict
	}
	return nil
}

// putWhileExists writes k only while every key of mustExist exists: a
// membership or grant written just after its account or repository was
// deleted would otherwise wait for the next holder of the name.
func (s *Store) putWhileExists(ctx context.Context, k string, v any, mustExist ...string) error {
	op, err := putOp(k, v)
	if err != nil {
		return err
	}
	cmps := make([]clientv3.Cmp, 0, len(mustExist))
	for _, m := range mustExist {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(m), ">", 0))
	}
	resp, err := s.KV.Txn(ctx).If(cmps...).Then(op).Commit()
	if err != nil {
		return fmt.Errorf("writing %s: %w", k, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("deleted meanwhile: %w", ErrNotFound)
	}
	return nil
}

func (s *Store) del(ctx context.Context, k string, prefixToo bool) (bool, error) {
	ops := []clientv3.Op{clientv3.OpDelete(k)}
	if prefixToo {
		ops = append(ops, clientv3.OpDelete(k+"/", clientv3.WithPrefix()))
	}
	resp, err := s.KV.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("deleting %s: %w", k, err)
	}
	return resp.Responses[0].GetResponseDeleteRange().Deleted > 0, nil
}

// list decodes every direct child record under prefix p (not grandchildren).
func list[T any](ctx context.Context, s *Store, p string) ([]T, error) {
	resp, err := s.KV.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", p, err)
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if strings.Contains(strings.TrimPrefix(string(kv.Key), p), "/") {
			continue
		}
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// mutate reads a record, applies fn and writes it back, retrying when
// another replica changed it in between.
func mutate[T any](ctx context.Context, s *Store, k string, fn func(*T) error) (T, error) {
	for {
		var v T
		rev, err := s.get(ctx, k, &v)
		if err != nil {
			return v, err
		}
		if err := fn(&v); err != nil {
			return v, err
		}
		err = s.update(ctx, k, rev, v)
		if errors.Is(err, ErrConflict) {
			if ctx.Err() != nil {
				return v, ctx.Err()
			}
			continue
		}
		return v, err
	}
}
