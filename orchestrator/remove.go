package orchestrator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/contract"
)

// Remove is what removing replicas from a healthy cluster needs.
type Remove struct {
	Targets []Replica
	Through Replica    // a replica that stays; its admin API is API
	API     ReplicaAPI // the cluster, told first
	JobID   string     // installer image ID, for node jobs that remove volumes
	// DrainWait is how long load balancers get to stop sending requests
	// to a drained replica before it stops.
	DrainWait time.Duration
}

// PlanRemove drains the targets, then for each one removes its metadata
// member from the cluster and then its service, volumes and secrets. It goes
// only forward: a removed member cannot come back, and running remove again
// finishes the work.
func (o Objects) PlanRemove(in *Remove) *Plan {
	ids := make([]string, len(in.Targets))
	for i, t := range in.Targets {
		ids[i] = t.ID
	}
	list := strings.Join(ids, ", ")
	p := &Plan{Title: fmt.Sprintf("Remove replica(s) %s through replica %s", list, in.Through.ID), Forward: true}
	p.Add(Step{
		Description: fmt.Sprintf("drain replica(s) %s: their /_ping reports them leaving, and load balancers get %v to stop sending them requests", list, in.DrainWait),
		Apply: func(ctx context.Context, _ *State) error {
			drained := 0
			for _, id := range ids {
				if err := in.API.Drain(ctx, id); err != nil {
					o.warnf("Could not mark replica %s as draining (%v): load balancers learn it is gone only when it stops", id, err)
					continue
				}
				drained++
			}
			if drained == 0 {
				return nil
			}
			// The replicas' /_ping turns 503 at their next probe; a load
			// balancer checking every second or two stops sending them
			// requests before they stop.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(in.DrainWait):
				return nil
			}
		},
	})
	for _, t := range in.Targets {
		p.Add(Step{
			Description: fmt.Sprintf("remove replica %s's metadata member from the cluster, through replica %s", t.ID, in.Through.ID),
			Apply: func(ctx context.Context, _ *State) error {
				if err := in.API.RemoveReplica(ctx, t.ID); err != nil {
					return fmt.Errorf("removing replica %s from the cluster: %w; its service and volumes are still there", t.ID, err)
				}
				return nil
			},
		})
		p.Add(Step{
			Description: "remove " + describeObjects(t),
			Apply: func(ctx context.Context, _ *State) error {
				if err := o.RemoveReplicaObjects(ctx, ReplicaConfig{ID: t.ID, Node: t.Node, Version: t.Version, JobImageID: in.JobID}); err != nil {
					return fmt.Errorf("replica %s left the cluster, but removing its objects failed: %w; run dtr destroy --replica-id %s", t.ID, err, t.ID)
				}
				return nil
			},
		})
	}
	return p
}

// Destroy is what destroying one replica needs.
type Destroy struct {
	Replica Replica // ID alone when its service is gone already
	JobID   string
	// Last: no other replica is left, so the cluster's own objects go too.
	Last bool
}

// PlanDestroy removes a replica's objects without asking the cluster, and
// with the last replica the network, CA and certificates. Like remove, it
// goes only forward, and running it again is fine.
func (o Objects) PlanDestroy(in *Destroy) *Plan {
	r := in.Replica
	p := &Plan{Title: fmt.Sprintf("Destroy replica %s", r.ID), Forward: true}
	p.Add(Step{
		Description: "remove " + describeObjects(r),
		Apply: func(ctx context.Context, _ *State) error {
			return o.RemoveReplicaObjects(ctx, ReplicaConfig{ID: r.ID, Node: r.Node, Version: r.Version, JobImageID: in.JobID})
		},
	})
	if in.Last {
		p.Add(Step{
			Description: fmt.Sprintf("remove network %s and the cluster's CA and certificates: no replica is left", NetworkName),
			Apply: func(ctx context.Context, _ *State) error {
				// A replica joined since planning keeps them.
				left, err := FindReplicas(ctx, o.C)
				if err != nil {
					return err
				}
				if len(left) > 0 {
					o.warnf("Replica %s appeared since this command started: keeping network %s and the cluster's CA", left[0].ID, NetworkName)
					return nil
				}
				return o.RemoveClusterObjects(ctx)
			},
		})
	}
	return p
}

// describeObjects names what RemoveReplicaObjects removes of r.
func describeObjects(r Replica) string {
	where := "node " + r.Node
	if r.Node == "" {
		where = "this manager"
	}
	return fmt.Sprintf("service %s and its volumes on %s (%s, whichever exist; a storage volume or host path it was given stays)",
		contract.ServiceName(r.ID), where, strings.Join(replicaVolumes(r.ID), ", "))
}
