package adminapi

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/internal/reqinfo"
	"github.com/dtr-registry/dtr/registry/meta"
)

// nestedRepository serves the repository routes for a nested name written
// as plain segments: /api/v0/repositories/{ns}/{a/b…}[/teamAccess[/{team}]
// |/userAccess[/{user}]|/pruningPolicies[/test|/{id}]]. Repository names
// are lowercase, so the first teamAccess, userAccess or pruningPolicies
// segment ends the name; the routes with {repo} take a name escaped as one
// segment, and every two-level name.
func (a *API) nestedRepository(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	type handler = func(http.ResponseWriter, *http.Request, *meta.Account) error
	segs := strings.Split(r.PathValue("path"), "/")
	i := slices.IndexFunc(segs, func(s string) bool { return s == "teamAccess" || s == "userAccess" || s == "pruningPolicies" })
	if i < 0 {
		i = len(segs)
	}
	name, sub := segs[:i], segs[i:]
	r.SetPathValue("repo", strings.Join(name, "/"))
	var fn handler
	switch {
	case len(name) == 0:
	case len(sub) > 0 && sub[0] == "pruningPolicies":
		fn = a.nestedPruningRoute(r, sub[1:])
	case len(sub) == 0:
		fn = map[string]handler{"GET": a.getRepository, "PATCH": a.patchRepository, "DELETE": a.deleteRepository}[r.Method]
	case len(sub) == 1 && r.Method == http.MethodGet:
		fn = map[string]handler{"teamAccess": a.listTeamAccess, "userAccess": a.listUserAccess}[sub[0]]
	case len(sub) == 2 && sub[1] != "":
		r.SetPathValue("team", sub[1])
		r.SetPathValue("user", sub[1])
		fn = map[string]handler{
			"PUT teamAccess": a.putTeamAccess, "DELETE teamAccess": a.deleteTeamAccess,
			"PUT userAccess": a.putUserAccess, "DELETE userAccess": a.deleteUserAccess,
		}[r.Method+" "+sub[0]]
	}
	if fn == nil {
		return errorf(http.StatusNotFound, "NOT_FOUND", "no such API endpoint: %s %s", r.Method, r.URL.Path)
	}
	return fn(w, r, me)
}

// repoAccess returns the caller's access to a repository and fails with 404
// for a repository the caller may not even see, so names do not leak.
func (a *API) repoAccess(ctx context.Context, me *meta.Account, ns, repo string, need meta.Level) (meta.Repository, error) {
	rec, err := a.cfg.Store.Repository(ctx, ns, repo)
	if err != nil {
		return rec, err
	}
	acc, err := a.cfg.Store.AccessFor(ctx, me, ns, repo)
	if err != nil {
		return rec, err
	}
	if acc.Level < meta.Read {
		return rec, errorf(http.StatusNotFound, "NOT_FOUND", "repository %s/%s: not found", ns, repo)
	}
	if acc.Level < need {
		return rec, errorf(http.StatusForbidden, "FORBIDDEN", "repository %s/%s needs %s access; you have %s", ns, repo, need, acc.Level)
	}
	return rec, nil
}

func (a *API) visible(ctx context.Context, me *meta.Account, rs []meta.Repository) ([]meta.Repository, error) {
	out := make([]meta.Repository, 0, len(rs))
	for _, r := range rs {
		acc, err := a.cfg.Store.AccessFor(ctx, me, r.Namespace, r.Name)
		if err != nil {
			return nil, err
		}
		if acc.Level >= meta.Read {
			out = append(out, r)
		}
	}
	return out, nil
}

func (a *API) listAllRepositories(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	rs, err := a.cfg.Store.Repositories(r.Context(), "")
	if err != nil {
		return err
	}
	if rs, err = a.visible(r.Context(), me, rs); err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"repositories": rs})
	return nil
}

func (a *API) listRepositories(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if _, err := a.cfg.Store.Account(r.Context(), r.PathValue("ns")); err != nil {
		return err
	}
	rs, err := a.cfg.Store.Repositories(r.Context(), r.PathValue("ns"))
	if err != nil {
		return err
	}
	if rs, err = a.visible(r.Context(), me, rs); err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"repositories": rs})
	return nil
}

// CreateRepositoryRequest is the body of POST /api/v0/repositories/{ns}.
type CreateRepositoryRequest struct {
	Name             string `json:"name"`
	Visibility       string `json:"visibility,omitempty"`
	ShortDescription string `json:"shortDescription,omitempty"`
	ImmutableTags    bool   `json:"immutableTags"`
	TagLimit         int    `json:"tagLimit,omitempty"`
}

