package registry_test

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// getToken GETs /auth/token with scopes and returns the status and body.
func getToken(t *testing.T, r *registrytest.Replica, user, pw string, scopes ...string) (int, map[string]any) {
	t.Helper()
	return tokenRequest(t, r, "GET", user, pw, url.Values{"service": {"dtr"}, "scope": scopes})
}

// tokenAccess decodes the access claim of a JWT.
func tokenAccess(t *testing.T, tok string) []map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Access []map[string]any `json:"access"`
	}
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Access
}

// Token requests: at most auth.MaxScopes scopes; only granted actions go
// into the token (at d95c32b every requested scope did, so 19,000 scopes
// made a 0.9 MB token without credentials).
func TestTokenRequestLimits(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	var many []string
	for i := range auth.MaxScopes + 1 {
		many = append(many, fmt.Sprintf("repository:acme/r%d:pull", i))
	}
	if st, body := getToken(t, r, "", "", many...); st != http.StatusBadRequest || !strings.Contains(fmt.Sprint(body["details"]), "at most") {
		t.Fatalf("%d scopes: %d %v, want 400 naming the limit", len(many), st, body)
	}
	st, body := getToken(t, r, "", "", "repository:acme/app:pull,push", "foo:bar:baz", "registry:catalog:*", "api:v0:*", "repository:acme/pub:pull,push")
	if st != http.StatusOK {
		t.Fatalf("anonymous token: %d %v", st, body)
	}
	access := fmt.Sprint(tokenAccess(t, body["token"].(string)))
	if access != "[map[actions:[pull] name:acme/pub type:repository]]" {
		t.Fatalf("anonymous token grants %s, want pull of the public acme/pub only", access)
	}
	if st, _ := getToken(t, r, "alice", "alice-password", "api:v0:*", "repository:acme/app:pull,push,delete", "bogus:x:y"); st != http.StatusOK {
		t.Fatalf("alice's token: %d", st)
	}
	_, body = getToken(t, r, "alice", "alice-password", "api:v0:*", "repository:acme/app:pull,push,delete", "bogus:x:y")
	got := fmt.Sprint(tokenAccess(t, body["token"].(string)))
	if !strings.Contains(got, "api") || !strings.Contains(got, "acme/app") || strings.Contains(got, "delete") || strings.Contains(got, "bogus") {
		t.Fatalf("alice's token grants %s: want api:v0:* and acme/app pull,push only", got)
	}
}

// A registry token is not an admin API credential; a token for the admin
// API's own scope is (at d95c32b an admin's pull token downloaded the
// backup and created an admin).
func TestAdminAPIScope(t *testing.T) {
	r := registrytest.StartNew(t)
	pull := r.Token(t, admin, adminPW, "repository:admin/x:pull")
	for _, tc := range []struct{ method, path string }{{"GET", "/api/v0/meta/backup"}, {"GET", "/api/v0/accounts"}, {"POST", "/api/v0/accounts"}} {
		st, _, body := r.Do(t, tc.method, tc.path, pull, []byte(`{"name":"evil","password":"evil-password","isAdmin":true}`), map[string]string{"Content-Type": "application/json"})
		if st != http.StatusUnauthorized || !strings.Contains(string(body), auth.AdminAPIScope) {
			t.Fatalf("%s %s with a pull token: %d %s, want 401 naming %s", tc.method, tc.path, st, body, auth.AdminAPIScope)
		}
	}
	api := r.Token(t, admin, adminPW, auth.AdminAPIScope)
	if st, _, body := r.Do(t, "GET", "/api/v0/accounts", api, nil, nil); st != http.StatusOK {
		t.Fatalf("GET accounts with an admin-API token: %d %s", st, body)
	}
}

