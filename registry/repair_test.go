package registry_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/adminapi"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// A 3-replica cluster loses 2 replicas for good; the survivor is repaired
// in place through its admin API (no container restart: the replica stops
// serving and starts again in the same process, forcing once), keeps its
// data, answers the same token again as done, takes a join, and restarts
// later without forcing again.
func TestEmergencyRepairInPlace(t *testing.T) {
	r1 := registrytest.StartNew(t)
	if st := r1.API(t, admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": "alice", "password": "alice-password"}, nil); st != http.StatusCreated {
		t.Fatalf("creating alice: %d", st)
	}
	r2 := join(t, r1, "bbbbbbbbbbbb")
	r3 := join(t, r1, "cccccccccccc")
	r2.Stop()
	r3.Stop()

	repair := func(user, pw string, req any) (int, contract.EmergencyRepairResponse) {
		var out contract.EmergencyRepairResponse
		st := r1.API(t, user, pw, "POST", "/api/v0/meta/emergency_repair", req, &out)
		return st, out
	}
	tok := contract.EmergencyRepairRequest{Token: "0123456789abcdef"}
	for _, c := range []struct {
		name, user, pw string
		req            any
		want           int
	}{
		{"anonymous", "", "", tok, http.StatusUnauthorized},
		{"wrong password", admin, "not-the-password", tok, http.StatusUnauthorized},
		{"not an admin", "alice", "alice-password", tok, http.StatusForbidden},
		{"short token", admin, adminPW, contract.EmergencyRepairRequest{Token: "abc"}, http.StatusBadRequest},
		{"token with a newline", admin, adminPW, contract.EmergencyRepairRequest{Token: "0123456789\nabcdef"}, http.StatusBadRequest},
		{"no token", admin, adminPW, map[string]any{}, http.StatusBadRequest},
	} {
		if st, _ := repair(c.user, c.pw, c.req); st != c.want {
			t.Errorf("%s: %d, want %d", c.name, st, c.want)
		}
	}
	if _, ok := r1.RepairRequested(); ok {
		t.Fatal("a refused request started a repair")
	}

	began := time.Now()
	st, out := repair(admin, adminPW, tok)
	if st != http.StatusAccepted || out.Status != contract.EmergencyRepairRestarting || out.ReplicaID != r1.Opts.ReplicaID {
		t.Fatalf("repair: %d %+v; want 202 restarting", st, out)
	}
	accepted := time.Since(began)
	// A second installer racing with another token is refused; the same
	// token again is the same repair.
	if _, err := r1.RequestRepair("fedcba9876543210"); !isStatus(err, http.StatusConflict) {
		t.Errorf("another token while restarting: %v; want 409", err)
	}
	if s, err := r1.RequestRepair(tok.Token); err != nil || s != contract.EmergencyRepairRestarting {
		t.Errorf("the same token while restarting: %q %v", s, err)
	}
	// Until the restarted replica is healthy, /_ping says 503 or, once the
	// replica has closed its listeners to start again, nothing at all
	// (code 0: connection refused, as on a restart): never healthy.
	if code, body := get(r1.HTTP + "/_ping"); code != http.StatusServiceUnavailable && code != 0 {
		t.Errorf("/_ping once the repair was accepted: %d %s; want 503 or no answer until the restarted replica is healthy", code, body)
	}

	// As cmd/dtr-registry does: Serve returned, so start again in place.
	r1.Stop()
	stopped := time.Since(began)
	got, ok := r1.RepairRequested()
	if !ok || got != tok.Token {
		t.Fatalf("RepairRequested: %q %v", got, ok)
	}
	o := r1.Opts
	o.AdminPassword, o.ForceNewCluster = "", got
	r := registrytest.Start(t, o) // waits until healthy
	t.Logf("MEASURE emergency repair in place: accepted in %v, stopped after %v, healthy %v after the request", accepted.Round(time.Millisecond), stopped.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))

	var cs contract.ClusterStatus
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/meta/cluster_status", nil, &cs); st != 200 || len(cs.Members) != 1 || !cs.HasQuorum {
		t.Fatalf("after the repair: %d %+v; want one member with a quorum", st, cs)
	}
	if st := r.API(t, "alice", "alice-password", "GET", "/api/v0/accounts/alice", nil, nil); st != http.StatusOK {
		t.Errorf("alice after the repair: %d; the repair must keep the data", st)
	}
	r1 = r
	if st, out := repair(admin, adminPW, tok); st != http.StatusOK || out.Status != contract.EmergencyRepairDone {
		t.Errorf("the same token after the repair: %d %+v; want 200 repaired (nothing restarts)", st, out)
	}
	if _, ok := r.RepairRequested(); ok {
		t.Error("re-running the repair restarted the replica again")
	}

	r4 := join(t, r, "dddddddddddd")
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/meta/cluster_status", nil, &cs); st != 200 || len(cs.Members) != 2 || !cs.HasQuorum {
		t.Fatalf("after a join: %d %+v; want two members with a quorum", st, cs)
	}
	// The token stays recorded: a restart with it in the environment (as
	// after a repair by service update) or without it never forces again,
	// which would drop the joined replica.
	r.Stop()
	r = registrytest.Start(t, o)
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/meta/cluster_status", nil, &cs); st != 200 || len(cs.Members) != 2 || !cs.HasQuorum {
		t.Fatalf("after a restart with the repair's token: %d %+v; want the two members still", st, cs)
	}
	r4.Stop()
	r.Stop()
}

func isStatus(err error, status int) bool {
	var ae *adminapi.Error
	return errors.As(err, &ae) && ae.Status == status
}
