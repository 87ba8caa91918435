package meta

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SchemaVersion is the metadata schema this build reads and writes
// (docs/architecture.md §4): the version the last of Current leads to.
const SchemaVersion = 2

// BaselineSchema is the schema of a cluster that records none: every
// cluster made before schema versions existed, and a backup of one.
const BaselineSchema = 1

// schemaKey holds the cluster's SchemaRecord. A backup carries it
// (meta/schema.json), so a restored cluster keeps its version.
var schemaKey = key("schema")

// SchemaRecord is the cluster's metadata schema.
type SchemaRecord struct {
	Version int `json:"version"`
	// MigratedAt, By and DTRVersion say when, on which replica and by which
	// dtr version Version was written (by a migration, or by founding the
	// cluster).
	MigratedAt time.Time `json:"migratedAt,omitzero"`
	By         string    `json:"by,omitempty"`
	DTRVersion string    `json:"dtrVersion,omitempty"`
	// Migrating is the migration to the next version while it runs.
	Migrating *MigrationProgress `json:"migrating,omitempty"`
}

// MigrationProgress is a migration under way, and the guard that keeps it
// to one replica: every batch it writes is conditional on the schema record
// being as that replica last wrote it, and writes it again.
type MigrationProgress struct {
	To      int       `json:"to"`
	Name    string    `json:"name"`
	By      string    `json:"by"` // the replica running it
	Since   time.Time `json:"since"`
	Batches int       `json:"batches"` // batches written so far, over every run
	// Cursor is the last key of the last batch written: a run that takes
	// over (after a crash, or on a new metadata leader) goes on after it.
	Cursor string `json:"cursor,omitempty"`
	Error  string `json:"error,omitempty"` // why the last run stopped, if it failed
}

// Migration turns the records of schema Version-1 into schema Version.
//
// Run must be idempotent: a run that stopped (a crash, a lost claim) is
// started again by the next run, after Migrating.Cursor. It writes only
// through Migrating.Write or Migrating.Rewrite, in batches. Replicas of
// this build serve on the records of the schema before it until it has
// run, and so must read both forms; it should only add or fill in data, so
// that replicas of the version before still read what it leaves.
type Migration struct {
	Version int    // the schema it leads to
	Name    string // in logs and cluster_status
	Run     func(ctx context.Context, m *Migrating) error
}

// Schema is what one build knows of the metadata schema: the migrations
// that lead to its version, oldest first, one version apart. An empty
// Schema is BaselineSchema.
type Schema []Migration

// Version is the schema the build reads and writes.
func (s Schema) Version() int {
	if len(s) == 0 {
		return BaselineSchema
	}
	return s[len(s)-1].Version
}

// Validate checks that the migrations follow each other one version apart.
func (s Schema) Validate() error {
	for i, m := range s {
		if m.Run == nil || m.Name == "" {
			return fmt.Errorf("migration %d has no name or no Run", m.Version)
		}
		if i > 0 && m.Version != s[i-1].Version+1 || i == 0 && m.Version <= BaselineSchema {
			return fmt.Errorf("migration %d (%s) does not follow the one before it", m.Version, m.Name)
		}
	}
	return nil
}

// from returns the migration that leads from schema v to v+1.
func (s Schema) from(v int) (Migration, bool) {
	for _, m := range s {
		if m.Version == v+1 {
			return m, true
		}
	}
	return Migration{}, false
}

// Schema returns the cluster's schema record and its revision (0 when the
// cluster records none: BaselineSchema).
func (s *Store) Schema(ctx context.Context) (SchemaRecord, int64, error) {
	var rec SchemaRecord
	rev, err := s.get(ctx, schemaKey, &rec)
	if errors.Is(err, ErrNotFound) {
		return SchemaRecord{Version: BaselineSchema}, 0, nil
	}
	if err != nil {
		return rec, 0, fmt.Errorf("the metadata schema: %w", err)
	}
	if rec.Version < BaselineSchema {
		return rec, rev, fmt.Errorf("the metadata schema record %s is damaged: version %d", schemaKey, rec.Version)
	}
	return rec, rev, nil
}

// SchemaVersion is the schema of the build that made the report; reports
// of versions before schema versions carry none.
func (r ReplicaReport) SchemaVersion() int {
	if r.Schema == 0 {
		return BaselineSchema
	}
	return r.Schema
}