// pollStatus polls a bearer request until it answers want, and returns how
// long that took.
func pollStatus(t *testing.T, r *registrytest.Replica, method, path, tok string, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		st, _, _ := r.Do(t, method, path, tok, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
		if st == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s %s still %d after %v, want %d", method, path, st, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Deactivating, deleting or changing the password of an account ends its
// tokens at once, registry and admin API alike (at d95c32b they worked for
// up to 6 minutes, and the admin API's after a password change).
func TestRevocation(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	img, st := r.PushImage(t, r.Token(t, admin, adminPW, "repository:acme/app:push,pull"), "acme/app", "v1", []byte("revocation"))
	if st != http.StatusCreated {
		t.Fatalf("push: %d", st)
	}
	_ = img
	manifest := "/v2/acme/app/manifests/v1"
	steps := []struct {
		name string
		do   func()
	}{
		{"password change", func() {
			if st := r.API(t, admin, adminPW, "POST", "/api/v0/accounts/bob/changePassword", map[string]any{"newPassword": "bob-password-2"}, nil); st != http.StatusNoContent {
				t.Fatalf("change password: %d", st)
			}
		}},
		{"deactivation", func() {
			if st := r.API(t, admin, adminPW, "PATCH", "/api/v0/accounts/bob", map[string]any{"isActive": false}, nil); st != http.StatusOK {
				t.Fatalf("deactivate: %d", st)
			}
		}},
		{"deletion", func() {
			if st := r.API(t, admin, adminPW, "DELETE", "/api/v0/accounts/bob", nil, nil); st != http.StatusNoContent {
				t.Fatalf("delete: %d", st)
			}
		}},
	}
	pw := "bob-password"
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			pull := r.Token(t, "bob", pw, "repository:acme/app:pull")
			api := r.Token(t, "bob", pw, auth.AdminAPIScope)
			if st, _, _ := r.Do(t, "GET", manifest, pull, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}); st != http.StatusOK {
				t.Fatalf("pull before: %d", st)
			}
			if st, _, _ := r.Do(t, "GET", "/api/v0/accounts/bob", api, nil, nil); st != http.StatusOK {
				t.Fatalf("admin API before: %d", st)
			}
			step.do()
			d1 := pollStatus(t, r, "GET", manifest, pull, http.StatusUnauthorized, 2*time.Second)
			d2 := pollStatus(t, r, "GET", "/api/v0/accounts/bob", api, http.StatusUnauthorized, 2*time.Second)
			t.Logf("%s: registry token refused after %v, admin API token after %v", step.name, d1, d2)
		})
		switch step.name {
		case "password change":
			pw = "bob-password-2"
		case "deactivation":
			if st := r.API(t, admin, adminPW, "PATCH", "/api/v0/accounts/bob", map[string]any{"isActive": true}, nil); st != http.StatusOK {
				t.Fatalf("reactivate: %d", st)
			}
		}
	}
}

// Rotating the token key fails no request: tokens of the old key keep
// working until they expire, new ones come from the new key.
func TestRotateTokenKey(t *testing.T) {
	r := registrytest.StartNew(t)
	old := r.Token(t, admin, adminPW, "repository:admin/app:push,pull")
	if _, st := r.PushImage(t, old, "admin/app", "v1", []byte("rotation")); st != http.StatusCreated {
		t.Fatalf("push: %d", st)
	}
	var res struct {
		KeyID              string    `json:"keyID"`
		PreviousKeyIDs     []string  `json:"previousKeyIDs"`
		PreviousValidUntil time.Time `json:"previousValidUntil"`
	}
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/meta/token_key/rotate", map[string]any{}, &res); st != http.StatusOK {
		t.Fatalf("rotate: %d", st)
	}
	if res.KeyID == "" || len(res.PreviousKeyIDs) != 1 || res.PreviousKeyIDs[0] == res.KeyID || time.Until(res.PreviousValidUntil) < auth.TokenTTL {
		t.Fatalf("rotation answer: %+v", res)
	}
	if st, _, _ := r.Do(t, "GET", "/v2/admin/app/manifests/v1", old, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}); st != http.StatusOK {
		t.Fatalf("a token of the old key after rotation: %d", st)
	}
	fresh := r.Token(t, admin, adminPW, "repository:admin/app:pull")
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(fresh, ".")[0])
	if !strings.Contains(string(hdr), res.KeyID) {
		t.Fatalf("a new token's header %s does not name the new key %s", hdr, res.KeyID)
	}
	r = r.Restart()
	if st, _, _ := r.Do(t, "GET", "/v2/admin/app/manifests/v1", old, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}); st != http.StatusOK {
		t.Fatalf("a token of the old key after rotation and restart: %d", st)
	}
	if st := r.API(t, "alice", "x", "POST", "/api/v0/meta/token_key/rotate", map[string]any{}, nil); st != http.StatusUnauthorized {
		t.Fatalf("rotation without credentials: %d", st)
	}
}

