package meta_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/member"
	"github.com/dtr-registry/dtr/registry/meta"
)

// startStore runs one metadata member on loopback and returns a Store on it.
func startStore(t *testing.T) *meta.Store {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer := fmt.Sprintf("http://%s", l.Addr())
	l.Close()
	sock, err := os.MkdirTemp("", "dtr-meta-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	m, err := member.Start(ctx, member.Config{
		Name: "m1", Dir: filepath.Join(t.TempDir(), "etcd"), PeerListen: peer, PeerAdvertise: peer,
		ClientSocket: filepath.Join(sock, "etcd.sock"), ClusterToken: "dtr-schema-test",
		StartTimeout: 20 * time.Second, SpaceReserve: -1, LowSpace: 16 << 20,
	})
	if err != nil {
		t.Fatalf("starting a metadata member: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return meta.New(m.Client())
}

// putOldTokens writes n refresh tokens as versions before expiry stored
// them (a zero expiresAt), both copies, and returns their keys.
func putOldTokens(t *testing.T, s *meta.Store, n int, created time.Time) []string {
	t.Helper()
	var keys []string
	var ops []clientv3.Op
	for i := range n {
		rt, _ := json.Marshal(meta.RefreshToken{User: fmt.Sprintf("u%d", i%7), CreatedAt: created, ClientID: "docker"})
		h := fmt.Sprintf("%064x", i)
		for _, k := range []string{meta.Prefix + "tokens/" + h, meta.Prefix + "usertokens/" + fmt.Sprintf("u%d", i%7) + "/" + h} {
			keys = append(keys, k)
			ops = append(ops, clientv3.OpPut(k, string(rt)))
		}
		if len(ops) >= 100 || i == n-1 {
			if _, err := s.KV.Txn(t.Context()).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
			ops = nil
		}
	}
	return keys
}

// TestMigrateRefreshTokenExpiry: schema 2 fills in the expiry every
// refresh token already had in effect, in batches within etcd's
// transaction limit, leaves tokens that have one and damaged records alone,
// keeps fields it does not know, and records the new version.
func TestMigrateRefreshTokenExpiry(t *testing.T) {
	s := startStore(t)
	ctx := t.Context()
	created := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	keys := putOldTokens(t, s, 250, created)
	withExp, _ := json.Marshal(meta.RefreshToken{User: "u1", CreatedAt: created, ExpiresAt: created.Add(time.Hour)})
	extra := `{"user":"u2","createdAt":"2026-11-01T10:00:00Z","futureField":42}`
	for k, v := range map[string]string{
		meta.Prefix + "tokens/has-expiry": string(withExp),
		meta.Prefix + "tokens/damaged":    "{not json",
		meta.Prefix + "tokens/extra":      extra,
	} {
		if _, err := s.KV.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := s.KV.Get(ctx, meta.Prefix+"tokens/has-expiry")

	if rec, rev, err := s.Schema(ctx); err != nil || rec.Version != meta.BaselineSchema || rev != 0 {
		t.Fatalf("schema of a keyspace without a schema record: %+v rev %d %v, want the baseline", rec, rev, err)
	}
	var batches []int
	ran, err := s.Migrate(ctx, meta.Current, meta.MigrateOptions{By: "r1", DTRVersion: "9.9.9", AfterBatch: func(_ context.Context, n int) error {
		batches = append(batches, n)
		return nil
	}})
	if err != nil || len(ran) != 1 || ran[0].Version != 2 {
		t.Fatalf("Migrate = %v, %v; want migration 2", ran, err)
	}
	// 251 tokens/ records to change (250 and extra): 3 pages; 250 usertokens/: 3.
	if len(batches) != 6 {
		t.Errorf("%d batches, want 6 (pages of %d)", len(batches), meta.MaxMigrationBatch)
	}
	for _, k := range keys {
		var rt meta.RefreshToken
		resp, err := s.KV.Get(ctx, k)
		if err != nil || len(resp.Kvs) != 1 || json.Unmarshal(resp.Kvs[0].Value, &rt) != nil {
			t.Fatalf("%s after the migration: %v", k, err)
		}
		if want := created.Add(meta.DefaultRefreshTokenMaxAge); !rt.ExpiresAt.Equal(want) || rt.User == "" || rt.ClientID != "docker" {
			t.Fatalf("%s after the migration: %+v, want expiry %s and the rest unchanged", k, rt, want)
		}
	}
	if after, _ := s.KV.Get(ctx, meta.Prefix+"tokens/has-expiry"); after.Kvs[0].ModRevision != before.Kvs[0].ModRevision {
		t.Errorf("a token that had an expiry was rewritten")
	}
	if resp, _ := s.KV.Get(ctx, meta.Prefix+"tokens/damaged"); string(resp.Kvs[0].Value) != "{not json" {
		t.Errorf("a damaged record was changed: %s", resp.Kvs[0].Value)
	}
	resp, _ := s.KV.Get(ctx, meta.Prefix+"tokens/extra")
	if v := string(resp.Kvs[0].Value); !strings.Contains(v, `"futureField":42`) || !strings.Contains(v, `"expiresAt":"2026-12-01T10:00:00Z"`) {
		t.Errorf("a record with a field this build does not know: %s", v)
	}
	rec, _, err := s.Schema(ctx)
	if err != nil || rec.Version != 2 || rec.Migrating != nil || rec.By != "r1" || rec.DTRVersion != "9.9.9" || rec.MigratedAt.IsZero() {
		t.Fatalf("schema after the migration: %+v %v", rec, err)
	}
	// Nothing left to do: a second run changes nothing.
	if ran, err := s.Migrate(ctx, meta.Current, meta.MigrateOptions{By: "r2"}); err != nil || len(ran) != 0 {
		t.Fatalf("a second Migrate = %v, %v; want nothing run", ran, err)
	}
}

// testSchema is the build's schema plus a migration to the next version
// that marks every record under /dtr/mt/ with by, telling seen what it reads.
func testSchema(by string, seen func(key string)) meta.Schema {
	return append(append(meta.Schema{}, meta.Current...), meta.Migration{
		Version: meta.SchemaVersion + 1, Name: "test-mark",
		Run: func(ctx context.Context, m *meta.Migrating) error {
			return m.Rewrite(ctx, meta.Prefix+"mt/", func(k string, v []byte) ([]byte, bool, error) {
				seen(k)
				var rec map[string]any
				if err := json.Unmarshal(v, &rec); err != nil {
					return nil, false, err
				}
				if rec["marked"] == true {
					return nil, true, nil
				}
				rec["marked"], rec["by"] = true, by
				b, err := json.Marshal(rec)
				return b, false, err
			})
		},
	})
}

func putMarked(t *testing.T, s *meta.Store, n int) {
	t.Helper()
	var ops []clientv3.Op
	for i := range n {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("%smt/%04d", meta.Prefix, i), fmt.Sprintf(`{"n":%d}`, i)))
		if len(ops) == 100 || i == n-1 {
			if _, err := s.KV.Txn(t.Context()).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
			ops = nil
		}
	}
}

