package commands

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/orchestrator"
)

// drainWait is how long remove waits between draining a replica and
// stopping it: a health probe interval (2 s) plus a load balancer's two
// failed checks at DTR's recommended interval, with room to spare.
const drainWait = 6 * time.Second

type removeOptions struct {
	ucp             ucpOptions
	existingReplica string
	replicaIDs      string
	replicaID       string // deprecated alias of replicaIDs
}

func newRemoveCommand(cli *Cli) *cobra.Command {
	var o removeOptions
	cmd := &cobra.Command{
		Use:   "remove [flags]",
		Short: "Gracefully remove replicas from a healthy cluster",
		Long: `Remove replicas while the rest of the cluster stays healthy: the cluster is told
first, then the replicas' services and volumes go. Refused when it would cost
quorum. For a dead cluster use 'emergency-repair'; to uninstall, 'destroy'.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRemove(cmd.Context(), cli, cmd, &o) },
	}
	f := newFlags(cmd)
	addUCPFlags(f, &o.ucp)
	addExistingReplicaFlag(f, &o.existingReplica, "The ID of a healthy replica that stays, to remove the others through")
	f.String(&o.replicaIDs, "replica-ids", "", "Comma-separated IDs of the replicas to remove", "DTR_REMOVE_REPLICA_IDS")
	f.String(&o.replicaID, "replica-id", "", "Deprecated: use --replica-ids", "DTR_REMOVE_REPLICA_ID")
	return cmd
}

func runRemove(ctx context.Context, cli *Cli, cmd *cobra.Command, o *removeOptions) error {
	if o.replicaID != "" && o.replicaIDs != "" {
		return usageErrorf("--replica-id and --replica-ids both name replicas to remove; use --replica-ids")
	}
	if o.replicaID != "" {
		cli.Log.Warn("--replica-id is deprecated for remove; use --replica-ids")
		o.replicaIDs = o.replicaID
	}
	targets, err := validateReplicaIDs(o.replicaIDs)
	if err != nil {
		return err
	}
	if o.existingReplica != "" {
		id, err := validateReplicaID(o.existingReplica)
		if err != nil {
			return err
		}
		if slices.Contains(targets, id) {
			return usageErrorf("--existing-replica-id %s is also in --replica-ids; the replica to work through must stay", id)
		}
	}
	cli.Log.Info("Beginning Docker Trusted Registry replica remove")
	if err := o.ucp.complete(cli, cmd, credsAlways); err != nil {
		return err
	}
	cluster, err := o.ucp.connect(ctx, cli)
	if err != nil {
		return err
	}
	defer cluster.Close()
	if len(targets) == 0 {
		target, _, err := chooseReplica(ctx, cli, cmd, cluster, "replica-ids", "", "Choose a replica to remove")
		if err != nil {
			return err
		}
		targets = []string{target.ID}
	}
	replicas, err := orchestrator.FindReplicas(ctx, cluster)
	if err != nil {
		return err
	}
	byID := map[string]orchestrator.Replica{}
	var ids []string
	for _, r := range replicas {
		byID[r.ID] = r
		ids = append(ids, r.ID)
	}
	for _, t := range targets {
		if _, ok := byID[t]; !ok {
			return usageErrorf("The replica '%s' you specified could not be found. Valid replicas: %s", t, strings.Join(ids, ", "))
		}
	}
	if len(targets) >= len(replicas) {
		return usageErrorf("removing %s would leave no replica: to uninstall, run dtr destroy for each replica", strings.Join(targets, ", "))
	}
	var stay []string
	for _, id := range ids {
		if !contains(targets, id) {
			stay = append(stay, id)
		}
	}
	if o.existingReplica == "" && !cli.prompter().Interactive() {
		o.existingReplica = stay[0]
	}
	existing, _, err := chooseReplica(ctx, cli, cmd, cluster, "existing-replica-id", o.existingReplica, "Choose any healthy replica")
	if err != nil {
		return err
	}
	if contains(targets, existing.ID) {
		return usageErrorf("--existing-replica-id %s is also being removed; choose a replica that stays", existing.ID)
	}
	cli.Log.Info("Checking your current configs")
	// The replicas that stay must carry the cluster: all of them healthy, or
	// removing would cost quorum (use emergency-repair for a dead cluster).
	api, problems, err := apiAndProblems(ctx, cluster, &o.ucp, existing, replicas, targets...)
	if err != nil {
		return err
	}
	if problems != "" {
		return fmt.Errorf("refusing to remove %s: the replicas that would stay are not all healthy (%s), so the cluster could lose quorum. Fix them first, or use dtr emergency-repair if a majority is gone",
			strings.Join(targets, ", "), problems)
	}
	_, jobID, err := imageIDs(ctx, cluster)
	if err != nil {
		return err
	}
	objs := orchestrator.Objects{C: cluster, Warn: warner(cli)}
	// Drain first: the replicas' /_ping turns 503 at their next probe, and a
	// load balancer checking every second or two stops sending them
	// requests before they stop.
	drained := 0
	for _, t := range targets {
		if err := api.Drain(ctx, t); err != nil {
			cli.Log.Warnf("Could not mark replica %s as draining (%v): load balancers learn it is gone only when it stops", t, err)
			continue
		}
		drained++
	}
	if drained > 0 {
		cli.Log.Infof("Draining %s: /_ping reports it leaving; waiting %v for load balancers to stop sending it requests", strings.Join(targets, ", "), drainWait)
		if err := pause(ctx, drainWait); err != nil {
			return err
		}
	}
	for _, t := range targets {
		r := byID[t]
		cli.Log.Infof("De-registering replica %s from the metadata cluster", t)
		if err := api.RemoveReplica(ctx, t); err != nil {
			return fmt.Errorf("removing replica %s from the cluster: %w; nothing was removed from the swarm", t, err)
		}
		cli.Log.Infof("Removing the service and volumes of replica %s", t)
		if err := objs.RemoveReplicaObjects(ctx, orchestrator.ReplicaConfig{ID: t, Node: r.Node, Version: r.Version, JobImageID: jobID}); err != nil {
			return fmt.Errorf("replica %s left the cluster, but removing its objects failed: %w; run dtr destroy --replica-id %s", t, err, t)
		}
	}
	cli.Log.Infof("Done. Your cluster size is now %d", len(replicas)-len(targets))
	return nil
}
