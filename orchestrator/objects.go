package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/ucp"
)

// Objects creates and removes dtr's Swarm objects; removal treats "not
// found" as success so every teardown can run again.
type Objects struct {
	C *ucp.Cluster
	// Warn reports what an operator must know but that does not stop the
	// work (a node that is down); nil drops it.
	Warn func(string)
}

func notFound(err error) bool {
	return err == nil || cerrdefs.IsNotFound(err)
}

// NetworkID returns dtr-ol's ID, or "" when it does not exist.
func (o Objects) NetworkID(ctx context.Context) (string, error) {
	nets, err := o.C.Engine.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", NetworkName))})
	if err != nil {
		return "", err
	}
	for _, n := range nets {
		if n.Name == NetworkName {
			return n.ID, nil
		}
	}
	return "", nil
}

// CreateNetwork creates dtr-ol: overlay, attachable, with the given subnet.
func (o Objects) CreateNetwork(ctx context.Context, subnet, version string) (string, error) {
	resp, err := o.C.Engine.NetworkCreate(ctx, NetworkName, network.CreateOptions{
		Driver:     "overlay",
		Attachable: true,
		IPAM:       &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet}}},
		Labels:     map[string]string{LabelRole: "network", LabelVersion: version},
	})
	if err != nil {
		return "", fmt.Errorf("creating network %s (%s): %w; if the subnet clashes with a host network, pass --overlay-subnet", NetworkName, subnet, err)
	}
	return resp.ID, nil
}

// RemoveNetwork removes dtr-ol.
func (o Objects) RemoveNetwork(ctx context.Context) error {
	id, err := o.NetworkID(ctx)
	if err != nil || id == "" {
		return err
	}
	// The network is busy until the last task's container is gone.
	return retry(ctx, 30*time.Second, func() error {
		err := o.C.Engine.NetworkRemove(ctx, id)
		if notFound(err) {
			return nil
		}
		return err
	})
}

// SecretID finds a secret by name ("" when absent).
func (o Objects) SecretID(ctx context.Context, name string) (string, error) {
	list, err := o.C.Engine.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return "", err
	}
	for _, s := range list {
		if s.Spec.Name == name {
			return s.ID, nil
		}
	}
	return "", nil
}

// CreateSecret stores data as a Swarm secret with dtr's labels.
func (o Objects) CreateSecret(ctx context.Context, name string, data []byte, lbl map[string]string) (string, error) {
	resp, err := o.C.Engine.SecretCreate(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: name, Labels: lbl}, Data: data})
	if err != nil {
		return "", fmt.Errorf("creating secret %s: %w", name, err)
	}
	return resp.ID, nil
}

// ConfigID finds a config by name ("" when absent).
func (o Objects) ConfigID(ctx context.Context, name string) (string, error) {
	list, err := o.C.Engine.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return "", err
	}
	for _, c := range list {
		if c.Spec.Name == name {
			return c.ID, nil
		}
	}
	return "", nil
}

// ConfigData reads a config's content (configs, unlike secrets, are readable).
func (o Objects) ConfigData(ctx context.Context, name string) ([]byte, error) {
	list, err := o.C.Engine.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return nil, err
	}
	for _, c := range list {
		if c.Spec.Name == name {
			return c.Spec.Data, nil
		}
	}
	return nil, fmt.Errorf("config %s not found", name)
}

// CreateConfig stores data as a Swarm config with dtr's labels.
func (o Objects) CreateConfig(ctx context.Context, name string, data []byte, lbl map[string]string) (string, error) {
	resp, err := o.C.Engine.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: name, Labels: lbl}, Data: data})
	if err != nil {
		return "", fmt.Errorf("creating config %s: %w", name, err)
	}
	return resp.ID, nil
}

// RemoveSecret removes a secret by name; absent is fine.
func (o Objects) RemoveSecret(ctx context.Context, name string) error {
	id, err := o.SecretID(ctx, name)
	if err != nil || id == "" {
		return err
	}
	return retry(ctx, 30*time.Second, func() error {
		if err := o.C.Engine.SecretRemove(ctx, id); !notFound(err) {
			return err
		}
		return nil
	})
}

// RemoveConfig removes a config by name; absent is fine.
func (o Objects) RemoveConfig(ctx context.Context, name string) error {
	id, err := o.ConfigID(ctx, name)
	if err != nil || id == "" {
		return err
	}
	return retry(ctx, 30*time.Second, func() error {
		if err := o.C.Engine.ConfigRemove(ctx, id); !notFound(err) {
			return err
		}
		return nil
	})
}

// CreateService creates a service and returns its ID.
func (o Objects) CreateService(ctx context.Context, spec swarm.ServiceSpec) (string, error) {
	resp, err := o.C.Engine.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
	if err != nil {
		return "", fmt.Errorf("creating service %s: %w", spec.Name, err)
	}
	return resp.ID, nil
}

// RemoveService removes a service and waits until its task containers are
// gone (volumes stay busy until then).
func (o Objects) RemoveService(ctx context.Context, name string) error {
	if err := o.C.Engine.ServiceRemove(ctx, name); !notFound(err) {
		return fmt.Errorf("removing service %s: %w", name, err)
	}
	return o.WaitContainersGone(ctx, name)
}

// WaitContainersGone waits until this engine has no container of service.
func (o Objects) WaitContainersGone(ctx context.Context, service string) error {
	return retry(ctx, 90*time.Second, func() error {
		cs, err := o.C.Engine.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name="+service))})
		if err != nil {
			return err
		}
		if len(cs) > 0 {
			return fmt.Errorf("%d container(s) of %s still exist", len(cs), service)
		}
		return nil
	})
}

// RemoveVolumes removes volumes on the manager's own engine; absent is fine.
func (o Objects) RemoveVolumes(ctx context.Context, names ...string) error {
	var errs []error
	for _, n := range names {
		err := retry(ctx, 30*time.Second, func() error {
			if err := o.C.Engine.VolumeRemove(ctx, n, false); !notFound(err) {
				return err
			}
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("removing volume %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}
