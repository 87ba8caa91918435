package member

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
)

// restoreRevisionBump lifts every revision after a restore so that a watcher
// or cache holding a pre-restore revision cannot silently resume; with
// MarkCompacted it is told its revision is gone and must re-list.
const restoreRevisionBump = 1_000_000

// Restore writes the snapshot at snapshotPath (from Member.Snapshot) into
// cfg.Dir as a new one-member cluster named cfg.Name at cfg.PeerAdvertise;
// Start(cfg) then serves it. cfg.Dir must be absent or empty: Restore never
// overwrites a member's data. Other replicas must be wiped and re-joined.
func Restore(snapshotPath string, cfg Config) error {
	if cfg.Join {
		return fmt.Errorf("restoring etcd member %s: Join is set, but a restore founds a new one-member cluster; unset Join", cfg.Name)
	}
	cfg.InitialCluster = "" // a restore always founds a one-member cluster
	cfg, err := cfg.normalized()
	if err != nil {
		return err
	}
	fi, err := os.Stat(snapshotPath)
	if err != nil {
		return fmt.Errorf("restoring etcd member %s: snapshot: %w", cfg.Name, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("restoring etcd member %s: snapshot %s is not a regular file", cfg.Name, snapshotPath)
	}
	if err := requireEmptyDir(cfg.Dir); err != nil {
		return fmt.Errorf("restoring etcd member %s: %w", cfg.Name, err)
	}

	// Restore into a sibling temp dir and rename it into place, so a failed
	// or interrupted restore never leaves a half-written member in cfg.Dir
	// that a later Start would boot from.
	parent := filepath.Dir(cfg.Dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("restoring etcd member %s: %w", cfg.Name, err)
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(cfg.Dir)+".restoring-")
	if err != nil {
		return fmt.Errorf("restoring etcd member %s: %w", cfg.Name, err)
	}
	defer os.RemoveAll(tmp) // a no-op after the rename

	lg, err := newLogger(cfg.LogLevel, nil)
	if err != nil {
		return err
	}
	err = snapshot.NewV3(lg).Restore(snapshot.RestoreConfig{
		SnapshotPath:        snapshotPath,
		Name:                cfg.Name,
		OutputDataDir:       tmp,
		PeerURLs:            []string{cfg.PeerAdvertise},
		InitialCluster:      cfg.InitialCluster,
		InitialClusterToken: cfg.ClusterToken,
		RevisionBump:        restoreRevisionBump,
		MarkCompacted:       true,
	})
	if err != nil {
		return fmt.Errorf("restoring etcd member %s from %s: %w (a hash mismatch means the snapshot is damaged or incomplete; nothing was written to %s)",
			cfg.Name, snapshotPath, err, cfg.Dir)
	}
	if err := os.Remove(cfg.Dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("restoring etcd member %s: replacing empty %s: %w", cfg.Name, cfg.Dir, err)
	}
	if err := os.Rename(tmp, cfg.Dir); err != nil {
		return fmt.Errorf("restoring etcd member %s: moving restored data into %s: %w", cfg.Name, cfg.Dir, err)
	}
	return nil
}

// requireEmptyDir refuses a dir that holds anything.
func requireEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("checking %s is empty: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("refusing to write into %s: it is not empty (holds %s…); move it aside or choose an empty directory", dir, entries[0].Name())
	}
	return nil
}

// ForceNewCluster makes the stopped member in cfg.Dir the only member of
// its cluster, keeping its committed data, when the other members are lost
// for good. It starts once with etcd's ForceNewCluster, then restarts
// without it (left set, it would re-force membership on every boot) and
// returns that member. Every other replica must then be wiped and re-joined.
func ForceNewCluster(ctx context.Context, cfg Config) (*Member, error) {
	cfg.Join = false
	cfg.ForceNewCluster = false
	cfg, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	if !hasData(cfg.Dir) {
		return nil, fmt.Errorf("forcing a new etcd cluster from %s: %s holds no member data (no member/wal); "+
			"ForceNewCluster recovers a surviving member, use Restore to start from a backup", cfg.Name, cfg.Dir)
	}
	learner, err := storedAsLearner(cfg)
	if err != nil {
		return nil, fmt.Errorf("forcing a new etcd cluster from %s: %w", cfg.Name, err)
	}
	if learner {
		// raft panics ("removed all voters") when forcing from a learner,
		// which would take the whole dtr process down.
		return nil, fmt.Errorf("forcing a new etcd cluster from %s: it is a learner, which holds no vote and may lack committed data; "+
			"force from a surviving voter, or Restore a backup", cfg.Name)
	}

	forced := cfg
	forced.ForceNewCluster = true
	m, err := Start(ctx, forced)
	if err != nil {
		return nil, fmt.Errorf("forcing a new etcd cluster from %s: %w", cfg.Name, err)
	}
	if err := m.Close(); err != nil {
		return nil, fmt.Errorf("forcing a new etcd cluster from %s: stopping after the forced start: %w", cfg.Name, err)
	}
	m, err = Start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("forcing a new etcd cluster from %s: the forced start worked, restarting normally failed: %w", cfg.Name, err)
	}
	return m, nil
}

// storedAsLearner reads the member's own entry from its stopped database.
// Opening the file also proves the member is stopped: a running one holds
// its lock.
func storedAsLearner(cfg Config) (bool, error) {
	path := filepath.Join(cfg.Dir, "member", "snap", "db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return false, fmt.Errorf("%s is locked: the member is still running; Close it (or stop its replica) first", path)
		}
		return false, fmt.Errorf("reading membership from %s: %w", path, err)
	}
	defer db.Close()
	learner := false
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("members")) // etcd storage/schema membersBucketName
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var m struct {
				Name      string   `json:"name"`
				PeerURLs  []string `json:"peerURLs"`
				IsLearner bool     `json:"isLearner"`
			}
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			if m.Name == cfg.Name || containsURL(m.PeerURLs, cfg.PeerAdvertise) {
				learner = m.IsLearner
			}
			return nil
		})
	})
	if err != nil {
		return false, fmt.Errorf("reading membership from %s: %w", path, err)
	}
	return learner, nil
}
