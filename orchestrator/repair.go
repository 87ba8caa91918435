package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/contract"
)

// Repair is what an emergency repair needs: the replica to keep and the
// ones to drop.
type Repair struct {
	Keep  Replica
	Drop  []Replica
	Prune bool   // also remove the dropped replicas' volumes
	Token string // the replica's new contract.Config.ForceNewCluster: forces once
	JobID string // installer image ID, for node jobs that remove volumes
	URL   string // the kept replica's HTTPS URL
	// API is the kept replica's admin API: a running replica is repaired
	// in place through it, without Swarm restarting its container; nil,
	// or a replica that cannot (ErrNoRepairInPlace), restarts instead.
	API *ReplicaAPI

	CAPEM         []byte
	HealthTimeout time.Duration
}

// PlanRepair drops the other replicas first (so none of them talks to the
// forced member as an old peer), then restarts the kept replica's member as
// the only member of its cluster, keeping its data (in place through its
// admin API when it runs: seconds, where a Swarm restart of the container
// takes 15-20), and waits until healthy.
// Nothing here can be undone: the repair goes forward, and re-running it is
// safe.
func (o Objects) PlanRepair(in *Repair) *Plan {
	p := &Plan{Title: fmt.Sprintf("Emergency repair: keep replica %s, drop %d", in.Keep.ID, len(in.Drop)), Forward: true}
	for _, r := range in.Drop {
		desc := fmt.Sprintf("remove service %s", contract.ServiceName(r.ID))
		if in.Prune {
			desc += fmt.Sprintf(" and its volumes on node %s", r.Node)
		}
		p.Add(Step{Description: desc, Apply: func(ctx context.Context, _ *State) error {
			if in.Prune {
				return o.RemoveReplicaObjects(ctx, ReplicaConfig{ID: r.ID, Node: r.Node, Version: r.Version, JobImageID: in.JobID})
			}
			if err := o.RemoveService(ctx, contract.ServiceName(r.ID)); err != nil {
				return err
			}
			return o.RemoveSecret(ctx, AdminSecret(r.ID))
		}})
	}
	name := contract.ServiceName(in.Keep.ID)
	desc := fmt.Sprintf("restart %s with its metadata member as the only member of a new cluster, keeping its data", name)
	if in.API != nil {
		desc = fmt.Sprintf("make the metadata member of %s the only member of a new cluster, keeping its data: in place through its admin API, or by restarting the service if it does not answer", name)
	}
	p.Add(Step{
		Description: desc,
		Apply: func(ctx context.Context, _ *State) error {
			if in.API != nil {
				_, err := in.API.EmergencyRepair(ctx, in.Token)
				if err == nil || !errors.Is(err, ErrNoRepairInPlace) {
					return err
				}
				if o.Warn != nil {
					o.Warn(fmt.Sprintf("Replica %s cannot be repaired in place (%v); restarting service %s with the repair's token instead", in.Keep.ID, err, name))
				}
			}
			return o.restartForced(ctx, name, in)
		},
	})
	p.Add(Step{
		Description: fmt.Sprintf("wait until replica %s answers healthy at %s/_ping", in.Keep.ID, in.URL),
		Apply: func(ctx context.Context, _ *State) error {
			return o.WaitHealthy(ctx, HTTPSClient(in.CAPEM), in.URL, name, in.HealthTimeout)
		},
	})
	return p
}

// restartForced updates the kept replica's service with the repair's token
// in its environment, which restarts its task: the way to repair a replica
// that is not running, or one too old to repair in place.
func (o Objects) restartForced(ctx context.Context, name string, in *Repair) error {
	s, _, err := o.C.Engine.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspecting %s: %w", name, err)
	}
	spec := s.Spec
	if spec.TaskTemplate.ContainerSpec == nil {
		return fmt.Errorf("service %s has no container spec: it was not made by dtr", name)
	}
	cs := *spec.TaskTemplate.ContainerSpec
	env, err := contract.ParseEnv(cs.Env)
	if err != nil {
		return fmt.Errorf("the environment of service %s: %w", name, err)
	}
	env.ForceNewCluster = in.Token
	cs.Env = withEnv(cs.Env, env)
	spec.TaskTemplate.ContainerSpec = &cs
	// A stopped replica (scaled to 0) must run again.
	if m := spec.Mode.Replicated; m != nil && (m.Replicas == nil || *m.Replicas == 0) {
		spec.Mode.Replicated = &swarm.ReplicatedService{Replicas: ptr(uint64(1))}
	}
	spec.TaskTemplate.ForceUpdate++
	if _, err := o.C.Engine.ServiceUpdate(ctx, s.ID, s.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		return fmt.Errorf("updating %s: %w", name, err)
	}
	return o.WaitUpdated(ctx, name, in.HealthTimeout)
}
