package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// nextBuild is the schema of a build one schema after this one: its
// migration marks every record under /dtr/mt/, counting its runs and
// telling seen every record it reads.
func nextBuild(runs *atomic.Int32, seen func(key string)) *meta.Schema {
	s := append(append(meta.Schema{}, meta.Current...), meta.Migration{
		Version: meta.SchemaVersion + 1, Name: "test-mark",
		Run: func(ctx context.Context, m *meta.Migrating) error {
			runs.Add(1)
			return m.Rewrite(ctx, meta.Prefix+"mt/", func(k string, v []byte) ([]byte, bool, error) {
				seen(k)
				var rec map[string]any
				if err := json.Unmarshal(v, &rec); err != nil {
					return nil, false, err
				}
				if rec["marked"] == true {
					return nil, true, nil
				}
				rec["marked"] = true
				b, err := json.Marshal(rec)
				return b, false, err
			})
		},
	})
	return &s
}

// putRecords writes n records under /dtr/mt/ for the test migration.
func putRecords(t *testing.T, r *registrytest.Replica, n int) {
	t.Helper()
	var ops []clientv3.Op
	for i := range n {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("%smt/%04d", meta.Prefix, i), fmt.Sprintf(`{"n":%d}`, i)))
		if len(ops) == 100 || i == n-1 {
			if _, err := r.MetaStore().KV.Txn(t.Context()).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
			ops = nil
		}
	}
}

// unmarked counts the records under /dtr/mt/ the test migration has not marked.
func unmarked(t *testing.T, r *registrytest.Replica) int {
	t.Helper()
	resp, err := r.MetaStore().KV.Get(t.Context(), meta.Prefix+"mt/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, kv := range resp.Kvs {
		if !strings.Contains(string(kv.Value), `"marked":true`) {
			n++
		}
	}
	return n
}

// schemaStatus is cluster_status's schema as r answers it.
func schemaStatus(t *testing.T, r *registrytest.Replica) contract.SchemaStatus {
	t.Helper()
	var cs contract.ClusterStatus
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/meta/cluster_status", nil, &cs); st != 200 || cs.Schema == nil {
		t.Fatalf("cluster_status: %d, schema %+v", st, cs.Schema)
	}
	return *cs.Schema
}

// waitSchema waits until r's cluster_status says the cluster is at schema v.
func waitSchema(t *testing.T, r *registrytest.Replica, v int, within time.Duration) contract.SchemaStatus {
	t.Helper()
	var s contract.SchemaStatus
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if s = schemaStatus(t, r); s.Version == v {
			return s
		}
	}
	t.Fatalf("the cluster is not at schema %d after %v: %+v", v, within, s)
	return s
}

// upgrade restarts r on the same data with the build of schema s.
func upgrade(r *registrytest.Replica, s *meta.Schema) *registrytest.Replica {
	r.Opts.Schema = s
	return r.Restart()
}

// TestSchemaMigrationOnceEveryReplicaRunsIt: three replicas upgraded one at
// a time to a build with a migration. While one still runs the build before,
// nothing migrates and cluster_status names it; once the last is upgraded,
// the metadata leader migrates, once.
func TestSchemaMigrationOnceEveryReplicaRunsIt(t *testing.T) {
	registry.SetMigrationTiming(t, 200*time.Millisecond, time.Second)
	r1 := registrytest.StartNew(t)
	r2 := join(t, r1, "bbbbbbbbbbbb")
	r3 := join(t, r1, "cccccccccccc")
	putRecords(t, r1, 150)
	var runs atomic.Int32
	next := nextBuild(&runs, func(string) {})

	r1 = upgrade(r1, next)
	r2 = upgrade(r2, next)
	var s contract.SchemaStatus
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		s = schemaStatus(t, r2)
		// The upgraded replicas' reports carry the new schema; r3's the old.
		if s.Target == meta.SchemaVersion+1 && strings.Contains(s.Pending, "replica cccccccccccc runs dtr") && !strings.Contains(s.Pending, "aaaaaaaaaaaa") && !strings.Contains(s.Pending, "bbbbbbbbbbbb") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster_status with one replica on the build before: %+v", s)
		}
	}
	if !strings.Contains(s.Pending, fmt.Sprintf("(schema %d)", meta.SchemaVersion)) {
		t.Errorf("pending %q does not name the old replica's schema", s.Pending)
	}
	// The restarts may have left the old replica leading, and only an
	// upgraded leader could migrate: restart it on its build, so that one of
	// the upgraded replicas leads while it waits.
	if leader(t, r1) == "cccccccccccc" {
		r3 = r3.Restart()
	}
	if l := leader(t, r1); l == "cccccccccccc" {
		t.Fatalf("the replica on the build before still leads")
	}
	// Several looks and more than the settle time: still nothing.
	time.Sleep(2500 * time.Millisecond)
	if n := runs.Load(); n != 0 || schemaStatus(t, r1).Version != meta.SchemaVersion {
		t.Fatalf("the migration ran %d times while a replica ran the build before", n)
	}
	if n := unmarked(t, r1); n != 150 {
		t.Fatalf("%d of 150 records unmarked before the last upgrade", n)
	}

	r3 = upgrade(r3, next)
	s = waitSchema(t, r3, meta.SchemaVersion+1, 30*time.Second)
	if s.Target != meta.SchemaVersion+1 || s.Pending != "" || s.MigratedAt.IsZero() {
		t.Errorf("cluster_status after the migration: %+v", s)
	}
	time.Sleep(time.Second) // more looks by every replica
	if n := runs.Load(); n != 1 {
		t.Fatalf("the migration ran %d times with three replicas, want once", n)
	}
	if n := unmarked(t, r2); n != 0 {
		t.Fatalf("%d records left unmarked", n)
	}
}

