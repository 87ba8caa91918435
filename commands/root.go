package commands

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dtr-registry/dtr/images"
)

type globalOptions struct {
	debug        bool
	logLevel     string
	noColor      bool
	helpExtended bool
}

// NewRootCommand returns the `dtr` command with every subcommand.
func NewRootCommand(cli *Cli) *cobra.Command {
	var g globalOptions
	root := &cobra.Command{
		Use:   "dtr [command]",
		Short: "Install and operate a highly available private Docker registry on a Docker Swarm",
		Long: `dtr installs and operates a private, highly available Docker registry on a Docker
Swarm (directly, or through UCP/MKE). Run it on a manager:

  docker run -it --rm -v /var/run/docker.sock:/var/run/docker.sock dtr:` + images.Version + ` install \
    --ucp-url unix:///var/run/docker.sock --ucp-node node1 --dtr-external-url dtr.example.com

Logs go to stderr, results to stdout. Every flag can also come from the
environment variable named in its help; a flag on the command line wins.`,
		Version:           images.Version,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return setup(cli, cmd, &g)
		},
	}
	root.SetVersionTemplate("dtr {{.Version}}\n")
	root.SetOut(cli.Out)
	root.SetErr(cli.Err)
	root.SetIn(cli.In)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErrorf("%v\nSee '%s --help'.", err, cmd.CommandPath())
	})

	pf := flags{fs: root.PersistentFlags()}
	pf.Bool(&g.debug, "debug", false, "Enable debug mode for additional logs of this command", "DEBUG")
	pf.String(&g.logLevel, "log-level", "info", "Log level of this command and, for install/join/reconfigure/restore, of the replicas: debug, info, warn, error or fatal", "LOG_LEVEL")
	pf.Bool(&g.noColor, "nocolor", false, "Disable colours in the logs (also $NO_COLOR)", "NOCOLOR")
	pf.Bool(&g.helpExtended, "help-extended", false, "Display extended help text for a given command", "DTR_EXTENDED_HELP", "MSR_EXTENDED_HELP")

	root.AddCommand(
		newInstallCommand(cli),
		newJoinCommand(cli),
		newReconfigureCommand(cli),
		newRemoveCommand(cli),
		newDestroyCommand(cli),
		newBackupCommand(cli),
		newRestoreCommand(cli),
		newUpgradeCommand(cli),
		newImagesCommand(cli),
		newEmergencyRepairCommand(cli),
		newNodeJobCommand(cli),
	)
	return root
}

// setup reads flags from the environment and configures logging, before any
// command runs.
func setup(cli *Cli, cmd *cobra.Command, g *globalOptions) error {
	passwordOnCommandLine := changed(cmd, "ucp-password")
	if err := applyEnv(cmd, cli.LookupEnv); err != nil {
		return err
	}
	level, err := logrus.ParseLevel(g.logLevel)
	if err != nil || level > logrus.DebugLevel {
		return usageErrorf("invalid --log-level %q: use debug, info, warn, error or fatal", g.logLevel)
	}
	cli.logLevel = level.String()
	if g.debug {
		level = logrus.DebugLevel
	}
	_, noColorEnv := cli.LookupEnv("NO_COLOR")
	cli.Log = logrus.New()
	cli.Log.SetOutput(cli.Err)
	cli.Log.SetLevel(level)
	cli.Log.SetFormatter(&logFormatter{start: cli.Now(), color: cli.ErrIsTerminal && !g.noColor && !noColorEnv})
	if passwordOnCommandLine {
		cli.Log.Warn("--ucp-password on the command line is visible to every user of this machine (ps, shell history); prefer $UCP_PASSWORD or the prompt")
	}
	if g.helpExtended {
		printExtendedHelp(cmd, cli.Out)
		return errHelpShown
	}
	return nil
}

// errHelpShown stops a command after --help-extended printed its help.
var errHelpShown = fmt.Errorf("help shown")

// IsHelpShown reports whether err only means that help was printed.
func IsHelpShown(err error) bool { return err == errHelpShown }

// printExtendedHelp prints the usual help and a table of every environment
// variable the command reads.
func printExtendedHelp(cmd *cobra.Command, w io.Writer) {
	cmd.SetOut(w)
	_ = cmd.Help()
	type row struct{ env, flag string }
	var rows []row
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		for _, env := range fl.Annotations[envAnnotation] {
			rows = append(rows, row{env, fl.Name})
		}
	})
	sort.Slice(rows, func(i, j int) bool { return rows[i].env < rows[j].env })
	fmt.Fprintln(w, "\nEnvironment variables (read only when the flag is not given):")
	for _, r := range rows {
		fmt.Fprintf(w, "  %-28s --%s\n", "$"+r.env, r.flag)
	}
	if strings.Contains(cmd.Name(), "backup") || cmd.Name() == "restore" {
		fmt.Fprintln(w, "\nThe backup holds private keys: store it like a secret, e.g. gpg --symmetric dtr.bkp")
	}
}
