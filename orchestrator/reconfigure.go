package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/contract"
)

// Change is what reconfigure changes; nil fields stay as they are.
type Change struct {
	ExternalURL *string
	HTTPPort    *int
	HTTPSPort   *int
	LogLevel    *string
	HTTPProxy   *string
	HTTPSProxy  *string
	NoProxy     *string
	Storage     *Storage
	// TLSCert/TLSKey replace the operator's certificate.
	TLSCert, TLSKey string
	// MetricsPort publishes the unauthenticated /metrics on this host
	// port; 0 stops publishing it.
	MetricsPort *int
	// OTLPEndpoint is the trace collector; "" turns tracing off.
	OTLPEndpoint *string
	// MetricsToken replaces the metrics-only token (stored as the secret
	// Reconfigure.MetricsTokenSecret names); MetricsTokenOff removes it.
	MetricsToken    string
	MetricsTokenOff bool
}

// Describe lists the changes for plans and logs.
func (c Change) Describe() string {
	var parts []string
	add := func(name string, v *string) {
		if v != nil {
			parts = append(parts, fmt.Sprintf("%s=%q", name, *v))
		}
	}
	add("external URL", c.ExternalURL)
	add("log level", c.LogLevel)
	add("HTTP proxy", redact(c.HTTPProxy))
	add("HTTPS proxy", redact(c.HTTPSProxy))
	add("no-proxy", c.NoProxy)
	if c.HTTPPort != nil {
		parts = append(parts, fmt.Sprintf("HTTP port %d", *c.HTTPPort))
	}
	if c.HTTPSPort != nil {
		parts = append(parts, fmt.Sprintf("HTTPS port %d", *c.HTTPSPort))
	}
	if c.Storage != nil {
		b, _ := json.Marshal(c.Storage)
		parts = append(parts, "storage "+string(b))
	}
	if c.TLSCert != "" {
		parts = append(parts, "TLS certificate")
	}
	switch {
	case c.MetricsPort == nil:
	case *c.MetricsPort == 0:
		parts = append(parts, "no unauthenticated metrics port")
	default:
		parts = append(parts, fmt.Sprintf("unauthenticated metrics port %d", *c.MetricsPort))
	}
	switch {
	case c.MetricsToken != "":
		parts = append(parts, "a new metrics token")
	case c.MetricsTokenOff:
		parts = append(parts, "no metrics token")
	}
	add("OTLP endpoint", redact(c.OTLPEndpoint))
	return strings.Join(parts, ", ")
}

// redact hides a proxy URL's password in plans and logs.
func redact(v *string) *string {
	if v == nil {
		return nil
	}
	u, err := url.Parse(*v)
	if err != nil || u.User == nil {
		return v
	}
	r := u.Redacted()
	return &r
}

// withEnv is env with the variables the contract knows replaced by c's;
// lines it does not know (an operator's docker service update --env-add)
// stay.
func withEnv(env []string, c contract.Config) []string {
	known := map[string]bool{}
	for _, n := range contract.EnvNames() {
		known[n] = true
	}
	out := c.Env()
	for _, kv := range env {
		if name, _, _ := strings.Cut(kv, "="); !known[name] {
			out = append(out, kv)
		}
	}
	sort.Strings(out)
	return out
}

