package commands

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/prompt"
	"github.com/dtr-registry/dtr/prompt/prompttest"
	"github.com/dtr-registry/dtr/ucp"
	"github.com/dtr-registry/dtr/ucp/ucpfake"
)

var update = flag.Bool("update", false, "rewrite golden files")

// run is one dtr invocation against a fake cluster.
type run struct {
	args     []string
	env      map[string]string
	prompter prompt.Prompter
	engine   *ucpfake.Engine
	outTTY   bool

	stdout, stderr string
	code           int
	connected      []ucp.Options
}

func (r *run) exec(t *testing.T) *run {
	t.Helper()
	var out, errb bytes.Buffer
	if r.engine == nil {
		r.engine = ucpfake.New("manager1", "worker1", "worker2")
	}
	cli := &Cli{
		In:            strings.NewReader(""),
		Out:           &out,
		Err:           &errb,
		OutIsTerminal: r.outTTY,
		Prompter:      r.prompter,
		LookupEnv: func(k string) (string, bool) {
			v, ok := r.env[k]
			return v, ok
		},
		Connect: func(ctx context.Context, o ucp.Options) (*ucp.Cluster, error) {
			r.connected = append(r.connected, o)
			return r.engine.Connect(ctx, o)
		},
		Now: time.Now,
	}
	r.code = Run(context.Background(), cli, r.args)
	r.stdout, r.stderr = out.String(), errb.String()
	return r
}

func dtr(args ...string) *run { return &run{args: args} }

func (r *run) withEnv(kv ...string) *run {
	r.env = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		r.env[kv[i]] = kv[i+1]
	}
	return r
}

var creds = []string{"--ucp-url", "unix:///var/run/docker.sock", "--ucp-username", "admin"}

func TestEnvAndFlagPrecedence(t *testing.T) {
	env := []string{"UCP_URL", "unix:///from/env.sock", "UCP_USERNAME", "envuser", "UCP_PASSWORD", "envpw", "UCP_INSECURE_TLS", "true"}
	r := dtr("destroy", "--replica-id", "aaaaaaaaaaaa").withEnv(env...)
	r.engine = ucpfake.New("m1")
	r.engine.AddReplicaService("aaaaaaaaaaaa", "m1", images.Version)
	r.exec(t)
	if len(r.connected) != 1 || r.connected[0].URL != "unix:///from/env.sock" || r.connected[0].Password != "envpw" || !r.connected[0].Insecure {
		t.Fatalf("env not applied: %+v\n%s", r.connected, r.stderr)
	}
	r = dtr("destroy", "--replica-id", "aaaaaaaaaaaa", "--ucp-url", "unix:///from/flag.sock", "--ucp-insecure-tls=false").withEnv(env...)
	r.engine = ucpfake.New("m1")
	r.engine.AddReplicaService("aaaaaaaaaaaa", "m1", images.Version)
	r.exec(t)
	if len(r.connected) != 1 || r.connected[0].URL != "unix:///from/flag.sock" || r.connected[0].Insecure {
		t.Fatalf("the flag did not win over the env: %+v", r.connected)
	}
	if strings.Contains(r.stderr, "envpw") {
		t.Fatalf("the password leaked into the log:\n%s", r.stderr)
	}
	// The MSR spelling of a variable works too.
	r = dtr("join", "--ucp-password", "x").withEnv("UCP_URL", "unix:///s.sock", "UCP_USERNAME", "u", "MSR_REPLICA_ID", "ABCDEFABCDEF")
	r.exec(t)
	if !strings.Contains(r.stderr, "The replica 'abcdefabcdef' you specified could not be found") && !strings.Contains(r.stderr, "Couldn't find any existing DTR replicas") {
		t.Fatalf("$MSR_REPLICA_ID not read:\n%s", r.stderr)
	}
}

func TestPasswordFlagWarning(t *testing.T) {
	r := dtr("destroy", "--ucp-url", "unix:///s.sock", "--ucp-password", "hunter2").exec(t)
	if !strings.Contains(r.stderr, "--ucp-password on the command line is visible") || strings.Contains(r.stderr, "hunter2") {
		t.Fatalf("stderr:\n%s", r.stderr)
	}
	r = dtr("destroy", "--ucp-url", "unix:///s.sock").withEnv("UCP_PASSWORD", "hunter2").exec(t)
	if strings.Contains(r.stderr, "visible") {
		t.Fatalf("warned about a password from the environment:\n%s", r.stderr)
	}
}

