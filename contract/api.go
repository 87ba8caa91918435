package contract

import "time"

// Health is the body of a replica's /_ping and /health, in DTR's shape.
type Health struct {
	Error   string `json:"Error"`
	Healthy bool   `json:"Healthy"`
	// WriteError, when set, is why pushes are refused while pulls are
	// served (a full storage or metadata volume); /_ping?for=push then
	// answers 503.
	WriteError string `json:"WriteError,omitempty"`
}

// ClusterStatus is GET /api/v0/meta/cluster_status.
type ClusterStatus struct {
	Replica       string                   `json:"replica"` // the replica that answered
	Members       []Member                 `json:"members"`
	Leader        uint64                   `json:"leader"`
	Revision      int64                    `json:"revision"`
	HasQuorum     bool                     `json:"hasQuorum"`
	ReplicaHealth map[string]ReplicaHealth `json:"replica_health"`
	CurrentIssues []Issue                  `json:"current_issues"`
	Alarms        []Alarm                  `json:"alarms"`
	Schema        *SchemaStatus            `json:"schema,omitempty"` // nil when it cannot be read
	// GCLockHolder is the replica running garbage collection, "" when none
	// does (DTR's field).
	GCLockHolder string `json:"gc_lock_holder"`
}

// SchemaStatus is the cluster's metadata schema in ClusterStatus.
type SchemaStatus struct {
	Version int `json:"version"` // what the cluster's records are
	// Target is the newest schema a replica's build knows: its migrations
	// run once every replica runs it.
	Target     int       `json:"target"`
	MigratedAt time.Time `json:"migratedAt,omitzero"`
	// Pending says why Version is below Target, or the migration under way.
	Pending string `json:"pending,omitempty"`
}

// Member is one metadata member in ClusterStatus.
type Member struct {
	ID        uint64   `json:"id"`
	Name      string   `json:"name"` // the replica ID; empty for a learner not started yet
	PeerURLs  []string `json:"peerURLs"`
	IsLearner bool     `json:"isLearner"`
	IsLeader  bool     `json:"isLeader"`
}

// ReplicaHealth is a replica's last report in ClusterStatus.
type ReplicaHealth struct {
	Healthy bool      `json:"healthy"`
	Error   string    `json:"error,omitempty"`
	Version string    `json:"version"`
	At      time.Time `json:"reportedAt"`
	Stale   bool      `json:"stale"` // no report for too long: unhealthy
}

// Issue is one line of ClusterStatus's current issues, as DTR's.
type Issue struct {
	Critical    bool   `json:"critical"`
	Description string `json:"description"`
}

// Alarm is a raised metadata alarm (NOSPACE: writes are refused).
type Alarm struct {
	Replica string `json:"replica"`
	Alarm   string `json:"alarm"`
}

// AddReplicaRequest is POST /api/v0/meta/replicas: the installer adds a
// joining replica's metadata member as a learner before it starts.
type AddReplicaRequest struct {
	ReplicaID string `json:"replicaID"`
	PeerURL   string `json:"peerURL"`
}

// AddReplicaResponse is its answer: what the joiner's Config.InitialCluster is.
type AddReplicaResponse struct {
	MemberID       string `json:"memberID"` // hex
	InitialCluster string `json:"initialCluster"`
}

// SettingsPatch is PATCH /api/v0/meta/settings as the installer sends it;
// a nil field is left alone.
type SettingsPatch struct {
	ExternalURL *string `json:"externalURL,omitempty"`
	LogLevel    *string `json:"logLevel,omitempty"`
}

// TokenKeyRotation is POST /api/v0/meta/token_key/rotate's answer.
type TokenKeyRotation struct {
	KeyID              string    `json:"keyID"`
	PreviousKeyIDs     []string  `json:"previousKeyIDs"`
	PreviousValidUntil time.Time `json:"previousValidUntil"`
}

// APIError is the admin API's error body: {"errors":[{"code","message"}]}.
type APIError struct {
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

// NewAPIError is the error body with one error: what both the admin API and
// the registry API (Distribution's {"errors":[…]}) answer on the replica.
func NewAPIError(code, message string) APIError {
	var e APIError
	e.Errors = append(e.Errors, struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, message})
	return e
}
