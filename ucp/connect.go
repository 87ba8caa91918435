package ucp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/client"
	"github.com/docker/go-connections/tlsconfig"
	"github.com/sirupsen/logrus"
)

// Options is everything needed to reach the control plane.
type Options struct {
	URL      string // --ucp-url
	Username string // --ucp-username; logs in to UCP/MKE
	Password string // --ucp-password; never logged
	CA       string // --ucp-ca: PEM of the CA to trust
	Insecure bool   // --ucp-insecure-tls
	// CertPath is a client bundle directory (ca.pem, cert.pem, key.pem), from
	// $DOCKER_CERT_PATH, for tcp:// endpoints with mutual TLS.
	CertPath string
	Log      logrus.FieldLogger
	// Timeout bounds each step of connecting (0: 30 s).
	Timeout time.Duration
}

// ErrControlPlane wraps every failure to reach, trust, log in to or use the
// control plane, so that callers can tell them from other failures.
var ErrControlPlane = errors.New("control plane")

// ErrAuthentication marks a login refused by UCP/MKE.
var ErrAuthentication = errors.New("authentication failed")

// ErrBadCA marks a --ucp-ca that holds no certificate.
var ErrBadCA = errors.New("invalid --ucp-ca")

// ErrNotManager marks an engine that is not a Swarm manager.
var ErrNotManager = errors.New("not a swarm manager")

// Cluster is a connection to a Swarm manager, directly or through UCP/MKE.
type Cluster struct {
	Endpoint Endpoint
	// Engine is the narrow Engine API client; only ucp and orchestrator use it.
	Engine Engine
	// Manager describes the manager node that answered.
	Manager ManagerInfo
}

// ManagerInfo is what the control plane said about itself when dtr connected.
type ManagerInfo struct {
	NodeID        string
	Hostname      string
	EngineVersion string
	APIVersion    string
	ClusterID     string
}

// Close releases the connection.
func (c *Cluster) Close() error { return c.Engine.Close() }

// Error is a control-plane failure: its message is for the operator, and
// errors.Is matches ErrControlPlane and its kind (ErrAuthentication, …).
type Error struct {
	Kind error // nil, ErrAuthentication or ErrNotManager
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrControlPlane) and errors.Is(err, e.Kind) true.
func (e *Error) Is(target error) bool {
	return target == ErrControlPlane || (e.Kind != nil && target == e.Kind)
}

func cpErr(format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}

func kindErr(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Connect reaches the control plane named by opts.URL, logs in where it must,
// and checks that it is a Swarm manager.
func Connect(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		opts.Log = l
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	ep, err := ParseURL(opts.URL)
	if err != nil {
		return nil, err
	}
	if ep.Scheme != SchemeUCP {
		opts.Log.Infof("Connecting to the Docker engine at %s", ep)
	}
	var engine *client.Client
	switch ep.Scheme {
	case SchemeSocket:
		engine, err = socketClient(ep)
	case SchemeEngine:
		engine, err = engineClient(ep, opts)
	case SchemeUCP:
		engine, err = ucpClient(ctx, ep, opts)
	}
	if err != nil {
		return nil, err
	}
	c := &Cluster{Endpoint: ep, Engine: engine}
	cctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	opts.Log.Info("health checking ucp")
	if err := c.CheckManager(cctx); err != nil {
		engine.Close()
		return nil, err
	}
	return c, nil
}

func socketClient(ep Endpoint) (*client.Client, error) {
	if _, err := os.Stat(ep.Address); err != nil {
		return nil, cpErr("cannot reach the Docker engine at %s: %v; when dtr runs in a container, mount the socket: -v /var/run/docker.sock:/var/run/docker.sock", ep, err)
	}
	c, err := client.NewClientWithOpts(client.WithHost(ep.String()), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, cpErr("connecting to %s: %v", ep, err)
	}
	return c, nil
}

// engineClient reaches a manager's Engine API over TLS: a client bundle from
// $DOCKER_CERT_PATH, a CA from --ucp-ca, or --ucp-insecure-tls.
func engineClient(ep Endpoint, opts Options) (*client.Client, error) {
	if opts.CertPath == "" && opts.CA == "" && !opts.Insecure {
		return nil, cpErr("%s needs TLS: set DOCKER_CERT_PATH to a client bundle (ca.pem, cert.pem, key.pem), pass --ucp-ca \"$(cat ca.pem)\", or --ucp-insecure-tls; dtr does not send cluster-admin requests in clear text", ep)
	}
	tlsOpts := tlsconfig.Options{InsecureSkipVerify: opts.Insecure}
	if opts.CertPath != "" {
		for _, f := range []string{"cert.pem", "key.pem"} {
			if _, err := os.Stat(filepath.Join(opts.CertPath, f)); err != nil {
				return nil, cpErr("client bundle in DOCKER_CERT_PATH=%s: %v", opts.CertPath, err)
			}
		}
		tlsOpts.CertFile = filepath.Join(opts.CertPath, "cert.pem")
		tlsOpts.KeyFile = filepath.Join(opts.CertPath, "key.pem")
		if opts.CA == "" {
			if _, err := os.Stat(filepath.Join(opts.CertPath, "ca.pem")); err == nil {
				tlsOpts.CAFile = filepath.Join(opts.CertPath, "ca.pem")
			}
		}
	}
	cfg, err := tlsconfig.Client(tlsOpts)
	if err != nil {
		return nil, cpErr("TLS settings for %s: %v", ep, err)
	}
	if opts.CA != "" {
		pool, err := CAPool(opts.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}}
	c, err := client.NewClientWithOpts(client.WithHost(ep.String()), client.WithHTTPClient(hc),
		client.WithScheme("https"), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, cpErr("connecting to %s: %v", ep, err)
	}
	return c, nil
}

// CAPool parses --ucp-ca: one or more PEM certificates.
func CAPool(pemText string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(pemText)) {
		return nil, fmt.Errorf("%w: it holds no PEM certificate; pass the file's content, e.g. --ucp-ca \"$(cat ca.pem)\"", ErrBadCA)
	}
	return pool, nil
}

