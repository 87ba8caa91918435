package registry_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// hookReceiver is a webhook endpoint on loopback that checks signatures.
type hookReceiver struct {
	t       *testing.T
	secrets map[string]bool // any of these may sign
	mu      sync.Mutex
	got     []hookDelivery
}

type hookDelivery struct {
	id, event string
	duplicate bool
	payload   struct {
		Type      string         `json:"type"`
		CreatedAt time.Time      `json:"createdAt"`
		Contents  map[string]any `json:"contents"`
		Location  string         `json:"location"`
	}
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sig := r.Header.Get(registry.SignatureHeader)
	ok := false
	for s := range h.secrets {
		ok = ok || sig == registry.Sign(s, body)
	}
	if !ok || r.Header.Get("Content-Type") != "application/json" {
		h.t.Errorf("delivery %s: signature %q matches no secret, or content type %q", r.Header.Get(registry.DeliveryHeader), sig, r.Header.Get("Content-Type"))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	d := hookDelivery{id: r.Header.Get(registry.DeliveryHeader), event: r.Header.Get(registry.EventHeader), duplicate: r.Header.Get(registry.DuplicateHeader) == "true"}
	if err := json.Unmarshal(body, &d.payload); err != nil {
		h.t.Errorf("payload: %v", err)
	}
	h.mu.Lock()
	h.got = append(h.got, d)
	h.mu.Unlock()
}

func (h *hookReceiver) deliveries() []hookDelivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// waitFor waits until pred holds for the deliveries received.
func (h *hookReceiver) waitFor(within time.Duration, what string, pred func([]hookDelivery) bool) []hookDelivery {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := h.deliveries()
		if pred(got) {
			return got
		}
		if time.Now().After(deadline) {
			for _, d := range got {
				h.t.Logf("received %s %s %v", d.id, d.event, d.payload.Contents)
			}
			h.t.Fatalf("waiting %v for %s: %d deliveries", within, what, len(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serveOn serves h on addr until the test ends (or stop is called).
func (h *hookReceiver) serveOn(t *testing.T, addr string) (stop func()) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(l) }()
	stop = func() { _ = srv.Close() }
	t.Cleanup(stop)
	return stop
}

func createHook(t *testing.T, r *registrytest.Replica, user, pw string, req map[string]any) meta.Webhook {
	t.Helper()
	var hook meta.Webhook
	if st := r.API(t, user, pw, "POST", "/api/v0/webhooks", req, &hook); st != 201 {
		t.Fatalf("creating webhook %v: %d", req, st)
	}
	return hook
}

func byType(ds []hookDelivery) map[string][]hookDelivery {
	m := map[string][]hookDelivery{}
	for _, d := range ds {
		m[d.event] = append(m[d.event], d)
	}
	return m
}

// TestWebhooks: each type's events reach a receiver on loopback, signed
// with the webhook's secret, with the repository, tag, digest, media type,
// user and time; the API validates, hides secrets, tests and logs.
func TestWebhooks(t *testing.T) {
	o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
	o.LogLevel = "debug"
	o.Log.SetLevel(logrus.DebugLevel)
	logs := logtest.NewLocal(o.Log)
	r := registrytest.Start(t, o)
	admin, pw := registrytest.AdminUser, registrytest.AdminPassword
	rc := &hookReceiver{t: t, secrets: map[string]bool{}}
	addr := fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t))
	rc.serveOn(t, addr)
	endpoint := "http://" + addr + "/hook"

	if st := r.API(t, admin, pw, "POST", "/api/v0/repositories/admin", map[string]any{"name": "hooked", "visibility": "private"}, nil); st != 201 {
		t.Fatal(st)
	}
	hooks := map[string]meta.Webhook{}
	for typ, key := range map[string]string{
		meta.WebhookTagPush: "admin/hooked", meta.WebhookManifestPush: "admin", meta.WebhookTagDelete: "admin/hooked",
		meta.WebhookManifestDelete: "", meta.WebhookRepoCreated: "admin", meta.WebhookRepoDeleted: "", meta.WebhookGCCompleted: "",
	} {
		h := createHook(t, r, admin, pw, map[string]any{"type": typ, "key": key, "endpoint": endpoint})
		if len(h.Secret) < 32 || h.AuthorID != admin {
			t.Fatalf("created webhook: %+v", h)
		}
		rc.secrets[h.Secret] = true
		hooks[typ] = h
	}
	var listed []meta.Webhook
	if st := r.API(t, admin, pw, "GET", "/api/v0/webhooks", nil, &listed); st != 200 || len(listed) != len(hooks) {
		t.Fatalf("list: %d, %d webhooks", st, len(listed))
	}
	for _, h := range listed {
		if h.Secret != "" {
			t.Fatalf("the list shows webhook %s's secret", h.ID)
		}
	}
	for _, c := range []struct {
		req  map[string]any
		want int
	}{
		{map[string]any{"type": "TAG_PULLED", "key": "admin", "endpoint": endpoint}, 400},
		{map[string]any{"type": "TAG_PUSH", "key": "admin", "endpoint": "ftp://x"}, 400},
		{map[string]any{"type": "GC_COMPLETED", "key": "admin", "endpoint": endpoint}, 400},
		{map[string]any{"type": "TAG_PUSH", "key": "nobody", "endpoint": endpoint}, 404},
		{map[string]any{"type": "TAG_PUSH", "key": "admin", "endpoint": endpoint, "tlsCert": "not a cert"}, 400},
		{map[string]any{"type": "TAG_PUSH", "key": "admin", "endpoint": endpoint, "secret": "short"}, 400},
	} {
		if st := r.API(t, admin, pw, "POST", "/api/v0/webhooks", c.req, nil); st != c.want {
			t.Errorf("POST %v: %d, want %d", c.req, st, c.want)
		}
	}
	if st := r.API(t, admin, pw, "POST", "/api/v0/accounts", map[string]any{"name": "alice", "password": "alice-password"}, nil); st != 201 {
		t.Fatal(st)
	}
	if st := r.API(t, "alice", "alice-password", "POST", "/api/v0/webhooks", map[string]any{"type": "TAG_PUSH", "key": "", "endpoint": endpoint}, nil); st != 403 {
		t.Errorf("alice watches everything: %d, want 403", st)
	}
	if st := r.API(t, "alice", "alice-password", "GET", "/api/v0/webhooks/"+hooks[meta.WebhookTagPush].ID, nil, nil); st != 404 {
		t.Errorf("alice reads admin's webhook: %d, want 404", st)
	}

	// The events.
	if st := r.API(t, admin, pw, "POST", "/api/v0/repositories/admin", map[string]any{"name": "made", "visibility": "private"}, nil); st != 201 {
		t.Fatal(st)
	}
	tok := r.Token(t, admin, pw, "repository:admin/hooked:push,pull,delete")
	img, st := r.PushImage(t, tok, "admin/hooked", "v1", []byte("hooked layer"))
	if st != 201 {
		t.Fatalf("push: %d", st)
	}
	if st, _, b := r.Do(t, "DELETE", "/v2/admin/hooked/manifests/v1", tok, nil, nil); st != 202 {
		t.Fatalf("tag delete: %d %s", st, b)
	}
	if st, _, b := r.Do(t, "DELETE", "/v2/admin/hooked/manifests/"+img.ManifestDigest, tok, nil, nil); st != 202 {
		t.Fatalf("manifest delete: %d %s", st, b)
	}
	if st := r.API(t, admin, pw, "DELETE", "/api/v0/repositories/admin/made", nil, nil); st != 204 {
		t.Fatalf("repository delete: %d", st)
	}
	ptok := r.Token(t, admin, pw, "repository:admin/pushed:push,pull")
	if _, st := r.PushImage(t, ptok, "admin/pushed", "v1", []byte("created on push")); st != 201 {
		t.Fatalf("push admin/pushed: %d", st)
	}
	r.GCRunFinished("onlinegc", "done", 4096)

	want := map[string]int{meta.WebhookRepoCreated: 2, meta.WebhookManifestPush: 2, meta.WebhookTagPush: 1, meta.WebhookTagDelete: 1,
		meta.WebhookManifestDelete: 1, meta.WebhookRepoDeleted: 1, meta.WebhookGCCompleted: 1}
	got := rc.waitFor(20*time.Second, "one delivery per event", func(ds []hookDelivery) bool {
		m := byType(ds)
		for typ, n := range want {
			if len(m[typ]) < n {
				return false
			}
		}
		return true
	})
	time.Sleep(500 * time.Millisecond) // nothing more comes
	got = rc.deliveries()
	m := byType(got)
	for typ, n := range want {
		if len(m[typ]) != n {
			t.Errorf("%s: %d deliveries, want %d", typ, len(m[typ]), n)
		}
	}
	if len(got) != 9 {
		t.Errorf("%d deliveries, want 9", len(got))
	}
	check := func(typ string, fields map[string]any) {
		t.Helper()
		for _, d := range m[typ] {
			if d.payload.Type != typ || time.Since(d.payload.CreatedAt) > time.Minute {
				t.Errorf("%s: payload type %q, createdAt %v", typ, d.payload.Type, d.payload.CreatedAt)
			}
			for k, v := range fields {
				if d.payload.Contents[k] != v {
					t.Errorf("%s: contents[%s] = %v, want %v (%v)", typ, k, d.payload.Contents[k], v, d.payload.Contents)
				}
			}
		}
	}
	oci := "application/vnd.oci.image.manifest.v1+json"
	check(meta.WebhookTagPush, map[string]any{"namespace": "admin", "repository": "hooked", "tag": "v1", "digest": img.ManifestDigest, "mediaType": oci, "author": admin, "imageName": "admin/hooked:v1"})
	check(meta.WebhookManifestPush, map[string]any{"namespace": "admin", "mediaType": oci, "author": admin})
	if d := m[meta.WebhookManifestPush]; len(d) == 0 || d[0].payload.Contents["repository"] != "hooked" || d[0].payload.Contents["digest"] != img.ManifestDigest {
		t.Errorf("MANIFEST_PUSH of admin/hooked: %+v", d)
	}
	check(meta.WebhookTagDelete, map[string]any{"repository": "hooked", "tag": "v1", "author": admin})
	check(meta.WebhookManifestDelete, map[string]any{"repository": "hooked", "digest": img.ManifestDigest, "author": admin})
	check(meta.WebhookRepoDeleted, map[string]any{"namespace": "admin", "repository": "made", "event": "deleted", "author": admin})
	check(meta.WebhookGCCompleted, map[string]any{"action": "onlinegc", "result": "done", "freedBytes": float64(4096)})
	var created []string
	for _, d := range m[meta.WebhookRepoCreated] {
		created = append(created, d.payload.Contents["repository"].(string))
	}
	sort.Strings(created)
	if !slices.Equal(created, []string{"made", "pushed"}) {
		t.Errorf("REPO_CREATED for %v, want made (API) and pushed (on push)", created)
	}

	// The delivery log, and the test call (signed with the webhook's secret).
	var log []meta.DeliveryLogEntry
	if st := r.API(t, admin, pw, "GET", "/api/v0/webhooks/"+hooks[meta.WebhookTagPush].ID+"/deliveries", nil, &log); st != 200 || len(log) != 1 || log[0].Status != "delivered" || log[0].Attempts != 1 || log[0].LastStatusCode != 200 {
		t.Errorf("delivery log: %d %+v", st, log)
	}
	var res struct {
		StatusCode int
		Error      string
	}
	if st := r.API(t, admin, pw, "POST", "/api/v0/webhooks/test", map[string]any{"id": hooks[meta.WebhookTagPush].ID}, &res); st != 200 || res.StatusCode != 200 {
		t.Errorf("test call: %d %+v", st, res)
	}
	rc.waitFor(5*time.Second, "the test call", func(ds []hookDelivery) bool { return len(ds) == 10 })
	if st := r.API(t, admin, pw, "POST", "/api/v0/webhooks/test", map[string]any{"type": "TAG_PUSH", "key": "admin", "endpoint": "http://127.0.0.1:1/"}, &res); st != 200 || res.Error == "" {
		t.Errorf("test call to a dead endpoint: %d %+v", st, res)
	}
	if st := r.API(t, admin, pw, "DELETE", "/api/v0/webhooks/"+hooks[meta.WebhookTagPush].ID, nil, nil); st != 204 {
		t.Errorf("delete: %d", st)
	}
	if st := r.API(t, admin, pw, "DELETE", "/api/v0/webhooks/"+hooks[meta.WebhookTagPush].ID, nil, nil); st != 404 {
		t.Errorf("delete again: %d, want 404", st)
	}
	// No secret in the log, at debug level.
	for _, e := range logs.AllEntries() {
		line, _ := e.String()
		for secret := range rc.secrets {
			if strings.Contains(line, secret) {
				t.Fatalf("a webhook secret in the log: %s", line)
			}
		}
	}
}

// TestWebhookDownThenUp: an endpoint that is down while events happen gets
// each exactly once after it comes up (retries with backoff); a push is no
// slower while the endpoint hangs without answering.
func TestWebhookDownThenUp(t *testing.T) {
	o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
	o.WebhookRetryBase = 100 * time.Millisecond
	o.WebhookTimeout = 3 * time.Second
	r := registrytest.Start(t, o)
	admin, pw := registrytest.AdminUser, registrytest.AdminPassword
	tok := r.Token(t, admin, pw, "repository:admin/down:push,pull", "repository:admin/quiet:push,pull", "repository:admin/live:push,pull")

	pushTo := func(repo, tag string) time.Duration {
		start := time.Now()
		if _, st := r.PushImage(t, tok, repo, tag, []byte(repo+" layer "+tag)); st != 201 {
			t.Fatalf("push %s:%s: %d", repo, tag, st)
		}
		return time.Since(start)
	}
	push := func(tag string) time.Duration { return pushTo("admin/down", tag) }
	median := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	for _, repo := range []string{"admin/down", "admin/quiet", "admin/live"} {
		pushTo(repo, "warmup") // creates the repository
	}

	// A hanging endpoint: accepts connections, never answers.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var connsMu sync.Mutex
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		hang.Close()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
	})
	hung := createHook(t, r, admin, pw, map[string]any{"type": "TAG_PUSH", "key": "admin/down", "endpoint": "http://" + hang.Addr().String() + "/"})
	live := &hookReceiver{t: t, secrets: map[string]bool{}}
	liveAddr := fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t))
	live.serveOn(t, liveAddr)
	lh := createHook(t, r, admin, pw, map[string]any{"type": "TAG_PUSH", "key": "admin/live", "endpoint": "http://" + liveAddr + "/"})
	live.secrets[lh.Secret] = true
	time.Sleep(200 * time.Millisecond) // the replica's watch sees the webhooks
	// Interleaved, so that the machine's load falls on all three alike: a
	// repository without webhooks, one whose endpoint answers, one whose
	// endpoint hangs.
	var quiet, answered, dead []time.Duration
	for i := 0; i < 15; i++ {
		quiet = append(quiet, pushTo("admin/quiet", fmt.Sprint("q", i)))
		answered = append(answered, pushTo("admin/live", fmt.Sprint("l", i)))
		dead = append(dead, push(fmt.Sprint("dead", i)))
	}
	mq, ml, md := median(quiet), median(answered), median(dead)
	t.Logf("push (2 blobs + manifest), median of 15 interleaved: %v without webhooks, %v with an answering endpoint, %v with a hanging endpoint (slowest %v)", mq, ml, md, dead[len(dead)-1])
	if md > ml*3/2+30*time.Millisecond || dead[len(dead)-1] > o.WebhookTimeout {
		t.Errorf("pushes slowed by a hanging endpoint: median %v (answering endpoint: %v), slowest %v", md, ml, dead[len(dead)-1])
	}
	live.waitFor(10*time.Second, "the answering endpoint's events", func(ds []hookDelivery) bool { return len(ds) == 15 })
	if st := r.API(t, admin, pw, "DELETE", "/api/v0/webhooks/"+hung.ID, nil, nil); st != 204 {
		t.Fatal(st)
	}

	// Down (connection refused), then up.
	addr := fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t))
	rc := &hookReceiver{t: t, secrets: map[string]bool{}}
	h := createHook(t, r, admin, pw, map[string]any{"type": "TAG_PUSH", "key": "admin/down", "endpoint": "http://" + addr + "/hook", "secret": "a-secret-of-our-own-choosing"})
	rc.secrets[h.Secret] = true
	if h.Secret != "a-secret-of-our-own-choosing" {
		t.Fatalf("secret %q", h.Secret)
	}
	time.Sleep(200 * time.Millisecond)
	tags := []string{"a", "b", "c", "d", "e"}
	for _, tag := range tags {
		push(tag)
	}
	// Failed attempts are logged and retried.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var log []meta.DeliveryLogEntry
		r.API(t, admin, pw, "GET", "/api/v0/webhooks/"+h.ID+"/deliveries", nil, &log)
		retrying := 0
		for _, e := range log {
			if e.Status == "retrying" && e.Attempts >= 2 && e.LastError != "" {
				retrying++
			}
		}
		if retrying == len(tags) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery log while down: %+v", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rc.serveOn(t, addr)
	got := rc.waitFor(30*time.Second, "every event after the endpoint came up", func(ds []hookDelivery) bool { return len(ds) >= len(tags) })
	time.Sleep(2 * time.Second) // retries that would duplicate have had their time
	got = rc.deliveries()
	seen := map[string]int{}
	for _, d := range got {
		seen[d.payload.Contents["tag"].(string)]++
		if d.duplicate {
			t.Errorf("delivery %s marked as a possible duplicate without a lost replica", d.id)
		}
	}
	for _, tag := range tags {
		if seen[tag] != 1 {
			t.Errorf("tag %s delivered %d times, want exactly once", tag, seen[tag])
		}
	}
	if len(got) != len(tags) {
		t.Errorf("%d deliveries, want %d", len(got), len(tags))
	}
	var log []meta.DeliveryLogEntry
	r.API(t, admin, pw, "GET", "/api/v0/webhooks/"+h.ID+"/deliveries", nil, &log)
	for _, e := range log {
		if e.Status != "delivered" || e.Attempts < 2 {
			t.Errorf("delivery log after recovery: %+v", e)
		}
	}
}

