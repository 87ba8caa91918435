package registry_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestEventsCount: count=true answers X-Resource-Count, the number of
// events every filter matches, not only the page's; without it, no header.
func TestEventsCount(t *testing.T) {
	r := registrytest.StartNew(t)
	// Records of 2020, before anything this replica records itself.
	base := time.Date(2020, 3, 1, 12, 0, 0, 0, time.UTC)
	var evs []meta.Event
	for i := 0; i < 30; i++ {
		at := base.Add(time.Duration(i) * time.Second)
		e := meta.Event{ID: meta.NewEventID(at), PublishedAt: at, Actor: "counter-a", ActorType: "user", Type: "CREATE",
			Object: meta.EventObject{Type: "tag", Name: "acme/app:v1"}, Target: meta.EventTarget{Type: "registry"}, Status: 201, Success: true}
		if i%3 == 0 {
			e.Type = "GET"
		}
		if i >= 20 {
			e.Actor = "counter-b"
		}
		if i < 5 {
			e.Repository = "acme/app"
		}
		evs = append(evs, e)
	}
	if err := r.MetaStore().PutEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	rfc := func(t time.Time) string { return url.QueryEscape(t.Format(time.RFC3339Nano)) }
	get := func(path string) (int, http.Header, int) {
		t.Helper()
		st, h, body := r.Do(t, "GET", path, "", nil, basicAuth(registrytest.AdminUser, registrytest.AdminPassword))
		var page struct{ Events []meta.Event }
		if st == 200 {
			if err := json.Unmarshal(body, &page); err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
		}
		return st, h, len(page.Events)
	}
	before2021 := "publishedBefore=" + rfc(time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		query     string
		count     string // X-Resource-Count
		pageItems int
	}{
		{"count=true&actorId=counter-a&pageSize=5", "20", 5},
		{"count=true&actorId=counter-a&eventType=GET", "7", 7},
		{"count=true&objectType=tag&actorId=counter-b&pageSize=3", "10", 3},
		{"count=true&pageSize=2&" + before2021, "30", 2},
		// publishedAfter is exclusive: the 10th record and those before it are out.
		{"count=true&" + before2021 + "&publishedAfter=" + rfc(base.Add(9*time.Second)), "20", 10},
		{"count=true&actorId=counter-a&publishedAfter=" + rfc(base.Add(9*time.Second)), "10", 10},
		{"count=1&" + before2021 + "&publishedAfter=" + rfc(base.Add(29*time.Second)), "0", 0},
		{"count=false&actorId=counter-a", "", 10},
		{"actorId=counter-a", "", 10},
	} {
		t.Run(tc.query, func(t *testing.T) {
			st, h, n := get("/api/v0/events?" + tc.query)
			if st != 200 || n != tc.pageItems {
				t.Fatalf("%d, %d events on the page, want 200 and %d", st, n, tc.pageItems)
			}
			got, ok := h["X-Resource-Count"]
			if tc.count == "" && ok || tc.count != "" && (len(got) != 1 || got[0] != tc.count) {
				t.Fatalf("X-Resource-Count %q, want %q", got, tc.count)
			}
		})
	}
	if st, _, _ := get("/api/v0/events?count=perhaps"); st != 400 {
		t.Errorf("count=perhaps: %d, want 400", st)
	}
	registrytest.SetupAccounts(t, r, registrytest.AdminUser, registrytest.AdminPassword)
	if st, h, n := get("/api/v0/repositories/acme/app/events?count=true&pageSize=1&" + before2021); st != 200 || n != 1 || h.Get("X-Resource-Count") != "5" {
		t.Errorf("repository events: %d, %d on the page, X-Resource-Count %q; want 200, 1, 5", st, n, h.Get("X-Resource-Count"))
	}
	if st, h, _ := r.Do(t, "GET", "/api/v0/events?count=true", "", nil, basicAuth("alice", "alice-password")); st != 403 || h.Get("X-Resource-Count") != "" {
		t.Errorf("alice counts events: %d %q, want 403 and no count", st, h.Get("X-Resource-Count"))
	}
}

// basicAuth is an Authorization header for r.Do.
func basicAuth(user, pw string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))}
}