// SchemaBlockers names what keeps the cluster from migrating to schema
// target: every metadata member (members are their names, the replica IDs;
// "" is a learner that has not started) must have a healthy report, newer
// than staleAfter, from a build of schema target or later. None means the
// migrations may run.
func SchemaBlockers(members []string, reports []ReplicaReport, target int, now time.Time, staleAfter time.Duration) []string {
	byID := make(map[string]ReplicaReport, len(reports))
	for _, r := range reports {
		byID[r.ID] = r
	}
	var out []string
	for _, id := range members {
		rep, ok := byID[id]
		switch {
		case id == "":
			out = append(out, "a joining replica has not started yet")
		case !ok:
			out = append(out, "replica "+id+" has not reported its version")
		case rep.SchemaVersion() < target:
			out = append(out, fmt.Sprintf("replica %s runs dtr %s (schema %d)", id, rep.Version, rep.SchemaVersion()))
		case now.Sub(rep.At) > staleAfter:
			out = append(out, "replica "+id+" has not reported since "+rep.At.UTC().Format(time.RFC3339))
		case !rep.Healthy:
			out = append(out, "replica "+id+" is unhealthy: "+rep.Error)
		}
	}
	return out
}

// ErrMigrationTaken means another replica claimed the migration meanwhile
// (a new metadata leader); it goes on from where this one stopped.
var ErrMigrationTaken = errors.New("another replica took the schema migration over")

// MigrateOptions say who migrates.
type MigrateOptions struct {
	By         string // the replica ID
	DTRVersion string
	// AfterBatch, when set, runs after every batch written (n counts from 1
	// in this run); an error stops the migration there, as a crash would.
	AfterBatch func(ctx context.Context, n int) error
}

// Migrate brings the cluster's schema up to schema.Version(), one migration
// after another, and returns those it completed. The caller has made sure
// that every replica runs a build of that schema (SchemaBlockers) and is
// the metadata leader; neither is needed for safety: a run claims the
// migration with a conditional write of the schema record, and each of its
// batches, and the advance of the version, is conditional on that claim,
// so a second replica's claim stops the first at its next write
// (ErrMigrationTaken), and the two never both write.
func (s *Store) Migrate(ctx context.Context, schema Schema, o MigrateOptions) ([]Migration, error) {
	if err := schema.Validate(); err != nil {
		return nil, err
	}
	var done []Migration
	for {
		rec, rev, err := s.Schema(ctx)
		if err != nil {
			return done, err
		}
		if rec.Version >= schema.Version() {
			return done, nil
		}
		m, ok := schema.from(rec.Version)
		if !ok {
			return done, fmt.Errorf("the cluster's metadata is at schema %d, older than this build migrates from (%d): upgrade through the dtr versions in between", rec.Version, schema[0].Version-1)
		}
		if err := s.runMigration(ctx, m, rec, rev, o); err != nil {
			return done, fmt.Errorf("migration to schema %d (%s): %w", m.Version, m.Name, err)
		}
		done = append(done, m)
	}
}

func (s *Store) runMigration(ctx context.Context, m Migration, rec SchemaRecord, rev int64, o MigrateOptions) error {
	p := MigrationProgress{To: m.Version, Name: m.Name, By: o.By, Since: time.Now().UTC()}
	if prev := rec.Migrating; prev != nil && prev.To == m.Version {
		p.Since, p.Batches, p.Cursor = prev.Since, prev.Batches, prev.Cursor
	}
	claim := rec
	claim.Migrating = &p
	newRev, err := s.swapSchema(ctx, rev, claim, nil, nil)
	if err != nil {
		return err
	}
	mg := &Migrating{Store: s, rec: claim, rev: newRev, o: o}
	if err := m.Run(ctx, mg); err != nil {
		if !errors.Is(err, ErrMigrationTaken) && ctx.Err() == nil {
			mg.noteError(ctx, err)
		}
		return err
	}
	done := SchemaRecord{Version: m.Version, MigratedAt: time.Now().UTC(), By: o.By, DTRVersion: o.DTRVersion}
	_, err = s.swapSchema(ctx, mg.rev, done, nil, nil)
	return err
}

// swapSchema writes rec and ops if the schema record is still at revision
// rev (0: absent) and every cmp holds, and returns the new revision. A
// changed schema record is ErrMigrationTaken; a failed cmp, ErrConflict.
func (s *Store) swapSchema(ctx context.Context, rev int64, rec SchemaRecord, cmps []clientv3.Cmp, ops []clientv3.Op) (int64, error) {
	put, err := putOp(schemaKey, rec)
	if err != nil {
		return 0, err
	}
	resp, err := s.KV.Txn(ctx).
		If(append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(schemaKey), "=", rev)}, cmps...)...).
		Then(append(ops, put)...).
		Else(clientv3.OpGet(schemaKey, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("writing the metadata schema: %w", err)
	}
	if !resp.Succeeded {
		cur := int64(0)
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			cur = kvs[0].ModRevision
		}
		if cur != rev {
			return 0, ErrMigrationTaken
		}
		return 0, ErrConflict
	}
	return resp.Header.Revision, nil
}

