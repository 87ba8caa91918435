package orchestrator

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/pki"
	"github.com/dtr-registry/dtr/ucp"
)

// Install is what an install (or the first replica of a restore) needs.
type Install struct {
	Replica       ReplicaConfig
	OverlaySubnet string
	AdminPassword string
	// TLSCert and TLSKey are the operator's PEM certificate chain and key.
	TLSCert, TLSKey string
	// MetricsToken, when set, is stored as a secret the replica reads its
	// metrics-only bearer token from.
	MetricsToken  string
	HealthTimeout time.Duration
	// Client reaches replicas; it must trust the cluster CA, which this plan
	// may create: ClientFor builds it once the CA is known.
	ClientFor func(caPEM []byte) *http.Client
	// Restore, for dtr restore: the backed-up CA replaces any other, and the
	// backup is sent to the new replica once it serves.
	Restore *Restore
	// Identity, when not nil, is set through the admin API once the replica
	// is healthy (install --identity-source ucp).
	Identity *IdentitySource
}

// Restore is what a restore adds to an install.
type Restore struct {
	CACertPEM, CAKeyPEM []byte
	// Client trusts the CA and presents the restore client certificate.
	Client *http.Client
	// Backup opens the verified backup, with its size.
	Backup func() (io.ReadCloser, int64, error)
}

func tlsNames(cert string) (certConfig, keySecret string) {
	h := sha256.Sum256([]byte(cert))
	suffix := hex.EncodeToString(h[:4])
	return "dtr-tls-cert-" + suffix, "dtr-tls-key-" + suffix
}

