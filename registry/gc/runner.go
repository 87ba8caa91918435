package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/meta"
)

// Actions are the job actions this registry runs: online garbage
// collection, under its name and DTR's older names for the same run, and
// tag pruning (Runner.Prune).
var Actions = map[string]bool{"onlinegc": true, "gc": true, "onlinegc_blobs": true, meta.TagPruningAction: true}

// ActionNames lists Actions for error messages.
func ActionNames() string {
	names := make([]string, 0, len(Actions))
	for a := range Actions {
		names = append(names, a)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// maxGrace bounds the grace period: beyond a month nothing would ever be
// collected, which is a typo rather than a wish.
const maxGrace = 30 * 24 * time.Hour

// ParseParameters checks a job's parameters and returns its options:
// dryRun and deleteUntagged ("true" or "false"), gracePeriod (a Go
// duration, 0 to 720h) and workers (1 to 64).
func ParseParameters(p map[string]string) (Options, error) {
	o := Options{Grace: DefaultGrace, Workers: DefaultWorkers}
	for k, v := range p {
		switch k {
		case "dryRun":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return o, fmt.Errorf("parameter dryRun %q: use \"true\" or \"false\"", v)
			}
			o.DryRun = b
		case "gracePeriod":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > maxGrace {
				return o, fmt.Errorf("parameter gracePeriod %q: give a duration from 0s to 720h, such as \"1h\"", v)
			}
			o.Grace = d
		case "deleteUntagged":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return o, fmt.Errorf("parameter deleteUntagged %q: use \"true\" or \"false\"", v)
			}
			o.DeleteUntagged = b
		case "workers":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 64 {
				return o, fmt.Errorf("parameter workers %q: give a number from 1 to 64", v)
			}
			o.Workers = n
		default:
			return o, fmt.Errorf("unknown parameter %q: garbage collection takes dryRun, deleteUntagged, gracePeriod and workers", k)
		}
	}
	return o, nil
}

// ParseDeadline checks a job's time budget: "" runs until done, otherwise
// a positive Go duration ("30m").
func ParseDeadline(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("deadline %q: give a duration such as \"30m\", or \"\" to run until done", s)
	}
	return d, nil
}

// jobRetention is how long finished jobs and their logs are kept.
const jobRetention = 30 * 24 * time.Hour

// Runner runs waiting jobs on this replica while it holds the GC lease,
// and, on the metadata leader, turns due crons into jobs.
type Runner struct {
	Store     *meta.Store
	Etcd      Etcd
	Collector *Collector
	ReplicaID string
	// IsLeader reports whether this replica's member leads the metadata.
	IsLeader func(ctx context.Context) bool
	Log      logrus.FieldLogger
	LeaseTTL time.Duration // default DefaultLeaseTTL
	Poll     time.Duration // how often to look without a wake-up; default 5 s
	// Prune runs tag_pruning jobs (pruning.go); nil: they end errored.
	Prune Pruner
	// Finished hears of every run this replica recorded the end of, for
	// the metrics and the GC_COMPLETED webhook; it must return at once.
	Finished func(action, status string, freed int64)
}

var (
	errCanceled = errors.New("canceled through the jobs API")
	errDeadline = errors.New("deadline reached")
)

// Run looks for work when a job record changes and every Poll, until ctx
// ends.
func (rn *Runner) Run(ctx context.Context) {
	poll := rn.Poll
	if poll <= 0 {
		poll = 5 * time.Second
	}
	wake := meta.JobsQueued(ctx, rn.Etcd)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		rn.spawnDueCrons(ctx, time.Now())
		rn.runWaiting(ctx)
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
	}
}

func runnable(j meta.Job, now time.Time) bool {
	return j.Status == meta.JobWaiting && Actions[j.Action] && !j.ScheduledAt.After(now)
}

// runWaiting takes the lease if a job waits, runs the waiting jobs oldest
// first, and gives the lease back.
func (rn *Runner) runWaiting(ctx context.Context) {
	jobs, err := rn.Store.Jobs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			rn.Log.WithError(err).Debug("listing jobs")
		}
		return
	}
	if !hasRunnable(jobs) {
		return
	}
	lease, err := AcquireLease(ctx, rn.Etcd, rn.ReplicaID, rn.LeaseTTL)
	if errors.Is(err, ErrLeaseHeld) {
		return
	}
	if err != nil {
		rn.Log.WithError(err).Warn("taking the garbage collection lease; trying again later")
		return
	}
	defer func() {
		if err := lease.Release(ctx); err != nil {
			rn.Log.WithError(err).Warn("releasing the garbage collection lease; it expires by itself")
		}
	}()
	rn.failDead(ctx, jobs)
	for ctx.Err() == nil {
		select {
		case <-lease.Lost():
			return
		default:
		}
		if jobs, err = rn.Store.Jobs(ctx); err != nil {
			return
		}
		var next *meta.Job
		for i := len(jobs) - 1; i >= 0; i-- { // oldest first
			if runnable(jobs[i], time.Now()) {
				next = &jobs[i]
				break
			}
		}
		if next == nil {
			break
		}
		j, rev, err := rn.Store.Job(ctx, next.ID)
		if err != nil || !runnable(j, time.Now()) {
			continue
		}
		j.Status, j.WorkerID, j.StartTime = meta.JobRunning, rn.ReplicaID, time.Now().UTC()
		if err := rn.Store.UpdateJobAt(ctx, j, rev); err != nil {
			continue // cancelled or changed meanwhile: look again
		}
		rn.runJob(ctx, lease, j)
	}
	rn.prune(ctx)
}

