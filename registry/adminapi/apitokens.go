package adminapi

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/meta"
)

// Access tokens, DTR's /api/v0/api_tokens (docs/security.md, "Access
// tokens"). A user manages their own; a system administrator anyone's
// (?username=). Managing tokens takes a password login: a token must not
// mint itself a wider one.

// CreateAPITokenRequest is the body of POST /api/v0/api_tokens.
type CreateAPITokenRequest struct {
	TokenLabel   string     `json:"tokenLabel"`
	ExpiresAt    *time.Time `json:"expiresAt,omitempty"`
	ReadOnly     bool       `json:"readOnly,omitempty"`
	Repositories []string   `json:"repositories,omitempty"`
}

// NewAPIToken is a created token with its secret, shown this once.
type NewAPIToken struct {
	meta.APIToken
	Token string `json:"token"`
}

// PatchAPITokenRequest is the body of PATCH /api/v0/api_tokens/{id}.
type PatchAPITokenRequest struct {
	TokenLabel *string `json:"tokenLabel,omitempty"`
	IsActive   *bool   `json:"isActive,omitempty"`
}

var errNoSuchAPIToken = errorf(http.StatusNotFound, "NO_SUCH_API_TOKEN", "no such access token")

// tokenOwner is whose tokens a request is about: the caller, or for an
// administrator the user named by ?username=.
func tokenOwner(r *http.Request, me *meta.Account) (string, error) {
	if me.APIToken != nil {
		return "", errorf(http.StatusForbidden, "NOT_AUTHORIZED", "access tokens are managed after signing in with a password, not with an access token")
	}
	u := r.URL.Query().Get("username")
	if u == "" || u == me.Name {
		return me.Name, nil
	}
	if !me.IsAdmin {
		return "", errorf(http.StatusForbidden, "NOT_AUTHORIZED", "only system administrators manage the access tokens of other users")
	}
	return u, nil
}

func (a *API) createAPIToken(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	owner, err := tokenOwner(r, me)
	if err != nil {
		return err
	}
	var req CreateAPITokenRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	acc, err := a.cfg.Store.Account(r.Context(), owner)
	if errors.Is(err, meta.ErrNotFound) || err == nil && acc.IsOrg {
		return errorf(http.StatusNotFound, "NO_SUCH_ACCOUNT", "no user %q", owner)
	}
	if err != nil {
		return err
	}
	t, secret, err := a.cfg.Store.CreateAPIToken(r.Context(), meta.APIToken{
		TokenLabel: req.TokenLabel, Username: owner, GeneratedBy: me.Name, CreatorUA: truncate(r.UserAgent(), 200),
		ExpiresAt: req.ExpiresAt, ReadOnly: req.ReadOnly, Repositories: req.Repositories,
	})
	if err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithField("user", owner).WithField("by", me.Name).WithField("label", t.TokenLabel).Info("access token created")
	}
	httpjson.Write(w, http.StatusOK, NewAPIToken{APIToken: t, Token: secret})
	return nil
}

func (a *API) listAPITokens(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	owner, err := tokenOwner(r, me)
	if err != nil {
		return err
	}
	ts, err := a.cfg.Store.APITokens(r.Context(), owner)
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

// ownToken reads the token of the path for its owner or an administrator;
// anyone else is told it does not exist.
func (a *API) ownToken(r *http.Request, me *meta.Account) (meta.APIToken, error) {
	if _, err := tokenOwner(r, me); err != nil {
		return meta.APIToken{}, err
	}
	t, err := a.cfg.Store.APIToken(r.Context(), r.PathValue("id"))
	if errors.Is(err, meta.ErrNotFound) || err == nil && t.Username != me.Name && !me.IsAdmin {
		return meta.APIToken{}, errNoSuchAPIToken
	}
	return t, err
}

func (a *API) getAPIToken(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	t, err := a.ownToken(r, me)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, t)
	return nil
}

func (a *API) patchAPIToken(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if _, err := a.ownToken(r, me); err != nil {
		return err
	}
	var req PatchAPITokenRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	t, err := a.cfg.Store.UpdateAPIToken(r.Context(), r.PathValue("id"), func(t *meta.APIToken) error {
		if req.TokenLabel != nil {
			if strings.TrimSpace(*req.TokenLabel) == "" || len(*req.TokenLabel) > 100 {
				return errorf(http.StatusBadRequest, "INVALID", "tokenLabel: give a name of 1 to 100 characters")
			}
			t.TokenLabel = *req.TokenLabel
		}
		if req.IsActive != nil {
			t.IsActive = *req.IsActive
		}
		return nil
	})
	if errors.Is(err, meta.ErrNotFound) {
		return errNoSuchAPIToken
	}
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, t)
	return nil
}

// deleteAPIToken revokes a token; DTR answers 200.
func (a *API) deleteAPIToken(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	t, err := a.ownToken(r, me)
	if err != nil {
		return err
	}
	if err := a.cfg.Store.DeleteAPIToken(r.Context(), t.HashedToken); errors.Is(err, meta.ErrNotFound) {
		return errNoSuchAPIToken
	} else if err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithField("user", t.Username).WithField("by", me.Name).WithField("label", t.TokenLabel).Info("access token revoked")
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// checkTokenLimits refuses what an access token does not allow on the
// admin API: anything with a token limited to repositories (it is a
// pipeline's credential for the registry), changes with a read-only one.
func checkTokenLimits(r *http.Request, me *meta.Account) error {
	t := me.APIToken
	if t == nil {
		return nil
	}
	if me.IsServiceAccount() {
		// A service account may read itself (what its token is), nothing
		// else: it is a pipeline's registry credential.
		if org, name, _ := meta.SplitServiceAccount(me.Name); r.Method == http.MethodGet && r.URL.Path == "/api/v0/accounts/"+org+"/serviceAccounts/"+name {
			return nil
		}
		return errorf(http.StatusForbidden, "NOT_AUTHORIZED", "a service account's token works for docker login, push and pull of its repositories (%s), not for the admin API", strings.Join(t.Repositories, ", "))
	}
	if len(t.Repositories) > 0 {
		return errorf(http.StatusForbidden, "NOT_AUTHORIZED", "this access token is limited to repositories (%s): it works for docker login, push and pull only", strings.Join(t.Repositories, ", "))
	}
	if t.ReadOnly && r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errorf(http.StatusForbidden, "NOT_AUTHORIZED", "this access token is read-only")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
