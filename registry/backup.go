package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/registry/meta"
)

// BackupOptions are what dtr backup asks for.
type BackupOptions struct {
	// IncludeImages adds every referenced blob and manifest.
	IncludeImages bool
}

// WriteBackup streams a backup of the cluster to w (docs/architecture.md §5): every
// record read at one metadata revision while the replica keeps serving, the
// operator's TLS certificate if there is one, the image index of the
// repositories at that revision (and with IncludeImages their blobs), and
// the manifest last.
func (r *Replica) WriteBackup(ctx context.Context, w io.Writer, o BackupOptions) (backup.Manifest, error) {
	start := time.Now()
	drv := r.storageDriver()
	if drv == nil && o.IncludeImages {
		return backup.Manifest{}, errors.New("the registry storage is not configured yet; back up the images once the replica is healthy")
	}
	bw, err := backup.NewWriter(w, images.Version)
	if err != nil {
		return backup.Manifest{}, err
	}
	var repos []string
	rev, err := r.store.Dump(ctx, func(path string, rec backup.Record) error {
		if name, ok := meta.RepositoryOfKey(rec.Key); ok {
			repos = append(repos, name)
		}
		return bw.AddJSON(path, rec)
	})
	if err != nil {
		return backup.Manifest{}, err
	}
	if r.opts.TLSCertFile != "" {
		for name, file := range map[string]string{backup.TLSCertFile: r.opts.TLSCertFile, backup.TLSKeyFile: r.opts.TLSKeyFile} {
			if err := addFile(bw, name, file); err != nil {
				return backup.Manifest{}, err
			}
		}
	}
	if drv != nil {
		// The repositories of the dumped revision: what a restore of these
		// records serves.
		ix, err := r.imageIndex(ctx, drv, repos, o.IncludeImages)
		if err != nil {
			return backup.Manifest{}, err
		}
		if err := bw.AddImageIndex(ix, o.IncludeImages); err != nil {
			return backup.Manifest{}, err
		}
		if o.IncludeImages {
			if err := r.writeImages(ctx, drv, bw, ix); err != nil {
				return backup.Manifest{}, err
			}
		}
	}
	m := backup.Manifest{
		DTRVersion:    images.Version,
		Created:       time.Now().UTC().Truncate(time.Second),
		ClusterID:     r.cluster.ID,
		SourceReplica: r.opts.ReplicaID,
		EtcdRevision:  rev,
	}
	if err := bw.Close(m); err != nil {
		return backup.Manifest{}, err
	}
	m = bw.Manifest()
	f := map[string]any{"revision": rev, "took": time.Since(start).Round(time.Millisecond)}
	if m.Images != nil {
		f["images"], f["blobs"], f["bytes"], f["missing"] = m.Images.Included, m.Images.Blobs, m.Images.Bytes, m.Images.Missing
	}
	r.log.WithFields(f).Info("backup written")
	return m, nil
}

func addFile(bw *backup.Writer, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return bw.Add(name, st.Size(), f)
}

// loadBackup writes a received backup's records into this replica's new,
// empty metadata member and returns the restored cluster. It verifies the
// file again when it may have sat on a disk since it was received (a
// restart): a pass over every byte, which the blobs of a backup with images
// make long, so not when this process verified it a moment ago.
func (r *Replica) loadBackup(ctx context.Context, path string) (meta.Cluster, error) {
	f, err := os.Open(path)
	if err != nil {
		return meta.Cluster{}, err
	}
	defer f.Close()
	var m backup.Manifest
	if rm := r.received.Load(); rm != nil {
		m = *rm
	} else {
		// Its blobs, if any, were staged in the storage as it was
		// received: finishRestore checks them there.
		if m, err = backup.VerifyStream(f, backup.VerifyOptions{BlobsElsewhere: true}); err != nil {
			return meta.Cluster{}, fmt.Errorf("the backup in %s: %w", path, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return meta.Cluster{}, err
		}
	}
	if err := backup.CheckVersion(m, images.Version); err != nil {
		return meta.Cluster{}, err
	}
	start := time.Now()
	l := r.store.NewLoader()
	o := r.opts
	l.Settings = func(st *meta.Settings) error {
		if o.ExternalURL != "" {
			st.ExternalURL = o.ExternalURL
		}
		if o.RestoreStorage == contract.RestoreFilesystem {
			st.Storage = meta.Storage{Type: "filesystem"}
		}
		return nil
	}
	err = backup.Walk(f, func(p string, b []byte) error {
		if !backup.IsRecord(p) {
			return nil
		}
		rec, err := backup.ParseRecord(p, b)
		if err != nil {
			return err
		}
		return l.Add(ctx, rec)
	})
	if err != nil {
		return meta.Cluster{}, fmt.Errorf("loading the backup: %w", err)
	}
	c, err := l.Finish(ctx)
	if err != nil {
		return meta.Cluster{}, fmt.Errorf("loading the backup: %w", err)
	}
	if c.ID != m.ClusterID {
		return meta.Cluster{}, fmt.Errorf("loading the backup: its cluster record says %s but its manifest %s", c.ID, m.ClusterID)
	}
	r.log.WithFields(map[string]any{"cluster": c.ID, "records": l.Count, "from": m.SourceReplica,
		"revision": m.EtcdRevision, "took": time.Since(start).Round(time.Millisecond)}).Info("restored the backup's records")
	return c, nil
}

// isRestoreClient: only the installer, holding a client certificate the
// cluster CA issued for this purpose, may hand a replica a backup.
func isRestoreClient(cn string) bool { return strings.EqualFold(cn, backup.RestoreClientName) }
