package commands

import (
	"context"

	"github.com/spf13/cobra"
)

type destroyOptions struct {
	ucp       ucpOptions
	replicaID string
}

func newDestroyCommand(cli *Cli) *cobra.Command {
	var o destroyOptions
	cmd := &cobra.Command{
		Use:   "destroy [flags]",
		Short: "Forcefully remove one replica's services and volumes without asking the cluster",
		Long: `Remove every object of one replica, without telling the rest of the cluster: run
it once per replica to uninstall, or to clean up before 'restore'. Running it
again on a replica that is already gone is fine.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDestroy(cmd.Context(), cli, cmd, &o) },
	}
	f := newFlags(cmd)
	addUCPFlags(f, &o.ucp)
	f.String(&o.replicaID, "replica-id", "", "The ID of the replica to destroy", "DTR_DESTROY_REPLICA_ID")
	return cmd
}

func runDestroy(ctx context.Context, cli *Cli, cmd *cobra.Command, o *destroyOptions) error {
	if o.replicaID != "" {
		id, err := validateReplicaID(o.replicaID)
		if err != nil {
			return err
		}
		o.replicaID = id
	}
	cli.Log.Info("Beginning Docker Trusted Registry replica destroy")
	if err := o.ucp.complete(cli, cmd, credsForLogin); err != nil {
		return err
	}
	cluster, err := o.ucp.connect(ctx, cli)
	if err != nil {
		return err
	}
	defer cluster.Close()
	if _, _, err := chooseReplica(ctx, cli, cmd, cluster, "replica-id", o.replicaID, "Choose a replica to destroy"); err != nil {
		return err
	}
	return notImplemented("destroy")
}
