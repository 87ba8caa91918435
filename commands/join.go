package commands

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/orchestrator"
)

type joinOptions struct {
	ucp             ucpOptions
	replica         replicaOptions
	existingReplica string
	skipNetworkTest bool
	unsafeJoin      bool
	apply           applyOptions
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
	addMetricsPortFlag(f, &o.replica, "Publish the new replica's /metrics without authentication on this host port, 0 for none (default: as the existing replica)")
	f.Bool(&o.skipNetworkTest, "skip-network-test", false, "Skip the test join runs first: a container on the new node reaching the existing replica over the dtr-ol overlay (not for production)", "DTR_SKIP_NETWORK_TEST")
	f.Bool(&o.unsafeJoin, "unsafe-join", false, "Join even if the cluster is unhealthy, risking split-brain and data loss", "DTR_UNSAFE_JOIN")
	addApplyFlags(f, &o.apply)
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
	o.replica.warnIgnored(cli, cmd)
	cluster, existing, replicas, err := o.ucp.connectToReplicas(ctx, cli, cmd, credsAlways,
		&replicaChoice{flag: "existing-replica-id", id: o.existingReplica, question: "Choose a replica to join to"})
	if err != nil {
		return err
	}
	defer cluster.Close()
	if existing.Version != images.Version {
		return fmt.Errorf("Failed version match. Replica version %s doesn't match bootstrap version %s. Run the dtr image of version %s, or upgrade the cluster first", existing.Version, images.Version, existing.Version)
	}
	api, problems, err := apiAndProblems(ctx, cluster, &o.ucp, existing, replicas)
	if err != nil {
		return err
	}
	if problems != "" {
		if !o.unsafeJoin {
			return fmt.Errorf("the cluster is unhealthy (%s): joining now risks split-brain. Remove the unhealthy replicas first (dtr remove), or repair a cluster without quorum (dtr emergency-repair); --unsafe-join joins anyway", problems)
		}
		cli.Log.Warnf("Joining an unhealthy cluster because of --unsafe-join: %s", problems)
	}
	node, err := chooseNode(ctx, cli, cluster, o.replica.ucpNode)
	if err != nil {
		return err
	}
	if !changed(cmd, "metrics-port") {
		// Like the cluster's other settings, the open metrics port carries
		// over from the existing replica.
		o.replica.metricsPort = existing.MetricsPort
	}
	peerPort, err := o.replica.reservePorts(ctx, cli, cluster, node)
	if err != nil {
		return err
	}
	id := o.replica.replicaID
	for _, r := range replicas {
		if r.ID == id {
			return usageErrorf("replica %s already exists; pick another --replica-id or leave it out", id)
		}
	}
	if id == "" {
		id = newReplicaID(replicas)
	}
	regID, jobID, err := imageIDs(ctx, cluster)
	if err != nil {
		return err
	}
	ex, err := existing.Config()
	if err != nil {
		return fmt.Errorf("reading the settings of replica %s: %w", existing.ID, err)
	}
	cfg := o.replica.config(id, node, images.Registry(), regID, jobID, cli.logLevel)
	cfg.PeerPort = peerPort
	// Joins inherit the cluster's storage, external URL, proxies and TLS
	// certificate.
	cfg.Storage, cfg.ExternalURL = ex.Storage, ex.ExternalURL
	cfg.HTTPProxy, cfg.HTTPSProxy, cfg.NoProxy = ex.HTTPProxy, ex.HTTPSProxy, ex.NoProxy
	cfg.TLSCertConfig, cfg.TLSKeySecret = ex.TLSCertConfig, ex.TLSKeySecret
	// And its metrics token and trace collector.
	cfg.MetricsTokenSecret, cfg.OTLPEndpoint = ex.MetricsTokenSecret, ex.OTLPEndpoint
	in := &orchestrator.Join{Replica: cfg, Existing: existing, API: api, HealthTimeout: healthTimeout, SkipNetworkTest: o.skipNetworkTest}
	if o.skipNetworkTest {
		cli.Log.Warnf("Skipping the overlay network test between node %s and replica %s (--skip-network-test): if the overlay is blocked, the new replica's metadata member cannot catch up", node.Hostname, existing.ID)
	}
	objs := orchestrator.Objects{C: cluster, Warn: warner(cli)}
	plan, err := objs.PlanJoin(ctx, in)
	if err != nil {
		return err
	}
	if o.apply.dryRun {
		return plan.DryRun(cli.Out)
	}
	if err := plan.Apply(ctx, cli.Log, o.apply.keepOnFailure); err != nil {
		return err
	}
	after, err := orchestrator.FindReplicas(ctx, cluster)
	if err != nil {
		return err
	}
	if !cfg.Storage.Shared() {
		cli.Log.Warn("Warning! You are using DTR with the filesystem driver in an HA setup. This will not work with non-clustered file systems. See the documentation for how to configure HA image storage.")
	}
	cli.Log.Info("Join is complete")
	cli.Log.Infof("Replica ID is set to: %s", id)
	cli.Log.Infof("There are currently %d replicas in your Docker Trusted Registry cluster", len(after))
	if len(after)%2 == 0 {
		cli.Log.Warn("You currently have an even number of replicas which can impact cluster availability")
		cli.Log.Warn("It is recommended that you have 3, 5 or 7 replicas in your cluster")
	}
	return nil
}