func hasRunnable(jobs []meta.Job) bool {
	now := time.Now()
	for _, j := range jobs {
		if runnable(j, now) {
			return true
		}
	}
	return false
}

// failDead marks jobs that are running without the lease as errored: their
// replica died or lost the lease (this one holds it now).
func (rn *Runner) failDead(ctx context.Context, jobs []meta.Job) {
	for _, j := range jobs {
		if j.Status != meta.JobRunning || !Actions[j.Action] {
			continue
		}
		msg := fmt.Sprintf("replica %s stopped during the run (its garbage collection lease expired); a later run redoes the work", j.WorkerID)
		updated, err := rn.Store.UpdateJob(ctx, j.ID, func(x *meta.Job) error {
			if x.Status != meta.JobRunning {
				return errUnchanged
			}
			x.Status, x.Error, x.EndTime = meta.JobErrored, msg, time.Now().UTC()
			return nil
		})
		if err != nil {
			continue
		}
		rn.Log.WithField("job", j.ID).Warn(msg)
		rn.retry(ctx, updated)
	}
}

var errUnchanged = errors.New("unchanged")

// retry queues a new run of an errored job that has retries left.
func (rn *Runner) retry(ctx context.Context, j meta.Job) {
	if j.RetriesLeft <= 0 {
		return
	}
	now := time.Now().UTC()
	n := meta.Job{ID: meta.NewJobID(now), RetryFromID: j.ID, Status: meta.JobWaiting, ScheduledAt: now, LastUpdated: now,
		Action: j.Action, RetriesLeft: j.RetriesLeft - 1, RetriesTotal: j.RetriesTotal, CapacityMap: j.CapacityMap,
		Parameters: j.Parameters, Deadline: j.Deadline, StopTimeout: j.StopTimeout, Cron: j.Cron}
	if err := rn.Store.CreateJob(ctx, n); err != nil {
		rn.Log.WithError(err).WithField("job", j.ID).Warn("queueing a retry")
	}
}

// runJob runs one claimed job and records how it ended.
func (rn *Runner) runJob(ctx context.Context, lease *Lease, j meta.Job) {
	if j.Action == meta.TagPruningAction {
		rn.runPruning(ctx, lease, j)
		return
	}
	log := newJobLog(rn.Store, j.ID, rn.Log)
	log.printf("job %s (%s) started on replica %s", j.ID, j.Action, rn.ReplicaID)
	var run *Run
	opts, err := ParseParameters(j.Parameters)
	var budget time.Duration
	if err == nil {
		budget, err = ParseDeadline(j.Deadline)
	}
	if err == nil {
		run, err = rn.Collector.NewRun(lease, opts, log.printf)
	}
	jctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if budget > 0 {
		var stop context.CancelFunc
		jctx, stop = context.WithTimeoutCause(jctx, budget, errDeadline)
		defer stop()
	}
	var p Progress
	if err == nil {
		var wg sync.WaitGroup
		watchDone := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			rn.watchJob(jctx, cancel, lease, j.ID, run, log, watchDone)
		}()
		p, err = run.Execute(jctx)
		close(watchDone)
		wg.Wait()
	}
	status, msg := meta.JobDone, ""
	cause := context.Cause(jctx)
	switch {
	case err == nil:
	case errors.Is(cause, errCanceled):
		status = meta.JobCanceled
		log.printf("canceled: what was deleted until now stays deleted; the next run goes on from a new mark")
	case errors.Is(cause, errDeadline) && !errors.Is(err, ErrLeaseLost):
		p.StoppedAtDeadline = true
		log.printf("stopped at its deadline (%s); the next run goes on from a new mark", j.Deadline)
	case ctx.Err() != nil:
		status, msg = meta.JobErrored, "replica "+rn.ReplicaID+" stopped during the run; a later run redoes the work"
		log.printf("error: %s", msg)
	default:
		status, msg = meta.JobErrored, err.Error()
		log.printf("error: %v", err)
	}
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer fcancel()
	log.flush(fctx)
	prog, _ := json.Marshal(p)
	updated, uerr := rn.Store.UpdateJob(fctx, j.ID, func(x *meta.Job) error {
		if x.Status != meta.JobRunning || x.WorkerID != rn.ReplicaID {
			return errUnchanged // another replica took over and recorded it
		}
		x.Status, x.Error, x.EndTime, x.Progress = status, msg, time.Now().UTC(), prog
		return nil
	})
	if uerr != nil {
		rn.Log.WithError(uerr).WithField("job", j.ID).Warn("recording the end of a job")
		return
	}
	rn.Log.WithFields(logrus.Fields{"job": j.ID, "status": status, "swept": p.BlobsSwept, "freed": p.BytesFreed, "dryRun": p.DryRun}).Info("garbage collection finished")
	if rn.Finished != nil {
		rn.Finished(j.Action, string(status), p.BytesFreed)
	}
	if status == meta.JobErrored {
		rn.retry(fctx, updated)
	}
}

