package commands

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/orchestrator"
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
its metadata as a new single-member cluster, keeping its data (in place, through
its admin API, when it runs; otherwise Swarm restarts it); the other
replicas' services are removed (and their volumes, with --prune). Then 'join'
new replicas. If only a minority is unhealthy, use 'remove' and 'join' instead.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runEmergencyRepair(cmd.Context(), cli, cmd, &o) },
	}
	f := newFlags(cmd)
	addUCPFlags(f, &o.ucp)
	addExistingReplicaFlag(f, &o.existingReplica, "The ID of the surviving replica to keep")
	// Accepted so that DTR's scripts parse, and refused when given: the
	// repair restarts one replica on the network it has.
	f.String(&o.replica.overlaySubnet, "overlay-subnet", defaultOverlaySubnet, "Not supported by emergency-repair: the repair keeps the dtr-ol network and its subnet", "DTR_OVERLAY_SUBNET")
	f.Bool(&o.prune, "prune", false, "Also remove the other replicas' volumes", "PRUNE")
	f.BoolP(&o.yes, "yes", "y", false, "Answer yes to the confirmation prompt", "YES")
	return cmd
}

func runEmergencyRepair(ctx context.Context, cli *Cli, cmd *cobra.Command, o *emergencyRepairOptions) error {
	if changed(cmd, "overlay-subnet") {
		// Changing it would mean detaching the survivor, recreating dtr-ol
		// and re-attaching it: a second risky change during a repair, for
		// a setting the repair does not need.
		return usageErrorf("--overlay-subnet is not supported by emergency-repair in this version of dtr: the repair keeps network %s with its subnet; leave it out (nothing was changed)", orchestrator.NetworkName)
	}
	if err := o.replica.validate(cmd); err != nil {
		return err
	}
	if o.existingReplica != "" {
		if _, err := validateReplicaID(o.existingReplica); err != nil {
			return err
		}
	}
	cli.Log.Info("Beginning Docker Trusted Registry emergency repair")
	cluster, keep, replicas, err := o.ucp.connectToReplicas(ctx, cli, cmd, credsAlways,
		&replicaChoice{flag: "existing-replica-id", id: o.existingReplica, question: "Choose a replica to keep"})
	if err != nil {
		return err
	}
	defer cluster.Close()
	var drop []orchestrator.Replica
	var dropIDs []string
	for _, r := range replicas {
		if r.ID != keep.ID {
			drop = append(drop, r)
			dropIDs = append(dropIDs, r.ID)
		}
	}
	objs := orchestrator.Objects{C: cluster, Warn: warner(cli)}
	ca, err := objs.ConfigData(ctx, orchestrator.CACertConfig)
	if err != nil {
		return fmt.Errorf("reading the cluster CA: %w", err)
	}
	addr, err := nodeAddr(ctx, cluster, keep.Node)
	if err != nil {
		return err
	}
	url := orchestrator.ReplicaURL(addr, keep.HTTPSPort)
	// /_ping needs no quorum and no login: it says whether a repair is needed.
	h, err := orchestrator.Ping(ctx, orchestrator.HTTPSClient(ca), url)
	answers := err == nil
	if err != nil {
		cli.Log.Warnf("Replica %s does not answer at %s (%v); the repair restarts it", keep.ID, url, err)
	} else if h.Healthy {
		cli.Log.Warnf("Replica %s reports a healthy cluster with quorum: an emergency repair is not needed, and would drop the replicas %s. To replace a minority of failed replicas, use 'dtr remove' then 'dtr join'", keep.ID, strings.Join(dropIDs, ", "))
	} else {
		cli.Log.Infof("Replica %s reports: %s", keep.ID, h.Error)
	}
	what := "their volumes stay on their nodes"
	if o.prune {
		what = "their volumes are removed too (--prune)"
	}
	question := fmt.Sprintf("Replica %s becomes a cluster of one, keeping its data; the replicas %s are removed and %s. Continue", keep.ID, orNone(dropIDs), what)
	if !o.yes {
		if !cli.prompter().Interactive() {
			return usageErrorf("%s? stdin is not a terminal, so dtr cannot ask: re-run with --yes (%s) to confirm; nothing was changed", question, envOf(cmd, "yes"))
		}
		ok, err := cli.prompter().Confirm(question, false)
		if err != nil {
			return err
		}
		if !ok {
			cli.Log.Info("Emergency repair cancelled; nothing was changed")
			return nil
		}
	}
	_, jobID, err := imageIDs(ctx, cluster)
	if err != nil && o.prune {
		return err
	}
	// A running replica is repaired in place through its admin API; one
	// that does not answer is restarted with the token by Swarm.
	var api *orchestrator.ReplicaAPI
	if answers {
		api = &orchestrator.ReplicaAPI{URL: url, User: o.ucp.username, Password: o.ucp.password, Client: orchestrator.HTTPSClient(ca)}
	}
	plan := objs.PlanRepair(&orchestrator.Repair{Keep: keep, Drop: drop, Prune: o.prune, Token: randomToken(), JobID: jobID,
		URL: url, CAPEM: ca, HealthTimeout: healthTimeout, API: api})
	start := cli.Now()
	if err := plan.Apply(ctx, cli.Log, true); err != nil {
		return fmt.Errorf("%w; the repair can be run again with the same flags", err)
	}
	cli.Log.Debugf("emergency repair took %v", cli.Now().Sub(start).Round(time.Millisecond))
	cli.Log.Infof("Done. Your cluster size is now 1: replica %s", keep.ID)
	cli.Log.Infof("Join replicas again with: dtr join --existing-replica-id %s (3, 5 or 7 in all)", keep.ID)
	cli.Log.Info("Emergency repair is complete.")
	return nil
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "(none)"
	}
	return strings.Join(ids, ", ")
}

// randomToken is a fresh emergency-repair token (contract.Config.ForceNewCluster).
func randomToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
