package ucpfake

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// The fake keeps services, networks, secrets, configs and volumes in memory:
// enough for the installer's plans and teardown to be tested without an
// engine. Tasks never run: the real engine tests cover that.

type notFoundError struct{ what string }

func (e notFoundError) Error() string { return e.what + " not found" }
func (e notFoundError) NotFound()     {}

var _ = cerrdefs.IsNotFound(notFoundError{})

// Images maps references to IDs for ImageInspect.
func (e *Engine) image(ref string) (string, bool) {
	if e.Images == nil {
		return "sha256:" + strings.Repeat("ab", 32), true
	}
	id, ok := e.Images[ref]
	return id, ok
}

// ServiceCreate implements ucp.Engine.
func (e *Engine) ServiceCreate(_ context.Context, spec swarm.ServiceSpec, _ swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.Services {
		if s.Spec.Name == spec.Name {
			return swarm.ServiceCreateResponse{}, fmt.Errorf("service %s: name conflicts with an existing object", spec.Name)
		}
	}
	id := fmt.Sprintf("svc%d", len(e.Services)+1)
	e.Services = append(e.Services, swarm.Service{ID: id, Spec: spec})
	if spec.Mode.ReplicatedJob != nil {
		e.Jobs = append(e.Jobs, spec)
	}
	return swarm.ServiceCreateResponse{ID: id}, e.Err
}

// ServiceInspectWithRaw implements ucp.Engine.
func (e *Engine) ServiceInspectWithRaw(_ context.Context, id string, _ swarm.ServiceInspectOptions) (swarm.Service, []byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.Services {
		if s.ID == id || s.Spec.Name == id {
			return s, nil, nil
		}
	}
	return swarm.Service{}, nil, notFoundError{"service " + id}
}

// ServiceUpdate implements ucp.Engine: the update completes at once.
func (e *Engine) ServiceUpdate(_ context.Context, id string, _ swarm.Version, spec swarm.ServiceSpec, _ swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, s := range e.Services {
		if s.ID == id || s.Spec.Name == id {
			e.Services[i].Spec = spec
			e.Services[i].Version.Index++
			e.Services[i].UpdateStatus = &swarm.UpdateStatus{State: swarm.UpdateStateCompleted}
			return swarm.ServiceUpdateResponse{}, nil
		}
	}
	return swarm.ServiceUpdateResponse{}, notFoundError{"service " + id}
}

// ServiceRemove implements ucp.Engine.
func (e *Engine) ServiceRemove(_ context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, s := range e.Services {
		if s.ID == id || s.Spec.Name == id {
			e.Services = append(e.Services[:i], e.Services[i+1:]...)
			return nil
		}
	}
	return notFoundError{"service " + id}
}

// ServiceLogs implements ucp.Engine: a job's output as Job says, in the
// engine's multiplexed format (stdout); nothing for other services.
func (e *Engine) ServiceLogs(_ context.Context, id string, _ container.LogsOptions) (io.ReadCloser, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.Services {
		if (s.ID == id || s.Spec.Name == id) && s.Spec.Mode.ReplicatedJob != nil && e.Job != nil {
			_, logs := e.Job(s.Spec)
			var b bytes.Buffer
			w := stdcopy.NewStdWriter(&b, stdcopy.Stdout)
			_, _ = w.Write([]byte(logs))
			return io.NopCloser(&b), nil
		}
	}
	return io.NopCloser(strings.NewReader("")), nil
}

// TaskList implements ucp.Engine: a job's task completes at once; other
// services' tasks never run in the fake.
func (e *Engine) TaskList(_ context.Context, o swarm.TaskListOptions) ([]swarm.Task, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []swarm.Task
	for _, s := range e.Services {
		if ids := o.Filters.Get("service"); len(ids) > 0 && ids[0] != s.ID {
			continue
		}
		if s.Spec.Mode.ReplicatedJob != nil {
			st := swarm.TaskStatus{State: swarm.TaskStateComplete}
			if e.Job != nil {
				if ok, _ := e.Job(s.Spec); !ok {
					st = swarm.TaskStatus{State: swarm.TaskStateFailed, Err: "task: non-zero exit (1)"}
				}
			}
			out = append(out, swarm.Task{ServiceID: s.ID, Status: st})
		}
	}
	return out, e.Err
}