// watchJob writes the run's progress (a collection's; nil for a pruning
// run, which has none) and log every second, and cancels the run when the
// job is cancelled or the lease is lost.
func (rn *Runner) watchJob(ctx context.Context, cancel context.CancelCauseFunc, lease *Lease, id string, run *Run, log *jobLog, done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-lease.Lost():
			cancel(ErrLeaseLost)
			return
		case <-t.C:
		}
		wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		log.flush(wctx)
		var j meta.Job
		var err error
		if run != nil {
			prog, _ := json.Marshal(run.Progress())
			j, err = rn.Store.UpdateJob(wctx, id, func(x *meta.Job) error {
				x.Progress = prog
				return nil
			})
		} else {
			j, _, err = rn.Store.Job(wctx, id)
		}
		wcancel()
		if err == nil && j.CancelRequested {
			cancel(errCanceled)
		}
	}
}

// prune removes finished jobs older than jobRetention, with their logs.
func (rn *Runner) prune(ctx context.Context) {
	jobs, err := rn.Store.Jobs(ctx)
	if err != nil {
		return
	}
	for _, j := range jobs {
		end := j.EndTime
		if end.IsZero() {
			end = j.ScheduledAt
		}
		if j.Finished() && time.Since(end) > jobRetention {
			if err := rn.Store.DeleteJob(ctx, j.ID); err != nil {
				return
			}
		}
	}
}

// spawnDueCrons queues a job for every cron whose time has come, once:
// the job and the cron's next run are written together, conditional on the
// cron being as read.
func (rn *Runner) spawnDueCrons(ctx context.Context, now time.Time) {
	crons, err := rn.Store.Crons(ctx)
	if err != nil {
		return
	}
	due := false
	for _, c := range crons {
		due = due || (!c.NextRun.IsZero() && !now.Before(c.NextRun))
	}
	// Only the leader spawns; asking who leads costs more than the list.
	if !due || (rn.IsLeader != nil && !rn.IsLeader(ctx)) {
		return
	}
	for _, c := range crons {
		if c.NextRun.IsZero() || now.Before(c.NextRun) {
			continue
		}
		s, err := ParseSchedule(c.Schedule)
		if err != nil {
			continue // refused when written; a record from elsewhere
		}
		cur, rev, err := rn.Store.CronRecord(ctx, c.Action)
		if err != nil || cur.NextRun.IsZero() || now.Before(cur.NextRun) {
			continue
		}
		cur.NextRun = s.Next(now)
		t := now.UTC()
		job := meta.Job{ID: meta.NewJobID(t), Status: meta.JobWaiting, ScheduledAt: t, LastUpdated: t, Action: cur.Action,
			RetriesLeft: cur.Retries, RetriesTotal: cur.Retries, CapacityMap: cur.CapacityMap, Parameters: cur.Parameters,
			Deadline: cur.Deadline, StopTimeout: cur.StopTimeout, Cron: cur.Action}
		if ok, err := rn.Store.SpawnFromCron(ctx, cur, rev, job); err == nil && ok {
			rn.Log.WithFields(logrus.Fields{"cron": cur.Action, "job": job.ID, "next": cur.NextRun}).Info("cron spawned a job")
		}
	}
}

// jobLog buffers a job's log lines and writes them in chunks of
// meta.JobLogChunk.
type jobLog struct {
	store *meta.Store
	id    string
	log   logrus.FieldLogger
	mu    sync.Mutex
	buf   []meta.JobLogLine // lines not yet written in a full chunk
	next  int               // the next line number
	dirty bool
}

func newJobLog(store *meta.Store, id string, log logrus.FieldLogger) *jobLog {
	return &jobLog{store: store, id: id, log: log}
}

func (l *jobLog) printf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, meta.JobLogLine{LineNum: l.next, Data: time.Now().UTC().Format(time.RFC3339) + " " + line})
	l.next++
	l.dirty = true
}

func (l *jobLog) flush(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.dirty {
		return
	}
	for len(l.buf) > 0 {
		chunk := l.buf[0].LineNum / meta.JobLogChunk
		n := 0
		for n < len(l.buf) && l.buf[n].LineNum/meta.JobLogChunk == chunk {
			n++
		}
		if err := l.store.PutJobLogChunk(ctx, l.id, chunk, l.buf[:n]); err != nil {
			l.log.WithError(err).WithField("job", l.id).Warn("writing the job's log; retrying at the next flush")
			return
		}
		if n < len(l.buf) || n == meta.JobLogChunk {
			l.buf = l.buf[n:] // a full chunk is written for good
			continue
		}
		break // the last, partial chunk stays to be rewritten as it fills
	}
	l.dirty = false
}
