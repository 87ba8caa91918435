package commands

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/ucp"
)

// newNodeJobCommand is the hidden command the installer runs on a node as a
// one-shot Swarm job (DTR's "phase 2"): work that only the node's own engine
// can do, such as removing a replica's volumes there.
func newNodeJobCommand(cli *Cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "node-job",
		Short:  "Work dtr runs on a node as a Swarm job (internal)",
		Hidden: true,
	}
	var service string
	rm := &cobra.Command{
		Use:  "remove-volumes VOLUME…",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRemoveVolumes(cmd.Context(), cli, service, args)
		},
	}
	rm.Flags().StringVar(&service, "service", "", "wait until this service's containers are gone from this node first")
	var caFile string
	nt := &cobra.Command{
		Use:  "network-test URL",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runNetworkTest(cmd.Context(), cli, caFile, args[0])
		},
	}
	nt.Flags().StringVar(&caFile, "ca", "", "PEM file of the cluster CA, which issued the replica's certificate")
	hi := &cobra.Command{
		Use:  "has-images ID…",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runHasImages(cmd.Context(), cli, args)
		},
	}
	cmd.AddCommand(rm, nt, hi)
	return cmd
}

// networkTestWithin bounds the overlay test: a node new to dtr-ol learns the
// other tasks' names within seconds; 30 s of failures is a blocked overlay.
var networkTestWithin = 30 * time.Second

// runNetworkTest runs in a job attached to dtr-ol on the joining node: it
// reaches an existing replica over the overlay, as the new member will.
func runNetworkTest(ctx context.Context, cli *Cli, caFile, url string) error {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("reading the cluster CA: %w", err)
	}
	took, err := orchestrator.ProbeLive(ctx, ca, url, networkTestWithin)
	if err != nil {
		return fmt.Errorf("no answer from %s over the overlay within %v: %w", url, networkTestWithin, err)
	}
	fmt.Fprintf(cli.Out, "reached %s over the overlay in %v\n", url, took.Round(time.Millisecond))
	return nil
}

// runHasImages checks that this node's engine holds the images by ID
// (upgrade checks every node before it changes anything).
func runHasImages(ctx context.Context, cli *Cli, ids []string) error {
	cluster, err := ucp.ConnectLocal(ctx, "unix:///var/run/docker.sock")
	if err != nil {
		return err
	}
	defer cluster.Close()
	var missing []string
	for _, id := range ids {
		if _, err := cluster.Engine.ImageInspect(ctx, id); err != nil {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing image(s) %s", strings.Join(missing, ", "))
	}
	fmt.Fprintln(cli.Out, "all images present")
	return nil
}

func runRemoveVolumes(ctx context.Context, cli *Cli, service string, names []string) error {
	cluster, err := ucp.ConnectLocal(ctx, "unix:///var/run/docker.sock")
	if err != nil {
		return err
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if service != "" {
		// The manager removed the service; its container on this node stops
		// within its grace period, and its volumes stay busy until then.
		if err := (orchestrator.Objects{C: cluster, Warn: warner(cli)}).WaitContainersGone(ctx, service); err != nil {
			return err
		}
	}
	if err := (orchestrator.Objects{C: cluster, Warn: warner(cli)}).RemoveVolumes(ctx, names...); err != nil {
		return err
	}
	fmt.Fprintf(cli.Out, "removed volumes %v (absent ones were already gone)\n", names)
	return nil
}
