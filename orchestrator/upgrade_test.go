package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/ucp/ucpfake"
)

func TestCheckUpgrade(t *testing.T) {
	for _, tt := range []struct {
		from, to string
		refused  string // "" when allowed
	}{
		{"0.1.0", "0.1.0", ""},
		{"0.1.0", "0.1.7", ""},
		{"0.1.3", "0.2.0", ""},
		{"0.1.9", "0.2.1", ""},
		{"0.1.0", "0.3.0", "upgrade to the latest 0.2.x first"},
		{"0.2.0", "0.1.9", "downgrades are not supported"},
		{"0.1.2", "0.1.1", "downgrades are not supported"},
		{"0.9.0", "1.0.0", "across major versions"},
		{"v0.1.0", "0.2.0-rc1", ""},
		{"latest", "0.2.0", "not major.minor.patch"},
	} {
		err := CheckUpgrade(tt.from, tt.to)
		switch {
		case tt.refused == "" && err != nil:
			t.Errorf("%s → %s refused: %v", tt.from, tt.to, err)
		case tt.refused != "" && (err == nil || !strings.Contains(err.Error(), tt.refused)):
			t.Errorf("%s → %s: %v; want an error saying %q", tt.from, tt.to, err, tt.refused)
		}
	}
}

// TestUpgradedSpecChangesOnlyTheImage: an upgraded replica's service is its
// old one, read back through Config, with the new image and version; every
// setting, mount, secret and port stays.
func TestUpgradedSpecChangesOnlyTheImage(t *testing.T) {
	ctx := context.Background()
	for name, c := range roundTripConfigs() {
		t.Run(name, func(t *testing.T) {
			e := ucpfake.New(c.Node)
			var wire swarm.ServiceSpec
			if err := json.Unmarshal(mustJSON(ServiceSpec(c, idsFor(c))), &wire); err != nil {
				t.Fatal(err)
			}
			if _, err := (Objects{C: e.Cluster()}).CreateService(ctx, wire); err != nil {
				t.Fatal(err)
			}
			reps, err := FindReplicas(ctx, e.Cluster())
			if err != nil || len(reps) != 1 {
				t.Fatalf("FindReplicas: %v", err)
			}
			in := &Upgrade{Version: "9.9.9", Image: "dtr-registry:9.9.9", ImageID: "sha256:new", JobImageID: c.JobImageID}
			got, err := upgradedSpec(reps[0], in)
			if err != nil {
				t.Fatal(err)
			}
			want := c
			want.Version, want.Image, want.ImageID = "9.9.9", "dtr-registry:9.9.9", "sha256:new"
			if string(mustJSON(got)) != string(mustJSON(ServiceSpec(want, idsFor(c)))) {
				t.Fatalf("upgraded spec differs from the old one with the new image:\n%s", mustJSON(got))
			}
			if upgraded(reps[0], in) {
				t.Error("a replica on the old image counts as upgraded")
			}
		})
	}
}

// TestUpgradeRollsBackAReplicaThatDoesNotComeUp: a replica whose new image
// never answers healthy is put back on its old spec, its drain mark lifted,
// and the error says where the upgrade stopped; a healthy one is upgraded.
func TestUpgradeRollsBackAReplicaThatDoesNotComeUp(t *testing.T) {
	ctx := context.Background()
	e := ucpfake.New("node1")
	objs := Objects{C: e.Cluster()}
	var drains, undrains atomic.Int32
	newHealthy := atomic.Bool{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/_ping":
			reps, _ := FindReplicas(ctx, e.Cluster())
			onNew := len(reps) == 1 && reps[0].Spec.TaskTemplate.ContainerSpec.Image == "sha256:new"
			if onNew && !newHealthy.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprint(w, `{"Healthy":false,"Error":"storage: the new build cannot read it"}`)
				return
			}
			fmt.Fprint(w, `{"Healthy":true,"Error":""}`)
		case strings.HasSuffix(r.URL.Path, "/drain") && r.Method == http.MethodPost:
			drains.Add(1)
			w.WriteHeader(http.StatusNoContent)
		case strings.HasSuffix(r.URL.Path, "/drain") && r.Method == http.MethodDelete:
			undrains.Add(1)
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	c := roundTripConfigs()["new cluster"]
	c.HTTPSPort = port
	if _, err := objs.CreateService(ctx, ServiceSpec(c, idsFor(c))); err != nil {
		t.Fatal(err)
	}
	plan := func() (*Plan, *Upgrade) {
		reps, err := FindReplicas(ctx, e.Cluster())
		if err != nil || len(reps) != 1 {
			t.Fatalf("FindReplicas: %v", err)
		}
		api := ReplicaAPI{URL: srv.URL, User: "admin", Password: "pw", Client: srv.Client()}
		in := &Upgrade{Replicas: reps, Addrs: map[string]string{"node1": "127.0.0.1"}, API: func(string) ReplicaAPI { return api },
			Client: srv.Client(), Version: "0.2.0", Image: "dtr-registry:0.2.0", ImageID: "sha256:new", JobImageID: "sha256:job",
			DrainWait: time.Millisecond, Timeout: 2 * time.Second}
		return objs.PlanUpgrade(in), in
	}
	p, _ := plan()
	err := p.Apply(ctx, logrus.New(), false)
	if err == nil || !strings.Contains(err.Error(), "put back on 0.1.0") {
		t.Fatalf("upgrade to an image that never turns healthy: %v; want an error saying the replica was put back on 0.1.0", err)
	}
	reps, _ := FindReplicas(ctx, e.Cluster())
	if img := reps[0].Spec.TaskTemplate.ContainerSpec.Image; img != c.ImageID || reps[0].Version != "0.1.0" {
		t.Fatalf("after the failed upgrade the service runs %s at version %s; want the old %s at 0.1.0", img, reps[0].Version, c.ImageID)
	}
	if drains.Load() != 1 || undrains.Load() < 1 {
		t.Errorf("drained %d times, lifted %d times; want the drain lifted after the roll back", drains.Load(), undrains.Load())
	}
	// Fixed: the next run upgrades it.
	newHealthy.Store(true)
	p, _ = plan()
	if err := p.Apply(ctx, logrus.New(), false); err != nil {
		t.Fatalf("the upgrade run again: %v", err)
	}
	reps, _ = FindReplicas(ctx, e.Cluster())
	if reps[0].Spec.TaskTemplate.ContainerSpec.Image != "sha256:new" || reps[0].Version != "0.2.0" {
		t.Fatalf("after the second run: %s at %s", reps[0].Spec.TaskTemplate.ContainerSpec.Image, reps[0].Version)
	}
}