func atSchema(t *testing.T, s *meta.Store, v int) {
	t.Helper()
	rec := meta.SchemaRecord{Version: v}
	b, _ := json.Marshal(rec)
	if _, err := s.KV.Put(t.Context(), meta.Prefix+"schema", string(b)); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateClaim: a replica that starts the migration while another is
// between batches (a new metadata leader while the old one still runs)
// takes it over after the other's cursor, and the other writes nothing
// more: its next batch fails on the claim, though it had records to write.
// A third run finishes after the second's cursor; every record is written
// once, by the run whose page it was.
func TestMigrateClaim(t *testing.T) {
	s := startStore(t)
	ctx := t.Context()
	atSchema(t, s, meta.SchemaVersion)
	putMarked(t, s, 250)
	var mu sync.Mutex
	seen := map[string]map[string]int{}
	schema := func(by string) meta.Schema {
		seen[by] = map[string]int{}
		return testSchema(by, func(k string) { mu.Lock(); seen[by][k]++; mu.Unlock() })
	}
	crash := errors.New("crashed")
	var bErr error
	_, aErr := s.Migrate(ctx, schema("a"), meta.MigrateOptions{By: "a", AfterBatch: func(ctx context.Context, n int) error {
		if n == 1 { // b takes over, writes one batch and crashes
			_, bErr = s.Migrate(ctx, schema("b"), meta.MigrateOptions{By: "b", AfterBatch: func(context.Context, int) error { return crash }})
		}
		return nil
	}})
	if !errors.Is(aErr, meta.ErrMigrationTaken) || !errors.Is(bErr, crash) {
		t.Fatalf("after the take-over: a's run %v (want ErrMigrationTaken), b's %v (want its crash)", aErr, bErr)
	}
	if ran, err := s.Migrate(ctx, schema("c"), meta.MigrateOptions{By: "c"}); err != nil || len(ran) != 1 {
		t.Fatalf("c's run: %v, %v", ran, err)
	}
	for i := range 250 {
		k := fmt.Sprintf("%smt/%04d", meta.Prefix, i)
		want := []string{"a", "b", "c"}[min(i/100, 2)]
		resp, _ := s.KV.Get(ctx, k)
		if v := string(resp.Kvs[0].Value); !strings.Contains(v, `"by":"`+want+`"`) || resp.Kvs[0].Version != 2 {
			t.Fatalf("%s = %s (version %d), want marked once, by %s", k, v, resp.Kvs[0].Version, want)
		}
		if n := seen[want][k]; n != 1 {
			t.Fatalf("%s read %d times by %s, want once", k, n, want)
		}
		if i < 100 && seen["b"][k]+seen["c"][k] > 0 || i < 200 && seen["c"][k] > 0 {
			t.Fatalf("%s read again by a run that took over after it: not resumed from the cursor", k)
		}
	}
	rec, _, _ := s.Schema(ctx)
	if rec.Version != meta.SchemaVersion+1 || rec.By != "c" || rec.Migrating != nil {
		t.Fatalf("schema after the take-overs: %+v", rec)
	}
}

// TestMigrateConflict: a record written by a client between the
// migration's read and its batch makes the batch fail as a whole; the page
// is read again, so the client's write is kept and migrated too.
func TestMigrateConflict(t *testing.T) {
	s := startStore(t)
	ctx := t.Context()
	atSchema(t, s, meta.SchemaVersion)
	putMarked(t, s, 10)
	target := meta.Prefix + "mt/0003"
	var once sync.Once
	calls := 0
	schema := testSchema("r1", func(k string) {
		if k == target {
			calls++
			once.Do(func() {
				if _, err := s.KV.Put(ctx, target, `{"n":3,"client":"wrote"}`); err != nil {
					t.Error(err)
				}
			})
		}
	})
	if _, err := s.Migrate(ctx, schema, meta.MigrateOptions{By: "r1"}); err != nil {
		t.Fatal(err)
	}
	resp, _ := s.KV.Get(ctx, target)
	if v := string(resp.Kvs[0].Value); calls != 2 || !strings.Contains(v, `"client":"wrote"`) || !strings.Contains(v, `"marked":true`) {
		t.Fatalf("after a concurrent write: %s, seen %d times; want the client's write migrated, seen twice", v, calls)
	}
}

// TestMigrateFailureRecorded: a run that fails leaves the claim and its
// error for cluster_status, and the next run (on any replica) retries from
// the cursor.
func TestMigrateFailureRecorded(t *testing.T) {
	s := startStore(t)
	ctx := t.Context()
	atSchema(t, s, meta.SchemaVersion)
	putMarked(t, s, 150)
	fail := true
	schema := testSchema("r1", func(string) {})
	_, err := s.Migrate(ctx, schema, meta.MigrateOptions{By: "r1", AfterBatch: func(context.Context, int) error {
		if fail {
			return errors.New("disk on fire")
		}
		return nil
	}})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Migrate with a failing batch: %v", err)
	}
	rec, _, _ := s.Schema(ctx)
	p := rec.Migrating
	if rec.Version != meta.SchemaVersion || p == nil || p.Batches != 1 || p.Cursor != meta.Prefix+"mt/0099" || !strings.Contains(p.Error, "disk on fire") {
		t.Fatalf("schema after a failed run: %+v %+v", rec, p)
	}
	pending := meta.SchemaPending(rec, meta.SchemaVersion+1, nil)
	if !strings.Contains(pending, "test-mark") || !strings.Contains(pending, "disk on fire") || !strings.Contains(pending, "1 batches") {
		t.Errorf("pending of a failed run: %q", pending)
	}
	fail = false
	if _, err := s.Migrate(ctx, schema, meta.MigrateOptions{By: "r2"}); err != nil {
		t.Fatal(err)
	}
	if rec, _, _ := s.Schema(ctx); rec.Version != meta.SchemaVersion+1 || rec.Migrating != nil {
		t.Fatalf("schema after the retry: %+v", rec)
	}
}

