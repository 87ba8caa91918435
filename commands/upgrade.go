package commands

import (
	"context"

	"github.com/spf13/cobra"
)

type upgradeOptions struct {
	ucp             ucpOptions
	existingReplica string
	maxWait         string
}

func newUpgradeCommand(cli *Cli) *cobra.Command {
	var o upgradeOptions
	cmd := &cobra.Command{
		Use:   "upgrade [flags]",
		Short: "Upgrade every replica to this version, one at a time",
		Long: `Upgrade the cluster from the previous minor version to this one, one replica at a
time, each healthy before the next. Take a backup first. It can be run again if
it was interrupted.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runUpgrade(cmd.Context(), cli, cmd, &o) },
	}
	f := newFlags(cmd)
	addUCPFlags(f, &o.ucp)
	addExistingReplicaFlag(f, &o.existingReplica, "The ID of an existing replica to begin the upgrade from")
	f.String(&o.maxWait, "max-wait", "30m", "The longest time to wait for one replica's upgrade, as a Go duration", "MAX_WAIT")
	return cmd
}

func runUpgrade(ctx context.Context, cli *Cli, cmd *cobra.Command, o *upgradeOptions) error {
	if _, err := validateDuration("max-wait", o.maxWait); err != nil {
		return err
	}
	if o.existingReplica != "" {
		if _, err := validateReplicaID(o.existingReplica); err != nil {
			return err
		}
	}
	cli.Log.Info("Beginning Docker Trusted Registry Upgrade")
	cluster, _, _, err := o.ucp.connectToReplicas(ctx, cli, cmd, credsAlways, &replicaChoice{flag: "existing-replica-id", id: o.existingReplica,
		question: "Choose a replica to perform the upgrade",
		intro:    "This command will upgrade all replicas in your cluster, however it needs a single replica to begin."})
	if err != nil {
		return err
	}
	defer cluster.Close()
	return notImplemented("upgrade")
}
