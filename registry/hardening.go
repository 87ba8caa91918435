package registry

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dtr-registry/dtr/registry/auth"
)

// maxHeaderBytes bounds a request's headers (Go's default is 1 MB): the
// largest legitimate ones are a bearer token (auth.MaxTokenSize) and a
// token request naming auth.MaxScopes scopes.
const maxHeaderBytes = 64 << 10

// smallBodyTimeout is how long a client may take to send the body of an
// admin API or token request (at most adminapi.MaxBody): a client that
// opens a request and sends nothing holds a connection and a goroutine.
const smallBodyTimeout = 15 * time.Second

// hstsMaxAge tells browsers to use HTTPS only for a year.
const hstsMaxAge = "max-age=31536000"

// publicBase is where clients reach the registry, https://host[:port]: the
// configured external URL. Without one (a replica reached directly), the
// request's Host only when it names this replica (a name or address in its
// own certificate), else the address the connection arrived at. Never an
// arbitrary Host or X-Forwarded-*, which the client chooses: a realm or
// redirect built from them sends credentials wherever the client was told.
func (r *Replica) publicBase(req *http.Request) string {
	if p := r.externalURL.Load(); p != nil && *p != "" {
		if u, err := url.Parse(*p); err == nil && u.Host != "" {
			return "https://" + u.Host
		}
	}
	if host, port, ok := r.ownHost(req.Host); ok {
		if req.TLS == nil {
			port = strconv.Itoa(r.opts.PublicHTTPSPort)
		}
		if port == "" || port == "443" {
			return "https://" + hostLiteral(host)
		}
		return "https://" + net.JoinHostPort(host, port)
	}
	addr, _ := req.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if addr == nil {
		return "https://localhost"
	}
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "https://localhost"
	}
	if req.TLS == nil { // the plain HTTP port: send clients to HTTPS
		port = strconv.Itoa(r.opts.PublicHTTPSPort)
	}
	if port == "443" {
		return "https://" + hostLiteral(host)
	}
	return "https://" + net.JoinHostPort(host, port)
}

// ownHost splits a Host header that names this replica.
func (r *Replica) ownHost(hostport string) (host, port string, ok bool) {
	host, port = hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", "", false
		}
	}
	return host, port, host != "" && r.ownNames[strings.ToLower(host)]
}

func hostLiteral(h string) string {
	if ip := net.ParseIP(h); ip != nil && ip.To4() == nil {
		return "[" + h + "]"
	}
	return h
}

// realm is the token endpoint clients are sent to by a 401.
func (r *Replica) realm(req *http.Request) string {
	return r.publicBase(req) + auth.TokenPath
}

// smallBodies gives a request's body smallBodyTimeout to arrive. The
// deadline is lifted once the whole body was read: a deadline left on the
// connection would cancel a long response (a backup stream) when it passed.
// A body cut short keeps it, so the server's drain of the rest ends too.
func smallBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.ContentLength != 0 && req.Body != nil && req.Body != http.NoBody {
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(smallBodyTimeout)) == nil {
				req.Body = &deadlineBody{ReadCloser: req.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
			}
		}
		next.ServeHTTP(w, req)
	})
}

type deadlineBody struct {
	io.ReadCloser
	lift func()
	once sync.Once
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.lift)
	}
	return n, err
}

// strictTransport adds HSTS to every HTTPS response.
func strictTransport(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Strict-Transport-Security", hstsMaxAge)
		next.ServeHTTP(w, req)
	})
}
