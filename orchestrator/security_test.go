package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/ucp/ucpfake"
)

// unwritableReport is what a replica whose storage root is root-owned says
// on /_ping (the registry package's storageProbe).
const unwritableReport = "storage: " + StorageUnwritable + " (filesystem driver: filesystem: mkdir /storage/dtr-health: permission denied): the replica runs as uid 10001; …"

// pingServer answers /_ping with ping(n), n counting from 0.
func pingServer(t *testing.T, ping func(n int) (int, string)) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	n := 0
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		status, msg := ping(n)
		n++
		mu.Unlock()
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"Healthy": status == 200, "Error": msg})
	}))
	t.Cleanup(ts.Close)
	return ts
}

func shortGrace(t *testing.T) {
	t.Helper()
	saved := storageGrace
	storageGrace = 300 * time.Millisecond
	t.Cleanup(func() { storageGrace = saved })
}

// TestWaitHealthyStopsOnUnwritableStorage: a replica that keeps saying it
// cannot write to its storage fails the wait within the grace period, not
// after the whole timeout; one that recovers passes.
func TestWaitHealthyStopsOnUnwritableStorage(t *testing.T) {
	shortGrace(t)
	o := Objects{C: ucpfake.New("node1").Cluster()}
	ctx := context.Background()

	ts := pingServer(t, func(int) (int, string) { return 503, unwritableReport })
	start := time.Now()
	err := o.WaitHealthy(ctx, ts.Client(), ts.URL, "", time.Minute)
	var se *StorageError
	if !errors.As(err, &se) || se.Report != unwritableReport {
		t.Fatalf("unwritable storage: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %v: the wait should stop after the grace period", took)
	}

	ts = pingServer(t, func(n int) (int, string) {
		if n < 1 {
			return 503, unwritableReport
		}
		return 200, ""
	})
	if err := o.WaitHealthy(ctx, ts.Client(), ts.URL, "", time.Minute); err != nil {
		t.Fatalf("a storage that recovers: %v", err)
	}
}

func TestStorageFixNamesTheFix(t *testing.T) {
	se := &StorageError{URL: "https://10.0.0.11:443", Report: unwritableReport}
	for _, tc := range []struct {
		name    string
		storage Storage
		want    []string
	}{
		{"host path", Storage{Volume: "/srv/dtr"}, []string{"chown -R 10001:10001 /srv/dtr on node node1", "replica 000000000001", "permission denied"}},
		{"nfs", Storage{NFSURL: "nfs://10.0.0.5/dtr"}, []string{"NFS export nfs://10.0.0.5/dtr", "10001"}},
		{"named volume", Storage{Volume: "blobs"}, []string{"volume blobs on node node1", "docker volume inspect blobs"}},
		{"default", Storage{}, []string{"uid 10001"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ReplicaConfig{ID: "000000000001", Node: "node1", Storage: tc.storage}
			msg := StorageFix(se, c).Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q lacks %q", msg, w)
				}
			}
		})
	}
	other := errors.New("no 200 from /_ping")
	if StorageFix(other, ReplicaConfig{}) != other || StorageFix(nil, ReplicaConfig{}) != nil {
		t.Fatal("StorageFix changed an error that is not about storage")
	}
}

// replicaOn creates replica id's service on the fake engine, as install
// would, and returns it as FindReplicas sees it.
func replicaOn(t *testing.T, e *ucpfake.Engine, id string, httpsPort int) Replica {
	t.Helper()
	o := Objects{C: e.Cluster()}
	c := ReplicaConfig{ID: id, Node: "node1", NodeAddr: "127.0.0.1", HTTPPort: 80, HTTPSPort: httpsPort,
		Image: "dtr-registry:0.1.0", ImageID: "sha256:ab12", Version: "0.1.0", LogLevel: "info"}
	if _, err := o.CreateService(context.Background(), ServiceSpec(c, ObjectIDs{CAKey: "s", CACert: "c"})); err != nil {
		t.Fatal(err)
	}
	reps, err := FindReplicas(context.Background(), e.Cluster())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("replica %s not found", id)
	return Replica{}
}

func port(t *testing.T, ts *httptest.Server) int {
	t.Helper()
	u, _ := url.Parse(ts.URL)
	p, _ := strconv.Atoi(u.Port())
	return p
}