func TestValidation(t *testing.T) {
	pem := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	tests := []struct {
		args []string
		env  []string
		code int
		want string
	}{
		{[]string{"install", "--replica-id", "xyz123456789"}, nil, ExitUsage, "Replica IDs must be hexadecimal: xyz123456789"},
		{[]string{"install", "--replica-id", "abc"}, nil, ExitUsage, "Replica IDs must be 12 characters long. This one is 3"},
		{[]string{"install", "--replica-id", "ABCDEF1234567"}, nil, ExitUsage, "This one is 13"},
		{[]string{"install", "--replica-http-port", "0"}, nil, ExitUsage, "--replica-http-port 0: a port must be between 1 and 65535"},
		{[]string{"install", "--replica-https-port", "65536"}, nil, ExitUsage, "--replica-https-port 65536: a port must be between 1 and 65535"},
		{[]string{"install", "--replica-http-port", "8443", "--replica-https-port", "8443"}, nil, ExitUsage, "both 8443"},
		{[]string{"install"}, []string{"REPLICA_HTTP_PORT", "eighty"}, ExitUsage, "invalid value for $REPLICA_HTTP_PORT (--replica-http-port)"},
		{[]string{"install", "--dtr-external-url", "http://dtr.example.com"}, nil, ExitUsage, "over https only"},
		{[]string{"install", "--dtr-external-url", "https://dtr.example.com/v2"}, nil, ExitUsage, "without path"},
		{[]string{"install", "--dtr-storage-volume", "relative/path"}, nil, ExitUsage, "absolute host path"},
		{[]string{"install", "--dtr-storage-volume", "/srv/dtr", "--nfs-storage-url", "nfs://10.0.0.5/dtr"}, nil, ExitUsage, "give one"},
		{[]string{"install", "--nfs-storage-url", "10.0.0.5/dtr"}, nil, ExitUsage, "use nfs://<server>/<exported path>"},
		{[]string{"install", "--async-nfs"}, nil, ExitUsage, "--async-nfs needs --nfs-storage-url"},
		{[]string{"install", "--overlay-subnet", "10.1.0.0"}, nil, ExitUsage, "IPv4 CIDR"},
		{[]string{"install", "--dtr-cert", pem}, nil, ExitUsage, "--dtr-cert and --dtr-key go together"},
		{[]string{"install", "--dtr-ca", "not pem"}, nil, ExitUsage, "--dtr-ca holds no PEM data"},
		{[]string{"install", "--log-protocol", "tcp"}, nil, ExitUsage, "needs --log-host"},
		{[]string{"install", "--log-protocol", "tcp", "--log-host", "syslog:514"}, nil, ExitUsage, "not supported by this version"},
		{[]string{"install", "--enable-pprof"}, nil, ExitUsage, "--enable-pprof is not supported by this version"},
		{[]string{"install", "--log-protocol", "carrier-pigeon"}, nil, ExitUsage, "use internal, tcp or udp"},
		{[]string{"install", "--enable-client-cert-auth"}, nil, ExitUsage, "needs --client-cert-auth-ca"},
		{[]string{"install", "--http-proxy", "proxy:3128"}, nil, ExitUsage, "give a URL such as http://"},
		{[]string{"install", "--ucp-url", "ftp://x", "--ucp-username", "a", "--ucp-password", "b"}, nil, ExitUsage, `unknown scheme "ftp"`},
		{[]string{"install", "--ucp-ca", "x", "--ucp-insecure-tls"}, nil, ExitUsage, "contradict each other"},
		{[]string{"install", "--no-such-flag"}, nil, ExitUsage, "unknown flag: --no-such-flag"},
		{[]string{"install", "extra"}, nil, ExitUsage, "takes no arguments"},
		{[]string{"install", "--log-level", "loud"}, nil, ExitUsage, `invalid --log-level "loud"`},
		{[]string{"remove", "--replica-id", "aaaaaaaaaaaa", "--replica-ids", "bbbbbbbbbbbb"}, nil, ExitUsage, "use --replica-ids"},
		{[]string{"remove", "--replica-ids", "aaaaaaaaaaaa,zz"}, nil, ExitUsage, "Replica IDs must be hexadecimal: zz"},
		{[]string{"remove", "--replica-ids", "aaaaaaaaaaaa", "--existing-replica-id", "aaaaaaaaaaaa"}, nil, ExitUsage, "must stay"},
		{[]string{"upgrade", "--max-wait", "soon"}, nil, ExitUsage, "positive Go duration"},
		{[]string{"restore"}, nil, ExitUsage, "Must explicitly set one of --dtr-use-default-storage, --dtr-storage-volume, or --nfs-storage-url"},
		{[]string{"restore", "--dtr-use-default-storage", "--dtr-storage-volume", "vol"}, nil, ExitUsage, "Set only one of"},
		{[]string{"restore", "--dtr-use-default-storage"}, nil, ExitUsage, "missing --ucp-node ($UCP_NODE)"},
		{[]string{"emergency-repair", "--existing-replica-id", "123"}, nil, ExitUsage, "must be 12 characters long"},
		{[]string{"install", "--metrics-port", "70000"}, nil, ExitUsage, "--metrics-port 70000: a port must be between 1 and 65535, or 0 to publish no metrics port"},
		{[]string{"install"}, []string{"DTR_METRICS_PORT", "-1"}, ExitUsage, "--metrics-port -1"},
		{[]string{"join", "--metrics-port", "65536"}, nil, ExitUsage, "--metrics-port 65536"},
		{[]string{"reconfigure", "--metrics-port", "100000"}, nil, ExitUsage, "--metrics-port 100000"},
		{[]string{"install", "--otlp-endpoint", "otel-collector:4318"}, nil, ExitUsage, "give the collector's OTLP/HTTP URL, e.g. http://otel-collector:4318"},
		{[]string{"install", "--otlp-endpoint", "grpc://otel-collector:4317"}, nil, ExitUsage, "not gRPC"},
		{[]string{"reconfigure", "--otlp-endpoint", "http://"}, nil, ExitUsage, "give the collector's OTLP/HTTP URL"},
		{[]string{"install", "--metrics-token-file", "/no/such/metrics.token"}, nil, ExitUsage, "mount the file into it, e.g. -v /root/metrics.token:/metrics.token:ro"},
		{[]string{"install", "--metrics-token-file", "/dev/zero"}, nil, ExitUsage, "holds more than 4096 bytes: give a file with just the token"},
		{[]string{"install", "--otlp-endpoint", "https://user:hunter2@otel.example.com"}, nil, ExitUsage, "leave credentials out of the URL"},
		{[]string{"install"}, []string{"DTR_METRICS_TOKEN", "short"}, ExitUsage, "shorter than 16 characters: use a random one, e.g. openssl rand -hex 32"},
		{[]string{"reconfigure"}, []string{"DTR_METRICS_TOKEN", "has a space in the middle of it"}, ExitUsage, "holds a space"},
		{[]string{"install", "--metrics-token-file", "/etc/hostname"}, []string{"DTR_METRICS_TOKEN", "0123456789abcdef0123"}, ExitUsage, "give one"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := dtr(tt.args...).withEnv(tt.env...).exec(t)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d, want %d; stderr lacks %q:\n%s", r.code, tt.code, tt.want, r.stderr)
			}
			if len(r.connected) != 0 {
				t.Fatalf("connected to the control plane despite a usage error")
			}
			if r.stdout != "" {
				t.Fatalf("stdout is for results only, got %q", r.stdout)
			}
		})
	}
}

