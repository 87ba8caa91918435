package adminapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/dtr-registry/dtr/registry/gc"
	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/meta"
)

// The jobs and crons API, with DTR's names and fields (docs/gc.md): any
// replica accepts a job; the replica that holds the garbage collection
// lease runs it.

// JobRequest is the body of POST /api/v0/jobs; in practice only action
// (and parameters) are sent.
type JobRequest struct {
	Action      string            `json:"action"`
	Parameters  map[string]string `json:"parameters,omitempty"`
	Retries     int               `json:"retries,omitempty"`
	CapacityMap map[string]int    `json:"capacityMap,omitempty"`
	Deadline    string            `json:"deadline,omitempty"`
	StopTimeout string            `json:"stopTimeout,omitempty"`
	ScheduledAt *time.Time        `json:"scheduledAt,omitempty"`
}

// CronRequest is the body of POST /api/v0/crons: it creates or replaces the
// cron of its action.
type CronRequest struct {
	Action      string            `json:"action"`
	Schedule    string            `json:"schedule"`
	Retries     int               `json:"retries,omitempty"`
	CapacityMap map[string]int    `json:"capacityMap,omitempty"`
	Parameters  map[string]string `json:"parameters,omitempty"`
	Deadline    string            `json:"deadline,omitempty"`
	StopTimeout string            `json:"stopTimeout,omitempty"`
}

// maxRetries bounds a job's retries.
const maxRetries = 10

func errNoSuchJob(id string) *Error {
	return errorf(http.StatusNotFound, "NO_SUCH_JOB", "job %s: not found (GET /api/v0/jobs lists them)", id)
}

func errNoSuchCron(action string) *Error {
	return errorf(http.StatusNotFound, "NO_SUCH_CRON", "no cron for action %s (GET /api/v0/crons lists them)", action)
}

// checkJobSpec validates what a job and a cron share.
func checkJobSpec(action string, params map[string]string, retries int, deadline, stopTimeout string) error {
	if !gc.Actions[action] && action != meta.IdentitySyncAction {
		return errorf(http.StatusBadRequest, "INVALID_JOB", "action %q: this registry runs %s and %s", action, gc.ActionNames(), meta.IdentitySyncAction)
	}
	if action == meta.IdentitySyncAction {
		if len(params) > 0 {
			return errorf(http.StatusBadRequest, "INVALID_JOB", "action %s takes no parameters: it reads the identity source the settings name", action)
		}
	} else if action == meta.TagPruningAction {
		if _, _, err := meta.ParsePruningParameters(params); err != nil {
			return errorf(http.StatusBadRequest, "INVALID_JOB", "%v", err)
		}
	} else if _, err := gc.ParseParameters(params); err != nil {
		return errorf(http.StatusBadRequest, "INVALID_JOB", "%v", err)
	}
	if retries < 0 || retries > maxRetries {
		return errorf(http.StatusBadRequest, "INVALID_JOB", "retries %d: give 0 to %d", retries, maxRetries)
	}
	if _, err := gc.ParseDeadline(deadline); err != nil {
		return errorf(http.StatusBadRequest, "INVALID_JOB", "%v", err)
	}
	if stopTimeout != "" {
		if d, err := time.ParseDuration(stopTimeout); err != nil || d < 0 {
			return errorf(http.StatusBadRequest, "INVALID_JOB", "stopTimeout %q: give a duration such as \"30s\"", stopTimeout)
		}
	}
	return nil
}

// jobView shows empty maps as {} rather than null, as DTR does.
func jobView(j meta.Job) meta.Job {
	if j.Parameters == nil {
		j.Parameters = map[string]string{}
	}
	if j.CapacityMap == nil {
		j.CapacityMap = map[string]int{}
	}
	return j
}

func cronView(c meta.Cron) meta.Cron {
	if c.Parameters == nil {
		c.Parameters = map[string]string{}
	}
	if c.CapacityMap == nil {
		c.CapacityMap = map[string]int{}
	}
	return c
}

func (a *API) createJob(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	var req JobRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if err := checkJobSpec(req.Action, req.Parameters, req.Retries, req.Deadline, req.StopTimeout); err != nil {
		return err
	}
	now := time.Now().UTC()
	j := meta.Job{ID: meta.NewJobID(now), Status: meta.JobWaiting, ScheduledAt: now, LastUpdated: now, Action: req.Action,
		RetriesLeft: req.Retries, RetriesTotal: req.Retries, CapacityMap: req.CapacityMap, Parameters: req.Parameters,
		Deadline: req.Deadline, StopTimeout: req.StopTimeout}
	if req.ScheduledAt != nil && req.ScheduledAt.After(now) {
		j.ScheduledAt = req.ScheduledAt.UTC()
	}
	if err := a.cfg.Store.CreateJob(r.Context(), j); err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithFields(map[string]any{"job": j.ID, "action": j.Action, "user": me.Name}).Info("job queued")
	}
	httpjson.Write(w, http.StatusAccepted, jobView(j))
	return nil
}

// queryInt reads a non-negative integer query parameter.
func queryInt(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errorf(http.StatusBadRequest, "INVALID", "query parameter %s=%q: give a whole number, 0 or more", name, v)
	}
	return n, nil
}

