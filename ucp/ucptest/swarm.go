package ucptest

import (
	"context"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// EnsureSwarm makes the local engine a single-node swarm manager for the
// test if it is not one yet, says so in the test log, and leaves the swarm
// again when the test ends. An engine already in a swarm is left as it is.
func EnsureSwarm(t testing.TB) {
	t.Helper()
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := c.Info(ctx)
	if err != nil {
		t.Skipf("no Docker engine answers at %s (%v); engine tests need one (CI starts it)", c.DaemonHost(), err)
	}
	if info.Swarm.LocalNodeState == swarm.LocalNodeStateActive {
		if !info.Swarm.ControlAvailable {
			t.Fatalf("the local engine is a swarm worker; engine tests need a manager")
		}
		return
	}
	t.Logf("the local engine is not in a swarm: initialising a single-node swarm for this test (it leaves it afterwards)")
	if _, err := c.SwarmInit(ctx, swarm.InitRequest{ListenAddr: "127.0.0.1:2377", AdvertiseAddr: "127.0.0.1"}); err != nil {
		t.Fatalf("docker swarm init: %v", err)
	}
	t.Cleanup(func() {
		c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			t.Errorf("docker client: %v", err)
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.SwarmLeave(ctx, true); err != nil {
			t.Errorf("leaving the test swarm: %v", err)
		}
	})
}