// PlanInstall computes the steps of an install from what exists.
func (o Objects) PlanInstall(ctx context.Context, in *Install) (*Plan, error) {
	c := in.Replica
	p := &Plan{Title: fmt.Sprintf("Install replica %s on node %s", c.ID, c.Node)}
	caStep := "create the cluster CA"
	if in.Restore != nil {
		p.Title = fmt.Sprintf("Restore replica %s on node %s from a backup", c.ID, c.Node)
		caStep = "store the backup's cluster CA"
	}
	netID, err := o.NetworkID(ctx)
	if err != nil {
		return nil, err
	}
	if netID == "" {
		p.Add(Step{
			Description: fmt.Sprintf("create network %s (overlay, attachable, subnet %s)", NetworkName, in.OverlaySubnet),
			Apply: func(ctx context.Context, _ *State) error {
				_, err := o.CreateNetwork(ctx, in.OverlaySubnet, c.Version)
				return err
			},
			Undo: func(ctx context.Context, _ *State) error { return o.RemoveNetwork(ctx) },
		})
	}
	existingKey, err := o.SecretID(ctx, CAKeySecret)
	if err != nil {
		return nil, err
	}
	existingCert, err := o.ConfigID(ctx, CACertConfig)
	if err != nil {
		return nil, err
	}
	if existingKey != "" && existingCert != "" && in.Restore == nil {
		p.Start.setSecret(CAKeySecret, existingKey, false)
		p.Start.setConfig(CACertConfig, existingCert, false)
		if p.Start.CAPEM, err = o.ConfigData(ctx, CACertConfig); err != nil {
			return nil, err
		}
	} else {
		p.Add(Step{
			Description: fmt.Sprintf("%s: secret %s and config %s", caStep, CAKeySecret, CACertConfig),
			Apply: func(ctx context.Context, st *State) error {
				_ = o.RemoveSecret(ctx, CAKeySecret) // a half-made CA from an earlier failure
				_ = o.RemoveConfig(ctx, CACertConfig)
				certPEM, key, err := newCA(in.Restore)
				if err != nil {
					return err
				}
				lbl := map[string]string{LabelRole: "ca", LabelVersion: c.Version}
				keyID, err := o.CreateSecret(ctx, CAKeySecret, key, lbl)
				if err != nil {
					return err
				}
				st.setSecret(CAKeySecret, keyID, true)
				certID, err := o.CreateConfig(ctx, CACertConfig, certPEM, lbl)
				if err != nil {
					return err
				}
				st.setConfig(CACertConfig, certID, true)
				st.CAPEM = certPEM
				return nil
			},
			Undo: func(ctx context.Context, _ *State) error {
				return joinErr(o.RemoveSecret(ctx, CAKeySecret), o.RemoveConfig(ctx, CACertConfig))
			},
		})
	}
	if in.TLSCert != "" {
		c.TLSCertConfig, c.TLSKeySecret = tlsNames(in.TLSCert)
		p.Add(o.storeTLSStep(fmt.Sprintf("store the TLS certificate as config %s and its key as secret %s", c.TLSCertConfig, c.TLSKeySecret),
			in.TLSCert, in.TLSKey, map[string]string{LabelRole: "tls", LabelVersion: c.Version}, false))
	}
	if in.MetricsToken != "" {
		if c.MetricsTokenSecret, err = o.NextMetricsTokenSecret(ctx); err != nil {
			return nil, err
		}
		p.Add(o.storeMetricsTokenStep(c.MetricsTokenSecret, in.MetricsToken, c.Version))
	}
	if c.AdminUsername != "" {
		p.Add(Step{
			Description: fmt.Sprintf("store the first admin's password as secret %s", AdminSecret(c.ID)),
			Apply: func(ctx context.Context, st *State) error {
				id, err := o.CreateSecret(ctx, AdminSecret(c.ID), []byte(in.AdminPassword), labels(c, "bootstrap"))
				if err == nil {
					st.setSecret(AdminSecret(c.ID), id, true)
				}
				return err
			},
			Undo: func(ctx context.Context, _ *State) error { return o.RemoveSecret(ctx, AdminSecret(c.ID)) },
		})
	}
	spec := func(st State) (swarm.ServiceSpec, error) { return ServiceSpec(c, st.IDs(c)), nil }
	p.Add(Step{
		Description: "create " + Describe(c),
		Service:     spec,
		Apply:       o.createService(spec),
		Undo:        func(ctx context.Context, _ *State) error { return o.RemoveReplicaObjects(ctx, c) },
	})
	url := ReplicaURL(c.NodeAddr, c.HTTPSPort)
	name := contract.ServiceName(c.ID)
	if r := in.Restore; r != nil {
		p.Add(Step{
			Description: fmt.Sprintf("send the verified backup to replica %s at %s%s", c.ID, url, backup.RestorePath),
			Apply: func(ctx context.Context, _ *State) error {
				if err := o.WaitRestoreReady(ctx, r.Client, url, c.ID, name, in.HealthTimeout); err != nil {
					return err
				}
				return SendBackup(ctx, r.Client, url, r.Backup)
			},
		})
	}
	p.Add(Step{
		Description: fmt.Sprintf("wait until replica %s answers healthy at %s/_ping", c.ID, url),
		Apply: func(ctx context.Context, st *State) error {
			// The replica's storage probe writes at start: an unwritable
			// storage fails here, and the plan undoes the install.
			return StorageFix(o.WaitHealthy(ctx, in.ClientFor(st.CAPEM), url, name, in.HealthTimeout), c)
		},
	})
	if in.Identity != nil && in.Identity.Kind != IdentityLocal {
		// Last, with no undo of its own: when the replica cannot use UCP,
		// the plan removes the replica like any failed install.
		p.Add(identityStep(c.ID, url, c.AdminUsername, in.AdminPassword, *in.Identity, func(st State) *http.Client { return in.ClientFor(st.CAPEM) }))
	}
	return p, nil
}

// newCA is the cluster CA of an install: the backup's for a restore, else
// a new one.
func newCA(r *Restore) (certPEM, keyPEM []byte, err error) {
	if r != nil {
		return r.CACertPEM, r.CAKeyPEM, nil
	}
	ca, err := pki.NewCA("dtr cluster CA")
	if err != nil {
		return nil, nil, err
	}
	if keyPEM, err = ca.KeyPEM(); err != nil {
		return nil, nil, err
	}
	return ca.CertPEM(), keyPEM, nil
}

// storeTLSStep stores the operator's certificate as a config and its key as
// a secret, reusing a pair that exists (a re-run). Its undo removes the
// pair, or with onlyCreated just what this run created: an existing pair
// may be in use.
func (o Objects) storeTLSStep(desc, cert, key string, lbl map[string]string, onlyCreated bool) Step {
	certConfig, keySecret := tlsNames(cert)
	return Step{
		Description: desc,
		Apply: func(ctx context.Context, st *State) error {
			certID, err := o.ConfigID(ctx, certConfig)
			if err != nil {
				return err
			}
			made := certID == ""
			if made {
				if certID, err = o.CreateConfig(ctx, certConfig, []byte(cert), lbl); err != nil {
					return err
				}
			}
			st.setConfig(certConfig, certID, made)
			keyID, err := o.SecretID(ctx, keySecret)
			if err != nil {
				return err
			}
			made = keyID == ""
			if made {
				if keyID, err = o.CreateSecret(ctx, keySecret, []byte(key), lbl); err != nil {
					return err
				}
			}
			st.setSecret(keySecret, keyID, made)
			return nil
		},
		Undo: func(ctx context.Context, st *State) error {
			var errs []error
			if !onlyCreated || st.Created["secret "+keySecret] {
				errs = append(errs, o.RemoveSecret(ctx, keySecret))
			}
			if !onlyCreated || st.Created["config "+certConfig] {
				errs = append(errs, o.RemoveConfig(ctx, certConfig))
			}
			return errors.Join(errs...)
		},
	}
}

