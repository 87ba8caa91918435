package adminapi_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// strictDecode decodes b into v refusing unknown fields: an answer the
// installer would decode only in part fails here.
func strictDecode(t *testing.T, what string, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s as %T: %v\n%s", what, v, err, b)
	}
}

func keys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// TestContractWire: the admin API answers in the contract's types, with
// the field names the installer and DTR's clients read, and accepts what
// the installer sends.
func TestContractWire(t *testing.T) {
	r := registrytest.StartNew(t)

	var raw json.RawMessage
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/meta/cluster_status", nil, &raw); st != 200 {
		t.Fatalf("cluster_status: %d %s", st, raw)
	}
	var cs contract.ClusterStatus
	strictDecode(t, "cluster_status", raw, &cs)
	if cs.Replica != r.Opts.ReplicaID || !cs.HasQuorum || cs.Leader == 0 || cs.Revision == 0 || len(cs.Members) != 1 ||
		cs.Members[0].Name != r.Opts.ReplicaID || !cs.Members[0].IsLeader || cs.Members[0].ID != cs.Leader {
		t.Errorf("cluster_status of a single healthy replica: %+v", cs)
	}
	if h, ok := cs.ReplicaHealth[r.Opts.ReplicaID]; !ok || !h.Healthy || h.Stale || h.At.IsZero() {
		t.Errorf("cluster_status replica_health: %+v", cs.ReplicaHealth)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if got, want := keys(m), []string{"alarms", "current_issues", "gc_lock_holder", "hasQuorum", "leader", "members", "replica", "replica_health", "revision", "schema"}; !slices.Equal(got, want) {
		t.Errorf("cluster_status fields %v, want %v", got, want)
	}
	// A new cluster is at this build's schema, with nothing pending.
	if s := cs.Schema; s == nil || s.Version != meta.SchemaVersion || s.Target != meta.SchemaVersion || s.Pending != "" || s.MigratedAt.IsZero() {
		t.Errorf("cluster_status schema of a new cluster: %+v, want version and target %d, nothing pending", s, meta.SchemaVersion)
	}
	// Empty lists are [], never null: DTR's clients index them.
	for _, k := range []string{"alarms", "current_issues", "members"} {
		if _, ok := m[k].([]any); !ok {
			t.Errorf("cluster_status %s = %#v, want a JSON array", k, m[k])
		}
	}
	member := m["members"].([]any)[0].(map[string]any)
	if got, want := keys(member), []string{"id", "isLeader", "isLearner", "name", "peerURLs"}; !slices.Equal(got, want) {
		t.Errorf("cluster_status member fields %v, want %v", got, want)
	}
	health := m["replica_health"].(map[string]any)[r.Opts.ReplicaID].(map[string]any)
	if got, want := keys(health), []string{"healthy", "reportedAt", "stale", "version"}; !slices.Equal(got, want) {
		t.Errorf("cluster_status replica_health fields %v, want %v (error only when set)", got, want)
	}

	// What the installer sends to change settings.
	url, level := "https://dtr.example.com", "warn"
	var settings map[string]any
	if st := r.API(t, admin, adminPW, "PATCH", "/api/v0/meta/settings", contract.SettingsPatch{ExternalURL: &url, LogLevel: &level}, &settings); st != 200 ||
		settings["externalURL"] != url || settings["logLevel"] != level {
		t.Errorf("PATCH settings with contract.SettingsPatch: %d %v", st, settings)
	}

	if st := r.API(t, admin, adminPW, "POST", "/api/v0/meta/token_key/rotate", nil, &raw); st != 200 {
		t.Fatalf("rotating the token key: %d %s", st, raw)
	}
	var rot contract.TokenKeyRotation
	strictDecode(t, "token key rotation", raw, &rot)
	if rot.KeyID == "" || len(rot.PreviousKeyIDs) != 1 || rot.PreviousValidUntil.IsZero() {
		t.Errorf("token key rotation: %+v", rot)
	}

	// An add-replica request the API refuses answers in contract.APIError.
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/meta/replicas", contract.AddReplicaRequest{ReplicaID: "NOT-AN-ID", PeerURL: contract.PeerURL("0123456789ab")}, &raw); st != 400 {
		t.Fatalf("adding a replica with a bad ID: %d %s", st, raw)
	}
	var apiErr contract.APIError
	strictDecode(t, "an error", raw, &apiErr)
	if len(apiErr.Errors) != 1 || apiErr.Errors[0].Code != "INVALID" || apiErr.Errors[0].Message == "" {
		t.Errorf("error body: %+v", apiErr)
	}
}