func (a *API) listJobs(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	q := r.URL.Query()
	action, worker, running := q.Get("action"), q.Get("worker"), q.Get("running")
	switch running {
	case "", "any", "true", "false":
	default:
		return errorf(http.StatusBadRequest, "INVALID", "running=%q: use any, true or false", running)
	}
	start, err := queryInt(r, "start", 0)
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 10)
	if err != nil {
		return err
	}
	jobs, err := a.cfg.Store.Jobs(r.Context())
	if err != nil {
		return err
	}
	out := []meta.Job{}
	for _, j := range jobs {
		switch {
		case action != "" && action != "any" && j.Action != action:
		case worker != "" && worker != "any" && j.WorkerID != worker:
		case running == "true" && j.Status != meta.JobRunning:
		case running == "false" && j.Status == meta.JobRunning:
		default:
			out = append(out, jobView(j))
		}
	}
	out = out[min(start, len(out)):]
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"jobs": out})
	return nil
}

func (a *API) getJob(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	j, _, err := a.cfg.Store.Job(r.Context(), r.PathValue("id"))
	if errors.Is(err, meta.ErrNotFound) {
		return errNoSuchJob(r.PathValue("id"))
	}
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, jobView(j))
	return nil
}

// cancelJob cancels a waiting job at once and asks the worker of a running
// one to stop (it does between two deletions). It reports whether the job
// had already finished.
func (a *API) cancelJob(r *http.Request, id string) (bool, error) {
	finished := false
	_, err := a.cfg.Store.UpdateJob(r.Context(), id, func(j *meta.Job) error {
		switch {
		case j.Finished():
			finished = true
			return errUnchanged
		case j.Status == meta.JobWaiting:
			j.Status, j.EndTime = meta.JobCanceled, time.Now().UTC()
		default:
			j.CancelRequested = true
		}
		return nil
	})
	switch {
	case errors.Is(err, errUnchanged):
		return finished, nil
	case errors.Is(err, meta.ErrNotFound):
		return false, errNoSuchJob(id)
	}
	return false, err
}

var errUnchanged = errors.New("unchanged")

func (a *API) cancelJobRoute(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	if r.ContentLength > 0 {
		var req struct{}
		if err := decode(r.Body, &req); err != nil {
			return err
		}
	}
	if _, err := a.cancelJob(r, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteJob cancels a job that has not finished (its record stays, to show
// how it ended) and deletes a finished one with its log.
func (a *API) deleteJob(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	id := r.PathValue("id")
	finished, err := a.cancelJob(r, id)
	if err != nil {
		return err
	}
	if finished {
		if err := a.cfg.Store.DeleteJob(r.Context(), id); err != nil {
			return err
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) jobLogs(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	id := r.PathValue("id")
	if s := r.URL.Query().Get("stream"); s != "" && s != "false" {
		return errorf(http.StatusBadRequest, "INVALID", "stream=%q: logs are not streamed; poll with offset (the next lineNum)", s)
	}
	offset, err := queryInt(r, "offset", 0)
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 0)
	if err != nil {
		return err
	}
	if _, _, err := a.cfg.Store.Job(r.Context(), id); errors.Is(err, meta.ErrNotFound) {
		return errNoSuchJob(id)
	} else if err != nil {
		return err
	}
	lines, err := a.cfg.Store.JobLogs(r.Context(), id, offset, limit)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, lines)
	return nil
}

func (a *API) listCrons(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	cs, err := a.cfg.Store.Crons(r.Context())
	if err != nil {
		return err
	}
	out := make([]meta.Cron, len(cs))
	for i, c := range cs {
		out[i] = cronView(c)
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"crons": out})
	return nil
}

func (a *API) putCron(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	var req CronRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if err := checkJobSpec(req.Action, req.Parameters, req.Retries, req.Deadline, req.StopTimeout); err != nil {
		return err
	}
	s, err := gc.ParseSchedule(req.Schedule)
	if err != nil {
		return errorf(http.StatusBadRequest, "INVALID_JOB", "%v", err)
	}
	next := s.Next(time.Now())
	if next.IsZero() {
		return errorf(http.StatusBadRequest, "INVALID_JOB", "schedule %q never matches in the next five years", req.Schedule)
	}
	c, err := a.cfg.Store.PutCron(r.Context(), meta.Cron{Action: req.Action, Schedule: req.Schedule, Retries: req.Retries,
		CapacityMap: req.CapacityMap, Parameters: req.Parameters, Deadline: req.Deadline, StopTimeout: req.StopTimeout, NextRun: next})
	if err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithFields(map[string]any{"action": c.Action, "schedule": c.Schedule, "next": c.NextRun, "user": me.Name}).Info("cron set")
	}
	httpjson.Write(w, http.StatusAccepted, cronView(c))
	return nil
}

func (a *API) getCron(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	c, _, err := a.cfg.Store.CronRecord(r.Context(), r.PathValue("action"))
	if errors.Is(err, meta.ErrNotFound) {
		return errNoSuchCron(r.PathValue("action"))
	}
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, cronView(c))
	return nil
}

func (a *API) deleteCron(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	err := a.cfg.Store.DeleteCron(r.Context(), r.PathValue("action"))
	if errors.Is(err, meta.ErrNotFound) {
		return errNoSuchCron(r.PathValue("action"))
	}
	if err != nil {
		return fmt.Errorf("deleting cron %s: %w", r.PathValue("action"), err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
