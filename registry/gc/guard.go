package gc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/meta"
)

// The records a run and the push path share (docs/gc.md, "The race that
// must never lose data"), all below meta.GCKey.
var (
	lockKey    = meta.GCKey("lock")
	epochKey   = meta.GCKey("epoch")
	touchedDir = meta.GCKey("touched") + "/"
)

func deletingKey(d string) string { return meta.GCKey("deleting", d) }
func deletedKey(d string) string  { return meta.GCKey("deleted", d) }
func touchedKey(d string) string  { return touchedDir + d }

// guardBatch bounds the digests of one guard transaction: one compare each
// plus the epoch's stays under etcd's 128 operations per transaction.
const guardBatch = 100

// guardTimeout bounds the guard's metadata calls, as every other call of a
// manifest PUT (oci.go's metadataWriteTimeout).
const guardTimeout = 5 * time.Second

// CollectedError refuses a manifest that references a blob a garbage
// collection run is deleting or deleted: the push must upload it again.
type CollectedError struct {
	Digest  string
	Deleted bool // the data is gone; false: it is being deleted
}

func (e *CollectedError) Error() string {
	if e.Deleted {
		return fmt.Sprintf("blob %s was removed by garbage collection; push the image again, with its layers", e.Digest)
	}
	return fmt.Sprintf("blob %s is being removed by garbage collection; push the image again in a few seconds, with its layers", e.Digest)
}

// Guard is the push path's half of the protocol: every manifest a push
// stores passes its digest and the digests it references (config, layers,
// child manifests; canonical sha256) to Reference before the push is
// acknowledged.
type Guard struct {
	KV clientv3.KV
	// BlobExists reports whether a canonical digest is in storage for the
	// pushing repository: its data and the repository's link to it. A blob
	// deleted and uploaded again is fine for the repository that uploaded
	// or mounted it again; data uploaded again by another repository is not
	// enough, because the run removed this repository's link with the data.
	BlobExists func(ctx context.Context, repo, digest string) (bool, error)
}

// Reference records that a manifest just stored refers to digests, or
// refuses it with a *CollectedError. With no run under way and no recent
// deletion of any of them it only reads (one transaction per 100 digests);
// otherwise it writes a touched marker for each, conditional on no
// deleting tombstone, so that a run that has not yet written its
// tombstones keeps them.
func (g *Guard) Reference(ctx context.Context, repo string, digests []string) error {
	ds := slices.Clone(digests)
	slices.Sort(ds)
	ds = slices.Compact(ds)
	ctx, cancel := context.WithTimeout(ctx, guardTimeout)
	defer cancel()
	for b := range slices.Chunk(ds, guardBatch) {
		if err := g.reference(ctx, repo, b); err != nil {
			return err
		}
	}
	return nil
}

func (g *Guard) reference(ctx context.Context, repo string, ds []string) error {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(epochKey), "=", 0)}
	gets := []clientv3.Op{clientv3.OpGet(epochKey, clientv3.WithCountOnly())}
	for _, d := range ds {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(deletedKey(d)), "=", 0))
		gets = append(gets, clientv3.OpGet(deletedKey(d), clientv3.WithCountOnly()))
	}
	resp, err := g.KV.Txn(ctx).If(cmps...).Else(gets...).Commit()
	if err != nil {
		return fmt.Errorf("checking the garbage collection tombstones: %w", err)
	}
	if resp.Succeeded {
		return nil // no run under way and nothing of ds deleted lately
	}
	// A deleted tombstone with the data back is a blob uploaded again since.
	for i, d := range ds {
		if resp.Responses[i+1].GetResponseRange().Count == 0 {
			continue
		}
		ok, err := g.BlobExists(ctx, repo, d)
		if err != nil {
			return fmt.Errorf("checking blob %s in storage: %w", d, err)
		}
		if !ok {
			return &CollectedError{Digest: d, Deleted: true}
		}
	}
	cmps, puts, dels := cmps[:0], make([]clientv3.Op, 0, len(ds)), make([]clientv3.Op, 0, len(ds))
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, d := range ds {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(deletingKey(d)), "=", 0))
		puts = append(puts, clientv3.OpPut(touchedKey(d), `"`+now+`"`))
		dels = append(dels, clientv3.OpGet(deletingKey(d), clientv3.WithCountOnly()))
	}
	resp, err = g.KV.Txn(ctx).If(cmps...).Then(puts...).Else(dels...).Commit()
	if err != nil {
		return fmt.Errorf("recording references for garbage collection: %w", err)
	}
	if resp.Succeeded {
		return nil
	}
	for i, d := range ds {
		if resp.Responses[i].GetResponseRange().Count > 0 {
			return &CollectedError{Digest: d}
		}
	}
	return errors.New("recording references for garbage collection: a tombstone came and went; push again")
}
