package security_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/identity/ldap/slapdtest"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
	"github.com/dtr-registry/dtr/ucp/ucptest"
)

// Identity probes (issue 20): users from UCP/MKE (the stand-in, ucptest)
// and LDAP (a real slapd, slapdtest).

const (
	ucpAdminName = "ucp-admin"
	ucpAdminPW   = "Ucp-admin-pw-1"
)

// tokenAs is the status of docker login's token request with Basic
// credentials.
func tokenAs(t *testing.T, r *registrytest.Replica, user, pw string) int {
	t.Helper()
	st, err := basicGet(r.Client, r, "/auth/token?service=dtr", user, pw)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// consoleStatus is the status of a console sign-in through the form.
func consoleStatus(t *testing.T, r *registrytest.Replica, user, pw string) int {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := newClient(r, time.Minute)
	c.Jar = jar
	resp, err := c.Get(r.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(drain(resp))
	if m == nil {
		t.Fatal("setup: the sign-in page has no CSRF field")
	}
	resp, err = c.PostForm(r.URL+"/login", url.Values{"username": {user}, "password": {pw}, "csrf": {string(m[1])}})
	if err != nil {
		t.Fatal(err)
	}
	drain(resp)
	return resp.StatusCode
}

// useUCP makes u r's identity source, reached at ucpURL (u.URL, or a
// proxy in front of it).
func useUCP(t *testing.T, r *registrytest.Replica, u *ucptest.Server, ucpURL string) {
	t.Helper()
	apiMust(t, r, "PUT", "/api/v0/meta/settings/identity", map[string]any{"kind": "ucp", "ucp": map[string]any{
		"url": ucpURL, "ca": string(u.CAPEM), "username": ucpAdminName, "password": ucpAdminPW}}, 200)
}

// syncIdentity runs an ldap_sync job and waits for it.
func syncIdentity(t *testing.T, r *registrytest.Replica) {
	t.Helper()
	var j meta.Job
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/jobs", map[string]any{"action": "ldap_sync"}, &j); st != 202 {
		t.Fatalf("setup: queueing a sync: %d", st)
	}
	if _, ok := poll(30*time.Second, 50*time.Millisecond, func() bool {
		r.API(t, admin, adminPW, "GET", "/api/v0/jobs/"+j.ID, nil, &j)
		return j.Finished()
	}); !ok || j.Status != meta.JobDone {
		t.Fatalf("setup: sync %s: %s %s", j.ID, j.Status, j.Error)
	}
}

// startUCP starts the stand-in with the given users besides its
// administrator.
func startUCP(t *testing.T, users ...ucptest.User) *ucptest.Server {
	t.Helper()
	u, err := ucptest.Start(ucptest.Options{Username: ucpAdminName, Password: ucpAdminPW, Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	return u
}

// identityLocalTakeover: a UCP user named like a local account, a UCP
// administrator at that, signs in as neither that account nor an
// administrator, whatever the name's case, and a sync leaves the local
// account as it was.
func identityLocalTakeover(t *testing.T, p *report) {
	u := startUCP(t,
		ucptest.User{Name: "carol", Password: "Carol-ucp-pw-1", Admin: true},
		ucptest.User{Name: "Dave", Password: "Dave-ucp-pw-1", Admin: true})
	r := startReplica(t, nil)
	createUser(t, r, "carol", "Carol-local-pw-1")
	createUser(t, r, "dave", "Dave-local-pw-1")
	useUCP(t, r, u, u.URL)
	// The owners sign in before the attack, as running clients would: the
	// attack's failures lock both names, and only credentials verified
	// shortly before pass a lock (a fresh sign-in then gets 429, by design).
	for _, c := range []struct{ user, pw string }{{"carol", "Carol-local-pw-1"}, {"dave", "Dave-local-pw-1"}} {
		p.check(tokenAs(t, r, c.user, c.pw) == 200, "the local %s cannot sign in once UCP is the source", c.user)
	}

	attempts := 0
	for _, c := range []struct{ user, pw string }{{"carol", "Carol-ucp-pw-1"}, {"CAROL", "Carol-ucp-pw-1"}, {"Dave", "Dave-ucp-pw-1"}, {"dave", "Dave-ucp-pw-1"}} {
		attempts += 3
		p.check(tokenAs(t, r, c.user, c.pw) == 401, "%s signed in to the token endpoint with UCP's password of that name", c.user)
		st, _ := basicGet(r.Client, r, "/api/v0/meta/settings/identity", c.user, c.pw)
		p.check(st == 401, "%s with UCP's password reached the admin API: %d", c.user, st)
		p.check(consoleStatus(t, r, c.user, c.pw) == http.StatusUnauthorized, "%s signed in to the console with UCP's password", c.user)
	}
	var res struct {
		Found, LocalAccount bool
	}
	r.API(t, admin, adminPW, "POST", "/api/v0/meta/settings/identity/test", map[string]any{"username": "carol", "password": "Carol-ucp-pw-1"}, &res)
	p.check(res.Found && res.LocalAccount, "the test call does not say carol is a local account: %+v", res)
	syncIdentity(t, r)
	for _, name := range []string{"carol", "dave"} {
		var acc meta.Account
		r.API(t, admin, adminPW, "GET", "/api/v0/accounts/"+name, nil, &acc)
		p.check(acc.Source == "" && acc.IsActive && !acc.IsAdmin, "a sync changed the local %s: %+v", name, acc)
	}
	// The local passwords still work, without UCP's administrator rights.
	p.check(tokenAs(t, r, "carol", "Carol-local-pw-1") == 200, "the local carol lost her password")
	st, _ := basicGet(r.Client, r, "/api/v0/meta/settings/identity", "carol", "Carol-local-pw-1")
	p.check(st == 403, "the local carol got UCP's administrator rights: %d", st)
	p.notef("%d sign-ins as local names with UCP passwords refused, local accounts unchanged by a sync", attempts)
}

// recorder is a TCP proxy in front of a server that keeps what clients
// sent it.
type recorder struct {
	ln   net.Listener
	mu   sync.Mutex
	sent bytes.Buffer
}

func startRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				go func() { _, _ = io.Copy(c, s); c.Close() }()
				_, _ = io.Copy(io.MultiWriter(s, rec), c)
			}()
		}
	}()
	return rec
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent.Write(p)
}

