package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

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
	HTTPPort  int
	HTTPSPort int
	Storage   Storage
	Image     string
	Spec      swarm.ServiceSpec
	Meta      swarm.Version
}

// FindReplicas lists the replicas on the cluster by their services' labels,
// sorted by ID.
func FindReplicas(ctx context.Context, c *ucp.Cluster) ([]Replica, error) {
	list, err := c.Engine.ServiceList(ctx, swarm.ServiceListOptions{
		Filters: filters.NewArgs(filters.Arg("label", LabelReplica), filters.Arg("label", LabelRole+"=registry")),
	})
	if err != nil {
		return nil, &ucp.Error{Msg: fmt.Sprintf("listing services: %v", err)}
	}
	var out []Replica
	for _, s := range list {
		l := s.Spec.Labels
		r := Replica{ID: l[LabelReplica], Node: l[LabelNode], Version: l[LabelVersion], ServiceID: s.ID,
			Image: l[LabelImage], Spec: s.Spec, Meta: s.Version}
		r.HTTPPort, _ = strconv.Atoi(l[LabelHTTPPort])
		r.HTTPSPort, _ = strconv.Atoi(l[LabelHTTPSPort])
		_ = json.Unmarshal([]byte(l[LabelStorage]), &r.Storage)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// PortUser is a service that publishes a port where a replica would.
type PortUser struct {
	Service string
	Port    int
}

// PortsInUse lists the services that publish any of ports on node: host-mode
// ports of services placed on that node, and every ingress-published port
// (the routing mesh takes it on all nodes).
func PortsInUse(ctx context.Context, c *ucp.Cluster, node string, ports ...int) ([]PortUser, error) {
	return PortsInUseExcept(ctx, c, node, "", ports...)
}

// PortsInUseExcept is PortsInUse ignoring one service (a replica whose own
// ports change).
func PortsInUseExcept(ctx context.Context, c *ucp.Cluster, node, except string, ports ...int) ([]PortUser, error) {
	list, err := c.Engine.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		return nil, &ucp.Error{Msg: fmt.Sprintf("listing services: %v", err)}
	}
	var out []PortUser
	for _, s := range list {
		if s.Spec.Name == except {
			continue
		}
		onNode := false
		if p := s.Spec.TaskTemplate.Placement; p != nil {
			for _, con := range p.Constraints {
				if con == "node.hostname=="+node || con == "node.hostname == "+node {
					onNode = true
				}
			}
		}
		if s.Spec.EndpointSpec == nil {
			continue
		}
		for _, pc := range s.Spec.EndpointSpec.Ports {
			for _, want := range ports {
				if int(pc.PublishedPort) != want {
					continue
				}
				// A host-mode port without a node constraint may land anywhere: count it.
				if pc.PublishMode != swarm.PortConfigPublishModeHost || onNode || s.Spec.TaskTemplate.Placement == nil || len(s.Spec.TaskTemplate.Placement.Constraints) == 0 {
					out = append(out, PortUser{Service: s.Spec.Name, Port: want})
				}
			}
		}
	}
	return out, nil
}
