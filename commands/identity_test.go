package commands

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/pki"
	"github.com/dtr-registry/dtr/registry/registrytest"
	"github.com/dtr-registry/dtr/ucp/ucpfake"
	"github.com/dtr-registry/dtr/ucp/ucptest"
)

const ucpPassword = "ucp-Passw0rd-kept"

// TestInstallIdentitySourceRefused: what cannot work is refused before
// anything changes, naming the fix.
func TestInstallIdentitySourceRefused(t *testing.T) {
	ca, err := pki.NewCA("ucp CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"socket", []string{"--ucp-url", "unix:///var/run/docker.sock"}, "give --ucp-url https://<ucp-host>, or use --identity-source local"},
		{"engine", []string{"--ucp-url", "tcp://manager:2376", "--ucp-insecure-tls"}, "is a Docker engine, which has no users"},
		{"insecure", []string{"--ucp-url", "https://ucp.example.com", "--ucp-insecure-tls"}, `cannot use --ucp-insecure-tls: the replicas send users' passwords to UCP and must verify its certificate; give UCP's CA instead: --ucp-ca "$(curl -sk https://ucp.example.com:443/ca)"`},
		{"ldap", []string{"--ucp-url", "https://ucp.example.com", "--ucp-ca", string(ca.CertPEM()), "--identity-source", "ldap"}, "set LDAP/AD in the console"},
		{"unknown", []string{"--ucp-url", "https://ucp.example.com", "--ucp-ca", string(ca.CertPEM()), "--identity-source", "kerberos"}, `--identity-source "kerberos": give local (dtr's own accounts) or ucp`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"install", "--ucp-node", "worker1", "--ucp-username", "admin", "--ucp-password", ucpPassword}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "--identity-source") {
				args = append(args, "--identity-source", "ucp")
			}
			r := dtr(args...)
			r.engine = ucpfake.New("manager1", "worker1")
			r.exec(t)
			if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, want %d with %q:\n%s", r.code, ExitUsage, tc.want, r.stderr)
			}
			if len(r.engine.Services)+len(r.engine.Secrets)+len(r.engine.Configs) != 0 || len(r.connected) != 0 {
				t.Fatalf("a refused install changed the swarm or connected: %d services, %d connections", len(r.engine.Services), len(r.connected))
			}
			if strings.Contains(r.stdout+r.stderr, ucpPassword) {
				t.Fatal("the UCP password is in the output")
			}
		})
	}
}

// TestInstallIdentitySourceDryRun: the plan shows the step, never the
// password; local (the default) adds none.
func TestInstallIdentitySourceDryRun(t *testing.T) {
	ca, err := pki.NewCA("ucp CA")
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"install", "--ucp-node", "worker1", "--dry-run", "--ucp-url", "https://ucp.example.com", "--ucp-ca", string(ca.CertPEM()),
		"--ucp-username", "dtr-admin", "--ucp-password", ucpPassword}
	r := dtr(append(base, "--identity-source", "ucp")...)
	r.engine = ucpfake.New("manager1", "worker1")
	r.exec(t)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	want := "use UCP at https://ucp.example.com:443 (users, organizations and teams, read as UCP administrator dtr-admin; its certificate checked against the CA given with --ucp-ca) through the admin API of replica"
	if !strings.Contains(r.stdout, want) {
		t.Fatalf("install --dry-run lacks the identity step %q:\n%s", want, r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, ucpPassword) {
		t.Fatalf("the UCP password is in the dry run:\n%s", r.stdout)
	}
	for _, args := range [][]string{base, append(base, "--identity-source", "local")} {
		r := dtr(args...)
		r.engine = ucpfake.New("manager1", "worker1")
		r.exec(t)
		if r.code != 0 || strings.Contains(r.stdout, "identity") {
			t.Fatalf("install %v: exit %d\n%s", args[len(args)-1], r.code, r.stdout)
		}
	}
}

