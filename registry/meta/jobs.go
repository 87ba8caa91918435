package meta

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Job statuses, as DTR's jobs API names them.
const (
	JobWaiting  = "waiting"
	JobRunning  = "running"
	JobDone     = "done"
	JobErrored  = "errored"
	JobCanceled = "canceled"
)

// Job is one run of background work (online garbage collection), a record
// any replica writes and the replica that takes the work's lease runs. Its
// fields are DTR's, so that scripts written for DTR read it.
type Job struct {
	ID           string            `json:"id"`
	RetryFromID  string            `json:"retryFromID"`
	WorkerID     string            `json:"workerID"` // the replica that runs or ran it
	Status       string            `json:"status"`
	ScheduledAt  time.Time         `json:"scheduledAt"`
	LastUpdated  time.Time         `json:"lastUpdated"`
	StartTime    time.Time         `json:"startTime,omitzero"`
	EndTime      time.Time         `json:"endTime,omitzero"`
	Action       string            `json:"action"`
	RetriesLeft  int               `json:"retriesLeft"`
	RetriesTotal int               `json:"retriesTotal"`
	CapacityMap  map[string]int    `json:"capacityMap"`
	Parameters   map[string]string `json:"parameters"`
	Deadline     string            `json:"deadline"`
	StopTimeout  string            `json:"stopTimeout"`
	// CancelRequested is set by DELETE or POST …/cancel; the worker stops
	// at its next check and sets Status canceled.
	CancelRequested bool   `json:"cancelRequested,omitempty"`
	Error           string `json:"error,omitempty"`
	// Progress is the action's own report (gc.Progress for garbage
	// collection), kept as the worker wrote it.
	Progress json.RawMessage `json:"progress,omitempty"`
	// Cron is the action of the cron that spawned the job, if one did.
	Cron string `json:"cron,omitempty"`
}

// Finished reports whether the job will not change any more.
func (j Job) Finished() bool {
	return j.Status == JobDone || j.Status == JobErrored || j.Status == JobCanceled
}

// JobLogLine is one line of a job's log.
type JobLogLine struct {
	LineNum int    `json:"lineNum"`
	Data    string `json:"data"`
}

// NewJobID returns a job ID that sorts by creation time: 16 hex digits of
// nanoseconds, then random ones, in UUID form as DTR's.
func NewJobID(now time.Time) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	t := fmt.Sprintf("%016x", now.UnixNano())
	r := hex.EncodeToString(b[:])
	return t[:8] + "-" + t[8:12] + "-" + t[12:16] + "-" + r[:4] + "-" + r[4:16]
}

// CreateJob writes a new job.
func (s *Store) CreateJob(ctx context.Context, j Job) error {
	if j.ID == "" || strings.Contains(j.ID, "/") {
		return fmt.Errorf("%w job id %q", ErrInvalid, j.ID)
	}
	if err := s.create(ctx, key("jobs", j.ID), j); err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	return nil
}

// Job returns a job and the revision it was read at, for UpdateJobAt.
func (s *Store) Job(ctx context.Context, id string) (Job, int64, error) {
	var j Job
	rev, err := s.get(ctx, key("jobs", id), &j)
	if err != nil {
		return j, 0, fmt.Errorf("job %s: %w", id, err)
	}
	return j, rev, nil
}

// Jobs lists every job, newest first.
func (s *Store) Jobs(ctx context.Context) ([]Job, error) {
	js, err := list[Job](ctx, s, dir("jobs"))
	if err != nil {
		return nil, err
	}
	sort.SliceStable(js, func(a, b int) bool {
		if !js[a].ScheduledAt.Equal(js[b].ScheduledAt) {
			return js[a].ScheduledAt.After(js[b].ScheduledAt)
		}
		return js[a].ID > js[b].ID
	})
	return js, nil
}

// UpdateJob changes a job with fn, retrying when another replica changed
// it in between.
func (s *Store) UpdateJob(ctx context.Context, id string, fn func(*Job) error) (Job, error) {
	j, err := mutate(ctx, s, key("jobs", id), func(j *Job) error {
		if err := fn(j); err != nil {
			return err
		}
		j.LastUpdated = time.Now().UTC()
		return nil
	})
	if err != nil {
		return j, fmt.Errorf("job %s: %w", id, err)
	}
	return j, nil
}

// UpdateJobAt writes j only if its record is still at revision rev
// (ErrConflict otherwise): a worker claims a waiting job this way, so that
// two never both run it.
func (s *Store) UpdateJobAt(ctx context.Context, j Job, rev int64) error {
	j.LastUpdated = time.Now().UTC()
	return s.update(ctx, key("jobs", j.ID), rev, j)
}

// DeleteJob removes a job and its log.
func (s *Store) DeleteJob(ctx context.Context, id string) error {
	_, err := s.KV.Txn(ctx).Then(
		clientv3.OpDelete(key("jobs", id)),
		clientv3.OpDelete(dir("joblogs", id), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return fmt.Errorf("deleting job %s: %w", id, err)
	}
	return nil
}

// JobLogChunk is how many lines one log record holds at most: a run that
// logs a million deletions writes 10,000 records, not a million.
const JobLogChunk = 100

// PutJobLogChunk writes chunk n of a job's log (lines n*JobLogChunk on);
// the writer rewrites the last chunk as it fills.
func (s *Store) PutJobLogChunk(ctx context.Context, id string, n int, lines []JobLogLine) error {
	return s.put(ctx, key("joblogs", id, fmt.Sprintf("%010d", n)), lines)
}

// JobLogs returns lines offset.. of a job's log, at most limit (0: all).
func (s *Store) JobLogs(ctx context.Context, id string, offset, limit int) ([]JobLogLine, error) {
	from := key("joblogs", id, fmt.Sprintf("%010d", max(offset, 0)/JobLogChunk))
	resp, err := s.KV.Get(ctx, from, readOpts(ctx, clientv3.WithRange(clientv3.GetPrefixRangeEnd(dir("joblogs", id))))...)
	if err != nil {
		return nil, fmt.Errorf("reading the log of job %s: %w", id, err)
	}
	out := []JobLogLine{}
	for _, kv := range resp.Kvs {
		var lines []JobLogLine
		if err := json.Unmarshal(kv.Value, &lines); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
		}
		for _, l := range lines {
			if l.LineNum < offset {
				continue
			}
			if limit > 0 && len(out) >= limit {
				return out, nil
			}
			out = append(out, l)
		}
	}
	return out, nil
}

