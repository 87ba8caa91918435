package orchestrator

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/ucp/ucpfake"
)

// roundTripConfigs are the kinds of replica the installer makes.
func roundTripConfigs() map[string]ReplicaConfig {
	base := ReplicaConfig{ID: "0123456789ab", Node: "node1", NodeAddr: "10.0.0.11", HTTPPort: 80, HTTPSPort: 443,
		Image: "dtr-registry:0.1.0", ImageID: "sha256:ab12", Version: "0.1.0", LogLevel: "info",
		JobImageID: "sha256:cd34"}
	with := func(f func(*ReplicaConfig)) ReplicaConfig {
		c := base
		f(&c)
		return c
	}
	return map[string]ReplicaConfig{
		"new cluster": with(func(c *ReplicaConfig) { c.AdminUsername, c.ExternalURL = "admin", "https://dtr.example.com" }),
		"join": with(func(c *ReplicaConfig) {
			c.ID, c.Node, c.NodeAddr = "00000000000b", "node2", "10.0.0.12"
			c.Join, c.InitialCluster = true, "0123456789ab=https://dtr-registry-0123456789ab:12380,00000000000b=https://dtr-registry-00000000000b:12380"
		}),
		"restore keeping the backup's storage": with(func(c *ReplicaConfig) { c.Restore, c.RestoreStorage = true, contract.RestoreKeepStorage }),
		"restore on a host path": with(func(c *ReplicaConfig) {
			c.Restore, c.RestoreStorage, c.Storage = true, contract.RestoreFilesystem, Storage{Volume: "/srv/dtr"}
		}),
		"nfs": with(func(c *ReplicaConfig) {
			c.Storage = Storage{NFSURL: "nfs://10.0.0.5/dtr", NFSOptions: "rw,nfsvers=4.1", AsyncNFS: true}
		}),
		"host path":    with(func(c *ReplicaConfig) { c.Storage = Storage{Volume: "/srv/dtr"} }),
		"named volume": with(func(c *ReplicaConfig) { c.Storage = Storage{Volume: "blobs"} }),
		"operator tls": with(func(c *ReplicaConfig) {
			c.AdminUsername = "admin"
			c.TLSCertConfig, c.TLSKeySecret = tlsNames("-----BEGIN CERTIFICATE-----\n")
		}),
		"proxies": with(func(c *ReplicaConfig) {
			c.HTTPProxy, c.HTTPSProxy, c.NoProxy = "http://proxy:3128", "http://user:pw@proxy:3129", "acme.com,.acme.org,10.0.0.0/8"
		}),
		"log level, external URL and ports": with(func(c *ReplicaConfig) {
			c.LogLevel, c.ExternalURL, c.HTTPPort, c.HTTPSPort = "debug", "https://dtr.example.com:4443", 8081, 4443
		}),
		"no node address": with(func(c *ReplicaConfig) { c.NodeAddr = "" }),
		"metrics port, metrics token and tracing": with(func(c *ReplicaConfig) {
			c.MetricsPort, c.MetricsTokenSecret, c.OTLPEndpoint = 9102, MetricsTokenSecretPrefix+"3", "https://otel.example.com:4318"
		}),
		"published peer port": with(func(c *ReplicaConfig) {
			c.PeerPort, c.Join, c.InitialCluster = 12381, true, "0123456789ab=https://10.0.0.11:12381,00000000000b=https://10.0.0.12:12380"
		}),
	}
}

func idsFor(c ReplicaConfig) ObjectIDs {
	ids := ObjectIDs{CAKey: "secret-ca", CACert: "config-ca"}
	if c.AdminUsername != "" {
		ids.Admin = "secret-admin"
	}
	if c.TLSKeySecret != "" {
		ids.TLSKey, ids.TLSCert = "secret-tls", "config-tls"
	}
	if c.MetricsTokenSecret != "" {
		ids.MetricsToken = "secret-metrics"
	}
	return ids
}