// TestWebhookReplicaLoss: events queued by a replica that is then lost
// are delivered by the others; an attempt the lost replica may have made
// is marked as a possible duplicate.
func TestWebhookReplicaLoss(t *testing.T) {
	a := registrytest.StartNew(t)
	b := join(t, a, "bbbbbbbbbbbb")
	c := join(t, a, "cccccccccccc")
	admin, pw := registrytest.AdminUser, registrytest.AdminPassword
	addr := fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t))
	rc := &hookReceiver{t: t, secrets: map[string]bool{}}
	if st := a.API(t, admin, pw, "POST", "/api/v0/repositories/admin", map[string]any{"name": "lost", "visibility": "private"}, nil); st != 201 {
		t.Fatal(st)
	}
	h := createHook(t, a, admin, pw, map[string]any{"type": "TAG_PUSH", "key": "admin/lost", "endpoint": "http://" + addr + "/hook"})
	rc.secrets[h.Secret] = true
	time.Sleep(300 * time.Millisecond)
	tok := a.Token(t, admin, pw, "repository:admin/lost:push,pull")
	tags := []string{"x", "y", "z"}
	for _, tag := range tags {
		if _, st := a.PushImage(t, tok, "admin/lost", tag, []byte("layer "+tag)); st != 201 {
			t.Fatalf("push: %d", st)
		}
	}
	// A delivery a replica claimed and never finished: its claim runs out.
	ctx := context.Background()
	now := time.Now()
	orphan := meta.Delivery{ID: meta.NewDeliveryID(now), WebhookID: h.ID, Type: meta.WebhookTagPush, CreatedAt: now, NextAt: now,
		Payload:   json.RawMessage(`{"type":"TAG_PUSH","contents":{"tag":"orphan"}}`),
		ClaimedBy: "aaaaaaaaaaaa", ClaimedUntil: now.Add(time.Second)}
	if err := b.MetaStore().EnqueueDeliveries(ctx, []meta.Delivery{orphan}); err != nil {
		t.Fatal(err)
	}
	a.Stop() // the replica that took the pushes is lost
	rc.serveOn(t, addr)
	rc.waitFor(60*time.Second, "every event from the surviving replicas", func(ds []hookDelivery) bool {
		seen := map[string]bool{}
		for _, d := range ds {
			seen[fmt.Sprint(d.payload.Contents["tag"])] = true
		}
		return seen["x"] && seen["y"] && seen["z"] && seen["orphan"]
	})
	time.Sleep(2 * time.Second)
	unmarked := map[string]int{}
	for _, d := range rc.deliveries() {
		tag := fmt.Sprint(d.payload.Contents["tag"])
		if tag == "orphan" && !d.duplicate {
			t.Errorf("the orphaned delivery is not marked as a possible duplicate")
		}
		if !d.duplicate {
			unmarked[tag]++
		}
	}
	for tag, n := range unmarked {
		if n > 1 {
			t.Errorf("tag %s delivered %d times unmarked: duplicates must be marked", tag, n)
		}
	}
	_ = c
}

