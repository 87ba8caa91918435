// Package orchestrator places dtr replicas on the cluster as Swarm objects
// and finds them again by label (DESIGN.md §3).
package orchestrator

// Labels every object dtr creates carries.
const (
	LabelReplica    = "com.docker.dtr.replica"
	LabelVersion    = "com.docker.dtr.version"
	LabelRole       = "com.docker.dtr.role"
	LabelConfigHash = "com.docker.dtr.config-hash"
	LabelNode       = "com.docker.dtr.node"
)

// ServiceName is the name of a replica's service: dtr-registry-<id>.
func ServiceName(replicaID string) string { return "dtr-registry-" + replicaID }
