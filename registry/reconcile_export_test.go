package registry

import (
	"context"
	"errors"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/meta"
)

// SetAfterManifestCommit makes fn run between Distribution's commit of every
// manifest PUT and its metadata writes, until the test ends; an error from
// fn stands for a crash or a lost quorum at that point.
func SetAfterManifestCommit(t testing.TB, fn func(repo, digest string) error) {
	t.Helper()
	afterManifestCommit.Store(&fn)
	t.Cleanup(func() { afterManifestCommit.Store(nil) })
}

// ClearAfterManifestCommit removes the hook SetAfterManifestCommit set.
func ClearAfterManifestCommit() { afterManifestCommit.Store(nil) }

// Reconcile runs one periodic reconciliation of storage and metadata now.
func (r *Replica) Reconcile(ctx context.Context) (ReconcileResult, error) {
	return r.reconcile(ctx, false)
}

// ReconcileFull runs the reconciliation a replica runs at start, which
// lists every directory of the storage.
func (r *Replica) ReconcileFull(ctx context.Context) (ReconcileResult, error) {
	return r.reconcile(ctx, true)
}

func (r *Replica) reconcile(ctx context.Context, full bool) (ReconcileResult, error) {
	b := r.driver.Load()
	if b == nil {
		return ReconcileResult{}, errors.New("no storage")
	}
	return reconcileStores(ctx, b.d, r.store, r.log, full)
}

// ForgetRepositoryRecords deletes every repository record, leaving storage
// as it is: the state a crash before each record's write would leave.
func (r *Replica) ForgetRepositoryRecords(ctx context.Context) error {
	_, err := r.store.KV.Delete(ctx, meta.Prefix+"repos/", clientv3.WithPrefix())
	return err
}
