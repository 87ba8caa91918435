package adminapi

import (
	"context"
	"net/http"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/meta"
)

// leaderKnower is the part of ClusterInfo that says, without a quorum
// read, whether the member knows a leader (0: none).
type leaderKnower interface{ Leader() uint64 }

// authenticateForRepair authenticates the caller of an emergency repair,
// which is made when the metadata has lost its quorum. A member that knows
// no leader cannot answer a cluster-wide read: its own copy of the accounts
// is asked at once (as authenticateDuringOutage does after waiting
// quorumReadWait). The copy may lag a password change made on the lost
// majority's side; the repair needs a system administrator of that copy,
// and whoever runs it also controls the Swarm, which could restart the
// replica with the token in its environment anyway.
func (a *API) authenticateForRepair(ctx context.Context, r *http.Request) (*meta.Account, error) {
	if l, ok := a.cfg.Cluster.(leaderKnower); ok && l.Leader() == 0 {
		return a.authenticate(meta.LocalReads(ctx), r)
	}
	return a.authenticateDuringOutage(ctx, r)
}

// emergencyRepair makes this replica's metadata member the only member of
// a new cluster, keeping its data, without a container restart: the
// replica answers, stops serving, and starts again in the same process,
// forcing once with the request's token (POST /api/v0/meta/emergency_repair).
// The same token again is a no-op; another token while a repair is under
// way is refused.
func (a *API) emergencyRepair(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	if a.cfg.EmergencyRepair == nil {
		return errorf(http.StatusNotImplemented, "NOT_SUPPORTED", "this replica cannot repair in place; the installer restarts it with the token instead")
	}
	var req contract.EmergencyRepairRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if !contract.ValidRepairToken(req.Token) {
		return errorf(http.StatusBadRequest, "INVALID", "token must be 8 to 64 letters, digits, '-' or '_'; the installer makes one per repair")
	}
	status, err := a.cfg.EmergencyRepair(req.Token)
	if err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithField("user", me.Name).WithField("status", status).Warn("emergency repair requested through the admin API")
	}
	code := http.StatusAccepted
	if status == contract.EmergencyRepairDone {
		code = http.StatusOK
	}
	httpjson.Write(w, code, contract.EmergencyRepairResponse{ReplicaID: a.cfg.ReplicaID, Status: status})
	return nil
}
