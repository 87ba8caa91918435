package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/dtr-registry/dtr/ucp"
)

// Exit codes, documented in the README. Scripts may rely on them.
const (
	ExitOK           = 0   // the command did what it was asked
	ExitFailure      = 1   // the operation failed
	ExitUsage        = 2   // bad flags, values or environment; nothing was changed
	ExitControlPlane = 3   // the control plane cannot be reached, trusted or logged in to, or is not a Swarm manager
	ExitInterrupted  = 130 // stopped by Ctrl-C or SIGTERM
)

// UsageError is a mistake in how the command was called: a bad or missing
// flag value. Nothing has been changed when one is returned.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &UsageError{msg: fmt.Sprintf(format, args...)}
}

// ExitCode maps an error returned by a command to the process's exit code.
func ExitCode(err error) int {
	var usage *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &usage), errors.Is(err, ucp.ErrBadURL), errors.Is(err, ucp.ErrBadCA):
		return ExitUsage
	case errors.Is(err, ucp.ErrControlPlane):
		return ExitControlPlane
	default:
		return ExitFailure
	}
}
