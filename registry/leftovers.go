package registry

import (
	"context"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/sirupsen/logrus"
)

// uploadPurgeAge is how long an unfinished blob upload is kept. Clients
// resume an interrupted upload within minutes; a week covers a client left
// suspended over a weekend, as Distribution's default does.
const uploadPurgeAge = 168 * time.Hour

// strayTempAge is the age from which a temporary file is a leftover. Every
// writer that makes one (Distribution's filesystem driver for a link or a
// manifest, dtr for its TLS files and markers) renames it away within
// seconds; only a kill between the write and the rename leaves it behind.
const strayTempAge = time.Hour

// leftoversDelay is how long after start the first sweep waits: the start-up
// reconciliation reads the storage first, and a replica that crashes at start
// in a loop does not walk the storage on every attempt.
const leftoversDelay = 2 * time.Minute

// leftoversInterval is how often the sweep runs. Uploads are kept a week, so
// a few hours late costs nothing; on S3 each run is one listing per
// repository, which a shorter interval would multiply.
const leftoversInterval = 6 * time.Hour

// uploadIDPattern is the name of an upload directory: Distribution names
// each upload by a random UUID.
var uploadIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// storageTempPattern is the temporary file Distribution's filesystem driver
// writes before renaming it over <name> (PutContent: "<name>.<uuid>.tmp").
// Nothing else in the storage tree is a regular file ending in .tmp, but
// the exact form keeps a file someone put there by hand out of reach.
var storageTempPattern = regexp.MustCompile(`\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.tmp$`)

// LeftoversResult says what one sweep of interrupted uploads' leftovers
// removed.
type LeftoversResult struct {
	Repositories int           // repositories whose uploads were looked at (0 when storage was not swept)
	Uploads      []string      // upload directories removed ("<repo>/<id>")
	UploadBytes  int64         // bytes in them
	TempFiles    []string      // stray temporary files removed (paths)
	TempBytes    int64         // bytes in them
	Errors       int           // checks or removals that failed; retried at the next sweep
	Elapsed      time.Duration // wall time of the sweep
}

// leftoversLoop sweeps leftovers leftoversDelay after start and then every
// leftoversInterval. The shared storage is swept by the metadata leader
// only, one replica being enough; every replica sweeps its own data
// directories.
//
// dtr does this instead of Distribution's upload purger (disabled in
// distributionConfig): that one runs on every replica at once against the
// shared storage, first at a random time up to an hour after start (so a
// replica restarted more often never purges), keeps forever an upload
// directory whose startedat file is missing (a kill while it was being
// written), and leaves the driver's temporary files alone.
func (r *Replica) leftoversLoop(ctx context.Context) {
	t := time.NewTimer(leftoversDelay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.sweepAndLog(ctx, r.isMetadataLeader(ctx))
		t.Reset(leftoversInterval)
	}
}

// SweepLeftovers removes now what interrupted uploads and writes left
// behind: upload directories older than a week, and temporary files older
// than an hour in filesystem storage (when storage is true) and in this
// replica's data directories. Blobs, manifests and tags are never touched.
func (r *Replica) SweepLeftovers(ctx context.Context, storage bool) (LeftoversResult, error) {
	var drv driver.StorageDriver
	fsRoot := ""
	if storage {
		b := r.driver.Load()
		if b != nil {
			drv = b.d
		}
		r.mu.Lock()
		if t := r.storage.Type; t == "filesystem" || t == "" {
			fsRoot = r.opts.StorageRoot
		}
		r.mu.Unlock()
	}
	return sweepLeftovers(ctx, drv, fsRoot, r.dataTempDirs(), r.opts.DataDir, time.Now())
}

// dataTempDirs are the directories writeFileAtomic writes into.
func (r *Replica) dataTempDirs() []string {
	return []string{r.opts.DataDir, filepath.Join(r.opts.DataDir, "tls"), r.opts.CADir}
}

