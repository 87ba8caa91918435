package gc

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/internal/drivererr"
	"github.com/dtr-registry/dtr/registry/meta"
)

// fence returns how long the lease must still hold for a storage call to
// be issued, and how long that call may take: a call never outlives the
// lease, even if the replica is cut off from etcd as it sends it.
func (r *Run) fence() (margin, call time.Duration) {
	ttl := DefaultLeaseTTL
	if r.lease != nil && r.lease.ttl > 0 {
		ttl = r.lease.ttl
	}
	return ttl / 2, ttl / 3
}

// storageCall runs fn with the fence's bound, not cancelled by ctx: a
// deletion started is finished (or timed out), never abandoned half-way by
// a cancel.
func (r *Run) storageCall(ctx context.Context, fn func(context.Context) error) error {
	margin, call := r.fence()
	if !r.lease.Valid(margin) {
		return ErrLeaseLost
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), call)
	defer cancel()
	return fn(cctx)
}

// retention grants the leases of deleted tombstones, a fresh one every
// retentionRenew, each living the retention and that much more.
type retention struct {
	etcd Etcd
	ttl  time.Duration
	mu   sync.Mutex
	id   clientv3.LeaseID
	at   time.Time
}

func (t *retention) lease(ctx context.Context) (clientv3.LeaseID, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.id != 0 && time.Since(t.at) < retentionRenew {
		return t.id, nil
	}
	g, err := t.etcd.Grant(ctx, int64((t.ttl+retentionRenew)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("granting the lease of deletion tombstones: %w", err)
	}
	t.id, t.at = g.ID, time.Now()
	return t.id, nil
}

// sweep deletes the candidates in batches, Workers at once.
func (r *Run) sweep(ctx context.Context, cands []candidate) error {
	ret := &retention{etcd: r.c.cfg.Etcd, ttl: max(r.opts.Grace, minRetention)}
	batches := slices.Collect(slices.Chunk(cands, sweepBatch))
	err := parallel(ctx, r.opts.Workers, batches, func(b []candidate) error { return r.sweepBatch(ctx, ret, b) })
	if err != nil {
		return err
	}
	if n := r.prog.errorCount.Load(); n > 0 {
		return fmt.Errorf("%d storage calls failed (see the job's log); the next run retries what they left", n)
	}
	return nil
}

// sweepBatch tombstones a batch, then deletes each blob in it.
func (r *Run) sweepBatch(ctx context.Context, ret *retention, batch []candidate) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	digests := make([]string, len(batch))
	for i, c := range batch {
		digests[i] = c.digest
	}
	hook(&TestHooks.BeforeTombstones, digests)
	var tombstoned []candidate
	err := r.paced(ctx, func() (err error) {
		tombstoned, err = r.tombstone(ctx, ret, batch)
		return err
	})
	if err != nil {
		return err
	}
	var done []string
	defer func() {
		// deleting tombstones go with the blobs they guarded; they would
		// go with the lease anyway.
		if len(done) > 0 {
			ops := make([]clientv3.Op, len(done))
			for i, d := range done {
				ops[i] = clientv3.OpDelete(deletingKey(d))
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = r.c.cfg.Etcd.Txn(cctx).Then(ops...).Commit()
			cancel()
		}
	}()
	for i, c := range tombstoned {
		if err := ctx.Err(); err != nil {
			r.untomb(ctx, tombstoned[i:])
			return err
		}
		var keep bool
		err := r.paced(ctx, func() (err error) {
			keep, err = r.deleteBlob(ctx, c)
			return err
		})
		if err != nil {
			r.untomb(ctx, tombstoned[i:])
			return err
		}
		if keep {
			r.untomb(ctx, tombstoned[i:i+1])
			continue
		}
		done = append(done, c.digest)
	}
	return nil
}

// tombstone writes the deleting and deleted tombstones of the batch in one
// transaction, conditional on this run still holding the lease and epoch
// and on no touched marker written since the epoch; a candidate that was
// touched is kept and the rest are tried again.
func (r *Run) tombstone(ctx context.Context, ret *retention, batch []candidate) ([]candidate, error) {
	pending := batch
	for len(pending) > 0 {
		rl, err := ret.lease(ctx)
		if err != nil {
			return nil, err
		}
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(lockKey), "=", r.lease.LockRevision()),
			clientv3.Compare(clientv3.CreateRevision(epochKey), "=", r.r0),
		}
		var puts []clientv3.Op
		gets := []clientv3.Op{clientv3.OpGet(lockKey, clientv3.WithKeysOnly()), clientv3.OpGet(epochKey, clientv3.WithKeysOnly())}
		for _, c := range pending {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(touchedKey(c.digest)), "<", r.r0+1))
			puts = append(puts,
				clientv3.OpPut(deletingKey(c.digest), `"deleting"`, clientv3.WithLease(r.lease.ID())),
				clientv3.OpPut(deletedKey(c.digest), `"`+time.Now().UTC().Format(time.RFC3339)+`"`, clientv3.WithLease(rl)))
			gets = append(gets, clientv3.OpGet(touchedKey(c.digest), clientv3.WithKeysOnly()))
		}
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := r.c.cfg.Etcd.Txn(tctx).If(cmps...).Then(puts...).Else(gets...).Commit()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("writing deletion tombstones: %w", err)
		}
		if resp.Succeeded {
			return pending, nil
		}
		lock, epoch := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
		if len(lock) == 0 || lock[0].CreateRevision != r.lease.LockRevision() || len(epoch) == 0 || epoch[0].CreateRevision != r.r0 {
			return nil, ErrLeaseLost
		}
		var rest []candidate
		for i, c := range pending {
			if kvs := resp.Responses[i+2].GetResponseRange().Kvs; len(kvs) > 0 && kvs[0].ModRevision > r.r0 {
				r.prog.kept.Add(1)
				r.logf("kept blob %s: a push referenced it during the run", c.digest)
				continue
			}
			rest = append(rest, c)
		}
		pending = rest
	}
	return nil, nil
}

