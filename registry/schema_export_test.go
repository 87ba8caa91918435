package registry

import (
	"context"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
)

// SetMigrationTiming makes replicas look for migrations every interval and
// run them once every replica ran the schema for settle, until the test
// ends.
func SetMigrationTiming(t testing.TB, interval, settle time.Duration) {
	t.Helper()
	i, s := migrateInterval.Load(), migrateSettle.Load()
	migrateInterval.Store(int64(interval))
	migrateSettle.Store(int64(settle))
	t.Cleanup(func() { migrateInterval.Store(i); migrateSettle.Store(s) })
}

// SetAfterMigrationBatch makes fn run after every batch a migration writes,
// until the test ends or it is set again; an error from fn stops the
// migration there, as a crash would.
func SetAfterMigrationBatch(t testing.TB, fn func(ctx context.Context, replica string, batch int) error) {
	t.Helper()
	afterMigrationBatch.Store(&fn)
	t.Cleanup(func() { afterMigrationBatch.Store(nil) })
}

// MetaStore is the replica's metadata store.
func (r *Replica) MetaStore() *meta.Store { return r.store }
