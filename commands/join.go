package commands

import (
	"context"

	"github.com/spf13/cobra"
)

type joinOptions struct {
	ucp             ucpOptions
	replica         replicaOptions
	existingReplica string
	skipNetworkTest bool
	unsafeJoin      bool
}

func newJoinCommand(cli *Cli) *cobra.Command {
	var o joinOptions
	cmd := &cobra.Command{
		Use:   "join [flags]",
		Short: "Add a replica to an existing Docker Trusted Registry cluster",
		Long: `Add a registry replica on another node. Keep an odd number of replicas (3, 5 or 7):
a majority must stay healthy for the registry to accept writes.

  docker run -it --rm dtr join --ucp-node node2 --existing-replica-id 47f20fb864cf …`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runJoin(cmd.Context(), cli, cmd, &o) },
	}
	f := newFlags(cmd)
	addUCPFlags(f, &o.ucp)
	addExistingReplicaFlag(f, &o.existingReplica, "The ID of an existing, healthy replica to join through")
	addNodeFlag(f, &o.replica, "Hostname of the node to place the new replica on, as in 'docker node ls' (default: a random ready node)")
	addReplicaIDFlag(f, &o.replica, "Assign a 12-hex-character ID to the new replica (default: random)", "DTR_INSTALL_REPLICA_ID", "MSR_INSTALL_REPLICA_ID")
	addPortFlags(f, &o.replica)
	addRethinkFlag(f, &o.replica)
	f.Bool(&o.skipNetworkTest, "skip-network-test", false, "Skip the overlay network test between the new and the existing replica (not for production)", "DTR_SKIP_NETWORK_TEST")
	f.Bool(&o.unsafeJoin, "unsafe-join", false, "Join even if the cluster is unhealthy, risking split-brain and data loss", "DTR_UNSAFE_JOIN")
	return cmd
}

func runJoin(ctx context.Context, cli *Cli, cmd *cobra.Command, o *joinOptions) error {
	if err := o.replica.validate(cmd); err != nil {
		return err
	}
	if o.existingReplica != "" {
		if _, err := validateReplicaID(o.existingReplica); err != nil {
			return err
		}
	}
	cli.Log.Info("Beginning Docker Trusted Registry replica join")
	if err := o.ucp.complete(cli, cmd, credsAlways); err != nil {
		return err
	}
	o.replica.warnIgnored(cli, cmd)
	cluster, err := o.ucp.connect(ctx, cli)
	if err != nil {
		return err
	}
	defer cluster.Close()
	if _, _, err := chooseReplica(ctx, cli, cmd, cluster, "existing-replica-id", o.existingReplica, "Choose a replica to join to"); err != nil {
		return err
	}
	if _, err := chooseNode(ctx, cli, cluster, o.replica.ucpNode); err != nil {
		return err
	}
	return notImplemented("join")
}
