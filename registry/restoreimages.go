package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/gc"
)

// restoreStaging is where a restored blob is written before it is moved to
// its digest's path: outside Distribution's tree, so that neither a pull
// nor a collection ever sees a blob that is not whole and verified.
const restoreStaging = "/dtr-restore"

// restoreResult is what writing a backup's images did.
type restoreResult struct {
	HasIndex         bool // the backup has an image section
	Written, Present int  // blobs written; blobs storage held already
	Bytes            int64
	Links            int
	Check            contract.StorageCheck
	Took             time.Duration
	index            *backup.ImageIndex
}

// restoreImages writes a received backup's images into drv: every blob
// (staged while the upload was received, and moved into place now; one in
// the spool is verified against its digest again as it is read, written
// aside and then moved), then each repository's layer links, manifest
// revisions and tags, as Distribution and the push guard read them. A
// backup without images writes nothing. Either way it then checks that
// storage holds every referenced blob. Running it again (a restart) is
// safe: a blob already in place is kept, and with rehash (a replica that
// did not receive the upload itself) each staged blob is checked against
// its digest again before it moves.
func restoreImages(ctx context.Context, drv driver.StorageDriver, spool string, included, rehash bool, logf func(format string, args ...any)) (*restoreResult, error) {
	start := time.Now()
	f, err := os.Open(spool)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := &restoreResult{}
	var ix *backup.ImageIndex
	inSpool := map[string]bool{}
	buf := make([]byte, 1<<20)
	err = backup.WalkImages(f, func(i *backup.ImageIndex) error {
		ix = i
		return nil
	}, func(b backup.Blob, body io.Reader) error {
		included = true
		inSpool[b.Digest] = true
		final := gc.BlobDataPath(b.Digest)
		if fi, err := drv.Stat(ctx, final); err == nil && fi.Size() == b.Size {
			res.Present++
			return nil // content-addressed: the same bytes
		} else if err != nil && !isNotFound(err) {
			return fmt.Errorf("checking blob %s in storage: %w", b.Digest, err)
		}
		if err := writeBlob(ctx, drv, b, body, buf); err != nil {
			return err
		}
		res.Written++
		res.Bytes += b.Size
		if res.Written%500 == 0 {
			logf("restored %d blobs, %d bytes", res.Written, res.Bytes)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if ix == nil {
		res.Took = time.Since(start)
		return res, nil // a backup taken before the image section existed
	}
	res.HasIndex, res.index = true, ix
	if included {
		for _, b := range ix.Blobs {
			if b.Missing || inSpool[b.Digest] {
				continue
			}
			moved, err := placeStaged(ctx, drv, b, rehash, buf)
			if err != nil {
				return nil, err
			}
			if !moved {
				res.Present++
				continue
			}
			res.Written++
			res.Bytes += b.Size
			if res.Written%500 == 0 {
				logf("restored %d blobs, %d bytes", res.Written, res.Bytes)
			}
		}
		if err := drv.Delete(ctx, restoreStaging); err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("removing the staging area %s: %w", restoreStaging, err)
		}
	}
	present := func(d string) (bool, error) {
		_, err := drv.Stat(ctx, gc.BlobDataPath(d))
		if isNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}
	if included {
		n, err := restoreLinks(ctx, drv, ix, present)
		if err != nil {
			return nil, err
		}
		res.Links = n
	}
	if res.Check, err = ix.CheckStorage(present); err != nil {
		return nil, fmt.Errorf("checking the restored storage: %w", err)
	}
	res.Took = time.Since(start)
	return res, nil
}

// writeBlob streams one blob into the staging path, and moves it into place
// only once all its bytes arrived and matched its digest.
func writeBlob(ctx context.Context, drv driver.StorageDriver, b backup.Blob, body io.Reader, buf []byte) error {
	staging := path.Join(restoreStaging, strings.TrimPrefix(b.Digest, "sha256:"))
	w, err := drv.Writer(ctx, staging, false)
	if err != nil {
		return fmt.Errorf("writing blob %s to storage: %w", b.Digest, err)
	}
	n, err := io.CopyBuffer(w, body, buf)
	if err == nil && n != b.Size {
		err = fmt.Errorf("%d of %d bytes", n, b.Size)
	}
	if err != nil {
		_ = w.Cancel(ctx)
		w.Close()
		if errors.Is(err, backup.ErrInvalid) {
			return err
		}
		return fmt.Errorf("writing blob %s to storage: %w", b.Digest, err)
	}
	if err := w.Commit(ctx); err != nil {
		w.Close()
		return fmt.Errorf("writing blob %s to storage: %w", b.Digest, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("writing blob %s to storage: %w", b.Digest, err)
	}
	if err := drv.Move(ctx, staging, gc.BlobDataPath(b.Digest)); err != nil {
		return fmt.Errorf("moving blob %s into place: %w", b.Digest, err)
	}
	return nil
}

// restoreLinks writes the links that make blobs part of a repository, for
// every blob storage holds: layer links (Distribution serves a blob of a
// repository only through one; the push guard checks them), manifest
// revisions, and tags (the index entry first, then the current link, the
// order of Distribution's tag store).
func restoreLinks(ctx context.Context, drv driver.StorageDriver, ix *backup.ImageIndex, present func(string) (bool, error)) (int, error) {
	has := map[string]bool{}
	check := func(d string) (bool, error) {
		if v, ok := has[d]; ok {
			return v, nil
		}
		v, err := present(d)
		if err != nil {
			return false, err
		}
		has[d] = v
		return v, nil
	}
	n := 0
	put := func(p, d string) error {
		ok, err := check(d)
		if err != nil || !ok {
			return err
		}
		if err := drv.PutContent(ctx, p, []byte(d)); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		n++
		return nil
	}
	for _, r := range ix.Repositories {
		for _, d := range r.Layers {
			if err := put(layerLink(r.Name, d), d); err != nil {
				return n, err
			}
		}
		for _, d := range r.Manifests {
			if err := put(revisionLink(r.Name, d), d); err != nil {
				return n, err
			}
		}
		for tag, d := range r.Tags {
			if err := put(tagIndexLink(r.Name, tag, d), d); err != nil {
				return n, err
			}
			if err := put(tagCurrentLink(r.Name, tag), d); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// finishRestore writes a restored backup's images into the storage the
// replica now has, says what storage lacks, and only then drops the
// spooled backup: a replica that restarts half-way does it again. The
// replica's ports say what it does meanwhile; it is not healthy before.
func (s *startup) finishRestore(ctx context.Context, spool string) error {
	r := s.r
	drv := r.storageDriver()
	if drv == nil {
		return errors.New("restoring the images: the registry storage is not configured")
	}
	if tlsCfg, err := interimTLS(r.ca, s.hosts); err == nil {
		err = s.serveInterim(&interimPhase{live: map[string]any{"Restore": "images", "Replica": r.opts.ReplicaID},
			waiting: "restoring the backup's images into the registry storage", tls: tlsCfg})
		if err != nil {
			r.log.WithError(err).Warn("not answering on the replica's ports while the images are restored")
		}
		defer s.stopInterim()
	}
	r.log.Info("restoring the backup's images into the registry storage")
	// The manifest says whether the blobs were staged; a replica that did
	// not receive the upload itself (restarted since) reads it again.
	m, rehash := r.received.Load(), false
	if m == nil {
		rehash = true
		f, err := os.Open(spool)
		if err != nil {
			return err
		}
		vm, err := backup.VerifyStream(f, backup.VerifyOptions{BlobsElsewhere: true})
		f.Close()
		if err != nil {
			return fmt.Errorf("the backup in %s: %w", spool, err)
		}
		m = &vm
	}
	included := m.Images != nil && m.Images.Included
	res, err := restoreImages(ctx, drv, spool, included, rehash, r.log.Infof)
	if err != nil {
		return fmt.Errorf("restoring the backup's images: %w", err)
	}
	fields := map[string]any{"written": res.Written, "alreadyThere": res.Present, "bytes": res.Bytes, "links": res.Links, "took": res.Took.Round(time.Millisecond)}
	// What storage lacks stays on record until it is there: a storage
	// check compares the restored index too, as storage alone no longer
	// says which tags there were.
	if res.HasIndex && res.Check.MissingBlobs > 0 {
		b, err := json.Marshal(res.index)
		if err == nil {
			err = writeFileAtomic(r.disk.restoredIndex(), b, 0o600)
		}
		if err != nil {
			return fmt.Errorf("keeping the restored image index: %w", err)
		}
	} else if err := os.Remove(r.disk.restoredIndex()); err != nil && !os.IsNotExist(err) {
		return err
	}
	switch {
	case !res.HasIndex:
		r.log.WithFields(fields).Warn("the backup has no image index (an older backup): run 'dtr backup --check-storage' to see whether the storage holds every referenced blob")
	case res.Check.MissingBlobs > 0:
		r.log.WithFields(fields).Warn("restored, but " + storageFix(res.Check))
	default:
		fields["referencedBlobs"] = res.Check.ReferencedBlobs
		r.log.WithFields(fields).Info("restored the images: the storage holds every referenced blob")
	}
	return os.Remove(spool)
}

// restoredIndex is where a restore whose storage lacked blobs keeps the
// backup's image index, until a storage check finds them all.
func (d onDisk) restoredIndex() string { return filepath.Join(d.dataDir, "restore", "images.json") }

// checkRestored compares the index of the backup this replica restored, if
// storage lacked some of its blobs then, with the storage now; nil when
// there is none, and it forgets the index once nothing is missing.
func (r *Replica) checkRestored(ctx context.Context, drv driver.StorageDriver) (*contract.StorageCheck, error) {
	b, err := os.ReadFile(r.disk.restoredIndex())
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ix, err := backup.ParseImageIndex(b)
	if err != nil {
		return nil, fmt.Errorf("the restored image index %s: %w", r.disk.restoredIndex(), err)
	}
	res, err := ix.CheckStorage(func(d string) (bool, error) {
		_, err := drv.Stat(ctx, gc.BlobDataPath(d))
		if isNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return nil, err
	}
	if res.MissingBlobs == 0 {
		if err := os.Remove(r.disk.restoredIndex()); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	return &res, nil
}
