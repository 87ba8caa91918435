package commands

import (
	"context"

	"github.com/spf13/cobra"
)

type reconfigureOptions struct {
	ucp             ucpOptions
	replica         replicaOptions
	existingReplica string
	storageMigrated bool
}

func newReconfigureCommand(cli *Cli) *cobra.Command {
	var o reconfigureOptions
	cmd := &cobra.Command{
		Use:   "reconfigure [flags]",
		Short: "Change the configuration of every replica, one at a time",
		Long: `Change settings of the whole cluster. Replicas restart one at a time, each healthy
before the next; with one replica the registry is briefly unavailable. Only the
flags given change; the others keep their current values.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runReconfigure(cmd.Context(), cli, cmd, &o) },
	}
	f := newFlags(cmd)
	addUCPFlags(f, &o.ucp)
	addExistingReplicaFlag(f, &o.existingReplica, "The ID of an existing, healthy replica to reconfigure the cluster through")
	addExternalURLFlag(f, &o.replica)
	addCertFlags(f, &o.replica)
	addStorageVolumeFlag(f, &o.replica)
	addNFSFlags(f, &o.replica)
	addAsyncNFSFlag(f, &o.replica)
	addPortFlags(f, &o.replica)
	addRethinkFlag(f, &o.replica)
	addProxyFlags(f, &o.replica)
	addLogFlags(f, &o.replica)
	addPprofFlag(f, &o.replica)
	addClientCertFlags(f, &o.replica)
	addCABundleFlag(f, &o.replica)
	f.Bool(&o.storageMigrated, "storage-migrated", false, "The new storage already holds the images (you copied them); keep tags and metadata", "STORAGE_MIGRATED")
	return cmd
}

func runReconfigure(ctx context.Context, cli *Cli, cmd *cobra.Command, o *reconfigureOptions) error {
	if err := o.replica.validate(cmd); err != nil {
		return err
	}
	if o.existingReplica != "" {
		if _, err := validateReplicaID(o.existingReplica); err != nil {
			return err
		}
	}
	cli.Log.Info("Starting phase1 reconfigure")
	if err := o.ucp.complete(cli, cmd, credsAlways); err != nil {
		return err
	}
	o.replica.warnIgnored(cli, cmd)
	cluster, err := o.ucp.connect(ctx, cli)
	if err != nil {
		return err
	}
	defer cluster.Close()
	if _, _, err := chooseReplica(ctx, cli, cmd, cluster, "existing-replica-id", o.existingReplica, "Choose a replica to reconfigure"); err != nil {
		return err
	}
	return notImplemented("reconfigure")
}
