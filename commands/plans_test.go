package commands

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/pki"
	"github.com/dtr-registry/dtr/ucp/ucpfake"
)

// liveCluster is a fake swarm whose replicas' admin API is one test server
// that reports a healthy cluster and records every other request.
type liveCluster struct {
	engine *ucpfake.Engine
	mu     sync.Mutex
	calls  []string // requests other than the cluster status
}

func (l *liveCluster) changes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.calls...)
}

const tlsCert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

// newLiveCluster places replicas ids on nodes worker1…, each with the same
// settings (NFS storage, external URL, proxy, operator certificate), as
// install and join would have made them.
func newLiveCluster(t *testing.T, ids ...string) *liveCluster {
	t.Helper()
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
	l := &liveCluster{engine: ucpfake.New("manager1")}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/api/v0/meta/cluster_status" {
			st := contract.ClusterStatus{HasQuorum: true, ReplicaHealth: map[string]contract.ReplicaHealth{}}
			for _, id := range ids {
				st.ReplicaHealth[id] = contract.ReplicaHealth{Healthy: true}
			}
			_ = json.NewEncoder(w).Encode(st)
			return
		}
		l.mu.Lock()
		l.calls = append(l.calls, r.Method+" "+r.URL.Path)
		l.mu.Unlock()
		http.Error(w, "a dry run must not get here", http.StatusTeapot)
	}))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	u, _ := url.Parse(ts.URL)
	port, _ := strconv.Atoi(u.Port())

	e := l.engine
	certConfig, keySecret := "dtr-tls-cert-0a0b0c0d", "dtr-tls-key-0a0b0c0d"
	e.Secrets = append(e.Secrets,
		swarm.Secret{ID: "ca-key-id", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: orchestrator.CAKeySecret}}},
		swarm.Secret{ID: "tls-key-id", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: keySecret}}})
	e.Configs = append(e.Configs,
		swarm.Config{ID: "ca-cert-id", Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: orchestrator.CACertConfig}, Data: ca.CertPEM()}},
		swarm.Config{ID: "tls-cert-id", Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: certConfig}, Data: []byte(tlsCert)}})
	for i, id := range ids {
		node := "worker" + strconv.Itoa(i+1)
		e.AddNode(node, "127.0.0.1", swarm.NodeRoleWorker)
		c := orchestrator.ReplicaConfig{ID: id, Node: node, NodeAddr: "127.0.0.1", HTTPPort: 80, HTTPSPort: port,
			Storage: orchestrator.Storage{NFSURL: "nfs://10.0.0.5/dtr"}, Image: images.Registry(), ImageID: "sha256:ab12", Version: images.Version,
			ExternalURL: "https://dtr.example.com", LogLevel: "info", HTTPProxy: "http://proxy:3128", NoProxy: "acme.com",
			TLSCertConfig: certConfig, TLSKeySecret: keySecret}
		ids := orchestrator.ObjectIDs{CAKey: "ca-key-id", CACert: "ca-cert-id", TLSKey: "tls-key-id", TLSCert: "tls-cert-id"}
		if _, err := e.ServiceCreate(t.Context(), orchestrator.ServiceSpec(c, ids), swarm.ServiceCreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.AddNode("worker9", "127.0.0.1", swarm.NodeRoleWorker)
	return l
}

// dryRun runs dtr args --dry-run against l and checks that nothing changed.
func (l *liveCluster) dryRun(t *testing.T, args ...string) string {
	t.Helper()
	before := len(l.engine.Services) + len(l.engine.Secrets) + len(l.engine.Configs)
	r := dtr(append(append(args, "--dry-run", "--ucp-password", "password1"), creds...)...)
	r.engine = l.engine
	r.exec(t)
	if r.code != 0 {
		t.Fatalf("dtr %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	if after := len(l.engine.Services) + len(l.engine.Secrets) + len(l.engine.Configs); after != before {
		t.Fatalf("dtr %s --dry-run changed the swarm: %d objects, were %d", args[0], after, before)
	}
	if c := l.changes(); len(c) > 0 {
		t.Fatalf("dtr %s --dry-run asked the cluster to change: %v", args[0], c)
	}
	return r.stdout
}

func TestRemoveAndDestroyDryRun(t *testing.T) {
	l := newLiveCluster(t, "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc")
	out := l.dryRun(t, "remove", "--replica-ids", "bbbbbbbbbbbb", "--existing-replica-id", "aaaaaaaaaaaa")
	for _, w := range []string{"Remove replica(s) bbbbbbbbbbbb through replica aaaaaaaaaaaa (3 steps)", "1. drain replica(s) bbbbbbbbbbbb",
		"remove replica bbbbbbbbbbbb's metadata member", "remove service dtr-registry-bbbbbbbbbbbb and its volumes on node worker2"} {
		if !strings.Contains(out, w) {
			t.Errorf("remove --dry-run lacks %q:\n%s", w, out)
		}
	}
	out = l.dryRun(t, "destroy", "--replica-id", "cccccccccccc")
	if !strings.Contains(out, "Destroy replica cccccccccccc (1 steps)") || strings.Contains(out, "network dtr-ol") {
		t.Errorf("destroy --dry-run of one of three replicas:\n%s", out)
	}
}

// TestJoinInheritsThroughConfig: a joining replica gets the existing
// replica's storage, external URL, proxies and certificate objects, read
// through its Config, and --dry-run shows them in the spec it would create.
func TestJoinInheritsThroughConfig(t *testing.T) {
	l := newLiveCluster(t, "aaaaaaaaaaaa")
	out := l.dryRun(t, "join", "--ucp-node", "worker9", "--existing-replica-id", "aaaaaaaaaaaa", "--replica-id", "dddddddddddd")
	for _, w := range []string{
		`"DTR_EXTERNAL_URL=https://dtr.example.com"`, `"HTTP_PROXY=http://proxy:3128"`, `"NO_PROXY=acme.com"`, `"DTR_JOIN=true"`,
		`"SecretID": "tls-key-id"`, `"ConfigID": "tls-cert-id"`, `"DTR_TLS_KEY=/run/secrets/dtr-tls-key-0a0b0c0d"`,
		`"Source": "dtr-registry-nfs-dddddddddddd"`, `"SecretID": "ca-key-id"`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("join --dry-run spec lacks %s:\n%s", w, out)
		}
	}
}

func TestReconfigureDryRunShowsUpdatedSpecs(t *testing.T) {
	l := newLiveCluster(t, "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc")
	out := l.dryRun(t, "reconfigure", "--existing-replica-id", "aaaaaaaaaaaa", "--http-proxy", "http://proxy2:3128")
	if n := strings.Count(out, `"HTTP_PROXY=http://proxy2:3128"`); n != 3 || strings.Contains(out, "proxy:3128") {
		t.Errorf("reconfigure --dry-run: %d updated specs, want 3:\n%s", n, out)
	}
	if !strings.Contains(out, `"DTR_EXTERNAL_URL=https://dtr.example.com"`) {
		t.Errorf("reconfigure --dry-run dropped a setting it does not change:\n%s", out)
	}
}
