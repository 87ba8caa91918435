package registry

import (
	"context"
	"time"

	"github.com/dtr-registry/dtr/registry/gc"
)

// GCPhases are the moments a run entered each phase, seen by polling its
// progress every few milliseconds.
type GCPhases map[string]time.Time

// RunGC runs one garbage collection on this replica now, as its job runner
// would but without a job record, holding the GC lease for the run: the
// measurements time the run itself, not the runner's polling and log
// writes. logf receives the run's log lines.
func (r *Replica) RunGC(ctx context.Context, opts gc.Options, logf func(format string, args ...any)) (gc.Progress, GCPhases, error) {
	lease, err := gc.AcquireLease(ctx, r.member.Client(), r.opts.ReplicaID, 0)
	if err != nil {
		return gc.Progress{}, nil, err
	}
	defer func() { _ = lease.Release(context.WithoutCancel(ctx)) }()
	run, err := r.gcRunner().Collector.NewRun(lease, opts, logf)
	if err != nil {
		return gc.Progress{}, nil, err
	}
	phases := GCPhases{}
	stop, polled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(polled)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			if ph := run.Progress().Phase; ph != "" {
				if _, seen := phases[ph]; !seen {
					phases[ph] = time.Now()
				}
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	p, err := run.Execute(ctx)
	end := time.Now()
	close(stop)
	<-polled
	phases["end"] = end
	return p, phases, err
}