// sweepAndLog runs one sweep and logs what it removed.
func (r *Replica) sweepAndLog(ctx context.Context, storage bool) {
	res, err := r.SweepLeftovers(ctx, storage)
	if err != nil && ctx.Err() != nil {
		return
	}
	log := r.log.WithFields(logrus.Fields{
		"repositories": res.Repositories, "uploads": len(res.Uploads), "uploadBytes": res.UploadBytes,
		"tempFiles": len(res.TempFiles), "tempBytes": res.TempBytes, "errors": res.Errors,
		"elapsed": res.Elapsed.Round(time.Millisecond),
	})
	if err != nil {
		log.WithError(err).Warn("sweeping leftovers of interrupted uploads; retrying at the next sweep")
		return
	}
	if len(res.Uploads)+len(res.TempFiles)+res.Errors == 0 {
		log.Debug("no leftovers of interrupted uploads")
		return
	}
	if len(res.Uploads) > 0 {
		log.WithField("names", boundedNames(res.Uploads)).Info("removed uploads unfinished for more than " + uploadPurgeAge.String())
	}
	if len(res.TempFiles) > 0 {
		log.WithField("names", boundedNames(res.TempFiles)).Info("removed temporary files left by interrupted writes")
	}
	if res.Errors > 0 {
		log.Warn("some leftovers could not be checked or removed; retrying at the next sweep")
	}
}

// sweepLeftovers removes, as of now:
//   - every upload directory (<repo>/_uploads/<id>) started before
//     now-uploadPurgeAge, read through drv (any storage); one listing per
//     repository, and reads only inside upload directories;
//   - when fsRoot is set (filesystem storage), every file of the form the
//     filesystem driver's PutContent writes (<name>.<uuid>.tmp) older than
//     strayTempAge, found by one walk of the tree;
//   - in each of dataDirs (not recursively), every *.tmp file older than
//     strayTempAge, and in dataDir/restore a backup spool (receiving-*.tar)
//     that a killed restore left.
//
// drv nil skips the storage. Nothing else is removed.
func sweepLeftovers(ctx context.Context, drv driver.StorageDriver, fsRoot string, dataDirs []string, dataDir string, now time.Time) (LeftoversResult, error) {
	start := time.Now()
	var res LeftoversResult
	var failed atomic.Int64
	if drv != nil {
		if err := sweepUploads(ctx, drv, now.Add(-uploadPurgeAge), &res, &failed); err != nil {
			return res, err
		}
	}
	if fsRoot != "" {
		if err := sweepStorageTemps(ctx, fsRoot, now.Add(-strayTempAge), &res, &failed); err != nil {
			return res, err
		}
	}
	before := now.Add(-strayTempAge)
	for _, d := range dataDirs {
		removeOldFiles(d, func(name string) bool { return strings.HasSuffix(name, ".tmp") }, before, &res, &failed)
	}
	if dataDir != "" {
		removeOldFiles(filepath.Dir(onDisk{dataDir: dataDir}.restoreSpool()), func(name string) bool {
			ok, _ := filepath.Match("receiving-*.tar", name)
			return ok
		}, before, &res, &failed)
	}
	res.Errors = int(failed.Load())
	res.Elapsed = time.Since(start)
	return res, ctx.Err()
}

// sweepUploads removes the upload directories started before olderThan. An
// upload's start is its startedat file; without a readable one (a kill
// while Distribution wrote it) the directory's modification time stands
// in, and a storage that reports none (S3 has no directories) keeps it.
func sweepUploads(ctx context.Context, drv driver.StorageDriver, olderThan time.Time, res *LeftoversResult, failed *atomic.Int64) error {
	all, err := storageRepositoryDirs(ctx, drv, nil)
	if err != nil {
		return err
	}
	res.Repositories = len(all)
	var repos []string // those with an _uploads directory
	for _, r := range all {
		if slices.Contains(r.dirs, "_uploads") {
			repos = append(repos, r.name)
		}
	}
	var mu sync.Mutex
	parallel(ctx, repos, func(repo string) {
		ids, err := drv.List(ctx, path.Join(repositoriesRoot, repo, "_uploads"))
		if err != nil {
			if !isNotFound(err) {
				failed.Add(1)
			}
			return
		}
		for _, dir := range ids {
			if !uploadIDPattern.MatchString(path.Base(dir)) {
				continue
			}
			started, ok := uploadStartedAt(ctx, drv, dir)
			if !ok || !started.Before(olderThan) {
				continue
			}
			size := storageSize(ctx, drv, dir)
			if err := drv.Delete(ctx, dir); err != nil && !isNotFound(err) {
				failed.Add(1)
				continue
			}
			mu.Lock()
			res.Uploads = append(res.Uploads, repo+"/"+path.Base(dir))
			res.UploadBytes += size
			mu.Unlock()
		}
	})
	return ctx.Err()
}

