package syncer_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/identity/syncer"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
	"github.com/dtr-registry/dtr/ucp/ucptest"
)

const (
	ucpAdmin   = "ucp-admin"
	ucpAdminPW = "ucp-admin-pw-1"
	benPW      = "ben-ucp-pw-123"
	calPW      = "cal-ucp-pw-123"
	dotPW      = "dot-ucp-pw-123"
)

// lockedBuffer collects a replica's log for the test to read.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// consoleSignIn signs in through the console's form, as a browser does,
// and returns the status of the answer to the POST and whether a session
// cookie was set.
func consoleSignIn(t *testing.T, r *registrytest.Replica, user, pw string) (int, bool) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: r.Client.Transport, Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(r.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	_, _ = page.ReadFrom(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page.String())
	if m == nil {
		t.Fatalf("the sign-in page has no CSRF field: %d", resp.StatusCode)
	}
	form := url.Values{"username": {user}, "password": {pw}, "csrf": {m[1]}, "next": {"/repositories"}}
	resp, err = c.PostForm(r.URL+"/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u, _ := url.Parse(r.URL)
	for _, ck := range jar.Cookies(u) {
		if ck.Name == "__Host-dtr-session" && ck.Value != "" {
			return resp.StatusCode, true
		}
	}
	return resp.StatusCode, false
}

// TestUCPSource runs two replicas with UCP as the identity source, set
// through the settings API against the UCP stand-in: UCP users sign in as
// docker login and the console do, a UCP administrator is a dtr
// administrator, a UCP team's grant decides a pull after a sync, a user
// removed or deactivated in UCP is refused at once and loses every token
// on every replica after the next sync, and UCP down leaves the local
// administrator signing in.
func TestUCPSource(t *testing.T) {
	u, err := ucptest.Start(ucptest.Options{
		Username: ucpAdmin, Password: ucpAdminPW,
		Users: []ucptest.User{
			{Name: "ben", Password: benPW, FullName: "Ben"},
			{Name: "cal", Password: calPW},
			{Name: "dot", Password: dotPW},
			{Name: "carol", Password: "carol-ucp-pw-1"},
		},
		Orgs: []ucptest.Org{{Name: "eng", Members: map[string]bool{"dot": false}, Teams: map[string][]string{"devs": {"ben"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()

	logs := &lockedBuffer{}
	o := registrytest.Options(t, t.TempDir()+"/data")
	log := logrus.New()
	log.SetOutput(logs)
	o.Log, o.LogLevel = log, "info"
	r := registrytest.Start(t, o)
	api := func(method, path string, in any, want int) []byte {
		t.Helper()
		var raw json.RawMessage
		if got := r.API(t, admin, adminPW, method, path, in, &raw); got != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, got, want, raw)
		}
		return raw
	}
	// A local carol exists before the source: a UCP carol never takes it.
	api("POST", "/api/v0/accounts", map[string]any{"name": "carol", "password": "carol-local-pw"}, 201)
	api("PUT", "/api/v0/meta/settings/identity", map[string]any{"kind": "ucp", "ucp": map[string]any{
		"url": u.URL, "ca": string(u.CAPEM), "username": ucpAdmin, "password": ucpAdminPW}}, 200)
	if raw := api("GET", "/api/v0/meta/settings/identity", nil, 200); strings.Contains(string(raw), ucpAdminPW) {
		t.Fatalf("the UCP administrator's password is shown: %s", raw)
	}
	r2 := registrytest.Join(t, r, admin, adminPW, "bbbbbbbbbbbb")

	t.Run("sign in with UCP credentials", func(t *testing.T) {
		// docker login: Basic auth to the token endpoint, on either replica.
		for _, rep := range []*registrytest.Replica{r, r2} {
			if st, details := tokenStatus(t, rep, "ben", benPW); st != 200 {
				t.Fatalf("ben's docker login on %s: %d %s", rep.Opts.ReplicaID, st, details)
			}
		}
		if st, _ := tokenStatus(t, r, "ben", "not-"+benPW); st != 401 {
			t.Fatalf("ben with a wrong password: %d", st)
		}
		if st, _ := tokenStatus(t, r, "nobody", benPW); st != 401 {
			t.Fatalf("a name UCP does not know: %d", st)
		}
		if st, ok := consoleSignIn(t, r, "ben", benPW); st != http.StatusSeeOther || !ok {
			t.Fatalf("ben's console sign-in: %d, session %v", st, ok)
		}
		if st, ok := consoleSignIn(t, r2, "ben", "wrong-password"); st != http.StatusUnauthorized || ok {
			t.Fatalf("console sign-in with a wrong password: %d, session %v", st, ok)
		}
		var acc meta.Account
		if st := r.API(t, admin, adminPW, "GET", "/api/v0/accounts/ben", nil, &acc); st != 200 || acc.Source != "ucp" || acc.IsAdmin || !acc.IsActive || acc.FullName != "Ben" {
			t.Fatalf("ben's account: %d %+v", st, acc)
		}
		// The local carol keeps her password; UCP's carol cannot sign in as her.
		if st, _ := tokenStatus(t, r, "carol", "carol-local-pw"); st != 200 {
			t.Fatalf("local carol: %d", st)
		}
		if st, _ := tokenStatus(t, r, "carol", "carol-ucp-pw-1"); st != 401 {
			t.Fatalf("UCP's carol signed in as the local carol: %d", st)
		}
	})

	t.Run("docker login", func(t *testing.T) {
		// The docker CLI and its engine, which trusts the replica's CA as
		// an operator's does (certs.d); the engine reaches the replica on
		// loopback, so it must run on this machine.
		if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
			t.Skipf("no Docker engine answers: %v %s", err, out)
		}
		certs := filepath.Join("/etc/docker/certs.d", r.Host)
		if err := os.MkdirAll(certs, 0o755); err != nil {
			t.Skipf("cannot trust the replica's CA in %s: %v", certs, err)
		}
		t.Cleanup(func() { os.RemoveAll(certs) })
		if err := os.WriteFile(filepath.Join(certs, "ca.crt"), r.CACertPEM(), 0o644); err != nil {
			t.Skipf("cannot trust the replica's CA in %s: %v", certs, err)
		}
		login := func(user, pw string) (string, error) {
			cmd := exec.Command("docker", "login", r.Host, "--username", user, "--password-stdin")
			cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
			cmd.Stdin = strings.NewReader(pw)
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		if out, err := login("ben", benPW); err != nil || !strings.Contains(out, "Login Succeeded") {
			t.Fatalf("docker login as the UCP user ben: %v\n%s", err, out)
		}
		if out, err := login("ben", "not-"+benPW); err == nil || !strings.Contains(out, "unauthorized") {
			t.Fatalf("docker login with a wrong UCP password: %v, want unauthorized:\n%s", err, out)
		}
	})

	t.Run("UCP administrators are dtr administrators", func(t *testing.T) {
		if st := r.API(t, ucpAdmin, ucpAdminPW, "GET", "/api/v0/meta/settings/identity", nil, nil); st != 200 {
			t.Fatalf("the UCP administrator calling an admin API: %d", st)
		}
		if st := r2.API(t, ucpAdmin, ucpAdminPW, "POST", "/api/v0/accounts", map[string]any{"name": "qa", "isOrg": true}, nil); st != 201 {
			t.Fatalf("the UCP administrator creating an organization: %d", st)
		}
		if st := r.API(t, "ben", benPW, "GET", "/api/v0/meta/settings/identity", nil, nil); st != 403 {
			t.Fatalf("ben, no UCP administrator: %d", st)
		}
		// Made an administrator in UCP: dtr follows at the next sign-in.
		if err := u.SetUserAdmin("cal", true); err != nil {
			t.Fatal(err)
		}
		if st := r.API(t, "cal", calPW, "GET", "/api/v0/meta/settings/identity", nil, nil); st != 200 {
			t.Fatalf("cal, made a UCP administrator: %d", st)
		}
		if err := u.SetUserAdmin("cal", false); err != nil {
			t.Fatal(err)
		}
		syncNow(t, r)
		if st := r.API(t, "cal", calPW, "GET", "/api/v0/meta/settings/identity", nil, nil); st != 403 {
			t.Fatalf("cal, no longer a UCP administrator, after a sync: %d", st)
		}
	})

	t.Run("a team grant decides a pull", func(t *testing.T) {
		res := syncNow(t, r)
		if res.Deactivated != 0 {
			t.Fatalf("first sync deactivated accounts: %+v", res)
		}
		var team meta.Team
		if st := r.API(t, admin, adminPW, "GET", "/api/v0/accounts/eng/teams/devs", nil, &team); st != 200 {
			t.Fatalf("UCP's team eng/devs after the sync: %d", st)
		}
		api("POST", "/api/v0/repositories/eng", map[string]any{"name": "app", "visibility": "private"}, 201)
		api("PUT", "/api/v0/repositories/eng/app/teamAccess/devs", map[string]any{"accessLevel": "read-only"}, 200)
		for _, rep := range []*registrytest.Replica{r, r2} {
			if !pulls(t, rep, "ben", benPW, "eng/app") {
				t.Fatalf("ben, in UCP team eng/devs, cannot pull on %s", rep.Opts.ReplicaID)
			}
			// dot is in the organization but not the team; cal in neither.
			if pulls(t, rep, "dot", dotPW, "eng/app") || pulls(t, rep, "cal", calPW, "eng/app") {
				t.Fatal("a user outside the team pulls the private repository")
			}
		}
		// Put in the team in UCP: the grant follows after a sync.
		if err := u.SetTeamMember("eng", "devs", "dot"); err != nil {
			t.Fatal(err)
		}
		if pulls(t, r, "dot", dotPW, "eng/app") {
			t.Fatal("dot pulls before a sync put her in the team")
		}
		if res := syncNow(t, r); res.Added == 0 {
			t.Fatalf("sync after dot joined the team: %+v", res)
		}
		if !pulls(t, r2, "dot", dotPW, "eng/app") {
			t.Fatal("dot, put in the team in UCP, cannot pull after a sync")
		}
		// Out of the team in UCP: the grant goes at the next sync.
		if err := u.RemoveTeamMember("eng", "devs", "dot"); err != nil {
			t.Fatal(err)
		}
		syncNow(t, r)
		if pulls(t, r2, "dot", dotPW, "eng/app") {
			t.Fatal("dot, taken out of the team in UCP, still pulls after a sync")
		}
	})

	// tokensEnd removes or deactivates a UCP user holding a registry token
	// and an access token from the second replica, and checks that the
	// next sign-in is refused at once and the tokens stop on both
	// replicas within 2 s of the next sync.
	tokensEnd := func(t *testing.T, user, pw string, cut func() error) {
		t.Helper()
		tok := r2.Token(t, user, pw, "repository:eng/app:pull")
		if st, _, _ := r2.Do(t, "GET", "/v2/", tok, nil, nil); st != 200 {
			t.Fatalf("%s's registry token before: %d", user, st)
		}
		var created struct {
			Token string `json:"token"`
		}
		if st := r2.API(t, user, pw, "POST", "/api/v0/api_tokens", map[string]any{"tokenLabel": "ci"}, &created); (st != 200 && st != 201) || created.Token == "" {
			t.Fatalf("%s creating an access token: %d", user, st)
		}
		if st, _ := tokenStatus(t, r, user, created.Token); st != 200 {
			t.Fatalf("%s's access token before: %d", user, st)
		}
		if err := cut(); err != nil {
			t.Fatal(err)
		}
		// The next sign-in asks UCP, which refuses: at once, no sync needed.
		if st, _ := tokenStatus(t, r, user, pw); st != 401 {
			t.Fatalf("%s signs in right after UCP refused them: %d", user, st)
		}
		if st, ok := consoleSignIn(t, r2, user, pw); st != http.StatusUnauthorized || ok {
			t.Fatalf("%s's console sign-in right after UCP refused them: %d %v", user, st, ok)
		}
		if res := syncNow(t, r); res.Deactivated != 1 {
			t.Fatalf("sync after %s was cut off in UCP: %+v", user, res)
		}
		start := time.Now()
		for _, rep := range []*registrytest.Replica{r2, r} {
			for {
				st, _, _ := rep.Do(t, "GET", "/v2/", tok, nil, nil)
				ast, _ := tokenStatus(t, rep, user, created.Token)
				if st == 401 && ast == 401 {
					break
				}
				if time.Since(start) > 2*time.Second {
					t.Fatalf("%s's tokens on %s 2 s after the sync: registry token %d, access token %d", user, rep.Opts.ReplicaID, st, ast)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		t.Logf("%s's tokens refused on both replicas %s after the sync", user, time.Since(start).Round(time.Millisecond))
	}

	t.Run("removed in UCP", func(t *testing.T) {
		tokensEnd(t, "ben", benPW, func() error { return u.RemoveUser("ben") })
		var acc meta.Account
		if r.API(t, admin, adminPW, "GET", "/api/v0/accounts/ben", nil, &acc); acc.IsActive {
			t.Fatalf("ben after removal and a sync: %+v", acc)
		}
	})

	t.Run("deactivated in UCP", func(t *testing.T) {
		tokensEnd(t, "cal", calPW, func() error { return u.SetUserActive("cal", false) })
		// Active again in UCP: the next sign-in lets cal in.
		if err := u.SetUserActive("cal", true); err != nil {
			t.Fatal(err)
		}
		if st, _ := tokenStatus(t, r, "cal", calPW); st != 200 {
			t.Fatalf("cal, active again in UCP: %d", st)
		}
	})

	t.Run("UCP down", func(t *testing.T) {
		// A user whose credentials the replica verified a moment ago.
		if st, _ := tokenStatus(t, r, "dot", dotPW); st != 200 {
			t.Fatalf("dot before UCP went down: %d", st)
		}
		u.Close()
		for i := 0; i < 8; i++ { // past the free failures: never a lockout
			st, details := tokenStatus(t, r, "cal", "some-password")
			if st != 503 || !strings.Contains(details, "identity source") {
				t.Fatalf("attempt %d with UCP down: %d %q, want 503 naming the identity source", i, st, details)
			}
		}
		// The replica's log and the administrators' test call name UCP's URL.
		if !strings.Contains(logs.String(), u.URL) {
			t.Fatalf("the replica's log does not name UCP at %s:\n%s", u.URL, logs.String())
		}
		var res syncer.TestResult
		api("POST", "/api/v0/meta/settings/identity/test", map[string]any{"username": "cal", "password": calPW}, 200)
		if r.API(t, admin, adminPW, "POST", "/api/v0/meta/settings/identity/test", map[string]any{"username": "cal", "password": calPW}, &res); res.OK || !strings.Contains(res.Message, u.URL) {
			t.Fatalf("the test call with UCP down: %+v, want the UCP URL %s named", res, u.URL)
		}
		// Break glass: the local administrator signs in, on both replicas.
		for _, rep := range []*registrytest.Replica{r, r2} {
			if st, _ := tokenStatus(t, rep, admin, adminPW); st != 200 {
				t.Fatalf("local admin with UCP down: %d", st)
			}
		}
		if st, _ := tokenStatus(t, r, "carol", "carol-local-pw"); st != 200 {
			t.Fatalf("local carol with UCP down: %d", st)
		}
		// Credentials verified in the last minutes keep working.
		if st, _ := tokenStatus(t, r, "dot", dotPW); st != 200 {
			t.Fatalf("dot, verified a moment ago, with UCP down: %d", st)
		}
		// cal was never locked out by the refusals above.
		var acc meta.Account
		if r.API(t, admin, adminPW, "GET", "/api/v0/accounts/cal", nil, &acc); !acc.IsActive {
			t.Fatalf("cal after UCP went down: %+v", acc)
		}
	})
}
