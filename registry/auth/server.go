package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/meta"
)

// Server answers /auth/token for docker and OCI clients.
type Server struct {
	Store  *meta.Store
	Keys   func() *Keyring // the cluster's token keys (from the metadata store)
	Logins *Logins
	Log    logrus.FieldLogger
	Now    func() time.Time
}

// AdminAPIScope is the scope of a token for the admin API (/api/v0/): any
// active account may get one, and the API then allows what the account may
// do. Tokens for registry scopes are not admin API credentials.
const AdminAPIScope = "api:v0:*"

// Resource type and name of AdminAPIScope.
const (
	adminAPIType = "api"
	adminAPIName = "v0"
)

// AllowsAdminAPI reports whether a token was issued for the admin API.
func AllowsAdminAPI(c *token.ClaimSet) bool {
	return c.Subject != "" && Allows(c, adminAPIType, adminAPIName, "*")
}

// maxForm bounds a token request's form body.
const maxForm = 64 << 10

type tokenResponse struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// writeJSON answers the token endpoint, whose answers are never cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Write(w, status, v)
}

func unauthorized(w http.ResponseWriter, details string) {
	w.Header().Set("WWW-Authenticate", `Basic realm="dtr"`)
	writeJSON(w, http.StatusUnauthorized, map[string]any{
		"errors":  []map[string]string{{"code": "UNAUTHORIZED", "message": details}},
		"details": details,
	})
}

// ServeHTTP implements GET (Basic auth, what `docker login` sends) and POST
// (OAuth2 password and refresh_token grants, what docker sends once it has a
// refresh token).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		s.get(w, r)
	case http.MethodPost:
		s.post(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"details": "use GET or POST"})
	}
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if svc := q.Get("service"); svc != "" && svc != Service {
		writeJSON(w, http.StatusBadRequest, map[string]string{"details": "unknown service " + svc})
		return
	}
	scopes, err := ParseScopes(q["scope"])
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"details": err.Error()})
		return
	}
	var user *meta.Account
	if name, pw, ok := r.BasicAuth(); ok {
		a, err := s.Logins.Check(r.Context(), r.RemoteAddr, name, pw)
		if err != nil {
			s.loginFailed(w, r, name, err)
			return
		}
		user = a
	}
	resp, _, err := s.grant(r.Context(), user, scopes)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if user != nil && q.Get("offline_token") == "true" {
		if resp.RefreshToken, err = s.offlineToken(r, *user, q.Get("client_id")); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// loginFailed answers a refused login: 401 for wrong credentials, 429 when
// throttled, 503 when the replica cannot check them now. The log names the
// user and the client, never the password.
func (s *Server) loginFailed(w http.ResponseWriter, r *http.Request, name string, err error) {
	var te *ThrottledError
	switch {
	case errors.Is(err, ErrBadCredentials):
		s.logf(r, name, "login refused: %v", err)
		unauthorized(w, "incorrect username or password")
	case errors.As(err, &te):
		// Logins logged the lock once, at warning level; a flood's
		// further attempts would only fill the log.
		if s.Log != nil {
			s.Log.WithFields(logrus.Fields{"remote": r.RemoteAddr, "user": name}).Debugf("login refused: %v", err)
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(te.RetryAfter.Seconds())+1))
		writeJSON(w, http.StatusTooManyRequests, map[string]any{
			"errors":  []map[string]string{{"code": "TOOMANYREQUESTS", "message": te.Error()}},
			"details": te.Error(),
		})
	case errors.Is(err, ErrBusy):
		w.Header().Set("Retry-After", "2")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"details": err.Error()})
	case errors.Is(err, identity.ErrUnavailable):
		// Logins logged the cause; docker login shows this, not "wrong
		// password".
		w.Header().Set("Retry-After", strconv.Itoa(int(failRetryAfter.Seconds())))
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"errors":  []map[string]string{{"code": "UNAVAILABLE", "message": SourceUnavailable}},
			"details": SourceUnavailable,
		})
	default:
		s.fail(w, r, err)
	}
}