// NextMetricsTokenSecret is the name of the next metrics token secret: one
// past the highest dtr-metrics-token-<n> on the cluster.
func (o Objects) NextMetricsTokenSecret(ctx context.Context) (string, error) {
	list, err := o.C.Engine.SecretList(ctx, swarm.SecretListOptions{})
	if err != nil {
		return "", &ucp.Error{Msg: fmt.Sprintf("listing secrets: %v", err)}
	}
	n := 0
	for _, s := range list {
		if m, err := strconv.Atoi(strings.TrimPrefix(s.Spec.Name, MetricsTokenSecretPrefix)); err == nil && strings.HasPrefix(s.Spec.Name, MetricsTokenSecretPrefix) && m > n {
			n = m
		}
	}
	return MetricsTokenSecretPrefix + strconv.Itoa(n+1), nil
}

// storeMetricsTokenStep stores the metrics-only token as secret name; its
// undo removes it (the name is new, so nothing else uses it).
func (o Objects) storeMetricsTokenStep(name, token, version string) Step {
	return Step{
		Description: "store the metrics token as secret " + name,
		Apply: func(ctx context.Context, st *State) error {
			id, err := o.CreateSecret(ctx, name, []byte(token), map[string]string{LabelRole: "metrics-token", LabelVersion: version})
			if err == nil {
				st.setSecret(name, id, true)
			}
			return err
		},
		Undo: func(ctx context.Context, _ *State) error { return o.RemoveSecret(ctx, name) },
	}
}

// SendBackup uploads a verified backup to a replica waiting to restore it;
// the replica verifies it again as it receives it.
func SendBackup(ctx context.Context, client *http.Client, url string, open func() (io.ReadCloser, int64, error)) error {
	body, size, err := open()
	if err != nil {
		return err
	}
	defer body.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url+backup.RestorePath, body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("sending the backup to %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the replica refused the backup: %s: %s", resp.Status, apiMessage(resp.Body))
	}
	return nil
}

// RestoreClient is an HTTPS client that trusts the cluster CA and presents
// a short-lived client certificate that CA issues for restore.
func RestoreClient(caCertPEM, caKeyPEM []byte) (*http.Client, error) {
	ca, err := pki.ParseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("the backup's cluster CA: %w", err)
	}
	kp, err := ca.Issue(backup.RestoreClientName, nil, time.Hour)
	if err != nil {
		return nil, err
	}
	cert, err := kp.TLSCertificate()
	if err != nil {
		return nil, err
	}
	c := HTTPSClient(caCertPEM)
	c.Timeout = 0 // a large backup may take a while; the context bounds it
	tr := c.Transport.(*http.Transport)
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	tr.WriteBufferSize = 1 << 20 // the backup, images and all, goes in large writes
	return c, nil
}

// Join is what adding a replica needs.
type Join struct {
	Replica       ReplicaConfig
	Existing      Replica
	API           ReplicaAPI
	HealthTimeout time.Duration
	// SkipNetworkTest leaves out the overlay test before the member is added.
	SkipNetworkTest bool
}

