package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/meta"
)

// reconcileInterval is how often the metadata leader compares the two
// stores. A manifest PUT already writes both before it answers 201, so drift
// comes only from crashes between the two writes (repaired at the restarted
// replica's start) and from outside changes to the storage (a restore, a
// copied volume): half an hour bounds how long those stay unnoticed.
const reconcileInterval = 30 * time.Minute

// reconcileWorkers bounds the storage and metadata calls in flight. etcd
// batches concurrent proposals into one fsync, so a few writers are several
// times faster than one; more would only queue behind the disk.
const reconcileWorkers = 8

// reconcileLogNames caps the names a run logs; the counts are always exact.
const reconcileLogNames = 20

// ReconcileResult says what one reconciliation saw and repaired.
type ReconcileResult struct {
	Repositories int           // repositories with manifests in storage
	Created      []string      // repository records created (storage had it, metadata did not)
	Orphaned     []string      // storage repositories whose namespace account is gone: left alone
	Indexed      []string      // referrers indexed ("repo@digest")
	Unindexed    []string      // index entries removed: the manifest is gone from storage
	Errors       int           // checks that failed (storage or metadata errors); retried next run
	Elapsed      time.Duration // wall time of the run
}

// reconcileLoop reconciles once at start, in the background so that a
// replica becomes ready without waiting for a walk of the storage, and then
// every reconcileInterval on the metadata leader only.
//
// Every replica's first run is useful: a replica killed between a storage
// commit and its metadata writes is the one that restarts. Later runs need
// only one replica; the leader is the one with the cheapest metadata writes.
// Two replicas reconciling at once (a leader change during a run, or starts)
// is harmless: record creation is create-if-absent, indexing is a put, and an
// index entry is removed only if unchanged since it was listed.
func (r *Replica) reconcileLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if first || r.isMetadataLeader(ctx) {
			r.reconcileAndLog(ctx, first)
		}
		first = false
		t.Reset(reconcileInterval)
	}
}

func (r *Replica) isMetadataLeader(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st := r.member.Status(ctx)
	return st.HasQuorum && st.Leader == r.member.ID()
}

// reconcileAndLog runs one reconciliation (every directory of storage
// when full) and logs what it fixed.
func (r *Replica) reconcileAndLog(ctx context.Context, full bool) {
	b := r.driver.Load()
	if b == nil {
		return
	}
	res, err := reconcileStores(ctx, b.d, r.store, r.log, full)
	if err != nil {
		if ctx.Err() == nil {
			r.log.WithError(err).Warn("reconciling storage and metadata; retrying at the next run")
		}
		return
	}
	log := r.log.WithFields(logrus.Fields{
		"repositories": res.Repositories, "created": len(res.Created), "indexed": len(res.Indexed),
		"unindexed": len(res.Unindexed), "orphaned": len(res.Orphaned), "errors": res.Errors,
		"elapsed": res.Elapsed.Round(time.Millisecond),
	})
	if len(res.Created)+len(res.Indexed)+len(res.Unindexed)+len(res.Orphaned)+res.Errors == 0 {
		log.Debug("storage and metadata agree")
		return
	}
	for _, l := range []struct {
		what  string
		names []string
	}{
		{"repository records created for repositories found in storage", res.Created},
		{"referrers indexed that storage served but the index lacked", res.Indexed},
		{"referrers removed from the index: their manifests are gone from storage", res.Unindexed},
		{"repositories in storage whose namespace account no longer exists (left for an administrator)", res.Orphaned},
	} {
		if len(l.names) > 0 {
			log.WithField("names", boundedNames(l.names)).Warn(l.what)
		}
	}
	if res.Errors > 0 {
		log.Warn("some reconciliation checks failed; retrying at the next run")
	}
}

// boundedNames joins at most reconcileLogNames names.
func boundedNames(names []string) string {
	if len(names) <= reconcileLogNames {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:reconcileLogNames], ", "), len(names)-reconcileLogNames)
}