func (r *recorder) contains(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Contains(r.sent.Bytes(), []byte(s))
}

// identityLDAPFilter: names carrying LDAP filter syntax sign nobody in and
// never reach the directory; what the replica sends slapd is read off the
// wire (plain LDAP on loopback, through a recording proxy), with a plain
// name as the control that the recording sees names at all.
func identityLDAPFilter(t *testing.T, p *report) {
	s := slapdtest.Start(t)
	s.AddUser("alice", "Alice", "Alice-ldap-pw-1")
	target := strings.TrimPrefix(s.URL, "ldap://")
	rec := startRecorder(t, target)
	r := startReplica(t, nil)
	apiMust(t, r, "PUT", "/api/v0/meta/settings/identity", map[string]any{"kind": "ldap", "ldap": map[string]any{
		"serverURL": "ldap://" + rec.ln.Addr().String(), "insecurePlaintext": true,
		"readerDN": slapdtest.ReaderDN, "readerPassword": slapdtest.ReaderPW,
		"userSearch": map[string]any{"baseDN": slapdtest.People, "usernameAttr": "uid"},
	}}, 200)
	// The controls: alice signs in through the proxy, and a plain unknown
	// name is searched for, so the recording sees names.
	p.check(tokenAs(t, r, "alice", "Alice-ldap-pw-1") == 200, "alice cannot sign in through the recording proxy")
	tokenAs(t, r, "qz8plain", "x")
	p.check(rec.contains("qz8plain"), "the recording proxy saw no search: the probe measures nothing")
	// With alice's password: a filter that matched her entry would sign
	// the attacker in as alice. Fewer than an address's free failures.
	names := []string{"qz9*", "qz9*)(uid=*", "*)(uid=qz9", "qz9)(|(uid=*", "qz9\\2a", "qz9\\", "qz9(", "qz9)", "qz9\x00", "qz9*)(|(objectClass=*))(uid=alice"}
	for _, n := range names {
		st := tokenAs(t, r, n, "Alice-ldap-pw-1")
		p.check(st == 401, "username %q: %d, want 401", n, st)
	}
	p.check(!rec.contains("qz9"), "a name with filter characters reached the directory")
	p.notef("%d names with filter syntax refused before the directory", len(names))
}

// toggle is a TCP proxy that can refuse every connection, as a source
// that is down does; going down also cuts the connections open.
type toggle struct {
	ln    net.Listener
	down  atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
}

func (tg *toggle) setDown(down bool) {
	tg.down.Store(down)
	if !down {
		return
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	for _, c := range tg.conns {
		c.Close()
	}
	tg.conns = nil
}

func startToggle(t *testing.T, target string) *toggle {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := &toggle{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if tg.down.Load() {
				c.Close()
				continue
			}
			tg.mu.Lock()
			tg.conns = append(tg.conns, c)
			tg.mu.Unlock()
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				go func() { _, _ = io.Copy(c, s); c.Close() }()
				_, _ = io.Copy(s, c)
			}()
		}
	}()
	return tg
}