// PlanJoin computes the steps of a join. The new replica references the
// operator's certificate objects that in.Replica names (the existing
// replica's, from its Config).
func (o Objects) PlanJoin(ctx context.Context, in *Join) (*Plan, error) {
	c := in.Replica
	c.Join = true
	p := &Plan{Title: fmt.Sprintf("Join replica %s on node %s to replica %s", c.ID, c.Node, in.Existing.ID)}
	caKeyID, err := o.SecretID(ctx, CAKeySecret)
	if err != nil {
		return nil, err
	}
	caCertID, err := o.ConfigID(ctx, CACertConfig)
	if err != nil {
		return nil, err
	}
	if caKeyID == "" || caCertID == "" {
		return nil, fmt.Errorf("the cluster CA (secret %s, config %s) is missing; this cluster was not installed by this dtr, or was partly destroyed", CAKeySecret, CACertConfig)
	}
	p.Start.setSecret(CAKeySecret, caKeyID, false)
	p.Start.setConfig(CACertConfig, caCertID, false)
	if c.TLSKeySecret != "" {
		keyID, err := o.SecretID(ctx, c.TLSKeySecret)
		if err != nil {
			return nil, err
		}
		certID, err := o.ConfigID(ctx, c.TLSCertConfig)
		if err != nil {
			return nil, err
		}
		if keyID == "" || certID == "" {
			return nil, fmt.Errorf("replica %s uses the TLS certificate in config %s and secret %s, and one of them is missing: give the certificate again with dtr reconfigure --dtr-cert --dtr-key, then join", in.Existing.ID, c.TLSCertConfig, c.TLSKeySecret)
		}
		p.Start.setSecret(c.TLSKeySecret, keyID, false)
		p.Start.setConfig(c.TLSCertConfig, certID, false)
	}
	if c.MetricsTokenSecret != "" {
		id, err := o.SecretID(ctx, c.MetricsTokenSecret)
		if err != nil {
			return nil, err
		}
		if id == "" {
			return nil, fmt.Errorf("replica %s reads its metrics token from secret %s, which is missing: give the token again with dtr reconfigure --metrics-token-file, then join", in.Existing.ID, c.MetricsTokenSecret)
		}
		p.Start.setSecret(c.MetricsTokenSecret, id, false)
	}
	if !in.SkipNetworkTest {
		p.Add(o.networkTestStep(c, in.Existing))
	}
	p.Add(Step{
		Description: fmt.Sprintf("add replica %s's metadata member as a learner, through replica %s", c.ID, in.Existing.ID),
		Apply: func(ctx context.Context, st *State) error {
			added, err := in.API.AddReplica(ctx, c.ID, c.PeerURL())
			st.InitialCluster = added.InitialCluster
			return err
		},
		Undo: func(ctx context.Context, _ *State) error { return in.API.RemoveReplica(ctx, c.ID) },
	})
	url := ReplicaURL(c.NodeAddr, c.HTTPSPort)
	name := contract.ServiceName(c.ID)
	spec := func(st State) (swarm.ServiceSpec, error) {
		j := c
		j.InitialCluster = st.InitialCluster
		return ServiceSpec(j, st.IDs(j)), nil
	}
	create := o.createService(spec)
	p.Add(Step{
		Description: "create " + Describe(c),
		Service:     spec,
		Apply: func(ctx context.Context, st *State) error {
			if err := create(ctx, st); err != nil {
				return err
			}
			// A learner is not ready (/_ping) until promoted; wait until it serves.
			return o.WaitLive(ctx, in.API.Client, url, name, in.HealthTimeout)
		},
		Undo: func(ctx context.Context, _ *State) error { return o.RemoveReplicaObjects(ctx, c) },
	})
	p.Add(Step{
		Description: fmt.Sprintf("promote replica %s's member to a voter once it has caught up", c.ID),
		Apply:       func(ctx context.Context, _ *State) error { return in.API.Promote(ctx, c.ID, in.HealthTimeout) },
		// Remove the member while it still runs: a stopped voter in a
		// two-member cluster could never be removed (no quorum).
		Undo: func(ctx context.Context, _ *State) error { return in.API.RemoveReplica(ctx, c.ID) },
	})
	p.Add(Step{
		Description: fmt.Sprintf("wait until replica %s answers healthy at %s/_ping", c.ID, url),
		Apply: func(ctx context.Context, _ *State) error {
			return StorageFix(o.WaitHealthy(ctx, in.API.Client, url, name, in.HealthTimeout), c)
		},
	})
	return p, nil
}

