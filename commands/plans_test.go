package commands

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
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

// metricsTokenFile writes a metrics token where --metrics-token-file reads it.
func metricsTokenFile(t *testing.T, token string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "metrics.token")
	if err := os.WriteFile(f, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestInstallObservabilityFlags: --metrics-port publishes the open metrics
// listener in host mode, --metrics-token-file (or $DTR_METRICS_TOKEN) puts
// the token in a secret the service mounts, --otlp-endpoint reaches the
// replica's environment; the token itself is in no output.
func TestInstallObservabilityFlags(t *testing.T) {
	const token = "install-token-0123456789abcdef"
	for _, tc := range []struct {
		name string
		args []string
		env  []string
	}{
		{"token file", []string{"--metrics-token-file", metricsTokenFile(t, token)}, nil},
		{"token env", nil, []string{"DTR_METRICS_TOKEN", token}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"install", "--ucp-node", "worker1", "--dry-run", "--ucp-password", "password1",
				"--metrics-port", "9102", "--otlp-endpoint", "http://otel-collector:4318"}, creds...)
			r := dtr(append(args, tc.args...)...).withEnv(tc.env...)
			r.engine = ucpfake.New("manager1", "worker1")
			r.exec(t)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			for _, w := range []string{
				"store the metrics token as secret dtr-metrics-token-1", "unauthenticated metrics on port 9102→9102 (host mode)",
				`"DTR_METRICS_ADDR=:9102"`, `"DTR_METRICS_TOKEN_FILE=/run/secrets/dtr-metrics-token-1"`, `"DTR_OTLP_ENDPOINT=http://otel-collector:4318"`,
				`"SecretName": "dtr-metrics-token-1"`, `"com.docker.dtr.metrics-port": "9102"`,
				`"TargetPort":9102,"PublishedPort":9102,"PublishMode":"host"`,
			} {
				if !strings.Contains(r.stdout, w) && !strings.Contains(strings.Join(strings.Fields(r.stdout), ""), w) {
					t.Errorf("install --dry-run lacks %s:\n%s", w, r.stdout)
				}
			}
			if strings.Contains(r.stdout+r.stderr, token) {
				t.Fatalf("the metrics token is in the output")
			}
		})
	}

	// Without the flags, none of it.
	r := dtr(append([]string{"install", "--ucp-node", "worker1", "--dry-run", "--ucp-password", "password1"}, creds...)...)
	r.engine = ucpfake.New("manager1", "worker1")
	r.exec(t)
	if r.code != 0 || strings.Contains(r.stdout, "DTR_METRICS") || strings.Contains(r.stdout, "DTR_OTLP") || strings.Contains(r.stdout, "metrics token") {
		t.Fatalf("install without observability flags: exit %d\n%s", r.code, r.stdout)
	}

	// A metrics port that is the HTTPS port, or that another service
	// publishes there, is refused before anything changes.
	for _, tc := range []struct {
		port, want string
	}{{"443", "--metrics-port 443 is also the replica's HTTP or HTTPS port; give another port"}, {"9102", "port 9102 is already published on node worker1 by service prometheus: choose another --metrics-port"}} {
		e := ucpfake.New("manager1", "worker1")
		e.Services = append(e.Services, swarm.Service{ID: "p", Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "prometheus"},
			TaskTemplate: swarm.TaskSpec{Placement: &swarm.Placement{Constraints: []string{"node.hostname==worker1"}}},
			EndpointSpec: &swarm.EndpointSpec{Ports: []swarm.PortConfig{{PublishedPort: 9102, PublishMode: swarm.PortConfigPublishModeHost}}}}})
		r := dtr(append([]string{"install", "--ucp-node", "worker1", "--ucp-password", "password1", "--metrics-port", tc.port}, creds...)...)
		r.engine = e
		r.exec(t)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) || len(e.Services) != 1 || len(e.Secrets) != 0 {
			t.Errorf("--metrics-port %s: exit %d, %d services\n%s", tc.port, r.code, len(e.Services), r.stderr)
		}
	}
}

