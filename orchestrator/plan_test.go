package orchestrator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/pki"
	"github.com/dtr-registry/dtr/ucp/ucpfake"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs (go test ./orchestrator -update if intended):\n%s", file, got)
	}
}

func config(id string, join bool) orchestrator.ReplicaConfig {
	return orchestrator.ReplicaConfig{
		ID: id, Node: "node1", NodeAddr: "10.0.0.11", HTTPPort: 80, HTTPSPort: 443,
		Image: "dtr-registry:0.1.0", ImageID: "sha256:" + "ab12", JobImageID: "sha256:cd34", Version: "0.1.0",
		ExternalURL: "https://dtr.example.com", LogLevel: "info", Join: join,
	}
}

func TestInstallPlan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		storage orchestrator.Storage
		tls     bool
	}{
		{"install-default", orchestrator.Storage{}, false},
		{"install-nfs-tls", orchestrator.Storage{NFSURL: "nfs://10.0.0.5/dtr", NFSOptions: "rw,nfsvers=4"}, true},
		{"install-hostpath", orchestrator.Storage{Volume: "/srv/dtr"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := ucpfake.New("node1")
			objs := orchestrator.Objects{C: e.Cluster()}
			in := &orchestrator.Install{Replica: config("000000000001", false), OverlaySubnet: "10.1.0.0/24", AdminPassword: "secret-password"}
			in.Replica.Storage = tc.storage
			in.Replica.AdminUsername = "admin"
			if tc.tls {
				in.TLSCert, in.TLSKey = "-----BEGIN CERTIFICATE-----\n", "-----BEGIN PRIVATE KEY-----\n"
			}
			before := *in
			p, err := objs.PlanInstall(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*in, before) {
				t.Fatalf("planning changed its input:\n%+v\nwas\n%+v", in.Replica, before.Replica)
			}
			var b bytes.Buffer
			p.Print(&b)
			golden(t, tc.name+".plan", b.Bytes())
			if len(e.Services)+len(e.Secrets)+len(e.Networks) != 0 {
				t.Fatalf("planning changed the cluster")
			}
			// The service the plan creates, once the steps before have made
			// the CA and admin objects (the TLS objects' IDs stay unknown).
			st := orchestrator.State{
				Secrets: map[string]string{orchestrator.CAKeySecret: "secret-ca", orchestrator.AdminSecret(in.Replica.ID): "secret-admin"},
				Configs: map[string]string{orchestrator.CACertConfig: "config-ca"},
			}
			spec := serviceOf(t, p, st)
			js, _ := json.MarshalIndent(spec, "", "  ")
			golden(t, tc.name+".service.json", append(js, '\n'))
		})
	}
}

// serviceOf is the spec of the service p creates or updates, from st.
func serviceOf(t *testing.T, p *orchestrator.Plan, st orchestrator.State) swarm.ServiceSpec {
	t.Helper()
	for _, s := range p.Steps {
		if s.Service != nil {
			spec, err := s.Service(st)
			if err != nil {
				t.Fatal(err)
			}
			return spec
		}
	}
	t.Fatalf("plan %q creates no service", p.Title)
	return swarm.ServiceSpec{}
}

