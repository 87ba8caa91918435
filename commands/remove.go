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
	dryRun          bool
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
	addDryRunFlag(f, &o.dryRun)
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
	var choice *replicaChoice
	if len(targets) == 0 {
		choice = &replicaChoice{flag: "replica-ids", question: "Choose a replica to remove"}
	}
	cluster, target, replicas, err := o.ucp.connectToReplicas(ctx, cli, cmd, credsAlways, choice)
	if err != nil {
		return err
	}
	defer cluster.Close()
	if choice != nil {
		targets = []string{target.ID}
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
	existing, err := pickReplica(cli, cmd, replicas, replicaChoice{flag: "existing-replica-id", id: o.existingReplica, question: "Choose any healthy replica"})
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
	in := &orchestrator.Remove{Through: existing, API: api, JobID: jobID, DrainWait: drainWait}
	for _, t := range targets {
		in.Targets = append(in.Targets, byID[t])
	}
	plan := (orchestrator.Objects{C: cluster, Warn: warner(cli)}).PlanRemove(in)
	if o.dryRun {
		return plan.DryRun(cli.Out)
	}
	if err := plan.Apply(ctx, cli.Log, false); err != nil {
		return err
	}
	cli.Log.Infof("Done. Your cluster size is now %d", len(replicas)-len(targets))
	return nil
}
