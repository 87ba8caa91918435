package adminapi_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestJobsAPI: the jobs and crons endpoints with DTR's names: system
// administrators only, strict JSON, errors that name the fix, and a cron
// that the leader turns into a job once it is due.
func TestJobsAPI(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	raw := func(user, pw, method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, r.URL+path, strings.NewReader(body))
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := r.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	for _, tc := range []struct {
		user, pw, method, path, body string
		status                       int
		code                         string
	}{
		{"", "", "POST", "/api/v0/jobs", `{"action":"onlinegc"}`, 401, ""},
		{"", "", "GET", "/api/v0/jobs", "", 401, ""},
		{"alice", "alice-password", "POST", "/api/v0/jobs", `{"action":"onlinegc"}`, 403, "FORBIDDEN"},
		{"alice", "alice-password", "GET", "/api/v0/crons", "", 403, "FORBIDDEN"},
		{admin, adminPW, "POST", "/api/v0/jobs", `{"action":"onlinegc","Action":"gc"}`, 400, "INVALID_JSON"},
		{admin, adminPW, "POST", "/api/v0/jobs", `{"action":"onlinegc"}}`, 400, "INVALID_JSON"},
		{admin, adminPW, "POST", "/api/v0/jobs", `{"action":"scan_check"}`, 400, "INVALID_JOB"},
		{admin, adminPW, "POST", "/api/v0/jobs", `{"action":"onlinegc","parameters":{"gracePeriod":"soon"}}`, 400, "INVALID_JOB"},
		{admin, adminPW, "POST", "/api/v0/jobs", `{"action":"onlinegc","deadline":"forever"}`, 400, "INVALID_JOB"},
		{admin, adminPW, "GET", "/api/v0/jobs/nope", "", 404, "NO_SUCH_JOB"},
		{admin, adminPW, "POST", "/api/v0/jobs/nope/cancel", "", 404, "NO_SUCH_JOB"},
		{admin, adminPW, "GET", "/api/v0/jobs/nope/logs", "", 404, "NO_SUCH_JOB"},
		{admin, adminPW, "GET", "/api/v0/jobs?running=maybe", "", 400, "INVALID"},
		{admin, adminPW, "POST", "/api/v0/crons", `{"action":"onlinegc","schedule":"0 0 1 * *  * *"}`, 400, "INVALID_JOB"},
		{admin, adminPW, "POST", "/api/v0/crons", `{"action":"onlinegc","schedule":"0 0 30 2 *"}`, 400, "INVALID_JOB"},
		{admin, adminPW, "GET", "/api/v0/crons/onlinegc", "", 404, "NO_SUCH_CRON"},
		{admin, adminPW, "DELETE", "/api/v0/crons/onlinegc", "", 404, "NO_SUCH_CRON"},
	} {
		st, body := raw(tc.user, tc.pw, tc.method, tc.path, tc.body)
		if st != tc.status || !strings.Contains(body, `"code":"`+tc.code) {
			t.Errorf("%s %s %s as %q: %d %s, want %d %s", tc.method, tc.path, tc.body, tc.user, st, body, tc.status, tc.code)
		}
	}

	// DTR's schedule and time budget, as its UI writes them.
	var c meta.Cron
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/crons", map[string]any{"action": "onlinegc", "schedule": "0 0 1 * * 0", "retries": 0, "deadline": "30m", "stopTimeout": "30s"}, &c); st != 202 ||
		c.ID == "" || c.Deadline != "30m" || c.NextRun.Weekday() != time.Sunday || c.NextRun.Hour() != 1 || !c.NextRun.After(time.Now()) {
		t.Fatalf("POST /api/v0/crons: %d %+v", st, c)
	}
	var list struct{ Crons []meta.Cron }
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/crons", nil, &list); st != 200 || len(list.Crons) != 1 || list.Crons[0].Schedule != "0 0 1 * * 0" {
		t.Fatalf("GET /api/v0/crons: %d %+v", st, list)
	}
	// Every second: the leader spawns a job from it within its poll.
	var again meta.Cron
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/crons", map[string]any{"action": "onlinegc", "schedule": "* * * * * *", "parameters": map[string]string{"dryRun": "true"}}, &again); st != 202 || again.ID != c.ID {
		t.Fatalf("replacing the cron: %d %+v (id %s, want %s kept)", st, again, again.ID, c.ID)
	}
	deadline := time.Now().Add(15 * time.Second)
	var spawned meta.Job
	for spawned.ID == "" && time.Now().Before(deadline) {
		var jobs struct{ Jobs []meta.Job }
		r.API(t, admin, adminPW, "GET", "/api/v0/jobs?action=onlinegc", nil, &jobs)
		for _, j := range jobs.Jobs {
			if j.Cron == "onlinegc" {
				spawned = j
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if spawned.ID == "" || spawned.Parameters["dryRun"] != "true" {
		t.Fatalf("no job spawned by the cron within 15 s: %+v", spawned)
	}
	if st := r.API(t, admin, adminPW, "DELETE", "/api/v0/crons/onlinegc", nil, nil); st != 204 {
		t.Fatalf("DELETE /api/v0/crons/onlinegc: %d", st)
	}
	// A time budget: the run stops when it is spent, as done.
	var short meta.Job
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/jobs", map[string]any{"action": "onlinegc", "deadline": "1ns"}, &short); st != 202 {
		t.Fatalf("POST a job with a deadline: %d", st)
	}
	for deadline := time.Now().Add(15 * time.Second); !short.Finished() && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		r.API(t, admin, adminPW, "GET", "/api/v0/jobs/"+short.ID, nil, &short)
	}
	if short.Status != meta.JobDone || !strings.Contains(string(short.Progress), `"stoppedAtDeadline":true`) || short.StartTime.IsZero() || short.EndTime.IsZero() {
		t.Errorf("a job past its deadline: %s %s", short.Status, short.Progress)
	}
	// A waiting job is cancelled at once.
	var j meta.Job
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/jobs", map[string]any{"action": "gc", "scheduledAt": time.Now().Add(time.Hour)}, &j); st != 202 || j.Status != meta.JobWaiting {
		t.Fatalf("POST a job for later: %d %+v", st, j)
	}
	if st := r.API(t, admin, adminPW, "DELETE", "/api/v0/jobs/"+j.ID, nil, nil); st != 204 {
		t.Fatalf("DELETE a waiting job: %d", st)
	}
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/jobs/"+j.ID, nil, &j); st != 200 || j.Status != meta.JobCanceled {
		t.Fatalf("the cancelled job: %d %s", st, j.Status)
	}
}