// TestConfigInvertsServiceSpec: for every kind of replica, the service
// ServiceSpec makes, created on an engine and found again by FindReplicas,
// gives back the configuration it was made from (all of it but JobImageID,
// which is the installer's and not in the service), and the IDs of the
// objects it references; the two make the same service again.
func TestConfigInvertsServiceSpec(t *testing.T) {
	ctx := context.Background()
	for name, c := range roundTripConfigs() {
		t.Run(name, func(t *testing.T) {
			ids := idsFor(c)
			spec := ServiceSpec(c, ids)
			// As the engine API carries it.
			var wire swarm.ServiceSpec
			if err := json.Unmarshal(mustJSON(spec), &wire); err != nil {
				t.Fatal(err)
			}
			e := ucpfake.New(c.Node)
			if _, err := (Objects{C: e.Cluster()}).CreateService(ctx, wire); err != nil {
				t.Fatal(err)
			}
			reps, err := FindReplicas(ctx, e.Cluster())
			if err != nil || len(reps) != 1 {
				t.Fatalf("FindReplicas: %v, %d replicas", err, len(reps))
			}
			got, err := reps[0].Config()
			if err != nil {
				t.Fatal(err)
			}
			want := c
			want.JobImageID = ""
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Config() = %+v\nwant       %+v", got, want)
			}
			if gotIDs := reps[0].ObjectIDs(); gotIDs != ids {
				t.Fatalf("ObjectIDs() = %+v, want %+v", gotIDs, ids)
			}
			if again := mustJSON(ServiceSpec(got, reps[0].ObjectIDs())); string(again) != string(mustJSON(spec)) {
				t.Fatalf("the service made again differs:\n%s\nwas\n%s", again, mustJSON(spec))
			}
		})
	}
}

// TestPeerURL: a replica with a published peer port is reached at its
// node's address on that port, and the service publishes it in host mode;
// one without (deployed before, or on a loopback-advertised node) by its
// name on the overlay, with nothing published.
func TestPeerURL(t *testing.T) {
	c := roundTripConfigs()["published peer port"]
	if got, want := c.PeerURL(), "https://10.0.0.11:12381"; got != want {
		t.Errorf("PeerURL() = %s, want %s", got, want)
	}
	spec := ServiceSpec(c, idsFor(c))
	if !slices.Contains(spec.TaskTemplate.ContainerSpec.Env, "DTR_PEER_ADVERTISE=https://10.0.0.11:12381") {
		t.Errorf("the replica is not told its peer URL: env %v", spec.TaskTemplate.ContainerSpec.Env)
	}
	published := func(spec swarm.ServiceSpec) []swarm.PortConfig {
		var out []swarm.PortConfig
		for _, p := range spec.EndpointSpec.Ports {
			if p.TargetPort == contract.PeerPort {
				out = append(out, p)
			}
		}
		return out
	}
	if p := published(spec); len(p) != 1 || p[0].PublishedPort != 12381 || p[0].PublishMode != swarm.PortConfigPublishModeHost {
		t.Errorf("peer port published as %+v, want 12381 in host mode", p)
	}
	c.NodeAddr = "fd00::11"
	if got, want := c.PeerURL(), "https://[fd00::11]:12381"; got != want {
		t.Errorf("PeerURL() on IPv6 = %s, want %s", got, want)
	}
	old := roundTripConfigs()["join"]
	if got, want := old.PeerURL(), contract.PeerURL(old.ID); got != want {
		t.Errorf("PeerURL() without a peer port = %s, want %s", got, want)
	}
	if p := published(ServiceSpec(old, idsFor(old))); len(p) != 0 {
		t.Errorf("a replica without a peer port publishes %+v", p)
	}
}

// TestRoundTripCoversEveryField: every field of ReplicaConfig is set in
// some case above, so a new setting that ServiceSpec writes and Config does
// not read fails TestConfigInvertsServiceSpec.
func TestRoundTripCoversEveryField(t *testing.T) {
	typ := reflect.TypeOf(ReplicaConfig{})
	for i := 0; i < typ.NumField(); i++ {
		set := false
		for _, c := range roundTripConfigs() {
			set = set || !reflect.ValueOf(c).Field(i).IsZero()
		}
		if !set {
			t.Errorf("no round-trip case sets ReplicaConfig.%s: add one", typ.Field(i).Name)
		}
	}
}