// uploadStartedAt is when the upload in dir started; false when unknown.
func uploadStartedAt(ctx context.Context, drv driver.StorageDriver, dir string) (time.Time, bool) {
	if b, err := drv.GetContent(ctx, path.Join(dir, "startedat")); err == nil {
		if t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b))); err == nil {
			return t, true
		}
	}
	fi, err := drv.Stat(ctx, dir)
	if err != nil || fi.ModTime().IsZero() {
		return time.Time{}, false
	}
	return fi.ModTime(), true
}

// storageSize is the total size of the files under dir, for the log.
func storageSize(ctx context.Context, drv driver.StorageDriver, dir string) int64 {
	var n int64
	_ = drv.Walk(ctx, dir, func(fi driver.FileInfo) error {
		if !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// tempWalkDepth is the depth below the storage root at which the walk for
// temporary files fans out: <root>/docker/registry/v2/repositories/<ns>/<name>
// and <root>/docker/registry/v2/blobs/sha256/<xx>, one subtree per
// repository or blob prefix.
const tempWalkDepth = 6

// sweepStorageTemps walks the filesystem storage under root and removes the
// driver's temporary files last modified before olderThan. Directory
// entries carry their type, so only candidates are stat'ed; the subtrees of
// the repositories and blob prefixes are walked by reconcileWorkers at once,
// since on NFS each directory read is a round trip.
func sweepStorageTemps(ctx context.Context, root string, olderThan time.Time, res *LeftoversResult, failed *atomic.Int64) error {
	var mu sync.Mutex
	var subtrees []string
	visit := func(top bool) fs.WalkDirFunc {
		return func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if !os.IsNotExist(err) {
					failed.Add(1)
				}
				if d != nil && d.IsDir() && p != root {
					return filepath.SkipDir
				}
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if d.IsDir() {
				if top && p != root && depthBelow(root, p) >= tempWalkDepth {
					subtrees = append(subtrees, p)
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || !storageTempPattern.MatchString(d.Name()) {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			removeIfOld(p, d, olderThan, res, failed)
			return nil
		}
	}
	err := filepath.WalkDir(root, visit(true))
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	parallel(ctx, subtrees, func(dir string) {
		_ = filepath.WalkDir(dir, visit(false)) // errors are counted by visit
	})
	return ctx.Err()
}

// depthBelow is how many path elements p has below root.
func depthBelow(root, p string) int {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return 0
	}
	return strings.Count(rel, string(filepath.Separator)) + 1
}

// removeOldFiles removes the regular files directly in dir whose names
// match and that were last modified before olderThan.
func removeOldFiles(dir string, match func(string) bool, olderThan time.Time, res *LeftoversResult, failed *atomic.Int64) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !os.IsNotExist(err) {
			failed.Add(1)
		}
		return
	}
	for _, d := range entries {
		if d.Type().IsRegular() && match(d.Name()) {
			removeIfOld(filepath.Join(dir, d.Name()), d, olderThan, res, failed)
		}
	}
}

// removeIfOld removes the file p if it was last modified before olderThan.
func removeIfOld(p string, d fs.DirEntry, olderThan time.Time, res *LeftoversResult, failed *atomic.Int64) {
	fi, err := d.Info()
	if err != nil {
		if !os.IsNotExist(err) {
			failed.Add(1)
		}
		return
	}
	if !fi.ModTime().Before(olderThan) {
		return
	}
	if err := os.Remove(p); err != nil {
		if !os.IsNotExist(err) {
			failed.Add(1)
		}
		return
	}
	res.TempFiles = append(res.TempFiles, p)
	res.TempBytes += fi.Size()
}
