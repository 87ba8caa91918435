package gc

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"path"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/meta"
)

// TestTakeOver: a run whose lease is lost in the middle of its sweep (its
// replica cut off from the metadata) stops deleting; a replica that died
// leaves its job running, and the next lease holder marks it errored and
// runs the next job to the end; what a manifest references survives both.
func TestTakeOver(t *testing.T) {
	cli := startEtcd(t)
	ctx := t.Context()
	store := meta.New(cli)
	if _, err := store.CreateAccount(ctx, meta.Account{Name: "acme", IsOrg: true, IsActive: true}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateRepository(ctx, meta.Repository{Namespace: "acme", Name: "app"}); err != nil {
		t.Fatal(err)
	}
	drv := inmemory.New()
	repo := path.Join(repositoriesRoot, "acme/app")
	put := func(p, content string) {
		if err := drv.PutContent(ctx, p, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	blob := func(content string) string {
		d := fmt.Sprintf("sha256:%x", sha(content))
		put(BlobDataPath(d), content)
		put(path.Join(repo, "_layers/sha256", d[7:], "link"), d)
		return d
	}
	layer, config := blob("a layer"), blob("{}")
	m := fmt.Sprintf(`{"schemaVersion":2,"config":{"digest":%q},"layers":[{"digest":%q}]}`, config, layer)
	md := fmt.Sprintf("sha256:%x", sha(m))
	put(BlobDataPath(md), m)
	put(path.Join(repo, "_manifests/revisions/sha256", md[7:], "link"), md)
	var junk []string
	for i := range 20 {
		junk = append(junk, blob(fmt.Sprintf("junk %d", i)))
	}
	exists := func(d string) bool {
		_, err := drv.Stat(ctx, BlobDataPath(d))
		return err == nil
	}
	collector := New(Config{Store: store, Etcd: cli, Driver: func() driverT { return drv },
		StorageRepositories: func(context.Context, map[string]bool) ([]string, error) { return []string{"acme/app"}, nil }})
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	runner := func(id string) *Runner {
		return &Runner{Store: store, Etcd: cli, Collector: collector, ReplicaID: id, Log: quiet, LeaseTTL: 6 * time.Second}
	}
	job := func(id, status, worker string) {
		now := time.Now().UTC()
		if err := store.CreateJob(ctx, meta.Job{ID: id, Status: status, WorkerID: worker, Action: "onlinegc", ScheduledAt: now,
			Parameters: map[string]string{"gracePeriod": "0s", "workers": "1"}}); err != nil {
			t.Fatal(err)
		}
	}

	// The lease is revoked after the fifth deletion, as etcd does when the
	// holder stops renewing; the run must notice and stop.
	deletions := 0
	fn := func(string) {
		if deletions++; deletions == 5 {
			resp, err := cli.Get(ctx, lockKey)
			if err != nil || len(resp.Kvs) == 0 {
				t.Errorf("reading the lock: %v", err)
				return
			}
			if _, err := cli.Revoke(ctx, clientLeaseID(resp.Kvs[0].Lease)); err != nil {
				t.Error(err)
			}
			time.Sleep(1500 * time.Millisecond) // the holder renews every second
		}
	}
	TestHooks.BeforeDelete.Store(&fn)
	defer TestHooks.BeforeDelete.Store(nil)
	job("00000001", meta.JobWaiting, "")
	runner("aaaa").runWaiting(ctx)
	TestHooks.BeforeDelete.Store(nil)
	j, _, _ := store.Job(ctx, "00000001")
	left := 0
	for _, d := range junk {
		if exists(d) {
			left++
		}
	}
	if j.Status != meta.JobErrored || left < 15 || left == 20 {
		t.Fatalf("run that lost its lease: %s (%s), %d of 20 blobs left; want errored after 4 or 5 deletions", j.Status, j.Error, left)
	}

	// A replica that died leaves its job running; the next holder fails it
	// and runs what waits.
	job("00000002", meta.JobRunning, "dead")
	job("00000003", meta.JobWaiting, "")
	runner("bbbb").runWaiting(ctx)
	if j, _, _ := store.Job(ctx, "00000002"); j.Status != meta.JobErrored || j.Error == "" {
		t.Errorf("the dead replica's job: %s %q, want errored", j.Status, j.Error)
	}
	if j, _, _ := store.Job(ctx, "00000003"); j.Status != meta.JobDone || j.WorkerID != "bbbb" {
		t.Fatalf("the next job: %s on %q (%s), want done on bbbb", j.Status, j.WorkerID, j.Error)
	}
	for _, d := range junk {
		if exists(d) {
			t.Errorf("junk blob %s survived", d)
		}
	}
	for _, d := range []string{md, layer, config} {
		if !exists(d) {
			t.Errorf("referenced blob %s was deleted", d)
		}
	}
	if h, _ := store.GCLockHolder(ctx); h != "" {
		t.Errorf("lease still held by %q", h)
	}
	lines, err := store.JobLogs(ctx, "00000003", 0, 0)
	if err != nil || len(lines) < 3 {
		t.Errorf("the job's log: %d lines, %v", len(lines), err)
	}
}

type driverT = storagedriver.StorageDriver

func clientLeaseID(id int64) clientv3.LeaseID { return clientv3.LeaseID(id) }

func sha(s string) [32]byte { return sha256.Sum256([]byte(s)) }
