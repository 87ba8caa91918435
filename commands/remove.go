package commands

import (
	"context"
	"slices"

	"github.com/spf13/cobra"
)

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
	if _, _, err := chooseReplica(ctx, cli, cmd, cluster, "existing-replica-id", o.existingReplica, "Choose any healthy replica"); err != nil {
		return err
	}
	return notImplemented("remove")
}
