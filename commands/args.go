package commands

import (
	"github.com/spf13/cobra"
)

// noArgs rejects positional arguments as a usage error: every value dtr takes
// is a flag (or its environment variable).
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%q takes no arguments, got %q; every value is a flag.\nSee '%s --help'.", cmd.CommandPath(), args, cmd.CommandPath())
	}
	return nil
}

func addExistingReplicaFlag(f flags, p *string, usage string) {
	f.String(p, "existing-replica-id", "", usage, "DTR_REPLICA_ID", "MSR_REPLICA_ID")
}