// TestSchemaMigrationResumesAfterRestart: a replica that dies between two
// batches of a migration leaves its progress in the schema record; started
// again, it goes on after the last batch written: no record is read twice.
func TestSchemaMigrationResumesAfterRestart(t *testing.T) {
	registry.SetMigrationTiming(t, 200*time.Millisecond, 0)
	r := registrytest.StartNew(t)
	putRecords(t, r, 250)
	var mu sync.Mutex
	seen := map[string]int{}
	var runs atomic.Int32
	next := nextBuild(&runs, func(k string) { mu.Lock(); seen[k]++; mu.Unlock() })

	killed := make(chan struct{})
	var once sync.Once
	registry.SetAfterMigrationBatch(t, func(ctx context.Context, _ string, n int) error {
		if n == 1 {
			once.Do(func() { close(killed) })
			<-ctx.Done() // hangs here until the replica stops: dies between batches
			return ctx.Err()
		}
		return nil
	})
	r = upgrade(r, next)
	select {
	case <-killed:
	case <-time.After(30 * time.Second):
		t.Fatal("the migration did not start")
	}
	s := schemaStatus(t, r)
	if s.Version != meta.SchemaVersion || !strings.Contains(s.Pending, "under way on replica aaaaaaaaaaaa") || !strings.Contains(s.Pending, "1 batches written") {
		t.Fatalf("cluster_status mid-migration: %+v", s)
	}
	var batches atomic.Int32
	registry.SetAfterMigrationBatch(t, func(context.Context, string, int) error { batches.Add(1); return nil })
	r = r.Restart()
	waitSchema(t, r, meta.SchemaVersion+1, 30*time.Second)
	if n := unmarked(t, r); n != 0 {
		t.Fatalf("%d records left unmarked", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range 250 {
		if k := fmt.Sprintf("%smt/%04d", meta.Prefix, i); seen[k] != 1 {
			t.Fatalf("%s read %d times across the restart, want once: the restarted run did not go on after the last batch", k, seen[k])
		}
	}
	if runs.Load() != 2 || batches.Load() != 2 {
		t.Errorf("%d runs and %d batches after the restart, want 2 runs and the 2 batches left", runs.Load(), batches.Load())
	}
}

// TestSchemaDowngradeRefused: a replica whose build is older than the
// cluster's schema refuses to start, saying which versions and what to do;
// one already running leaves the load balancer (/_ping 503) once a newer
// build migrated the cluster.
func TestSchemaDowngradeRefused(t *testing.T) {
	r := registrytest.StartNew(t)
	o := r.Opts
	o.AdminPassword = ""
	r.Stop()
	old := meta.Schema{} // a build from before schema 2
	o.Schema = &old
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if rep, err := registry.Start(ctx, o); err == nil {
		rep.Close()
		t.Fatal("a replica of schema 1 started on a cluster at schema 2")
	} else if msg := err.Error(); !strings.Contains(msg, "knows metadata schema 1") || !strings.Contains(msg, fmt.Sprintf("at schema %d", meta.SchemaVersion)) ||
		!strings.Contains(msg, "does not downgrade") || !strings.Contains(msg, "dtr restore") {
		t.Fatalf("the refusal does not name the versions and the way back: %v", err)
	}

	o.Schema = nil
	r = registrytest.Start(t, o) // this build still starts
	newer, _ := json.Marshal(meta.SchemaRecord{Version: meta.SchemaVersion + 1, MigratedAt: time.Now().UTC(), By: "zzzzzzzzzzzz", DTRVersion: "9.0.0"})
	if _, err := r.MetaStore().KV.Put(t.Context(), meta.Prefix+"schema", string(newer)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st, body := get(r.HTTP + "/_ping")
		if st == http.StatusServiceUnavailable && strings.Contains(body, "dtr 9.0.0 or later") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/_ping of a replica older than the cluster's schema: %d %s", st, body)
		}
	}
}

// TestRestoredBackupKeepsSchema: a restore keeps the backed-up cluster's
// schema record. A backup without one (versions before schema versions)
// is at schema 1, and this build's migration to schema 2 runs on the
// restored cluster: refresh tokens stored without an expiry get the one
// they had in effect and keep working.
func TestRestoredBackupKeepsSchema(t *testing.T) {
	registry.SetMigrationTiming(t, 200*time.Millisecond, 3*time.Second)
	a := registrytest.StartNew(t)
	orig := schemaStatus(t, a)
	origRec, _, err := a.MetaStore().Schema(t.Context())
	if err != nil || origRec.Version != meta.SchemaVersion || origRec.By != a.Opts.ReplicaID {
		t.Fatalf("a new cluster's schema record: %+v %v", origRec, err)
	}
	refresh := offlineToken(t, a)
	bkNew := takeBackup(t, a)

	// As a version before schema 2 left it: no schema record, refresh
	// tokens without an expiry.
	ctx := t.Context()
	kv := a.MetaStore().KV
	resp, err := kv.Get(ctx, meta.Prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	tokens := 0
	for _, x := range resp.Kvs {
		k := string(x.Key)
		if !strings.HasPrefix(k, meta.Prefix+"tokens/") && !strings.HasPrefix(k, meta.Prefix+"usertokens/") {
			continue
		}
		var rt meta.RefreshToken
		if err := json.Unmarshal(x.Value, &rt); err != nil {
			t.Fatal(err)
		}
		rt.ExpiresAt = time.Time{}
		b, _ := json.Marshal(rt)
		if _, err := kv.Put(ctx, k, string(b)); err != nil {
			t.Fatal(err)
		}
		tokens++
	}
	if tokens != 2 {
		t.Fatalf("%d refresh token records, want the token's two", tokens)
	}
	if _, err := kv.Delete(ctx, meta.Prefix+"schema"); err != nil {
		t.Fatal(err)
	}
	bkOld := takeBackup(t, a)
	a.Stop()

	restore := func(bk []byte, id string) *registrytest.Replica {
		o := restoreOptions(t, bk, filepath.Join(t.TempDir(), id))
		o.ReplicaID = id
		os.MkdirAll(filepath.Join(o.DataDir, "restore"), 0o700)
		if err := os.WriteFile(filepath.Join(o.DataDir, "restore", "backup.tar"), bk, 0o600); err != nil {
			t.Fatal(err)
		}
		return registrytest.Start(t, o)
	}
	b := restore(bkNew, "bbbbbbbbbbbb")
	rec, _, err := b.MetaStore().Schema(ctx)
	if err != nil || rec.Version != origRec.Version || rec.By != origRec.By || !rec.MigratedAt.Equal(origRec.MigratedAt) {
		t.Fatalf("schema record after a restore: %+v %v, want the backed-up %+v", rec, err, origRec)
	}
	if s := schemaStatus(t, b); s.Version != orig.Version || s.Target != orig.Target || s.Pending != "" || !s.MigratedAt.Equal(orig.MigratedAt) {
		t.Errorf("cluster_status schema after a restore: %+v, want %+v", s, orig)
	}
	b.Stop()

	c := restore(bkOld, "cccccccccccc")
	if s := schemaStatus(t, c); s.Version != meta.BaselineSchema || s.Target != meta.SchemaVersion {
		t.Fatalf("cluster_status schema of a restored backup without a schema record: %+v, want version %d, target %d", s, meta.BaselineSchema, meta.SchemaVersion)
	}
	waitSchema(t, c, meta.SchemaVersion, 30*time.Second)
	rec, _, _ = c.MetaStore().Schema(ctx)
	if rec.By != "cccccccccccc" || rec.Migrating != nil {
		t.Errorf("schema record after the restored cluster's migration: %+v", rec)
	}
	resp, err = c.MetaStore().KV.Get(ctx, meta.Prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range resp.Kvs {
		k := string(x.Key)
		if strings.HasPrefix(k, meta.Prefix+"tokens/") || strings.HasPrefix(k, meta.Prefix+"usertokens/") {
			var rt meta.RefreshToken
			if err := json.Unmarshal(x.Value, &rt); err != nil || !rt.ExpiresAt.Equal(rt.CreatedAt.Add(meta.DefaultRefreshTokenMaxAge)) {
				t.Errorf("%s after the migration: %s", k, x.Value)
			}
		}
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "service": {"dtr"}, "client_id": {"test"}}
	r, err := c.Client.PostForm(c.URL+"/auth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("a migrated refresh token: %d, want 200", r.StatusCode)
	}
}

// offlineToken is a refresh token for the admin, as docker login gets it.
func offlineToken(t *testing.T, r *registrytest.Replica) string {
	t.Helper()
	q := url.Values{"service": {"dtr"}, "offline_token": {"true"}, "client_id": {"test"}}
	req, _ := http.NewRequest(http.MethodGet, r.URL+"/auth/token?"+q.Encode(), nil)
	req.SetBasicAuth(admin, adminPW)
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.RefreshToken == "" {
		t.Fatalf("no refresh token: %v", err)
	}
	return out.RefreshToken
}

// leader is the replica ID of the metadata leader, as r sees it.
func leader(t *testing.T, r *registrytest.Replica) string {
	t.Helper()
	var cs contract.ClusterStatus
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/meta/cluster_status", nil, &cs); st != 200 {
		t.Fatalf("cluster_status: %d", st)
	}
	for _, m := range cs.Members {
		if m.IsLeader {
			return m.Name
		}
	}
	return ""
}
