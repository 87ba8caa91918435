package contract

// EmergencyRepairRequest is POST /api/v0/meta/emergency_repair: the
// installer asks the running replica it keeps to make its metadata member
// the only member of a new cluster, keeping its data, without Swarm
// restarting its container. Token is the repair's one-time token, as
// Config.ForceNewCluster: a replica forces once per token.
type EmergencyRepairRequest struct {
	Token string `json:"token"`
}

// EmergencyRepairResponse is its answer (202 while the replica restarts its
// member, 200 when it has forced with this token before).
type EmergencyRepairResponse struct {
	ReplicaID string `json:"replicaID"`
	Status    string `json:"status"` // EmergencyRepairRestarting or EmergencyRepairDone
}

// EmergencyRepairResponse.Status values.
const (
	EmergencyRepairRestarting = "restarting"
	EmergencyRepairDone       = "repaired"
)

// ValidRepairToken reports whether s can be an emergency repair's token:
// 8 to 64 letters, digits, '-' or '_' (the installer makes 16 hex digits).
func ValidRepairToken(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