// TestWebhookReplicaHealth: a replica whose health changes (drained, then
// lifted) sends REPLICA_HEALTH events to webhooks without a key.
func TestWebhookReplicaHealth(t *testing.T) {
	r := registrytest.StartNew(t)
	admin, pw := registrytest.AdminUser, registrytest.AdminPassword
	rc := &hookReceiver{t: t, secrets: map[string]bool{}}
	addr := fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t))
	rc.serveOn(t, addr)
	h := createHook(t, r, admin, pw, map[string]any{"type": "REPLICA_HEALTH", "key": "", "endpoint": "http://" + addr + "/hook"})
	rc.secrets[h.Secret] = true
	time.Sleep(300 * time.Millisecond)
	id := r.Opts.ReplicaID
	if st := r.API(t, admin, pw, "POST", "/api/v0/meta/replicas/"+id+"/drain", nil, nil); st/100 != 2 {
		t.Fatalf("drain: %d", st)
	}
	rc.waitFor(15*time.Second, "the unhealthy event", func(ds []hookDelivery) bool { return len(ds) >= 1 })
	if st := r.API(t, admin, pw, "DELETE", "/api/v0/meta/replicas/"+id+"/drain", nil, nil); st/100 != 2 {
		t.Fatalf("undrain: %d", st)
	}
	got := rc.waitFor(15*time.Second, "the healthy event", func(ds []hookDelivery) bool { return len(ds) >= 2 })
	first, second := got[0].payload.Contents, got[1].payload.Contents
	if got[0].event != "REPLICA_HEALTH" || first["replica"] != id || first["healthy"] != false || first["error"] == "" || second["healthy"] != true {
		t.Errorf("health events: %v, %v", first, second)
	}
}

