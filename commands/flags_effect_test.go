package commands

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/pki"
	"github.com/dtr-registry/dtr/ucp/ucpfake"
)

// TestRefusedFlags: flags this version accepts for DTR's scripts but cannot
// apply are refused before anything changes, never silently ignored.
func TestRefusedFlags(t *testing.T) {
	withReplica := func() *ucpfake.Engine {
		e := ucpfake.New("manager1", "worker1")
		e.AddReplicaService("aaaaaaaaaaaa", "worker1", images.Version)
		return e
	}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"overlay subnet flag", []string{"emergency-repair", "--overlay-subnet", "10.9.0.0/24", "--yes"}, nil, "--overlay-subnet is not supported by emergency-repair"},
		{"overlay subnet env", []string{"emergency-repair", "--yes"}, []string{"DTR_OVERLAY_SUBNET", "10.9.0.0/24"}, "--overlay-subnet is not supported by emergency-repair"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dtr(append(tc.args, append(creds, "--ucp-password", "password1")...)...).withEnv(tc.env...)
			r.engine = withReplica()
			before := len(r.engine.Services)
			r.exec(t)
			if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "nothing was changed") {
				t.Fatalf("exit %d, want %d; stderr lacks %q:\n%s", r.code, ExitUsage, tc.want, r.stderr)
			}
			if len(r.engine.Services) != before || len(r.connected) != 0 {
				t.Fatalf("a refused flag reached the cluster")
			}
		})
	}
}

// TestReconfigureRotateTokenKeyIsAChange: --rotate-token-key alone is a
// reconfiguration (it gets past "nothing to change"); with no flag at all
// the error names it.
func TestReconfigureRotateTokenKeyIsAChange(t *testing.T) {
	e := ucpfake.New("manager1", "worker1")
	e.AddReplicaService("aaaaaaaaaaaa", "worker1", images.Version)
	r := dtr(append([]string{"reconfigure", "--ucp-password", "password1"}, creds...)...)
	r.engine = e
	r.exec(t)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "--rotate-token-key") {
		t.Fatalf("reconfigure with nothing: exit %d\n%s", r.code, r.stderr)
	}
	for _, env := range [][]string{nil, {"DTR_ROTATE_TOKEN_KEY", "1"}} {
		args := append([]string{"reconfigure", "--ucp-password", "password1"}, creds...)
		if env == nil {
			args = append(args, "--rotate-token-key")
		}
		r := dtr(args...).withEnv(env...)
		r.engine = e
		r.exec(t)
		if strings.Contains(r.stderr, "nothing to change") {
			t.Fatalf("--rotate-token-key (env %v) counted as no change:\n%s", env, r.stderr)
		}
	}
}

// TestNodeJobNetworkTest drives the hidden command the join's overlay test
// runs on the new node: it trusts the cluster CA, names the replica by the
// name in its certificate, and fails with the URL when nothing answers.
func TestNodeJobNetworkTest(t *testing.T) {
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue("replica", []string{contract.TLSServerName, "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_live" {
			w.Write([]byte(`{"Live":true}`))
			return
		}
		http.NotFound(w, r)
	}))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}

	r := dtr("node-job", "network-test", "--ca", caFile, ts.URL+"/_live").exec(t)
	if r.code != 0 || !strings.Contains(r.stdout, "reached "+ts.URL+"/_live over the overlay") {
		t.Fatalf("reachable replica: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	saved := networkTestWithin
	networkTestWithin = time.Second
	t.Cleanup(func() { networkTestWithin = saved })
	ts.Close()
	r = dtr("node-job", "network-test", "--ca", caFile, ts.URL+"/_live").exec(t)
	if r.code == 0 || !strings.Contains(r.stderr, "no answer from "+ts.URL+"/_live over the overlay") {
		t.Fatalf("unreachable replica: exit %d\n%s", r.code, r.stderr)
	}
}