// networkTestStep is DTR's pre-join network test: before the cluster gets a
// member it might not reach, a job on the new replica's node joins dtr-ol and
// asks the existing replica's /_live over it, through Swarm's DNS name, as
// the new member's etcd peer traffic will. A TLS handshake (certificates of a
// few KiB) also shows an overlay whose MTU drops large packets. It changes
// nothing, so there is nothing to undo.
func (o Objects) networkTestStep(c ReplicaConfig, existing Replica) Step {
	url := OverlayLiveURL(existing.ID)
	return Step{
		Description: fmt.Sprintf("test the overlay network %s: a job on node %s reaches replica %s at %s", NetworkName, c.Node, existing.ID, url),
		Apply: func(ctx context.Context, st *State) error {
			const fix = "check that the nodes reach each other on 4789/udp (overlay data) and 7946/tcp and udp (gossip), that no firewall drops VXLAN traffic and that the overlay MTU fits the hosts' network; or skip this test with --skip-network-test (not for production)"
			if c.NodeJobImage() == "" {
				return fmt.Errorf("the overlay network test runs the dtr image on node %s, and it is not loaded on this manager: load this version's images on every node, or %s", c.Node, fix)
			}
			const caFile = "/run/dtr/ca.pem"
			_, err := o.RunJob(ctx, NodeJob{
				Node: c.Node, ImageID: c.NodeJobImage(), Version: c.Version,
				Args:     []string{"node-job", "network-test", "--ca", caFile, url},
				Networks: []string{NetworkName},
				Configs: []*swarm.ConfigReference{{ConfigID: st.Configs[CACertConfig], ConfigName: CACertConfig,
					File: &swarm.ConfigReferenceFileTarget{Name: caFile, UID: "0", GID: "0", Mode: 0o444}}},
			})
			if err != nil {
				return fmt.Errorf("overlay network test: a container on node %s attached to network %s could not reach replica %s at %s (%w); %s", c.Node, NetworkName, existing.ID, url, err, fix)
			}
			return nil
		},
	}
}

// OverlayLiveURL is a replica's /_live as another container on dtr-ol
// reaches it: its service's DNS name and its container HTTPS port.
func OverlayLiveURL(replicaID string) string {
	return fmt.Sprintf("https://%s:%d/_live", contract.ServiceName(replicaID), contract.HTTPSPort)
}

func joinErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// RemoveReplicaObjects removes a replica's service, its volumes on its node
// and its own secrets. Absent objects are fine.
func (o Objects) RemoveReplicaObjects(ctx context.Context, c ReplicaConfig) error {
	if err := o.RemoveService(ctx, contract.ServiceName(c.ID)); err != nil {
		return err
	}
	vols := replicaVolumes(c.ID)
	var err error
	switch {
	case c.Node == "" || c.Node == o.C.Manager.Hostname:
		err = o.RemoveVolumes(ctx, vols...)
	case !o.nodeReady(ctx, c.Node):
		o.warnf("node %s is down or gone: the volumes of replica %s stay there (%s); remove them with docker volume rm on that node", c.Node, c.ID, strings.Join(vols, " "))
	case c.NodeJobImage() == "":
		err = fmt.Errorf("image %s is not loaded on this manager, so dtr cannot run a job on node %s to remove the volumes of replica %s", "dtr", c.Node, c.ID)
	default:
		// The job waits on that node until the replica's container is gone.
		_, err = o.RunNodeJob(ctx, c.Node, c.NodeJobImage(), c.Version, append([]string{"node-job", "remove-volumes", "--service", contract.ServiceName(c.ID)}, vols...)...)
	}
	if err != nil {
		return err
	}
	return o.RemoveSecret(ctx, AdminSecret(c.ID))
}

func (o Objects) nodeReady(ctx context.Context, hostname string) bool {
	nodes, err := o.C.Nodes(ctx)
	if err != nil {
		return true // let the job say what is wrong
	}
	for _, n := range nodes {
		if n.Hostname == hostname {
			return n.State == "ready"
		}
	}
	return false
}

func (o Objects) warnf(format string, args ...any) {
	if o.Warn != nil {
		o.Warn(fmt.Sprintf(format, args...))
	}
}

// NodeJobImage is the installer image the node jobs run (its ID, like the
// replica's, so Swarm never pulls).
func (c ReplicaConfig) NodeJobImage() string { return c.JobImageID }

// RemoveClusterObjects removes what the replicas shared: dtr-ol, the CA, TLS
// objects. Only when no replica is left.
func (o Objects) RemoveClusterObjects(ctx context.Context) error {
	var errs []error
	errs = append(errs, o.RemoveNetwork(ctx))
	secrets, err := o.C.Engine.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelRole))})
	if err == nil {
		for _, s := range secrets {
			errs = append(errs, o.RemoveSecret(ctx, s.Spec.Name))
		}
	}
	configs, err := o.C.Engine.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelRole))})
	if err == nil {
		for _, c := range configs {
			errs = append(errs, o.RemoveConfig(ctx, c.Spec.Name))
		}
	}
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