// updatedSpec is a replica's current service spec with the change applied
// (the objects of a new certificate, tlsCertConfig and tlsKeySecret, and a
// new metrics token's secret, metricsSecret, have their IDs in st).
// Everything the change does not name stays as Swarm has it.
func updatedSpec(r Replica, ch Change, tlsCertConfig, tlsKeySecret, metricsSecret string, st State) (swarm.ServiceSpec, error) {
	spec := r.Spec
	if spec.TaskTemplate.ContainerSpec == nil {
		return spec, fmt.Errorf("service %s has no container spec: it was not made by dtr", contract.ServiceName(r.ID))
	}
	cs := *spec.TaskTemplate.ContainerSpec
	spec.TaskTemplate.ContainerSpec = &cs
	spec.Labels = maps.Clone(spec.Labels)
	env, err := contract.ParseEnv(cs.Env)
	if err != nil {
		return spec, fmt.Errorf("the environment of service %s: %w", contract.ServiceName(r.ID), err)
	}
	set := func(field *string, v *string) {
		if v != nil {
			*field = *v
		}
	}
	set(&env.ExternalURL, ch.ExternalURL)
	set(&env.LogLevel, ch.LogLevel)
	set(&env.HTTPProxy, ch.HTTPProxy)
	set(&env.HTTPSProxy, ch.HTTPSProxy)
	set(&env.NoProxy, ch.NoProxy)
	set(&env.OTLPEndpoint, ch.OTLPEndpoint)
	if ch.HTTPPort != nil || ch.HTTPSPort != nil {
		ep := *spec.EndpointSpec
		ep.Ports = append([]swarm.PortConfig(nil), ep.Ports...)
		for i := range ep.Ports {
			switch {
			case ep.Ports[i].TargetPort == contract.HTTPPort && ch.HTTPPort != nil:
				ep.Ports[i].PublishedPort = uint32(*ch.HTTPPort)
				spec.Labels[LabelHTTPPort] = strconv.Itoa(*ch.HTTPPort)
			case ep.Ports[i].TargetPort == contract.HTTPSPort && ch.HTTPSPort != nil:
				ep.Ports[i].PublishedPort = uint32(*ch.HTTPSPort)
				spec.Labels[LabelHTTPSPort] = strconv.Itoa(*ch.HTTPSPort)
				env.PublicHTTPSPort = *ch.HTTPSPort
			}
		}
		spec.EndpointSpec = &ep
	}
	if ch.Storage != nil {
		c := ReplicaConfig{ID: r.ID, Node: r.Node, Version: r.Version, Storage: *ch.Storage}
		mounts := slices.Clone(cs.Mounts)
		for i := range mounts {
			if mounts[i].Target == contract.StorageDir {
				mounts[i] = storageMount(c)
			}
		}
		cs.Mounts = mounts
		b, _ := json.Marshal(ch.Storage)
		spec.Labels[LabelStorage] = string(b)
	}
	if tlsCertConfig != "" {
		// The old certificate's objects are the ones its files come from.
		var secrets []*swarm.SecretReference
		for _, s := range cs.Secrets {
			if s.File == nil || contract.SecretsDir+s.File.Name != env.TLSKeyFile {
				secrets = append(secrets, s)
			}
		}
		var configs []*swarm.ConfigReference
		for _, c := range cs.Configs {
			if c.File == nil || c.File.Name != contract.TLSCertPath {
				configs = append(configs, c)
			}
		}
		cs.Secrets = append(secrets, secretRef(st.Secrets[tlsKeySecret], tlsKeySecret))
		cs.Configs = append(configs, configRef(st.Configs[tlsCertConfig], tlsCertConfig, contract.TLSCertPath))
		env.TLSCertFile, env.TLSKeyFile = contract.TLSCertPath, contract.SecretsDir+tlsKeySecret
	}
	if ch.MetricsPort != nil {
		var ep swarm.EndpointSpec
		if spec.EndpointSpec != nil {
			ep = *spec.EndpointSpec
		}
		ep.Ports = slices.DeleteFunc(slices.Clone(ep.Ports), func(p swarm.PortConfig) bool { return p.TargetPort == contract.MetricsPort })
		delete(spec.Labels, LabelMetricsPort)
		env.MetricsAddr = ""
		if *ch.MetricsPort != 0 {
			ep.Ports = append(ep.Ports, metricsPortConfig(*ch.MetricsPort))
			spec.Labels[LabelMetricsPort] = strconv.Itoa(*ch.MetricsPort)
			env.MetricsAddr = ":" + strconv.Itoa(contract.MetricsPort)
		}
		spec.EndpointSpec = &ep
	}
	if ch.MetricsToken != "" || ch.MetricsTokenOff {
		// The old token's secret is the one its file comes from.
		cs.Secrets = slices.DeleteFunc(slices.Clone(cs.Secrets), func(s *swarm.SecretReference) bool {
			return env.MetricsTokenFile != "" && s.File != nil && contract.SecretsDir+s.File.Name == env.MetricsTokenFile
		})
		env.MetricsTokenFile = ""
		if ch.MetricsToken != "" {
			cs.Secrets = append(cs.Secrets, secretRef(st.Secrets[metricsSecret], metricsSecret))
			env.MetricsTokenFile = contract.SecretsDir + metricsSecret
		}
	}
	cs.Env = withEnv(cs.Env, env)
	setConfigHash(&spec)
	return spec, nil
}