func TestConfigRefusesForeignServices(t *testing.T) {
	if _, err := (Replica{ID: "0123456789ab"}).Config(); err == nil || !strings.Contains(err.Error(), "no container spec") {
		t.Errorf("a service without a container: %v", err)
	}
	c := roundTripConfigs()["operator tls"]
	spec := ServiceSpec(c, idsFor(c))
	r := replicaOf(swarm.Service{Spec: spec})
	cs := *spec.TaskTemplate.ContainerSpec
	r.Spec.TaskTemplate.ContainerSpec = &cs
	cs.Env = append(slices.Clone(cs.Env), "DTR_JOIN=perhaps")
	if _, err := r.Config(); err == nil || !strings.Contains(err.Error(), "DTR_JOIN") {
		t.Errorf("an environment that does not parse: %v", err)
	}
	cs.Env = spec.TaskTemplate.ContainerSpec.Env
	cs.Secrets = cs.Secrets[:1]
	if _, err := r.Config(); err == nil || !strings.Contains(err.Error(), "reconfigure --dtr-cert") {
		t.Errorf("a TLS key file with no secret behind it: %v", err)
	}
}

// TestJoinPassesStateNotInput: the add-replica answer reaches the new
// service through the run's State; the plan's input stays as it was.
func TestJoinPassesStateNotInput(t *testing.T) {
	ctx := context.Background()
	e, in, admin := joinCluster(t)
	e.Job = func(swarm.ServiceSpec) (bool, string) { return true, "reached\n" }
	u, _ := url.Parse(admin.URL)
	host, port, _ := net.SplitHostPort(u.Host)
	in.Replica.NodeAddr = host
	in.Replica.HTTPSPort, _ = strconv.Atoi(port)
	before := *in
	p, err := (Objects{C: e.Cluster()}).PlanJoin(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(ctx, logger(), false); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*in, before) {
		t.Fatalf("the join changed its input: %+v", in.Replica)
	}
	reps, err := FindReplicas(ctx, e.Cluster())
	if err != nil || len(reps) != 1 {
		t.Fatalf("FindReplicas: %v %d", err, len(reps))
	}
	got, err := reps[0].Config()
	if err != nil || !got.Join || got.InitialCluster != "x" {
		t.Fatalf("joined replica: %+v %v", got, err)
	}
	var added contract.AddReplicaRequest
	for _, r := range admin.requests() {
		if r.method == http.MethodPost && r.path == "/api/v0/meta/replicas" {
			_ = json.Unmarshal([]byte(r.body), &added)
		}
	}
	if added != (contract.AddReplicaRequest{ReplicaID: in.Replica.ID, PeerURL: contract.PeerURL(in.Replica.ID)}) {
		t.Fatalf("add-replica request %+v", added)
	}
}

// TestReconfigureUndoRemovesOnlyWhatItCreated: a failed reconfiguration to
// a new certificate removes the objects this run created, through the
// run's State, and keeps an object of that name that existed before.
func TestReconfigureUndoRemovesOnlyWhatItCreated(t *testing.T) {
	shortGrace(t)
	ts := pingServer(t, func(int) (int, string) { return 503, unwritableReport })
	e := ucpfake.New("node1")
	r := replicaOn(t, e, "000000000001", port(t, ts))
	cert := "-----BEGIN CERTIFICATE-----\nnew\n"
	certConfig, keySecret := tlsNames(cert)
	e.Configs = append(e.Configs, swarm.Config{ID: "old", Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: certConfig}}})
	in := &Reconfigure{Replicas: []Replica{r}, Addrs: map[string]string{"node1": "127.0.0.1"},
		Change: Change{TLSCert: cert, TLSKey: "-----BEGIN PRIVATE KEY-----\n", Storage: &Storage{Volume: "/srv/x"}}, Client: ts.Client(), Timeout: time.Minute}
	p := (Objects{C: e.Cluster()}).PlanReconfigure(in)
	spec, err := p.Steps[1].Service(State{Secrets: map[string]string{keySecret: "k"}, Configs: map[string]string{certConfig: "old"}})
	if err != nil {
		t.Fatal(err)
	}
	updated := replicaOf(swarm.Service{Spec: spec})
	if c, err := updated.Config(); err != nil || c.TLSKeySecret != keySecret || c.TLSCertConfig != certConfig || updated.ObjectIDs().TLSCert != "old" {
		t.Fatalf("updated spec: %+v %+v %v", c, updated.ObjectIDs(), err)
	}
	if err := p.Apply(context.Background(), logger(), false); err == nil {
		t.Fatal("reconfigure to an unwritable storage passed")
	}
	o := Objects{C: e.Cluster()}
	if id, _ := o.ConfigID(context.Background(), certConfig); id != "old" {
		t.Errorf("the undo removed config %s, which existed before", certConfig)
	}
	if id, _ := o.SecretID(context.Background(), keySecret); id != "" {
		t.Errorf("the undo left secret %s, which this run created", keySecret)
	}
}