// Failed logins are throttled per account (429 with Retry-After, without a
// password check), a success resets the count, and unknown users cost what
// known ones do.
func TestLoginThrottling(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	for i := range auth.FreeAccountFailures {
		if st, _ := getToken(t, r, "carol", fmt.Sprintf("wrong-%d", i)); st != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, st)
		}
	}
	if st, _ := getToken(t, r, "carol", "wrong-again"); st != http.StatusUnauthorized {
		t.Fatalf("the failure that locks: %d", st)
	}
	st, body := getToken(t, r, "carol", "carol-password")
	if st != http.StatusTooManyRequests || !strings.Contains(fmt.Sprint(body["details"]), "too many failed logins") {
		t.Fatalf("a locked account: %d %v, want 429", st, body)
	}
	if st := r.API(t, "carol", "carol-password", "GET", "/api/v0/accounts/carol", nil, nil); st != http.StatusTooManyRequests {
		t.Fatalf("a locked account on the admin API: %d, want 429", st)
	}
	if st, _ := getToken(t, r, "alice", "alice-password"); st != http.StatusOK {
		t.Fatalf("another account during carol's lock: %d", st)
	}
	// An attacker's failures lock alice, but her client that logged in
	// minutes ago (the installer, a CI job) keeps working.
	for i := range auth.FreeAccountFailures + 1 {
		getToken(t, r, "alice", fmt.Sprintf("guess-%d", i))
	}
	if st, _ := getToken(t, r, "alice", "a-new-guess"); st != http.StatusTooManyRequests {
		t.Fatalf("alice after %d failures: %d, want 429", auth.FreeAccountFailures+1, st)
	}
	if st, _ := getToken(t, r, "alice", "alice-password"); st != http.StatusOK {
		t.Fatalf("alice's recently verified credentials during her lock: %d, want 200", st)
	}
	time.Sleep(1100 * time.Millisecond) // the first lock is 1 s
	if st, _ := getToken(t, r, "carol", "carol-password"); st != http.StatusOK {
		t.Fatalf("after the lock: %d", st)
	}
	if st, _ := getToken(t, r, "carol", "wrong"); st != http.StatusUnauthorized {
		t.Fatalf("a success resets the count, so one failure is a 401: %d", st)
	}

}

// Unknown users cost what known ones do, so login timing does not tell
// which names exist (at d95c32b: 14 ms against 67 ms).
func TestLoginTimingUnknownUser(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	timeLogin := func(user string) time.Duration {
		var ds []time.Duration
		for i := range 5 {
			start := time.Now()
			st, _ := getToken(t, r, user, fmt.Sprintf("nope-%d", i))
			ds = append(ds, time.Since(start))
			if st != http.StatusUnauthorized {
				t.Fatalf("wrong password %d for %s: %d, want 401 (a throttled answer would time nothing)", i, user, st)
			}
		}
		return medianDuration(ds)
	}
	known, unknown := timeLogin("dave"), timeLogin("nobody-here")
	t.Logf("wrong password: known user %v, unknown user %v", known, unknown)
	// Both cost one bcrypt; at d95c32b an unknown user cost a fifth. The
	// bounds leave room for a busy machine.
	if unknown < known/2 || unknown > known*2 {
		t.Fatalf("login time tells unknown users from known ones: %v vs %v", unknown, known)
	}
}

func medianDuration(ds []time.Duration) time.Duration {
	for i := range ds {
		for j := i + 1; j < len(ds); j++ {
			if ds[j] < ds[i] {
				ds[i], ds[j] = ds[j], ds[i]
			}
		}
	}
	return ds[len(ds)/2]
}

