package commands

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/ucp"
)

type upgradeOptions struct {
	ucp             ucpOptions
	existingReplica string
	maxWait         string
	dryRun          bool
}

func newUpgradeCommand(cli *Cli) *cobra.Command {
	var o upgradeOptions
	cmd := &cobra.Command{
		Use:   "upgrade [flags]",
		Short: "Upgrade every replica to this version, one at a time",
		Long: `Upgrade the cluster from the previous minor version to this one, one replica at a
time, each healthy before the next: a replica is drained (its /_ping fails, so
load balancers stop sending it requests), restarted on this version's image and
lifted back once healthy. Patch versions upgrade freely, minor versions one at a
time; a downgrade is refused. Every node that runs a replica must have this
version's images loaded. Take a backup first. A replica that does not turn
healthy is put back on its old image and the upgrade stops there; run it again
to resume.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runUpgrade(cmd.Context(), cli, cmd, &o) },
	}
	f := newFlags(cmd)
	addUCPFlags(f, &o.ucp)
	addExistingReplicaFlag(f, &o.existingReplica, "The ID of an existing replica to begin the upgrade from")
	f.String(&o.maxWait, "max-wait", "30m", "The longest time to wait for one replica's upgrade, as a Go duration", "MAX_WAIT")
	addDryRunFlag(f, &o.dryRun)
	return cmd
}

// upgradeDrainWait is how long load balancers get to stop sending requests
// to a drained replica before it restarts: as for remove.
const upgradeDrainWait = drainWait

func runUpgrade(ctx context.Context, cli *Cli, cmd *cobra.Command, o *upgradeOptions) error {
	maxWait, err := validateDuration("max-wait", o.maxWait)
	if err != nil {
		return err
	}
	if o.existingReplica != "" {
		if _, err := validateReplicaID(o.existingReplica); err != nil {
			return err
		}
	}
	cli.Log.Info("Beginning Docker Trusted Registry Upgrade")
	cluster, existing, replicas, err := o.ucp.connectToReplicas(ctx, cli, cmd, credsAlways, &replicaChoice{flag: "existing-replica-id", id: o.existingReplica,
		question: "Choose a replica to perform the upgrade",
		intro:    "This command will upgrade all replicas in your cluster, however it needs a single replica to begin."})
	if err != nil {
		return err
	}
	defer cluster.Close()

	// Every check before anything changes: versions, health, images.
	var refused []string
	for _, r := range replicas {
		if err := orchestrator.CheckUpgrade(r.Version, images.Version); err != nil {
			refused = append(refused, fmt.Sprintf("replica %s: %v", r.ID, err))
		}
	}
	if len(refused) > 0 {
		return usageErrorf("cannot upgrade to %s; nothing was changed:\n  %s", images.Version, strings.Join(refused, "\n  "))
	}
	cli.Log.Info("Checking the cluster's health")
	api, err := replicaAPI(ctx, cluster, &o.ucp, existing)
	if err != nil {
		return err
	}
	status, err := api.Status(ctx)
	if err != nil {
		return fmt.Errorf("asking replica %s about the cluster: %w", existing.ID, err)
	}
	var bad []string
	for _, b := range unhealthy(status, replicas) {
		// A replica an interrupted upgrade left drained is what this run
		// resumes with.
		if !strings.Contains(b, "draining") {
			bad = append(bad, b)
		}
	}
	if !status.HasQuorum || len(bad) > 0 {
		return fmt.Errorf("refusing to upgrade: the cluster is not healthy (quorum: %v; unhealthy replicas: %s), and restarting a replica could cost its quorum; fix them first (dtr emergency-repair if a majority is gone); nothing was changed",
			status.HasQuorum, strings.Join(bad, ", "))
	}
	regID, jobID, err := imageIDs(ctx, cluster)
	if err != nil {
		return err
	}
	if err := checkImagesOnNodes(ctx, cli, cluster, replicas, regID, jobID); err != nil {
		return err
	}

	addrs := map[string]string{}
	apis := map[string]orchestrator.ReplicaAPI{}
	for _, r := range replicas {
		if addrs[r.Node], err = nodeAddr(ctx, cluster, r.Node); err != nil {
			return err
		}
		apis[r.ID] = orchestrator.ReplicaAPI{URL: orchestrator.ReplicaURL(addrs[r.Node], r.HTTPSPort), User: api.User, Password: api.Password, Client: api.Client}
	}
	// While a replica restarts, its drain mark is set and lifted through
	// another one (the next in ID order); a single replica through itself.
	through := func(id string) orchestrator.ReplicaAPI {
		for i, r := range replicas {
			if r.ID == id && len(replicas) > 1 {
				return apis[replicas[(i+1)%len(replicas)].ID]
			}
		}
		return apis[id]
	}
	if len(replicas) < 3 {
		cli.Log.Warnf("The cluster has %d replica(s): each replica's restart is seen by its clients; with 3 or more behind a load balancer, none is", len(replicas))
	}
	in := &orchestrator.Upgrade{
		Replicas: replicas, Addrs: addrs, API: through, Client: api.Client,
		Version: images.Version, Image: images.Registry(), ImageID: regID, JobImageID: jobID,
		DrainWait: upgradeDrainWait, Timeout: maxWait,
	}
	plan := (orchestrator.Objects{C: cluster, Warn: warner(cli)}).PlanUpgrade(in)
	if o.dryRun {
		return plan.DryRun(cli.Out)
	}
	start := time.Now()
	if err := plan.Apply(ctx, cli.Log, false); err != nil {
		return err
	}
	waitForMigrations(ctx, cli, api, migrationWait)
	cli.Log.Infof("Upgrade complete: %d replica(s) run %s (%v)", len(replicas), images.Version, time.Since(start).Round(time.Second))
	return nil
}

// migrationWait bounds how long upgrade waits for the metadata migrations
// the new version brings: the leader starts them once every replica has run
// the new build for 10 s, and they go on by themselves after upgrade exits.
const migrationWait = 2 * time.Minute

// waitForMigrations reports the metadata schema migrations once every
// replica runs the new version, waiting up to within for them to finish.
func waitForMigrations(ctx context.Context, cli *Cli, api orchestrator.ReplicaAPI, within time.Duration) {
	deadline := time.Now().Add(within)
	said := ""
	for {
		st, err := api.Status(ctx)
		if err == nil && st.Schema != nil {
			if st.Schema.Version >= st.Schema.Target {
				cli.Log.Infof("The metadata schema is at version %d", st.Schema.Version)
				return
			}
			if st.Schema.Pending != said {
				said = st.Schema.Pending
				cli.Log.Infof("Metadata schema %d → %d: %s", st.Schema.Version, st.Schema.Target, said)
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			cli.Log.Warnf("The metadata migrations have not finished within %v; they go on in the background (GET /api/v0/meta/cluster_status shows them)", within)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// checkImagesOnNodes runs a node job on every node with a replica that
// looks for this version's images there (the job itself runs the installer
// image, so a node without it fails to start it). Services run images by ID,
// and no node pulls: a node without them could not run its replica.
func checkImagesOnNodes(ctx context.Context, cli *Cli, cluster *ucp.Cluster, replicas []orchestrator.Replica, regID, jobID string) error {
	if jobID == "" {
		return fmt.Errorf("image %s is not loaded on this node (%s): load this version's images on every node: docker save $(docker run --rm %s images) | docker load",
			images.Installer(), cluster.Manager.Hostname, images.Registry())
	}
	nodes := map[string]bool{}
	for _, r := range replicas {
		nodes[r.Node] = true
	}
	var names []string
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	objs := orchestrator.Objects{C: cluster, Warn: warner(cli)}
	var missing []string
	for _, n := range names {
		cli.Log.Infof("Checking that node %s has this version's images", n)
		if out, err := objs.RunNodeJob(ctx, n, jobID, images.Version, "node-job", "has-images", regID, jobID); err != nil {
			missing = append(missing, fmt.Sprintf("%s (%s)", n, strings.TrimSpace(firstLine(out, err))))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("these nodes lack this version's images, so their replicas could not run it: %s; nothing was changed. Load them on each: docker save %s | ssh <node> docker load",
			strings.Join(missing, "; "), strings.Join(images.All(), " "))
	}
	return nil
}

func firstLine(out string, err error) string {
	s := strings.TrimSpace(out)
	if s == "" {
		s = err.Error()
	}
	line, _, _ := strings.Cut(s, "\n")
	return line
}
