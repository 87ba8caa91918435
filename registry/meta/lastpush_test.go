package meta_test

import (
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
)

// TestLastPushes: the push found for a tag is the newest successful
// registry PUT of that tag with its current digest near its time; pulls,
// failed pushes, other digests, other repositories, API calls and pushes
// outside the window are not.
func TestLastPushes(t *testing.T) {
	s := startStore(t)
	base := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	push := func(at time.Time, actor, repo, tag, digest string, status int) meta.Event {
		return meta.Event{ID: meta.NewEventID(at), PublishedAt: at, Actor: actor, ActorType: "user", Type: "CREATE", Repository: repo,
			Object: meta.EventObject{Type: "tag", ID: digest, Name: repo + ":" + tag}, Target: meta.EventTarget{Type: "registry", Name: "PUT /v2/" + repo + "/manifests/" + tag},
			Status: status, Success: status < 400}
	}
	pull := push(base.Add(2*time.Second), "eve", "acme/app", "v1", "sha256:one", 200)
	pull.Type = "GET"
	api := push(base.Add(3*time.Second), "eve", "acme/app", "v1", "sha256:one", 201)
	api.Target.Type = "api"
	evs := []meta.Event{
		push(base.Add(-time.Hour), "old", "acme/app", "v1", "sha256:one", 201),      // outside the window
		push(base.Add(-time.Second), "alice", "acme/app", "v1", "sha256:one", 201),  // the push
		push(base.Add(time.Second), "mallory", "acme/app", "v1", "sha256:one", 403), // refused
		push(base.Add(time.Second), "bob", "acme/app", "v1", "sha256:other", 201),   // another digest
		push(base.Add(time.Second), "carol", "acme/other", "v1", "sha256:one", 201), // another repository
		push(base.Add(time.Second), "dave", "acme/app-x", "v1", "sha256:one", 201),  // a name that starts alike
		pull, api,
		push(base.Add(10*time.Minute-time.Second), "erin", "acme/app", "v2", "sha256:two", 201),
		push(base.Add(10*time.Minute), "frank", "acme/app", "v2", "sha256:two", 201), // the same content again: the last push
		push(base.Add(20*time.Minute), "", "acme/app", "v3", "sha256:three", 201),    // anonymous
	}
	if err := s.PutEvents(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	got, err := s.LastPushes(t.Context(), "acme/app", []meta.TagPush{
		{Name: "v1", Digest: "sha256:one", At: base},
		{Name: "v2", Digest: "sha256:two", At: base.Add(10*time.Minute + 500*time.Millisecond)},
		{Name: "v3", Digest: "sha256:three", At: base.Add(20*time.Minute - 30*time.Second)},
		{Name: "v4", Digest: "sha256:four", At: base.Add(30 * time.Minute)}, // no record
		{Name: "v5", Digest: "sha256:five"},                                 // no time
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"v1": "alice", "v2": "frank", "v3": ""}
	if len(got) != len(want) {
		t.Errorf("found %d pushes, want %d: %+v", len(got), len(want), got)
	}
	for tag, actor := range want {
		if e, ok := got[tag]; !ok || e.Actor != actor {
			t.Errorf("%s: pushed by %q (found %v), want %q", tag, e.Actor, ok, actor)
		}
	}
	if got, err := s.LastPushes(t.Context(), "acme/app", nil); err != nil || len(got) != 0 {
		t.Errorf("no tags: %v %v", got, err)
	}
}
