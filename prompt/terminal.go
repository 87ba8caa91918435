package prompt

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/AlecAivazis/survey/v2"
	"github.com/AlecAivazis/survey/v2/terminal"
	"golang.org/x/term"
)

// DTR's prompt format: "<message> [<default>]: ", answer on the same line, no
// icons or colours (operators and expect scripts match these lines).
const (
	inputTemplate   = `{{ .Message }}{{ if .Default }} [{{ .Default }}]{{ end }}: {{ if .ShowAnswer }}{{ .Answer }}{{ "\n" }}{{ end }}`
	confirmTemplate = `{{ .Message }} {{ if .Default }}[Y/n]{{ else }}[y/N]{{ end }}: {{ if .Answer }}{{ .Answer }}{{ "\n" }}{{ end }}`
)

func init() {
	// survey renders through package-level templates; this package is the
	// only user of survey in dtr, so setting them here changes nothing else.
	survey.InputQuestionTemplate = inputTemplate
	survey.ConfirmQuestionTemplate = confirmTemplate
}

// Terminal asks on a terminal: in is the terminal the answers come from, out
// is where prompts are written (stderr, so stdout keeps only results).
type Terminal struct {
	in  *os.File
	out *os.File
}

// NewTerminal returns a Prompter on the terminal in, writing prompts to out.
func NewTerminal(in, out *os.File) *Terminal { return &Terminal{in: in, out: out} }

func (t *Terminal) opts() []survey.AskOpt {
	return []survey.AskOpt{
		survey.WithStdio(t.in, t.out, t.out),
		survey.WithShowCursor(true),
	}
}

func surveyErr(err error) error {
	if errors.Is(err, terminal.InterruptErr) || errors.Is(err, io.EOF) {
		return ErrAborted
	}
	return err
}

// Input implements Prompter.
func (t *Terminal) Input(message, def string) (string, error) {
	var answer string
	err := survey.AskOne(&survey.Input{Message: message, Default: def}, &answer, t.opts()...)
	return strings.TrimSpace(answer), surveyErr(err)
}

// Password implements Prompter. survey can only mask a password with a
// character; DTR showed nothing at all, so the terminal's echo is turned off
// instead, as docker/cli does for `docker login`.
func (t *Terminal) Password(message string) (string, error) {
	fmt.Fprintf(t.out, "%s: ", message)
	b, err := term.ReadPassword(int(t.in.Fd()))
	fmt.Fprintln(t.out)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", message, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// Confirm implements Prompter.
func (t *Terminal) Confirm(message string, def bool) (bool, error) {
	answer := def
	err := survey.AskOne(&survey.Confirm{Message: message, Default: def}, &answer, t.opts()...)
	return answer, surveyErr(err)
}

// Interactive implements Prompter.
func (t *Terminal) Interactive() bool { return true }

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
