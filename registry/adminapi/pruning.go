package adminapi

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/dtr-registry/dtr/registry/gc"
	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/meta"
)

// Tag pruning policies, with DTR's paths, names and fields (docs/gc.md, "Tag
// pruning"): repository admins and system admins manage a repository's
// policies; a tag_pruning job applies them.

// PruningPolicyRequest is the body of POST …/pruningPolicies, POST
// …/pruningPolicies/test and PUT …/pruningPolicies/{id}; on PUT both fields
// are optional.
type PruningPolicyRequest struct {
	Enabled *bool              `json:"enabled,omitempty"`
	Rules   []meta.PruningRule `json:"rules,omitempty"`
}

// ThinTag is a tag a dry run would prune.
type ThinTag struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
}

func invalidPolicy(err error) *Error {
	return errorf(http.StatusBadRequest, "INVALID_PRUNING_POLICY", "%v", err)
}

func errNoSuchPolicy(repo, id string) *Error {
	return errorf(http.StatusNotFound, "NO_SUCH_PRUNING_POLICY", "repository %s has no pruning policy %s (GET …/pruningPolicies lists them)", repo, id)
}

// pruningRepo checks the caller administers the repository of the request
// (repository admins and system admins do) and returns its record.
func (a *API) pruningRepo(r *http.Request, me *meta.Account) (meta.Repository, error) {
	ns, repo := r.PathValue("ns"), r.PathValue("repo")
	rec, err := a.repoAccess(r.Context(), me, ns, repo, meta.Admin)
	if errors.Is(err, meta.ErrNotFound) {
		return rec, errorf(http.StatusNotFound, "NO_SUCH_REPOSITORY", "repository %s/%s: not found", ns, repo)
	}
	var ae *Error
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return rec, errorf(http.StatusNotFound, "NO_SUCH_REPOSITORY", "%s", ae.Message)
	}
	return rec, err
}

// initialEvaluation reads ?initialEvaluation: true prunes the repository's
// existing tags now (a tag_pruning job); false (the default, as DTR's)
// leaves them to the next push and the next scheduled run.
func initialEvaluation(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("initialEvaluation")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errorf(http.StatusBadRequest, "INVALID", "initialEvaluation=%q: use true or false", v)
	}
	return b, nil
}

// queuePruning queues a tag_pruning job for one repository.
func (a *API) queuePruning(r *http.Request, me *meta.Account, repo string) error {
	j := meta.NewPruningJob(repo, nil, time.Now())
	if err := a.cfg.Store.CreateJob(r.Context(), j); err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithFields(map[string]any{"job": j.ID, "repository": repo, "user": me.Name}).Info("tag pruning queued")
	}
	return nil
}

// ensurePruningCron creates the tag_pruning cron (every 15 minutes, run by
// the metadata leader) when a policy or a tag limit first needs it; a cron
// an administrator set is left as it is. A failure is logged, not
// returned: the change it follows is made, and pushes still apply it.
func (a *API) ensurePruningCron(r *http.Request) {
	s, err := gc.ParseSchedule(gc.PruningSchedule)
	ok := false
	if err == nil {
		ok, err = a.cfg.Store.CreateCronIfAbsent(r.Context(), meta.Cron{Action: meta.TagPruningAction, Schedule: gc.PruningSchedule, NextRun: s.Next(time.Now())})
	}
	if a.cfg.Log == nil {
		return
	}
	if err != nil {
		a.cfg.Log.WithError(err).Warn("creating the tag pruning cron; create it with POST /api/v0/crons {\"action\":\"tag_pruning\",\"schedule\":\"*/15 * * * *\"}")
	} else if ok {
		a.cfg.Log.WithField("schedule", gc.PruningSchedule).Info("tag pruning cron created")
	}
}

// page applies pageStart (the ID or name to start at) and pageSize (0: all)
// to a list, and sets X-Resource-Count when count=true.
func page[T any](w http.ResponseWriter, r *http.Request, items []T, keyOf func(T) string) ([]T, error) {
	size, err := queryInt(r, "pageSize", 0)
	if err != nil {
		return nil, err
	}
	if c := r.URL.Query().Get("count"); c != "" {
		b, err := strconv.ParseBool(c)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "INVALID", "count=%q: use true or false", c)
		}
		if b {
			w.Header().Set("X-Resource-Count", strconv.Itoa(len(items)))
		}
	}
	if start := r.URL.Query().Get("pageStart"); start != "" {
		i := 0
		for i < len(items) && keyOf(items[i]) != start {
			i++
		}
		items = items[i:]
	}
	if size > 0 && len(items) > size {
		items = items[:size]
	}
	return items, nil
}

func policyID(p meta.PruningPolicy) string { return p.ID }

func policyView(p meta.PruningPolicy) meta.PruningPolicy {
	if p.Rules == nil {
		p.Rules = []meta.PruningRule{}
	}
	for i := range p.Rules {
		if p.Rules[i].Values == nil {
			p.Rules[i].Values = []string{}
		}
	}
	return p
}

func (a *API) listPruningPolicies(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	rec, err := a.pruningRepo(r, me)
	if err != nil {
		return err
	}
	ps, err := a.cfg.Store.PruningPolicies(r.Context(), rec.Namespace, rec.Name)
	if err != nil {
		return err
	}
	if ps, err = page(w, r, ps, policyID); err != nil {
		return err
	}
	out := make([]meta.PruningPolicy, len(ps))
	for i, p := range ps {
		out[i] = policyView(p)
	}
	httpjson.Write(w, http.StatusOK, out)
	return nil
}

