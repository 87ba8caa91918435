package registry_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// pruneTags lists a repository's tags through the registry API, sorted.
func pruneTags(t *testing.T, r *registrytest.Replica, tok, repo string) []string {
	t.Helper()
	st, _, body := r.Do(t, "GET", "/v2/"+repo+"/tags/list", tok, nil, nil)
	if st != http.StatusOK {
		t.Fatalf("GET tags of %s: %d %s", repo, st, body)
	}
	var out struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out.Tags)
	return out.Tags
}

// pruneJobs lists the tag_pruning jobs, newest first.
func pruneJobs(t *testing.T, r *registrytest.Replica) []meta.Job {
	t.Helper()
	var out struct {
		Jobs []meta.Job `json:"jobs"`
	}
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/jobs?action=tag_pruning&limit=0", nil, &out); st != http.StatusOK {
		t.Fatalf("GET jobs: %d", st)
	}
	return out.Jobs
}

// waitPruneJobs waits until n tag_pruning jobs exist and all have finished,
// and returns their logs' lines.
func waitPruneJobs(t *testing.T, r *registrytest.Replica, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		js := pruneJobs(t, r)
		done := len(js) >= n
		for _, j := range js {
			done = done && j.Finished()
		}
		if done {
			var lines []string
			for _, j := range js {
				if j.Status != meta.JobDone {
					t.Fatalf("job %s: %s (%s)", j.ID, j.Status, j.Error)
				}
				var ls []meta.JobLogLine
				if st := r.API(t, admin, adminPW, "GET", "/api/v0/jobs/"+j.ID+"/logs", nil, &ls); st != http.StatusOK {
					t.Fatalf("GET job log: %d", st)
				}
				for _, l := range ls {
					lines = append(lines, l.Data)
				}
			}
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("tag pruning jobs not finished after 30 s: %+v", js)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTagPruningPolicies drives pruning through the API: a policy's dry
// run lists exactly the tags its first evaluation then deletes (each named
// with its digest in the job's log), a tag limit keeps the newest tags and
// never the one just pushed, and only repository and system admins manage
// policies.
func TestTagPruningPolicies(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	const repo = "acme/app"
	tok := r.Token(t, admin, adminPW, "repository:"+repo+":push,pull")
	root := filepath.Join(r.Opts.DataDir, "registry")
	ages := map[string]time.Duration{"v1": 72 * time.Hour, "v2": 50 * time.Hour, "dev-1": 48 * time.Hour, "dev-2": 30 * time.Hour, "dev-3": time.Hour, "latest": 0}
	digests := map[string]string{}
	for _, tag := range []string{"v1", "v2", "dev-1", "dev-2", "dev-3", "latest"} {
		img, st := r.PushImage(t, tok, repo, tag, []byte("layer of "+tag))
		if st != http.StatusCreated {
			t.Fatalf("pushing %s: %d", tag, st)
		}
		digests[tag] = img.ManifestDigest
	}
	// Age the tags: a tag's age is its current link's modification time.
	for tag, age := range ages {
		link := filepath.Join(root, "docker/registry/v2/repositories", repo, "_manifests/tags", tag, "current/link")
		at := time.Now().Add(-age)
		if err := os.Chtimes(link, at, at); err != nil {
			t.Fatal(err)
		}
	}
	base := "/api/v0/repositories/" + repo + "/pruningPolicies"
	policy := map[string]any{"enabled": true, "rules": []map[string]any{
		{"field": "tag", "operator": "sw", "values": []string{"dev-"}},
		{"field": "updated_at_duration", "operator": "bf", "values": []string{"24h"}},
	}}

	// Permissions: alice may push (read-write), bob read; neither
	// administers the repository. carol cannot see it.
	var apiErr struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	for _, c := range []struct {
		user, method, path string
		want               int
	}{
		{"alice", "POST", base, http.StatusForbidden},
		{"alice", "POST", base + "/test", http.StatusForbidden},
		{"alice", "GET", base, http.StatusForbidden},
		{"bob", "GET", base, http.StatusForbidden},
		{"carol", "GET", base, http.StatusNotFound},
	} {
		if st := r.API(t, c.user, c.user+"-password", c.method, c.path, policy, nil); st != c.want {
			t.Errorf("%s %s %s: %d, want %d", c.user, c.method, c.path, st, c.want)
		}
	}
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/repositories/acme/nothere/pruningPolicies", nil, &apiErr); st != http.StatusNotFound || len(apiErr.Errors) == 0 || apiErr.Errors[0].Code != "NO_SUCH_REPOSITORY" {
		t.Errorf("policies of a missing repository: %d %+v", st, apiErr)
	}
	scan := map[string]any{"enabled": true, "rules": []map[string]any{{"field": "vulnerability_critical", "operator": "gte", "values": []string{"1"}}}}
	if st := r.API(t, admin, adminPW, "POST", base, scan, &apiErr); st != http.StatusBadRequest || apiErr.Errors[0].Code != "INVALID_PRUNING_POLICY" || !strings.Contains(apiErr.Errors[0].Message, "scanning") {
		t.Errorf("a vulnerability rule: %d %+v", st, apiErr)
	}

	// The dry run, then the policy with its initial evaluation.
	var thin []struct{ Name, Digest string }
	if st := r.API(t, admin, adminPW, "POST", base+"/test", policy, &thin); st != http.StatusOK {
		t.Fatalf("dry run: %d", st)
	}
	want := []struct{ Name, Digest string }{{"dev-1", digests["dev-1"]}, {"dev-2", digests["dev-2"]}}
	if !slices.Equal(thin, want) {
		t.Fatalf("dry run: %+v, want %+v", thin, want)
	}
	if got := pruneTags(t, r, tok, repo); len(got) != 6 {
		t.Fatalf("the dry run deleted tags: %v", got)
	}
	var p meta.PruningPolicy
	if st := r.API(t, admin, adminPW, "POST", base+"?initialEvaluation=true", policy, &p); st != http.StatusCreated || p.ID == "" || p.Repository != repo || !p.Enabled || len(p.Rules) != 2 {
		t.Fatalf("creating the policy: %d %+v", st, p)
	}
	lines := waitPruneJobs(t, r, 1)
	for _, tag := range []string{"dev-1", "dev-2"} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "pruned "+repo+":"+tag+" ("+digests[tag]+")") }) {
			t.Errorf("the job's log does not name %s and its digest:\n%s", tag, strings.Join(lines, "\n"))
		}
	}
	if got, want := pruneTags(t, r, tok, repo), []string{"dev-3", "latest", "v1", "v2"}; !slices.Equal(got, want) {
		t.Fatalf("tags after pruning: %v, want %v", got, want)
	}
	// Only the tag went: its manifest still pulls by digest.
	if st, _, _ := r.Do(t, "GET", "/v2/"+repo+"/manifests/"+digests["dev-1"], tok, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}); st != http.StatusOK {
		t.Errorf("the pruned tag's manifest by digest: %d", st)
	}
	var got meta.PruningPolicy
	if st := r.API(t, admin, adminPW, "GET", base+"/"+p.ID, nil, &got); st != http.StatusOK || got.LastPrunedAt.IsZero() {
		t.Errorf("GET the policy after it pruned: %d %+v", st, got)
	}
	var list []meta.PruningPolicy
	if st := r.API(t, admin, adminPW, "GET", base, nil, &list); st != http.StatusOK || len(list) != 1 || list[0].ID != p.ID {
		t.Errorf("listing policies: %d %+v", st, list)
	}
	var cron meta.Cron
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/crons/tag_pruning", nil, &cron); st != http.StatusOK || cron.Schedule != "*/15 * * * *" {
		t.Errorf("the tag pruning cron: %d %+v", st, cron)
	}
	// Disabled through PUT, then deleted.
	if st := r.API(t, admin, adminPW, "PUT", base+"/"+p.ID+"?initialEvaluation=false", map[string]any{"enabled": false}, &got); st != http.StatusOK || got.Enabled || len(got.Rules) != 2 {
		t.Errorf("disabling the policy: %d %+v", st, got)
	}
	if st := r.API(t, admin, adminPW, "DELETE", base+"/"+p.ID, nil, nil); st != http.StatusNoContent {
		t.Errorf("deleting the policy: %d", st)
	}
	if st := r.API(t, admin, adminPW, "GET", base+"/"+p.ID, nil, nil); st != http.StatusNotFound {
		t.Errorf("GET a deleted policy: %d", st)
	}

	// A tag limit: refused while tags are immutable, as DTR's.
	repoPath := "/api/v0/repositories/" + repo
	if st := r.API(t, admin, adminPW, "PATCH", repoPath, map[string]any{"immutableTags": true}, nil); st != http.StatusOK {
		t.Fatalf("PATCH immutableTags: %d", st)
	}
	if st := r.API(t, admin, adminPW, "PATCH", repoPath, map[string]any{"tagLimit": 2}, nil); st != http.StatusBadRequest {
		t.Errorf("tagLimit with immutable tags: %d, want 400", st)
	}
	if st := r.API(t, "alice", "alice-password", "PATCH", repoPath, map[string]any{"tagLimit": 2}, nil); st != http.StatusForbidden {
		t.Errorf("tagLimit by a non-admin: %d, want 403", st)
	}
	var rec meta.Repository
	if st := r.API(t, admin, adminPW, "PATCH", repoPath, map[string]any{"immutableTags": false, "tagLimit": 2}, &rec); st != http.StatusOK || rec.TagLimit != 2 {
		t.Fatalf("PATCH tagLimit: %d %+v", st, rec)
	}
	// A push beyond the limit queues pruning: the pushed tag and the
	// newest other tag stay.
	if _, st := r.PushImage(t, tok, repo, "new", []byte("layer of new")); st != http.StatusCreated {
		t.Fatalf("pushing new: %d", st)
	}
	lines = waitPruneJobs(t, r, 2)
	if got, want := pruneTags(t, r, tok, repo), []string{"latest", "new"}; !slices.Equal(got, want) {
		t.Fatalf("tags after a push beyond tagLimit 2: %v, want %v; log:\n%s", got, want, strings.Join(lines, "\n"))
	}
	for _, tag := range []string{"v1", "v2", "dev-3"} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "pruned "+repo+":"+tag+" ("+digests[tag]+")") }) {
			t.Errorf("the job's log does not name %s:\n%s", tag, strings.Join(lines, "\n"))
		}
	}

	// A nested repository's policies by its plain path.
	nested := "acme/charts/hello"
	ntok := r.Token(t, admin, adminPW, "repository:"+nested+":push,pull")
	if _, st := r.PushImage(t, ntok, nested, "v1", []byte("nested")); st != http.StatusCreated {
		t.Fatalf("pushing %s: %d", nested, st)
	}
	var np meta.PruningPolicy
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/repositories/"+nested+"/pruningPolicies", policy, &np); st != http.StatusCreated || np.Repository != nested {
		t.Fatalf("policy of a nested repository: %d %+v", st, np)
	}
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/repositories/acme/charts%2Fhello/pruningPolicies/"+np.ID, nil, &got); st != http.StatusOK || got.ID != np.ID {
		t.Errorf("the nested policy by the escaped name: %d %+v", st, got)
	}
}
