package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/ucp"
)

// ucpOptions are the control-plane flags every cluster command shares.
type ucpOptions struct {
	url      string
	username string
	password string
	ca       string
	insecure bool
}

const (
	usageUCPURL      = "The UCP URL including domain and port"
	usageUCPUsername = "The UCP administrator username"
)

func addUCPFlags(f flags, o *ucpOptions) {
	f.String(&o.url, "ucp-url", "", usageUCPURL+": https://ucp.example.com, tcp://manager:2376 or unix:///var/run/docker.sock", "UCP_URL")
	f.String(&o.username, "ucp-username", "", usageUCPUsername+" (on a plain Swarm: the registry's admin)", "UCP_USERNAME")
	f.String(&o.password, "ucp-password", "", "The UCP administrator password", "UCP_PASSWORD")
	f.String(&o.ca, "ucp-ca", "", "Use a PEM-encoded TLS CA certificate for UCP: --ucp-ca \"$(cat ca.pem)\"", "UCP_CA")
	f.Bool(&o.insecure, "ucp-insecure-tls", false, "Disable TLS verification for UCP (use --ucp-ca in production)", "UCP_INSECURE_TLS")
}

// credentials says when a command needs --ucp-username and --ucp-password.
type credentials int

const (
	// credsAlways: the command calls the replicas' admin API (or creates the
	// first admin), so it needs them whatever the control plane is.
	credsAlways credentials = iota
	// credsForLogin: only UCP/MKE's login needs them.
	credsForLogin
)

// missingValue is a required value the operator did not give.
type missingValue struct {
	flag   string
	usage  string
	secret bool
	target *string
}

// complete asks for the missing control-plane values in DTR's order and
// format, or, without a terminal, fails naming every missing flag and its
// environment variable.
func (o *ucpOptions) complete(cli *Cli, cmd *cobra.Command, creds credentials) error {
	if o.ca != "" && o.insecure {
		return usageErrorf("--ucp-ca and --ucp-insecure-tls contradict each other: pass --ucp-ca to verify UCP's certificate, or --ucp-insecure-tls to skip verification, not both")
	}
	if o.ca != "" {
		if err := validatePEM("ucp-ca", o.ca, false); err != nil {
			return err
		}
	}
	url := missingValue{flag: "ucp-url", usage: usageUCPURL, target: &o.url}
	login := []missingValue{
		{flag: "ucp-username", usage: usageUCPUsername, target: &o.username},
		{flag: "ucp-password", secret: true, target: &o.password},
	}
	needLogin := func() bool {
		if creds == credsAlways {
			return true
		}
		ep, err := ucp.ParseURL(o.url)
		return err == nil && ep.NeedsLogin()
	}
	if o.url != "" {
		if _, err := ucp.ParseURL(o.url); err != nil {
			return err
		}
	}
	if !cli.prompter().Interactive() {
		vals := []missingValue{url}
		if needLogin() {
			vals = append(vals, login...)
		}
		return askFor(cli, cmd, vals)
	}
	if err := askFor(cli, cmd, []missingValue{url}); err != nil {
		return err
	}
	if _, err := ucp.ParseURL(o.url); err != nil {
		return err
	}
	if needLogin() {
		return askFor(cli, cmd, login)
	}
	return nil
}

// askFor prompts for each empty value when stdin is a terminal; otherwise it
// returns one usage error naming all of them.
func askFor(cli *Cli, cmd *cobra.Command, vals []missingValue) error {
	p := cli.prompter()
	var missing []string
	for _, v := range vals {
		if *v.target != "" {
			continue
		}
		if !p.Interactive() {
			missing = append(missing, envOf(cmd, v.flag))
			continue
		}
		var (
			ans string
			err error
		)
		if v.secret {
			ans, err = p.Password(v.flag)
		} else {
			ans, err = p.Input(fmt.Sprintf("%s (%s)", v.flag, v.usage), "")
		}
		if err != nil {
			return fmt.Errorf("asking for --%s: %w", v.flag, err)
		}
		if ans == "" {
			return usageErrorf("--%s is required and the answer was empty", v.flag)
		}
		*v.target = ans
	}
	if len(missing) == 0 {
		return nil
	}
	hint := "pass the flags or set the variables (docker run -e NAME)"
	for _, m := range missing {
		if strings.HasPrefix(m, "--ucp-password") {
			hint += "; for the password: read -sp 'ucp password: ' UCP_PASSWORD; export UCP_PASSWORD; docker run --env UCP_PASSWORD …"
		}
	}
	return usageErrorf("missing %s: stdin is not a terminal (docker run without -t), so dtr cannot ask for %s; %s",
		strings.Join(missing, ", "), pluralIt(len(missing)), hint)
}

