package orchestrator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
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

func setEnv(env []string, key, value string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	if value != "" {
		out = append(out, key+"="+value)
	}
	sort.Strings(out)
	return out
}

// updatedSpec applies the change to a replica's current service spec.
func updatedSpec(r Replica, ch Change, tlsCertConfig, tlsKeySecret, tlsCertID, tlsKeyID string) swarm.ServiceSpec {
	spec := r.Spec
	cs := *spec.TaskTemplate.ContainerSpec
	spec.TaskTemplate.ContainerSpec = &cs
	lbl := map[string]string{}
	for k, v := range spec.Labels {
		lbl[k] = v
	}
	spec.Labels = lbl
	set := func(key string, v *string) {
		if v != nil {
			cs.Env = setEnv(cs.Env, key, *v)
		}
	}
	set("DTR_EXTERNAL_URL", ch.ExternalURL)
	set("DTR_LOG_LEVEL", ch.LogLevel)
	set("HTTP_PROXY", ch.HTTPProxy)
	set("HTTPS_PROXY", ch.HTTPSProxy)
	set("NO_PROXY", ch.NoProxy)
	if ch.HTTPPort != nil || ch.HTTPSPort != nil {
		ep := *spec.EndpointSpec
		ep.Ports = append([]swarm.PortConfig(nil), ep.Ports...)
		for i := range ep.Ports {
			switch {
			case ep.Ports[i].TargetPort == 8080 && ch.HTTPPort != nil:
				ep.Ports[i].PublishedPort = uint32(*ch.HTTPPort)
				lbl[LabelHTTPPort] = strconv.Itoa(*ch.HTTPPort)
			case ep.Ports[i].TargetPort == 8443 && ch.HTTPSPort != nil:
				ep.Ports[i].PublishedPort = uint32(*ch.HTTPSPort)
				lbl[LabelHTTPSPort] = strconv.Itoa(*ch.HTTPSPort)
				cs.Env = setEnv(cs.Env, "DTR_PUBLIC_HTTPS_PORT", strconv.Itoa(*ch.HTTPSPort))
			}
		}
		spec.EndpointSpec = &ep
	}
	if ch.Storage != nil {
		c := ReplicaConfig{ID: r.ID, Node: r.Node, Version: r.Version, Storage: *ch.Storage}
		mounts := append(cs.Mounts[:0:0], cs.Mounts...)
		for i := range mounts {
			if mounts[i].Target == storageDir {
				mounts[i] = storageMount(c)
			}
		}
		cs.Mounts = mounts
		b, _ := json.Marshal(ch.Storage)
		lbl[LabelStorage] = string(b)
	}
	if tlsCertConfig != "" {
		var secrets []*swarm.SecretReference
		for _, s := range cs.Secrets {
			if !strings.HasPrefix(s.SecretName, "dtr-tls-key-") {
				secrets = append(secrets, s)
			}
		}
		secrets = append(secrets, &swarm.SecretReference{SecretID: tlsKeyID, SecretName: tlsKeySecret,
			File: &swarm.SecretReferenceFileTarget{Name: tlsKeySecret, UID: "10001", GID: "10001", Mode: 0o400}})
		var configs []*swarm.ConfigReference
		for _, c := range cs.Configs {
			if !strings.HasPrefix(c.ConfigName, "dtr-tls-cert-") {
				configs = append(configs, c)
			}
		}
		configs = append(configs, &swarm.ConfigReference{ConfigID: tlsCertID, ConfigName: tlsCertConfig,
			File: &swarm.ConfigReferenceFileTarget{Name: tlsCertPath, UID: "10001", GID: "10001", Mode: 0o444}})
		cs.Secrets, cs.Configs = secrets, configs
		cs.Env = setEnv(setEnv(cs.Env, "DTR_TLS_CERT", tlsCertPath), "DTR_TLS_KEY", secretsDir+tlsKeySecret)
	}
	delete(lbl, LabelConfigHash)
	h := sha256.Sum256(mustJSON(spec))
	lbl[LabelConfigHash] = hex.EncodeToString(h[:6])
	return spec
}

// replicaAfter is r's configuration once the change applies (for messages).
func replicaAfter(r Replica, ch Change) ReplicaConfig {
	c := ReplicaConfig{ID: r.ID, Node: r.Node, Version: r.Version, Storage: r.Storage}
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
}