// ContainerList implements ucp.Engine.
func (e *Engine) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return nil, e.Err
}

// NetworkList implements ucp.Engine.
func (e *Engine) NetworkList(_ context.Context, o network.ListOptions) ([]network.Summary, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []network.Summary
	for _, n := range e.Networks {
		if names := o.Filters.Get("name"); len(names) == 0 || strings.Contains(n.Name, names[0]) {
			out = append(out, n)
		}
	}
	return out, e.Err
}

// NetworkCreate implements ucp.Engine.
func (e *Engine) NetworkCreate(_ context.Context, name string, o network.CreateOptions) (network.CreateResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := "net-" + name
	e.Networks = append(e.Networks, network.Summary{ID: id, Name: name, Driver: o.Driver, Labels: o.Labels})
	return network.CreateResponse{ID: id}, e.Err
}

// NetworkRemove implements ucp.Engine.
func (e *Engine) NetworkRemove(_ context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, n := range e.Networks {
		if n.ID == id || n.Name == id {
			e.Networks = append(e.Networks[:i], e.Networks[i+1:]...)
			return nil
		}
	}
	return notFoundError{"network " + id}
}

// VolumeList implements ucp.Engine.
func (e *Engine) VolumeList(context.Context, volume.ListOptions) (volume.ListResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*volume.Volume
	for i := range e.Volumes {
		out = append(out, &e.Volumes[i])
	}
	return volume.ListResponse{Volumes: out}, e.Err
}

// VolumeRemove implements ucp.Engine.
func (e *Engine) VolumeRemove(_ context.Context, name string, _ bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, v := range e.Volumes {
		if v.Name == name {
			e.Volumes = append(e.Volumes[:i], e.Volumes[i+1:]...)
			return nil
		}
	}
	return notFoundError{"volume " + name}
}

// SecretList implements ucp.Engine.
func (e *Engine) SecretList(_ context.Context, o swarm.SecretListOptions) ([]swarm.Secret, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []swarm.Secret
	for _, s := range e.Secrets {
		if names := o.Filters.Get("name"); len(names) == 0 || s.Spec.Name == names[0] {
			out = append(out, s)
		}
	}
	return out, e.Err
}

// SecretCreate implements ucp.Engine.
func (e *Engine) SecretCreate(_ context.Context, spec swarm.SecretSpec) (swarm.SecretCreateResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := "secret-" + spec.Name
	e.Secrets = append(e.Secrets, swarm.Secret{ID: id, Spec: spec})
	return swarm.SecretCreateResponse{ID: id}, e.Err
}

// SecretRemove implements ucp.Engine.
func (e *Engine) SecretRemove(_ context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, s := range e.Secrets {
		if s.ID == id {
			e.Secrets = append(e.Secrets[:i], e.Secrets[i+1:]...)
			return nil
		}
	}
	return notFoundError{"secret " + id}
}

// ConfigList implements ucp.Engine.
func (e *Engine) ConfigList(_ context.Context, o swarm.ConfigListOptions) ([]swarm.Config, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []swarm.Config
	for _, c := range e.Configs {
		if names := o.Filters.Get("name"); len(names) == 0 || c.Spec.Name == names[0] {
			out = append(out, c)
		}
	}
	return out, e.Err
}

// ConfigCreate implements ucp.Engine.
func (e *Engine) ConfigCreate(_ context.Context, spec swarm.ConfigSpec) (swarm.ConfigCreateResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := "config-" + spec.Name
	e.Configs = append(e.Configs, swarm.Config{ID: id, Spec: spec})
	return swarm.ConfigCreateResponse{ID: id}, e.Err
}

// ConfigRemove implements ucp.Engine.
func (e *Engine) ConfigRemove(_ context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, c := range e.Configs {
		if c.ID == id {
			e.Configs = append(e.Configs[:i], e.Configs[i+1:]...)
			return nil
		}
	}
	return notFoundError{"config " + id}
}

// ImageInspect implements ucp.Engine.
func (e *Engine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	id, ok := e.image(ref)
	if !ok {
		return image.InspectResponse{}, notFoundError{"image " + ref}
	}
	return image.InspectResponse{ID: id}, nil
}