func (a *API) createPruningPolicy(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	evaluate, err := initialEvaluation(r)
	if err != nil {
		return err
	}
	var req PruningPolicyRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if err := meta.ValidatePruningRules(req.Rules); err != nil {
		return invalidPolicy(err)
	}
	rec, err := a.pruningRepo(r, me)
	if err != nil {
		return err
	}
	p, err := a.cfg.Store.CreatePruningPolicy(r.Context(), rec.Namespace, rec.Name, meta.PruningPolicy{Enabled: req.Enabled != nil && *req.Enabled, Rules: req.Rules})
	if errors.Is(err, meta.ErrInvalid) {
		return invalidPolicy(err)
	}
	if err != nil {
		return err
	}
	return a.policySaved(w, r, me, p, "created", http.StatusCreated, evaluate)
}

// testPruningPolicy is the dry run of a policy that is not saved: the tags
// it alone would prune now (the repository's other policies and tag limit
// aside), oldest first.
func (a *API) testPruningPolicy(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	var req PruningPolicyRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if err := meta.ValidatePruningRules(req.Rules); err != nil {
		return invalidPolicy(err)
	}
	rec, err := a.pruningRepo(r, me)
	if err != nil {
		return err
	}
	if a.cfg.ListTags == nil {
		return errorf(http.StatusServiceUnavailable, "STORAGE_UNAVAILABLE", "this replica has no registry storage configured; set it up and try again")
	}
	tags, err := a.cfg.ListTags(r.Context(), rec.FullName())
	if err != nil {
		if a.cfg.Log != nil {
			a.cfg.Log.WithError(err).Errorf("listing the tags of %s for a pruning dry run", rec.FullName())
		}
		return errorf(http.StatusServiceUnavailable, "STORAGE_UNAVAILABLE", "listing the tags of %s failed (%v); check /_ping and the storage settings, then try again", rec.FullName(), err)
	}
	sel, err := meta.SelectPrunable([]meta.PruningPolicy{{ID: "test", Enabled: true, Rules: req.Rules}}, 0, tags, nil, time.Now())
	if err != nil {
		return invalidPolicy(err)
	}
	out := make([]ThinTag, len(sel))
	for i, t := range sel {
		out[i] = ThinTag{Name: t.Name, Digest: t.Digest}
	}
	if out, err = page(w, r, out, func(t ThinTag) string { return t.Name }); err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, out)
	return nil
}

func (a *API) getPruningPolicy(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	rec, err := a.pruningRepo(r, me)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	p, err := a.cfg.Store.PruningPolicy(r.Context(), rec.Namespace, rec.Name, id)
	if errors.Is(err, meta.ErrNotFound) {
		return errNoSuchPolicy(rec.FullName(), id)
	}
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, policyView(p))
	return nil
}

func (a *API) putPruningPolicy(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	evaluate, err := initialEvaluation(r)
	if err != nil {
		return err
	}
	var req PruningPolicyRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if req.Rules != nil {
		if err := meta.ValidatePruningRules(req.Rules); err != nil {
			return invalidPolicy(err)
		}
	}
	rec, err := a.pruningRepo(r, me)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	p, err := a.cfg.Store.UpdatePruningPolicy(r.Context(), rec.Namespace, rec.Name, id, func(p *meta.PruningPolicy) error {
		if req.Enabled != nil {
			p.Enabled = *req.Enabled
		}
		if req.Rules != nil {
			p.Rules = req.Rules
		}
		return nil
	})
	switch {
	case errors.Is(err, meta.ErrNotFound):
		return errNoSuchPolicy(rec.FullName(), id)
	case errors.Is(err, meta.ErrInvalid):
		return invalidPolicy(err)
	case err != nil:
		return err
	}
	return a.policySaved(w, r, me, p, "changed", http.StatusOK, evaluate)
}

// policySaved finishes a create or change of a policy: the log line, the
// scheduled runs, the evaluation asked for, and the answer.
func (a *API) policySaved(w http.ResponseWriter, r *http.Request, me *meta.Account, p meta.PruningPolicy, what string, status int, evaluate bool) error {
	if a.cfg.Log != nil {
		a.cfg.Log.WithFields(map[string]any{"repository": p.Repository, "policy": p.ID, "user": me.Name}).Info("pruning policy " + what)
	}
	a.ensurePruningCron(r)
	if evaluate && p.Enabled {
		if err := a.queuePruning(r, me, p.Repository); err != nil {
			return err
		}
	}
	httpjson.Write(w, status, policyView(p))
	return nil
}

func (a *API) deletePruningPolicy(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	rec, err := a.pruningRepo(r, me)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	err = a.cfg.Store.DeletePruningPolicy(r.Context(), rec.Namespace, rec.Name, id)
	if errors.Is(err, meta.ErrNotFound) {
		return errNoSuchPolicy(rec.FullName(), id)
	}
	if err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithFields(map[string]any{"repository": rec.FullName(), "policy": id, "user": me.Name}).Info("pruning policy deleted")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// nestedPruningRoute picks the pruning handler for a nested repository name
// written as plain segments; sub is what follows …/pruningPolicies.
func (a *API) nestedPruningRoute(r *http.Request, sub []string) func(http.ResponseWriter, *http.Request, *meta.Account) error {
	switch {
	case len(sub) == 0 && r.Method == http.MethodGet:
		return a.listPruningPolicies
	case len(sub) == 0 && r.Method == http.MethodPost:
		return a.createPruningPolicy
	case len(sub) == 1 && sub[0] == "test" && r.Method == http.MethodPost:
		return a.testPruningPolicy
	case len(sub) == 1 && sub[0] != "":
		r.SetPathValue("id", sub[0])
		switch r.Method {
		case http.MethodGet:
			return a.getPruningPolicy
		case http.MethodPut:
			return a.putPruningPolicy
		case http.MethodDelete:
			return a.deletePruningPolicy
		}
	}
	return nil
}
