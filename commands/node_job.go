package commands

import (
	"context"
	"fmt"
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
	cmd.AddCommand(&cobra.Command{
		Use:  "remove-volumes VOLUME…",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runRemoveVolumes(cmd.Context(), cli, args) },
	})
	return cmd
}

func runRemoveVolumes(ctx context.Context, cli *Cli, names []string) error {
	cluster, err := ucp.ConnectLocal(ctx, "unix:///var/run/docker.sock")
	if err != nil {
		return err
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := (orchestrator.Objects{C: cluster}).RemoveVolumes(ctx, names...); err != nil {
		return err
	}
	fmt.Fprintf(cli.Out, "removed volumes %v (absent ones were already gone)\n", names)
	return nil
}