func (a *API) createRepository(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns := r.PathValue("ns")
	var req CreateRepositoryRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if _, _, err := meta.SplitRepository(ns + "/" + req.Name); err != nil {
		return err
	}
	acc, err := a.cfg.Store.AccessFor(r.Context(), me, ns, req.Name)
	if err != nil {
		return err
	}
	// A repository the caller cannot see answers as one that does not
	// exist: 409 would tell them the private name. Whoever may create in a
	// namespace sees every repository in it (meta.AccessFor), so a hidden
	// one always ends in the 403 below.
	if acc.Exists && acc.Level >= meta.Read {
		return errorf(http.StatusConflict, "ALREADY_EXISTS", "repository %s/%s already exists", ns, req.Name)
	}
	if acc.Exists || !acc.CanCreate {
		return errorf(http.StatusForbidden, "FORBIDDEN", "you may not create repositories in namespace %s", ns)
	}
	rec, err := a.cfg.Store.CreateRepository(r.Context(), meta.Repository{
		Namespace: ns, Name: req.Name, Visibility: req.Visibility, Description: req.ShortDescription,
		ImmutableTags: req.ImmutableTags, TagLimit: req.TagLimit, CreatedBy: me.Name,
	})
	if err != nil {
		return err
	}
	reqinfo.AddNote(r.Context(), meta.WebhookRepoCreated, ns+"/"+req.Name) // webhooks
	if rec.TagLimit > 0 {
		a.ensurePruningCron(r)
	}
	httpjson.Write(w, http.StatusCreated, rec)
	return nil
}

func (a *API) getRepository(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	rec, err := a.repoAccess(r.Context(), me, r.PathValue("ns"), r.PathValue("repo"), meta.Read)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, rec)
	return nil
}

// PatchRepositoryRequest is the body of PATCH …/repositories/{ns}/{repo}.
type PatchRepositoryRequest struct {
	Visibility       *string `json:"visibility,omitempty"`
	ShortDescription *string `json:"shortDescription,omitempty"`
	ImmutableTags    *bool   `json:"immutableTags,omitempty"`
	TagLimit         *int    `json:"tagLimit,omitempty"`
}

func (a *API) patchRepository(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns, repo := r.PathValue("ns"), r.PathValue("repo")
	var req PatchRepositoryRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if _, err := a.repoAccess(r.Context(), me, ns, repo, meta.Admin); err != nil {
		return err
	}
	rec, err := a.cfg.Store.UpdateRepository(r.Context(), ns, repo, func(rec *meta.Repository) error {
		if req.Visibility != nil {
			rec.Visibility = *req.Visibility
		}
		if req.ShortDescription != nil {
			rec.Description = *req.ShortDescription
		}
		if req.ImmutableTags != nil {
			rec.ImmutableTags = *req.ImmutableTags
		}
		if req.TagLimit != nil {
			rec.TagLimit = *req.TagLimit
		}
		return nil
	})
	if err != nil {
		return err
	}
	if rec.TagLimit > 0 {
		a.ensurePruningCron(r)
	}
	httpjson.Write(w, http.StatusOK, rec)
	return nil
}