// TestReconfigureToUnwritableStorageIsUndone: moving the storage to a host
// path the replica cannot write fails naming the chown, and the replica gets
// its old spec back.
func TestReconfigureToUnwritableStorageIsUndone(t *testing.T) {
	shortGrace(t)
	ts := pingServer(t, func(int) (int, string) { return 503, unwritableReport })
	e := ucpfake.New("node1")
	r := replicaOn(t, e, "000000000001", port(t, ts))
	o := Objects{C: e.Cluster()}
	in := &Reconfigure{Replicas: []Replica{r}, Addrs: map[string]string{"node1": "127.0.0.1"},
		Change: Change{Storage: &Storage{Volume: "/srv/x"}}, Client: ts.Client(), Timeout: time.Minute}
	err := o.PlanReconfigure(in).Apply(context.Background(), logger(), false)
	if err == nil || !strings.Contains(err.Error(), "chown -R 10001:10001 /srv/x on node node1") {
		t.Fatalf("reconfigure to an unwritable host path: %v", err)
	}
	s, _, _ := e.ServiceInspectWithRaw(context.Background(), r.ServiceID, swarm.ServiceInspectOptions{})
	if got, want := s.Spec.Labels[LabelConfigHash], r.Spec.Labels[LabelConfigHash]; got != want {
		t.Fatalf("the replica kept the failed settings: config hash %s, want %s", got, want)
	}
}

// TestRotationAloneRestartsNothing: reconfigure --rotate-token-key with no
// other setting is one admin API call and no service update.
func TestRotationAloneRestartsNothing(t *testing.T) {
	e := ucpfake.New("node1")
	r := replicaOn(t, e, "000000000001", 443)
	rotated := 0
	in := &Reconfigure{Replicas: []Replica{r}, Addrs: map[string]string{"node1": "127.0.0.1"},
		RotateTokenKey: func(context.Context) error { rotated++; return nil }, RotateThrough: r.ID}
	p := (Objects{C: e.Cluster()}).PlanReconfigure(in)
	if len(p.Steps) != 1 || !strings.Contains(p.Steps[0].Description, "rotate the token signing key") {
		var d []string
		for _, s := range p.Steps {
			d = append(d, s.Description)
		}
		t.Fatalf("rotation-only plan: %q", d)
	}
	if err := p.Apply(context.Background(), logger(), false); err != nil || rotated != 1 {
		t.Fatalf("apply: %v, rotated %d times", err, rotated)
	}
	s, _, _ := e.ServiceInspectWithRaw(context.Background(), r.ServiceID, swarm.ServiceInspectOptions{})
	if s.Version.Index != r.Meta.Index {
		t.Fatal("rotation updated the replica's service")
	}

	// With another change, the rotation comes last.
	url := "https://dtr2.example.com"
	in.Change = Change{ExternalURL: &url}
	p = (Objects{C: e.Cluster()}).PlanReconfigure(in)
	if last := p.Steps[len(p.Steps)-1].Description; !strings.Contains(last, "rotate") || len(p.Steps) != 2 {
		t.Fatalf("rotation with a change: %d steps, last %q", len(p.Steps), last)
	}
}

// adminServer records what the installer sends to the admin API.
type adminServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, path, contentType, origin, user, pass, body string
}

func newAdminServer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *adminServer {
	t.Helper()
	a := &adminServer{}
	a.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u, p, _ := r.BasicAuth()
		a.mu.Lock()
		a.reqs = append(a.reqs, recorded{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Origin"), u, p, string(b)})
		a.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *adminServer) api() ReplicaAPI {
	return ReplicaAPI{URL: a.URL, User: "admin", Password: "pw", Client: a.Client()}
}

func (a *adminServer) requests() []recorded {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reqs)
}

func TestRotateTokenKey(t *testing.T) {
	a := newAdminServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v0/meta/token_key/rotate" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"keyID":"k2","previousKeyIDs":["k1"],"previousValidUntil":"2026-12-01T10:00:00Z"}`)
	})
	got, err := a.api().RotateTokenKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := contract.TokenKeyRotation{KeyID: "k2", PreviousKeyIDs: []string{"k1"}, PreviousValidUntil: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	if got.KeyID != want.KeyID || !slices.Equal(got.PreviousKeyIDs, want.PreviousKeyIDs) || !got.PreviousValidUntil.Equal(want.PreviousValidUntil) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	req := a.requests()[0]
	if req.contentType != "application/json" || req.body != "{}" || req.user != "admin" || req.pass != "pw" || req.origin != "" {
		t.Fatalf("request %+v", req)
	}

	old := newAdminServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"errors":[{"code":"NOT_FOUND","message":"no such endpoint"}]}`)
	})
	if _, err := old.api().RotateTokenKey(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("a replica without the endpoint: %v", err)
	}
}

// TestAdminCallsSendJSON: every admin API call the installer makes with a
// body says it is JSON and sends no Origin, as the admin API requires of
// mutations.
func TestAdminCallsSendJSON(t *testing.T) {
	a := newAdminServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"keyID":"k2"}`)
	})
	api := a.api()
	ctx := context.Background()
	_, _ = api.AddReplica(ctx, "000000000002", "https://dtr-registry-000000000002:12380")
	u := "https://dtr.example.com"
	_ = api.PatchSettings(ctx, contract.SettingsPatch{ExternalURL: &u})
	_ = api.Promote(ctx, "000000000002", time.Second)
	_ = api.Drain(ctx, "000000000002")
	_ = api.RemoveReplica(ctx, "000000000002")
	_, _ = api.RotateTokenKey(ctx)
	reqs := a.requests()
	if len(reqs) != 6 {
		t.Fatalf("%d requests", len(reqs))
	}
	for _, r := range reqs {
		if r.contentType != "application/json" || r.origin != "" {
			t.Errorf("%s %s: Content-Type %q, Origin %q", r.method, r.path, r.contentType, r.origin)
		}
		if r.body != "" && !json.Valid([]byte(r.body)) {
			t.Errorf("%s %s: body %q is not JSON", r.method, r.path, r.body)
		}
	}
}