// reconcileStores brings the metadata in line with the storage:
//   - a repository with manifests in storage but no record gets one
//     (private, no creator), and the referrers among its manifests are
//     indexed: a crash after the storage commit of a push into a new
//     repository loses both writes;
//   - an index entry whose manifest revision is gone from storage is removed.
//
// Its cost is bounded by the number of repositories, not of manifests: one
// keys-only metadata range, storage listings (storageRepositoryDirs: one
// per namespace and per directory that may hide a repository without a
// record; with full, one per directory), one stat per index entry, and
// manifest reads only in repositories that lacked a record. A replica's
// first run, the one that repairs its own crash, is full; the periodic runs
// do not look inside a recorded repository without recorded nested ones,
// so a nested repository missing its record there waits for the next start
// (or the push its client retries).
// A referrer cut off from the index in a repository that has a record is not
// found here; its push got no 201 (the index is written before it), and the
// client's retry indexes it.
func reconcileStores(ctx context.Context, drv driver.StorageDriver, store *meta.Store, log logrus.FieldLogger, full bool) (ReconcileResult, error) {
	start := time.Now()
	var res ReconcileResult
	known, err := store.RepositoryNames(ctx)
	if err != nil {
		return res, err
	}
	skip := known
	if full {
		skip = nil
	}
	repos, err := storageRepositories(ctx, drv, skip)
	if err != nil {
		return res, err
	}
	res.Repositories = len(repos)
	var missing []string
	for _, repo := range repos {
		if !known[repo] {
			missing = append(missing, repo)
		}
	}
	var mu sync.Mutex
	var failed atomic.Int64
	note := func(list *[]string, s string) {
		mu.Lock()
		*list = append(*list, s)
		mu.Unlock()
	}
	fail := func(err error) {
		failed.Add(1)
		log.WithError(err).Debug("reconciliation check failed")
	}
	parallel(ctx, missing, func(repo string) {
		if _, err := drv.Stat(ctx, path.Join(repositoriesRoot, repo, "_manifests", "revisions")); err != nil {
			// Only uploads or layer links: nothing was ever acknowledged.
			if !isNotFound(err) {
				fail(err)
			}
			return
		}
		ns, name, _ := meta.SplitRepository(repo)
		_, err := store.CreateRepository(ctx, meta.Repository{Namespace: ns, Name: name, Visibility: meta.Private})
		switch {
		case err == nil:
			note(&res.Created, repo)
		case errors.Is(err, meta.ErrExists):
			// created meanwhile by a push or another replica
		case errors.Is(err, meta.ErrNotFound):
			note(&res.Orphaned, repo)
			return
		default:
			fail(err)
			return
		}
		n, err := indexReferrers(ctx, drv, store, repo)
		for _, d := range n {
			note(&res.Indexed, repo+"@"+d)
		}
		if err != nil {
			fail(err)
		}
	})
	entries, err := store.IndexedReferrers(ctx)
	if err != nil {
		return res, err
	}
	parallel(ctx, entries, func(e meta.IndexedReferrer) {
		_, err := drv.Stat(ctx, revisionLink(e.Repo, e.Digest))
		if err == nil {
			return
		}
		if !isNotFound(err) {
			fail(err) // a storage error never removes an entry
			return
		}
		removed, err := store.RemoveReferrerIfUnchanged(ctx, e)
		if err != nil {
			fail(err)
		} else if removed {
			note(&res.Unindexed, e.Repo+"@"+e.Digest)
		}
	})
	res.Errors = int(failed.Load())
	res.Elapsed = time.Since(start)
	return res, ctx.Err()
}

// storageRepositories lists the full name of every repository directory in
// storage, nested ones included (storageRepositoryDirs).
func storageRepositories(ctx context.Context, drv driver.StorageDriver, known map[string]bool) ([]string, error) {
	repos, err := storageRepositoryDirs(ctx, drv, known)
	out := make([]string, len(repos))
	for i, r := range repos {
		out[i] = r.name
	}
	return out, err
}

// storageRepo is a repository directory in storage and which of
// Distribution's directories (repositoryDirs) it holds; nil when it was not
// listed.
type storageRepo struct {
	name string
	dirs []string
}

