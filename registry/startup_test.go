package registry_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestFoundedReplicaRefusesSecondCluster: a replica that founded a cluster
// and lost its metadata volume does not found another (which would split
// the registry in two); the marker in its CA volume says so.
func TestFoundedReplicaRefusesSecondCluster(t *testing.T) {
	r := registrytest.StartNew(t)
	o := r.Opts
	r.Stop()
	if err := os.RemoveAll(filepath.Join(o.DataDir, "etcd")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if got, err := registry.Start(ctx, o); err == nil || !strings.Contains(err.Error(), "founded cluster") || !strings.Contains(err.Error(), "Restore from a backup") {
		if got != nil {
			got.Close()
		}
		t.Fatalf("Start with an empty metadata volume after founding: %v; want a refusal naming the fix", err)
	}
}

// TestEmergencyRepairForcesOnce: a new repair token makes a survivor the
// only member of a new cluster; the same token at the next start (a
// container restart) forces nothing again.
func TestEmergencyRepairForcesOnce(t *testing.T) {
	r1 := registrytest.StartNew(t)
	r2 := join(t, r1, "bbbbbbbbbbbb")
	o := r1.Opts
	o.AdminPassword = ""
	r2.Stop()
	r1.Stop()

	log := logrus.New()
	log.SetOutput(io.Discard)
	hook := logtest.NewLocal(log)
	o.Log, o.ForceNewCluster = log, "repair-1"
	forcings := func() int {
		n := 0
		for _, e := range hook.AllEntries() {
			if strings.Contains(e.Message, "emergency repair") {
				n++
			}
		}
		return n
	}

	r := registrytest.Start(t, o) // waits until healthy: alone, it has a quorum
	var cs contract.ClusterStatus
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/meta/cluster_status", nil, &cs); st != 200 || len(cs.Members) != 1 || !cs.HasQuorum {
		t.Fatalf("after the repair: %d %+v; want one member with a quorum", st, cs)
	}
	if _, ok := cs.ReplicaHealth["bbbbbbbbbbbb"]; ok {
		t.Errorf("after the repair the lost replica's health is still reported: %+v", cs.ReplicaHealth)
	}
	if n := forcings(); n != 1 {
		t.Fatalf("%d forced starts logged, want 1", n)
	}
	r.Stop()
	registrytest.Start(t, o).Stop()
	if n := forcings(); n != 1 {
		t.Errorf("the same token forced again at a restart: %d forced starts logged", n)
	}
}
