package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// expireSession ends a signed-in browser's session as the idle timeout
// would, as another replica would see it later.
func expireSession(t *testing.T, store *meta.Store, b *browser) {
	t.Helper()
	ck := b.sessionCookie()
	sess, rev, err := store.Session(ctx(t), ck.Value)
	if err != nil {
		t.Fatal(err)
	}
	sess.LastSeen = time.Now().Add(-time.Hour)
	if err := store.TouchSession(ctx(t), ck.Value, sess, rev, sess.LastSeen); err != nil {
		t.Fatal(err)
	}
}

// reloadUntil loads path until its page contains want (the audit trail and
// webhook deliveries are written off the request's path).
func reloadUntil(t *testing.T, b *browser, path, want string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, body := b.get(path)
		if resp.StatusCode == http.StatusOK && strings.Contains(body, want) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not show %q after 15 s: %d\n%s", path, want, resp.StatusCode, excerpt(body))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var pusherCell = regexp.MustCompile(`<td class="tag">([^<]+)</td>(?s:.*?)<td class="pusher">([^<]*)(?:<span[^>]*>([^<]*)</span>)?</td>`)

// pushers reads the "pushed by" column of a repository page: tag → user,
// "—" for unknown.
func pushers(body string) map[string]string {
	out := map[string]string{}
	for _, m := range pusherCell.FindAllStringSubmatch(body, -1) {
		out[m[1]] = strings.TrimSpace(m[2] + m[3])
	}
	return out
}

// TestPushedBy: a tag's row names who pushed its current digest, from the
// audit trail; a push of the same tag by someone else changes it; a tag
// whose record the trail no longer has shows "—".
func TestPushedBy(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	store := openStore(t, r)
	a := newBrowser(t, r)
	a.login(admin, adminPW)

	alice := r.Token(t, "alice", "alice-password", "repository:acme/app:pull,push")
	for _, tag := range []string{"v1", "v2"} {
		if _, st := r.PushImage(t, alice, "acme/app", tag, []byte("alice's "+tag)); st != http.StatusCreated {
			t.Fatalf("alice's push of %s: %d", tag, st)
		}
	}
	body := reloadUntil(t, a, "/repositories/acme/app", `<td class="pusher">alice</td>`)
	deadline := time.Now().Add(10 * time.Second)
	for p := pushers(body); p["v1"] != "alice" || p["v2"] != "alice"; p = pushers(body) {
		if time.Now().After(deadline) {
			t.Fatalf("pushed by: %v, want alice for v1 and v2", p)
		}
		time.Sleep(50 * time.Millisecond)
		_, body = a.get("/repositories/acme/app")
	}

	// carol, a reader, sees who pushed too (DTR's tag list shows it).
	if st := r.API(t, admin, adminPW, "PUT", "/api/v0/repositories/acme/app/userAccess/carol", map[string]string{"accessLevel": "read-only"}, nil); st != 200 {
		t.Fatal(st)
	}
	carol := newBrowser(t, r)
	carol.login("carol", "carol-password")
	_, body = carol.get("/repositories/acme/app")
	if p := pushers(body); p["v1"] != "alice" {
		t.Fatalf("carol sees pushed by %v", p)
	}

	// The admin pushes v2 again, with other content: v2 is now the admin's.
	tok := r.Token(t, admin, adminPW, "repository:acme/app:pull,push")
	if _, st := r.PushImage(t, tok, "acme/app", "v2", []byte("the admin's v2")); st != http.StatusCreated {
		t.Fatalf("admin's push: %d", st)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		_, body = a.get("/repositories/acme/app")
		p := pushers(body)
		if p["v2"] == admin && p["v1"] == "alice" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the admin's push of v2: %v", p)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The trail trimmed: nobody is named, nothing is made up.
	if _, err := store.TrimEvents(ctx(t), time.Now().Add(time.Hour), time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	_, body = a.get("/repositories/acme/app")
	if p := pushers(body); p["v1"] != "—" || p["v2"] != "—" {
		t.Fatalf("after the trail was trimmed: %v", p)
	}
}

// TestPruningPolicyForms: a repository admin tests, adds, disables and
// deletes a pruning policy on the repository page; bad rules come back
// with the API's words and the form as sent; a user with read-write
// access sees no form and is refused, one without access is told the
// repository does not exist; an expired session changes nothing.
func TestPruningPolicyForms(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	store := openStore(t, r)
	a := newBrowser(t, r)
	a.login(admin, adminPW)
	policies := func() []meta.PruningPolicy {
		t.Helper()
		ps, err := store.PruningPolicies(ctx(t), "acme", "app")
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}

	resp, body := a.get("/repositories/acme/app")
	wantPage(t, "repository page", resp, body, http.StatusOK, `id="policy-form"`, "No pruning policies")

	alice := r.Token(t, "alice", "alice-password", "repository:acme/app:pull,push")
	for _, tag := range []string{"dev-1", "dev-2", "v1"} {
		if _, st := r.PushImage(t, alice, "acme/app", tag, []byte(tag)); st != http.StatusCreated {
			t.Fatalf("push %s: %d", tag, st)
		}
	}
	form := url.Values{"field0": {"tag"}, "operator0": {"sw"}, "values0": {"dev-"}, "field1": {"tag"}, "operator1": {"eq"}, "values1": {""}, "enabled": {"on"}}
	with := func(action string) url.Values {
		f := url.Values{"action": {action}}
		for k, v := range form {
			f[k] = v
		}
		return f
	}

	// The dry run: what it would prune, nothing saved.
	resp, body = a.post("/repositories/acme/app", with("test-policy"))
	wantPage(t, "dry run", resp, body, http.StatusOK, `id="dry-run"`, "would prune 2 tags", ">dev-1<", ">dev-2<", `value="dev-"`)
	if strings.Contains(body[strings.Index(body, `id="dry-run"`):strings.Index(body, `id="policy-form"`)], ">v1<") {
		t.Error("the dry run lists v1, which the rule does not match")
	}
	if ps := policies(); len(ps) != 0 {
		t.Fatalf("a dry run saved a policy: %+v", ps)
	}

	// Bad input: the API's words, the form kept.
	bad := with("add-policy")
	bad.Set("operator0", "bf")
	resp, body = a.post("/repositories/acme/app", bad)
	wantPage(t, "tag with bf", resp, body, http.StatusBadRequest, "use eq, sw, ew, c, oo, noo or matches", `value="dev-"`, `<option value="bf" selected>`)
	bad = with("add-policy")
	bad.Set("field0", "updated_at_duration")
	bad.Set("operator0", "bf")
	bad.Set("values0", "ninety days")
	resp, body = a.post("/repositories/acme/app", bad)
	wantPage(t, "a duration that is not one", resp, body, http.StatusBadRequest, "give exactly one value")
	bad.Set("values0", "90d")
	resp, body = a.post("/repositories/acme/app", bad)
	wantPage(t, "90d", resp, body, http.StatusBadRequest, `such as &#34;720h&#34;`)
	resp, body = a.post("/repositories/acme/app", url.Values{"action": {"add-policy"}, "field0": {"tag"}, "operator0": {"sw"}, "enabled": {"on"}})
	wantPage(t, "no rule", resp, body, http.StatusBadRequest, "Give at least one rule")
	if ps := policies(); len(ps) != 0 {
		t.Fatalf("a refused form saved a policy: %+v", ps)
	}

	// Add, as the form sent it.
	resp, body = a.post("/repositories/acme/app", with("add-policy"))
	redirectTo(t, "add policy", resp, body, "/repositories/acme/app?done=policy-added")
	ps := policies()
	if len(ps) != 1 || !ps[0].Enabled || len(ps[0].Rules) != 1 || ps[0].Rules[0].Field != "tag" || ps[0].Rules[0].Operator != "sw" || strings.Join(ps[0].Rules[0].Values, ",") != "dev-" {
		t.Fatalf("policy saved: %+v", ps)
	}
	id := ps[0].ID
	resp, body = a.get("/repositories/acme/app?done=policy-added")
	wantPage(t, "the policy listed", resp, body, http.StatusOK, "Pruning policy added.", "<code>"+id+"</code>", "tag sw dev-")
	// A regular expression with a comma is one value.
	re := url.Values{"action": {"add-policy"}, "field0": {"tag"}, "operator0": {"matches"}, "values0": {`^v[0-9]{1,3}$`}}
	resp, body = a.post("/repositories/acme/app", re)
	redirectTo(t, "regexp policy", resp, body, "/repositories/acme/app?done=policy-added")
	if ps := policies(); len(ps) != 2 || ps[1].Rules[0].Values[0] != `^v[0-9]{1,3}$` || ps[1].Enabled {
		t.Fatalf("regexp policy: %+v", ps)
	}

	// Disable and enable.
	resp, body = a.post("/repositories/acme/app", url.Values{"action": {"disable-policy"}, "policy": {id}})
	redirectTo(t, "disable", resp, body, "/repositories/acme/app?done=policy-saved")
	if p, _ := store.PruningPolicy(ctx(t), "acme", "app", id); p.Enabled {
		t.Fatal("still enabled")
	}
	resp, body = a.post("/repositories/acme/app", url.Values{"action": {"enable-policy"}, "policy": {"no-such"}})
	wantPage(t, "enable a missing policy", resp, body, http.StatusNotFound, "has no pruning policy no-such")
	resp, body = a.post("/repositories/acme/app", url.Values{"action": {"enable-policy"}, "policy": {"../../other"}})
	wantPage(t, "a path as policy", resp, body, http.StatusBadRequest, "is not a pruning policy")

	// Someone with read-write access: no form, and refused.
	al := newBrowser(t, r)
	al.login("alice", "alice-password")
	resp, body = al.get("/repositories/acme/app")
	wantPage(t, "alice's page", resp, body, http.StatusOK, ">dev-1<")
	if strings.Contains(body, "policy-form") || strings.Contains(body, id) {
		t.Fatal("alice, who does not administer acme/app, sees its pruning policies")
	}
	for _, f := range []url.Values{with("add-policy"), with("test-policy"), {"action": {"delete-policy"}, "policy": {id}, "confirmed": {"yes"}}, {"action": {"enable-policy"}, "policy": {id}}} {
		resp, body = al.post("/repositories/acme/app", f)
		wantPage(t, "alice "+f.Get("action"), resp, body, http.StatusForbidden)
		if strings.Contains(body, "policy-form") {
			t.Fatalf("alice's refused %s shows the pruning form", f.Get("action"))
		}
	}
	// No access at all: the repository does not exist for carol.
	carol := newBrowser(t, r)
	carol.login("carol", "carol-password")
	resp, body = carol.post("/repositories/acme/app", with("add-policy"))
	wantPage(t, "carol adds a policy", resp, body, http.StatusNotFound, "or you may not see it")
	if ps := policies(); len(ps) != 2 || ps[0].Enabled {
		t.Fatalf("refused forms changed the policies: %+v", ps)
	}

	// Delete: the confirmation first (no JavaScript), then gone.
	resp, body = a.post("/repositories/acme/app", url.Values{"action": {"delete-policy"}, "policy": {id}})
	wantPage(t, "delete without confirmation", resp, body, http.StatusOK, "Are you sure?", "Delete pruning policy")
	if len(policies()) != 2 {
		t.Fatal("deleted before the confirmation")
	}
	resp, body = a.post("/repositories/acme/app", url.Values{"action": {"delete-policy"}, "policy": {id}, "confirmed": {"yes"}})
	redirectTo(t, "delete", resp, body, "/repositories/acme/app?done=policy-deleted")
	if ps := policies(); len(ps) != 1 || ps[0].ID == id {
		t.Fatalf("after the deletion: %+v", ps)
	}

	// An expired session changes nothing.
	expireSession(t, store, a)
	resp, body = a.post("/repositories/acme/app", with("add-policy"))
	wantPage(t, "expired session", resp, body, http.StatusUnauthorized, "Your session expired")
	if len(policies()) != 1 {
		t.Fatal("a form of an expired session added a policy")
	}
}

// hookReceiver counts the POSTs a webhook endpoint gets.
type hookReceiver struct {
	srv   *httptest.Server
	count atomic.Int64
}

func newReceiver(t *testing.T, status int) *hookReceiver {
	h := &hookReceiver{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h.count.Add(1)
		w.WriteHeader(status)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

var secretShown = regexp.MustCompile(`id="webhook-secret" readonly value="([0-9a-f]{64})"`)

// TestWebhookForms: System → Webhooks for system administrators and a
// repository's webhooks for its admins: create (the secret shown once),
// test, the delivery log, delete; bad input in the API's words; other
// users neither see nor change them; an expired session changes nothing.
func TestWebhookForms(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	store := openStore(t, r)
	ok := newReceiver(t, http.StatusOK)
	refusing := newReceiver(t, http.StatusForbidden)
	a := newBrowser(t, r)
	a.login(admin, adminPW)
	hooks := func() map[string]meta.Webhook {
		t.Helper()
		hs, err := store.Webhooks(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]meta.Webhook{}
		for _, h := range hs {
			out[h.ID] = h
		}
		return out
	}

	resp, body := a.get("/system/webhooks")
	wantPage(t, "System → Webhooks", resp, body, http.StatusOK, "No webhooks", `<option selected>TAG_PUSH</option>`, "REPLICA_HEALTH")

	// Bad input: the API's words, the form kept.
	resp, body = a.post("/system/webhooks", url.Values{"action": {"create-webhook"}, "type": {"TAG_PUSH"}, "key": {"acme"}, "endpoint": {"ftp://ci.example.com"}})
	wantPage(t, "ftp endpoint", resp, body, http.StatusBadRequest, "give an http or https URL", `value="ftp://ci.example.com"`, `value="acme"`)
	resp, body = a.post("/system/webhooks", url.Values{"action": {"create-webhook"}, "type": {"TAG_PUSH"}, "endpoint": {ok.srv.URL}, "tlsCert": {"not a certificate"}})
	wantPage(t, "bad CA", resp, body, http.StatusBadRequest, "no PEM certificate found", "not a certificate")
	resp, body = a.post("/system/webhooks", url.Values{"action": {"create-webhook"}, "type": {"GC_COMPLETED"}, "key": {"acme"}, "endpoint": {ok.srv.URL}})
	wantPage(t, "cluster type with a key", resp, body, http.StatusBadRequest, "leave key empty")
	if len(hooks()) != 0 {
		t.Fatal("a refused form created a webhook")
	}

	// Create: the secret is on the page once.
	resp, body = a.post("/system/webhooks", url.Values{"action": {"create-webhook"}, "type": {"TAG_PUSH"}, "key": {"acme"}, "endpoint": {ok.srv.URL}})
	wantPage(t, "create", resp, body, http.StatusCreated, "Webhook created.", ok.srv.URL)
	m := secretShown.FindStringSubmatch(body)
	hs := hooks()
	if m == nil || len(hs) != 1 {
		t.Fatalf("secret shown %v, webhooks %d", m, len(hs))
	}
	var adminHook meta.Webhook
	for _, h := range hs {
		adminHook = h
	}
	if adminHook.Secret != m[1] || adminHook.Key != "acme" || adminHook.AuthorID != admin {
		t.Fatalf("webhook saved: %+v", adminHook)
	}
	resp, body = a.get("/system/webhooks")
	wantPage(t, "the list", resp, body, http.StatusOK, ok.srv.URL, "/webhooks/"+adminHook.ID)
	if strings.Contains(body, adminHook.Secret) {
		t.Fatal("the list shows the secret again")
	}

	// Test: the receiver's answer on the page.
	resp, body = a.post("/system/webhooks", url.Values{"action": {"test-webhook"}, "webhook": {adminHook.ID}})
	wantPage(t, "test", resp, body, http.StatusOK, "took the test event: it answered 200")
	if ok.count.Load() != 1 {
		t.Fatalf("the receiver got %d requests, want 1", ok.count.Load())
	}
	resp, body = a.post("/system/webhooks", url.Values{"action": {"create-webhook"}, "type": {"TAG_DELETE"}, "endpoint": {refusing.srv.URL}})
	wantPage(t, "create refusing", resp, body, http.StatusCreated, "Webhook created.")
	var refusingHook string
	for id, h := range hooks() {
		if h.Endpoint == refusing.srv.URL {
			refusingHook = id
		}
	}
	resp, body = a.post("/system/webhooks", url.Values{"action": {"test-webhook"}, "webhook": {refusingHook}})
	wantPage(t, "test refused", resp, body, http.StatusOK, "refused the test event: it answered 403 Forbidden")
	resp, body = a.post("/system/webhooks", url.Values{"action": {"test-webhook"}, "webhook": {"../meta"}})
	wantPage(t, "a path as webhook", resp, body, http.StatusBadRequest, "is not a webhook")

	// The delivery log: a push under acme reaches the receiver and the log.
	alice := r.Token(t, "alice", "alice-password", "repository:acme/app:pull,push")
	if _, st := r.PushImage(t, alice, "acme/app", "v1", []byte("v1")); st != http.StatusCreated {
		t.Fatalf("push: %d", st)
	}
	body = reloadUntil(t, a, "/webhooks/"+adminHook.ID, ">delivered<")
	wantPage(t, "delivery log", &http.Response{StatusCode: 200}, body, http.StatusOK, "TAG_PUSH", "Delivery log")

	// A non-admin: no System → Webhooks, no other user's webhook.
	bob := newBrowser(t, r)
	bob.login("bob", "bob-password")
	resp, body = bob.get("/system/webhooks")
	wantPage(t, "bob's System → Webhooks", resp, body, http.StatusForbidden)
	for _, f := range []url.Values{
		{"action": {"create-webhook"}, "type": {"TAG_PUSH"}, "key": {"bob"}, "endpoint": {ok.srv.URL}},
		{"action": {"delete-webhook"}, "webhook": {adminHook.ID}, "confirmed": {"yes"}},
		{"action": {"test-webhook"}, "webhook": {adminHook.ID}},
	} {
		resp, body = bob.post("/system/webhooks", f)
		wantPage(t, "bob "+f.Get("action"), resp, body, http.StatusForbidden)
	}
	resp, body = bob.get("/webhooks/" + adminHook.ID)
	wantPage(t, "bob's look at the admin's webhook", resp, body, http.StatusNotFound, "or you may not see it")
	if strings.Contains(body, ok.srv.URL) {
		t.Fatal("bob sees the admin's endpoint")
	}

	// A repository admin who is not a system admin: carol administers acme/pub.
	if st := r.API(t, admin, adminPW, "PUT", "/api/v0/repositories/acme/pub/userAccess/carol", map[string]string{"accessLevel": "admin"}, nil); st != 200 {
		t.Fatal(st)
	}
	carol := newBrowser(t, r)
	carol.login("carol", "carol-password")
	resp, body = carol.get("/repositories/acme/pub")
	wantPage(t, "carol's acme/pub", resp, body, http.StatusOK, `id="webhook-form"`, "No webhooks on this repository")
	if strings.Contains(body, "REPLICA_HEALTH") || strings.Contains(body, `name="key"`) {
		t.Fatal("a repository's webhook form offers cluster events or another key")
	}
	resp, body = carol.post("/repositories/acme/pub", url.Values{"action": {"create-webhook"}, "type": {"TAG_PUSH"}, "key": {"acme"}, "endpoint": {ok.srv.URL}})
	wantPage(t, "carol creates", resp, body, http.StatusCreated, "Webhook created.")
	var carolHook meta.Webhook
	for _, h := range hooks() {
		if h.AuthorID == "carol" {
			carolHook = h
		}
	}
	if carolHook.Key != "acme/pub" || carolHook.Type != "TAG_PUSH" {
		t.Fatalf("carol's webhook: %+v (the form's key must not widen it)", carolHook)
	}
	// The admin's webhook on acme/pub is listed on carol's page (GET
	// /repositories/{ns}/{repo}/webhooks), without her buttons for it.
	resp, body = a.post("/system/webhooks", url.Values{"action": {"create-webhook"}, "type": {"TAG_DELETE"}, "key": {"acme/pub"}, "endpoint": {refusing.srv.URL}})
	wantPage(t, "admin's webhook on acme/pub", resp, body, http.StatusCreated, "Webhook created.")
	resp, body = carol.get("/repositories/acme/pub")
	wantPage(t, "carol's list", resp, body, http.StatusOK, "/webhooks/"+carolHook.ID, refusing.srv.URL, "admin or a system administrator manages it")
	if n := strings.Count(body, `value="test-webhook"`); n != 1 {
		t.Errorf("carol's page has %d test buttons, want 1 (her webhook's)", n)
	}
	if strings.Contains(body, adminHook.ID) || strings.Contains(body, refusingHook) {
		t.Fatal("carol sees the admin's webhooks of other keys")
	}
	resp, body = carol.post("/repositories/acme/pub", url.Values{"action": {"test-webhook"}, "webhook": {carolHook.ID}})
	wantPage(t, "carol tests", resp, body, http.StatusOK, "took the test event")
	resp, body = carol.get("/webhooks/" + carolHook.ID)
	wantPage(t, "carol's delivery log", resp, body, http.StatusOK, "Nothing delivered yet", `href="/repositories/acme/pub"`)
	// Not someone else's webhook through her page, not another repository's.
	for _, f := range []url.Values{{"action": {"test-webhook"}, "webhook": {adminHook.ID}}, {"action": {"delete-webhook"}, "webhook": {adminHook.ID}, "confirmed": {"yes"}}} {
		resp, body = carol.post("/repositories/acme/pub", f)
		wantPage(t, "carol "+f.Get("action")+" of the admin's webhook", resp, body, http.StatusNotFound, "no webhook "+adminHook.ID)
	}
	resp, body = carol.post("/repositories/acme/app", url.Values{"action": {"create-webhook"}, "type": {"TAG_PUSH"}, "endpoint": {ok.srv.URL}})
	wantPage(t, "carol on acme/app", resp, body, http.StatusNotFound, "or you may not see it")
	// alice writes to acme/app but does not administer it.
	al := newBrowser(t, r)
	al.login("alice", "alice-password")
	resp, body = al.get("/repositories/acme/app")
	if strings.Contains(body, "webhook-form") {
		t.Fatal("alice sees the webhook form of acme/app")
	}
	resp, body = al.post("/repositories/acme/app", url.Values{"action": {"create-webhook"}, "type": {"TAG_PUSH"}, "endpoint": {ok.srv.URL}})
	wantPage(t, "alice creates on acme/app", resp, body, http.StatusForbidden)
	if n := len(hooks()); n != 4 {
		t.Fatalf("%d webhooks, want 4", n)
	}

	// Delete: confirmation first, then gone with its log.
	resp, body = carol.post("/repositories/acme/pub", url.Values{"action": {"delete-webhook"}, "webhook": {carolHook.ID}})
	wantPage(t, "delete without confirmation", resp, body, http.StatusOK, "Are you sure?", "Delete webhook")
	resp, body = carol.post("/repositories/acme/pub", url.Values{"action": {"delete-webhook"}, "webhook": {carolHook.ID}, "confirmed": {"yes"}})
	redirectTo(t, "carol deletes", resp, body, "/repositories/acme/pub?done=webhook-deleted")
	if _, ok := hooks()[carolHook.ID]; ok {
		t.Fatal("carol's webhook outlived its deletion")
	}

	// An expired session changes nothing.
	expireSession(t, store, a)
	resp, body = a.post("/system/webhooks", url.Values{"action": {"delete-webhook"}, "webhook": {adminHook.ID}, "confirmed": {"yes"}})
	wantPage(t, "expired session", resp, body, http.StatusUnauthorized, "Your session expired")
	if _, ok := hooks()[adminHook.ID]; !ok {
		t.Fatal("a form of an expired session deleted a webhook")
	}
	a.login(admin, adminPW)
	resp, body = a.post("/system/webhooks", url.Values{"action": {"delete-webhook"}, "webhook": {adminHook.ID}, "confirmed": {"yes"}})
	redirectTo(t, "admin deletes", resp, body, "/system/webhooks?done=webhook-deleted")
	if _, ok := hooks()[adminHook.ID]; ok {
		t.Fatal("the admin's webhook outlived its deletion")
	}
}
