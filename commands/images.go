package commands

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/images"
)

func newImagesCommand(cli *Cli) *cobra.Command {
	return &cobra.Command{
		Use:   "images",
		Short: "List the images this version deploys, for offline installs",
		Long: `Print the references of the images this version of dtr deploys, one per line.
Load them on every node of an offline cluster:

  docker save $(docker run --rm dtr images) | ssh node2 docker load`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return runImages(cli) },
	}
}

func runImages(cli *Cli) error {
	for _, ref := range images.All() {
		if _, err := fmt.Fprintln(cli.Out, ref); err != nil {
			return err
		}
	}
	return nil
}