// Refresh tokens expire and a user holds at most a bounded number.
func TestRefreshTokenLimits(t *testing.T) {
	r := registrytest.StartNew(t)
	var first, last string
	for i := range 60 {
		q := url.Values{"service": {"dtr"}, "offline_token": {"true"}, "client_id": {"test"}}
		req, _ := http.NewRequest(http.MethodGet, r.URL+"/auth/token?"+q.Encode(), nil)
		req.SetBasicAuth(admin, adminPW)
		resp, err := r.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			RefreshToken string `json:"refresh_token"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if out.RefreshToken == "" {
			t.Fatalf("request %d: no refresh token", i)
		}
		if i == 0 {
			first = out.RefreshToken
		}
		last = out.RefreshToken
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}, "service": {"dtr"}, "client_id": {"test"}}
	resp, err := r.Client.PostForm(r.URL+"/auth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the oldest of 60 refresh tokens (cap %d): %d, want 401", 50, resp.StatusCode)
	}
	// A refresh token is docker's credential: it gets no admin API token.
	form = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {last}, "service": {"dtr"}, "client_id": {"test"}, "scope": {auth.AdminAPIScope + " repository:admin/x:pull"}}
	resp, err = r.Client.PostForm(r.URL+"/auth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var granted struct {
		Token string `json:"token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&granted)
	resp.Body.Close()
	if got := fmt.Sprint(tokenAccess(t, granted.Token)); resp.StatusCode != http.StatusOK || strings.Contains(got, "api") || !strings.Contains(got, "admin/x") {
		t.Fatalf("refresh grant for %s: %d, grants %s", auth.AdminAPIScope, resp.StatusCode, got)
	}
	if st := r.API(t, admin, adminPW, "PATCH", "/api/v0/meta/settings", map[string]any{"refreshTokenMaxAge": "1s"}, nil); st != http.StatusBadRequest {
		t.Fatalf("refreshTokenMaxAge 1s: %d, want 400", st)
	}
	if st := r.API(t, admin, adminPW, "PATCH", "/api/v0/meta/settings", map[string]any{"refreshTokenMaxAge": "24h"}, nil); st != http.StatusOK {
		t.Fatalf("refreshTokenMaxAge 24h: %d", st)
	}
}

// Realms and redirects come from the external URL, never from the
// request's Host or X-Forwarded-Proto; HTTPS answers carry HSTS; an
// anonymous manifest PUT gets its 401 before its body is read; CBC suites
// are refused.
func TestTransportHardening(t *testing.T) {
	r := registrytest.StartNew(t)
	req, _ := http.NewRequest(http.MethodGet, r.URL+"/v2/acme/app/manifests/v1", nil)
	req.Host = "evil.example"
	req.Header.Set("X-Forwarded-Proto", "http")
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ch := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(ch, `realm="https://`+r.Host+`/auth/token"`) {
		t.Fatalf("challenge %d %q: want the realm at %s", resp.StatusCode, ch, r.Host)
	}
	if h := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(h, "max-age=") {
		t.Fatalf("no HSTS: %q", h)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ = http.NewRequest(http.MethodGet, r.HTTP+"/v2/", nil)
	req.Host = "evil.example"
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "https://"+r.Host+"/") {
		t.Fatalf("redirect to %q, want https://%s/…", loc, r.Host)
	}

	// A 5 MiB manifest of which 64 KiB ever come: the 401 must come anyway
	// (at d95c32b the replica read the body first, and waited).
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write(make([]byte, 64<<10)) }()
	req, _ = http.NewRequest(http.MethodPut, r.URL+"/v2/acme/app/manifests/v9", pr)
	req.ContentLength = 5 << 20
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	done := make(chan int, 1)
	go func() {
		resp, err := r.Client.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	select {
	case st := <-done:
		if st != http.StatusUnauthorized {
			t.Fatalf("anonymous manifest PUT: %d, want 401", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("anonymous manifest PUT: no answer while the body was still coming")
	}

	conn, err := tls.Dial("tcp", r.Host, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}})
	if err == nil {
		conn.Close()
		t.Fatal("a TLS 1.2 handshake with CBC suites only succeeded")
	}
}

// An admin API request whose body never comes is cut off (at d95c32b it
// held the connection for as long as the client liked).
func TestSlowBodyIsCut(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 15 s")
	}
	r := registrytest.StartNew(t)
	conn, err := tls.Dial("tcp", r.Host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	auth := base64.StdEncoding.EncodeToString([]byte(admin + ":" + adminPW))
	fmt.Fprintf(conn, "POST /api/v0/accounts HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", r.Host, auth)
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(40 * time.Second))
	_, err = io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server still held the connection after %v", time.Since(start))
	}
	if d := time.Since(start); d > 25*time.Second {
		t.Fatalf("cut after %v, want about 15 s", d)
	}
}

// 128 concurrent logins of one account (a CI farm starting its jobs) share
// one password check: each answers within a second (at d95c32b they queued
// for 7.5-8.2 s, one bcrypt each).
func TestConcurrentLoginsShareOneCheck(t *testing.T) {
	r := registrytest.StartNew(t)
	const clients = 128
	var wg sync.WaitGroup
	took := make([]time.Duration, clients)
	status := make([]int, clients)
	start := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			req, _ := http.NewRequest(http.MethodGet, r.URL+"/auth/token?service=dtr&scope=repository:admin/ci:pull", nil)
			req.SetBasicAuth(admin, adminPW)
			resp, err := r.Client.Do(req)
			if err == nil {
				status[i] = resp.StatusCode
				resp.Body.Close()
			}
			took[i] = time.Since(t0)
		}()
	}
	close(start)
	wg.Wait()
	slowest := slices.Max(took)
	t.Logf("%d concurrent logins of one account: slowest %v, median %v", clients, slowest, medianDuration(slices.Clone(took)))
	for i, st := range status {
		if st != http.StatusOK {
			t.Fatalf("login %d: status %d", i, st)
		}
	}
	if slowest > time.Second {
		t.Fatalf("the slowest of %d concurrent logins took %v, want at most 1 s", clients, slowest)
	}
}