// untomb removes the tombstones of blobs this run did not delete.
func (r *Run) untomb(ctx context.Context, cs []candidate) {
	if len(cs) == 0 {
		return
	}
	var ops []clientv3.Op
	for _, c := range cs {
		ops = append(ops, clientv3.OpDelete(deletingKey(c.digest)), clientv3.OpDelete(deletedKey(c.digest)))
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for b := range slices.Chunk(ops, 100) {
		if _, err := r.c.cfg.Etcd.Txn(cctx).Then(b...).Commit(); err != nil {
			r.logf("removing the tombstones of blobs left in place: %v (they expire by themselves)", err)
		}
	}
}

// deleteBlob deletes one tombstoned blob and the layer links that name it
// (with deleteUntagged, and the revision links of it untagged; for a
// linksOnly candidate only those). It reports keep when the blob turned
// out to be in use after all; an error stops the run (the lease is lost).
func (r *Run) deleteBlob(ctx context.Context, c candidate) (keep bool, err error) {
	hook(&TestHooks.BeforeDelete, c.digest)
	if c.linksOnly {
		return false, r.removeUntagged(ctx, c.digest)
	}
	data := BlobDataPath(c.digest)
	err = r.storageCall(ctx, func(cctx context.Context) error {
		fi, err := r.drv.Stat(cctx, data)
		if err != nil {
			return err
		}
		if !r.oldEnough(fi.ModTime()) {
			keep = true
		}
		return nil
	})
	switch {
	case errors.Is(err, ErrLeaseLost):
		return false, err
	case isNotFound(err):
		r.logf("blob %s is already gone", c.digest)
		return false, nil
	case err != nil:
		r.prog.errorCount.Add(1)
		r.logf("error: checking blob %s before deleting it: %v", c.digest, err)
		return true, nil
	case keep:
		r.prog.kept.Add(1)
		r.logf("kept blob %s: it was written again during the run", c.digest)
		return true, nil
	}
	// The links first: a client that links the blob again meanwhile (an
	// upload of data that is still there) keeps its new link, and its
	// manifest meets the tombstone once the data is gone.
	if err := r.removeUntagged(ctx, c.digest); err != nil {
		return false, err
	}
	r.mu.Lock()
	links := r.links[c.digest]
	r.mu.Unlock()
	for _, l := range links {
		err := r.storageCall(ctx, func(cctx context.Context) error { return r.drv.Delete(cctx, l) })
		switch {
		case errors.Is(err, ErrLeaseLost):
			return false, err
		case err == nil || isNotFound(err):
			r.prog.linksRemoved.Add(1)
		case writtenDuring(err):
			// A push linked the blob again as the link went: the data
			// still goes, and that push's manifest meets the tombstone.
			r.logf("layer link %s of blob %s was written again as it was removed", l, c.digest)
		default:
			r.prog.errorCount.Add(1)
			r.logf("error: removing layer link %s of blob %s: %v", l, c.digest, err)
		}
	}
	err = r.storageCall(ctx, func(cctx context.Context) error { return r.drv.Delete(cctx, path.Dir(data)) })
	if errors.Is(err, ErrLeaseLost) {
		return false, err
	}
	if writtenDuring(err) {
		// An upload of the same content wrote into the directory as it
		// was removed (its temporary file, then its data): the blob is
		// written again, or that upload fails and is pushed again; a push
		// that links it meets the tombstone's check, which wants data and
		// link.
		r.prog.kept.Add(1)
		r.logf("kept blob %s: it was uploaded again while it was deleted", c.digest)
		return false, nil
	}
	if err != nil && !isNotFound(err) {
		// Its deleted tombstone stays: if the data went in part, pushes
		// that need it are refused rather than stored with a hole.
		r.prog.errorCount.Add(1)
		r.logf("error: deleting blob %s: %v", c.digest, err)
		return false, nil
	}
	r.prog.swept.Add(1)
	r.prog.freed.Add(c.size)
	r.logf("deleted blob %s (%d bytes)", c.digest, c.size)
	hook(&TestHooks.AfterDelete, c.digest)
	return false, nil
}

// removeUntagged removes the revision links of manifest d in the
// repositories where no tag keeps it; only a lost lease is an error.
func (r *Run) removeUntagged(ctx context.Context, d string) error {
	r.mu.Lock()
	links := r.untagged[d]
	r.mu.Unlock()
	for _, l := range links {
		err := r.storageCall(ctx, func(cctx context.Context) error { return r.drv.Delete(cctx, l) })
		switch {
		case errors.Is(err, ErrLeaseLost):
			return err
		case err == nil || isNotFound(err):
			r.prog.manifestsRemoved.Add(1)
			r.logf("removed untagged manifest %s from %s", d, repositoryOf(l))
		case writtenDuring(err):
			r.prog.kept.Add(1)
			r.logf("kept untagged manifest %s in %s: it was pushed again as it was removed", d, repositoryOf(l))
		default:
			r.prog.errorCount.Add(1)
			r.logf("error: removing untagged manifest %s from %s: %v", d, repositoryOf(l), err)
		}
	}
	return nil
}

// writtenDuring: a deletion found a directory not empty because something
// was written into it as it was removed (a push of the same content).
func writtenDuring(err error) bool { return drivererr.Is(err, syscall.ENOTEMPTY) }

// removeRepository removes the links of a repository directory that has no
// record and whose namespace account is gone; its blobs become unreferenced.
func (r *Run) removeRepository(ctx context.Context, repo string) error {
	ns, _, _ := strings.Cut(repo, "/")
	if _, err := r.c.cfg.Store.Account(ctx, ns); err == nil {
		r.logf("repository %s: its namespace account exists again; left in place", repo)
		return nil
	} else if !errors.Is(err, meta.ErrNotFound) {
		return err
	}
	for _, d := range []string{"_manifests", "_layers", "_uploads"} {
		err := r.storageCall(ctx, func(cctx context.Context) error {
			return r.drv.Delete(cctx, path.Join(repositoriesRoot, repo, d))
		})
		if errors.Is(err, ErrLeaseLost) {
			return err
		}
		if err != nil && !isNotFound(err) {
			r.prog.errorCount.Add(1)
			r.logf("error: removing %s of repository %s: %v", d, repo, err)
			return nil
		}
	}
	r.prog.reposRemoved.Add(1)
	r.logf("removed repository %s: no record, and its namespace account is gone", repo)
	return nil
}
