package orchestrator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/contract"
)

// Storage is where a replica keeps image blobs on its node.
type Storage struct {
	Volume     string `json:"volume,omitempty"` // a volume name or an absolute host path; empty: dtr-registry-<id>
	NFSURL     string `json:"nfsURL,omitempty"` // nfs://server/path
	NFSOptions string `json:"nfsOptions,omitempty"`
	AsyncNFS   bool   `json:"asyncNFS,omitempty"`
}

// IsHostPath reports whether the storage is a bind-mounted host directory.
func (s Storage) IsHostPath() bool { return strings.HasPrefix(s.Volume, "/") }

// Shared reports whether every replica surely sees the same blobs: NFS. A
// volume or host path is per node unless the operator shares it, which dtr
// cannot tell, so it warns (as DTR did for the filesystem driver).
func (s Storage) Shared() bool { return s.NFSURL != "" }

// ReplicaConfig is everything that defines one replica's service:
// ServiceSpec turns it into the service, and Replica.Config reads it back
// from one (docs/architecture.md §3).
type ReplicaConfig struct {
	ID        string
	Node      string // hostname
	NodeAddr  string
	HTTPPort  int
	HTTPSPort int
	// PeerPort is the host port the metadata member's raft traffic is
	// published on; 0 for a replica deployed before peer ports were
	// published, reached over the overlay by name (PeerURL).
	PeerPort      int
	Storage       Storage
	Image         string // reference shown to operators, e.g. dtr-registry:0.1.0
	ImageID       string // what the service runs: the ID, so Swarm never pulls
	Version       string
	ExternalURL   string
	LogLevel      string
	HTTPProxy     string
	HTTPSProxy    string
	NoProxy       string
	AdminUsername string // set on the replica that bootstraps a new cluster
	// Join: start as a learner of an existing cluster with InitialCluster.
	Join           bool
	InitialCluster string
	// TLSSecret and TLSConfig name the operator's certificate objects, if any.
	TLSKeySecret  string
	TLSCertConfig string
	// MetricsPort publishes the replica's unauthenticated /metrics listener
	// (contract.MetricsPort) on this host port, in host mode; 0: none.
	MetricsPort int
	// MetricsTokenSecret names the secret holding the metrics-only token
	// (MetricsTokenSecretPrefix); empty: no token.
	MetricsTokenSecret string
	// OTLPEndpoint is the OTLP/HTTP collector traces go to; empty: off.
	OTLPEndpoint string
	// JobImageID is the installer image's ID, run by node jobs. It is the
	// only field that is not part of the replica's service (the installer
	// that runs now knows it, from its own image), so Replica.Config leaves
	// it empty.
	JobImageID string
	// Restore: the replica waits for the installer to send a backup;
	// RestoreStorage is contract.RestoreKeepStorage or RestoreFilesystem.
	Restore        bool
	RestoreStorage string
}

// ObjectIDs are the Swarm IDs of the secrets and configs a replica's
// service references; "" for those it does not reference.
type ObjectIDs struct {
	CAKey, CACert string
	Admin         string // the first admin's password, on a new cluster's first replica
	TLSKey        string
	TLSCert       string
	MetricsToken  string
}

// healthcheck is the replica's container health check: the image's, every
// 2 s instead of 5 s. Swarm puts a task's names into the overlay's DNS only
// once it is healthy, and the other replicas' metadata members reach it by
// name: with 5 s a joined replica was unreachable for its first 5 s, and
// etcd then refused the next join for 5 s more (docs/benchmark-notes.md).
// Each check costs the engine an exec (~55 ms of CPU here).
func healthcheck() *container.HealthConfig {
	return &container.HealthConfig{
		Test:        []string{"CMD", "/dtr-registry", "healthcheck"},
		Interval:    2 * time.Second,
		Timeout:     3 * time.Second,
		StartPeriod: 60 * time.Second,
		Retries:     3,
	}
}

