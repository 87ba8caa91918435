package commands

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envAnnotation is the pflag annotation naming a flag's environment variables.
const envAnnotation = "dtr_env"

// flags declares flags that can also come from environment variables, as
// DTR's did: the help text names them, and a variable is read only when the
// flag was not set on the command line.
type flags struct{ fs *pflag.FlagSet }

func newFlags(cmd *cobra.Command) flags { return flags{fs: cmd.Flags()} }

func (f flags) bind(name string, env []string) {
	if len(env) == 0 {
		return
	}
	fl := f.fs.Lookup(name)
	fl.Usage = fmt.Sprintf("%s ($%s)", fl.Usage, strings.Join(env, ", $"))
	_ = f.fs.SetAnnotation(name, envAnnotation, env)
}

func (f flags) String(p *string, name, def, usage string, env ...string) {
	f.fs.StringVar(p, name, def, usage)
	f.bind(name, env)
}

func (f flags) Bool(p *bool, name string, def bool, usage string, env ...string) {
	f.fs.BoolVar(p, name, def, usage)
	f.bind(name, env)
}

func (f flags) BoolP(p *bool, name, short string, def bool, usage string, env ...string) {
	f.fs.BoolVarP(p, name, short, def, usage)
	f.bind(name, env)
}

func (f flags) Int(p *int, name string, def int, usage string, env ...string) {
	f.fs.IntVar(p, name, def, usage)
	f.bind(name, env)
}

// applyEnv sets every flag of cmd that was not given on the command line from
// its environment variable, if that is set. The first variable listed wins.
func applyEnv(cmd *cobra.Command, lookup func(string) (string, bool)) error {
	var errs []string
	apply := func(fl *pflag.Flag) {
		if fl.Changed {
			return
		}
		for _, env := range fl.Annotations[envAnnotation] {
			v, ok := lookup(env)
			if !ok {
				continue
			}
			if err := fl.Value.Set(v); err != nil {
				errs = append(errs, fmt.Sprintf("invalid value for $%s (--%s): %v", env, fl.Name, err))
			} else {
				fl.Changed = true
			}
			return
		}
	}
	cmd.Flags().VisitAll(apply)
	if len(errs) > 0 {
		return usageErrorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// envOf returns how the operator names a flag: "--ucp-url ($UCP_URL)".
func envOf(cmd *cobra.Command, name string) string {
	fl := cmd.Flags().Lookup(name)
	if fl == nil || len(fl.Annotations[envAnnotation]) == 0 {
		return "--" + name
	}
	return fmt.Sprintf("--%s ($%s)", name, fl.Annotations[envAnnotation][0])
}

// changed reports whether a flag was set on the command line or from its
// environment variable.
func changed(cmd *cobra.Command, name string) bool {
	fl := cmd.Flags().Lookup(name)
	return fl != nil && fl.Changed
}
