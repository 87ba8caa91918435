package registry_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// join adds a second replica to r's cluster, as the installer does: the
// learner is added through r's admin API, started with the cluster CA, and
// promoted once it has caught up.
func join(t *testing.T, r *registrytest.Replica, id string) *registrytest.Replica {
	t.Helper()
	return registrytest.Join(t, r, admin, adminPW, id)
}

// get answers status and body of url (plain HTTP).
func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A replica restarted while its cluster has no quorum answers on its ports
// meanwhile: /_live so that Swarm does not restart it, /_ping (503) with
// what it waits for, so that load balancers keep it out and operators know
// why. Once the other replica is back, both start and serve.
func TestRestartWithoutQuorum(t *testing.T) {
	r1 := registrytest.StartNew(t)
	r2 := join(t, r1, "bbbbbbbbbbbb")
	o1, o2 := r1.Opts, r2.Opts
	o1.AdminPassword = ""
	r2.Stop()
	r1.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	type started struct {
		r   *registry.Replica
		err error
	}
	first := make(chan started, 1)
	go func() { r, err := registry.Start(ctx, o1); first <- started{r, err} }()

	var live, ping string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var ls, ps int
		ls, live = get("http://" + o1.HTTPAddr + "/_live")
		ps, ping = get("http://" + o1.HTTPAddr + "/_ping")
		if ls == 200 && ps == 503 && strings.Contains(live, `"Starting"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("without quorum: /_live %d %s, /_ping %d %s; want 200 and 503", ls, live, ps, ping)
		}
	}
	var health struct {
		Healthy bool
		Error   string
	}
	if err := json.Unmarshal([]byte(ping), &health); err != nil || health.Healthy || !strings.Contains(health.Error, "quorum") || !strings.Contains(health.Error, "emergency-repair") {
		t.Fatalf("/_ping without quorum = %s, want the wait for a quorum and what to do", ping)
	}
	if st, body := get("http://" + o1.HTTPAddr + "/v2/"); st != 503 || !strings.Contains(body, "quorum") {
		t.Fatalf("/v2/ without quorum: %d %s, want 503 naming the wait", st, body)
	}
	select {
	case s := <-first:
		t.Fatalf("the replica started without quorum: %v", s.err)
	default:
	}

	// The other replica comes back: both start.
	second := make(chan started, 1)
	go func() { r, err := registry.Start(ctx, o2); second <- started{r, err} }()
	var replicas []*registry.Replica
	for _, ch := range []chan started{first, second} {
		s := <-ch
		if s.err != nil {
			t.Fatalf("starting once the quorum is back: %v", s.err)
		}
		replicas = append(replicas, s.r)
		t.Cleanup(func() { s.r.Close() })
	}
	// The waiting answers have left the ports: the replica serves there.
	httpLn, err := net.Listen("tcp", o1.HTTPAddr)
	if err != nil {
		t.Fatalf("the interim server still holds %s: %v", o1.HTTPAddr, err)
	}
	httpsLn, err := net.Listen("tcp", o1.HTTPSAddr)
	if err != nil {
		t.Fatalf("the interim server still holds %s: %v", o1.HTTPSAddr, err)
	}
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	go replicas[0].ServeListeners(sctx, httpLn, httpsLn)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st, body := get("http://" + o1.HTTPAddr + "/_ping")
		if st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/_ping once the quorum is back: %d %s", st, body)
		}
	}
}