// nfsVolumeOptions are the local driver's options for an NFS-backed volume.
func nfsVolumeOptions(s Storage) map[string]string {
	u, err := url.Parse(s.NFSURL)
	if err != nil {
		return nil
	}
	o := "addr=" + u.Hostname()
	if s.NFSOptions != "" {
		o += "," + s.NFSOptions
	} else {
		o += ",rw,nfsvers=4"
	}
	if s.AsyncNFS && !strings.Contains(o, "async") {
		o += ",async"
	}
	return map[string]string{"type": "nfs", "o": o, "device": ":" + u.Path}
}

func labels(c ReplicaConfig, role string) map[string]string {
	return map[string]string{LabelReplica: c.ID, LabelVersion: c.Version, LabelRole: role, LabelNode: c.Node}
}

// storageMount is the replica's blob storage mount.
func storageMount(c ReplicaConfig) mount.Mount {
	m := mount.Mount{Target: contract.StorageDir}
	switch {
	case c.Storage.NFSURL != "":
		m.Type, m.Source = mount.TypeVolume, nfsVolume(c.ID)
		m.VolumeOptions = &mount.VolumeOptions{Labels: labels(c, "storage"),
			DriverConfig: &mount.Driver{Name: "local", Options: nfsVolumeOptions(c.Storage)}}
	case c.Storage.IsHostPath():
		m.Type, m.Source = mount.TypeBind, c.Storage.Volume
	case c.Storage.Volume != "":
		m.Type, m.Source = mount.TypeVolume, c.Storage.Volume
	default:
		m.Type, m.Source = mount.TypeVolume, storageVolume(c.ID)
		m.VolumeOptions = &mount.VolumeOptions{Labels: labels(c, "storage")}
	}
	return m
}

// PeerURL is where the other members reach c's metadata member: its node's
// address and published peer port when it has one, else its name on the
// overlay (docs/architecture.md, "Peer traffic").
func (c ReplicaConfig) PeerURL() string {
	if c.PeerPort > 0 && c.NodeAddr != "" {
		return contract.PeerURLAt(c.NodeAddr, c.PeerPort)
	}
	return contract.PeerURL(c.ID)
}

// env is what the replica reads at start (its service's environment).
func (c ReplicaConfig) env() contract.Config {
	e := contract.Config{
		ReplicaID:       c.ID,
		DataDir:         contract.DataDir,
		CADir:           contract.CADir,
		StorageRoot:     contract.StorageDir,
		PeerAdvertise:   c.PeerURL(),
		PublicHTTPSPort: c.HTTPSPort,
		CACertFile:      contract.CACertTarget,
		CAKeyFile:       contract.SecretsDir + CAKeySecret,
		LogLevel:        c.LogLevel,
		ExternalURL:     c.ExternalURL,
		HTTPProxy:       c.HTTPProxy,
		HTTPSProxy:      c.HTTPSProxy,
		NoProxy:         c.NoProxy,
		OTLPEndpoint:    c.OTLPEndpoint,
	}
	// The node's address and name, for the replica's certificates;
	// Replica.Config reads NodeAddr back from here.
	for _, h := range []string{c.NodeAddr, c.Node} {
		if h != "" {
			e.Hostnames = append(e.Hostnames, h)
		}
	}
	if c.Join {
		e.Join, e.InitialCluster = true, c.InitialCluster
	}
	if c.Restore {
		e.Restore, e.RestoreStorage = true, c.RestoreStorage
	}
	if c.AdminUsername != "" {
		e.AdminUsername, e.AdminPasswordFile = c.AdminUsername, contract.SecretsDir+AdminSecret(c.ID)
	}
	if c.TLSKeySecret != "" {
		e.TLSCertFile, e.TLSKeyFile = contract.TLSCertPath, contract.SecretsDir+c.TLSKeySecret
	}
	if c.MetricsPort != 0 {
		e.MetricsAddr = ":" + strconv.Itoa(contract.MetricsPort)
	}
	if c.MetricsTokenSecret != "" {
		e.MetricsTokenFile = contract.SecretsDir + c.MetricsTokenSecret
	}
	return e
}

