package gc

import (
	"context"
	"time"
)

// restFactor is how long a run rests, per unit of time it worked, while
// clients are being served: a tenth of the time at most, one call at a
// time, goes to the run's storage calls and metadata writes, so that a
// push or a pull seldom waits behind them for CPU or disk (docs/gc.md,
// "Giving way to clients").
const restFactor = 9

// maxRest bounds one rest: a slow storage call must not stall the run for
// long once the clients are gone.
const maxRest = 200 * time.Millisecond

// paced runs fn as one step of the run. While the registry serves clients
// (Config.Busy) steps run one at a time, each followed by a rest nine
// times as long; an idle registry lets the run use every worker.
func (r *Run) paced(ctx context.Context, fn func() error) error {
	if !r.busy() {
		return fn()
	}
	r.paceMu.Lock()
	start := time.Now()
	err := fn()
	r.paceMu.Unlock()
	r.rest(ctx, time.Since(start))
	return err
}

// breathe is paced for a long walk: called every so many entries with
// when the stretch began, it rests after it while clients are served, and
// returns when the next stretch begins.
func (r *Run) breathe(ctx context.Context, since time.Time) time.Time {
	if r.busy() {
		r.rest(ctx, time.Since(since))
	}
	return time.Now()
}

func (r *Run) busy() bool { return r.c.cfg.Busy != nil && r.c.cfg.Busy() }

func (r *Run) rest(ctx context.Context, worked time.Duration) {
	r.prog.yields.Add(1)
	t := time.NewTimer(min(worked*restFactor, maxRest))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
