// Package orchestrator places dtr replicas on the cluster as Swarm objects
// and finds them again by label (docs/architecture.md §3). Work is observe → plan →
// apply: read what exists, compute the steps as data (printed by --dry-run,
// tested without an engine), then apply them one by one.
package orchestrator

// Labels every object dtr creates carries.
const (
	LabelReplica    = "com.docker.dtr.replica"
	LabelVersion    = "com.docker.dtr.version"
	LabelRole       = "com.docker.dtr.role"
	LabelConfigHash = "com.docker.dtr.config-hash"
	LabelNode       = "com.docker.dtr.node"
	LabelHTTPPort   = "com.docker.dtr.http-port"
	LabelHTTPSPort  = "com.docker.dtr.https-port"
	LabelPeerPort   = "com.docker.dtr.peer-port"
	LabelStorage    = "com.docker.dtr.storage"
	LabelImage      = "com.docker.dtr.image"
	// LabelMetricsPort is the host port of the unauthenticated /metrics
	// listener, on replicas that publish one.
	LabelMetricsPort = "com.docker.dtr.metrics-port"
)

// Names of cluster-wide objects.
const (
	NetworkName  = "dtr-ol"
	CAKeySecret  = "dtr-ca-key"  // the cluster CA's key: a Swarm secret
	CACertConfig = "dtr-ca-cert" // its certificate: a Swarm config, readable by the installer
)

// Volume names of a replica.
func caVolume(id string) string      { return "dtr-ca-" + id }
func etcdVolume(id string) string    { return "dtr-etcd-" + id }
func storageVolume(id string) string { return "dtr-registry-" + id }
func nfsVolume(id string) string     { return "dtr-registry-nfs-" + id }

// replicaVolumes are the volumes dtr made for a replica, if they exist.
func replicaVolumes(id string) []string {
	return []string{caVolume(id), etcdVolume(id), storageVolume(id), nfsVolume(id)}
}

// MetricsTokenSecretPrefix begins the names of the secrets holding the
// metrics-only token: dtr-metrics-token-<n>, n counting up with each
// rotation (a Swarm secret cannot change; a name never says anything about
// the token).
const MetricsTokenSecretPrefix = "dtr-metrics-token-"

// AdminSecret is the name of the secret holding the first admin's password.
func AdminSecret(id string) string { return "dtr-admin-password-" + id }
