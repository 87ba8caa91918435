// Package registrytest runs real dtr replicas inside a test process: an
// embedded metadata member on loopback ports, HTTPS with the cluster CA, and
// the admin account, for tests and benchmarks that need no engine.
package registrytest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/member"
	"github.com/dtr-registry/dtr/registry/meta"
)

// Admin credentials of every test replica.
const (
	AdminUser     = "admin"
	AdminPassword = "admin-Passw0rd"
)

// Replica is a running test replica.
type Replica struct {
	*registry.Replica
	URL    string // https://127.0.0.1:<port>
	Host   string // 127.0.0.1:<port>
	HTTP   string // http://127.0.0.1:<port>
	Client *http.Client
	Opts   registry.Options

	t      testing.TB
	cancel context.CancelFunc
	served chan error
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Options returns options for a new single-replica cluster in dir.
func Options(t testing.TB, dir string) registry.Options {
	peer := fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
	log := logrus.New()
	log.SetOutput(io.Discard)
	if os.Getenv("DTR_TEST_LOG") != "" {
		log.SetOutput(testWriter{t})
	}
	return registry.Options{
		ReplicaID:      "aaaaaaaaaaaa",
		DataDir:        dir,
		PeerListen:     peer,
		PeerAdvertise:  peer,
		ClientSocket:   clientSocket(t, dir),
		InsecurePeers:  true,
		AdminUsername:  AdminUser,
		AdminPassword:  AdminPassword,
		Storage:        meta.Storage{Type: "filesystem"},
		LogLevel:       "error",
		Log:            log,
		HealthInterval: 500 * time.Millisecond,
		ReportInterval: time.Second,
		// No 128 MiB reserve file per test replica, and a low mark that a
		// developer's nearly full disk does not reach; the tests of a full
		// metadata volume set the production values (zero).
		MetadataLowSpace:     16 << 20,
		MetadataSpaceReserve: -1,
	}
}

// clientSocket leaves the metadata client socket at the replica's default,
// under dir, when Linux can bind that path, and otherwise puts it in a short
// private directory: test dirs are named after the test and can be too long.
func clientSocket(t testing.TB, dir string) string {
	t.Helper()
	if abs, err := filepath.Abs(dir); err == nil && len(member.ClientSocketIn(abs)) <= member.MaxClientSocketPath {
		return "" // the default
	}
	short, err := os.MkdirTemp("", "dtr-replica-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	return filepath.Join(short, "etcd.sock")
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// Start starts a replica with o and serves it on loopback until the test ends.
func Start(t testing.TB, o registry.Options) *Replica {
	t.Helper()
	// Loopback ports of its own, kept across Restart; a restarted replica
	// answers on them while its metadata member waits for a quorum.
	if o.HTTPAddr == "" {
		o.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	}
	if o.HTTPSAddr == "" {
		o.HTTPSAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	}
	if o.ExternalURL == "" {
		// As an operator's --dtr-external-url: realms and redirects use it.
		o.ExternalURL = "https://" + o.HTTPSAddr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r, err := registry.Start(ctx, o)
	if err != nil {
		t.Fatalf("starting the replica: %v", err)
	}
	httpLn, err := net.Listen("tcp", o.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	httpsLn, err := net.Listen("tcp", o.HTTPSAddr)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.CACertPEM())
	sctx, scancel := context.WithCancel(context.Background())
	rep := &Replica{
		Replica: r,
		Host:    httpsLn.Addr().String(),
		URL:     "https://" + httpsLn.Addr().String(),
		HTTP:    "http://" + httpLn.Addr().String(),
		Client:  &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: contract.TLSServerName}, MaxIdleConnsPerHost: 64}},
		Opts:    o,
		t:       t,
		cancel:  scancel,
		served:  make(chan error, 1),
	}
	go func() { rep.served <- r.ServeListeners(sctx, httpLn, httpsLn) }()
	t.Cleanup(rep.Stop)
	rep.WaitHealthy(30 * time.Second)
	return rep
}

// StartNew starts a fresh single-replica cluster in a temporary directory.
func StartNew(t testing.TB) *Replica {
	return Start(t, Options(t, filepath.Join(t.TempDir(), "data")))
}

// WaitHealthy polls /_ping until it answers 200.
func (r *Replica) WaitHealthy(within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		resp, err := r.Client.Get(r.URL + "/_ping")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = string(b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("replica not healthy after %v: %s", within, last)
}

// Stop stops serving and closes the replica; safe twice.
func (r *Replica) Stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.served
	r.cancel = nil
	if err := r.Close(); err != nil {
		r.t.Logf("closing the replica: %v", err)
	}
}

// Restart stops the replica and starts it again on the same data.
func (r *Replica) Restart() *Replica {
	r.t.Helper()
	r.Stop()
	o := r.Opts
	o.AdminPassword = "" // an existing cluster needs no bootstrap
	return Start(r.t, o)
}

// Join adds a replica with ID id to r's cluster, as the installer does: the
// learner is added through r's admin API (as user with password), started
// with the cluster CA, and promoted once it has caught up.
func Join(t testing.TB, r *Replica, user, password, id string) *Replica {
	t.Helper()
	o := Options(t, filepath.Join(t.TempDir(), "data"))
	o.ReplicaID, o.AdminPassword, o.Join = id, "", true
	caDir := r.Opts.CADir
	if caDir == "" {
		caDir = filepath.Join(r.Opts.DataDir, "ca") // the default
	}
	o.CACertFile, o.CAKeyFile = filepath.Join(caDir, "ca.pem"), filepath.Join(caDir, "ca-key.pem")
	var added contract.AddReplicaResponse
	if st := r.API(t, user, password, "POST", "/api/v0/meta/replicas", contract.AddReplicaRequest{ReplicaID: id, PeerURL: o.PeerAdvertise}, &added); st != http.StatusCreated {
		t.Fatalf("adding replica %s: %d", id, st)
	}
	o.InitialCluster = added.InitialCluster
	// Promote from aside: Start waits until the new replica is healthy,
	// which a learner is not.
	promoted := make(chan struct{})
	go func() {
		defer close(promoted)
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			req, _ := http.NewRequest(http.MethodPost, r.URL+"/api/v0/meta/replicas/"+id+"/promote", nil)
			req.SetBasicAuth(user, password)
			if resp, err := r.Client.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusNoContent {
					return
				}
			}
		}
	}()
	j := Start(t, o)
	<-promoted
	return j
}
