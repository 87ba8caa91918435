package registry

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/gc"
)

// imageWorkers is how many storage calls the image index makes at once:
// S3 answers a stat in tens of milliseconds, and a local disk gains little
// beyond a few.
const imageWorkers = 16

// imageIndex reads from storage what repos reference, with garbage
// collection's marking (so a backup keeps exactly what a collection keeps):
// each repository's tags, manifest revisions and layer links, and every
// referenced blob. With statBlobs (a backup with the images, a storage
// check) each blob's size is storage's, or it is marked missing when
// storage lacks it; without, a blob's size is what the manifests naming it
// say, and only a manifest whose data could not be read is marked missing:
// a stat of every blob would double what a backup without images costs,
// and the storage check is the operation that asks storage.
func (r *Replica) imageIndex(ctx context.Context, drv driver.StorageDriver, repos []string, statBlobs bool) (*backup.ImageIndex, error) {
	logf := func(format string, args ...any) { r.log.Debugf("image index: "+format, args...) }
	marked, err := gc.Mark(ctx, drv, repos, imageWorkers, logf)
	if err != nil {
		return nil, fmt.Errorf("reading what the repositories reference: %w", err)
	}
	ix := &backup.ImageIndex{}
	manifests := map[string]bool{}
	for _, revs := range marked.Revisions {
		for _, d := range revs {
			manifests[d] = true
		}
	}
	for d := range marked.References {
		manifests[d] = true
	}
	for d := range marked.Missing {
		manifests[d] = true
	}
	sort.Strings(repos)
	for _, repo := range repos {
		revs, layers := marked.Revisions[repo], marked.LayerLinks[repo]
		rev := make(map[string]bool, len(revs))
		for _, d := range revs {
			rev[d] = true
		}
		ir := backup.ImageRepository{Name: repo, Manifests: revs, Layers: layers}
		for name, d := range marked.Tags[repo] {
			if !rev[d] {
				// Distribution cannot serve it either: a tag must name a
				// manifest revision of its repository.
				r.log.Warnf("tag %s:%s names %s, which is no manifest of the repository: left out", repo, name, d)
				continue
			}
			if ir.Tags == nil {
				ir.Tags = map[string]string{}
			}
			ir.Tags[name] = d
		}
		if len(ir.Tags)+len(ir.Manifests)+len(ir.Layers) > 0 {
			ix.Repositories = append(ix.Repositories, ir)
		}
	}
	digests := make([]string, 0, len(marked.Digests))
	for d := range marked.Digests {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	ix.Blobs = make([]backup.Blob, len(digests))
	for i, d := range digests {
		ix.Blobs[i] = backup.Blob{Digest: d, Manifest: manifests[d], References: marked.References[d],
			Size: marked.Sizes[d], Missing: marked.Missing[d]}
	}
	if !statBlobs {
		return ix, nil
	}
	err = parallelIndex(ctx, len(digests), func(i int) error {
		b := &ix.Blobs[i]
		fi, err := drv.Stat(ctx, gc.BlobDataPath(b.Digest))
		switch {
		case err == nil:
			b.Size, b.Missing = fi.Size(), false
		case isNotFound(err):
			b.Missing = true
		default:
			return fmt.Errorf("reading the size of blob %s: %w", b.Digest, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ix, nil
}

// parallelIndex calls fn(0) … fn(n-1) on imageWorkers goroutines and
// returns the first error; it hands out no more once one failed.
func parallelIndex(ctx context.Context, n int, fn func(i int) error) error {
	var mu sync.Mutex
	next := 0
	var first error
	var wg sync.WaitGroup
	for range min(imageWorkers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil || ctx.Err() != nil
				mu.Unlock()
				if stop || i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// writeImages streams every blob the index lists (but missing ones) into
// the backup, each checked against its digest as it is read.
func (r *Replica) writeImages(ctx context.Context, drv driver.StorageDriver, bw *backup.Writer, ix *backup.ImageIndex) error {
	start, total, done := time.Now(), ix.Summary(true).Bytes, int64(0)
	last := start
	for _, b := range ix.Blobs {
		if b.Missing {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rd, err := drv.Reader(ctx, gc.BlobDataPath(b.Digest), 0)
		if isNotFound(err) {
			return fmt.Errorf("blob %s was removed while the backup ran (a garbage collection or a repository deletion); run the backup again", b.Digest)
		}
		if err != nil {
			return fmt.Errorf("reading blob %s: %w", b.Digest, err)
		}
		err = bw.AddBlob(b.Digest, rd)
		rd.Close()
		if err != nil {
			return err
		}
		done += b.Size
		if time.Since(last) > 30*time.Second {
			last = time.Now()
			r.log.WithFields(map[string]any{"bytes": done, "of": total}).Info("backing up the images")
		}
	}
	return nil
}

// checkStorage compares what the repositories reference with what the
// storage holds (GET /api/v0/meta/storage_check, dtr backup --check-storage).
func (r *Replica) checkStorage(ctx context.Context) (contract.StorageCheck, error) {
	drv := r.storageDriver()
	if drv == nil {
		return contract.StorageCheck{}, errors.New("the registry storage is not configured yet")
	}
	names, err := r.store.RepositoryNames(ctx)
	if err != nil {
		return contract.StorageCheck{}, err
	}
	repos := make([]string, 0, len(names))
	for n := range names {
		repos = append(repos, n)
	}
	ix, err := r.imageIndex(ctx, drv, repos, true)
	if err != nil {
		return contract.StorageCheck{}, err
	}
	missing := map[string]bool{}
	for _, b := range ix.Blobs {
		if b.Missing {
			missing[b.Digest] = true
		}
	}
	res, err := ix.CheckStorage(func(d string) (bool, error) { return !missing[d], nil })
	if err != nil {
		return res, err
	}
	res.Restored, err = r.checkRestored(ctx, drv)
	return res, err
}

// storageFix is what an operator does about missing blobs.
func storageFix(c contract.StorageCheck) string {
	if c.MissingBlobs == 0 {
		return ""
	}
	return strings.Join([]string{c.Summary(),
		"Restore from a backup taken with --include-images, or restore with --dtr-storage-volume or --nfs-storage-url naming the storage that holds these blobs (or keep the backed-up S3 storage with --dtr-use-default-storage)"}, ". ")
}
