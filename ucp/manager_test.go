package ucp_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/ucp"
	"github.com/dtr-registry/dtr/ucp/ucpfake"
)

func TestCheckManager(t *testing.T) {
	tests := []struct {
		name    string
		state   swarm.LocalNodeState
		manager bool
		wantErr string
	}{
		{name: "manager", state: swarm.LocalNodeStateActive, manager: true},
		{name: "no swarm", state: swarm.LocalNodeStateInactive, wantErr: "run `docker swarm init`"},
		{name: "worker", state: swarm.LocalNodeStateActive, wantErr: "is a swarm worker, not a manager"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ucpfake.New("m1", "w1")
			e.State, e.Manager = tt.state, tt.manager
			err := e.Cluster().CheckManager(context.Background())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckManager: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckManager = %v, want %q", err, tt.wantErr)
			}
			if !errors.Is(err, ucp.ErrNotManager) || !errors.Is(err, ucp.ErrControlPlane) {
				t.Fatalf("error %v is not ErrNotManager and ErrControlPlane", err)
			}
		})
	}
}

func TestNodes(t *testing.T) {
	e := ucpfake.New("m1", "w2", "w1")
	nodes, err := e.Cluster().Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range nodes {
		got = append(got, n.Hostname+"/"+n.Role)
		if !n.Ready() || n.Addr == "" {
			t.Errorf("node %+v: want ready with an address", n)
		}
	}
	if strings.Join(got, " ") != "m1/manager w1/worker w2/worker" {
		t.Fatalf("nodes = %v", got)
	}
}
