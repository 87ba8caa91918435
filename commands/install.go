package commands

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/ucp"
)

type installOptions struct {
	ucp            ucpOptions
	replica        replicaOptions
	apply          applyOptions
	identitySource string
}

func newInstallCommand(cli *Cli) *cobra.Command {
	var o installOptions
	cmd := &cobra.Command{
		Use:   "install [flags]",
		Short: "Install the first replica of Docker Trusted Registry on a cluster node",
		Long: `Install the first registry replica on a node of the Swarm. More replicas come
from 'join'. The node needs the dtr images loaded ('dtr images' lists them).

  docker run -it --rm -v /var/run/docker.sock:/var/run/docker.sock dtr install \
    --ucp-url unix:///var/run/docker.sock --ucp-node node1 --dtr-external-url dtr.example.com

With UCP/MKE, --identity-source ucp signs users in with their UCP credentials and
uses UCP's organizations and teams (docs/identity.md); the UCP password is asked
for, and kept write-only in dtr's metadata to read UCP's directory:

  docker run -it --rm dtr install --ucp-url https://ucp.example.com \
    --ucp-ca "$(cat ucp-ca.pem)" --ucp-username dtr-admin --identity-source ucp \
    --ucp-node node1 --dtr-external-url dtr.example.com`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runInstall(cmd.Context(), cli, cmd, &o) },
	}
	f := newFlags(cmd)
	addUCPFlags(f, &o.ucp)
	addNodeFlag(f, &o.replica, "Hostname of the node to install the replica on, as in 'docker node ls' (default: a random ready node)")
	addReplicaIDFlag(f, &o.replica, "Assign a 12-hex-character ID to the replica (default: random)", "DTR_INSTALL_REPLICA_ID", "MSR_INSTALL_REPLICA_ID")
	addExternalURLFlag(f, &o.replica)
	addCertFlags(f, &o.replica)
	addStorageVolumeFlag(f, &o.replica)
	addNFSFlags(f, &o.replica)
	addAsyncNFSFlag(f, &o.replica)
	addPortFlags(f, &o.replica)
	addRethinkFlag(f, &o.replica)
	addOverlayFlag(f, &o.replica)
	addProxyFlags(f, &o.replica)
	addLogFlags(f, &o.replica)
	addPprofFlag(f, &o.replica)
	addClientCertFlags(f, &o.replica)
	addCABundleFlag(f, &o.replica)
	addMetricsPortFlag(f, &o.replica, "Publish each replica's /metrics without authentication on this host port, for Prometheus (0: none); anyone who reaches the port reads the metrics: firewall it")
	addMetricsTokenFlag(f, &o.replica, "File with a bearer token (16+ characters, e.g. openssl rand -hex 32) that may read /metrics on the HTTPS port and nothing else, stored as a Swarm secret; or give the token itself in $DTR_METRICS_TOKEN")
	addOTLPFlag(f, &o.replica, "Export OpenTelemetry traces to this OTLP/HTTP collector URL, e.g. http://otel-collector:4318 (default: no tracing)")
	addIdentitySourceFlag(f, &o.identitySource, "local")
	addApplyFlags(f, &o.apply)
	return cmd
}