func TestNonInteractiveNamesEveryMissingValue(t *testing.T) {
	tests := []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"install", "--ucp-node", "x"}, []string{"--ucp-url ($UCP_URL)", "--ucp-username ($UCP_USERNAME)", "--ucp-password ($UCP_PASSWORD)", "read -sp"}, nil},
		{[]string{"join", "--ucp-url", "https://ucp.example.com"}, []string{"--ucp-username ($UCP_USERNAME)", "--ucp-password ($UCP_PASSWORD)"}, []string{"--ucp-url ("}},
		{[]string{"destroy"}, []string{"--ucp-url ($UCP_URL)"}, []string{"--ucp-username", "--ucp-password"}},
		{[]string{"destroy", "--ucp-url", "https://ucp.example.com"}, []string{"--ucp-username ($UCP_USERNAME)", "--ucp-password ($UCP_PASSWORD)"}, nil},
		{[]string{"restore", "--ucp-node", "n1", "--dtr-use-default-storage"}, []string{"--ucp-url ($UCP_URL)"}, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := dtr(tt.args...).exec(t)
			if r.code != ExitUsage {
				t.Fatalf("exit %d, want %d:\n%s", r.code, ExitUsage, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(r.stderr, n) {
					t.Errorf("stderr names %q, which is not missing:\n%s", n, r.stderr)
				}
			}
		})
	}
}

