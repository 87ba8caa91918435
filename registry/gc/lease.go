package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/meta"
)

// Etcd is what garbage collection needs of the metadata client: reads,
// transactions, leases and watches (a *clientv3.Client).
type Etcd interface {
	clientv3.KV
	clientv3.Lease
	clientv3.Watcher
}

// DefaultLeaseTTL is the GC lease's time to live: a replica that dies
// holding it frees it within this; the holder renews it every sixth of it.
const DefaultLeaseTTL = 30 * time.Second

// ErrLeaseHeld means another replica holds the GC lease.
var ErrLeaseHeld = errors.New("another replica holds the garbage collection lease")

// ErrLeaseLost means the holder could not renew its lease in time: it must
// stop deleting, since another replica may take the lease.
var ErrLeaseLost = errors.New("the garbage collection lease could not be renewed in time")

// Lease is the GC lease held by this replica: the key /dtr/gc/lock bound to
// an etcd lease. It is also the fence of every deletion (Valid).
type Lease struct {
	etcd    Etcd
	id      clientv3.LeaseID
	ttl     time.Duration
	lockRev int64 // the lock key's create revision: compared by every tombstone write

	mu         sync.Mutex
	validUntil time.Time // monotonic: renewal sent + TTL granted
	lost       chan struct{}
	lostOnce   sync.Once
	stop       context.CancelFunc
	done       chan struct{}
}

// AcquireLease takes the GC lease for replica, or fails with ErrLeaseHeld.
// The lease renews itself until Release; Lost is closed if it cannot.
func AcquireLease(ctx context.Context, etcd Etcd, replica string, ttl time.Duration) (*Lease, error) {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	// A look first: replicas that find the lease held (every wake-up while
	// a run goes on) grant and revoke nothing.
	if resp, err := etcd.Get(ctx, lockKey, clientv3.WithCountOnly()); err != nil {
		return nil, fmt.Errorf("reading the garbage collection lease: %w", err)
	} else if resp.Count > 0 {
		return nil, ErrLeaseHeld
	}
	sent := time.Now()
	g, err := etcd.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		return nil, fmt.Errorf("granting the garbage collection lease: %w", err)
	}
	val, _ := json.Marshal(meta.GCLock{Replica: replica, Since: time.Now().UTC()})
	resp, err := etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(lockKey), "=", 0)).
		Then(clientv3.OpPut(lockKey, string(val), clientv3.WithLease(g.ID))).
		Commit()
	if err != nil || !resp.Succeeded {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, _ = etcd.Revoke(rctx, g.ID)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("taking the garbage collection lease: %w", err)
		}
		return nil, ErrLeaseHeld
	}
	l := &Lease{etcd: etcd, id: g.ID, ttl: time.Duration(g.TTL) * time.Second, lockRev: resp.Header.Revision,
		validUntil: sent.Add(time.Duration(g.TTL) * time.Second), lost: make(chan struct{}), done: make(chan struct{})}
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.stop = cancel
	go l.renew(kctx)
	return l, nil
}

// renew keeps the lease alive. Validity counts from when each renewal was
// sent, never from its answer, so Valid never overestimates what etcd
// grants (it only lengthens a lease on a leader change).
func (l *Lease) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 6)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		cctx, cancel := context.WithTimeout(ctx, l.ttl/6)
		resp, err := l.etcd.KeepAliveOnce(cctx, l.id)
		cancel()
		switch {
		case err == nil && resp.TTL > 0:
			l.mu.Lock()
			l.validUntil = sent.Add(time.Duration(resp.TTL) * time.Second)
			l.mu.Unlock()
		case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL <= 0):
			l.markLost()
			return
		}
		if !l.Valid(0) {
			l.markLost()
			return
		}
	}
}

func (l *Lease) markLost() {
	l.mu.Lock()
	l.validUntil = time.Time{} // no storage call starts any more
	l.mu.Unlock()
	l.lostOnce.Do(func() { close(l.lost) })
}

// Lost is closed once the lease is known lost.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Valid reports whether the lease is known to hold for longer than margin.
func (l *Lease) Valid(margin time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Until(l.validUntil) > margin
}

// ID is the etcd lease, for records that must vanish with it.
func (l *Lease) ID() clientv3.LeaseID { return l.id }

// LockRevision is the create revision of the lock key.
func (l *Lease) LockRevision() int64 { return l.lockRev }

// Release stops renewing and revokes the lease, which deletes the lock and
// every record bound to it.
func (l *Lease) Release(ctx context.Context) error {
	l.stop()
	<-l.done
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := l.etcd.Revoke(ctx, l.id)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		err = nil
	}
	return err
}
