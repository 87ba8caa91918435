package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/pkg/stdcopy"
)

// RunNodeJob runs the dtr image once on node, as a Swarm job with the node's
// engine socket mounted, with args (a hidden `dtr node-job …` command): the
// manager's API cannot reach another node's volumes or ports. It returns the
// job's output; a failed job is an error carrying that output.
func (o Objects) RunNodeJob(ctx context.Context, node, imageID, version string, args ...string) (string, error) {
	return o.RunJob(ctx, NodeJob{Node: node, ImageID: imageID, Version: version, Args: args, Engine: true})
}

// NodeJob is one run of the dtr image on a node (DTR's "phase 2" container).
type NodeJob struct {
	Node, ImageID, Version string
	Args                   []string
	// Engine mounts the node's engine socket, for jobs that manage the
	// node's volumes or containers.
	Engine bool
	// Networks the job's container joins: dtr-ol for the overlay test.
	Networks []string
	// Configs are Swarm configs mounted into the job (the cluster CA).
	Configs []*swarm.ConfigReference
}

// RunJob runs j and returns its output; a failed job is an error carrying it.
func (o Objects) RunJob(ctx context.Context, j NodeJob) (string, error) {
	node := j.Node
	one := uint64(1)
	name := fmt.Sprintf("dtr-job-%d", time.Now().UnixNano())
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: map[string]string{LabelRole: "job", LabelVersion: j.Version, LabelNode: node}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:   j.ImageID,
				Args:    j.Args,
				User:    "0:0",
				Labels:  map[string]string{LabelRole: "job"},
				Configs: j.Configs,
			},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			Placement:     &swarm.Placement{Constraints: []string{"node.hostname==" + node}},
		},
		Mode: swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: &one, TotalCompletions: &one}},
	}
	if j.Engine {
		spec.TaskTemplate.ContainerSpec.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"}}
	}
	for _, n := range j.Networks {
		spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: n})
	}
	resp, err := o.C.Engine.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
	if err != nil {
		return "", fmt.Errorf("starting a job on node %s: %w", node, err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		// Not RemoveService: a job holds no volume, and its exited container
		// lingers 30 to 50 s after the service goes (measured here) before
		// Swarm reaps it; waiting for that made every job cost as much.
		_ = o.C.Engine.ServiceRemove(rctx, name)
	}()
	var out string
	err = poll(ctx, 3*time.Minute, 300*time.Millisecond, func() (bool, error) {
		tasks, err := o.C.Engine.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", resp.ID))})
		if err != nil {
			return false, err
		}
		for _, t := range tasks {
			switch t.Status.State {
			case swarm.TaskStateComplete:
				out = o.serviceLogs(ctx, resp.ID)
				return true, nil
			case swarm.TaskStateFailed, swarm.TaskStateRejected:
				out = o.serviceLogs(ctx, resp.ID)
				return false, fmt.Errorf("job on node %s failed: %s %s", node, t.Status.Err, strings.TrimSpace(out))
			}
		}
		return false, nil
	})
	if errors.Is(err, errTimedOut) {
		return "", fmt.Errorf("job on node %s did not finish within 3 minutes; is the dtr image loaded there (dtr images)?", node)
	}
	return out, err
}

func (o Objects) serviceLogs(ctx context.Context, id string) string {
	rc, err := o.C.Engine.ServiceLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return ""
	}
	defer rc.Close()
	var out, errb bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errb, io.LimitReader(rc, 1<<20)); err != nil {
		return out.String() + errb.String()
	}
	return out.String() + errb.String()
}

// ProbeLive is the overlay network test's inside (run by `dtr node-job
// network-test` in a container on dtr-ol): GET url until 200 or within
// passes, trusting the cluster CA. A node that just joined the overlay may
// take a few seconds to learn the other tasks' names, hence the retries.
func ProbeLive(ctx context.Context, caPEM []byte, url string, within time.Duration) (time.Duration, error) {
	client := HTTPSClient(caPEM)
	client.Timeout = 5 * time.Second
	start := time.Now()
	err := retry(ctx, within, func() error {
		status, _, err := get(ctx, client, url)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("answered %d", status)
		}
		return err
	})
	return time.Since(start), err
}
