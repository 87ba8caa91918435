package registry

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/dtr-registry/dtr/registry/gc"
)

// storageDriver is the registry's storage driver now, nil before it is set up.
func (r *Replica) storageDriver() driver.StorageDriver {
	if b := r.driver.Load(); b != nil {
		return b.d
	}
	return nil
}

// gcRunner runs garbage collection jobs on this replica while it holds the
// GC lease, and spawns jobs from crons while it leads the metadata
// (docs/gc.md).
func (r *Replica) gcRunner() *gc.Runner {
	cli := r.member.Client()
	collector := gc.New(gc.Config{
		Store:  r.store,
		Etcd:   cli,
		Driver: r.storageDriver,
		Busy:   r.app.busy,
		StorageRepositories: func(ctx context.Context, known map[string]bool) ([]string, error) {
			drv := r.storageDriver()
			if drv == nil {
				return nil, errors.New("the registry storage is not configured yet")
			}
			return storageRepositories(ctx, drv, known)
		},
	})
	return &gc.Runner{Store: r.store, Etcd: cli, Collector: collector, ReplicaID: r.opts.ReplicaID,
		IsLeader: r.isMetadataLeader, Log: r.log.WithField("component", "gc"),
		Prune: r.pruneTags, // tag_pruning jobs (pruning.go)
		// metrics and the GC_COMPLETED webhook (metrics.go), whose queueing
		// writes to the metadata store: not on the runner's way.
		Finished: func(action, status string, freed int64) { go r.GCRunFinished(action, status, freed) },
	}
}

// gcGuard is the push path's half of garbage collection's protocol.
func (r *Replica) gcGuard() *gc.Guard {
	return &gc.Guard{KV: r.member.Client(), BlobExists: func(ctx context.Context, repo, d string) (bool, error) {
		drv := r.storageDriver()
		if drv == nil {
			return false, errors.New("the registry storage is not configured yet")
		}
		// The data, and this repository's link to it as a layer or as a
		// manifest revision: a run removes both.
		for _, paths := range [][]string{{gc.BlobDataPath(d)}, {layerLink(repo, d), revisionLink(repo, d)}} {
			found := false
			for _, p := range paths {
				_, err := drv.Stat(ctx, p)
				if err == nil {
					found = true
					break
				}
				if !isNotFound(err) {
					return false, err
				}
			}
			if !found {
				return false, nil
			}
		}
		return true, nil
	}}
}

// gcReferences are the canonical digests a committed manifest's push must
// pass to the guard: the manifest itself and what it references. A digest
// of another algorithm names content through the repository's link; one
// without a link names nothing stored (a sparse manifest), so nothing to
// keep.
func (o *ociExtensions) gcReferences(ctx context.Context, m manifestRecord) ([]string, error) {
	out := []string{m.canonical}
	drv := o.driver()
	resolve := func(d, link string) error {
		if isCanonical(d) {
			out = append(out, d)
			return nil
		}
		if drv == nil {
			return errors.New("storage not configured")
		}
		b, err := drv.GetContent(ctx, link)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", link, err)
		}
		if c := strings.TrimSpace(string(b)); isCanonical(c) && isDigest(c) {
			out = append(out, c)
		}
		return nil
	}
	for _, d := range m.blobRefs {
		if err := resolve(d, layerLink(m.repo, d)); err != nil {
			return nil, err
		}
	}
	for _, d := range m.manifestRefs {
		if err := resolve(d, revisionLink(m.repo, d)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// guardCollection passes a committed manifest's references to the garbage
// collection guard. When a run is deleting or deleted one of them, the
// revision Distribution just wrote is removed again (no tag was moved yet)
// and the push is refused with a *gc.CollectedError: never a stored
// manifest that points at a missing blob.
func (o *ociExtensions) guardCollection(ctx context.Context, m manifestRecord) error {
	if o.gcGuard == nil {
		return nil
	}
	refs, err := o.gcReferences(ctx, m)
	if err == nil {
		err = o.gcGuard.Reference(ctx, m.repo, refs)
	}
	var ce *gc.CollectedError
	if !errors.As(err, &ce) {
		return err
	}
	if drv := o.driver(); drv != nil {
		if derr := drv.Delete(ctx, path.Dir(revisionLink(m.repo, m.canonical))); derr != nil && !isNotFound(derr) {
			o.log.WithError(derr).Errorf("removing manifest %s of %s, refused because garbage collection removes %s", m.canonical, m.repo, ce.Digest)
		}
	}
	return err
}
