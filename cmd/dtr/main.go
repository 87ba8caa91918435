// Command dtr installs and operates a highly available private Docker
// registry on a Docker Swarm.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/dtr-registry/dtr/commands"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := commands.Run(ctx, commands.NewProcessCli(), os.Args[1:])
	stop()
	os.Exit(code)
}
