package commands

import (
	"context"

	"github.com/spf13/cobra"
)

type emergencyRepairOptions struct {
	ucp             ucpOptions
	replica         replicaOptions
	existingReplica string
	prune           bool
	yes             bool
}

func newEmergencyRepairCommand(cli *Cli) *cobra.Command {
	var o emergencyRepairOptions
	cmd := &cobra.Command{
		Use:   "emergency-repair [flags]",
		Short: "Recover a cluster that lost quorum by shrinking it to one surviving replica",
		Long: `For a cluster where a majority of replicas is gone: the chosen replica restarts
its metadata as a new single-member cluster, keeping its data; the other
replicas' services are removed (and their volumes, with --prune). Then 'join'
new replicas. If only a minority is unhealthy, use 'remove' and 'join' instead.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runEmergencyRepair(cmd.Context(), cli, cmd, &o) },
	}
	f := newFlags(cmd)
	addUCPFlags(f, &o.ucp)
	addExistingReplicaFlag(f, &o.existingReplica, "The ID of the surviving replica to keep")
	addOverlayFlag(f, &o.replica)
	f.Bool(&o.prune, "prune", false, "Also remove the other replicas' volumes", "PRUNE")
	f.BoolP(&o.yes, "yes", "y", false, "Answer yes to the confirmation prompt", "YES")
	return cmd
}

func runEmergencyRepair(ctx context.Context, cli *Cli, cmd *cobra.Command, o *emergencyRepairOptions) error {
	if err := o.replica.validate(cmd); err != nil {
		return err
	}
	if o.existingReplica != "" {
		if _, err := validateReplicaID(o.existingReplica); err != nil {
			return err
		}
	}
	cli.Log.Info("Beginning Docker Trusted Registry emergency repair")
	if err := o.ucp.complete(cli, cmd, credsAlways); err != nil {
		return err
	}
	cluster, err := o.ucp.connect(ctx, cli)
	if err != nil {
		return err
	}
	defer cluster.Close()
	if _, _, err := chooseReplica(ctx, cli, cmd, cluster, "existing-replica-id", o.existingReplica, "Choose a replica to keep"); err != nil {
		return err
	}
	return notImplemented("emergency-repair")
}