// TestDryRunPrintsSpecs: --dry-run shows, under the step that creates the
// service, the spec that step sends.
func TestDryRunPrintsSpecs(t *testing.T) {
	e := ucpfake.New("node1")
	objs := orchestrator.Objects{C: e.Cluster()}
	in := &orchestrator.Install{Replica: config("000000000001", false), OverlaySubnet: "10.1.0.0/24", AdminPassword: "secret-password"}
	in.Replica.AdminUsername = "admin"
	in.TLSCert, in.TLSKey = "-----BEGIN CERTIFICATE-----\n", "-----BEGIN PRIVATE KEY-----\n"
	p, err := objs.PlanInstall(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.DryRun(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "install-tls.dryrun", b.Bytes())
	var plain bytes.Buffer
	p.Print(&plain)
	// The step lines are Print's; the spec is the step's own.
	var lines []string
	for _, l := range strings.Split(b.String(), "\n") {
		if !strings.HasPrefix(l, "     ") {
			lines = append(lines, l)
		}
	}
	if strings.Join(lines, "\n") != plain.String() {
		t.Fatalf("dry run steps differ from the plan:\n%s", b.String())
	}
	spec, _ := json.MarshalIndent(serviceOf(t, p, p.Start), "     ", "  ")
	if !strings.Contains(b.String(), string(spec)) {
		t.Fatalf("the dry run does not show the spec the step creates:\n%s", b.String())
	}
}

func TestJoinPlan(t *testing.T) {
	e := ucpfake.New("node1", "node2")
	e.Secrets = append(e.Secrets, swarm.Secret{ID: "s1", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: orchestrator.CAKeySecret}}})
	e.Configs = append(e.Configs, swarm.Config{ID: "c1", Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: orchestrator.CACertConfig}}})
	objs := orchestrator.Objects{C: e.Cluster()}
	existing := orchestrator.Replica{ID: "000000000001", Node: "node1", Spec: swarm.ServiceSpec{TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{}}}}
	in := &orchestrator.Join{Replica: config("000000000002", true), Existing: existing}
	in.Replica.Node, in.Replica.HTTPSPort = "node2", 8443
	p, err := objs.PlanJoin(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	p.Print(&b)
	golden(t, "join.plan", b.Bytes())

	// --skip-network-test leaves out the overlay test, and nothing else.
	in.SkipNetworkTest = true
	if p, err = objs.PlanJoin(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	p.Print(&b)
	golden(t, "join-skip-network-test.plan", b.Bytes())
	in.SkipNetworkTest = false

	// Without the cluster CA there is nothing to join.
	e.Secrets = nil
	if _, err := objs.PlanJoin(context.Background(), in); err == nil {
		t.Fatal("join planned without the cluster CA")
	}
}

func TestApplyUndoesOnFailure(t *testing.T) {
	var log []string
	p := &orchestrator.Plan{Title: "t"}
	step := func(name string, fail bool) orchestrator.Step {
		return orchestrator.Step{Description: name,
			Apply: func(_ context.Context, st *orchestrator.State) error {
				log = append(log, "apply "+name)
				if fail {
					return os.ErrPermission
				}
				st.InitialCluster += name // what a later step and the undos see
				return nil
			},
			Undo: func(_ context.Context, st *orchestrator.State) error {
				log = append(log, "undo "+name+" after "+st.InitialCluster)
				return nil
			}}
	}
	p.Add(step("a", false))
	p.Add(step("b", false))
	p.Add(step("c", true))
	err := p.Apply(context.Background(), quietLog(), false)
	want := []string{"apply a", "apply b", "apply c", "undo c after ab", "undo b after ab", "undo a after ab"}
	if err == nil || len(log) != len(want) {
		t.Fatalf("err %v, log %v", err, log)
	}
	for i := range want {
		if log[i] != want[i] {
			t.Fatalf("log %v, want %v", log, want)
		}
	}
	log = nil
	if err := p.Apply(context.Background(), quietLog(), true); err == nil || len(log) != 3 {
		t.Fatalf("--keep-on-failure: err %v, log %v", err, log)
	}
	// A plan that only goes forward undoes nothing and says what was done.
	log = nil
	p.Forward = true
	err = p.Apply(context.Background(), quietLog(), false)
	if err == nil || len(log) != 3 || !strings.Contains(err.Error(), "steps 1 to 2 were done") || strings.Contains(err.Error(), "keep-on-failure") {
		t.Fatalf("forward plan: err %v, log %v", err, log)
	}
}

func TestReconfigurePlan(t *testing.T) {
	e := ucpfake.New("node1", "node2")
	objs := orchestrator.Objects{C: e.Cluster()}
	spec := orchestrator.ServiceSpec(config("000000000001", false), orchestrator.ObjectIDs{CAKey: "s", CACert: "c", Admin: "a"})
	reps := []orchestrator.Replica{
		{ID: "000000000001", Node: "node1", HTTPSPort: 443, Spec: spec},
		{ID: "000000000002", Node: "node2", HTTPSPort: 443, Spec: spec},
	}
	url, port := "https://dtr2.example.com", 8443
	in := &orchestrator.Reconfigure{Replicas: reps, Addrs: map[string]string{"node1": "10.0.0.11", "node2": "10.0.0.12"},
		Change:   orchestrator.Change{ExternalURL: &url, HTTPSPort: &port, Storage: &orchestrator.Storage{NFSURL: "nfs://10.0.0.5/dtr"}},
		Settings: func(context.Context) error { return nil }}
	var b bytes.Buffer
	objs.PlanReconfigure(in).Print(&b)
	golden(t, "reconfigure.plan", b.Bytes())
}

func TestRestorePlan(t *testing.T) {
	e := ucpfake.New("node1")
	objs := orchestrator.Objects{C: e.Cluster()}
	caPEM, keyPEM := testCA(t)
	client, err := orchestrator.RestoreClient(caPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	in := &orchestrator.Install{Replica: config("000000000001", false), OverlaySubnet: "10.1.0.0/24",
		HealthTimeout: time.Second, ClientFor: orchestrator.HTTPSClient,
		Restore: &orchestrator.Restore{CACertPEM: caPEM, CAKeyPEM: keyPEM, Client: client,
			Backup: func() (io.ReadCloser, int64, error) { return io.NopCloser(strings.NewReader("")), 0, nil }}}
	in.Replica.Restore, in.Replica.RestoreStorage = true, "backup"
	in.Replica.NodeAddr, in.Replica.HTTPSPort = "127.0.0.1", 1 // nothing answers there
	p, err := objs.PlanInstall(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	p.Print(&b)
	golden(t, "restore.plan", b.Bytes())
	spec := serviceOf(t, p, orchestrator.State{})
	if env := strings.Join(spec.TaskTemplate.ContainerSpec.Env, " "); !strings.Contains(env, "DTR_RESTORE=true") || !strings.Contains(env, "DTR_RESTORE_STORAGE=backup") || strings.Contains(env, "DTR_ADMIN") {
		t.Fatalf("restore replica env: %s", env)
	}

	// The replica never answers: the restore fails and removes all it made.
	before := in.Replica
	err = p.Apply(context.Background(), quietLog(), false)
	if !reflect.DeepEqual(in.Replica, before) {
		t.Fatalf("applying changed the plan's input: %+v", in.Replica)
	}
	if err == nil || !strings.Contains(err.Error(), "everything this run created was removed") {
		t.Fatalf("apply: %v", err)
	}
	if n := len(e.Services) + len(e.Secrets) + len(e.Configs) + len(e.Networks) + len(e.Volumes); n != 0 {
		t.Fatalf("a failed restore left %d objects", n)
	}
}

func TestRepairPlan(t *testing.T) {
	e := ucpfake.New("node1", "node2", "node3")
	objs := orchestrator.Objects{C: e.Cluster()}
	keep := orchestrator.Replica{ID: "000000000001", Node: "node1"}
	drop := []orchestrator.Replica{{ID: "000000000002", Node: "node2"}, {ID: "000000000003", Node: "node3"}}
	var b bytes.Buffer
	objs.PlanRepair(&orchestrator.Repair{Keep: keep, Drop: drop, Prune: true, Token: "t", URL: "https://10.0.0.11:443"}).Print(&b)
	golden(t, "repair.plan", b.Bytes())
	// A replica that answered its /_ping is repaired in place.
	b.Reset()
	api := &orchestrator.ReplicaAPI{URL: "https://10.0.0.11:443"}
	objs.PlanRepair(&orchestrator.Repair{Keep: keep, Drop: drop, Token: "t", URL: "https://10.0.0.11:443", API: api}).Print(&b)
	golden(t, "repair-in-place.plan", b.Bytes())
}

// testCA is a throwaway cluster CA.
func testCA(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err = ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return ca.CertPEM(), keyPEM
}

func TestRemoveAndDestroyPlans(t *testing.T) {
	e := ucpfake.New("node1", "node2", "node3")
	objs := orchestrator.Objects{C: e.Cluster()}
	through := orchestrator.Replica{ID: "000000000001", Node: "node1"}
	targets := []orchestrator.Replica{{ID: "000000000002", Node: "node2"}, {ID: "000000000003", Node: "node3"}}
	var b bytes.Buffer
	p := objs.PlanRemove(&orchestrator.Remove{Targets: targets, Through: through, DrainWait: 6 * time.Second})
	p.Print(&b)
	golden(t, "remove.plan", b.Bytes())
	if !p.Forward {
		t.Error("a remove plan cannot be undone, and must say so")
	}
	b.Reset()
	objs.PlanDestroy(&orchestrator.Destroy{Replica: targets[0]}).Print(&b)
	golden(t, "destroy.plan", b.Bytes())
	b.Reset()
	objs.PlanDestroy(&orchestrator.Destroy{Replica: orchestrator.Replica{ID: "000000000001"}, Last: true}).Print(&b)
	golden(t, "destroy-last.plan", b.Bytes())
}
