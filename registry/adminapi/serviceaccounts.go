package adminapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/meta"
)

// Service accounts of an organization, for pipelines (docs/identity.md,
// "Service accounts"): /api/v0/accounts/{org}/serviceAccounts. The
// organization's admins and system administrators manage them, after
// signing in with a password; anyone else outside the organization is
// told it does not exist, its members who are not admins are refused. A
// service account's token may read the service account itself, nothing
// else of the admin API.

// CreateServiceAccountRequest is the body of POST
// /api/v0/accounts/{org}/serviceAccounts.
type CreateServiceAccountRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// CreateServiceAccountTokenRequest is the body of POST
// /api/v0/accounts/{org}/serviceAccounts/{name}/tokens.
type CreateServiceAccountTokenRequest struct {
	TokenLabel       string                     `json:"tokenLabel"`
	ExpiresAt        *time.Time                 `json:"expiresAt,omitempty"`
	RepositoryAccess []ServiceAccountTokenGrant `json:"repositoryAccess"`
}

// ServiceAccountTokenGrant is one repository of a token and its actions:
// ["pull"] or ["pull", "push"].
type ServiceAccountTokenGrant struct {
	Repository string   `json:"repository"`
	Actions    []string `json:"actions"`
}

var errNoSuchServiceAccount = errorf(http.StatusNotFound, "NO_SUCH_SERVICE_ACCOUNT", "no such service account")

// serviceAccountAdmin allows the organization's admins and system
// administrators, signed in with a password. Whoever is not in the
// organization learns nothing: the same 404 as a missing organization.
func (a *API) serviceAccountAdmin(ctx context.Context, me *meta.Account, org string) error {
	if me.APIToken != nil {
		return errorf(http.StatusForbidden, "NOT_AUTHORIZED", "service accounts and their tokens are managed after signing in with a password, not with an access token")
	}
	noOrg := errorf(http.StatusNotFound, "NO_SUCH_ORGANIZATION", "no organization %q", org)
	acc, err := a.cfg.Store.Account(ctx, org)
	if errors.Is(err, meta.ErrNotFound) || err == nil && !acc.IsOrg {
		return noOrg
	}
	if err != nil || me.IsAdmin {
		return err
	}
	m, err := a.cfg.Store.OrgMember(ctx, org, me.Name)
	switch {
	case errors.Is(err, meta.ErrNotFound):
		return noOrg
	case err != nil:
		return err
	case !m.IsAdmin:
		return errorf(http.StatusForbidden, "FORBIDDEN", "only an admin of organization %s may manage its service accounts", org)
	}
	return nil
}

// serviceAccount reads the service account of the path for its managers.
func (a *API) serviceAccount(r *http.Request, me *meta.Account) (meta.ServiceAccount, error) {
	org, name := r.PathValue("org"), r.PathValue("name")
	if err := a.serviceAccountAdmin(r.Context(), me, org); err != nil {
		return meta.ServiceAccount{}, err
	}
	sa, err := a.cfg.Store.ServiceAccount(r.Context(), org, name)
	if errors.Is(err, meta.ErrNotFound) {
		return sa, errNoSuchServiceAccount
	}
	return sa, err
}

func (a *API) listServiceAccounts(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	org := r.PathValue("org")
	if err := a.serviceAccountAdmin(r.Context(), me, org); err != nil {
		return err
	}
	sas, err := a.cfg.Store.ServiceAccounts(r.Context(), org)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, sas)
	return nil
}

func (a *API) createServiceAccount(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	org := r.PathValue("org")
	if err := a.serviceAccountAdmin(r.Context(), me, org); err != nil {
		return err
	}
	var req CreateServiceAccountRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	sa, err := a.cfg.Store.CreateServiceAccount(r.Context(), meta.ServiceAccount{Org: org, Name: req.Name, Description: req.Description, CreatedBy: me.Name})
	if err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithField("serviceAccount", sa.Username).WithField("by", me.Name).Info("service account created")
	}
	httpjson.Write(w, http.StatusCreated, sa)
	return nil
}