// PlanReconfigure updates the replicas one at a time, each healthy before
// the next.
func (o Objects) PlanReconfigure(in *Reconfigure) *Plan {
	what := in.Change.Describe()
	if in.RotateTokenKey != nil {
		what = strings.TrimPrefix(what+", token signing key rotation", ", ")
	}
	p := &Plan{Title: fmt.Sprintf("Reconfigure %d replica(s): %s", len(in.Replicas), what)}
	defer func() {
		if in.RotateTokenKey != nil {
			// Last: a rotation cannot be taken back, so it waits until every
			// step that can fail has passed.
			p.Add(Step{Description: fmt.Sprintf("rotate the token signing key through the admin API of replica %s (no restart)", in.RotateThrough), Apply: in.RotateTokenKey})
		}
	}()
	if in.Change.Describe() == "" {
		return p
	}
	if in.Settings != nil {
		p.Add(Step{Description: "store the cluster settings (external URL) through the admin API", Apply: in.Settings, Undo: in.UndoSettings})
	}
	var tlsCertConfig, tlsKeySecret, tlsCertID, tlsKeyID string
	var createdCert, createdKey bool
	if in.Change.TLSCert != "" {
		tlsCertConfig, tlsKeySecret = tlsNames(in.Change.TLSCert)
		p.Add(Step{
			Description: fmt.Sprintf("store the new TLS certificate as config %s and its key as secret %s", tlsCertConfig, tlsKeySecret),
			Apply: func(ctx context.Context) error {
				lbl := map[string]string{LabelRole: "tls"}
				var err error
				if tlsCertID, err = o.ConfigID(ctx, tlsCertConfig); err == nil && tlsCertID == "" {
					tlsCertID, err = o.CreateConfig(ctx, tlsCertConfig, []byte(in.Change.TLSCert), lbl)
					createdCert = err == nil
				}
				if err != nil {
					return err
				}
				if tlsKeyID, err = o.SecretID(ctx, tlsKeySecret); err == nil && tlsKeyID == "" {
					tlsKeyID, err = o.CreateSecret(ctx, tlsKeySecret, []byte(in.Change.TLSKey), lbl)
					createdKey = err == nil
				}
				return err
			},
			// Only what this run created: an existing pair may be in use.
			Undo: func(ctx context.Context) error {
				var errs []error
				if createdKey {
					errs = append(errs, o.RemoveSecret(ctx, tlsKeySecret))
				}
				if createdCert {
					errs = append(errs, o.RemoveConfig(ctx, tlsCertConfig))
				}
				return errors.Join(errs...)
			},
		})
	}
	for _, r := range in.Replicas {
		r := r
		port := r.HTTPSPort
		if in.Change.HTTPSPort != nil {
			port = *in.Change.HTTPSPort
		}
		url := ReplicaURL(in.Addrs[r.Node], port)
		p.Add(Step{
			Description: fmt.Sprintf("update service %s on node %s and wait until it answers healthy at %s/_ping", ServiceName(r.ID), r.Node, url),
			Apply: func(ctx context.Context) error {
				spec := updatedSpec(r, in.Change, tlsCertConfig, tlsKeySecret, tlsCertID, tlsKeyID)
				if spec.Labels[LabelConfigHash] == r.Spec.Labels[LabelConfigHash] {
					// Already has these settings (a re-run after a failure).
					return o.WaitHealthy(ctx, in.Client, url, ServiceName(r.ID), in.Timeout)
				}
				if _, err := o.C.Engine.ServiceUpdate(ctx, r.ServiceID, r.Meta, spec, swarm.ServiceUpdateOptions{}); err != nil {
					return fmt.Errorf("updating %s: %w", ServiceName(r.ID), err)
				}
				// The old task answers healthy until Swarm stops it: wait for the
				// update to complete, then for the new task's health.
				if err := o.WaitUpdated(ctx, r.ServiceID, in.Timeout); err != nil {
					return err
				}
				return StorageFix(o.WaitHealthy(ctx, in.Client, url, ServiceName(r.ID), in.Timeout), replicaAfter(r, in.Change))
			},
			// Back to the spec it had: a replica that cannot run the new
			// settings (say, a storage it cannot write) serves with the old.
			Undo: func(ctx context.Context) error {
				s, _, err := o.C.Engine.ServiceInspectWithRaw(ctx, r.ServiceID, swarm.ServiceInspectOptions{})
				if err != nil {
					return err
				}
				if s.Spec.Labels[LabelConfigHash] == r.Spec.Labels[LabelConfigHash] {
					return nil // never updated
				}
				if _, err := o.C.Engine.ServiceUpdate(ctx, r.ServiceID, s.Version, r.Spec, swarm.ServiceUpdateOptions{}); err != nil {
					return fmt.Errorf("putting back the settings of %s: %w", ServiceName(r.ID), err)
				}
				return o.WaitUpdated(ctx, r.ServiceID, in.Timeout)
			},
		})
	}
	return p
}