// TestWebhookTLS: an https endpoint's certificate is verified, against the
// webhook's own CA when it has one; skipTLSVerification turns that off.
func TestWebhookTLS(t *testing.T) {
	r := registrytest.StartNew(t)
	admin, pw := registrytest.AdminUser, registrytest.AdminPassword
	rc := &hookReceiver{t: t, secrets: map[string]bool{"": true}} // test calls without an id are signed with an empty key
	srv := httptest.NewTLSServer(rc)
	defer srv.Close()
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	for _, c := range []struct {
		name  string
		extra map[string]any
		ok    bool
	}{
		{"system roots", nil, false},
		{"the webhook's CA", map[string]any{"tlsCert": ca}, true},
		{"verification skipped", map[string]any{"skipTLSVerification": true}, true},
	} {
		req := map[string]any{"type": "TAG_PUSH", "key": "admin", "endpoint": srv.URL + "/hook"}
		for k, v := range c.extra {
			req[k] = v
		}
		var res struct {
			StatusCode int
			Error      string
		}
		if st := r.API(t, admin, pw, "POST", "/api/v0/webhooks/test", req, &res); st != 200 {
			t.Fatalf("%s: test call %d", c.name, st)
		}
		if got := res.StatusCode == 200 && res.Error == ""; got != c.ok {
			t.Errorf("%s: delivered %v (%+v), want %v", c.name, got, res, c.ok)
		}
		if !c.ok && !strings.Contains(res.Error, "certificate") {
			t.Errorf("%s: error %q does not name the certificate", c.name, res.Error)
		}
	}
	if n := len(rc.deliveries()); n != 2 {
		t.Errorf("receiver got %d test payloads, want 2", n)
	}
}