// TestMigrateTooOld: a cluster older than the build's first migration is
// refused with the way on.
func TestMigrateTooOld(t *testing.T) {
	s := startStore(t)
	schema := testSchema("r1", func(string) {})[len(meta.Current):] // only SchemaVersion → SchemaVersion+1
	if _, err := s.Migrate(t.Context(), schema, meta.MigrateOptions{By: "r1"}); err == nil || !strings.Contains(err.Error(), "upgrade through") {
		t.Fatalf("Migrate from the baseline with only a later migration: %v", err)
	}
}

// TestCurrentSchema: the build's migrations follow each other and lead to
// SchemaVersion, and a backup carries the schema record.
func TestCurrentSchema(t *testing.T) {
	if err := meta.Current.Validate(); err != nil {
		t.Fatal(err)
	}
	if v := meta.Current.Version(); v != meta.SchemaVersion {
		t.Fatalf("the migrations lead to schema %d, SchemaVersion is %d: raise it with the migration", v, meta.SchemaVersion)
	}
	if v := (meta.Schema{}).Version(); v != meta.BaselineSchema {
		t.Errorf("a build without migrations is at schema %d, want %d", v, meta.BaselineSchema)
	}
	gap := meta.Schema{meta.Current[0], {Version: meta.Current[0].Version + 2, Name: "gap", Run: meta.Current[0].Run}}
	if err := gap.Validate(); err == nil {
		t.Error("a schema that skips a version validates")
	}
	if p, ok := meta.BackupPath(meta.Prefix + "schema"); !ok || p != "meta/schema.json" {
		t.Errorf("the schema record's backup path: %q %v", p, ok)
	}
}

