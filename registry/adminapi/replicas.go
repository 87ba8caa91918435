package adminapi

import (
	"context"
	"errors"

	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/member"
	"github.com/dtr-registry/dtr/registry/meta"
)

// addReplica makes the cluster expect a new replica: its metadata member is
// added as a learner, which the installer then starts and promotes.
func (a *API) addReplica(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	var req contract.AddReplicaRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if !contract.ValidReplicaID(req.ReplicaID) || !strings.HasPrefix(req.PeerURL, "http") {
		return errorf(http.StatusBadRequest, "INVALID", "replicaID must be 12 hex characters and peerURL an http(s) URL")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	id, initial, err := a.cfg.Cluster.AddLearner(ctx, req.ReplicaID, req.PeerURL)
	if err != nil {
		return errorf(http.StatusConflict, "MEMBERSHIP", "adding the metadata member of %s: %v", req.ReplicaID, err)
	}
	httpjson.Write(w, http.StatusCreated, contract.AddReplicaResponse{MemberID: strconv.FormatUint(id, 16), InitialCluster: initial})
	return nil
}

func (a *API) promoteReplica(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	id, err := a.memberID(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	if err := a.cfg.Cluster.Promote(ctx, id); err != nil {
		return errorf(http.StatusServiceUnavailable, "NOT_READY", "promoting replica %s: %v", r.PathValue("id"), err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// drainReplica marks a replica as leaving (see meta.Store.Drain).
func (a *API) drainReplica(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	if _, err := a.memberID(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	if err := a.cfg.Store.Drain(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// undrainReplica lifts a replica's drain mark (upgrade, once the replica
// runs its new version).
func (a *API) undrainReplica(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	if _, err := a.memberID(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	if err := a.cfg.Store.Undrain(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) removeReplica(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	replica := r.PathValue("id")
	if replica == a.cfg.ReplicaID {
		return errorf(http.StatusBadRequest, "INVALID", "replica %s cannot remove itself; ask another replica", replica)
	}
	id, err := a.memberID(r.Context(), replica)
	var nf *Error
	if errors.As(err, &nf) && nf.Status == http.StatusNotFound {
		_ = a.cfg.Store.DeleteHealthReport(r.Context(), replica)
		w.WriteHeader(http.StatusNoContent) // already gone: removing is idempotent
		return nil
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.cfg.Cluster.Remove(ctx, id); err != nil {
		return errorf(http.StatusConflict, "MEMBERSHIP", "removing the metadata member of %s: %v", replica, err)
	}
	_ = a.cfg.Store.DeleteHealthReport(r.Context(), replica)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// memberID finds a replica's member: by name, or, for a learner that has not
// started yet (no name), by its peer URL, which carries the replica ID.
func (a *API) memberID(ctx context.Context, replica string) (uint64, error) {
	ms, err := a.cfg.Cluster.Members(ctx)
	if err != nil {
		return 0, err
	}
	for _, m := range ms {
		if m.Name == replica || m.Name == "" && containsReplica(m, replica) {
			return m.ID, nil
		}
	}
	return 0, errorf(http.StatusNotFound, "NOT_FOUND", "replica %s has no metadata member", replica)
}

func containsReplica(m member.Info, replica string) bool {
	for _, u := range m.PeerURLs {
		if strings.Contains(u, replica) {
			return true
		}
	}
	return false
}