// replicaAfter is r's configuration once the change applies (for messages).
func replicaAfter(r Replica, ch Change) ReplicaConfig {
	c, err := r.Config()
	if err != nil {
		c = ReplicaConfig{ID: r.ID, Node: r.Node, Version: r.Version, Storage: r.Storage}
	}
	if ch.Storage != nil {
		c.Storage = *ch.Storage
	}
	return c
}

// Reconfigure is what a rolling reconfiguration needs.
type Reconfigure struct {
	Replicas []Replica
	Addrs    map[string]string // node hostname → address
	Change   Change
	Client   *http.Client
	Timeout  time.Duration
	// Settings applies cluster-wide settings through a replica's admin API;
	// UndoSettings puts the old ones back when a later step fails.
	Settings, UndoSettings func(ctx context.Context) error
	// RotateTokenKey, when set, rotates the token signing key through a
	// replica's admin API, after the replicas run their new settings. It
	// restarts nothing: with no Change it is the whole plan.
	RotateTokenKey func(ctx context.Context) error
	// RotateThrough is the replica whose admin API rotates the key (plans).
	RotateThrough string
	// MetricsTokenSecret is the name of the secret a new metrics token is
	// stored as (Objects.NextMetricsTokenSecret).
	MetricsTokenSecret string
	// Identity, when set, is the identity source SetIdentity stores through
	// the admin API of replica IdentityThrough, after the replicas run
	// their new settings; UndoIdentity puts the old settings back when the
	// rotation after it fails.
	Identity                  *IdentitySource
	IdentityThrough           string
	SetIdentity, UndoIdentity func(ctx context.Context) error
}

