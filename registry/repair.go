package registry

import (
	"time"

	"net/http"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/adminapi"
)

// An emergency repair in place (POST /api/v0/meta/emergency_repair): the
// replica stops serving and its caller starts it again in the same process
// with Options.ForceNewCluster set to the token (see RepairRequested), so
// the forced start, the token recorded in the data volume and every part
// that holds a metadata client are exactly those of a replica restarted
// with the token in its environment, without Swarm stopping, detaching and
// recreating the container. The recorded token makes the data volume
// authoritative: a later restart, with or without a token in the
// environment, never forces again for a token it has forced with.

// requestRepair accepts an emergency repair with token: EmergencyRepairDone
// when this replica has forced with it before, EmergencyRepairRestarting
// when it now restarts to force (or already does, for the same token).
func (r *Replica) requestRepair(token string) (string, error) {
	if r.disk.forcedWith(token) {
		return contract.EmergencyRepairDone, nil
	}
	r.repairMu.Lock()
	defer r.repairMu.Unlock()
	switch r.repairToken {
	case token:
		return contract.EmergencyRepairRestarting, nil
	case "":
	default:
		return "", &adminapi.Error{Status: http.StatusConflict, Code: "REPAIR_UNDER_WAY",
			Message: "another emergency repair (another token) is already restarting this replica; wait until it answers healthy, then run 'dtr join' (re-run emergency-repair only if it does not)"}
	}
	if r.member.IsLearner() {
		// Forcing from a learner fails (member.ForceNewCluster): refused
		// here, the replica keeps serving what it can.
		return "", &adminapi.Error{Status: http.StatusConflict, Code: "LEARNER",
			Message: "replica " + r.opts.ReplicaID + " is a learner, which holds no vote and may lack committed data: keep a replica that was a voter (GET /api/v0/meta/cluster_status lists them), or restore a backup with 'dtr restore'"}
	}
	r.repairToken = token
	// From now until the restarted replica has a cluster again, /_ping
	// answers 503: the installer waits for the restarted replica's health,
	// never this one's.
	r.health.stop("restarting for an emergency repair")
	close(r.repairc)
	r.log.Warn("emergency repair: restarting the replica in place with its metadata member as the only member of a new cluster, keeping its data")
	return contract.EmergencyRepairRestarting, nil
}

// RepairRequested returns the token of an emergency repair accepted
// through the admin API. Serve then returns nil, and the caller, after
// Close, starts the replica again with Options.ForceNewCluster set to it.
func (r *Replica) RepairRequested() (string, bool) {
	r.repairMu.Lock()
	defer r.repairMu.Unlock()
	return r.repairToken, r.repairToken != ""
}

// repairGrace is how long requests in flight may finish when the replica
// restarts for an emergency repair.
const repairGrace = 2 * time.Second
