package adminapi

import (
	"context"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// checkMutation guards the requests that change something against
// cross-site request forgery. A browser page on another site can make the
// browser send a POST with the credentials it holds for the registry (cached
// Basic auth today, a console session later), but only as a "simple" request
// (text/plain or form bodies) unless the registry allows it through CORS,
// which it never does; and a browser always names the page's origin in the
// Origin header of such a request. So a mutation must carry its body as
// application/json and come from the registry's own origin or from a client
// that sends no Origin at all (curl, docker, the dtr installer).
func (a *API) checkMutation(r *http.Request) error {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return nil
	}
	if origin := r.Header.Get("Origin"); origin != "" && !a.sameOrigin(r.Context(), origin, r) {
		return errorf(http.StatusForbidden, "CROSS_ORIGIN",
			"cross-origin request refused: Origin %q is not this registry (%s); the admin API takes changes only from its own pages or from clients that send no Origin header", origin, r.Host)
	}
	if r.ContentLength == 0 {
		return nil // no body (e.g. PUT …/members/{member}): nothing to forge with
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE",
			"request bodies must be sent with Content-Type: application/json (got %q)", r.Header.Get("Content-Type"))
	}
	return nil
}

// sameOrigin reports whether origin names the host the request was sent to,
// or the registry's configured external URL (a console page served under it
// behind a load balancer).
func (a *API) sameOrigin(ctx context.Context, origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return false // including "null", sent by sandboxed and privacy-redirected pages
	}
	got := hostPort(u.Scheme, u.Host)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if got == hostPort(scheme, r.Host) {
		return true
	}
	ext := a.externalURL(ctx)
	if ext == "" {
		return false
	}
	if !strings.Contains(ext, "://") {
		ext = "https://" + ext
	}
	e, err := url.Parse(ext)
	return err == nil && e.Host != "" && got == hostPort(e.Scheme, e.Host)
}

func (a *API) externalURL(ctx context.Context) string {
	if a.cfg.Store == nil {
		return ""
	}
	st, _, err := a.cfg.Store.Settings(ctx)
	if err != nil {
		return ""
	}
	return st.ExternalURL
}

// hostPort is host:port in lower case, with the scheme's default port filled
// in, so "https://DTR.example.com" and "dtr.example.com:443" compare equal.
func hostPort(scheme, host string) string {
	host = strings.ToLower(host)
	if h, p, err := net.SplitHostPort(host); err == nil {
		return net.JoinHostPort(h, p)
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}