// secretRef mounts a secret for the replica's user, under SecretsDir.
func secretRef(id, name string) *swarm.SecretReference {
	return &swarm.SecretReference{SecretID: id, SecretName: name,
		File: &swarm.SecretReferenceFileTarget{Name: name, UID: "10001", GID: "10001", Mode: 0o400}}
}

// configRef mounts a config, readable by all, at target.
func configRef(id, name, target string) *swarm.ConfigReference {
	return &swarm.ConfigReference{ConfigID: id, ConfigName: name,
		File: &swarm.ConfigReferenceFileTarget{Name: target, UID: "10001", GID: "10001", Mode: 0o444}}
}

// ServiceSpec is the Swarm service of a replica (docs/architecture.md §3);
// ids are the secrets and configs it references.
func ServiceSpec(c ReplicaConfig, ids ObjectIDs) swarm.ServiceSpec {
	one := uint64(1)
	secrets := []*swarm.SecretReference{secretRef(ids.CAKey, CAKeySecret)}
	if c.AdminUsername != "" {
		secrets = append(secrets, secretRef(ids.Admin, AdminSecret(c.ID)))
	}
	configs := []*swarm.ConfigReference{configRef(ids.CACert, CACertConfig, contract.CACertTarget)}
	if c.TLSKeySecret != "" {
		secrets = append(secrets, secretRef(ids.TLSKey, c.TLSKeySecret))
		configs = append(configs, configRef(ids.TLSCert, c.TLSCertConfig, contract.TLSCertPath))
	}
	if c.MetricsTokenSecret != "" {
		secrets = append(secrets, secretRef(ids.MetricsToken, c.MetricsTokenSecret))
	}
	lbl := labels(c, "registry")
	lbl[LabelHTTPPort] = strconv.Itoa(c.HTTPPort)
	lbl[LabelHTTPSPort] = strconv.Itoa(c.HTTPSPort)
	if c.PeerPort > 0 {
		lbl[LabelPeerPort] = strconv.Itoa(c.PeerPort)
	}
	st, _ := json.Marshal(c.Storage)
	lbl[LabelStorage] = string(st)
	lbl[LabelImage] = c.Image
	if c.MetricsPort != 0 {
		lbl[LabelMetricsPort] = strconv.Itoa(c.MetricsPort)
	}
	name := contract.ServiceName(c.ID)
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: lbl},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:    c.ImageID,
				Labels:   labels(c, "registry"),
				Hostname: name,
				Env:      c.env().Env(),
				Mounts: []mount.Mount{
					{Type: mount.TypeVolume, Source: caVolume(c.ID), Target: contract.CADir, VolumeOptions: &mount.VolumeOptions{Labels: labels(c, "ca")}},
					{Type: mount.TypeVolume, Source: etcdVolume(c.ID), Target: contract.DataDir, VolumeOptions: &mount.VolumeOptions{Labels: labels(c, "metadata")}},
					storageMount(c),
				},
				Secrets:         secrets,
				Configs:         configs,
				StopGracePeriod: ptr(30 * time.Second),
				Healthcheck:     healthcheck(),
			},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: ptr(2 * time.Second)},
			Placement:     &swarm.Placement{Constraints: []string{"node.hostname==" + c.Node}},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: NetworkName, Aliases: []string{name}}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		// Swarm watches an updated task for Monitor before it calls the
		// update complete (5 s by default). dtr waits for the replica's own
		// health after every update, so 1 s is enough for Swarm to see a
		// task that dies at once; the rest was 4 s of every repair, upgrade
		// and reconfigure step.
		UpdateConfig: &swarm.UpdateConfig{
			Parallelism: 1, Order: swarm.UpdateOrderStopFirst, FailureAction: swarm.UpdateFailureActionPause,
			Monitor: time.Second,
		},
		EndpointSpec: &swarm.EndpointSpec{
			Mode: swarm.ResolutionModeDNSRR,
			Ports: []swarm.PortConfig{
				{Protocol: swarm.PortConfigProtocolTCP, TargetPort: contract.HTTPPort, PublishedPort: uint32(c.HTTPPort), PublishMode: swarm.PortConfigPublishModeHost},
				{Protocol: swarm.PortConfigProtocolTCP, TargetPort: contract.HTTPSPort, PublishedPort: uint32(c.HTTPSPort), PublishMode: swarm.PortConfigPublishModeHost},
			},
		},
	}
	if c.PeerPort > 0 {
		spec.EndpointSpec.Ports = append(spec.EndpointSpec.Ports, swarm.PortConfig{Protocol: swarm.PortConfigProtocolTCP,
			TargetPort: contract.PeerPort, PublishedPort: uint32(c.PeerPort), PublishMode: swarm.PortConfigPublishModeHost})
	}
	if c.MetricsPort != 0 {
		spec.EndpointSpec.Ports = append(spec.EndpointSpec.Ports, metricsPortConfig(c.MetricsPort))
	}
	setConfigHash(&spec)
	return spec
}

