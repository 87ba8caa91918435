package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/internal/reqinfo"
	"github.com/dtr-registry/dtr/registry/meta"
)

// The session cookie. The __Host- prefix makes browsers refuse it unless it
// is Secure, for the whole site (Path=/) and without a Domain, so no other
// host under the same domain can set or read it.
const (
	sessionCookie = "__Host-dtr-session"
	loginCookie   = "__Host-dtr-login" // the sign-in form's CSRF value (no session yet)
)

// maxForm bounds a form's body.
const maxForm = 1 << 20

// session is a signed-in request: the account as the metadata store has it
// now, and its session record.
type session struct {
	c     *Console
	r     *http.Request
	acc   meta.Account
	rec   meta.Session
	token string // the admin API token, issued on first use
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func setCookie(w http.ResponseWriter, name, value string, expires time.Time) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
	if value == "" {
		c.MaxAge = -1
	} else if !expires.IsZero() {
		c.Expires = expires
	}
	http.SetCookie(w, c)
}

// touchEvery is how stale LastSeen may get before a request writes it: a
// write per page view would load the metadata store for nothing.
func (c *Console) touchEvery() time.Duration {
	return min(time.Minute, c.cfg.IdleTimeout/10)
}

// signedIn runs fn for a request with a live session, and checks the CSRF
// token of every POST before fn sees it. A request without a session is
// sent to sign in; one whose session ended gets the "session expired" page.
func (c *Console) signedIn(fn func(w http.ResponseWriter, r *http.Request, s *session) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(sessionCookie)
		if err != nil || ck.Value == "" {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.expired(w, r, "you are not signed in")
			return
		}
		ctx := r.Context()
		rec, rev, err := c.cfg.Store.Session(ctx, ck.Value)
		if errors.Is(err, meta.ErrSessionEnded) {
			c.expired(w, r, "it was signed out or removed")
			return
		}
		if err != nil {
			c.fail(w, r, nil, err)
			return
		}
		now := c.cfg.Now()
		if ended, why := rec.Expired(now); ended {
			_ = c.cfg.Store.DeleteSession(ctx, ck.Value)
			c.expired(w, r, why)
			return
		}
		acc, err := c.cfg.Store.Account(ctx, rec.User)
		if err != nil && !errors.Is(err, meta.ErrNotFound) {
			c.fail(w, r, nil, err)
			return
		}
		if err != nil || !acc.IsActive || acc.IsOrg || acc.Epoch != rec.Epoch {
			// Deleted, deactivated, or its password or admin rights changed.
			_ = c.cfg.Store.DeleteSession(ctx, ck.Value)
			c.expired(w, r, "the account changed (deleted, deactivated, new password or different admin rights)")
			return
		}
		if now.Sub(rec.LastSeen) >= c.touchEvery() {
			if err := c.cfg.Store.TouchSession(ctx, ck.Value, rec, rev, now); err != nil {
				c.cfg.Log.WithError(err).Warn("console: recording session activity")
			}
		}
		reqinfo.SetUser(ctx, acc.Name)
		s := &session{c: c, r: r, acc: acc, rec: rec}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				c.fail(w, r, s, errorPage(http.StatusBadRequest, "The form could not be read: "+err.Error()))
				return
			}
			if got := r.PostForm.Get("csrf"); subtle.ConstantTimeCompare([]byte(got), []byte(rec.CSRF)) != 1 {
				c.fail(w, r, s, errorPage(http.StatusForbidden, "This form was not sent by a page of your current session (its security token is missing or old), so nothing was changed. Go back, reload the page and try again."))
				return
			}
		}
		if err := fn(w, r, s); err != nil {
			c.fail(w, r, s, err)
		}
	}
}

// expired answers a request whose session ended with the page that says so
// and a way back in; the cookie is cleared.
func (c *Console) expired(w http.ResponseWriter, r *http.Request, why string) {
	setCookie(w, sessionCookie, "", time.Time{})
	next := ""
	if r.Method == http.MethodGet {
		next = r.URL.RequestURI()
	}
	c.render(w, r, http.StatusUnauthorized, "expired", nil, page{Title: "Session expired", Message: why, Next: next})
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	ue := asUserError(err)
	if ue.Status >= 500 {
		c.cfg.Log.WithError(err).WithField("path", r.URL.Path).Error("console")
	}
	c.render(w, r, ue.Status, "message", s, page{Title: http.StatusText(ue.Status), Error: ue.Message})
}