// Cron is a schedule that spawns a job of its action: one per action, as
// DTR's. NextRun is when the metadata leader spawns the next one.
type Cron struct {
	ID          string            `json:"id"`
	Action      string            `json:"action"`
	Schedule    string            `json:"schedule"`
	Retries     int               `json:"retries"`
	CapacityMap map[string]int    `json:"capacityMap"`
	Parameters  map[string]string `json:"parameters"`
	Deadline    string            `json:"deadline"`
	StopTimeout string            `json:"stopTimeout"`
	NextRun     time.Time         `json:"nextRun,omitzero"`
}

// PutCron creates or replaces the cron of c.Action, keeping its ID.
func (s *Store) PutCron(ctx context.Context, c Cron) (Cron, error) {
	if c.Action == "" || strings.Contains(c.Action, "/") {
		return c, fmt.Errorf("%w cron action %q", ErrInvalid, c.Action)
	}
	k := key("crons", c.Action)
	for {
		var old Cron
		rev, err := s.get(ctx, k, &old)
		switch {
		case errors.Is(err, ErrNotFound):
			c.ID = NewJobID(time.Now())
			err = s.create(ctx, k, c)
			if errors.Is(err, ErrExists) {
				continue
			}
		case err != nil:
			return c, err
		default:
			c.ID = old.ID
			err = s.update(ctx, k, rev, c)
			if errors.Is(err, ErrConflict) {
				continue
			}
		}
		return c, err
	}
}

// CronRecord returns the cron of an action and its revision.
func (s *Store) CronRecord(ctx context.Context, action string) (Cron, int64, error) {
	var c Cron
	rev, err := s.get(ctx, key("crons", action), &c)
	if err != nil {
		return c, 0, fmt.Errorf("cron %s: %w", action, err)
	}
	return c, rev, nil
}

// Crons lists every cron.
func (s *Store) Crons(ctx context.Context) ([]Cron, error) {
	return list[Cron](ctx, s, dir("crons"))
}

// DeleteCron removes an action's cron; jobs it spawned are left alone.
func (s *Store) DeleteCron(ctx context.Context, action string) error {
	found, err := s.del(ctx, key("crons", action), false)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("cron %s: %w", action, ErrNotFound)
	}
	return nil
}

// SpawnFromCron writes job and the cron's next run in one transaction,
// conditional on the cron being at revision rev: two leaders (one just
// deposed) never spawn the same run twice. It reports whether it wrote.
func (s *Store) SpawnFromCron(ctx context.Context, c Cron, rev int64, job Job) (bool, error) {
	cb, err := json.Marshal(c)
	if err != nil {
		return false, err
	}
	jb, err := json.Marshal(job)
	if err != nil {
		return false, err
	}
	ck, jk := key("crons", c.Action), key("jobs", job.ID)
	resp, err := s.KV.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(ck), "=", rev), clientv3.Compare(clientv3.CreateRevision(jk), "=", 0)).
		Then(clientv3.OpPut(ck, string(cb)), clientv3.OpPut(jk, string(jb))).
		Commit()
	if err != nil {
		return false, fmt.Errorf("spawning a job from cron %s: %w", c.Action, err)
	}
	return resp.Succeeded, nil
}

// GCKey is the metadata key of garbage collection's own records (its lease,
// epoch and tombstones; docs/gc.md), below /dtr/gc/. They live and die with
// etcd leases, so a backup leaves them out.
func GCKey(parts ...string) string {
	return Prefix + "gc/" + strings.Join(parts, "/")
}

// GCLock is the record under GCKey("lock"): the replica that holds the
// garbage collection lease.
type GCLock struct {
	Replica string    `json:"replica"`
	Since   time.Time `json:"since"`
}

// GCLockHolder returns the replica that holds the garbage collection lease,
// or "".
func (s *Store) GCLockHolder(ctx context.Context) (string, error) {
	resp, err := s.KV.Get(ctx, GCKey("lock"), readOpts(ctx)...)
	if err != nil {
		return "", fmt.Errorf("reading the garbage collection lease: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	var l GCLock
	if err := json.Unmarshal(resp.Kvs[0].Value, &l); err != nil {
		return "", fmt.Errorf("decoding the garbage collection lease: %w", err)
	}
	return l.Replica, nil
}

// JobsQueued signals on the returned channel (buffered, one pending signal)
// whenever a job record changes, until ctx ends: job runners wake on it
// instead of waiting for their next poll. A broken watch is opened again
// after a second.
func JobsQueued(ctx context.Context, w clientv3.Watcher) <-chan struct{} {
	wake := make(chan struct{}, 1)
	go func() {
		for ctx.Err() == nil {
			for resp := range w.Watch(clientv3.WithRequireLeader(ctx), Prefix+"jobs/", clientv3.WithPrefix()) {
				if resp.Err() != nil {
					break
				}
				select {
				case wake <- struct{}{}:
				default:
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return wake
}