// ucpClient validates UCP's certificate, logs in and returns an Engine API
// client that sends the session token on every call.
func ucpClient(ctx context.Context, ep Endpoint, opts Options) (*client.Client, error) {
	if opts.Username == "" || opts.Password == "" {
		return nil, cpErr("UCP/MKE at %s needs --ucp-username and --ucp-password", ep)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: opts.Insecure} //nolint:gosec // the operator's explicit choice
	if opts.CA != "" {
		pool, err := CAPool(opts.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	opts.Log.Info("Validating UCP cert")
	caPEM, err := fetchCA(ctx, ep, cfg, opts.Timeout)
	if err != nil {
		return nil, err
	}
	if opts.Insecure {
		// Trust on first use, as DTR did: pin the CA UCP just served when
		// its certificate verifies against it; otherwise stay insecure.
		if pool := x509.NewCertPool(); pool.AppendCertsFromPEM(caPEM) {
			pinned := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
			if _, err := fetchCA(ctx, ep, pinned, opts.Timeout); err == nil {
				cfg = pinned
				opts.Log.Debug("pinned the CA served by UCP at /ca")
			} else {
				opts.Log.Warn("UCP's certificate does not verify against the CA it serves at /ca; continuing without verification because of --ucp-insecure-tls")
			}
		}
	}
	opts.Log.Info("Connecting to UCP")
	tok, err := login(ctx, ep, cfg, opts)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}}
	c, err := client.NewClientWithOpts(client.WithHost("tcp://"+ep.Address), client.WithHTTPClient(hc),
		client.WithScheme("https"), client.WithAPIVersionNegotiation(),
		client.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + tok}))
	if err != nil {
		return nil, cpErr("connecting to %s: %v", ep, err)
	}
	return c, nil
}

func httpsClient(cfg *tls.Config, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}}
}

