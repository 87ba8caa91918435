package commands

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/orchestrator"
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
	replicas, err := orchestrator.FindReplicas(ctx, cluster)
	if err != nil {
		return err
	}
	target := orchestrator.Replica{ID: o.replicaID}
	found := false
	for _, r := range replicas {
		if r.ID == o.replicaID {
			target, found = r, true
		}
	}
	if !found {
		if o.replicaID == "" {
			if target, _, err = chooseReplica(ctx, cli, cmd, cluster, "replica-id", "", "Choose a replica to destroy"); err != nil {
				return err
			}
		} else {
			// Running destroy again is fine: clean whatever is left.
			cli.Log.Infof("Replica %s has no service (already destroyed?); removing what is left of it", o.replicaID)
		}
	}
	cli.Log.Info("Force removing replica")
	_, jobID, err := imageIDs(ctx, cluster)
	if err != nil && found {
		return err
	}
	objs := orchestrator.Objects{C: cluster, Warn: warner(cli)}
	cli.Log.Info("Removing containers")
	cli.Log.Info("Removing volumes")
	if err := objs.RemoveReplicaObjects(ctx, orchestrator.ReplicaConfig{ID: target.ID, Node: target.Node, Version: target.Version, JobImageID: jobID}); err != nil {
		return err
	}
	left, err := orchestrator.FindReplicas(ctx, cluster)
	if err != nil {
		return err
	}
	if len(left) == 0 {
		cli.Log.Infof("That was the last replica: removing network %s and the cluster's CA and certificates", orchestrator.NetworkName)
		if err := objs.RemoveClusterObjects(ctx); err != nil {
			return err
		}
	}
	cli.Log.Info("Replica removed.")
	return nil
}
