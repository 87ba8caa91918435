package adminapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/meta"
)

// accountView is an account as the API shows it: never the password hash,
// and the admin and active flags only to system administrators and to the
// account itself, as in DTR: which accounts hold the keys to everything is
// not for every user to map out.
type accountView struct {
	Name      string    `json:"name"`
	IsOrg     bool      `json:"isOrg"`
	IsAdmin   *bool     `json:"isAdmin,omitempty"`
	IsActive  *bool     `json:"isActive,omitempty"`
	FullName  string    `json:"fullName,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	// Source is the identity source the account comes from (ldap, ucp);
	// absent for dtr's own accounts.
	Source string `json:"source,omitempty"`
}

// view shows a in full.
func view(a meta.Account) accountView {
	return accountView{Name: a.Name, IsOrg: a.IsOrg, IsAdmin: &a.IsAdmin, IsActive: &a.IsActive, FullName: a.FullName, CreatedAt: a.CreatedAt, Source: a.Source}
}

// viewFor shows a as me may see it.
func viewFor(me *meta.Account, a meta.Account) accountView {
	v := view(a)
	if !me.IsAdmin && me.Name != a.Name {
		v.IsAdmin, v.IsActive = nil, nil
	}
	return v
}

func requireAdmin(me *meta.Account) error {
	if !me.IsAdmin {
		return errorf(http.StatusForbidden, "FORBIDDEN", "only a system administrator may do this")
	}
	return nil
}

// orgAdmin allows system admins and the organization's admins.
func (a *API) orgAdmin(ctx context.Context, me *meta.Account, org string) error {
	if me.IsAdmin {
		return nil
	}
	m, err := a.cfg.Store.OrgMember(ctx, org, me.Name)
	if err == nil && m.IsAdmin {
		return nil
	}
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		return err
	}
	return errorf(http.StatusForbidden, "FORBIDDEN", "only an admin of organization %s may do this", org)
}

// CreateAccountRequest is the body of POST /api/v0/accounts.
type CreateAccountRequest struct {
	Name     string `json:"name"`
	Password string `json:"password,omitempty"`
	IsOrg    bool   `json:"isOrg"`
	IsAdmin  bool   `json:"isAdmin"`
	FullName string `json:"fullName,omitempty"`
}

func (a *API) listAccounts(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	accs, err := a.cfg.Store.Accounts(r.Context())
	if err != nil {
		return err
	}
	out := make([]accountView, 0, len(accs))
	for _, acc := range accs {
		out = append(out, viewFor(me, acc))
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"accounts": out})
	return nil
}

func (a *API) createAccount(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	var req CreateAccountRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if req.IsOrg && (req.Password != "" || req.IsAdmin) {
		return errorf(http.StatusBadRequest, "INVALID", "an organization has no password and cannot be an admin")
	}
	acc, err := a.cfg.Store.CreateAccount(r.Context(), meta.Account{Name: req.Name, IsOrg: req.IsOrg, IsAdmin: req.IsAdmin, FullName: req.FullName}, req.Password)
	if err != nil {
		return err
	}
	if err := a.clearNamespace(r.Context(), acc.Name); err != nil {
		return err
	}
	if acc.IsOrg {
		// The creator manages the new organization, as in DTR.
		if err := a.cfg.Store.SetOrgMember(r.Context(), acc.Name, me.Name, true); err != nil {
			return err
		}
	}
	httpjson.Write(w, http.StatusCreated, view(acc))
	return nil
}

func (a *API) getAccount(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	acc, err := a.cfg.Store.Account(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, viewFor(me, acc))
	return nil
}

// PatchAccountRequest is the body of PATCH /api/v0/accounts/{name}; absent
// fields keep their values.
type PatchAccountRequest struct {
	FullName *string `json:"fullName,omitempty"`
	IsAdmin  *bool   `json:"isAdmin,omitempty"`
	IsActive *bool   `json:"isActive,omitempty"`
}

func (a *API) patchAccount(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	name := r.PathValue("name")
	var req PatchAccountRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if (req.IsAdmin != nil || req.IsActive != nil || me.Name != name) && !me.IsAdmin {
		return errorf(http.StatusForbidden, "FORBIDDEN", "only a system administrator may change other accounts or admin and active flags")
	}
	if me.Name == name && ((req.IsAdmin != nil && !*req.IsAdmin) || (req.IsActive != nil && !*req.IsActive)) {
		return errorf(http.StatusBadRequest, "INVALID", "you cannot demote or deactivate yourself; ask another admin")
	}
	acc, err := a.cfg.Store.UpdateAccount(r.Context(), name, func(acc *meta.Account) error {
		if req.FullName != nil {
			acc.FullName = *req.FullName
		}
		if acc.IsOrg && (req.IsAdmin != nil || req.IsActive != nil) {
			return errorf(http.StatusBadRequest, "INVALID", "%s is an organization: it has no admin or active flag", name)
		}
		if req.IsAdmin != nil {
			acc.IsAdmin = *req.IsAdmin
		}
		if req.IsActive != nil {
			// An administrator's choice: an identity sync does not undo it.
			acc.IsActive, acc.DeactivatedBySync = *req.IsActive, false
		}
		return nil
	})
	if err != nil {
		return err
	}
	if req.IsActive != nil && !*req.IsActive {
		if err := a.cfg.Store.RevokeRefreshTokens(r.Context(), name); err != nil {
			return err
		}
	}
	httpjson.Write(w, http.StatusOK, view(acc))
	return nil
}

// clearNamespace removes whatever storage still holds under a new
// account's namespace before anyone but the creating admin can use it.
// A fresh name has no repository records, so anything there is left over:
// images of an account deleted before dtr removed them, or a push that
// raced a deletion with a token issued before it. The account is created
// first, so that a concurrent creation of the same name can never have its
// images swept by the request that lost; if storage cannot be cleared the
// account is removed again, since it would inherit what is left.
func (a *API) clearNamespace(ctx context.Context, name string) error {
	if a.cfg.DeleteNamespaceContent == nil {
		return nil
	}
	err := a.cfg.DeleteNamespaceContent(ctx, name)
	if err == nil {
		return nil
	}
	if derr := a.cfg.Store.DeleteAccount(context.WithoutCancel(ctx), name); derr != nil && a.cfg.Log != nil {
		a.cfg.Log.WithError(derr).Errorf("removing account %s again after its namespace could not be cleared", name)
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithError(err).Errorf("clearing leftover images of namespace %s", name)
	}
	return errorf(http.StatusServiceUnavailable, "STORAGE_UNAVAILABLE",
		"account %s not created: storage could not be cleared of the images of an earlier account of that name (%v); check /_ping and the storage settings, then try again", name, err)
}

// deleteAccount refuses while the account's namespace holds repositories
// (409 naming them): see meta.Store.DeleteAccount for why.
func (a *API) deleteAccount(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	if r.PathValue("name") == me.Name {
		return errorf(http.StatusBadRequest, "INVALID", "you cannot delete your own account")
	}
	if err := a.cfg.Store.DeleteAccount(r.Context(), r.PathValue("name")); err != nil {
		if errors.Is(err, meta.ErrHasRepositories) {
			return errorf(http.StatusConflict, "HAS_REPOSITORIES", "%v", err)
		}
		return err
	}
	// Its tokens would not work anyway (a login checks the account), but
	// they must not list nor count against a new account of that name.
	if err := a.cfg.Store.DeleteUserAPITokens(r.Context(), r.PathValue("name")); err != nil && a.cfg.Log != nil {
		a.cfg.Log.WithError(err).WithField("account", r.PathValue("name")).Warn("removing the access tokens of a deleted account")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ChangePasswordRequest is the body of POST …/changePassword. An admin may
// leave out the old password of another account.
type ChangePasswordRequest struct {
	OldPassword string `json:"oldPassword,omitempty"`
	NewPassword string `json:"newPassword"`
}

func (a *API) changePassword(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	name := r.PathValue("name")
	var req ChangePasswordRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if me.Name != name && !me.IsAdmin {
		return errForbidden
	}
	if me.APIToken != nil {
		return errorf(http.StatusForbidden, "NOT_AUTHORIZED", "a password is changed after signing in with a password, not with an access token")
	}
	if me.Name == name {
		// Through Logins like any password check: throttled and bounded,
		// so a stolen token is no free oracle for the password.
		old, err := a.cfg.Logins.Check(r.Context(), r.RemoteAddr, me.Name, req.OldPassword)
		if err == nil && old.APIToken != nil {
			err = auth.ErrBadCredentials // an access token is not the old password
		}
		if err != nil {
			return loginError(err, errorf(http.StatusForbidden, "FORBIDDEN", "the old password is wrong"))
		}
	}
	if err := a.cfg.Store.SetPassword(r.Context(), name, req.NewPassword); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// orgMember allows system admins and the organization's members: an
// organization's members, teams and team members are its own business.
// Others get 403, not 404: that the organization exists is public (GET
// /api/v0/accounts), only its inside is not.
func (a *API) orgMember(ctx context.Context, me *meta.Account, org string) error {
	if me.IsAdmin {
		return nil
	}
	_, err := a.cfg.Store.OrgMember(ctx, org, me.Name)
	if errors.Is(err, meta.ErrNotFound) {
		return errorf(http.StatusForbidden, "FORBIDDEN", "only members of organization %s and system administrators may see its members and teams", org)
	}
	return err
}

func (a *API) listOrgMembers(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	org := r.PathValue("org")
	if err := a.orgMember(r.Context(), me, org); err != nil {
		return err
	}
	ms, err := a.cfg.Store.OrgMembers(r.Context(), org)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"members": ms})
	return nil
}

// MemberRequest is the body of PUT …/members/{member}.
type MemberRequest struct {
	IsAdmin bool `json:"isAdmin"`
}

func (a *API) putOrgMember(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	org := r.PathValue("org")
	if err := a.orgAdmin(r.Context(), me, org); err != nil {
		return err
	}
	var req MemberRequest
	if r.ContentLength != 0 {
		if err := decode(r.Body, &req); err != nil {
			return err
		}
	}
	if err := a.cfg.Store.SetOrgMember(r.Context(), org, r.PathValue("member"), req.IsAdmin); err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, meta.Membership{User: r.PathValue("member"), IsAdmin: req.IsAdmin})
	return nil
}

func (a *API) deleteOrgMember(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	org := r.PathValue("org")
	if err := a.orgAdmin(r.Context(), me, org); err != nil {
		return err
	}
	if err := a.cfg.Store.RemoveOrgMember(r.Context(), org, r.PathValue("member")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listTeams(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if _, err := a.cfg.Store.Account(r.Context(), r.PathValue("org")); err != nil {
		return err
	}
	if err := a.orgMember(r.Context(), me, r.PathValue("org")); err != nil {
		return err
	}
	ts, err := a.cfg.Store.Teams(r.Context(), r.PathValue("org"))
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"teams": ts})
	return nil
}

// CreateTeamRequest is the body of POST /api/v0/accounts/{org}/teams.
type CreateTeamRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

func (a *API) createTeam(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	org := r.PathValue("org")
	if err := a.orgAdmin(r.Context(), me, org); err != nil {
		return err
	}
	var req CreateTeamRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	t, err := a.cfg.Store.CreateTeam(r.Context(), meta.Team{Org: org, Name: req.Name, Description: req.Description})
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusCreated, t)
	return nil
}

func (a *API) getTeam(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := a.orgMember(r.Context(), me, r.PathValue("org")); err != nil {
		return err
	}
	t, err := a.cfg.Store.Team(r.Context(), r.PathValue("org"), r.PathValue("team"))
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, t)
	return nil
}

func (a *API) deleteTeam(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	org := r.PathValue("org")
	if err := a.orgAdmin(r.Context(), me, org); err != nil {
		return err
	}
	if err := a.cfg.Store.DeleteTeam(r.Context(), org, r.PathValue("team")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listTeamMembers(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := a.orgMember(r.Context(), me, r.PathValue("org")); err != nil {
		return err
	}
	if _, err := a.cfg.Store.Team(r.Context(), r.PathValue("org"), r.PathValue("team")); err != nil {
		return err
	}
	ms, err := a.cfg.Store.TeamMembers(r.Context(), r.PathValue("org"), r.PathValue("team"))
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"members": ms})
	return nil
}

func (a *API) putTeamMember(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	org := r.PathValue("org")
	if err := a.orgAdmin(r.Context(), me, org); err != nil {
		return err
	}
	if err := a.cfg.Store.AddTeamMember(r.Context(), org, r.PathValue("team"), r.PathValue("member")); err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, meta.TeamMember{User: r.PathValue("member")})
	return nil
}

func (a *API) deleteTeamMember(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	org := r.PathValue("org")
	if err := a.orgAdmin(r.Context(), me, org); err != nil {
		return err
	}
	if err := a.cfg.Store.RemoveTeamMember(r.Context(), org, r.PathValue("team"), r.PathValue("member")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
