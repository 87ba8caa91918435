package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/contract"
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
	PeerPort  int // 0: reached over the overlay by name
	// MetricsPort publishes the unauthenticated /metrics; 0: none.
	MetricsPort int
	Storage     Storage
	Image       string
	Spec        swarm.ServiceSpec
	Meta        swarm.Version
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
		out = append(out, replicaOf(s))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// replicaOf is a replica's service as FindReplicas reads it: by its labels.
func replicaOf(s swarm.Service) Replica {
	l := s.Spec.Labels
	r := Replica{ID: l[LabelReplica], Node: l[LabelNode], Version: l[LabelVersion], ServiceID: s.ID,
		Image: l[LabelImage], Spec: s.Spec, Meta: s.Version}
	r.HTTPPort, _ = strconv.Atoi(l[LabelHTTPPort])
	r.HTTPSPort, _ = strconv.Atoi(l[LabelHTTPSPort])
	r.PeerPort, _ = strconv.Atoi(l[LabelPeerPort])
	r.MetricsPort, _ = strconv.Atoi(l[LabelMetricsPort])
	_ = json.Unmarshal([]byte(l[LabelStorage]), &r.Storage)
	return r
}

// Config is the configuration that made r's service, read back from it:
// ServiceSpec(r.Config()) is r's service, and every command that needs a
// replica's settings (join, reconfigure, upgrade) reads them here, never
// from the environment or the names of secrets. The labels give what
// FindReplicas reads; the container's environment (contract.ParseEnv), its
// image and its secret and config references give the rest. JobImageID is
// not part of a service and stays empty.
func (r Replica) Config() (ReplicaConfig, error) {
	name := contract.ServiceName(r.ID)
	cs := r.Spec.TaskTemplate.ContainerSpec
	if cs == nil {
		return ReplicaConfig{}, fmt.Errorf("service %s has no container spec: it was not made by dtr", name)
	}
	env, err := contract.ParseEnv(cs.Env)
	if err != nil {
		return ReplicaConfig{}, fmt.Errorf("the environment of service %s: %w", name, err)
	}
	if env.ReplicaID != r.ID {
		return ReplicaConfig{}, fmt.Errorf("service %s is labelled replica %s but runs replica %q: it was changed outside dtr; destroy it and join a new replica", name, r.ID, env.ReplicaID)
	}
	c := ReplicaConfig{
		ID: r.ID, Node: r.Node, HTTPPort: r.HTTPPort, HTTPSPort: r.HTTPSPort, PeerPort: r.PeerPort, Storage: r.Storage,
		Image: r.Image, ImageID: cs.Image, Version: r.Version,
		ExternalURL: env.ExternalURL, LogLevel: env.LogLevel,
		HTTPProxy: env.HTTPProxy, HTTPSProxy: env.HTTPSProxy, NoProxy: env.NoProxy,
		AdminUsername: env.AdminUsername,
		Join:          env.Join, InitialCluster: env.InitialCluster,
		Restore: env.Restore, RestoreStorage: env.RestoreStorage,
		MetricsPort: r.MetricsPort, OTLPEndpoint: env.OTLPEndpoint,
	}
	// Hostnames are the node's address, then its name (ServiceSpec leaves
	// out what is empty).
	switch h := env.Hostnames; {
	case len(h) == 2:
		c.NodeAddr = h[0]
	case len(h) == 1 && h[0] != c.Node:
		c.NodeAddr = h[0]
	}
	// The operator's certificate: the config mounted where the replica
	// reads it, and the secret its key file comes from.
	if env.TLSKeyFile != "" {
		for _, s := range cs.Secrets {
			if s.File != nil && contract.SecretsDir+s.File.Name == env.TLSKeyFile {
				c.TLSKeySecret = s.SecretName
			}
		}
		for _, cf := range cs.Configs {
			if cf.File != nil && cf.File.Name == env.TLSCertFile {
				c.TLSCertConfig = cf.ConfigName
			}
		}
		if c.TLSKeySecret == "" || c.TLSCertConfig == "" {
			return ReplicaConfig{}, fmt.Errorf("service %s reads its TLS certificate from %s and %s, and does not mount both: it was changed outside dtr; give the certificate again with dtr reconfigure --dtr-cert --dtr-key", name, env.TLSCertFile, env.TLSKeyFile)
		}
	}
	// The metrics token: the secret its file comes from.
	if env.MetricsTokenFile != "" {
		for _, s := range cs.Secrets {
			if s.File != nil && contract.SecretsDir+s.File.Name == env.MetricsTokenFile {
				c.MetricsTokenSecret = s.SecretName
			}
		}
		if c.MetricsTokenSecret == "" {
			return ReplicaConfig{}, fmt.Errorf("service %s reads its metrics token from %s and mounts no secret there: it was changed outside dtr; give the token again with dtr reconfigure --metrics-token-file", name, env.MetricsTokenFile)
		}
	}
	return c, nil
}

// ObjectIDs are the IDs of the secrets and configs r's service references,
// by the names ServiceSpec gives them; with Config, what ServiceSpec needs
// to make r's service again.
func (r Replica) ObjectIDs() ObjectIDs {
	var ids ObjectIDs
	cs := r.Spec.TaskTemplate.ContainerSpec
	if cs == nil {
		return ids
	}
	c, _ := r.Config()
	for _, s := range cs.Secrets {
		switch s.SecretName {
		case CAKeySecret:
			ids.CAKey = s.SecretID
		case AdminSecret(r.ID):
			ids.Admin = s.SecretID
		case c.TLSKeySecret:
			if c.TLSKeySecret != "" {
				ids.TLSKey = s.SecretID
			}
		case c.MetricsTokenSecret:
			if c.MetricsTokenSecret != "" {
				ids.MetricsToken = s.SecretID
			}
		}
	}
	for _, cf := range cs.Configs {
		switch cf.ConfigName {
		case CACertConfig:
			ids.CACert = cf.ConfigID
		case c.TLSCertConfig:
			if c.TLSCertConfig != "" {
				ids.TLSCert = cf.ConfigID
			}
		}
	}
	return ids
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