// TestPromptPlan pins which prompts each command shows, in DTR's words.
func TestPromptPlan(t *testing.T) {
	url := prompttest.Question{Kind: "input", Message: "ucp-url (The UCP URL including domain and port)"}
	user := prompttest.Question{Kind: "input", Message: "ucp-username (The UCP administrator username)"}
	pass := prompttest.Question{Kind: "password", Message: "ucp-password"}
	pick := func(msg string) prompttest.Question {
		return prompttest.Question{Kind: "input", Message: msg, Default: "aaaaaaaaaaaa"}
	}
	tests := []struct {
		args    []string
		answers []string
		want    []prompttest.Question
	}{
		{[]string{"install", "--ucp-node", "worker1", "--dry-run"}, []string{"unix:///var/run/docker.sock", "admin", "password1"}, []prompttest.Question{url, user, pass}},
		{[]string{"join", "--ucp-node", "worker2", "--dry-run"}, []string{"unix:///var/run/docker.sock", "admin", "password1", ""}, []prompttest.Question{url, user, pass, pick("Choose a replica to join to")}},
		{[]string{"reconfigure"}, []string{"unix:///var/run/docker.sock", "admin", "password1", ""}, []prompttest.Question{url, user, pass, pick("Choose a replica to reconfigure")}},
		{[]string{"remove"}, []string{"unix:///var/run/docker.sock", "admin", "password1", "bbbbbbbbbbbb", ""}, []prompttest.Question{url, user, pass, pick("Choose a replica to remove"), pick("Choose any healthy replica")}},
		{[]string{"destroy"}, []string{"unix:///var/run/docker.sock", ""}, []prompttest.Question{url, pick("Choose a replica to destroy")}},
		{[]string{"destroy"}, []string{"https://ucp.example.com", "admin", "password1", ""}, []prompttest.Question{url, user, pass, pick("Choose a replica to destroy")}},
		{[]string{"backup"}, []string{"unix:///var/run/docker.sock", "admin", "password1", ""}, []prompttest.Question{url, user, pass, pick("Choose a replica to back up from")}},
		{[]string{"upgrade"}, []string{"unix:///var/run/docker.sock", "admin", "password1", ""}, []prompttest.Question{url, user, pass, pick("Choose a replica to perform the upgrade")}},
		{[]string{"emergency-repair"}, []string{"unix:///var/run/docker.sock", "admin", "password1", ""}, []prompttest.Question{url, user, pass, pick("Choose a replica to keep")}},
		{[]string{"restore", "--ucp-node", "worker1", "--dtr-use-default-storage"}, nil, nil},
		{[]string{"images"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			s := &prompttest.Script{Answers: tt.answers}
			r := dtr(tt.args...)
			r.prompter = s
			r.engine = ucpfake.New("manager1", "worker1", "worker2")
			r.engine.AddReplicaService("aaaaaaaaaaaa", "worker1", images.Version)
			r.engine.AddReplicaService("bbbbbbbbbbbb", "worker2", images.Version)
			if tt.args[0] == "install" {
				r.engine.Services = nil
			}
			r.exec(t)
			if len(s.Asked) != len(tt.want) {
				t.Fatalf("asked %+v, want %+v\n%s", s.Asked, tt.want, r.stderr)
			}
			for i := range tt.want {
				if s.Asked[i] != tt.want[i] {
					t.Fatalf("prompt %d = %+v, want %+v", i, s.Asked[i], tt.want[i])
				}
			}
			if len(s.Answers) != 0 {
				t.Fatalf("unused answers %q", s.Answers)
			}
		})
	}
}

