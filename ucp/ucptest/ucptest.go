// Package ucptest is a stand-in for UCP/MKE in tests: an https server with
// /ca and /auth/login that forwards bearer-authenticated Engine API calls to a
// real Docker engine. Requests without a valid token get 401, as from UCP.
package ucptest

import (
	"context"
	"crypto/rand"
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

	srv    *httptest.Server
	mu     sync.Mutex
	tokens map[string]bool
	logins int
}

// Options configure a stand-in.
type Options struct {
	// EngineSocket is the engine the stand-in forwards to (default /var/run/docker.sock).
	EngineSocket string
	Username     string
	Password     string
	// Hosts are the names in the server certificate (default 127.0.0.1, localhost).
	Hosts []string
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
	s := &Server{CAPEM: ca.CertPEM(), Username: o.Username, Password: o.Password, tokens: map[string]bool{}}
	engine := engineProxy(o.EngineSocket)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ca", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(s.CAPEM) })
	mux.HandleFunc("POST /auth/login", s.login)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !s.valid(r.Header.Get("Authorization")) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"message":"unauthorized: a valid session token is required"}`))
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

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req struct{ Username, Password string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, `{"message":"bad request"}`, http.StatusBadRequest)
		return
	}
	if req.Username != s.Username || req.Password != s.Password {
		http.Error(w, `{"message":"invalid credentials"}`, http.StatusUnauthorized)
		return
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	s.mu.Lock()
	s.tokens[tok] = true
	s.logins++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"auth_token": tok})
}

func (s *Server) valid(header string) bool {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[tok]
}

// Logins is how many logins succeeded.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// Close stops the stand-in.
func (s *Server) Close() { s.srv.Close() }
