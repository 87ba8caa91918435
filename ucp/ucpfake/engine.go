// Package ucpfake is an in-memory ucp.Engine for unit tests: a swarm with
// nodes and services, and no Docker engine behind it.
package ucpfake

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/volume"

	"github.com/dtr-registry/dtr/ucp"
)

// Engine is a fake swarm manager (or, with State/Manager changed, not one).
type Engine struct {
	mu       sync.Mutex
	Name     string
	State    swarm.LocalNodeState // default active
	Manager  bool
	Nodes    []swarm.Node
	Services []swarm.Service
	Networks []network.Summary
	Secrets  []swarm.Secret
	Configs  []swarm.Config
	Volumes  []volume.Volume
	// Images maps references to IDs; nil means every image exists.
	Images map[string]string
	// Err, when set, is returned by every call.
	Err error
	// Job, when set, says how a job service (a node job) would end, since
	// the fake runs nothing: ok or failed, and what it printed. Unset, every
	// job completes and prints nothing.
	Job func(spec swarm.ServiceSpec) (ok bool, logs string)
	// Jobs records the spec of every job service created, in order.
	Jobs []swarm.ServiceSpec
}

var _ ucp.Engine = (*Engine)(nil)

// New returns a fake single-manager swarm with the given worker hostnames.
func New(manager string, workers ...string) *Engine {
	e := &Engine{Name: manager, State: swarm.LocalNodeStateActive, Manager: true}
	e.AddNode(manager, "10.0.0.1", swarm.NodeRoleManager)
	for i, w := range workers {
		e.AddNode(w, "10.0.0."+string(rune('2'+i)), swarm.NodeRoleWorker)
	}
	return e
}

// AddNode adds a ready, active node.
func (e *Engine) AddNode(hostname, addr string, role swarm.NodeRole) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := swarm.Node{ID: "node-" + hostname}
	n.Description.Hostname = hostname
	n.Spec.Role = role
	n.Spec.Availability = swarm.NodeAvailabilityActive
	n.Status.State = swarm.NodeStateReady
	n.Status.Addr = addr
	if role == swarm.NodeRoleManager {
		n.ManagerStatus = &swarm.ManagerStatus{Leader: len(e.Nodes) == 0, Addr: addr + ":2377"}
	}
	e.Nodes = append(e.Nodes, n)
}

// AddReplicaService adds a service labelled as a dtr replica.
func (e *Engine) AddReplicaService(replicaID, node, version string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := swarm.Service{ID: "svc-" + replicaID}
	s.Spec.Name = "dtr-registry-" + replicaID
	s.Spec.Labels = map[string]string{
		"com.docker.dtr.role":    "registry",
		"com.docker.dtr.replica": replicaID,
		"com.docker.dtr.node":    node,
		"com.docker.dtr.version": version,
	}
	e.Services = append(e.Services, s)
}

// Cluster returns a ucp.Cluster on this engine, as ucp.Connect would.
func (e *Engine) Cluster() *ucp.Cluster {
	return &ucp.Cluster{Endpoint: ucp.Endpoint{Scheme: ucp.SchemeSocket, Address: "/fake.sock"}, Engine: e}
}

// Connect is a drop-in for ucp.Connect that checks the options like the real
// one and returns this engine's cluster.
func (e *Engine) Connect(ctx context.Context, o ucp.Options) (*ucp.Cluster, error) {
	if _, err := ucp.ParseURL(o.URL); err != nil {
		return nil, err
	}
	c := e.Cluster()
	if err := c.CheckManager(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Ping implements ucp.Engine.
func (e *Engine) Ping(context.Context) (types.Ping, error) {
	return types.Ping{APIVersion: "1.41"}, e.Err
}

// ServerVersion implements ucp.Engine.
func (e *Engine) ServerVersion(context.Context) (types.Version, error) {
	return types.Version{Version: "20.10.24", APIVersion: "1.41"}, e.Err
}

// Info implements ucp.Engine.
func (e *Engine) Info(context.Context) (system.Info, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var i system.Info
	i.Name = e.Name
	i.ServerVersion = "20.10.24"
	i.Swarm.LocalNodeState = e.State
	if i.Swarm.LocalNodeState == "" {
		i.Swarm.LocalNodeState = swarm.LocalNodeStateActive
	}
	i.Swarm.ControlAvailable = e.Manager
	i.Swarm.NodeID = "node-" + e.Name
	return i, e.Err
}

// NodeList implements ucp.Engine.
func (e *Engine) NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.Manager {
		return nil, errors.New("This node is not a swarm manager.")
	}
	return append([]swarm.Node(nil), e.Nodes...), e.Err
}

// ServiceList implements ucp.Engine; it honours "label" filters of the form
// "key" (the label exists) and "key=value".
func (e *Engine) ServiceList(_ context.Context, o swarm.ServiceListOptions) ([]swarm.Service, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []swarm.Service
	for _, s := range e.Services {
		keep := true
		for _, f := range o.Filters.Get("label") {
			key, want, hasValue := strings.Cut(f, "=")
			v, ok := s.Spec.Labels[key]
			if !ok || hasValue && v != want {
				keep = false
			}
		}
		if keep {
			out = append(out, s)
		}
	}
	return out, e.Err
}

// Close implements ucp.Engine.
func (e *Engine) Close() error { return nil }
