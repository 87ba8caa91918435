package meta

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/contract"
)

// Where the cluster's own records go in a backup (docs/architecture.md §5); every other
// record goes under meta/<kind>/….
var backupPaths = map[string]string{
	key("cluster"):               contract.RecordCluster,
	key("settings"):              contract.RecordSettings,
	key("ca"):                    contract.RecordCA,
	key("keys", "token"):         contract.RecordTokenKey,
	key("keys", "token-retired"): contract.RecordRetiredTokens,
}

// BackupPath is the archive path of key k; transient keys have none.
func BackupPath(k string) (string, bool) {
	if p, ok := backupPaths[k]; ok {
		return p, true
	}
	rest, ok := strings.CutPrefix(k, Prefix)
	if !ok || rest == "" || transient(rest) {
		return "", false
	}
	return "meta/" + backup.SafeName(rest) + ".json", true
}

// transient reports whether a key (below Prefix) is left out of backups:
// replica health reports and draining marks describe replicas a restore
// does not bring back; garbage collection's lease and tombstones hold only
// while their etcd leases do; console sessions belong to browsers of the
// old cluster and would only widen what a stolen backup opens.
func transient(rest string) bool {
	for _, p := range []string{"replicas/", "draining/", "gc/", "sessions/"} {
		if strings.HasPrefix(rest, p) {
			return true
		}
	}
	return false
}

// dumpPage bounds one read of a dump: the backup streams, never holding
// the whole keyspace in memory.
const dumpPage = 500

// Dump calls fn with every record under Prefix, all read at one revision
// (the current one, read with quorum) while writes go on; it returns that
// revision.
func (s *Store) Dump(ctx context.Context, fn func(path string, rec backup.Record) error) (int64, error) {
	first, err := s.KV.Get(ctx, Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("reading the metadata revision: %w", err)
	}
	rev := first.Header.Revision
	from, end := Prefix, clientv3.GetPrefixRangeEnd(Prefix)
	for {
		resp, err := s.KV.Get(ctx, from, clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithLimit(dumpPage))
		if err != nil {
			return rev, fmt.Errorf("reading the metadata at revision %d: %w", rev, err)
		}
		for _, kv := range resp.Kvs {
			p, ok := BackupPath(string(kv.Key))
			if !ok {
				continue
			}
			if !json.Valid(kv.Value) {
				return rev, fmt.Errorf("record %s is not JSON", kv.Key)
			}
			if err := fn(p, backup.Record{Key: string(kv.Key), Value: kv.Value}); err != nil {
				return rev, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// loadBatch stays under etcd's default limit of 128 operations per txn.
const loadBatch = 100

// Loader writes a backup's records into an empty keyspace. The cluster
// record is written last, by Finish: a replica that finds no cluster record
// knows the load did not complete and may run it again (puts are idempotent).
type Loader struct {
	s       *Store
	ops     []clientv3.Op
	cluster *backup.Record
	// Settings, when set, may change the restored settings (storage, URL).
	Settings func(*Settings) error
	Count    int
}

// NewLoader starts a load.
func (s *Store) NewLoader() *Loader { return &Loader{s: s} }

// Add queues one record, writing a batch when it is full.
func (l *Loader) Add(ctx context.Context, rec backup.Record) error {
	rest, ok := strings.CutPrefix(rec.Key, Prefix)
	if !ok || rest == "" || transient(rest) {
		return fmt.Errorf("record key %q is outside dtr's keyspace", rec.Key)
	}
	value := []byte(rec.Value)
	switch rec.Key {
	case key("cluster"):
		var c Cluster
		if err := json.Unmarshal(value, &c); err != nil || c.ID == "" || c.HTTPSecret == "" {
			return fmt.Errorf("the cluster record is damaged: %v", err)
		}
		l.cluster = &rec
		return nil
	case key("settings"):
		if l.Settings != nil {
			var st Settings
			if err := json.Unmarshal(value, &st); err != nil {
				return fmt.Errorf("the settings record is damaged: %w", err)
			}
			if err := l.Settings(&st); err != nil {
				return err
			}
			if err := st.Storage.Validate(); err != nil {
				return err
			}
			b, err := json.Marshal(st)
			if err != nil {
				return err
			}
			value = b
		}
	}
	l.ops = append(l.ops, clientv3.OpPut(rec.Key, string(value)))
	l.Count++
	if len(l.ops) >= loadBatch {
		return l.flush(ctx)
	}
	return nil
}

func (l *Loader) flush(ctx context.Context) error {
	if len(l.ops) == 0 {
		return nil
	}
	if _, err := l.s.KV.Txn(ctx).Then(l.ops...).Commit(); err != nil {
		return fmt.Errorf("writing restored records: %w", err)
	}
	l.ops = l.ops[:0]
	return nil
}

// Finish writes what is queued, then the cluster record, and returns it.
func (l *Loader) Finish(ctx context.Context) (Cluster, error) {
	if l.cluster == nil {
		return Cluster{}, fmt.Errorf("the backup has no cluster record (config/cluster.json)")
	}
	for _, k := range []string{key("ca"), key("keys", "token"), key("settings")} {
		found := false
		for _, op := range l.ops {
			if string(op.KeyBytes()) == k {
				found = true
			}
		}
		if !found {
			if resp, err := l.s.KV.Get(ctx, k, clientv3.WithCountOnly()); err != nil {
				return Cluster{}, err
			} else if resp.Count == 0 {
				p, _ := BackupPath(k)
				return Cluster{}, fmt.Errorf("the backup lacks %s", p)
			}
		}
	}
	if err := l.flush(ctx); err != nil {
		return Cluster{}, err
	}
	if _, err := l.s.KV.Put(ctx, l.cluster.Key, string(l.cluster.Value)); err != nil {
		return Cluster{}, fmt.Errorf("writing the cluster record: %w", err)
	}
	l.Count++
	return l.s.Cluster(ctx)
}

// KeepReplicaReports deletes the health reports of replicas not in ids (after
// a restore or an emergency repair they are gone for good).
func (s *Store) KeepReplicaReports(ctx context.Context, ids []string) error {
	reports, err := s.HealthReports(ctx)
	if err != nil {
		return err
	}
	for _, r := range reports {
		keep := false
		for _, id := range ids {
			keep = keep || id == r.ID
		}
		if !keep {
			if err := s.DeleteHealthReport(ctx, r.ID); err != nil {
				return err
			}
		}
	}
	return nil
}