func runInstall(ctx context.Context, cli *Cli, cmd *cobra.Command, o *installOptions) error {
	if err := o.replica.validate(cmd); err != nil {
		return err
	}
	if err := unsupported(cmd); err != nil {
		return err
	}
	metricsToken, _, err := o.replica.metricsToken(cli, cmd)
	if err != nil {
		return err
	}
	cli.Log.Info("Beginning Docker Trusted Registry installation")
	if err := o.ucp.complete(cli, cmd, credsAlways); err != nil {
		return err
	}
	if err := checkCredentials(o.ucp.username, o.ucp.password); err != nil {
		return err
	}
	identity, err := identitySource(o.identitySource, &o.ucp)
	if err != nil {
		return err
	}
	o.replica.warnIgnored(cli, cmd)
	cluster, err := o.ucp.connect(ctx, cli)
	if err != nil {
		return err
	}
	defer cluster.Close()
	node, err := chooseNode(ctx, cli, cluster, o.replica.ucpNode)
	if err != nil {
		return err
	}
	cli.Log.Info("Checking if the node is okay to install on")
	if node.Role == "manager" {
		cli.Log.Warnf("Node: %s is a manager, it is **not** recommended for DTR to reside on a UCP manager node, see: https://docs.docker.com/ee/dtr/admin/install/system-requirements/ for more info.", node.Hostname)
		if cli.prompter().Interactive() && !o.apply.dryRun {
			cli.Log.Warn("Installation will continue in 10 seconds...")
			if err := pause(ctx, 10*time.Second); err != nil {
				return err
			}
		}
	}
	replicas, err := orchestrator.FindReplicas(ctx, cluster)
	if err != nil {
		return err
	}
	if len(replicas) > 0 {
		return fmt.Errorf("We don't currently support running multiple DTRs on the same UCP cluster. You have %d existing DTR replicas. Please remove them before trying to install again.", len(replicas))
	}
	peerPort, err := o.replica.reservePorts(ctx, cli, cluster, node)
	if err != nil {
		return err
	}
	id := o.replica.replicaID
	if id == "" {
		id = newReplicaID(replicas)
	}
	regID, jobID, err := imageIDs(ctx, cluster)
	if err != nil {
		return err
	}
	in := &orchestrator.Install{
		Replica:       o.replica.config(id, node, images.Registry(), regID, jobID, cli.logLevel),
		OverlaySubnet: o.replica.overlaySubnet,
		AdminPassword: o.ucp.password,
		MetricsToken:  metricsToken,
		TLSCert:       o.replica.dtrCert,
		TLSKey:        o.replica.dtrKey,
		HealthTimeout: healthTimeout,
		ClientFor:     orchestrator.HTTPSClient,
	}
	in.Replica.AdminUsername = o.ucp.username
	in.Replica.PeerPort = peerPort
	if identity.Kind == orchestrator.IdentityUCP {
		in.Identity = identity
	}
	objs := orchestrator.Objects{C: cluster, Warn: warner(cli)}
	plan, err := objs.PlanInstall(ctx, in)
	if err != nil {
		return err
	}
	if o.apply.dryRun {
		return plan.DryRun(cli.Out)
	}
	if o.replica.overlaySubnet == defaultOverlaySubnet {
		cli.Log.Infof("Using default overlay subnet: %s", defaultOverlaySubnet)
	}
	start := cli.Now()
	if err := plan.Apply(ctx, cli.Log, o.apply.keepOnFailure); err != nil {
		return err
	}
	cli.Log.Debugf("install took %v", cli.Now().Sub(start).Round(time.Millisecond))
	cli.Log.Info("Installation is complete")
	cli.Log.Infof("Replica ID is set to: %s", id)
	cli.Log.Infof("You can use flag '--existing-replica-id %s' when joining other replicas to your Docker Trusted Registry Cluster", id)
	return nil
}

// chooseNode returns the node named by --ucp-node, or a random ready node
// (workers first, as DTR recommends) when none was named.
func chooseNode(ctx context.Context, cli *Cli, cluster *ucp.Cluster, name string) (ucp.Node, error) {
	nodes, err := cluster.Nodes(ctx)
	if err != nil {
		return ucp.Node{}, err
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Hostname
		cli.Log.Debugf("node %s: addr=%s role=%s availability=%s state=%s", n.Hostname, n.Addr, n.Role, n.Availability, n.State)
	}
	if name != "" {
		for _, n := range nodes {
			if n.Hostname == name || n.ID == name {
				if !n.Ready() {
					return ucp.Node{}, usageErrorf("node %s is %s and %s; choose a ready, active node: %s", n.Hostname, n.State, n.Availability, strings.Join(names, ", "))
				}
				return n, loopbackInContainer(ctx, cluster, n)
			}
		}
		return ucp.Node{}, usageErrorf("node %s not found; nodes: %s", name, strings.Join(names, ", "))
	}
	var workers, managers []ucp.Node
	for _, n := range nodes {
		switch {
		case !n.Ready():
		case n.Role == "worker":
			workers = append(workers, n)
		default:
			managers = append(managers, n)
		}
	}
	pool := workers
	if len(pool) == 0 {
		pool = managers
	}
	if len(pool) == 0 {
		return ucp.Node{}, fmt.Errorf("no node is ready and active; nodes: %s", strings.Join(names, ", "))
	}
	n := pool[rand.IntN(len(pool))]
	cli.Log.Infof("No --ucp-node given; chose node %s", n.Hostname)
	return n, loopbackInContainer(ctx, cluster, n)
}