// replicaEngine is a fake swarm holding the cluster CA of the real replica
// r, with node worker1 at 127.0.0.1, so that the installer's plan reaches
// r as the replica it creates (the fake engine runs nothing); with
// withService, r's service too, as install made it.
func replicaEngine(t *testing.T, r *registrytest.Replica, withService bool) (*ucpfake.Engine, int) {
	t.Helper()
	u, _ := url.Parse(r.URL)
	port, _ := strconv.Atoi(u.Port())
	e := ucpfake.New("manager1")
	e.AddNode("worker1", "127.0.0.1", swarm.NodeRoleWorker)
	e.Secrets = append(e.Secrets, swarm.Secret{ID: "ca-key-id", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: orchestrator.CAKeySecret}}})
	e.Configs = append(e.Configs, swarm.Config{ID: "ca-cert-id", Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: orchestrator.CACertConfig}, Data: r.CACertPEM()}})
	if withService {
		c := orchestrator.ReplicaConfig{ID: r.Opts.ReplicaID, Node: "worker1", NodeAddr: "127.0.0.1", HTTPPort: registrytest.FreePort(t), HTTPSPort: port,
			Image: images.Registry(), ImageID: "sha256:ab12", Version: images.Version, ExternalURL: r.URL, LogLevel: "info"}
		if _, err := e.ServiceCreate(t.Context(), orchestrator.ServiceSpec(c, orchestrator.ObjectIDs{CAKey: "ca-key-id", CACert: "ca-cert-id"}), swarm.ServiceCreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return e, port
}

// TestInstallIdentitySourceUCP installs against the UCP stand-in with
// --identity-source ucp, the plan's replica being a real one: once it is
// healthy the installer stores the settings through its admin API, and a
// UCP user signs in. The password is in no output and no service spec.
func TestInstallIdentitySourceUCP(t *testing.T) {
	u, err := ucptest.Start(ucptest.Options{Username: registrytest.AdminUser, Password: registrytest.AdminPassword,
		Users: []ucptest.User{{Name: "ben", Password: "ben-ucp-pw-123"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	rep := registrytest.StartNew(t)
	e, port := replicaEngine(t, rep, false)

	install := func(extra ...string) *run {
		args := append([]string{"install", "--ucp-node", "worker1", "--replica-id", rep.Opts.ReplicaID,
			"--replica-https-port", strconv.Itoa(port), "--replica-http-port", strconv.Itoa(registrytest.FreePort(t)),
			"--ucp-url", u.URL, "--ucp-username", registrytest.AdminUser, "--identity-source", "ucp"}, extra...)
		r := dtr(args...).withEnv("UCP_PASSWORD", registrytest.AdminPassword)
		r.engine = e
		return r.exec(t)
	}

	// A CA that did not sign UCP's certificate: the replica's test call
	// fails, the install is undone, the settings stay local.
	other, _ := pki.NewCA("another CA")
	r := install("--ucp-ca", string(other.CertPEM()))
	if r.code == 0 || !strings.Contains(r.stderr, "the replica cannot use UCP at "+u.URL) || !strings.Contains(r.stderr, "everything this run created was removed") {
		t.Fatalf("install with the wrong UCP CA: exit %d\n%s", r.code, r.stderr)
	}
	var settings struct {
		Kind string `json:"kind"`
		UCP  *struct {
			URL, CA, Username, Password string
		} `json:"ucp"`
	}
	if st := rep.API(t, registrytest.AdminUser, registrytest.AdminPassword, "GET", "/api/v0/meta/settings/identity", nil, &settings); st != 200 || settings.Kind != "local" {
		t.Fatalf("identity settings after a failed install: %d %+v", st, settings)
	}
	if len(e.Services) != 0 {
		t.Fatalf("the failed install left %d services", len(e.Services))
	}

	r = install("--ucp-ca", string(u.CAPEM))
	if r.code != 0 {
		t.Fatalf("install: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr+r.stdout, "use UCP at "+u.URL) {
		t.Fatalf("the install's log lacks the identity step:\n%s", r.stderr)
	}
	if rep.API(t, registrytest.AdminUser, registrytest.AdminPassword, "GET", "/api/v0/meta/settings/identity", nil, &settings); settings.Kind != "ucp" || settings.UCP == nil ||
		settings.UCP.URL != u.URL || settings.UCP.CA != string(u.CAPEM) || settings.UCP.Username != registrytest.AdminUser || settings.UCP.Password == registrytest.AdminPassword {
		t.Fatalf("identity settings after install: %+v", settings)
	}
	if tok := rep.Token(t, "ben", "ben-ucp-pw-123"); tok == "" {
		t.Fatal("no token for the UCP user ben")
	}
	for _, s := range e.Services {
		b, _ := json.Marshal(s.Spec)
		if strings.Contains(string(b), registrytest.AdminPassword) {
			t.Fatalf("the UCP password is in service %s's spec", s.Spec.Name)
		}
	}
	if strings.Contains(r.stdout+r.stderr, registrytest.AdminPassword) {
		t.Fatal("the UCP password is in the install's output")
	}
}

// TestReconfigureIdentitySource switches a running cluster to UCP and back
// to local with reconfigure, restarting nothing.
func TestReconfigureIdentitySource(t *testing.T) {
	u, err := ucptest.Start(ucptest.Options{Username: registrytest.AdminUser, Password: registrytest.AdminPassword,
		Users: []ucptest.User{{Name: "ben", Password: "ben-ucp-pw-123"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	rep := registrytest.StartNew(t)
	e, _ := replicaEngine(t, rep, true)
	reconfigure := func(extra ...string) *run {
		r := dtr(append([]string{"reconfigure", "--ucp-url", u.URL, "--ucp-ca", string(u.CAPEM), "--ucp-username", registrytest.AdminUser,
			"--existing-replica-id", rep.Opts.ReplicaID}, extra...)...).withEnv("UCP_PASSWORD", registrytest.AdminPassword)
		r.engine = e
		return r.exec(t)
	}
	kind := func() string {
		var s struct{ Kind string }
		rep.API(t, registrytest.AdminUser, registrytest.AdminPassword, "GET", "/api/v0/meta/settings/identity", nil, &s)
		return s.Kind
	}
	r := reconfigure("--identity-source", "ucp", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "Reconfigure 1 replica(s): identity source ucp") || !strings.Contains(r.stdout, "use UCP at "+u.URL) ||
		strings.Contains(r.stdout+r.stderr, registrytest.AdminPassword) || kind() != "local" {
		t.Fatalf("reconfigure --dry-run: exit %d, kind %s\n%s\n%s", r.code, kind(), r.stdout, r.stderr)
	}
	before, _ := json.Marshal(e.Services)
	if r = reconfigure("--identity-source", "ucp"); r.code != 0 || kind() != "ucp" {
		t.Fatalf("reconfigure --identity-source ucp: exit %d, kind %s\n%s", r.code, kind(), r.stderr)
	}
	if after, _ := json.Marshal(e.Services); string(after) != string(before) {
		t.Fatal("changing the identity source updated a service")
	}
	req, _ := http.NewRequest("GET", rep.URL+"/auth/token?service=dtr", nil)
	req.SetBasicAuth("ben", "ben-ucp-pw-123")
	resp, err := rep.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the UCP user after reconfigure: %d", resp.StatusCode)
	}
	if r = reconfigure("--identity-source", "local"); r.code != 0 || kind() != "local" {
		t.Fatalf("reconfigure --identity-source local: exit %d, kind %s\n%s", r.code, kind(), r.stderr)
	}
	if r = reconfigure("--identity-source", "ucp", "--ucp-insecure-tls", "--ucp-ca", ""); r.code != ExitUsage || kind() != "local" {
		t.Fatalf("reconfigure with --ucp-insecure-tls: exit %d\n%s", r.code, r.stderr)
	}
}