// withObservability gives l's replica id a metrics port, a metrics token
// secret and a trace collector, as install with those flags would.
func (l *liveCluster) withObservability(t *testing.T, id string) {
	t.Helper()
	reps, err := orchestrator.FindReplicas(t.Context(), l.engine.Cluster())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if r.ID != id {
			continue
		}
		c, err := r.Config()
		if err != nil {
			t.Fatal(err)
		}
		c.MetricsPort, c.MetricsTokenSecret, c.OTLPEndpoint = 9102, orchestrator.MetricsTokenSecretPrefix+"1", "http://otel-collector:4318"
		l.engine.Secrets = append(l.engine.Secrets, swarm.Secret{ID: "metrics-token-id", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: c.MetricsTokenSecret}}})
		ids := r.ObjectIDs()
		ids.MetricsToken = "metrics-token-id"
		if _, err := l.engine.ServiceUpdate(t.Context(), r.ServiceID, r.Meta, orchestrator.ServiceSpec(c, ids), swarm.ServiceUpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no replica %s", id)
}

// TestJoinInheritsObservability: a joining replica reads the cluster's
// metrics token from the same secret, sends traces to the same collector,
// and publishes the open metrics port the existing replica publishes,
// unless --metrics-port says otherwise.
func TestJoinInheritsObservability(t *testing.T) {
	l := newLiveCluster(t, "aaaaaaaaaaaa")
	l.withObservability(t, "aaaaaaaaaaaa")
	join := func(extra ...string) string {
		return l.dryRun(t, append([]string{"join", "--ucp-node", "worker9", "--existing-replica-id", "aaaaaaaaaaaa", "--replica-id", "dddddddddddd"}, extra...)...)
	}
	out := join()
	for _, w := range []string{`"SecretID": "metrics-token-id"`, `"DTR_METRICS_TOKEN_FILE=/run/secrets/dtr-metrics-token-1"`,
		`"DTR_OTLP_ENDPOINT=http://otel-collector:4318"`, `"DTR_METRICS_ADDR=:9102"`, `"com.docker.dtr.metrics-port": "9102"`} {
		if !strings.Contains(out, w) {
			t.Errorf("join --dry-run lacks %s:\n%s", w, out)
		}
	}
	out = join("--metrics-port", "0")
	if strings.Contains(out, "DTR_METRICS_ADDR") || strings.Contains(out, "metrics-port") || !strings.Contains(out, "DTR_METRICS_TOKEN_FILE") {
		t.Errorf("join --metrics-port 0 --dry-run:\n%s", out)
	}
	if out = join("--metrics-port", "9300"); !strings.Contains(out, `"com.docker.dtr.metrics-port": "9300"`) || !strings.Contains(out, `"PublishedPort": 9300`) {
		t.Errorf("join --metrics-port 9300 --dry-run:\n%s", out)
	}
}

