package orchestrator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
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

// ReplicaConfig is everything that defines one replica's service.
type ReplicaConfig struct {
	ID            string
	Node          string // hostname
	NodeAddr      string
	HTTPPort      int
	HTTPSPort     int
	Storage       Storage
	Image         string // reference shown to operators, e.g. dtr-registry:0.1.0
	ImageID       string // what the service runs: the ID, so Swarm never pulls
	Version       string
	ExternalURL   string
	LogLevel      string
	HTTPProxy     string
	HTTPSProxy    string
	NoProxy       string
	EnablePprof   bool
	AdminUsername string // set on the replica that bootstraps a new cluster
	// Join: start as a learner of an existing cluster with InitialCluster.
	Join           bool
	InitialCluster string
	// TLSSecret and TLSConfig name the operator's certificate objects, if any.
	TLSKeySecret  string
	TLSCertConfig string
	// JobImageID is the installer image's ID, run by node jobs.
	JobImageID string
	// Restore: the replica waits for the installer to send a backup;
	// RestoreStorage is "backup" (keep its storage settings) or "filesystem".
	Restore        bool
	RestoreStorage string
}

// PeerURL is the URL other members reach this replica's member at, over dtr-ol.
func (c ReplicaConfig) PeerURL() string { return "https://" + ServiceName(c.ID) + ":12380" }

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

// containerHTTPSPort is the replica's HTTPS port inside its container (the
// published port may differ per replica).
const containerHTTPSPort = 8443

// Paths inside the replica container.
const (
	dataDir      = "/var/lib/dtr/data"
	caDir        = "/var/lib/dtr/ca"
	storageDir   = "/storage"
	secretsDir   = "/run/secrets/"
	caCertTarget = "/run/dtr/ca.pem"
	tlsCertPath  = "/run/dtr/tls.pem"
)

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
	m := mount.Mount{Target: storageDir}
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