// getServiceAccount answers the organization's managers, and the service
// account itself (signed in with one of its tokens).
func (a *API) getServiceAccount(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	org, name := r.PathValue("org"), r.PathValue("name")
	if me.IsServiceAccount() {
		if me.Name != meta.ServiceAccountUsername(org, name) {
			return errNoSuchServiceAccount
		}
		sa, err := a.cfg.Store.ServiceAccount(r.Context(), org, name)
		if errors.Is(err, meta.ErrNotFound) {
			return errNoSuchServiceAccount
		}
		if err != nil {
			return err
		}
		httpjson.Write(w, http.StatusOK, sa)
		return nil
	}
	sa, err := a.serviceAccount(r, me)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, sa)
	return nil
}

func (a *API) deleteServiceAccount(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	sa, err := a.serviceAccount(r, me)
	if err != nil {
		return err
	}
	if err := a.cfg.Store.DeleteServiceAccount(r.Context(), sa.Org, sa.Name); errors.Is(err, meta.ErrNotFound) {
		return errNoSuchServiceAccount
	} else if err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithField("serviceAccount", sa.Username).WithField("by", me.Name).Info("service account deleted, with its tokens")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) createServiceAccountToken(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	sa, err := a.serviceAccount(r, me)
	if err != nil {
		return err
	}
	var req CreateServiceAccountTokenRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	grants := make([]meta.TokenRepositoryAccess, len(req.RepositoryAccess))
	for i, g := range req.RepositoryAccess {
		grants[i] = meta.TokenRepositoryAccess{Repository: g.Repository, Actions: g.Actions}
	}
	t, secret, err := a.cfg.Store.CreateServiceAccountToken(r.Context(), sa.Org, sa.Name, meta.APIToken{
		TokenLabel: req.TokenLabel, GeneratedBy: me.Name, CreatorUA: truncate(r.UserAgent(), 200),
		ExpiresAt: req.ExpiresAt, RepositoryAccess: grants,
	})
	if errors.Is(err, meta.ErrNotFound) {
		return errNoSuchServiceAccount // deleted meanwhile
	}
	if err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithField("serviceAccount", sa.Username).WithField("by", me.Name).WithField("label", t.TokenLabel).
			WithField("repositories", t.Repositories).Info("service account token created")
	}
	httpjson.Write(w, http.StatusOK, NewAPIToken{APIToken: t, Token: secret})
	return nil
}

func (a *API) listServiceAccountTokens(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	sa, err := a.serviceAccount(r, me)
	if err != nil {
		return err
	}
	ts, err := a.cfg.Store.APITokens(r.Context(), sa.Username)
	if err != nil {
		return err
	}
	ts, err = page(w, r, ts, func(t meta.APIToken) string { return t.HashedToken })
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, ts)
	return nil
}

// serviceAccountToken reads the token of the path, if it is the service
// account's.
func (a *API) serviceAccountToken(r *http.Request, me *meta.Account) (meta.APIToken, error) {
	sa, err := a.serviceAccount(r, me)
	if err != nil {
		return meta.APIToken{}, err
	}
	t, err := a.cfg.Store.APIToken(r.Context(), r.PathValue("id"))
	if errors.Is(err, meta.ErrNotFound) || err == nil && t.Username != sa.Username {
		return meta.APIToken{}, errNoSuchAPIToken
	}
	return t, err
}

func (a *API) getServiceAccountToken(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	t, err := a.serviceAccountToken(r, me)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, t)
	return nil
}

// deleteServiceAccountToken revokes a token: logins with it fail at once,
// the registry tokens issued with it as the deletion reaches each replica.
func (a *API) deleteServiceAccountToken(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	t, err := a.serviceAccountToken(r, me)
	if err != nil {
		return err
	}
	if err := a.cfg.Store.DeleteAPIToken(r.Context(), t.HashedToken); errors.Is(err, meta.ErrNotFound) {
		return errNoSuchAPIToken
	} else if err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithField("serviceAccount", t.Username).WithField("by", me.Name).WithField("label", t.TokenLabel).Info("service account token revoked")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
