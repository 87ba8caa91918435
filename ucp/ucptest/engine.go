package ucptest

import (
	"crypto/tls"
	"crypto/x509"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/pki"
)

// EngineServer is a Swarm manager's Engine API over mutual TLS
// (tcp://…:2376), in front of the local engine's socket.
type EngineServer struct {
	// URL is tcp://127.0.0.1:<port>.
	URL string
	// BundleDir holds ca.pem, cert.pem and key.pem: a client bundle for
	// DOCKER_CERT_PATH.
	BundleDir string
	// CAPEM is the CA of both the server and the client certificates.
	CAPEM []byte
	srv   *httptest.Server
}

// StartEngine serves the engine at socket over mutual TLS and writes a client
// bundle into dir.
func StartEngine(socket, dir string) (*EngineServer, error) {
	if socket == "" {
		socket = "/var/run/docker.sock"
	}
	ca, err := pki.NewCA("ucptest engine CA")
	if err != nil {
		return nil, err
	}
	server, err := ca.Issue("engine", []string{"127.0.0.1", "localhost"}, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	clientKP, err := ca.Issue("admin", nil, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	for name, data := range map[string][]byte{"ca.pem": ca.CertPEM(), "cert.pem": clientKP.CertPEM, "key.pem": clientKP.KeyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	cert, err := server.TLSCertificate()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	s := &EngineServer{BundleDir: dir, CAPEM: ca.CertPEM()}
	s.srv = httptest.NewUnstartedServer(engineProxy(socket))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	s.srv.StartTLS()
	s.URL = "tcp://" + strings.TrimPrefix(s.srv.URL, "https://")
	return s, nil
}

// Close stops the server.
func (s *EngineServer) Close() { s.srv.Close() }
