package ucp

import (
	"context"
	"sort"

	"github.com/docker/docker/api/types/swarm"
)

// Node is a cluster node as the operator sees it in `docker node ls`.
type Node struct {
	ID           string
	Hostname     string
	Addr         string // the address other nodes and dtr reach it at
	Role         string // "manager" or "worker"
	Availability string // "active", "pause" or "drain"
	State        string // "ready", "down", …
	Leader       bool
}

// Ready reports whether the node can take a replica now.
func (n Node) Ready() bool { return n.State == "ready" && n.Availability == "active" }

// Nodes lists the swarm's nodes, sorted by hostname.
func (c *Cluster) Nodes(ctx context.Context) ([]Node, error) {
	list, err := c.Engine.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, cpErr("listing nodes: %v", err)
	}
	nodes := make([]Node, 0, len(list))
	for _, n := range list {
		node := Node{
			ID:           n.ID,
			Hostname:     n.Description.Hostname,
			Addr:         n.Status.Addr,
			Role:         string(n.Spec.Role),
			Availability: string(n.Spec.Availability),
			State:        string(n.Status.State),
		}
		if n.ManagerStatus != nil {
			node.Leader = n.ManagerStatus.Leader
			// A manager's Status.Addr can be 0.0.0.0; its raft address is real.
			if node.Addr == "" || node.Addr == "0.0.0.0" {
				node.Addr = hostOf(n.ManagerStatus.Addr)
			}
		}
		nodes = append(nodes, node)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Hostname < nodes[j].Hostname })
	return nodes, nil
}

func hostOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i]
		}
	}
	return addr
}