// joinCluster is a fake cluster with the CA objects and one replica on
// node1, ready for a join on node2.
func joinCluster(t *testing.T) (*ucpfake.Engine, *Join, *adminServer) {
	t.Helper()
	e := ucpfake.New("node1", "node2")
	e.Secrets = append(e.Secrets, swarm.Secret{ID: "s1", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: CAKeySecret}}})
	e.Configs = append(e.Configs, swarm.Config{ID: "c1", Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: CACertConfig}}})
	existing := Replica{ID: "000000000001", Node: "node1", Spec: swarm.ServiceSpec{TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{}}}}
	a := newAdminServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"initialCluster":"x"}`)
	})
	c := ReplicaConfig{ID: "000000000002", Node: "node2", NodeAddr: "10.0.0.2", HTTPPort: 80, HTTPSPort: 443,
		Image: "dtr-registry:0.1.0", ImageID: "sha256:ab12", JobImageID: "sha256:cd34", Version: "0.1.0"}
	return e, &Join{Replica: c, Existing: existing, API: a.api(), HealthTimeout: time.Second}, a
}

// TestJoinNetworkTest: join first runs a job on the new node, on dtr-ol,
// that reaches the existing replica; when it cannot, join stops before the
// cluster gets a member, naming the node, the network and the fix.
func TestJoinNetworkTest(t *testing.T) {
	ctx := context.Background()
	e, in, admin := joinCluster(t)
	e.Job = func(spec swarm.ServiceSpec) (bool, string) {
		return false, "FATA[0030] no answer from https://dtr-registry-000000000001:8443/_live over the overlay within 30s: dial tcp: lookup dtr-registry-000000000001: no such host\n"
	}
	o := Objects{C: e.Cluster()}
	p, err := o.PlanJoin(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Apply(ctx, logger(), false)
	for _, w := range []string{"node node2", "network dtr-ol", "replica 000000000001", "4789/udp", "7946", "--skip-network-test", "no such host"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("failed network test: %v lacks %q", err, w)
		}
	}
	if n := len(admin.requests()); n != 0 {
		t.Fatalf("the cluster was asked %d times to change after a failed network test", n)
	}
	if len(e.Jobs) != 1 {
		t.Fatalf("%d jobs ran", len(e.Jobs))
	}
	job := e.Jobs[0]
	ts := job.TaskTemplate
	if len(ts.Networks) != 1 || ts.Networks[0].Target != NetworkName {
		t.Errorf("job networks %+v, want %s", ts.Networks, NetworkName)
	}
	if !slices.Equal(ts.Placement.Constraints, []string{"node.hostname==node2"}) {
		t.Errorf("job placement %v", ts.Placement.Constraints)
	}
	if len(ts.ContainerSpec.Configs) != 1 || ts.ContainerSpec.Configs[0].ConfigName != CACertConfig || ts.ContainerSpec.Configs[0].ConfigID != "c1" {
		t.Errorf("job configs %+v", ts.ContainerSpec.Configs)
	}
	if len(ts.ContainerSpec.Mounts) != 0 {
		t.Errorf("the network test needs no engine socket: mounts %+v", ts.ContainerSpec.Mounts)
	}
	if !slices.Contains(ts.ContainerSpec.Args, OverlayLiveURL("000000000001")) || ts.ContainerSpec.Image != "sha256:cd34" {
		t.Errorf("job %s %v", ts.ContainerSpec.Image, ts.ContainerSpec.Args)
	}
	for _, s := range e.Services {
		if s.Spec.Mode.ReplicatedJob != nil {
			t.Errorf("job service %s left behind", s.Spec.Name)
		}
	}

	// A job that reaches the replica lets the join go on.
	e.Job = func(swarm.ServiceSpec) (bool, string) { return true, "reached\n" }
	if err := p.Steps[0].Apply(ctx, &State{Configs: map[string]string{CACertConfig: "c1"}}); err != nil {
		t.Fatalf("passing network test: %v", err)
	}

	// --skip-network-test: no test step, no job.
	e, in, _ = joinCluster(t)
	in.SkipNetworkTest = true
	p, err = (Objects{C: e.Cluster()}).PlanJoin(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Steps {
		if strings.Contains(s.Description, "overlay") {
			t.Fatalf("--skip-network-test planned %q", s.Description)
		}
	}
}

func logger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// TestMetricsTokenOnlyInASecret: the metrics token reaches the replica as a
// Swarm secret, never in the service's environment, arguments, labels or
// the plans --dry-run prints, on install and on rotation; a rotation stores
// the new token under a new name, removes the old secret once no replica
// reads it, and a failed one removes only the secret it created.
func TestMetricsTokenOnlyInASecret(t *testing.T) {
	ctx := context.Background()
	const tok1, tok2 = "first-token-0123456789abcdef", "second-token-0123456789abcdef"
	noToken := func(t *testing.T, what string, b []byte) {
		t.Helper()
		if strings.Contains(string(b), tok1) || strings.Contains(string(b), tok2) {
			t.Fatalf("%s holds the metrics token:\n%s", what, b)
		}
	}

	// Install.
	e := ucpfake.New("node1")
	e.Secrets = append(e.Secrets, swarm.Secret{ID: "old", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: MetricsTokenSecretPrefix + "4"}}},
		swarm.Secret{ID: "x", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: MetricsTokenSecretPrefix + "notanumber"}}})
	o := Objects{C: e.Cluster()}
	c := ReplicaConfig{ID: "000000000001", Node: "node1", NodeAddr: "127.0.0.1", HTTPPort: 80, HTTPSPort: 443,
		Image: "dtr-registry:0.1.0", ImageID: "sha256:ab12", Version: "0.1.0", MetricsPort: 9102}
	p, err := o.PlanInstall(ctx, &Install{Replica: c, OverlaySubnet: "10.1.0.0/24", MetricsToken: tok1})
	if err != nil {
		t.Fatal(err)
	}
	var dry bytes.Buffer
	if err := p.DryRun(&dry); err != nil {
		t.Fatal(err)
	}
	noToken(t, "install --dry-run", dry.Bytes())
	name := MetricsTokenSecretPrefix + "5" // one past the highest there
	st := State{Secrets: map[string]string{CAKeySecret: "ca"}}
	var spec swarm.ServiceSpec
	for _, s := range p.Steps {
		if strings.Contains(s.Description, "store the metrics token as secret "+name) {
			if err := s.Apply(ctx, &st); err != nil {
				t.Fatal(err)
			}
		}
		if s.Service != nil {
			if spec, err = s.Service(st); err != nil {
				t.Fatal(err)
			}
		}
	}
	var stored *swarm.Secret
	for i := range e.Secrets {
		if e.Secrets[i].Spec.Name == name {
			stored = &e.Secrets[i]
		}
	}
	if stored == nil || string(stored.Spec.Data) != tok1 || stored.Spec.Labels[LabelRole] != "metrics-token" {
		t.Fatalf("install stored secret %s as %+v", name, stored)
	}
	noToken(t, "the installed service", mustJSON(spec))
	if cs := spec.TaskTemplate.ContainerSpec; !slices.Contains(cs.Env, "DTR_METRICS_TOKEN_FILE=/run/secrets/"+name) || len(cs.Args) != 0 ||
		!slices.ContainsFunc(cs.Secrets, func(s *swarm.SecretReference) bool { return s.SecretName == name && s.SecretID == stored.ID }) {
		t.Fatalf("installed service: env %v, args %v, secrets %+v", cs.Env, cs.Args, cs.Secrets)
	}

	// Rotation on a running replica.
	var unhealthy atomic.Bool
	ts := pingServer(t, func(int) (int, string) {
		if unhealthy.Load() {
			return 503, unwritableReport
		}
		return 200, ""
	})
	c.HTTPSPort = port(t, ts)
	c.MetricsTokenSecret = name
	if _, err := o.CreateService(ctx, ServiceSpec(c, ObjectIDs{CAKey: "ca", CACert: "cc", MetricsToken: stored.ID})); err != nil {
		t.Fatal(err)
	}
	reps, _ := FindReplicas(ctx, e.Cluster())
	next, err := o.NextMetricsTokenSecret(ctx)
	if err != nil || next != MetricsTokenSecretPrefix+"6" {
		t.Fatalf("next secret: %s %v", next, err)
	}
	in := &Reconfigure{Replicas: reps, Addrs: map[string]string{"node1": "127.0.0.1"}, Change: Change{MetricsToken: tok2},
		MetricsTokenSecret: next, Client: ts.Client(), Timeout: time.Minute}
	p = o.PlanReconfigure(in)
	dry.Reset()
	if err := p.DryRun(&dry); err != nil {
		t.Fatal(err)
	}
	noToken(t, "reconfigure --dry-run", dry.Bytes())
	if err := p.Apply(ctx, logger(), false); err != nil {
		t.Fatal(err)
	}
	after, _ := FindReplicas(ctx, e.Cluster())
	noToken(t, "the reconfigured service", mustJSON(after[0].Spec))
	got, err := after[0].Config()
	if err != nil || got.MetricsTokenSecret != next || got.MetricsPort != 9102 {
		t.Fatalf("after rotation: %+v %v", got, err)
	}
	if id, _ := o.SecretID(ctx, name); id != "" {
		t.Errorf("the old token's secret %s is still there", name)
	}
	if id, _ := o.SecretID(ctx, MetricsTokenSecretPrefix+"4"); id != "old" {
		t.Errorf("rotation removed secret %s, which no replica of it read", MetricsTokenSecretPrefix+"4")
	}

	// A rotation whose replica does not come back takes only its own secret.
	shortGrace(t)
	unhealthy.Store(true)
	in = &Reconfigure{Replicas: after, Addrs: map[string]string{"node1": "127.0.0.1"}, Change: Change{MetricsToken: tok1},
		MetricsTokenSecret: MetricsTokenSecretPrefix + "7", Client: ts.Client(), Timeout: time.Minute}
	if err := o.PlanReconfigure(in).Apply(ctx, logger(), false); err == nil {
		t.Fatal("a rotation whose replica stays unhealthy passed")
	}
	if id, _ := o.SecretID(ctx, MetricsTokenSecretPrefix+"7"); id != "" {
		t.Error("the failed rotation left its new secret")
	}
	if id, _ := o.SecretID(ctx, next); id == "" {
		t.Error("the failed rotation removed the secret the replica reads")
	}
	back, _ := FindReplicas(ctx, e.Cluster())
	if back[0].Spec.Labels[LabelConfigHash] != after[0].Spec.Labels[LabelConfigHash] {
		t.Error("the failed rotation left the replica on the new settings")
	}
}

// TestJoinNeedsTheMetricsTokenSecret: a joining replica reads the cluster's
// metrics token from the same secret; when it is gone, the join stops
// before anything changes and names the fix.
func TestJoinNeedsTheMetricsTokenSecret(t *testing.T) {
	ctx := context.Background()
	e, in, admin := joinCluster(t)
	in.Replica.MetricsTokenSecret, in.Replica.OTLPEndpoint = MetricsTokenSecretPrefix+"2", "http://otel:4318"
	if _, err := (Objects{C: e.Cluster()}).PlanJoin(ctx, in); err == nil || !strings.Contains(err.Error(), "reconfigure --metrics-token-file") {
		t.Fatalf("join without the token's secret: %v", err)
	}
	if len(admin.requests()) != 0 {
		t.Fatal("the cluster was asked to change")
	}
	e.Secrets = append(e.Secrets, swarm.Secret{ID: "tok", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: MetricsTokenSecretPrefix + "2"}}})
	p, err := (Objects{C: e.Cluster()}).PlanJoin(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	var spec swarm.ServiceSpec
	for _, s := range p.Steps {
		if s.Service != nil {
			spec, _ = s.Service(p.Start)
		}
	}
	cs := spec.TaskTemplate.ContainerSpec
	if !slices.ContainsFunc(cs.Secrets, func(s *swarm.SecretReference) bool { return s.SecretID == "tok" }) ||
		!slices.Contains(cs.Env, "DTR_METRICS_TOKEN_FILE=/run/secrets/dtr-metrics-token-2") || !slices.Contains(cs.Env, "DTR_OTLP_ENDPOINT=http://otel:4318") {
		t.Fatalf("joined service: env %v, secrets %+v", cs.Env, cs.Secrets)
	}
}
