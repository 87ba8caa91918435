// Package prompt asks the operator for missing values, in DTR's format
// ("ucp-url (The UCP URL including domain and port): "), only when stdin is a
// terminal. survey (archived upstream) stays behind the Prompter interface so
// that it can be replaced in one place.
package prompt

import (
	"errors"
	"fmt"
)

// Prompter asks the operator for values the command still needs.
type Prompter interface {
	// Input asks for a visible value. message is the whole prompt text
	// without the trailing ": "; def, if not empty, is shown in brackets and
	// returned for an empty answer.
	Input(message, def string) (string, error)
	// Password asks for a value without echoing it.
	Password(message string) (string, error)
	// Confirm asks a yes/no question.
	Confirm(message string, def bool) (bool, error)
	// Interactive reports whether the operator can answer at all.
	Interactive() bool
}

// ErrNoTerminal is returned by the non-interactive Prompter.
var ErrNoTerminal = errors.New("stdin is not a terminal, so dtr cannot ask for it")

// ErrAborted is returned when the operator interrupts a prompt (Ctrl-C, Ctrl-D).
var ErrAborted = errors.New("prompt aborted")

// NonInteractive is the Prompter for scripts and `docker run -i` without -t:
// every question fails at once with ErrNoTerminal, never waiting for input.
type NonInteractive struct{}

// Input implements Prompter.
func (NonInteractive) Input(message, _ string) (string, error) {
	return "", fmt.Errorf("%s: %w", message, ErrNoTerminal)
}

// Password implements Prompter.
func (NonInteractive) Password(message string) (string, error) {
	return "", fmt.Errorf("%s: %w", message, ErrNoTerminal)
}

// Confirm implements Prompter.
func (NonInteractive) Confirm(message string, _ bool) (bool, error) {
	return false, fmt.Errorf("%s: %w", message, ErrNoTerminal)
}

// Interactive implements Prompter.
func (NonInteractive) Interactive() bool { return false }
