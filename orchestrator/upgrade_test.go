package orchestrator

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"

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