// MaxMigrationBatch bounds the record operations, and the compares, of one
// migration batch: etcd allows 128 of each per transaction (its
// max-txn-ops default, which the member keeps), and every batch adds one
// of each for the schema record.
const MaxMigrationBatch = 100

// Migrating is a migration under way on this replica: reads go through
// Store, every write through Write or Rewrite, which commit only while this
// replica's claim holds.
type Migrating struct {
	Store *Store
	rec   SchemaRecord
	rev   int64
	o     MigrateOptions
	n     int
}

// Cursor is the last key of the last batch written, by this run or one
// before it: the migration goes on after it.
func (m *Migrating) Cursor() string { return m.rec.Migrating.Cursor }

// Write commits one batch: ops, if every cmp holds and the claim still
// stands, and cursor as the new Cursor. ErrConflict means a cmp failed
// (read again and retry); ErrMigrationTaken, that another replica took
// over (stop).
func (m *Migrating) Write(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op, cursor string) error {
	if len(ops) > MaxMigrationBatch || len(cmps) > MaxMigrationBatch {
		return fmt.Errorf("a migration batch of %d operations and %d compares: at most %d of each", len(ops), len(cmps), MaxMigrationBatch)
	}
	for _, op := range ops {
		if string(op.KeyBytes()) == schemaKey {
			return fmt.Errorf("a migration writes %s itself", schemaKey)
		}
	}
	next := m.rec
	p := *next.Migrating
	p.Cursor, p.Batches, p.Error = cursor, p.Batches+1, ""
	next.Migrating = &p
	rev, err := m.Store.swapSchema(ctx, m.rev, next, cmps, ops)
	if err != nil {
		return err
	}
	m.rec, m.rev = next, rev
	m.n++
	if m.o.AfterBatch != nil {
		return m.o.AfterBatch(ctx, m.n)
	}
	return nil
}

// noteError records why the run stopped, for cluster_status; best effort,
// and only while the claim holds.
func (m *Migrating) noteError(ctx context.Context, cause error) {
	next := m.rec
	p := *next.Migrating
	p.Error = cause.Error()
	next.Migrating = &p
	if rev, err := m.Store.swapSchema(ctx, m.rev, next, nil, nil); err == nil {
		m.rec, m.rev = next, rev
	}
}

// Rewrite passes every record under prefix p (at any depth) that lies after
// the cursor to fn, in key order, a page of MaxMigrationBatch at a time,
// and writes what fn changes: next is the record's new value (nil deletes
// it), keep leaves it alone. Each change is conditional on its record being
// unchanged since it was read, and a page that changed meanwhile is read
// and passed to fn again. Prefixes are best walked in key order, so that a
// cursor in a later one skips the earlier ones.
func (m *Migrating) Rewrite(ctx context.Context, p string, fn func(key string, value []byte) (next []byte, keep bool, err error)) error {
	end := clientv3.GetPrefixRangeEnd(p)
	from := p
	if c := m.Cursor(); c >= end {
		return nil
	} else if c >= p {
		from = c + "\x00"
	}
	for {
		resp, err := m.Store.KV.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(MaxMigrationBatch),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		for _, kv := range resp.Kvs {
			k := string(kv.Key)
			next, keep, err := fn(k, kv.Value)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if keep {
				continue
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", kv.ModRevision))
			if next == nil {
				ops = append(ops, clientv3.OpDelete(k))
			} else {
				ops = append(ops, clientv3.OpPut(k, string(next)))
			}
		}
		last := string(resp.Kvs[len(resp.Kvs)-1].Key)
		if len(ops) > 0 {
			err := m.Write(ctx, cmps, ops, last)
			if errors.Is(err, ErrConflict) && ctx.Err() == nil {
				continue // a record changed meanwhile: this page again
			}
			if err != nil {
				return err
			}
		}
		if !resp.More {
			return nil
		}
		from = last + "\x00"
	}
}

// SchemaPending says why a cluster at rec is not at schema target, or what
// migration runs; "" when it is there.
func SchemaPending(rec SchemaRecord, target int, blockers []string) string {
	if p := rec.Migrating; p != nil {
		s := fmt.Sprintf("migration to schema %d (%s) under way on replica %s since %s, %d batches written",
			p.To, p.Name, p.By, p.Since.UTC().Format(time.RFC3339), p.Batches)
		if p.Error != "" {
			s += "; its last run stopped: " + p.Error + " (the metadata leader retries)"
		}
		return s
	}
	if rec.Version >= target {
		return ""
	}
	if len(blockers) == 0 {
		return fmt.Sprintf("every replica runs schema %d: the metadata leader migrates within moments", target)
	}
	return fmt.Sprintf("schema %d waits for every replica to run it: %s", target, strings.Join(blockers, "; "))
}