// TestUpgradeRefusesDowngrade: a replica newer than this dtr stops the
// upgrade before anything changes, with exit 2 and the versions named.
func TestUpgradeRefusesDowngrade(t *testing.T) {
	r := dtr(append([]string{"upgrade", "--ucp-password", "password1"}, creds...)...)
	r.engine = ucpfake.New("manager1", "worker1")
	r.engine.AddReplicaService("aaaaaaaaaaaa", "worker1", "99.0.0")
	r.exec(t)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "downgrades are not supported") || !strings.Contains(r.stderr, "nothing was changed") {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	for _, line := range []string{"INFO[0000] Beginning Docker Trusted Registry Upgrade", "Using replica aaaaaaaaaaaa"} {
		if !strings.Contains(r.stderr, line) {
			t.Errorf("stderr lacks %q:\n%s", line, r.stderr)
		}
	}
}

func TestClusterChecks(t *testing.T) {
	withReplica := func() *ucpfake.Engine {
		e := ucpfake.New("manager1", "worker1")
		e.AddReplicaService("aaaaaaaaaaaa", "worker1", images.Version)
		return e
	}
	tests := []struct {
		name   string
		args   []string
		engine *ucpfake.Engine
		code   int
		want   string
	}{
		{"unknown node", []string{"install", "--ucp-node", "dtr9"}, ucpfake.New("manager1", "worker1"), ExitUsage, "node dtr9 not found; nodes: manager1, worker1"},
		{"second install", []string{"install", "--ucp-node", "worker1"}, withReplica(), ExitFailure, "We don't currently support running multiple DTRs on the same UCP cluster. You have 1 existing DTR replicas. Please remove them before trying to install again."},
		{"no replicas", []string{"join"}, ucpfake.New("manager1"), ExitFailure, "Couldn't find any existing DTR replicas"},
		{"unknown replica", []string{"backup", "--existing-replica-id", "bbbbbbbbbbbb"}, withReplica(), ExitUsage, "The replica 'bbbbbbbbbbbb' you specified could not be found. Valid replicas: aaaaaaaaaaaa"},
		{"only replica chosen", []string{"backup"}, withReplica(), ExitFailure, "Using replica aaaaaaaaaaaa, the only one in this cluster"},
		{"restore over a replica", []string{"restore", "--ucp-node", "worker1", "--dtr-use-default-storage"}, withReplica(), ExitFailure, "destroy every replica first"},
		{"not a manager", []string{"install"}, func() *ucpfake.Engine { e := ucpfake.New("w"); e.Manager = false; return e }(), ExitControlPlane, "not a manager"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dtr(append(tt.args, append(creds, "--ucp-password", "password1")...)...)
			r.engine = tt.engine
			r.exec(t)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d, want %d; stderr lacks %q:\n%s", r.code, tt.code, tt.want, r.stderr)
			}
		})
	}
	r := dtr(append([]string{"backup", "--ucp-password", "password1"}, creds...)...)
	r.engine = withReplica()
	r.engine.AddReplicaService("bbbbbbbbbbbb", "worker1", images.Version)
	r.exec(t)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "missing --existing-replica-id ($DTR_REPLICA_ID)") || !strings.Contains(r.stderr, "aaaaaaaaaaaa, bbbbbbbbbbbb") {
		t.Fatalf("several replicas, no terminal: exit %d\n%s", r.code, r.stderr)
	}
}