func (s *Server) post(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"details": "malformed form: " + err.Error()})
		return
	}
	f := r.PostForm
	if svc := f.Get("service"); svc != "" && svc != Service {
		writeJSON(w, http.StatusBadRequest, map[string]string{"details": "unknown service " + svc})
		return
	}
	scopes, err := ParseScopes([]string{f.Get("scope")})
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"details": err.Error()})
		return
	}
	var user *meta.Account
	switch f.Get("grant_type") {
	case "refresh_token":
		user, err = s.refresh(r.Context(), f.Get("refresh_token"))
		// A refresh token is docker's credential for the registry: the
		// admin API wants the password (or a token got with it).
		scopes = slices.DeleteFunc(scopes, func(sc Scope) bool { return sc.Type == adminAPIType })
		if errors.Is(err, ErrBadCredentials) || errors.Is(err, meta.ErrNotFound) {
			s.logf(r, "", "refresh token refused: %v", err)
			unauthorized(w, "invalid, expired or revoked refresh token; run docker login again")
			return
		} else if err != nil {
			s.fail(w, r, err)
			return
		}
	case "password":
		user, err = s.Logins.Check(r.Context(), r.RemoteAddr, f.Get("username"), f.Get("password"))
		if err != nil {
			s.loginFailed(w, r, f.Get("username"), err)
			return
		}
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"details": "grant_type must be password or refresh_token"})
		return
	}
	resp, access, err := s.grant(r.Context(), user, scopes)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var granted []string
	for _, ra := range access {
		granted = append(granted, Scope{Type: ra.Type, Class: ra.Class, Name: ra.Name, Actions: ra.Actions}.String())
	}
	resp.Scope = strings.Join(granted, " ")
	if f.Get("grant_type") == "password" && f.Get("access_type") == "offline" {
		if resp.RefreshToken, err = s.offlineToken(r, *user, f.Get("client_id")); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) logf(r *http.Request, user, format string, args ...any) {
	if s.Log != nil {
		s.Log.WithFields(logrus.Fields{"remote": r.RemoteAddr, "user": user}).Infof(format, args...)
	}
}

// fail answers a token request the replica cannot decide now, mostly
// because the metadata store cannot answer (no quorum): 503 with
// Retry-After, never 401, so that docker login says what happened instead
// of "incorrect username or password", and clients retry.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if s.Log != nil {
		s.Log.WithField("remote", r.RemoteAddr).Errorf("token request failed: %v", err)
	}
	msg := "the token server cannot check credentials now: the metadata store is unavailable (the cluster may have lost quorum); try again in a few seconds"
	if !meta.Unavailable(err) {
		msg = "the token server cannot issue a token now; try again in a few seconds"
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(failRetryAfter.Seconds())))
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{
		"errors":  []map[string]string{{"code": "UNAVAILABLE", "message": msg}},
		"details": msg,
	})
}

// failRetryAfter is fail's Retry-After: an election or a member's return
// takes seconds.
const failRetryAfter = 5 * time.Second

// ErrBadCredentials means the username or password is wrong, or the account
// cannot log in.
var ErrBadCredentials = errors.New("incorrect username or password")

// offlineToken issues the refresh token a client asked for, or none when
// the metadata store is full and cannot store it: the refresh token is
// optional in the protocol, and a client without one keeps using the
// password, so docker login and pulls go on while an operator frees space.
func (s *Server) offlineToken(r *http.Request, user meta.Account, clientID string) (string, error) {
	if user.APIToken != nil {
		// A refresh token would outlive the access token's revocation and
		// carry none of its limits: the client keeps sending the token.
		return "", nil
	}
	tok, err := s.issueRefreshToken(r.Context(), user, clientID)
	if meta.NoSpace(err) {
		s.logf(r, user.Name, "no refresh token issued: the metadata store is full")
		return "", nil
	}
	return tok, err
}

// issueRefreshToken stores a refresh token that lives as long as the
// settings say (refreshTokenMaxAge).
func (s *Server) issueRefreshToken(ctx context.Context, user meta.Account, clientID string) (string, error) {
	st, _, err := s.Store.Settings(ctx)
	if err != nil {
		return "", err
	}
	return s.Store.IssueRefreshToken(ctx, user, clientID, st.RefreshTokenLifetime())
}

