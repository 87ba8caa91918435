package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/meta"
)

// Server answers /auth/token for docker and OCI clients.
type Server struct {
	Store  *meta.Store
	Signer func() *Signer // the current signer (keys come from the metadata store)
	Log    logrus.FieldLogger
	Now    func() time.Time
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
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
	var user *meta.Account
	if name, pw, ok := r.BasicAuth(); ok {
		a, err := s.Authenticate(r.Context(), name, pw)
		if err != nil {
			s.logf(r, name, "login refused: %v", err)
			unauthorized(w, "incorrect username or password")
			return
		}
		user = a
	}
	resp, err := s.grant(r.Context(), user, ParseScopes(q["scope"]))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if user != nil && q.Get("offline_token") == "true" {
		if resp.RefreshToken, err = s.Store.IssueRefreshToken(r.Context(), user.Name, q.Get("client_id")); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, resp)
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
	var user *meta.Account
	var err error
	switch f.Get("grant_type") {
	case "refresh_token":
		user, err = s.refresh(r.Context(), f.Get("refresh_token"))
		if err != nil {
			s.logf(r, "", "refresh token refused: %v", err)
			unauthorized(w, "invalid or revoked refresh token; run docker login again")
			return
		}
	case "password":
		user, err = s.Authenticate(r.Context(), f.Get("username"), f.Get("password"))
		if err != nil {
			s.logf(r, f.Get("username"), "login refused: %v", err)
			unauthorized(w, "incorrect username or password")
			return
		}
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"details": "grant_type must be password or refresh_token"})
		return
	}
	scopes := ParseScopes([]string{f.Get("scope")})
	resp, err := s.grant(r.Context(), user, scopes)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var granted []string
	for _, sc := range scopes {
		granted = append(granted, sc.String())
	}
	resp.Scope = strings.Join(granted, " ")
	if f.Get("grant_type") == "password" && f.Get("access_type") == "offline" {
		if resp.RefreshToken, err = s.Store.IssueRefreshToken(r.Context(), user.Name, f.Get("client_id")); err != nil {
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

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if s.Log != nil {
		s.Log.WithField("remote", r.RemoteAddr).Errorf("token request failed: %v", err)
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"details": "metadata unavailable; try again"})
}

// ErrBadCredentials means the username or password is wrong, or the account
// cannot log in.
var ErrBadCredentials = errors.New("incorrect username or password")

// Authenticate checks a username and password.
func (s *Server) Authenticate(ctx context.Context, name, pw string) (*meta.Account, error) {
	a, err := s.Store.Account(ctx, name)
	if errors.Is(err, meta.ErrNotFound) {
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, err
	}
	if !a.CheckPassword(pw) {
		return nil, ErrBadCredentials
	}
	return &a, nil
}

func (s *Server) refresh(ctx context.Context, tok string) (*meta.Account, error) {
	if tok == "" {
		return nil, ErrBadCredentials
	}
	rt, err := s.Store.LookupRefreshToken(ctx, tok)
	if err != nil {
		return nil, err
	}
	a, err := s.Store.Account(ctx, rt.User)
	if err != nil {
		return nil, err
	}
	if !a.IsActive {
		return nil, ErrBadCredentials
	}
	return &a, nil
}

// grant computes the access each scope gets and signs the token.
func (s *Server) grant(ctx context.Context, user *meta.Account, scopes []Scope) (tokenResponse, error) {
	access, err := Grant(ctx, s.Store, user, scopes)
	if err != nil {
		return tokenResponse{}, err
	}
	sub := ""
	if user != nil {
		sub = user.Name
	}
	now := s.now()
	signer := s.Signer()
	if signer == nil {
		return tokenResponse{}, errors.New("token key not loaded")
	}
	tok, err := signer.Issue(sub, access, now)
	if err != nil {
		return tokenResponse{}, err
	}
	return tokenResponse{Token: tok, AccessToken: tok, ExpiresIn: int(TokenTTL.Seconds()), IssuedAt: now.UTC().Format(time.RFC3339)}, nil
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
// never an error: an account without access gets empty actions and the
// registry answers "denied".
func Grant(ctx context.Context, store *meta.Store, user *meta.Account, scopes []Scope) ([]*token.ResourceActions, error) {
	out := []*token.ResourceActions{}
	for _, sc := range scopes {
		ra := &token.ResourceActions{Type: sc.Type, Class: sc.Class, Name: sc.Name, Actions: []string{}}
		out = append(out, ra)
		var allowed []string
		switch sc.Type {
		case "repository":
			ns, name, err := meta.SplitRepository(sc.Name)
			if err != nil {
				continue
			}
			a, err := store.AccessFor(ctx, user, ns, name)
			if err != nil {
				return nil, err
			}
			allowed = actionsFor(a)
		case "registry":
			if sc.Name == "catalog" && user != nil && user.IsAdmin {
				allowed = []string{"*"}
			}
		}
		for _, act := range sc.Actions {
			if slices.Contains(allowed, act) && !slices.Contains(ra.Actions, act) {
				ra.Actions = append(ra.Actions, act)
			}
		}
	}
	return out, nil
}
