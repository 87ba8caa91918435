package contract

import (
	"net"
	"regexp"
	"strconv"
)

// Paths inside a replica's container, where the installer mounts what the
// replica reads.
const (
	DataDir      = "/var/lib/dtr/data" // the metadata volume dtr-data-<id>: etcd, issued certificates
	CADir        = "/var/lib/dtr/ca"   // the CA volume dtr-ca-<id>
	StorageDir   = "/storage"          // filesystem image storage (a volume, host path or NFS)
	SecretsDir   = "/run/secrets/"     // Swarm secrets
	CACertTarget = "/run/dtr/ca.pem"   // the cluster CA certificate (a Swarm config)
	TLSCertPath  = "/run/dtr/tls.pem"  // the operator's certificate (a Swarm config), if any
)

// Ports inside a replica's container; the published ports are per replica.
const (
	HTTPPort  = 8080  // health and the redirect to HTTPS
	HTTPSPort = 8443  // the registry, token and admin APIs
	PeerPort  = 12380 // the metadata members' raft traffic; also the first published peer port
	// MetricsPort serves /metrics without authentication, when the
	// operator publishes it (dtr install --metrics-port).
	MetricsPort = 9102
)

// TLSServerName is the name the installer asks a replica's HTTPS for (SNI);
// every replica's cluster-CA certificate carries it, whatever its address.
const TLSServerName = "dtr-replica"

// ServiceName is a replica's Swarm service, container host name and DNS
// name on the overlay: dtr-registry-<id>.
func ServiceName(replicaID string) string { return "dtr-registry-" + replicaID }

// PeerURL is where the other metadata members reach a replica's member
// over the dtr-ol overlay, by its Swarm DNS name: how replicas deployed
// before peer ports were published are reached.
func PeerURL(replicaID string) string {
	return "https://" + ServiceName(replicaID) + ":" + strconv.Itoa(PeerPort)
}

// PeerURLAt is a replica's member reached at its node's address and its
// published peer port: no DNS to spread, no overlay on the raft path.
func PeerURLAt(nodeAddr string, port int) string {
	return "https://" + net.JoinHostPort(nodeAddr, strconv.Itoa(port))
}

var replicaIDRE = regexp.MustCompile(`^[0-9a-f]{12}$`)

// ValidReplicaID reports whether id is 12 lowercase hex characters.
func ValidReplicaID(id string) bool { return replicaIDRE.MatchString(id) }

// Restore storage values (Config.RestoreStorage, dtr restore's choice).
const (
	RestoreKeepStorage = "backup"     // the storage settings in the backup
	RestoreFilesystem  = "filesystem" // the replica's own filesystem storage
)

// Record paths inside a backup, besides the per-key records under meta/.
// dtr restore reads some of them before any replica runs.
const (
	BackupManifest      = "manifest.json"
	RecordCluster       = "config/cluster.json"
	RecordSettings      = "config/settings.json"
	RecordCA            = "certs/ca.json"
	RecordTokenKey      = "certs/token-key.json"
	RecordRetiredTokens = "certs/token-keys-retired.json"
	RecordTLSCert       = "certs/tls-cert.pem"
	RecordTLSKey        = "certs/tls-key.pem"
)
