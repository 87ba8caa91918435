package gc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/member"
	"github.com/dtr-registry/dtr/registry/meta"
)

// startEtcd runs one metadata member on loopback.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer := fmt.Sprintf("http://%s", l.Addr())
	l.Close()
	sock, err := os.MkdirTemp("", "dtr-gc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	m, err := member.Start(ctx, member.Config{
		Name: "m1", Dir: filepath.Join(t.TempDir(), "etcd"), PeerListen: peer, PeerAdvertise: peer,
		ClientSocket: filepath.Join(sock, "etcd.sock"), ClusterToken: "dtr-gc-test",
		StartTimeout: 20 * time.Second, SpaceReserve: -1, LowSpace: 16 << 20,
	})
	if err != nil {
		t.Fatalf("starting a metadata member: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m.Client()
}

// TestLease: one holder at a time; the lock names it; a released lease is
// free at once; a lease revoked behind the holder's back is noticed as
// lost and no longer valid.
func TestLease(t *testing.T) {
	cli := startEtcd(t)
	ctx := t.Context()
	store := meta.New(cli)
	a, err := AcquireLease(ctx, cli, "aaaa", 6*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AcquireLease(ctx, cli, "bbbb", 6*time.Second); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second lease while the first is held: %v, want ErrLeaseHeld", err)
	}
	if h, err := store.GCLockHolder(ctx); err != nil || h != "aaaa" {
		t.Fatalf("holder %q, %v; want aaaa", h, err)
	}
	if !a.Valid(3 * time.Second) {
		t.Fatal("a fresh 6 s lease is not valid for 3 s")
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ := store.GCLockHolder(ctx); h != "" {
		t.Fatalf("holder %q after release", h)
	}
	b, err := AcquireLease(ctx, cli, "bbbb", 6*time.Second)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	// Renewals keep it valid past its first TTL.
	time.Sleep(2 * time.Second)
	if !b.Valid(3 * time.Second) {
		t.Fatal("a renewed lease lost its validity")
	}
	if _, err := cli.Revoke(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("a revoked lease was not noticed as lost")
	}
	_ = b.Release(ctx)
	if h, _ := store.GCLockHolder(ctx); h != "" {
		t.Fatalf("holder %q after the lease was revoked", h)
	}
}

// TestGuard: the push path's half of the protocol, against real etcd.
func TestGuard(t *testing.T) {
	cli := startEtcd(t)
	ctx := t.Context()
	present := map[string]bool{}
	g := &Guard{KV: cli, BlobExists: func(_ context.Context, _, d string) (bool, error) { return present[d], nil }}
	d1, d2 := "sha256:"+fmt.Sprintf("%064x", 1), "sha256:"+fmt.Sprintf("%064x", 2)
	touched := func(d string) bool {
		resp, err := cli.Get(ctx, touchedKey(d))
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Kvs) > 0
	}
	// No run, no tombstone: nothing written.
	if err := g.Reference(ctx, "team/app", []string{d1, d2}); err != nil || touched(d1) {
		t.Fatalf("idle: %v, touched %v", err, touched(d1))
	}
	// A run under way: every reference is touched.
	if _, err := cli.Put(ctx, epochKey, "{}"); err != nil {
		t.Fatal(err)
	}
	if err := g.Reference(ctx, "team/app", []string{d1, d2, d1}); err != nil || !touched(d1) || !touched(d2) {
		t.Fatalf("during a run: %v, touched %v %v", err, touched(d1), touched(d2))
	}
	// Being deleted: refused, whether or not the data is still there.
	present[d2] = true
	if _, err := cli.Put(ctx, deletingKey(d2), `"deleting"`); err != nil {
		t.Fatal(err)
	}
	var ce *CollectedError
	if err := g.Reference(ctx, "team/app", []string{d1, d2}); !errors.As(err, &ce) || ce.Digest != d2 || ce.Deleted {
		t.Fatalf("while %s is being deleted: %v", d2, err)
	}
	// Deleted, data gone: refused even with no run under way.
	cli.Delete(ctx, deletingKey(d2))
	cli.Delete(ctx, epochKey)
	present[d2] = false
	if _, err := cli.Put(ctx, deletedKey(d2), `"x"`); err != nil {
		t.Fatal(err)
	}
	if err := g.Reference(ctx, "team/app", []string{d2}); !errors.As(err, &ce) || !ce.Deleted {
		t.Fatalf("after %s was deleted: %v", d2, err)
	}
	// Uploaded again: accepted and touched.
	present[d2] = true
	cli.Delete(ctx, touchedKey(d2))
	if err := g.Reference(ctx, "team/app", []string{d2}); err != nil || !touched(d2) {
		t.Fatalf("after %s was uploaded again: %v, touched %v", d2, err, touched(d2))
	}
	// More digests than one transaction takes.
	many := make([]string, 250)
	for i := range many {
		many[i] = "sha256:" + fmt.Sprintf("%064x", 1000+i)
	}
	cli.Put(ctx, epochKey, "{}")
	if err := g.Reference(ctx, "team/app", many); err != nil || !touched(many[249]) {
		t.Fatalf("250 digests: %v", err)
	}
}
