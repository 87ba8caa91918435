// Package ucptest is a stand-in for UCP/MKE in tests: an https server with
// /ca and /auth/login that forwards bearer-authenticated Engine API calls to a
// real Docker engine, and serves UCP's users, organizations and teams (GET /id/
// and the eNZi accounts API under /enzi/v0/, see enzi.go). Requests without a
// valid token get 401, as from UCP. The engine socket is dialled only when an
// Engine API call arrives, so identity tests need no engine.
package ucptest

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/dtr-registry/dtr/pki"
)

// Server is a running UCP stand-in.
type Server struct {
	// URL is https://127.0.0.1:<port>.
	URL string
	// CAPEM is the CA that signed the server's certificate, as served at /ca.
	CAPEM    []byte
	Username string
	Password string

	srv      *httptest.Server
	mu       sync.Mutex
	tokens   map[string]string // session token → account name
	logins   int
	pageSize int
	accounts map[string]*account // by name
}

// Options configure a stand-in.
type Options struct {
	// EngineSocket is the engine the stand-in forwards to (default /var/run/docker.sock).
	EngineSocket string
	Username     string
	Password     string
	// Hosts are the names in the server certificate (default 127.0.0.1, localhost).
	Hosts []string
	// Users and Orgs are UCP's accounts besides Username, which is always a
	// UCP administrator.
	Users []User
	Orgs  []Org
	// PageSize is the most items one eNZi list answer holds, whatever the
	// client asks for (default 100): small values exercise paging.
	PageSize int
}

// Start runs a stand-in until Close.
func Start(o Options) (*Server, error) {
	if o.EngineSocket == "" {
		o.EngineSocket = "/var/run/docker.sock"
	}
	if len(o.Hosts) == 0 {
		o.Hosts = []string{"127.0.0.1", "localhost"}
	}
	ca, err := pki.NewCA("ucptest CA")
	if err != nil {
		return nil, err
	}
	kp, err := ca.Issue("ucptest", o.Hosts, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	cert, err := kp.TLSCertificate()
	if err != nil {
		return nil, err
	}
	if o.PageSize <= 0 {
		o.PageSize = 100
	}
	s := &Server{CAPEM: ca.CertPEM(), Username: o.Username, Password: o.Password,
		tokens: map[string]string{}, pageSize: o.PageSize, accounts: map[string]*account{}}
	if err := s.populate(o); err != nil {
		return nil, err
	}
	engine := engineProxy(o.EngineSocket)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ca", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(s.CAPEM) })
	mux.HandleFunc("POST /auth/login", s.login)
	s.enziRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.session(r)
		if !ok {
			unauthorized(w)
			return
		}
		// UCP's RBAC: a user without grants may not use the Engine API; the
		// stand-in grants it to administrators only.
		if !who.admin {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"message":"access denied"}`))
			return
		}
		engine.ServeHTTP(w, r)
	})
	s.srv = httptest.NewUnstartedServer(mux)
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.srv.StartTLS()
	s.URL = s.srv.URL
	return s, nil
}

// engineProxy forwards Engine API calls to the engine's unix socket.
func engineProxy(socket string) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "http", Host: "docker"})
			r.Out.Header.Del("Authorization")
		},
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}
}

// login is POST /auth/login {"username","password"} → {"auth_token"}. A
// deactivated account is refused like a wrong password.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req struct{ Username, Password string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, `{"message":"bad request"}`, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	a := s.accounts[req.Username]
	if a == nil || a.org || !a.active || subtle.ConstantTimeCompare([]byte(a.password), []byte(req.Password)) != 1 {
		s.mu.Unlock()
		http.Error(w, `{"message":"invalid credentials"}`, http.StatusUnauthorized)
		return
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	s.tokens[tok] = a.name
	s.logins++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"auth_token": tok})
}

// session is the signed-in, active account behind a request's bearer token.
// A copy: the caller holds no lock.
func (s *Server) session(r *http.Request) (account, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return account{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[s.tokens[tok]]
	if a == nil || !a.active {
		return account{}, false
	}
	return *a, true
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(`{"message":"unauthorized: a valid session token is required"}`))
}

// Logins is how many logins succeeded.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// Close stops the stand-in.
func (s *Server) Close() { s.srv.Close() }
