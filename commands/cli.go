// Package commands is dtr's command line: one file per subcommand, each with
// an options struct, newXCommand that declares its flags and runX that does
// the work through an injected Cli.
package commands

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/prompt"
	"github.com/dtr-registry/dtr/ucp"
)

// Cli is everything a command may touch outside itself. main builds it from
// the process; tests build it from buffers and fakes.
type Cli struct {
	In  io.Reader
	Out io.Writer // results only: IDs, tables, backup bytes
	Err io.Writer // logs and prompts

	// OutIsTerminal is true when stdout is a terminal (backup refuses that).
	OutIsTerminal bool
	// ErrIsTerminal turns on coloured logs unless --nocolor or $NO_COLOR.
	ErrIsTerminal bool

	// Prompter asks for missing values; NonInteractive when stdin is not a terminal.
	Prompter prompt.Prompter
	// LookupEnv reads the environment (os.LookupEnv in production).
	LookupEnv func(string) (string, bool)
	// Connect reaches the control plane (ucp.Connect in production).
	Connect func(context.Context, ucp.Options) (*ucp.Cluster, error)
	// Now is the clock.
	Now func() time.Time

	// Log is set up by the root command from --debug, --log-level and --nocolor.
	Log *logrus.Logger
	// logLevel is --log-level, which replicas get too.
	logLevel string
}

// NewProcessCli returns the Cli of this process: its streams, environment and
// the real control plane.
func NewProcessCli() *Cli {
	var p prompt.Prompter = prompt.NonInteractive{}
	if prompt.IsTerminal(os.Stdin) {
		p = prompt.NewTerminal(os.Stdin, os.Stderr)
	}
	return &Cli{
		In:            os.Stdin,
		Out:           os.Stdout,
		Err:           os.Stderr,
		OutIsTerminal: prompt.IsTerminal(os.Stdout),
		ErrIsTerminal: prompt.IsTerminal(os.Stderr),
		Prompter:      p,
		LookupEnv:     os.LookupEnv,
		Connect:       ucp.Connect,
		Now:           time.Now,
	}
}

func (c *Cli) getenv(name string) string {
	if c.LookupEnv == nil {
		return ""
	}
	v, _ := c.LookupEnv(name)
	return v
}

func (c *Cli) prompter() prompt.Prompter {
	if c.Prompter == nil {
		return prompt.NonInteractive{}
	}
	return c.Prompter
}