// deleteRepository removes a repository's content from storage, then its
// record, then its content again. Content goes first so that no moment
// exists in which the name is free while the old images are reachable: a
// crash or a storage error between the two leaves the record (the name
// stays taken, the request can be repeated) and never a free name over old
// tags. The second pass removes what a push that raced the deletion (with a
// token issued before it) wrote between the two; a push after it recreates
// the repository as its pusher's, which the pusher's token allowed anyway.
// Blob data shared with other repositories stays for garbage collection;
// without the repository's layer links it can no longer be pulled through
// this name.
func (a *API) deleteRepository(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns, repo := r.PathValue("ns"), r.PathValue("repo")
	if _, err := a.repoAccess(r.Context(), me, ns, repo, meta.Admin); err != nil {
		return err
	}
	full := ns + "/" + repo
	if a.cfg.DeleteRepositoryContent != nil {
		if err := a.cfg.DeleteRepositoryContent(r.Context(), full); err != nil {
			if a.cfg.Log != nil {
				a.cfg.Log.WithError(err).Errorf("deleting the content of repository %s", full)
			}
			return errorf(http.StatusServiceUnavailable, "STORAGE_UNAVAILABLE",
				"repository %s not deleted: removing its images from storage failed (%v); check /_ping and the storage settings, then try again", full, err)
		}
	}
	if err := a.cfg.Store.DeleteRepository(r.Context(), ns, repo); err != nil {
		return err
	}
	reqinfo.AddNote(r.Context(), meta.WebhookRepoDeleted, full) // webhooks
	if a.cfg.DeleteRepositoryContent != nil {
		if err := a.cfg.DeleteRepositoryContent(context.WithoutCancel(r.Context()), full); err != nil && a.cfg.Log != nil {
			a.cfg.Log.WithError(err).Warnf("repository %s deleted, but a second pass over its storage failed: a push that raced the deletion may have left tags there", full)
		}
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithFields(map[string]any{"repository": full, "user": me.Name}).Info("repository deleted with its tags and manifests")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// AccessRequest is the body of PUT …/teamAccess/{team} and …/userAccess/{user}.
type AccessRequest struct {
	AccessLevel string `json:"accessLevel"`
}

func parseAccess(r *http.Request) (meta.Level, error) {
	var req AccessRequest
	if err := decode(r.Body, &req); err != nil {
		return meta.NoAccess, err
	}
	return meta.ParseLevel(req.AccessLevel)
}

func (a *API) listTeamAccess(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns, repo := r.PathValue("ns"), r.PathValue("repo")
	if _, err := a.repoAccess(r.Context(), me, ns, repo, meta.Admin); err != nil {
		return err
	}
	gs, err := a.cfg.Store.TeamGrants(r.Context(), ns, repo)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"teamAccessList": gs})
	return nil
}

func (a *API) putTeamAccess(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns, repo, team := r.PathValue("ns"), r.PathValue("repo"), r.PathValue("team")
	level, err := parseAccess(r)
	if err != nil {
		return err
	}
	if _, err := a.repoAccess(r.Context(), me, ns, repo, meta.Admin); err != nil {
		return err
	}
	if err := a.cfg.Store.SetTeamAccess(r.Context(), ns, repo, team, level); err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, meta.Grant{Team: team, Level: level})
	return nil
}

func (a *API) deleteTeamAccess(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns, repo := r.PathValue("ns"), r.PathValue("repo")
	if _, err := a.repoAccess(r.Context(), me, ns, repo, meta.Admin); err != nil {
		return err
	}
	if err := a.cfg.Store.RevokeTeamAccess(r.Context(), ns, repo, r.PathValue("team")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listUserAccess(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns, repo := r.PathValue("ns"), r.PathValue("repo")
	if _, err := a.repoAccess(r.Context(), me, ns, repo, meta.Admin); err != nil {
		return err
	}
	gs, err := a.cfg.Store.UserGrants(r.Context(), ns, repo)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"userAccessList": gs})
	return nil
}

func (a *API) putUserAccess(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns, repo, user := r.PathValue("ns"), r.PathValue("repo"), r.PathValue("user")
	level, err := parseAccess(r)
	if err != nil {
		return err
	}
	if _, err := a.repoAccess(r.Context(), me, ns, repo, meta.Admin); err != nil {
		return err
	}
	if err := a.cfg.Store.SetUserAccess(r.Context(), ns, repo, user, level); err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, meta.Grant{User: user, Level: level})
	return nil
}

func (a *API) deleteUserAccess(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns, repo := r.PathValue("ns"), r.PathValue("repo")
	if _, err := a.repoAccess(r.Context(), me, ns, repo, meta.Admin); err != nil {
		return err
	}
	if err := a.cfg.Store.RevokeUserAccess(r.Context(), ns, repo, r.PathValue("user")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listNamespaceAccess(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns := r.PathValue("ns")
	if err := a.orgAdmin(r.Context(), me, ns); err != nil {
		return err
	}
	gs, err := a.cfg.Store.NamespaceTeamGrants(r.Context(), ns)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"teamAccessList": gs})
	return nil
}

func (a *API) putNamespaceAccess(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns, team := r.PathValue("ns"), r.PathValue("team")
	level, err := parseAccess(r)
	if err != nil {
		return err
	}
	if err := a.orgAdmin(r.Context(), me, ns); err != nil {
		return err
	}
	if err := a.cfg.Store.SetNamespaceTeamAccess(r.Context(), ns, team, level); err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, meta.Grant{Team: team, Level: level})
	return nil
}

func (a *API) deleteNamespaceAccess(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns := r.PathValue("ns")
	if err := a.orgAdmin(r.Context(), me, ns); err != nil {
		return err
	}
	if err := a.cfg.Store.RevokeNamespaceTeamAccess(r.Context(), ns, r.PathValue("team")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
