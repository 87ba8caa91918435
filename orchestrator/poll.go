package orchestrator

import (
	"context"
	"errors"
	"time"
)

// errTimedOut is what poll returns when within passed before try said done.
var errTimedOut = errors.New("timed out")

// poll is every wait of the installer: it calls try, then every `every`,
// until try reports done (nil) or fails (its error, at once), ctx ends
// (ctx.Err()) or within has passed since the start (errTimedOut, after
// one last try). try runs at least once, so a zero within is one attempt.
func poll(ctx context.Context, within, every time.Duration, try func() (done bool, err error)) error {
	deadline := time.Now().Add(within)
	for {
		done, err := try()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return errTimedOut
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// retry calls fn until it succeeds, ctx ends or within passes, and then
// returns fn's last error: what went wrong, not that the time ran out.
func retry(ctx context.Context, within time.Duration, fn func() error) error {
	var last error
	err := poll(ctx, within, 300*time.Millisecond, func() (bool, error) {
		last = fn()
		return last == nil, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}
