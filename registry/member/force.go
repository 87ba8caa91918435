package member

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

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
			"ForceNewCluster recovers a surviving member; start from a backup with 'dtr restore' instead", cfg.Name, cfg.Dir)
	}
	learner, err := storedAsLearner(cfg)
	if err != nil {
		return nil, fmt.Errorf("forcing a new etcd cluster from %s: %w", cfg.Name, err)
	}
	if learner {
		// raft panics ("removed all voters") when forcing from a learner,
		// which would take the whole dtr process down.
		return nil, fmt.Errorf("forcing a new etcd cluster from %s: it is a learner, which holds no vote and may lack committed data; "+
			"force from a surviving voter, or restore a backup with 'dtr restore'", cfg.Name)
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