// metricsPortConfig publishes the unauthenticated /metrics listener on a
// host port of the replica's node.
func metricsPortConfig(port int) swarm.PortConfig {
	return swarm.PortConfig{Protocol: swarm.PortConfigProtocolTCP, TargetPort: contract.MetricsPort,
		PublishedPort: uint32(port), PublishMode: swarm.PortConfigPublishModeHost}
}

// setConfigHash labels spec with a hash of the rest of it, so that a re-run
// can tell whether a service already has the spec it would set.
func setConfigHash(spec *swarm.ServiceSpec) {
	delete(spec.Labels, LabelConfigHash)
	h := sha256.Sum256(mustJSON(*spec))
	spec.Labels[LabelConfigHash] = hex.EncodeToString(h[:6])
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func ptr[T any](v T) *T { return &v }

// StorageDescription says where the replica keeps blobs on its node.
func (c ReplicaConfig) StorageDescription() string {
	switch {
	case c.Storage.NFSURL != "":
		return fmt.Sprintf("NFS volume %s (%s)", nfsVolume(c.ID), c.Storage.NFSURL)
	case c.Storage.IsHostPath():
		return "host path " + c.Storage.Volume
	case c.Storage.Volume != "":
		return "volume " + c.Storage.Volume
	}
	return "volume " + storageVolume(c.ID)
}

// Describe is the one-line summary of a replica's service for plans.
func Describe(c ReplicaConfig) string {
	st := c.StorageDescription()
	mode := "new cluster"
	switch {
	case c.Join:
		mode = "joins as a learner"
	case c.Restore:
		mode = "restores a backup"
	}
	return fmt.Sprintf("service %s on node %s: image %s, ports %d→%d and %d→%d (host mode), volumes %s and %s, storage %s, network %s, %s",
		contract.ServiceName(c.ID), c.Node, c.Image, c.HTTPPort, contract.HTTPPort, c.HTTPSPort, contract.HTTPSPort, caVolume(c.ID), etcdVolume(c.ID), st, NetworkName, mode) +
		observability(c)
}

// observability describes the replica's metrics and tracing settings for
// plans; "" when none is on.
func observability(c ReplicaConfig) string {
	var s string
	if c.MetricsPort != 0 {
		s += fmt.Sprintf(", unauthenticated metrics on port %d→%d (host mode)", c.MetricsPort, contract.MetricsPort)
	}
	if c.MetricsTokenSecret != "" {
		s += ", metrics token from secret " + c.MetricsTokenSecret
	}
	if c.OTLPEndpoint != "" {
		s += ", traces to " + *redact(&c.OTLPEndpoint)
	}
	return s
}
