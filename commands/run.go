package commands

import (
	"context"
	"errors"
	"strings"

	"github.com/sirupsen/logrus"
)

// Run executes dtr with args and returns the process's exit code. Errors are
// logged as DTR did ("FATA[0000] …"); failed operations add "<Cmd> has
// failed. Try running it again." since every command may be re-run.
func Run(ctx context.Context, cli *Cli, args []string) int {
	if cli.Log == nil {
		cli.Log = logrus.New()
		cli.Log.SetOutput(cli.Err)
		cli.Log.SetFormatter(&logFormatter{start: cli.Now()})
	}
	root := NewRootCommand(cli)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil || IsHelpShown(err) {
		return ExitOK
	}
	if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
		err = errors.Join(context.Canceled, err)
	}
	code := ExitCode(err)
	cli.Log.Log(logrus.FatalLevel, err)
	if code == ExitFailure && cmd != nil && cmd != root {
		name := cmd.Name()
		cli.Log.Log(logrus.FatalLevel, strings.ToUpper(name[:1])+name[1:]+" has failed. Try running it again.")
	}
	if code == ExitInterrupted {
		cli.Log.Warn("Interrupted; the steps already logged were done, nothing after them")
	}
	return code
}
