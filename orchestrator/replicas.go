package orchestrator

import (
	"context"
	"fmt"
	"sort"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/ucp"
)

// Replica is one dtr replica found on the cluster.
type Replica struct {
	ID        string
	Node      string // hostname the replica is pinned to
	Version   string // dtr version that deployed it
	ServiceID string
}

// FindReplicas lists the replicas on the cluster by their services' labels,
// sorted by ID.
func FindReplicas(ctx context.Context, c *ucp.Cluster) ([]Replica, error) {
	list, err := c.Engine.ServiceList(ctx, swarm.ServiceListOptions{
		Filters: filters.NewArgs(filters.Arg("label", LabelReplica)),
	})
	if err != nil {
		return nil, &ucp.Error{Msg: fmt.Sprintf("listing services: %v", err)}
	}
	var out []Replica
	for _, s := range list {
		l := s.Spec.Labels
		out = append(out, Replica{ID: l[LabelReplica], Node: l[LabelNode], Version: l[LabelVersion], ServiceID: s.ID})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