func pluralIt(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

// connect reaches the control plane with the completed options.
func (o *ucpOptions) connect(ctx context.Context, cli *Cli) (*ucp.Cluster, error) {
	return cli.Connect(ctx, ucp.Options{
		URL:      o.url,
		Username: o.username,
		Password: o.password,
		CA:       o.ca,
		Insecure: o.insecure,
		CertPath: cli.getenv("DOCKER_CERT_PATH"),
		Log:      cli.Log,
	})
}

// replicaChoice is the replica a command works through: the one named by
// --<flag> (id), or, on a terminal, the one the operator picks at DTR's
// prompt ("Choose a replica to join to [<id>]: ").
type replicaChoice struct {
	flag, id, question string
	intro              string // logged once connected, before the search
}

// connectToReplicas is how every command that works on existing replicas
// starts: complete the control-plane options (asking on a terminal),
// connect, find the replicas and, given a choice, choose one. The caller
// closes the cluster.
func (o *ucpOptions) connectToReplicas(ctx context.Context, cli *Cli, cmd *cobra.Command, creds credentials, choice *replicaChoice) (*ucp.Cluster, orchestrator.Replica, []orchestrator.Replica, error) {
	if err := o.complete(cli, cmd, creds); err != nil {
		return nil, orchestrator.Replica{}, nil, err
	}
	cluster, err := o.connect(ctx, cli)
	if err != nil {
		return nil, orchestrator.Replica{}, nil, err
	}
	var chosen orchestrator.Replica
	var replicas []orchestrator.Replica
	if choice == nil {
		replicas, err = orchestrator.FindReplicas(ctx, cluster)
	} else {
		if choice.intro != "" {
			cli.Log.Info(choice.intro)
		}
		chosen, replicas, err = chooseReplica(ctx, cli, cmd, cluster, *choice)
	}
	if err != nil {
		cluster.Close()
		return nil, orchestrator.Replica{}, nil, err
	}
	return cluster, chosen, replicas, nil
}

// chooseReplica finds the cluster's replicas and picks one of them.
func chooseReplica(ctx context.Context, cli *Cli, cmd *cobra.Command, cluster *ucp.Cluster, choice replicaChoice) (orchestrator.Replica, []orchestrator.Replica, error) {
	cli.Log.Info("Searching the cluster for DTR replicas")
	replicas, err := orchestrator.FindReplicas(ctx, cluster)
	if err != nil {
		return orchestrator.Replica{}, nil, err
	}
	r, err := pickReplica(cli, cmd, replicas, choice)
	if err != nil {
		return orchestrator.Replica{}, nil, err
	}
	return r, replicas, nil
}

// pickReplica returns the replica choice names, asking for it on a terminal.
func pickReplica(cli *Cli, cmd *cobra.Command, replicas []orchestrator.Replica, choice replicaChoice) (orchestrator.Replica, error) {
	if len(replicas) == 0 {
		cli.Log.Info("Did not find any potential Docker Trusted Registry replicas.")
		cli.Log.Info("You must use the 'install' command to first install a Docker Trusted Registry replica.")
		return orchestrator.Replica{}, fmt.Errorf("Couldn't find any existing DTR replicas")
	}
	ids := make([]string, len(replicas))
	for i, r := range replicas {
		ids[i] = r.ID
	}
	cli.Log.Infof("This cluster contains the replicas: %s", strings.Join(ids, " "))
	chosen := choice.id
	if chosen == "" {
		switch {
		case cli.prompter().Interactive():
			var err error
			chosen, err = cli.prompter().Input(choice.question, ids[0])
			if err != nil {
				return orchestrator.Replica{}, fmt.Errorf("asking for --%s: %w", choice.flag, err)
			}
		case len(replicas) == 1:
			chosen = ids[0]
			cli.Log.Infof("Using replica %s, the only one in this cluster (%s)", chosen, envOf(cmd, choice.flag))
		default:
			return orchestrator.Replica{}, usageErrorf("missing %s: this cluster has several replicas (%s) and stdin is not a terminal, so dtr cannot ask which one",
				envOf(cmd, choice.flag), strings.Join(ids, ", "))
		}
	}
	id, err := validateReplicaID(chosen)
	if err != nil {
		return orchestrator.Replica{}, err
	}
	for _, r := range replicas {
		if r.ID == id {
			return r, nil
		}
	}
	return orchestrator.Replica{}, usageErrorf("The replica '%s' you specified could not be found. Valid replicas: %s", id, strings.Join(ids, ", "))
}