// safeNext keeps a post-sign-in destination on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.HasPrefix(next, "/login") {
		return "/repositories"
	}
	return next
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.showLogin(w, r, http.StatusOK, "")
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, problem string) {
	v := randomToken()
	setCookie(w, loginCookie, v, time.Time{})
	p := page{Title: "Sign in", Error: problem, Next: safeNext(r.FormValue("next")), CSRF: v}
	if r.URL.Query().Get("signedout") != "" && problem == "" {
		p.Flash = "You are signed out."
	}
	c.render(w, r, status, "login", nil, p)
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		c.showLogin(w, r, http.StatusBadRequest, "The sign-in form could not be read.")
		return
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostForm.Get("csrf"))) != 1 {
		c.showLogin(w, r, http.StatusForbidden, "The sign-in form expired or your browser did not send its cookie. Allow cookies for this site and sign in again.")
		return
	}
	name, pw := strings.TrimSpace(r.PostForm.Get("username")), r.PostForm.Get("password")
	if name == "" || pw == "" {
		c.showLogin(w, r, http.StatusBadRequest, "Enter your username and password.")
		return
	}
	acc, err := c.cfg.Logins.Check(r.Context(), r.RemoteAddr, name, pw)
	if err == nil && acc.APIToken != nil {
		// A session acts with the account's full rights; an access token
		// may carry limits (read-only, some repositories) it would escape.
		c.showLogin(w, r, http.StatusUnauthorized, "Sign in with your password: access tokens are for docker login and the API.")
		return
	}
	var te *auth.ThrottledError
	switch {
	case errors.Is(err, auth.ErrBadCredentials):
		c.showLogin(w, r, http.StatusUnauthorized, "Wrong username or password.")
		return
	case errors.As(err, &te):
		w.Header().Set("Retry-After", strings.TrimSuffix(te.RetryAfter.Round(time.Second).String(), "s"))
		c.showLogin(w, r, http.StatusTooManyRequests, "Too many failed sign-ins: "+te.Error()+".")
		return
	case errors.Is(err, auth.ErrBusy):
		c.showLogin(w, r, http.StatusServiceUnavailable, "The replica is busy checking other sign-ins; try again in a few seconds.")
		return
	case errors.Is(err, identity.ErrUnavailable):
		c.showLogin(w, r, http.StatusServiceUnavailable, "The identity source (LDAP or UCP) cannot check your password now; try again, or sign in with a local account. The replica's log names the cause.")
		return
	case err != nil:
		c.cfg.Log.WithError(err).Warn("console sign-in")
		c.showLogin(w, r, asUserError(err).Status, asUserError(err).Message)
		return
	}
	now := c.cfg.Now().UTC()
	value := randomToken()
	rec := meta.Session{User: acc.Name, Epoch: acc.Epoch, CSRF: randomToken(), CreatedAt: now, LastSeen: now,
		ExpiresAt: now.Add(c.cfg.MaxAge), IdleFor: c.cfg.IdleTimeout}
	if n, err := c.cfg.Store.PruneSessions(r.Context(), acc.Name, now); err != nil {
		c.cfg.Log.WithError(err).Warn("console: removing ended sessions")
	} else if n > 0 {
		c.cfg.Log.WithField("sessions", n).Debug("console: removed ended sessions")
	}
	if err := c.cfg.Store.CreateSession(r.Context(), value, rec); err != nil {
		c.showLogin(w, r, asUserError(err).Status, asUserError(err).Message)
		return
	}
	reqinfo.SetUser(r.Context(), acc.Name)
	setCookie(w, loginCookie, "", time.Time{})
	setCookie(w, sessionCookie, value, rec.ExpiresAt)
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) error {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		if err := c.cfg.Store.DeleteSession(r.Context(), ck.Value); err != nil {
			return err
		}
	}
	setCookie(w, sessionCookie, "", time.Time{})
	http.Redirect(w, r, "/login?signedout=1", http.StatusSeeOther)
	return nil
}