// TestSchemaBlockers: every member must have reported, recently and
// healthy, a build of the target schema; a report of a version before
// schema versions counts as the baseline.
func TestSchemaBlockers(t *testing.T) {
	now := time.Now()
	var old meta.ReplicaReport
	if err := json.Unmarshal([]byte(`{"id":"old","healthy":true,"version":"0.1.0","at":"`+now.Format(time.RFC3339Nano)+`"}`), &old); err != nil {
		t.Fatal(err)
	}
	reports := []meta.ReplicaReport{
		old,
		{ID: "new", Healthy: true, Version: "0.2.0", Schema: 3, At: now},
		{ID: "sick", Healthy: false, Error: "storage: down", Version: "0.2.0", Schema: 3, At: now},
		{ID: "gone", Healthy: true, Version: "0.2.0", Schema: 3, At: now.Add(-time.Minute)},
		{ID: "removed", Healthy: true, Version: "0.1.0", Schema: 1, At: now}, // no longer a member
	}
	got := meta.SchemaBlockers([]string{"old", "new", "sick", "gone", "silent", ""}, reports, 3, now, 9*time.Second)
	want := []string{
		"replica old runs dtr 0.1.0 (schema 1)",
		"replica sick is unhealthy: storage: down",
		"replica gone has not reported since " + now.Add(-time.Minute).UTC().Format(time.RFC3339),
		"replica silent has not reported its version",
		"a joining replica has not started yet",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("SchemaBlockers =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := meta.SchemaBlockers([]string{"new"}, reports, 3, now, 9*time.Second); len(got) != 0 {
		t.Errorf("every member on schema 3: %v", got)
	}
	if got := meta.SchemaBlockers([]string{"old"}, reports, 1, now, 9*time.Second); len(got) != 0 {
		t.Errorf("a replica of a version before schema versions blocks the baseline: %v", got)
	}
}