func TestBackupRefusesTerminal(t *testing.T) {
	r := dtr("backup")
	r.outTTY = true
	r.exec(t)
	want := "Terminal mode detected. This command does not work in terminal mode. Please remove -t from the docker run command's arguments."
	if r.code != ExitUsage || !strings.Contains(r.stderr, want) || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q:\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestImagesAndVersion(t *testing.T) {
	r := dtr("images").exec(t)
	want := "dtr:" + images.Version + "\ndtr-registry:" + images.Version + "\n"
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Fatalf("images: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = dtr("--version").exec(t)
	if r.stdout != "dtr "+images.Version+"\n" {
		t.Fatalf("--version printed %q", r.stdout)
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("boom"), ExitFailure},
		{usageErrorf("bad"), ExitUsage},
		{&ucp.Error{Msg: "down"}, ExitControlPlane},
		{&ucp.Error{Kind: ucp.ErrAuthentication, Msg: "401"}, ExitControlPlane},
		{ucp.ErrBadURL, ExitUsage},
		{errors.Join(context.Canceled, errors.New("x")), ExitInterrupted},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// TestHelp compares every command's help with testdata/help/<command>.golden
// (go test ./commands -run TestHelp -update rewrites them) and checks that
// every flag names its environment variable.
func TestHelp(t *testing.T) {
	names := []string{"", "install", "join", "reconfigure", "remove", "destroy", "backup", "restore", "upgrade", "images", "emergency-repair"}
	for _, name := range names {
		t.Run("dtr "+name, func(t *testing.T) {
			args := []string{"--help"}
			if name != "" {
				args = []string{name, "--help"}
			}
			r := dtr(args...).exec(t)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			file := filepath.Join("testdata", "help", strings.TrimPrefix(name+".golden", ""))
			if name == "" {
				file = filepath.Join("testdata", "help", "dtr.golden")
			}
			if *update {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(r.stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if r.stdout != string(want) {
				t.Fatalf("help differs from %s (run with -update if intended):\n%s", file, r.stdout)
			}
			flagLine := regexp.MustCompile(`^\s+(-\w, )?--[a-z-]+(\[=true\|false\]| \w+)?\s{2,}`)
			for _, l := range strings.Split(r.stdout, "\n") {
				if flagLine.MatchString(l) && !strings.Contains(l, "--help") && !strings.Contains(l, "--version") && !strings.Contains(l, "($") {
					t.Errorf("flag without its environment variable: %s", l)
				}
			}
		})
	}
}

// TestCLIReference keeps docs/cli.md equal to the real help output
// (-update rewrites it).
func TestCLIReference(t *testing.T) {
	var b strings.Builder
	b.WriteString("# dtr command-line reference\n\nGenerated from `dtr <command> --help` by `go test ./commands -run TestCLIReference -update`; a test fails when it drifts from the binary.\n")
	for _, name := range []string{"", "install", "join", "reconfigure", "remove", "destroy", "backup", "restore", "upgrade", "images", "emergency-repair"} {
		args := []string{"--help"}
		title := "dtr"
		if name != "" {
			args = []string{name, "--help"}
			title = "dtr " + name
		}
		r := dtr(args...).exec(t)
		fmt.Fprintf(&b, "\n## %s\n\n```\n%s```\n", title, r.stdout)
	}
	file := filepath.Join("..", "docs", "cli.md")
	if *update {
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(file)
	if err != nil || string(got) != b.String() {
		t.Fatalf("docs/cli.md is out of date (go test ./commands -run TestCLIReference -update): %v", err)
	}
}

func TestHelpExtendedListsEnv(t *testing.T) {
	r := dtr("backup", "--help-extended").exec(t)
	for _, w := range []string{"$DTR_REPLICA_ID", "$UCP_PASSWORD", "gpg --symmetric"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("--help-extended lacks %q:\n%s", w, r.stdout)
		}
	}
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
}

// TestLoopbackInContainer: an installer in a container of its own network
// cannot reach a node that advertises 127.0.0.1; it says to use
// --network host.
func TestLoopbackInContainer(t *testing.T) {
	saved := isolatedFromHost
	defer func() { isolatedFromHost = saved }()
	ctx := context.Background()
	n := ucp.Node{Hostname: "node1", Addr: "127.0.0.1"}
	isolatedFromHost = func(context.Context, *ucp.Cluster) bool { return true }
	if err := loopbackInContainer(ctx, nil, n); err == nil || !strings.Contains(err.Error(), "--network host") {
		t.Fatalf("loopback node from an isolated container: %v", err)
	}
	if err := loopbackInContainer(ctx, nil, ucp.Node{Hostname: "node1", Addr: "10.0.0.11"}); err != nil {
		t.Fatalf("a real address from a container: %v", err)
	}
	isolatedFromHost = func(context.Context, *ucp.Cluster) bool { return false }
	if err := loopbackInContainer(ctx, nil, n); err != nil {
		t.Fatalf("loopback node from the host: %v", err)
	}
}
