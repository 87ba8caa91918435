package gc

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/meta"
)

// Pruner applies the tag pruning policies a tag_pruning job's parameters
// select (meta.ParsePruningParameters), writing each pruned tag to the job's
// log through logf. It returns the job's progress and how many tags it
// pruned; it stops between two deletions when ctx ends.
type Pruner func(ctx context.Context, params map[string]string, logf func(format string, args ...any)) (progress any, pruned int, err error)

// PruningSchedule is the schedule of the tag pruning cron the admin API
// creates with the first policy or tag limit: every policy and tag limit is
// applied every 15 minutes.
const PruningSchedule = "*/15 * * * *"

// runPruning runs a claimed tag_pruning job under the GC lease (so one
// replica prunes at a time, and never during a collection's sweep) and
// records how it ended. A scheduled run that pruned nothing is not kept:
// 96 empty runs a day would bury the ones that did something.
func (rn *Runner) runPruning(ctx context.Context, lease *Lease, j meta.Job) {
	log := newJobLog(rn.Store, j.ID, rn.Log)
	log.printf("job %s (%s) started on replica %s", j.ID, j.Action, rn.ReplicaID)
	jctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	budget, err := ParseDeadline(j.Deadline)
	if budget > 0 {
		var stop context.CancelFunc
		jctx, stop = context.WithTimeoutCause(jctx, budget, errDeadline)
		defer stop()
	}
	var prog any
	pruned := 0
	if err == nil && rn.Prune == nil {
		err = errors.New("this replica cannot prune tags: its registry storage is not set up")
	}
	if err == nil {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			rn.watchJob(jctx, cancel, lease, j.ID, nil, log, done)
		}()
		prog, pruned, err = rn.Prune(jctx, j.Parameters, log.printf)
		close(done)
		wg.Wait()
	}
	status, msg := meta.JobDone, ""
	cause := context.Cause(jctx)
	switch {
	case err == nil:
	case errors.Is(cause, errCanceled):
		status = meta.JobCanceled
		log.printf("canceled: the tags pruned until now stay deleted")
	case errors.Is(cause, errDeadline) && !errors.Is(err, ErrLeaseLost):
		log.printf("stopped at its deadline (%s); the next run goes on", j.Deadline)
	case ctx.Err() != nil:
		status, msg = meta.JobErrored, "replica "+rn.ReplicaID+" stopped during the run; a later run redoes the work"
		log.printf("error: %s", msg)
	default:
		status, msg = meta.JobErrored, err.Error()
		log.printf("error: %v", err)
	}
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer fcancel()
	if status == meta.JobDone && pruned == 0 && j.Cron != "" {
		if err := rn.Store.DeleteJob(fctx, j.ID); err != nil {
			rn.Log.WithError(err).WithField("job", j.ID).Warn("removing a scheduled tag pruning run that pruned nothing")
		}
		return
	}
	log.flush(fctx)
	b, _ := json.Marshal(prog)
	updated, uerr := rn.Store.UpdateJob(fctx, j.ID, func(x *meta.Job) error {
		if x.Status != meta.JobRunning || x.WorkerID != rn.ReplicaID {
			return errUnchanged
		}
		x.Status, x.Error, x.EndTime, x.Progress = status, msg, time.Now().UTC(), b
		return nil
	})
	if uerr != nil {
		rn.Log.WithError(uerr).WithField("job", j.ID).Warn("recording the end of a job")
		return
	}
	rn.Log.WithFields(logrus.Fields{"job": j.ID, "status": status, "pruned": pruned}).Info("tag pruning finished")
	if status == meta.JobErrored {
		rn.retry(fctx, updated)
	}
}