// TestObservabilitySpec: --metrics-port publishes the replica's open
// metrics listener in host mode and tells the replica to serve it; the
// metrics token is a secret the replica's user alone reads, named to the
// replica by its file; the OTLP endpoint is the replica's setting. A
// replica without them has none of it.
func TestObservabilitySpec(t *testing.T) {
	c := roundTripConfigs()["metrics port, metrics token and tracing"]
	c.MetricsPort = 9200
	spec := ServiceSpec(c, idsFor(c))
	cs := spec.TaskTemplate.ContainerSpec
	for _, want := range []string{"DTR_METRICS_ADDR=:9102", "DTR_METRICS_TOKEN_FILE=/run/secrets/dtr-metrics-token-3", "DTR_OTLP_ENDPOINT=https://otel.example.com:4318"} {
		if !slices.Contains(cs.Env, want) {
			t.Errorf("env lacks %s: %v", want, cs.Env)
		}
	}
	var metrics []swarm.PortConfig
	for _, p := range spec.EndpointSpec.Ports {
		if p.TargetPort == contract.MetricsPort {
			metrics = append(metrics, p)
		}
	}
	if len(metrics) != 1 || metrics[0].PublishedPort != 9200 || metrics[0].PublishMode != swarm.PortConfigPublishModeHost || metrics[0].Protocol != swarm.PortConfigProtocolTCP {
		t.Errorf("metrics port published as %+v, want 9200→9102/tcp in host mode", metrics)
	}
	if spec.Labels[LabelMetricsPort] != "9200" {
		t.Errorf("label %s = %q", LabelMetricsPort, spec.Labels[LabelMetricsPort])
	}
	var tok *swarm.SecretReference
	for _, s := range cs.Secrets {
		if s.SecretName == "dtr-metrics-token-3" {
			tok = s
		}
	}
	if tok == nil || tok.SecretID != "secret-metrics" || tok.File.Name != "dtr-metrics-token-3" || tok.File.UID != "10001" || tok.File.Mode != 0o400 {
		t.Errorf("metrics token secret mounted as %+v", tok)
	}
	if d := Describe(c); !strings.Contains(d, "unauthenticated metrics on port 9200→9102 (host mode)") || !strings.Contains(d, "metrics token from secret dtr-metrics-token-3") || !strings.Contains(d, "traces to https://otel.example.com:4318") {
		t.Errorf("Describe: %s", d)
	}

	plain := roundTripConfigs()["new cluster"]
	spec = ServiceSpec(plain, idsFor(plain))
	for _, e := range spec.TaskTemplate.ContainerSpec.Env {
		if strings.HasPrefix(e, "DTR_METRICS_") || strings.HasPrefix(e, "DTR_OTLP_") {
			t.Errorf("a replica without observability settings has %s", e)
		}
	}
	if len(spec.EndpointSpec.Ports) != 2 || spec.Labels[LabelMetricsPort] != "" || len(spec.TaskTemplate.ContainerSpec.Secrets) != 2 {
		t.Errorf("a replica without observability settings: ports %+v, labels %v, secrets %d", spec.EndpointSpec.Ports, spec.Labels, len(spec.TaskTemplate.ContainerSpec.Secrets))
	}

	// A token file with no secret behind it was changed outside dtr.
	r := replicaOf(swarm.Service{Spec: ServiceSpec(c, idsFor(c))})
	cs = r.Spec.TaskTemplate.ContainerSpec
	cs.Secrets = slices.DeleteFunc(slices.Clone(cs.Secrets), func(s *swarm.SecretReference) bool { return s.SecretName == "dtr-metrics-token-3" })
	if _, err := r.Config(); err == nil || !strings.Contains(err.Error(), "reconfigure --metrics-token-file") {
		t.Errorf("a metrics token file with no secret behind it: %v", err)
	}
}