// storageRepositoryDirs finds every repository directory in storage: a
// directory holding one of Distribution's _manifests, _layers or _uploads
// is a repository, and its other subdirectories may be nested repositories
// (admin/charts/hello inside admin/charts). It costs one listing of the
// root and one per directory below it (a delimiter listing on S3, not a
// walk of every file), reconcileWorkers at once. Names that are not dtr
// repository names (invalid characters, too long) are unreachable through
// dtr: they are skipped, and so is everything below them.
//
// A directory named in known (repositories with a record) is taken for a
// repository without being listed, unless known also holds a repository
// nested in it: with only two-level names, a run costs one listing per
// namespace. known nil lists every directory.
func storageRepositoryDirs(ctx context.Context, drv driver.StorageDriver, known map[string]bool) ([]storageRepo, error) {
	hasNested := map[string]bool{} // recorded names with a recorded repository inside
	for name := range known {
		for i := strings.LastIndexByte(name, '/'); i > 0; i = strings.LastIndexByte(name[:i], '/') {
			hasNested[name[:i]] = true
		}
	}
	namespaces, err := drv.List(ctx, repositoriesRoot)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the repositories in %s storage: %w", drv.Name(), err)
	}
	var level []string // directories to list next, as names below the root
	for _, p := range namespaces {
		if ns := path.Base(p); meta.ValidateAccountName(ns) == nil {
			level = append(level, ns)
		}
	}
	var out []storageRepo
	var mu sync.Mutex
	var firstErr error
	for len(level) > 0 && ctx.Err() == nil {
		var next []string
		parallel(ctx, level, func(dir string) {
			if known[dir] && !hasNested[dir] {
				mu.Lock()
				out = append(out, storageRepo{name: dir})
				mu.Unlock()
				return
			}
			children, err := drv.List(ctx, path.Join(repositoriesRoot, dir))
			if isNotFound(err) {
				return // removed meanwhile
			}
			if err != nil {
				// The filesystem driver fails to list a file (S3 finds
				// nothing); a stray file is no repository.
				if fi, serr := drv.Stat(ctx, path.Join(repositoriesRoot, dir)); serr == nil && !fi.IsDir() {
					return
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("listing the repositories in %s: %w", dir, err)
				}
				return
			}
			repo := storageRepo{name: dir}
			for _, c := range children {
				base := path.Base(c)
				if slices.Contains(repositoryDirs, base) {
					repo.dirs = append(repo.dirs, base)
				} else if _, _, err := meta.SplitRepository(dir + "/" + base); err == nil {
					next = append(next, dir+"/"+base)
				}
			}
			if len(repo.dirs) > 0 && strings.Contains(dir, "/") {
				out = append(out, repo)
			}
		})
		if firstErr != nil {
			return nil, firstErr
		}
		level = next
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, ctx.Err()
}

// indexReferrers reads every sha256 manifest revision of repo and indexes
// those with a subject; it returns the digests it indexed.
func indexReferrers(ctx context.Context, drv driver.StorageDriver, store *meta.Store, repo string) ([]string, error) {
	revs, err := drv.List(ctx, path.Join(repositoriesRoot, repo, "_manifests", "revisions", "sha256"))
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var indexed []string
	var errs []error
	for _, p := range revs {
		hex := path.Base(p)
		if len(hex) != 64 {
			continue
		}
		body, err := drv.GetContent(ctx, path.Join("/docker/registry/v2/blobs/sha256", hex[:2], hex, "data"))
		if err != nil {
			if !isNotFound(err) {
				errs = append(errs, err)
			}
			continue
		}
		if len(body) > maxManifest {
			continue
		}
		var mf manifestFields
		if json.Unmarshal(body, &mf) != nil || mf.Subject == nil || !isDigest(mf.Subject.Digest) {
			continue
		}
		dg := "sha256:" + hex
		if err := store.AddReferrer(ctx, repo, mf.Subject.Digest, referrerDescriptor(mf, body, "", dg)); err != nil {
			errs = append(errs, err)
			continue
		}
		indexed = append(indexed, dg)
	}
	return indexed, errors.Join(errs...)
}

// parallel runs fn on every item with reconcileWorkers goroutines, stopping
// early when ctx ends.
func parallel[T any](ctx context.Context, items []T, fn func(T)) {
	ch := make(chan T)
	var wg sync.WaitGroup
	for range min(reconcileWorkers, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				fn(it)
			}
		}()
	}
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		ch <- it
	}
	close(ch)
	wg.Wait()
}

func isNotFound(err error) bool {
	var nf driver.PathNotFoundError
	return errors.As(err, &nf)
}
