package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/meta"
)

// SyncTimeout bounds one sync: reading the directory and applying it.
const SyncTimeout = 10 * time.Minute

// staleAfter: a running sync whose record has not changed for this long
// lost its replica (a sync never runs longer than SyncTimeout).
const staleAfter = SyncTimeout + 2*time.Minute

// Runner runs ldap_sync jobs (meta.IdentitySyncAction): any replica may
// claim a waiting one, with a write conditional on the job's record, so
// one runs it. The metadata leader's jobs runner spawns them from their
// cron (registry/gc), which the admin API sets from the sync schedule.
type Runner struct {
	Store     *meta.Store
	Watcher   clientv3.Watcher // wakes the runner when a job is queued; nil: polls only
	ReplicaID string
	Log       logrus.FieldLogger
	Poll      time.Duration // default 5 s
	// Source builds the source for a sync (default NewSource).
	Source func(st meta.IdentitySettings, links []meta.TeamSync) (identity.Source, error)
}

// Run looks for ldap_sync jobs when a job record changes and every Poll,
// until ctx ends.
func (rn *Runner) Run(ctx context.Context) {
	poll := rn.Poll
	if poll <= 0 {
		poll = 5 * time.Second
	}
	var wake <-chan struct{} // nil: polls only
	if rn.Watcher != nil {
		wake = meta.JobsQueued(ctx, rn.Watcher)
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		rn.RunWaiting(ctx)
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
	}
}

// RunWaiting runs the waiting ldap_sync jobs, one at a time across the
// cluster, and fails the ones whose replica stopped mid-run.
func (rn *Runner) RunWaiting(ctx context.Context) {
	for ctx.Err() == nil {
		jobs, err := rn.Store.Jobs(ctx)
		if err != nil {
			return
		}
		var next *meta.Job
		now := time.Now()
		for i := len(jobs) - 1; i >= 0; i-- { // oldest first
			j := jobs[i]
			if j.Action != meta.IdentitySyncAction {
				continue
			}
			if j.Status == meta.JobRunning {
				if now.Sub(j.LastUpdated) < staleAfter {
					return // one sync at a time
				}
				rn.failStale(ctx, j)
				continue
			}
			if next == nil && j.Status == meta.JobWaiting && !j.ScheduledAt.After(now) {
				next = &jobs[i]
			}
		}
		if next == nil {
			return
		}
		j, rev, err := rn.Store.Job(ctx, next.ID)
		if err != nil || j.Status != meta.JobWaiting {
			continue
		}
		j.Status, j.WorkerID, j.StartTime = meta.JobRunning, rn.ReplicaID, time.Now().UTC()
		if err := rn.Store.UpdateJobAt(ctx, j, rev); err != nil {
			continue // another replica claimed it, or it was cancelled
		}
		rn.run(ctx, j)
	}
}

func (rn *Runner) failStale(ctx context.Context, j meta.Job) {
	msg := fmt.Sprintf("replica %s stopped during the sync; the next sync redoes it", j.WorkerID)
	_, err := rn.Store.UpdateJob(ctx, j.ID, func(x *meta.Job) error {
		if x.Status != meta.JobRunning || !x.LastUpdated.Equal(j.LastUpdated) {
			return errSkip
		}
		x.Status, x.Error, x.EndTime = meta.JobErrored, msg, time.Now().UTC()
		return nil
	})
	if err == nil {
		rn.Log.WithField("job", j.ID).Warn(msg)
	}
}

// Sync reads the directory of the configured source and applies it; logf
// hears of every change. Local settings sync nothing.
func (rn *Runner) Sync(ctx context.Context, logf func(string, ...any)) (Result, error) {
	st, _, err := rn.Store.Settings(ctx)
	if err != nil {
		return Result{}, err
	}
	if st.IdentityKind() == meta.IdentityLocal {
		logf("the identity source is local: nothing to sync")
		return Result{}, nil
	}
	links, err := rn.Store.TeamSyncs(ctx)
	if err != nil {
		return Result{}, err
	}
	build := rn.Source
	if build == nil {
		build = NewSource
	}
	src, err := build(*st.Identity, links)
	if err != nil {
		return Result{}, err
	}
	logf("reading the %s directory", src.Kind())
	dir, err := src.Directory(ctx)
	if err != nil {
		return Result{}, err
	}
	if len(dir.Users) == 0 {
		logf("warning: the directory lists no users; every account from it is deactivated (check the user search settings)")
	}
	return Apply(ctx, rn.Store, src.Kind(), dir, logf)
}

func (rn *Runner) run(ctx context.Context, j meta.Job) {
	var lines []meta.JobLogLine
	logf := func(format string, args ...any) {
		lines = append(lines, meta.JobLogLine{LineNum: len(lines), Data: time.Now().UTC().Format(time.RFC3339) + " " + fmt.Sprintf(format, args...)})
	}
	logf("job %s (%s) started on replica %s", j.ID, j.Action, rn.ReplicaID)
	sctx, cancel := context.WithTimeout(ctx, SyncTimeout)
	res, err := rn.Sync(sctx, logf)
	cancel()
	status, msg := meta.JobDone, ""
	if err != nil {
		status, msg = meta.JobErrored, err.Error()
		if ctx.Err() != nil {
			msg = "replica " + rn.ReplicaID + " stopped during the sync; the next sync redoes it"
		}
		logf("error: %s", msg)
	} else {
		logf("done: %s", res.describe())
	}
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer fcancel()
	log := rn.Log.WithFields(logrus.Fields{"job": j.ID, "status": status})
	if status == meta.JobDone && !res.Changed() && j.Cron != "" {
		// A scheduled sync that changed nothing is not kept: 24 a day
		// would bury the ones that did something.
		if err := rn.Store.DeleteJob(fctx, j.ID); err != nil {
			log.WithError(err).Warn("removing a scheduled identity sync that changed nothing")
		}
		return
	}
	for n := 0; n*meta.JobLogChunk < len(lines); n++ {
		chunk := lines[n*meta.JobLogChunk : min(len(lines), (n+1)*meta.JobLogChunk)]
		if err := rn.Store.PutJobLogChunk(fctx, j.ID, n, chunk); err != nil {
			log.WithError(err).Warn("writing the identity sync's log")
			break
		}
	}
	prog, _ := json.Marshal(res)
	_, uerr := rn.Store.UpdateJob(fctx, j.ID, func(x *meta.Job) error {
		if x.Status != meta.JobRunning || x.WorkerID != rn.ReplicaID {
			return errSkip
		}
		x.Status, x.Error, x.EndTime, x.Progress = status, msg, time.Now().UTC(), prog
		return nil
	})
	if uerr != nil && !errors.Is(uerr, errSkip) {
		log.WithError(uerr).Warn("recording the end of the identity sync")
	}
	if err != nil {
		log.WithError(err).Warn("identity sync failed")
		return
	}
	log.Info("identity sync: " + res.describe())
}
