package orchestrator_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/ucp/ucpfake"
)

// The installer repairs in place only what the replica accepted; a replica
// that cannot (not answering, older, refusing the credentials of its own
// possibly stale account copy) is restarted with the token instead, and a
// real refusal (another repair under way, a learner) stops the repair.
func TestEmergencyRepairInPlaceAnswers(t *testing.T) {
	for _, c := range []struct {
		name     string
		status   int
		body     string
		fallback bool // errors.Is(err, ErrNoRepairInPlace)
		ok       bool
	}{
		{"accepted", 202, `{"replicaID":"000000000001","status":"restarting"}`, false, true},
		{"done before", 200, `{"replicaID":"000000000001","status":"repaired"}`, false, true},
		{"older replica", 404, `{"errors":[{"code":"NOT_FOUND","message":"no such API endpoint"}]}`, true, false},
		{"still starting", 503, `{"errors":[{"code":"UNAVAILABLE","message":"waiting for a quorum"}]}`, true, false},
		{"stale password", 401, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, true, false},
		{"another repair", 409, `{"errors":[{"code":"REPAIR_UNDER_WAY","message":"another emergency repair"}]}`, false, false},
		{"bad token", 400, `{"errors":[{"code":"INVALID","message":"token must be"}]}`, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got contract.EmergencyRepairRequest
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/api/v0/meta/emergency_repair" || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("request %s %s %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
				}
				if u, p, _ := r.BasicAuth(); u != "admin" || p != "pw" {
					t.Errorf("credentials %q %q", u, p)
				}
				_ = json.NewDecoder(r.Body).Decode(&got)
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			api := orchestrator.ReplicaAPI{URL: srv.URL, User: "admin", Password: "pw", Client: srv.Client()}
			out, err := api.EmergencyRepair(t.Context(), "0123456789abcdef")
			if got.Token != "0123456789abcdef" {
				t.Errorf("sent token %q", got.Token)
			}
			if (err == nil) != c.ok || errors.Is(err, orchestrator.ErrNoRepairInPlace) != c.fallback {
				t.Fatalf("err %v; want ok=%v fallback=%v", err, c.ok, c.fallback)
			}
			if c.ok && out.ReplicaID != "000000000001" {
				t.Errorf("answer %+v", out)
			}
			var e contract.APIError
			_ = json.Unmarshal([]byte(c.body), &e)
			if !c.ok && len(e.Errors) > 0 && !c.fallback && !strings.Contains(err.Error(), e.Errors[0].Message) {
				t.Errorf("the replica's message %q is not in %v", e.Errors[0].Message, err)
			}
		})
	}
	// A replica that does not answer at all.
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	url, client := srv.URL, srv.Client()
	srv.Close()
	_, err := orchestrator.ReplicaAPI{URL: url, Client: client}.EmergencyRepair(t.Context(), "0123456789abcdef")
	if !errors.Is(err, orchestrator.ErrNoRepairInPlace) {
		t.Fatalf("a replica that does not answer: %v; want ErrNoRepairInPlace", err)
	}
}

// The repair step: a replica that accepts is repaired in place and its
// service is left alone (Swarm restarts no task); one that cannot (here an
// older replica, 404) gets the token in its service's environment, scaled
// back to 1, as before the endpoint existed.
func TestRepairStepInPlaceOrRestart(t *testing.T) {
	for _, c := range []struct {
		name    string
		status  int
		restart bool
	}{
		{"in place", http.StatusAccepted, false},
		{"older replica", http.StatusNotFound, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := ucpfake.New("node1")
			zero := uint64(0)
			name := contract.ServiceName("000000000001")
			e.Services = append(e.Services, swarm.Service{ID: "svc1", Spec: swarm.ServiceSpec{
				Annotations:  swarm.Annotations{Name: name},
				TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Env: []string{"DTR_REPLICA_ID=000000000001"}}},
				Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &zero}},
			}})
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(`{"replicaID":"000000000001","status":"restarting"}`))
			}))
			defer srv.Close()
			objs := orchestrator.Objects{C: e.Cluster()}
			in := &orchestrator.Repair{Keep: orchestrator.Replica{ID: "000000000001", Node: "node1"}, Token: "0123456789abcdef",
				URL: srv.URL, HealthTimeout: 5 * time.Second,
				API: &orchestrator.ReplicaAPI{URL: srv.URL, User: "admin", Password: "pw", Client: srv.Client()}}
			p := objs.PlanRepair(in)
			if len(p.Steps) != 2 {
				t.Fatalf("%d steps, want the repair and the health wait", len(p.Steps))
			}
			if err := p.Steps[0].Apply(t.Context(), &orchestrator.State{}); err != nil {
				t.Fatal(err)
			}
			s, _, err := e.ServiceInspectWithRaw(t.Context(), name, swarm.ServiceInspectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			env, err := contract.ParseEnv(s.Spec.TaskTemplate.ContainerSpec.Env)
			if err != nil {
				t.Fatal(err)
			}
			updated := s.Version.Index != 0
			if updated != c.restart || (env.ForceNewCluster == in.Token) != c.restart {
				t.Fatalf("service updated %v with token %q; want a restart with the token: %v", updated, env.ForceNewCluster, c.restart)
			}
			if c.restart && *s.Spec.Mode.Replicated.Replicas != 1 {
				t.Errorf("a replica scaled to 0 was not scaled back to 1")
			}
		})
	}
}