// TestReconfigureObservabilityChangesOnlyWhatWasAsked: each observability
// change, applied to a replica's service, gives the configuration it had
// with that one setting changed; taking it back gives the service it had,
// to the byte.
func TestReconfigureObservabilityChangesOnlyWhatWasAsked(t *testing.T) {
	base := roundTripConfigs()["proxies"]
	base.TLSCertConfig, base.TLSKeySecret = tlsNames("-----BEGIN CERTIFICATE-----\n")
	base.MetricsTokenSecret = MetricsTokenSecretPrefix + "1"
	orig := ServiceSpec(base, idsFor(base))
	st := State{Secrets: map[string]string{MetricsTokenSecretPrefix + "2": "secret-metrics-2"}}
	apply := func(spec swarm.ServiceSpec, ch Change) (swarm.ServiceSpec, ReplicaConfig) {
		t.Helper()
		r := replicaOf(swarm.Service{Spec: spec})
		got, err := updatedSpec(r, ch, "", "", MetricsTokenSecretPrefix+"2", st)
		if err != nil {
			t.Fatal(err)
		}
		c, err := replicaOf(swarm.Service{Spec: got}).Config()
		if err != nil {
			t.Fatal(err)
		}
		return got, c
	}
	port, off, otlp, none := 9102, 0, "http://otel-collector:4318", ""
	for _, tc := range []struct {
		name       string
		change     Change
		want       func(*ReplicaConfig)
		undo       Change
		undoesToo  bool
		wantSecret string
	}{
		{"metrics port", Change{MetricsPort: &port}, func(c *ReplicaConfig) { c.MetricsPort = 9102 }, Change{MetricsPort: &off}, true, "secret-metrics"},
		{"OTLP endpoint", Change{OTLPEndpoint: &otlp}, func(c *ReplicaConfig) { c.OTLPEndpoint = otlp }, Change{OTLPEndpoint: &none}, true, "secret-metrics"},
		{"metrics token off", Change{MetricsTokenOff: true}, func(c *ReplicaConfig) { c.MetricsTokenSecret = "" }, Change{}, false, ""},
		{"metrics token rotated", Change{MetricsToken: "a-new-token-of-32-characters-xyz"}, func(c *ReplicaConfig) { c.MetricsTokenSecret = MetricsTokenSecretPrefix + "2" }, Change{}, false, "secret-metrics-2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, got := apply(orig, tc.change)
			want := base
			want.JobImageID = ""
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("after the change: %+v\nwant               %+v", got, want)
			}
			if ids := replicaOf(swarm.Service{Spec: spec}).ObjectIDs(); ids.MetricsToken != tc.wantSecret || ids.TLSKey != "secret-tls" || ids.CAKey != "secret-ca" {
				t.Fatalf("object IDs after the change: %+v", ids)
			}
			// The service is what ServiceSpec makes of the new configuration.
			if again := ServiceSpec(got, replicaOf(swarm.Service{Spec: spec}).ObjectIDs()); string(mustJSON(again)) != string(mustJSON(spec)) {
				t.Fatalf("updated spec differs from a new one:\n%s\n%s", mustJSON(spec), mustJSON(again))
			}
			if tc.undoesToo {
				back, _ := apply(spec, tc.undo)
				if string(mustJSON(back)) != string(mustJSON(orig)) {
					t.Fatalf("taking the change back left:\n%s\nwas\n%s", mustJSON(back), mustJSON(orig))
				}
			}
		})
	}
}
