package registry_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// outageAnswer is one request's answer during the outage.
type outageAnswer struct {
	status int
	header http.Header
	body   string
	took   time.Duration
}

// send makes one request to r; user "" sends no Basic credentials, a
// bearer token goes in header.
func send(t *testing.T, r *registrytest.Replica, method, path, user, pw string, form url.Values, header map[string]string) outageAnswer {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, r.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return outageAnswer{status: resp.StatusCode, header: resp.Header, body: string(b), took: time.Since(start)}
}

// clusterStatus reads GET /api/v0/meta/cluster_status from r as the admin.
type clusterStatusAnswer struct {
	HasQuorum     bool `json:"hasQuorum"`
	ReplicaHealth map[string]struct {
		Healthy bool `json:"healthy"`
		Stale   bool `json:"stale"`
	} `json:"replica_health"`
	CurrentIssues []struct {
		Description string `json:"description"`
	} `json:"current_issues"`
}

// An outage of the metadata store is named as one: with its quorum lost,
// the token endpoint (GET and POST, password and refresh grants), the admin
// API and the registry API's metadata paths answer 503 with Retry-After,
// never 401 "incorrect username or password", while cluster_status still
// answers, to Basic credentials and to an admin API token, and says why.
// Before that, a replica that goes silent is unhealthy in cluster_status
// within 10 s.
func TestOutageAnswers(t *testing.T) {
	o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
	o.ReportInterval = 0 // the default, which cluster_status's staleness follows
	r1 := registrytest.Start(t, o)
	r2 := join(t, r1, "bbbbbbbbbbbb")
	r3 := join(t, r1, "cccccccccccc")

	// Credentials got before the outage, as running clients hold them.
	adminToken := r2.Token(t, admin, adminPW, auth.AdminAPIScope)
	pullToken := r2.Token(t, admin, adminPW, "repository:admin/app:pull")
	got := send(t, r2, "GET", "/auth/token?"+url.Values{"service": {"dtr"}, "offline_token": {"true"}, "client_id": {"docker"}}.Encode(), admin, adminPW, nil, nil)
	var issued struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal([]byte(got.body), &issued); err != nil || issued.RefreshToken == "" {
		t.Fatalf("refresh token: %d %s", got.status, got.body)
	}

	readStatus := func(header map[string]string, user, pw string) (clusterStatusAnswer, outageAnswer) {
		t.Helper()
		a := send(t, r2, "GET", "/api/v0/meta/cluster_status", user, pw, nil, header)
		var cs clusterStatusAnswer
		if a.status != 200 {
			t.Fatalf("cluster_status: %d %s (after %s)", a.status, a.body, a.took)
		}
		if err := json.Unmarshal([]byte(a.body), &cs); err != nil {
			t.Fatalf("cluster_status: %v: %s", err, a.body)
		}
		return cs, a
	}

	// A silent replica: r1 stops (the other two keep the quorum).
	silent := r1.Opts.ReplicaID
	r1.Stop()
	stopped := time.Now()
	for {
		cs, _ := readStatus(nil, admin, adminPW)
		if h, ok := cs.ReplicaHealth[silent]; ok && !h.Healthy && h.Stale {
			t.Logf("the stopped replica was unhealthy in cluster_status %s after it stopped", time.Since(stopped).Round(100*time.Millisecond))
			break
		}
		if time.Since(stopped) > 10*time.Second {
			t.Fatalf("cluster_status still calls the stopped replica healthy %s after it stopped: %+v", time.Since(stopped).Round(100*time.Millisecond), cs.ReplicaHealth)
		}
		time.Sleep(250 * time.Millisecond)
	}

	// The quorum is lost: two of three members are gone.
	r3.Stop()
	lost := time.Now()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if st, body := get(r2.HTTP + "/_ping"); st == http.StatusServiceUnavailable && strings.Contains(body, "quorum") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the survivor still reports a quorum 15 s after two of three members stopped")
		}
	}
	t.Logf("the survivor saw the quorum lost after %s", time.Since(lost).Round(100*time.Millisecond))

	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	tokenQuery := "/auth/token?" + url.Values{"service": {"dtr"}, "scope": {"repository:admin/app:pull"}}.Encode()
	unavailable := []struct {
		name         string
		method, path string
		user, pw     string
		form         url.Values
		header       map[string]string
	}{
		{name: "docker login", method: "GET", path: "/auth/token?service=dtr", user: admin, pw: adminPW},
		{name: "token for a pull", method: "GET", path: tokenQuery, user: admin, pw: adminPW},
		// Without the account store the replica cannot tell a wrong password.
		{name: "token with a wrong password", method: "GET", path: tokenQuery, user: admin, pw: "wrong-password"},
		{name: "anonymous token", method: "GET", path: tokenQuery},
		{name: "password grant", method: "POST", path: "/auth/token", form: url.Values{"grant_type": {"password"}, "username": {admin}, "password": {adminPW}, "service": {"dtr"}, "client_id": {"docker"}}},
		{name: "refresh grant", method: "POST", path: "/auth/token", form: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {issued.RefreshToken}, "service": {"dtr"}, "client_id": {"docker"}, "scope": {"repository:admin/app:pull"}}},
		{name: "admin API with Basic", method: "GET", path: "/api/v0/accounts", user: admin, pw: adminPW},
		{name: "admin API with a wrong password", method: "GET", path: "/api/v0/accounts", user: admin, pw: "wrong-password"},
		{name: "admin API with a token", method: "GET", path: "/api/v0/repositories", header: bearer(adminToken)},
		{name: "admin API mutation", method: "POST", path: "/api/v0/repositories/admin", user: admin, pw: adminPW, header: map[string]string{"Content-Type": "application/json"}},
		{name: "referrers", method: "GET", path: "/v2/admin/app/referrers/" + registrytest.Digest([]byte("subject")), header: bearer(pullToken)},
	}
	// In parallel: each waits for the metadata store's own timeout.
	answers := make([]outageAnswer, len(unavailable))
	var wg sync.WaitGroup
	for i, tc := range unavailable {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = send(t, r2, tc.method, tc.path, tc.user, tc.pw, tc.form, tc.header)
		}()
	}
	wg.Wait()
	for i, tc := range unavailable {
		a := answers[i]
		t.Logf("%s: %d after %s", tc.name, a.status, a.took.Round(100*time.Millisecond))
		if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || strings.Contains(a.body, "incorrect") {
			t.Errorf("%s without quorum: %d Retry-After %q %s; want 503 with Retry-After", tc.name, a.status, a.header.Get("Retry-After"), a.body)
		}
		if a.took > 10*time.Second {
			t.Errorf("%s without quorum took %s; want an answer within seconds", tc.name, a.took)
		}
	}

	// cluster_status answers, naming the lost quorum and both silent
	// replicas, to Basic credentials and to an admin API token alike.
	for _, c := range []struct {
		name     string
		user, pw string
		header   map[string]string
	}{
		{name: "Basic", user: admin, pw: adminPW},
		{name: "token", header: bearer(adminToken)},
	} {
		cs, a := readStatus(c.header, c.user, c.pw)
		t.Logf("cluster_status with %s without quorum: 200 after %s", c.name, a.took.Round(100*time.Millisecond))
		if cs.HasQuorum || !strings.Contains(a.body, "no quorum") {
			t.Errorf("cluster_status with %s without quorum: %s; want hasQuorum false and the issue", c.name, a.body)
		}
		for _, id := range []string{silent, r3.Opts.ReplicaID} {
			if h, ok := cs.ReplicaHealth[id]; ok && h.Healthy && time.Since(lost) > 10*time.Second {
				t.Errorf("cluster_status with %s calls stopped replica %s healthy: %s", c.name, id, a.body)
			}
		}
	}
	// Local checks still tell a wrong password.
	if a := send(t, r2, "GET", "/api/v0/meta/cluster_status", admin, "wrong-password", nil, nil); a.status != http.StatusUnauthorized {
		t.Errorf("cluster_status with a wrong password without quorum: %d %s; want 401", a.status, a.body)
	}
}
