package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/gc"
	"github.com/dtr-registry/dtr/registry/meta"
)

// A backup's blobs go straight into the storage the restore writes them
// to, into restoreStaging, while the upload is received and verified: one
// hash and one write of each byte on the replica, where a spool would take
// two of each. They move to their digest's path only once the whole backup
// verified and its records are loaded (finishRestore); a refused upload
// removes the staging area.

// stagingPath is where blob d waits in the storage.
func stagingPath(d string) string {
	return path.Join(restoreStaging, strings.TrimPrefix(d, "sha256:"))
}

// stager writes the blobs of an upload into the staging area of the
// storage the restore will use: the replica's filesystem storage, or the
// storage the backup's settings record names (read from the stream, which
// holds the records before the blobs).
type stager struct {
	ctx      context.Context
	r        *Replica
	settings bytes.Buffer // config/settings.json as it arrives
	drv      driver.StorageDriver
	staged   int
}

// member takes a copy of the settings record as the verifier reads it.
func (s *stager) member(p string) io.Writer {
	if p == contract.RecordSettings {
		s.settings.Reset()
		return &limitedBuffer{b: &s.settings, left: 1 << 20} // a few hundred bytes
	}
	return nil
}

// storage opens the restore's storage, once, and empties its staging area
// (what an upload cut short left there).
func (s *stager) storage() (driver.StorageDriver, error) {
	if s.drv != nil {
		return s.drv, nil
	}
	st := meta.Storage{Type: "filesystem"}
	if s.r.opts.RestoreStorage != contract.RestoreFilesystem {
		rec, err := backup.ParseRecord(contract.RecordSettings, s.settings.Bytes())
		if err != nil {
			return nil, fmt.Errorf("%w: the settings record, which names the storage to restore the images to: %v", backup.ErrInvalid, err)
		}
		var set meta.Settings
		if err := json.Unmarshal(rec.Value, &set); err != nil {
			return nil, fmt.Errorf("%w: the settings record: %v", backup.ErrInvalid, err)
		}
		st = set.Storage
		if st.Type == "inmemory" {
			// Another driver of it would be another, empty storage.
			return nil, errors.New("the backed-up storage is in memory, which a restore cannot write into; restore with --dtr-storage-volume or --nfs-storage-url")
		}
	}
	drv, err := newDriver(context.WithoutCancel(s.ctx), st, s.r.opts.StorageRoot)
	if err != nil {
		return nil, fmt.Errorf("opening the %s storage to restore the images into: %w; restore with --dtr-storage-volume or --nfs-storage-url to use another", st.Type, err)
	}
	if err := drv.Delete(s.ctx, restoreStaging); err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("emptying the staging area %s of the storage: %w", restoreStaging, err)
	}
	s.drv = drv
	return drv, nil
}

// blob opens the staging file of blob d; a blob the storage holds already
// with that size is only verified.
func (s *stager) blob(d string, size int64) (backup.BlobSink, error) {
	drv, err := s.storage()
	if err != nil {
		return nil, err
	}
	if fi, err := drv.Stat(s.ctx, gc.BlobDataPath(d)); err == nil && fi.Size() == size {
		return discardSink{}, nil // content-addressed: the same bytes
	}
	w, err := drv.Writer(s.ctx, stagingPath(d), false)
	if err != nil {
		return nil, fmt.Errorf("writing blob %s to the storage: %w", d, err)
	}
	s.staged++
	return &stagedBlob{ctx: s.ctx, w: w, digest: d}, nil
}

// discard removes the staging area: the upload was refused.
func (s *stager) discard() {
	if s.drv == nil {
		return
	}
	if err := s.drv.Delete(context.WithoutCancel(s.ctx), restoreStaging); err != nil && !isNotFound(err) {
		s.r.log.WithError(err).Warnf("removing the staging area %s of a refused backup from the storage", restoreStaging)
	}
}

type stagedBlob struct {
	ctx    context.Context
	w      driver.FileWriter
	digest string
}

func (b *stagedBlob) Write(p []byte) (int, error) {
	n, err := b.w.Write(p)
	if err != nil {
		err = fmt.Errorf("writing blob %s to the storage: %w", b.digest, err)
	}
	return n, err
}

func (b *stagedBlob) Commit() error {
	if err := b.w.Commit(b.ctx); err != nil {
		b.w.Close()
		return fmt.Errorf("writing blob %s to the storage: %w", b.digest, err)
	}
	if err := b.w.Close(); err != nil {
		return fmt.Errorf("writing blob %s to the storage: %w", b.digest, err)
	}
	return nil
}

func (b *stagedBlob) Cancel() {
	_ = b.w.Cancel(b.ctx)
	b.w.Close()
}

type discardSink struct{}

func (discardSink) Write(p []byte) (int, error) { return len(p), nil }
func (discardSink) Commit() error               { return nil }
func (discardSink) Cancel()                     {}

// limitedBuffer keeps at most left bytes and drops the rest (the verifier
// refuses a member that large anyway).
type limitedBuffer struct {
	b    *bytes.Buffer
	left int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if len(p) > l.left {
		l.left = 0
		return len(p), nil
	}
	l.left -= len(p)
	return l.b.Write(p)
}

// placeStaged moves a verified blob from the staging area to its digest's
// path; one the storage holds already with its size stays as it is. With
// rehash (a replica that did not receive the upload itself: restarted
// since) the staged bytes are checked against the digest again first.
func placeStaged(ctx context.Context, drv driver.StorageDriver, b backup.Blob, rehash bool, buf []byte) (moved bool, err error) {
	final := gc.BlobDataPath(b.Digest)
	staged := stagingPath(b.Digest)
	fi, err := drv.Stat(ctx, final)
	switch {
	case err == nil && fi.Size() == b.Size:
		// content-addressed: the same bytes, as when restoreImages kept it
		if err := drv.Delete(ctx, staged); err != nil && !isNotFound(err) {
			return false, fmt.Errorf("removing the staged copy of blob %s: %w", b.Digest, err)
		}
		return false, nil
	case err != nil && !isNotFound(err):
		return false, fmt.Errorf("checking blob %s in storage: %w", b.Digest, err)
	}
	if rehash {
		if err := rehashBlob(ctx, drv, staged, b, buf); err != nil {
			return false, err
		}
	}
	if err := drv.Move(ctx, staged, final); err != nil {
		if isNotFound(err) {
			return false, fmt.Errorf("blob %s is neither in the storage's staging area nor in place: restore the backup again", b.Digest)
		}
		return false, fmt.Errorf("moving blob %s into place: %w", b.Digest, err)
	}
	return true, nil
}

// rehashBlob checks the bytes at p against blob b.
func rehashBlob(ctx context.Context, drv driver.StorageDriver, p string, b backup.Blob, buf []byte) error {
	rd, err := drv.Reader(ctx, p, 0)
	if isNotFound(err) {
		return fmt.Errorf("blob %s is neither in the storage's staging area nor in place: restore the backup again", b.Digest)
	}
	if err != nil {
		return fmt.Errorf("reading staged blob %s: %w", b.Digest, err)
	}
	defer rd.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, rd, buf)
	if err != nil {
		return fmt.Errorf("reading staged blob %s: %w", b.Digest, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); n != b.Size || got != b.Digest {
		return errors.New("blob " + b.Digest + " in the storage's staging area is damaged (" + got + "): restore the backup again")
	}
	return nil
}
