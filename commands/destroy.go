package commands

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/orchestrator"
)

type destroyOptions struct {
	ucp       ucpOptions
	replicaID string
	dryRun    bool
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
	addDryRunFlag(f, &o.dryRun)
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
	var choice *replicaChoice
	if o.replicaID == "" {
		choice = &replicaChoice{flag: "replica-id", question: "Choose a replica to destroy"}
	}
	cluster, target, replicas, err := o.ucp.connectToReplicas(ctx, cli, cmd, credsForLogin, choice)
	if err != nil {
		return err
	}
	defer cluster.Close()
	found := choice != nil
	if !found {
		target = orchestrator.Replica{ID: o.replicaID}
		for _, r := range replicas {
			if r.ID == o.replicaID {
				target, found = r, true
			}
		}
	}
	if !found {
		// Running destroy again is fine: clean whatever is left.
		cli.Log.Infof("Replica %s has no service (already destroyed?); removing what is left of it", o.replicaID)
	}
	_, jobID, err := imageIDs(ctx, cluster)
	if err != nil && found {
		return err
	}
	last := true
	for _, r := range replicas {
		last = last && r.ID == target.ID
	}
	plan := (orchestrator.Objects{C: cluster, Warn: warner(cli)}).PlanDestroy(&orchestrator.Destroy{Replica: target, JobID: jobID, Last: last})
	if o.dryRun {
		return plan.DryRun(cli.Out)
	}
	cli.Log.Info("Force removing replica")
	cli.Log.Info("Removing containers")
	cli.Log.Info("Removing volumes")
	if err := plan.Apply(ctx, cli.Log, false); err != nil {
		return fmt.Errorf("%w; run destroy again to finish", err)
	}
	cli.Log.Info("Replica removed.")
	return nil
}