// fetchCA is DTR's certificate test: GET /ca with the operator's TLS settings.
func fetchCA(ctx context.Context, ep Endpoint, cfg *tls.Config, timeout time.Duration) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+ep.Address+"/ca", nil)
	if err != nil {
		return nil, cpErr("%v", err)
	}
	resp, err := httpsClient(cfg, timeout).Do(req)
	if err != nil {
		return nil, tlsError(ep, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, cpErr("reading https://%s/ca: %v", ep.Address, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, cpErr("https://%s/ca answered %s; is %s a UCP/MKE address? For a plain Swarm manager use tcp://<manager>:2376 or unix:///var/run/docker.sock", ep.Address, resp.Status, ep.Address)
	}
	return body, nil
}

// tlsError turns a failed TLS handshake into DTR's advice.
func tlsError(ep Endpoint, err error) error {
	var unknown x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	var host x509.HostnameError
	switch {
	case errors.As(err, &host):
		return cpErr("Failed to connect to UCP; make sure that you are using a domain listed in UCP's TLS certificate's subject alternate names: %v", err)
	case errors.As(err, &unknown) || errors.As(err, &verify):
		return cpErr("Certificate validation for UCP failed. You can get the UCP CA from https://%s/ca and then use it by appending --ucp-ca \"$(cat ca.pem)\" to this command. (%v)", ep.Address, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return cpErr("UCP at %s did not answer in time: %v", ep.Address, err)
	}
	return cpErr("cannot reach UCP at %s: %v", ep.Address, err)
}

// login is UCP/MKE's POST /auth/login → {"auth_token": …}.
func login(ctx context.Context, ep Endpoint, cfg *tls.Config, opts Options) (string, error) {
	body, _ := json.Marshal(map[string]string{"username": opts.Username, "password": opts.Password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+ep.Address+"/auth/login", bytes.NewReader(body))
	if err != nil {
		return "", cpErr("%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpsClient(cfg, opts.Timeout).Do(req)
	if err != nil {
		return "", tlsError(ep, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", kindErr(ErrAuthentication, "Couldn't login: Failed to authenticate. Status code: %d. Check --ucp-username and --ucp-password ($UCP_USERNAME, $UCP_PASSWORD)", resp.StatusCode)
	}
	var out struct {
		Token string `json:"auth_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil || out.Token == "" {
		return "", cpErr("Couldn't login: UCP at %s answered without an auth_token", ep.Address)
	}
	return out.Token, nil
}

// CheckManager pings the engine, makes sure it manages a swarm and records
// what it says about itself in c.Manager.
func (c *Cluster) CheckManager(ctx context.Context) error {
	if _, err := c.Engine.Ping(ctx); err != nil {
		if client.IsErrConnectionFailed(err) {
			return cpErr("cannot reach the Docker engine at %s: %v", c.Endpoint, err)
		}
		if strings.Contains(err.Error(), "401") || strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
			return kindErr(ErrAuthentication, "%s refused the session: %v", c.Endpoint, err)
		}
		return cpErr("pinging the engine at %s: %v", c.Endpoint, err)
	}
	info, err := c.Engine.Info(ctx)
	if err != nil {
		return cpErr("reading the engine's info at %s: %v", c.Endpoint, err)
	}
	c.Manager = ManagerInfo{NodeID: info.Swarm.NodeID, Hostname: info.Name, EngineVersion: info.ServerVersion}
	if info.Swarm.Cluster != nil {
		c.Manager.ClusterID = info.Swarm.Cluster.ID
	}
	if v, err := c.Engine.ServerVersion(ctx); err == nil {
		c.Manager.APIVersion = v.APIVersion
	}
	switch {
	case info.Swarm.LocalNodeState != "active":
		return kindErr(ErrNotManager,
			"the engine at %s (%s) is not part of a swarm (state %q); dtr places replicas as Swarm services: run `docker swarm init` on it, or point --ucp-url at a manager of an existing swarm",
			c.Endpoint, info.Name, info.Swarm.LocalNodeState)
	case !info.Swarm.ControlAvailable:
		return kindErr(ErrNotManager,
			"the engine at %s (%s) is a swarm worker, not a manager; point --ucp-url at a manager (`docker node ls` works only there), or promote this node with `docker node promote %s` on a manager",
			c.Endpoint, info.Name, info.Name)
	}
	return nil
}

// ConnectLocal reaches a node's own engine through its socket, whether or
// not it is a manager: node jobs use it on workers.
func ConnectLocal(ctx context.Context, url string) (*Cluster, error) {
	ep, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	engine, err := socketClient(ep)
	if err != nil {
		return nil, err
	}
	if _, err := engine.Ping(ctx); err != nil {
		engine.Close()
		return nil, cpErr("pinging the engine at %s: %v", ep, err)
	}
	return &Cluster{Endpoint: ep, Engine: engine}, nil
}