func (s *Server) refresh(ctx context.Context, tok string) (*meta.Account, error) {
	if tok == "" {
		return nil, ErrBadCredentials
	}
	rt, err := s.Store.LookupRefreshToken(ctx, tok, s.now())
	if err != nil {
		return nil, err
	}
	a, err := s.Store.Account(ctx, rt.User)
	if err != nil {
		return nil, err
	}
	if !a.IsActive || a.IsOrg || rt.Epoch != a.Epoch {
		return nil, ErrBadCredentials
	}
	return &a, nil
}

// grant computes the access each scope gets and signs the token.
func (s *Server) grant(ctx context.Context, user *meta.Account, scopes []Scope) (tokenResponse, []*token.ResourceActions, error) {
	access, err := Grant(ctx, s.Store, user, scopes)
	if err != nil {
		return tokenResponse{}, nil, err
	}
	sub, epoch := "", ""
	if user != nil {
		sub, epoch = user.Name, tokenEpoch(user)
	}
	now := s.now()
	keys := s.Keys()
	if keys == nil || keys.Current == nil {
		return tokenResponse{}, nil, errors.New("token key not loaded")
	}
	tok, err := keys.Current.Issue(sub, epoch, access, now)
	if err != nil {
		return tokenResponse{}, nil, err
	}
	if len(tok) > MaxTokenSize {
		// MaxScopes and the name limits keep tokens far below this.
		return tokenResponse{}, nil, fmt.Errorf("token of %d bytes exceeds %d", len(tok), MaxTokenSize)
	}
	return tokenResponse{Token: tok, AccessToken: tok, ExpiresIn: int(TokenTTL.Seconds()), IssuedAt: now.UTC().Format(time.RFC3339)}, access, nil
}

// actionsFor lists the registry actions an access level allows.
func actionsFor(a meta.Access) []string {
	switch {
	case a.Level >= meta.Admin:
		return []string{"pull", "push", "delete", "*"}
	case a.Level >= meta.ReadWrite:
		return []string{"pull", "push"}
	case a.CanCreate:
		return []string{"pull", "push"}
	case a.Level >= meta.Read:
		return []string{"pull"}
	}
	return nil
}

// Grant intersects the requested scopes with what user may do. Scopes are
// never an error, but only granted actions go into the token: unknown
// resource types and scopes that grant nothing are left out, so a token's
// size follows what its holder may do, not what it asked for.
func Grant(ctx context.Context, store *meta.Store, user *meta.Account, scopes []Scope) ([]*token.ResourceActions, error) {
	out := []*token.ResourceActions{}
	for _, sc := range scopes {
		ra := &token.ResourceActions{Type: sc.Type, Class: sc.Class, Name: sc.Name, Actions: []string{}}
		var allowed []string
		switch sc.Type {
		case "repository":
			ns, name, err := meta.SplitRepository(sc.Name)
			if err != nil {
				continue
			}
			if user != nil && user.IsServiceAccount() {
				// Exactly the token's repositories: no public pulls, no
				// creating on push (serviceaccounts.go).
				if allowed, err = store.ServiceAccountActions(ctx, user.APIToken, sc.Name); err != nil {
					return nil, err
				}
				break
			}
			a, err := store.AccessFor(ctx, user, ns, name)
			if err != nil {
				return nil, err
			}
			allowed = actionsFor(a)
			if user != nil {
				allowed = narrow(user, sc.Name, allowed)
			}
		case "registry":
			if sc.Name == "catalog" && user != nil && user.IsAdmin && (user.APIToken == nil || len(user.APIToken.Repositories) == 0) {
				allowed = []string{"*"}
			}
		case adminAPIType:
			// Not for a token with limits: the admin API reads the account
			// again for a bearer token and would lose them; such tokens
			// use Basic auth there (adminapi checkTokenLimits).
			limited := user != nil && user.APIToken != nil && (user.APIToken.ReadOnly || len(user.APIToken.Repositories) > 0)
			if sc.Name == adminAPIName && user != nil && user.IsActive && !limited && !user.IsServiceAccount() {
				allowed = []string{"*"}
			}
		}
		for _, act := range sc.Actions {
			if slices.Contains(allowed, act) && !slices.Contains(ra.Actions, act) {
				ra.Actions = append(ra.Actions, act)
			}
		}
		if len(ra.Actions) > 0 {
			out = append(out, ra)
		}
	}
	return out, nil
}
