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
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
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

// New returns a Store on kv (an in-process or remote etcd client). Each
// call it makes gets at most CallTimeout.
func New(kv clientv3.KV) *Store { return &Store{KV: boundedKV{KV: kv, timeout: CallTimeout}} }

// CallTimeout bounds one call to the metadata store, so that a lost quorum
// is a 503 within seconds instead of a request that hangs for as long as
// the client waits. A healthy cluster answers in milliseconds and an
// election takes about two; without quorum etcd itself held reads for
// 11 s (its request timeout, 7 s with the default 1 s election, plus the
// read-index round it queued behind; measured with three in-process
// members, two stopped).
const CallTimeout = 5 * time.Second

// boundedKV gives every call that does not stream at most timeout (or the
// caller's earlier deadline).
type boundedKV struct {
	clientv3.KV
	timeout time.Duration
}

func (b boundedKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.KV.Get(ctx, key, opts...)
}

func (b boundedKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.KV.Put(ctx, key, val, opts...)
}

func (b boundedKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.KV.Delete(ctx, key, opts...)
}

func (b boundedKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.KV.Do(ctx, op)
}

// Txn bounds the transaction from its creation to its Commit; one that is
// never committed lets its timer lapse.
func (b boundedKV) Txn(ctx context.Context) clientv3.Txn {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	return &boundedTxn{Txn: b.KV.Txn(ctx), cancel: cancel}
}

type boundedTxn struct {
	clientv3.Txn
	cancel context.CancelFunc
}

func (t *boundedTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { t.Txn = t.Txn.If(cs...); return t }
func (t *boundedTxn) Then(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Then(ops...); return t }
func (t *boundedTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(ops...); return t }

func (t *boundedTxn) Commit() (*clientv3.TxnResponse, error) {
	defer t.cancel()
	return t.Txn.Commit()
}

// key joins escaped components under Prefix: names may contain "/", so each
// component is escaped and prefixes of one name never match another.
func key(parts ...string) string {
	esc := make([]string, len(parts))
	for i, p := range parts {
		esc[i] = url.PathEscape(p)
	}
	return Prefix + strings.Join(esc, "/")
}

// keyParts undoes key below prefix p (a dir): the unescaped components of
// k, if there are exactly n.
func keyParts(k, p string, n int) ([]string, bool) {
	rest, ok := strings.CutPrefix(k, p)
	if !ok {
		return nil, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != n {
		return nil, false
	}
	for i, c := range parts {
		u, err := url.PathUnescape(c)
		if err != nil || u == "" {
			return nil, false
		}
		parts[i] = u
	}
	return parts, true
}

// dir is key(parts...) + "/", for listing children.
func dir(parts ...string) string { return key(parts...) + "/" }

// Unavailable reports whether err means the metadata store cannot answer
// now: no leader, no quorum, or no answer in time. The client did nothing
// wrong and should retry later (503 with Retry-After); it must never be
// taken for "not found" or a wrong password. Without quorum, etcd answers
// reads with "request timed out" after its request timeout (5 s + two
// election timeouts, 7 s by default) and writes with "no leader" or, while
// the member has no leader, raft's dropped proposal at once.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, e := range unavailableErrors {
		if errors.Is(err, e) {
			return true
		}
	}
	// A gRPC status the client did not turn into etcd's error values is
	// known by its text: rpctypes.Error maps etcd's; raft.ErrProposalDropped
	// crosses the in-process client as code Unknown with only its text (a
	// member without a leader refuses a write this way, before any timeout).
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(err) {
		err = u
	}
	if ee, ok := rpctypes.Error(err).(rpctypes.EtcdError); ok {
		for _, e := range unavailableErrors {
			if errors.Is(ee, e) {
				return true
			}
		}
	}
	return rpctypes.ErrorDesc(err) == proposalDropped
}

// NoSpace reports whether err is the metadata store refusing a write
// because it is full: etcd's NOSPACE alarm is raised, by a member whose
// volume is nearly full (member's space guard) or because the database
// reached its quota. Reads and deletes still work; the client should be
// told 507, and an operator must free space.
func NoSpace(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace) {
		return true
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(err) {
		err = u
	}
	return rpctypes.ErrorDesc(err) == rpctypes.ErrNoSpace.Error()
}

// unavailableErrors are etcd's answers (gRPC code Unavailable, or too many
// requests) that mean "not now" rather than "no".
var unavailableErrors = []error{
	rpctypes.ErrNoLeader, rpctypes.ErrLeaderChanged, rpctypes.ErrStopped, rpctypes.ErrUnhealthy,
	rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost,
	rpctypes.ErrTimeoutWaitAppliedIndex, rpctypes.ErrTooManyRequests,
}

// proposalDropped is the text of raft.ErrProposalDropped (go.etcd.io/raft).
const proposalDropped = "raft proposal dropped"

type localReadsKey struct{}

// LocalReads returns a context whose reads through a Store are answered by
// this member from its own copy of the data (etcd's serializable reads),
// which needs no quorum: during a quorum loss it still answers, with what
// this member had applied when it was cut off. That may lag the cluster, so
// it is only for answers where something slightly old beats nothing (who
// may read cluster_status during an outage), never to decide a write.
// Writes made with it are not affected.
func LocalReads(ctx context.Context) context.Context {
	return context.WithValue(ctx, localReadsKey{}, true)
}

// readOpts adds etcd's serializable option to a read made with LocalReads.
func readOpts(ctx context.Context, opts ...clientv3.OpOption) []clientv3.OpOption {
	if local, _ := ctx.Value(localReadsKey{}).(bool); local {
		return append(opts, clientv3.WithSerializable())
	}
	return opts
}

func (s *Store) get(ctx context.Context, k string, v any) (int64, error) {
	resp, err := s.KV.Get(ctx, k, readOpts(ctx)...)
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
	resp, err := s.KV.Get(ctx, p, readOpts(ctx, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))...)
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
