package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/registry/meta"
)

// Metadata schema migrations (docs/architecture.md §4): the cluster records
// its schema version; a build's migrations run once every replica runs it,
// on the metadata leader.

// migrateInterval is how often a replica whose build has migrations the
// cluster lacks looks whether they may run (one read of the schema record;
// on the leader also the members and their reports). Once the cluster is
// at the build's schema the replica stops looking.
var migrateInterval atomic.Int64

// migrateSettle is how long every replica must have run the new schema
// before the leader migrates: an upgrade that rolls a replica back just
// after it turned healthy does so before the records change.
var migrateSettle atomic.Int64

func init() {
	migrateInterval.Store(int64(5 * time.Second))
	migrateSettle.Store(int64(10 * time.Second))
}

// afterMigrationBatch, when set (tests), runs after every batch a migration
// writes on this process's replicas; its error stops the migration there.
var afterMigrationBatch atomic.Pointer[func(ctx context.Context, replica string, batch int) error]

// schema is the replica's build's schema.
func (r *Replica) schema() meta.Schema {
	if r.opts.Schema != nil {
		return *r.opts.Schema
	}
	return meta.Current
}

// checkSchema refuses to run a build older than the cluster's metadata: a
// downgrade would misread what the newer version migrated.
func (r *Replica) checkSchema(ctx context.Context) error {
	rec, _, err := r.store.Schema(ctx)
	if err != nil {
		return fmt.Errorf("reading the metadata schema: %w", err)
	}
	own := r.schema().Version()
	if err := downgradeError(rec, own); err != nil {
		return err
	}
	if p := rec.Migrating; p != nil && p.To > own {
		return fmt.Errorf("this replica runs dtr %s, which knows metadata schema %d, but replica %s is migrating the cluster's metadata to schema %d: dtr does not downgrade. Run the newer dtr version on this replica, or restore a backup taken before the upgrade (dtr restore) to go back",
			images.Version, own, p.By, p.To)
	}
	if rec.Version < own {
		r.log.WithFields(map[string]any{"cluster": rec.Version, "build": own}).
			Info("the cluster's metadata schema is older than this version's: its migrations run once every replica runs this version")
	}
	return nil
}

// downgradeError is nil unless the cluster at rec is past schema own.
func downgradeError(rec meta.SchemaRecord, own int) error {
	if rec.Version <= own {
		return nil
	}
	by := ""
	if rec.DTRVersion != "" {
		by = " by dtr " + rec.DTRVersion
	}
	return fmt.Errorf("this replica runs dtr %s, which knows metadata schema %d, but the cluster's metadata is at schema %d (written%s on replica %s at %s): dtr does not downgrade. Run dtr %s or later on this replica, or restore a backup taken before the upgrade (dtr restore) to go back to %s",
		images.Version, own, rec.Version, by, rec.By, rec.MigratedAt.UTC().Format(time.RFC3339), orUnknown(rec.DTRVersion), images.Version)
}

func orUnknown(v string) string {
	if v == "" {
		return "the version that migrated it"
	}
	return v
}

// schemaProbe is the health check that takes a replica out of its load
// balancer once the cluster's metadata moved past its build (started just
// before a migration, it passed checkSchema). A local read: it answers
// without a quorum, and the metadata check names an outage.
func (r *Replica) schemaProbe(ctx context.Context) error {
	rec, _, err := r.store.Schema(meta.LocalReads(ctx))
	if err != nil {
		return nil
	}
	return downgradeError(rec, r.schema().Version())
}

// migrateLoop runs this build's migrations the cluster lacks: looked at
// right after start and every migrateInterval, on the metadata leader only,
// once every member has reported, healthy, a build of this schema or later
// for migrateSettle. It ends when the cluster is at this build's schema.
func (r *Replica) migrateLoop(ctx context.Context) {
	schema := r.schema()
	t := time.NewTimer(0)
	defer t.Stop()
	var ready time.Time // since when every replica runs the target schema
	lastWait := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rec, _, err := r.store.Schema(ctx)
		if err == nil && rec.Version >= schema.Version() {
			return
		}
		switch waits, ok := r.migrationWaits(ctx, schema.Version()); {
		case !ok:
			ready = time.Time{}
		case waits != "":
			ready = time.Time{}
			if waits != lastWait {
				r.log.WithField("waiting", waits).Info("the metadata schema migration waits for every replica to run this version")
				lastWait = waits
			}
		default:
			if ready.IsZero() {
				ready = time.Now()
			}
			if time.Since(ready) >= time.Duration(migrateSettle.Load()) {
				r.migrate(ctx, schema)
			}
		}
		t.Reset(time.Duration(migrateInterval.Load()))
	}
}

// migrationWaits says what the migration to target waits for ("" for
// nothing); ok is false when this replica is not the one to run it (not
// the metadata leader) or cannot tell now.
func (r *Replica) migrationWaits(ctx context.Context, target int) (string, bool) {
	if !r.isMetadataLeader(ctx) {
		return "", false
	}
	members, err := r.member.Members(ctx)
	if err != nil {
		return "", false
	}
	reports, err := r.store.HealthReports(ctx)
	if err != nil {
		return "", false
	}
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.Name
	}
	// Reports come every ReportInterval: three missed is a replica gone.
	blockers := meta.SchemaBlockers(names, reports, target, time.Now(), 3*r.opts.ReportInterval)
	return strings.Join(blockers, "; "), true
}

// migrate runs the migrations and logs what they did; a run that fails is
// retried at the next look, from where it stopped.
func (r *Replica) migrate(ctx context.Context, schema meta.Schema) {
	start := time.Now()
	o := meta.MigrateOptions{By: r.opts.ReplicaID, DTRVersion: images.Version}
	if hook := afterMigrationBatch.Load(); hook != nil {
		o.AfterBatch = func(ctx context.Context, n int) error { return (*hook)(ctx, r.opts.ReplicaID, n) }
	}
	ran, err := r.store.Migrate(ctx, schema, o)
	for _, m := range ran {
		r.log.WithFields(map[string]any{"schema": m.Version, "migration": m.Name}).Info("metadata schema migrated")
	}
	switch {
	case errors.Is(err, meta.ErrMigrationTaken):
		r.log.WithError(err).Info("metadata schema migration")
	case err != nil && ctx.Err() == nil:
		r.log.WithError(err).Warn("migrating the metadata schema; retrying at the next look, from where it stopped")
	case err == nil:
		r.log.WithFields(map[string]any{"schema": schema.Version(), "took": time.Since(start).Round(time.Millisecond)}).Info("the metadata schema is this version's")
	}
}