// ServiceSpec is the Swarm service of a replica (docs/architecture.md §3).
func ServiceSpec(c ReplicaConfig, caKeySecretID, caCertConfigID, adminSecretID, tlsKeySecretID, tlsCertConfigID string) swarm.ServiceSpec {
	one := uint64(1)
	env := map[string]string{
		"DTR_REPLICA_ID":        c.ID,
		"DTR_DATA_DIR":          dataDir,
		"DTR_CA_DIR":            caDir,
		"DTR_STORAGE_ROOT":      storageDir,
		"DTR_PEER_ADVERTISE":    c.PeerURL(),
		"DTR_PUBLIC_HTTPS_PORT": strconv.Itoa(c.HTTPSPort),
		"DTR_CA_CERT_FILE":      caCertTarget,
		"DTR_CA_KEY_FILE":       secretsDir + CAKeySecret,
		"DTR_HOSTNAMES":         strings.Trim(c.NodeAddr+","+c.Node, ","),
		"DTR_LOG_LEVEL":         c.LogLevel,
		"DTR_EXTERNAL_URL":      c.ExternalURL,
	}
	if c.Join {
		env["DTR_JOIN"] = "true"
		env["DTR_INITIAL_CLUSTER"] = c.InitialCluster
	}
	if c.Restore {
		env["DTR_RESTORE"] = "true"
		env["DTR_RESTORE_STORAGE"] = c.RestoreStorage
	}
	if c.AdminUsername != "" {
		env["DTR_ADMIN_USERNAME"] = c.AdminUsername
		env["DTR_ADMIN_PASSWORD_FILE"] = secretsDir + AdminSecret(c.ID)
	}
	if c.TLSKeySecret != "" {
		env["DTR_TLS_CERT"] = tlsCertPath
		env["DTR_TLS_KEY"] = secretsDir + c.TLSKeySecret
	}
	for k, v := range map[string]string{"HTTP_PROXY": c.HTTPProxy, "HTTPS_PROXY": c.HTTPSProxy, "NO_PROXY": c.NoProxy} {
		if v != "" {
			env[k] = v
		}
	}
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	sort.Strings(envList)
	secretRef := func(id, name string) *swarm.SecretReference {
		return &swarm.SecretReference{SecretID: id, SecretName: name,
			File: &swarm.SecretReferenceFileTarget{Name: name, UID: "10001", GID: "10001", Mode: 0o400}}
	}
	secrets := []*swarm.SecretReference{secretRef(caKeySecretID, CAKeySecret)}
	if adminSecretID != "" {
		secrets = append(secrets, secretRef(adminSecretID, AdminSecret(c.ID)))
	}
	configs := []*swarm.ConfigReference{{ConfigID: caCertConfigID, ConfigName: CACertConfig,
		File: &swarm.ConfigReferenceFileTarget{Name: caCertTarget, UID: "10001", GID: "10001", Mode: 0o444}}}
	if c.TLSKeySecret != "" {
		secrets = append(secrets, secretRef(tlsKeySecretID, c.TLSKeySecret))
		configs = append(configs, &swarm.ConfigReference{ConfigID: tlsCertConfigID, ConfigName: c.TLSCertConfig,
			File: &swarm.ConfigReferenceFileTarget{Name: tlsCertPath, UID: "10001", GID: "10001", Mode: 0o444}})
	}
	lbl := labels(c, "registry")
	lbl[LabelHTTPPort] = strconv.Itoa(c.HTTPPort)
	lbl[LabelHTTPSPort] = strconv.Itoa(c.HTTPSPort)
	st, _ := json.Marshal(c.Storage)
	lbl[LabelStorage] = string(st)
	lbl[LabelImage] = c.Image
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: ServiceName(c.ID), Labels: lbl},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:    c.ImageID,
				Labels:   labels(c, "registry"),
				Hostname: ServiceName(c.ID),
				Env:      envList,
				Mounts: []mount.Mount{
					{Type: mount.TypeVolume, Source: caVolume(c.ID), Target: caDir, VolumeOptions: &mount.VolumeOptions{Labels: labels(c, "ca")}},
					{Type: mount.TypeVolume, Source: etcdVolume(c.ID), Target: dataDir, VolumeOptions: &mount.VolumeOptions{Labels: labels(c, "metadata")}},
					storageMount(c),
				},
				Secrets:         secrets,
				Configs:         configs,
				StopGracePeriod: ptr(30 * time.Second),
				Healthcheck:     healthcheck(),
			},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: ptr(2 * time.Second)},
			Placement:     &swarm.Placement{Constraints: []string{"node.hostname==" + c.Node}},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: NetworkName, Aliases: []string{ServiceName(c.ID)}}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		UpdateConfig: &swarm.UpdateConfig{
			Parallelism: 1, Order: swarm.UpdateOrderStopFirst, FailureAction: swarm.UpdateFailureActionPause,
		},
		EndpointSpec: &swarm.EndpointSpec{
			Mode: swarm.ResolutionModeDNSRR,
			Ports: []swarm.PortConfig{
				{Protocol: swarm.PortConfigProtocolTCP, TargetPort: 8080, PublishedPort: uint32(c.HTTPPort), PublishMode: swarm.PortConfigPublishModeHost},
				{Protocol: swarm.PortConfigProtocolTCP, TargetPort: 8443, PublishedPort: uint32(c.HTTPSPort), PublishMode: swarm.PortConfigPublishModeHost},
			},
		},
	}
	h := sha256.Sum256(mustJSON(spec))
	spec.Labels[LabelConfigHash] = hex.EncodeToString(h[:6])
	return spec
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
	return fmt.Sprintf("service %s on node %s: image %s, ports %d→8080 and %d→8443 (host mode), volumes %s and %s, storage %s, network %s, %s",
		ServiceName(c.ID), c.Node, c.Image, c.HTTPPort, c.HTTPSPort, caVolume(c.ID), etcdVolume(c.ID), st, NetworkName, mode)
}