// PlanReconfigure updates the replicas one at a time, each healthy before
// the next.
func (o Objects) PlanReconfigure(in *Reconfigure) *Plan {
	what := in.Change.Describe()
	if in.Identity != nil {
		what = strings.TrimPrefix(what+", identity source "+in.Identity.Kind, ", ")
	}
	if in.RotateTokenKey != nil {
		what = strings.TrimPrefix(what+", token signing key rotation", ", ")
	}
	p := &Plan{Title: fmt.Sprintf("Reconfigure %d replica(s): %s", len(in.Replicas), what)}
	defer func() {
		if in.RotateTokenKey != nil {
			// Last: a rotation cannot be taken back, so it waits until every
			// step that can fail has passed.
			p.Add(Step{Description: fmt.Sprintf("rotate the token signing key through the admin API of replica %s (no restart)", in.RotateThrough), Apply: noState(in.RotateTokenKey)})
		}
	}()
	defer func() {
		if in.Identity != nil && in.SetIdentity != nil {
			// Once the replicas run their new settings (a new external
			// URL, a CA bundle), which UCP sign-ins may need.
			st := Step{Description: fmt.Sprintf("use %s through the admin API of replica %s (no restart)", in.Identity.Describe(), in.IdentityThrough), Apply: noState(in.SetIdentity)}
			if in.UndoIdentity != nil {
				st.Undo = noState(in.UndoIdentity)
			}
			p.Add(st)
		}
	}()
	if in.Change.Describe() == "" {
		return p
	}
	if in.Settings != nil {
		st := Step{Description: "store the cluster settings (external URL) through the admin API", Apply: noState(in.Settings)}
		if in.UndoSettings != nil {
			st.Undo = noState(in.UndoSettings)
		}
		p.Add(st)
	}
	var tlsCertConfig, tlsKeySecret string
	if in.Change.TLSCert != "" {
		tlsCertConfig, tlsKeySecret = tlsNames(in.Change.TLSCert)
		p.Add(o.storeTLSStep(fmt.Sprintf("store the new TLS certificate as config %s and its key as secret %s", tlsCertConfig, tlsKeySecret),
			in.Change.TLSCert, in.Change.TLSKey, map[string]string{LabelRole: "tls"}, true))
	}
	var oldMetricsSecrets []string
	if in.Change.MetricsToken != "" {
		version := ""
		if len(in.Replicas) > 0 {
			version = in.Replicas[0].Version
		}
		p.Add(o.storeMetricsTokenStep(in.MetricsTokenSecret, in.Change.MetricsToken, version))
	}
	if in.Change.MetricsToken != "" || in.Change.MetricsTokenOff {
		for _, r := range in.Replicas {
			if c, err := r.Config(); err == nil && c.MetricsTokenSecret != "" && !slices.Contains(oldMetricsSecrets, c.MetricsTokenSecret) {
				oldMetricsSecrets = append(oldMetricsSecrets, c.MetricsTokenSecret)
			}
		}
		defer func() {
			// Once no replica reads them; a leftover one is harmless, so a
			// failure only warns.
			for _, name := range oldMetricsSecrets {
				p.Add(Step{Description: "remove the old metrics token's secret " + name, Apply: func(ctx context.Context, _ *State) error {
					if err := o.RemoveSecret(ctx, name); err != nil {
						o.warnf("the old metrics token's secret %s stays (%v); remove it with docker secret rm %s", name, err, name)
					}
					return nil
				}})
			}
		}()
	}
	for _, r := range in.Replicas {
		port := r.HTTPSPort
		if in.Change.HTTPSPort != nil {
			port = *in.Change.HTTPSPort
		}
		url := ReplicaURL(in.Addrs[r.Node], port)
		name := contract.ServiceName(r.ID)
		spec := func(st State) (swarm.ServiceSpec, error) {
			return updatedSpec(r, in.Change, tlsCertConfig, tlsKeySecret, in.MetricsTokenSecret, st)
		}
		p.Add(Step{
			Description: fmt.Sprintf("update service %s on node %s and wait until it answers healthy at %s/_ping", name, r.Node, url),
			Service:     spec,
			Apply: func(ctx context.Context, st *State) error {
				spec, err := spec(*st)
				if err != nil {
					return err
				}
				if spec.Labels[LabelConfigHash] == r.Spec.Labels[LabelConfigHash] {
					// Already has these settings (a re-run after a failure).
					return o.WaitHealthy(ctx, in.Client, url, name, in.Timeout)
				}
				if _, err := o.C.Engine.ServiceUpdate(ctx, r.ServiceID, r.Meta, spec, swarm.ServiceUpdateOptions{}); err != nil {
					return fmt.Errorf("updating %s: %w", name, err)
				}
				// The old task answers healthy until Swarm stops it: wait for the
				// update to complete, then for the new task's health.
				if err := o.WaitUpdated(ctx, r.ServiceID, in.Timeout); err != nil {
					return err
				}
				return StorageFix(o.WaitHealthy(ctx, in.Client, url, name, in.Timeout), replicaAfter(r, in.Change))
			},
			// Back to the spec it had: a replica that cannot run the new
			// settings (say, a storage it cannot write) serves with the old.
			Undo: func(ctx context.Context, _ *State) error {
				s, _, err := o.C.Engine.ServiceInspectWithRaw(ctx, r.ServiceID, swarm.ServiceInspectOptions{})
				if err != nil {
					return err
				}
				if s.Spec.Labels[LabelConfigHash] == r.Spec.Labels[LabelConfigHash] {
					return nil // never updated
				}
				if _, err := o.C.Engine.ServiceUpdate(ctx, r.ServiceID, s.Version, r.Spec, swarm.ServiceUpdateOptions{}); err != nil {
					return fmt.Errorf("putting back the settings of %s: %w", name, err)
				}
				return o.WaitUpdated(ctx, r.ServiceID, in.Timeout)
			},
		})
	}
	return p
}

// noState is a step's Apply or Undo that needs nothing from the run's State.
func noState(f func(context.Context) error) func(context.Context, *State) error {
	return func(ctx context.Context, _ *State) error { return f(ctx) }
}