// TestReconfigureObservabilityFlags: each flag changes its setting on every
// replica and nothing else; a rotated token is stored as a new secret (in
// no output), the old one removed after; a clashing port is refused.
func TestReconfigureObservabilityFlags(t *testing.T) {
	l := newLiveCluster(t, "aaaaaaaaaaaa", "bbbbbbbbbbbb")
	l.withObservability(t, "aaaaaaaaaaaa")
	l.withObservability(t, "bbbbbbbbbbbb")
	l.engine.Secrets = l.engine.Secrets[:len(l.engine.Secrets)-1] // both read the one secret
	reconf := func(env []string, extra ...string) string {
		t.Helper()
		r := dtr(append(append([]string{"reconfigure", "--existing-replica-id", "aaaaaaaaaaaa", "--dry-run", "--ucp-password", "password1"}, extra...), creds...)...).withEnv(env...)
		r.engine = l.engine
		r.exec(t)
		if r.code != 0 {
			t.Fatalf("reconfigure %v: exit %d\n%s", extra, r.code, r.stderr)
		}
		if c := l.changes(); len(c) > 0 {
			t.Fatalf("--dry-run asked the cluster to change: %v", c)
		}
		return r.stdout + r.stderr
	}
	kept := []string{`"DTR_EXTERNAL_URL=https://dtr.example.com"`, `"HTTP_PROXY=http://proxy:3128"`, `"DTR_TLS_KEY=/run/secrets/dtr-tls-key-0a0b0c0d"`}
	for _, tc := range []struct {
		name  string
		env   []string
		args  []string
		want  []string
		wantN map[string]int // how often, once per replica
		not   []string
	}{
		{"otlp endpoint", nil, []string{"--otlp-endpoint", "https://otel.example.com:4318"},
			[]string{`OTLP endpoint="https://otel.example.com:4318"`}, map[string]int{`"DTR_OTLP_ENDPOINT=https://otel.example.com:4318"`: 2, `"DTR_METRICS_ADDR=:9102"`: 2, `"DTR_METRICS_TOKEN_FILE=/run/secrets/dtr-metrics-token-1"`: 2}, []string{"otel-collector"}},
		{"tracing off", nil, []string{"--otlp-endpoint", ""}, nil, map[string]int{`"DTR_METRICS_ADDR=:9102"`: 2}, []string{"DTR_OTLP_ENDPOINT"}},
		{"metrics port", nil, []string{"--metrics-port", "9400"}, []string{"unauthenticated metrics port 9400"},
			map[string]int{`"com.docker.dtr.metrics-port": "9400"`: 2, `"PublishedPort": 9400`: 2, `"DTR_OTLP_ENDPOINT=http://otel-collector:4318"`: 2}, []string{`"PublishedPort": 9102`}},
		{"metrics port off", nil, []string{"--metrics-port", "0"}, []string{"no unauthenticated metrics port"}, map[string]int{`"DTR_METRICS_TOKEN_FILE=/run/secrets/dtr-metrics-token-1"`: 2}, []string{"DTR_METRICS_ADDR", `"com.docker.dtr.metrics-port"`}},
		{"token rotated from a file", nil, []string{"--metrics-token-file", metricsTokenFile(t, "rotated-token-0123456789abcdef")},
			[]string{"a new metrics token", "store the metrics token as secret dtr-metrics-token-2", "remove the old metrics token's secret dtr-metrics-token-1"},
			map[string]int{`"DTR_METRICS_TOKEN_FILE=/run/secrets/dtr-metrics-token-2"`: 2, `"DTR_METRICS_ADDR=:9102"`: 2}, []string{"rotated-token-0123456789abcdef", "/run/secrets/dtr-metrics-token-1"}},
		{"token rotated from the environment", []string{"DTR_METRICS_TOKEN", "env-token-0123456789abcdef"}, nil,
			[]string{"store the metrics token as secret dtr-metrics-token-2"}, map[string]int{`"SecretName": "dtr-metrics-token-2"`: 2}, []string{"env-token-0123456789abcdef", `"SecretName": "dtr-metrics-token-1"`}},
		{"token removed", nil, []string{"--metrics-token-file", ""}, []string{"no metrics token", "remove the old metrics token's secret dtr-metrics-token-1"},
			map[string]int{`"DTR_METRICS_ADDR=:9102"`: 2}, []string{"DTR_METRICS_TOKEN_FILE", "store the metrics token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := reconf(tc.env, tc.args...)
			for _, w := range append(tc.want, kept...) {
				if !strings.Contains(out, w) {
					t.Errorf("lacks %s:\n%s", w, out)
				}
			}
			for w, n := range tc.wantN {
				if got := strings.Count(out, w); got != n {
					t.Errorf("%s %d times, want %d:\n%s", w, got, n, out)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(out, w) {
					t.Errorf("has %s:\n%s", w, out)
				}
			}
		})
	}

	r := dtr(append([]string{"reconfigure", "--existing-replica-id", "aaaaaaaaaaaa", "--ucp-password", "password1", "--metrics-port", "80"}, creds...)...)
	r.engine = l.engine
	r.exec(t)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "--metrics-port 80 is also the replica's HTTP or HTTPS port; give another port") {
		t.Errorf("--metrics-port on the HTTP port: exit %d\n%s", r.code, r.stderr)
	}
}
