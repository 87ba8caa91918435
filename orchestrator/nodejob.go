package orchestrator

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
	one := uint64(1)
	name := fmt.Sprintf("dtr-job-%d", time.Now().UnixNano())
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: map[string]string{LabelRole: "job", LabelVersion: version, LabelNode: node}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:  imageID,
				Args:   args,
				User:   "0:0",
				Labels: map[string]string{LabelRole: "job"},
				Mounts: []mount.Mount{{Type: mount.TypeBind, Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"}},
			},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			Placement:     &swarm.Placement{Constraints: []string{"node.hostname==" + node}},
		},
		Mode: swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: &one, TotalCompletions: &one}},
	}
	resp, err := o.C.Engine.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
	if err != nil {
		return "", fmt.Errorf("starting a job on node %s: %w", node, err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = o.RemoveService(rctx, name)
	}()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		tasks, err := o.C.Engine.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", resp.ID))})
		if err != nil {
			return "", err
		}
		for _, t := range tasks {
			switch t.Status.State {
			case swarm.TaskStateComplete:
				return o.serviceLogs(ctx, resp.ID), nil
			case swarm.TaskStateFailed, swarm.TaskStateRejected:
				out := o.serviceLogs(ctx, resp.ID)
				return out, fmt.Errorf("job on node %s failed: %s %s", node, t.Status.Err, strings.TrimSpace(out))
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("job on node %s did not finish within 3 minutes; is the dtr image loaded there (dtr images)?", node)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
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