// identitySourceDown: while UCP cannot answer, sign-ins through it are
// 503, never a lockout and never counted as failures, whoever tries and
// however often; the local administrator signs in; once UCP answers, the
// same users and address sign in at once.
func identitySourceDown(t *testing.T, p *report) {
	u := startUCP(t, ucptest.User{Name: "ben", Password: "Ben-ucp-pw-1"}, ucptest.User{Name: "cal", Password: "Cal-ucp-pw-1"})
	tg := startToggle(t, strings.TrimPrefix(u.URL, "https://"))
	r := startReplica(t, nil)
	useUCP(t, r, u, "https://"+tg.ln.Addr().String())
	p.check(tokenAs(t, r, "ben", "Ben-ucp-pw-1") == 200, "ben cannot sign in while UCP is up")
	tg.setDown(true)
	count := map[int]int{}
	const tries = 40 // twice the free failures of one address
	for i := 0; i < tries; i++ {
		user := []string{"ben", "cal", "nobody"}[i%3]
		count[tokenAs(t, r, user, "wrong-"+randomWord())]++
	}
	p.check(count[503] == tries, "with UCP down: %v, want only 503", count)
	p.check(tokenAs(t, r, admin, adminPW) == 200, "the local administrator cannot sign in with UCP down")
	p.check(consoleStatus(t, r, admin, adminPW) == http.StatusSeeOther, "the local administrator cannot sign in to the console with UCP down")
	tg.setDown(false)
	p.check(tokenAs(t, r, "cal", "Cal-ucp-pw-1") == 200, "cal is locked out after UCP came back")
	p.check(tokenAs(t, r, "ben", "Ben-ucp-pw-1") == 200, "ben is locked out after UCP came back")
	p.notef("%d sign-ins with UCP down: %v, no lockout after", tries, count)
}

// identityDeactivatedToken: a user removed from UCP or from the LDAP
// directory keeps no access token: after the next sync it is refused on
// every replica within 2 s, as the API key and as docker login's password.
func identityDeactivatedToken(t *testing.T, p *report) {
	accessToken := func(r *registrytest.Replica, user, pw string) string {
		var out struct {
			Token string `json:"token"`
		}
		if st := r.API(t, user, pw, "POST", "/api/v0/api_tokens", map[string]any{"tokenLabel": "ci"}, &out); (st != 200 && st != 201) || out.Token == "" {
			t.Fatalf("setup: %s creating an access token: %d", user, st)
		}
		return out.Token
	}
	check := func(kind string, replicas []*registrytest.Replica, user, tok string, cut func()) {
		for _, r := range replicas {
			p.check(tokenAs(t, r, user, tok) == 200, "%s: %s's access token refused before the cut", kind, user)
		}
		cut()
		syncIdentity(t, replicas[0])
		took, ok := poll(2*time.Second, 20*time.Millisecond, func() bool {
			for _, r := range replicas {
				if tokenAs(t, r, user, tok) != 401 {
					return false
				}
				if st, _ := basicGet(r.Client, r, "/api/v0/accounts/"+user, user, tok); st != 401 {
					return false
				}
			}
			return true
		})
		p.check(ok, "%s: %s's access token still works 2 s after the sync", kind, user)
		p.notef("%s: token refused on %d replicas %s after the sync", kind, len(replicas), ms(took))
	}

	u := startUCP(t, ucptest.User{Name: "ben", Password: "Ben-ucp-pw-1"}, ucptest.User{Name: "cal", Password: "Cal-ucp-pw-1"})
	r1 := startReplica(t, nil)
	r2 := joinReplica(t, r1, "bbbbbbbbbbbb")
	useUCP(t, r1, u, u.URL)
	both := []*registrytest.Replica{r1, r2}
	tok := accessToken(r2, "ben", "Ben-ucp-pw-1")
	check("removed from UCP", both, "ben", tok, func() {
		if err := u.RemoveUser("ben"); err != nil {
			t.Fatal(err)
		}
	})
	tok = accessToken(r1, "cal", "Cal-ucp-pw-1")
	check("deactivated in UCP", both, "cal", tok, func() {
		if err := u.SetUserActive("cal", false); err != nil {
			t.Fatal(err)
		}
	})

	s := slapdtest.Start(t)
	s.AddUser("alice", "Alice", "Alice-ldap-pw-1")
	l1 := startReplica(t, nil)
	l2 := joinReplica(t, l1, "bbbbbbbbbbbb")
	apiMust(t, l1, "PUT", "/api/v0/meta/settings/identity", map[string]any{"kind": "ldap", "ldap": map[string]any{
		"serverURL": s.LDAPSURL, "rootCerts": string(s.CAPEM), "readerDN": slapdtest.ReaderDN, "readerPassword": slapdtest.ReaderPW,
		"userSearch": map[string]any{"baseDN": slapdtest.People, "usernameAttr": "uid"},
	}}, 200)
	tok = accessToken(l2, "alice", "Alice-ldap-pw-1")
	check("removed from LDAP", []*registrytest.Replica{l1, l2}, "alice", tok, func() { s.Delete(slapdtest.UserDN("alice")) })
}
