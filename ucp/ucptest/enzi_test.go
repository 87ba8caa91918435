package ucptest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
)

// apiClient speaks to the stand-in as UCP's API clients do.
type apiClient struct {
	t   *testing.T
	srv *Server
	c   *http.Client
}

func newClient(t *testing.T, srv *Server) *apiClient {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CAPEM)
	return &apiClient{t: t, srv: srv, c: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

func (c *apiClient) login(user, pw string) (string, int) {
	body, _ := json.Marshal(map[string]string{"username": user, "password": pw})
	resp, err := c.c.Post(c.srv.URL+"/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"auth_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out.Token, resp.StatusCode
}

func (c *apiClient) get(token, path string, out any) (int, http.Header) {
	req, _ := http.NewRequest(http.MethodGet, c.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			c.t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode, resp.Header
}

func TestEnzi(t *testing.T) {
	srv, err := Start(Options{
		EngineSocket: filepath.Join(t.TempDir(), "none.sock"),
		Username:     "admin", Password: "admin-Passw0rd", PageSize: 2,
		Users: []User{
			{Name: "alice", Password: "alice-Passw0rd", FullName: "Alice"},
			{Name: "bob", Password: "bob-Passw0rd"},
			{Name: "carol", Password: "carol-Passw0rd"},
		},
		Orgs: []Org{{Name: "eng", Members: map[string]bool{"alice": true}, Teams: map[string][]string{"backend": {"alice", "bob"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := newClient(t, srv)

	for _, p := range []string{"/id/", "/enzi/v0/accounts", "/enzi/v0/accounts/eng/members", "/enzi/v0/nothing", "/info"} {
		if code, _ := c.get("", p, nil); code != http.StatusUnauthorized {
			t.Errorf("anonymous GET %s = %d; want 401", p, code)
		}
		if code, _ := c.get("not-a-token", p, nil); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a made-up token = %d; want 401", p, code)
		}
	}
	if _, code := c.login("alice", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", code)
	}
	if _, code := c.login("eng", ""); code != http.StatusUnauthorized {
		t.Errorf("organization login: %d", code)
	}

	admin, _ := c.login("admin", "admin-Passw0rd")
	alice, _ := c.login("alice", "alice-Passw0rd")
	carol, _ := c.login("carol", "carol-Passw0rd")

	var me accountJSON
	if code, _ := c.get(alice, "/id/", &me); code != 200 || me.Name != "alice" || me.IsAdmin || !me.IsActive || me.FullName != "Alice" {
		t.Errorf("alice /id/ = %d %+v", code, me)
	}
	if c.get(admin, "/id/", &me); !me.IsAdmin {
		t.Errorf("admin /id/ = %+v", me)
	}

	// Paging: two per page, in name order, to the end.
	var names []string
	start := ""
	for i := 0; i < 10; i++ {
		var p struct {
			Accounts      []accountJSON `json:"accounts"`
			NextPageStart string        `json:"nextPageStart"`
		}
		code, h := c.get(carol, "/enzi/v0/accounts?limit=50&start="+start, &p)
		if code != 200 || len(p.Accounts) > 2 || h.Get("X-Next-Page-Start") != p.NextPageStart {
			t.Fatalf("page %d: %d %+v header %q", i, code, p, h.Get("X-Next-Page-Start"))
		}
		for _, a := range p.Accounts {
			names = append(names, a.Name)
		}
		if start = p.NextPageStart; start == "" {
			break
		}
	}
	if want := []string{"admin", "alice", "bob", "carol", "eng"}; !equal(names, want) {
		t.Errorf("accounts = %v; want %v", names, want)
	}

	// An organization's members and teams: its members and admins only.
	if code, _ := c.get(carol, "/enzi/v0/accounts/eng/members", nil); code != http.StatusForbidden {
		t.Errorf("non-member reads members: %d; want 403", code)
	}
	if code, _ := c.get(carol, "/enzi/v0/accounts/eng/teams/backend/members", nil); code != http.StatusForbidden {
		t.Errorf("non-member reads team members: %d; want 403", code)
	}
	var members struct {
		Members []memberJSON `json:"members"`
	}
	if code, _ := c.get(alice, "/enzi/v0/accounts/eng/members", &members); code != 200 || len(members.Members) != 2 ||
		members.Members[0].Member.Name != "alice" || !members.Members[0].IsAdmin || members.Members[1].IsAdmin {
		t.Errorf("eng members = %d %+v", code, members)
	}
	var teams struct {
		Teams []teamJSON `json:"teams"`
	}
	if code, _ := c.get(admin, "/enzi/v0/accounts/eng/teams", &teams); code != 200 || len(teams.Teams) != 1 || teams.Teams[0].MembersCount != 2 {
		t.Errorf("eng teams = %d %+v", code, teams)
	}
	if code, _ := c.get(admin, "/enzi/v0/accounts/eng/teams/"+teams.Teams[0].ID+"/members", &members); code != 200 || len(members.Members) != 2 {
		t.Errorf("team members by ID = %d %+v", code, members)
	}
	for p, want := range map[string]int{
		"/enzi/v0/accounts/nobody":              404,
		"/enzi/v0/accounts/alice/members":       404, // a user is no organization
		"/enzi/v0/accounts/eng/teams/x/members": 404,
		"/enzi/v0/accounts?limit=-1":            400,
		"/enzi/v0/accounts?filter=everyone":     400,
	} {
		if code, _ := c.get(admin, p, nil); code != want {
			t.Errorf("GET %s = %d; want %d", p, code, want)
		}
	}

	// The Engine API is for administrators.
	if code, _ := c.get(alice, "/info", nil); code != http.StatusForbidden {
		t.Errorf("non-admin engine call = %d; want 403", code)
	}

	// Changes at runtime end sessions where UCP would.
	if err := srv.SetUserActive("carol", false); err != nil {
		t.Fatal(err)
	}
	if code, _ := c.get(carol, "/id/", nil); code != http.StatusUnauthorized {
		t.Errorf("deactivated user's session = %d; want 401", code)
	}
	if _, code := c.login("carol", "carol-Passw0rd"); code != http.StatusUnauthorized {
		t.Errorf("deactivated user's login = %d; want 401", code)
	}
	if err := srv.RemoveUser("alice"); err != nil {
		t.Fatal(err)
	}
	if code, _ := c.get(alice, "/id/", nil); code != http.StatusUnauthorized {
		t.Errorf("removed user's session = %d; want 401", code)
	}
	if c.get(admin, "/enzi/v0/accounts/eng/teams/backend/members", &members); len(members.Members) != 1 || members.Members[0].Member.Name != "bob" {
		t.Errorf("backend after alice left = %+v", members)
	}
	if err := srv.RemoveUser("alice"); err == nil {
		t.Errorf("removing a missing user succeeded")
	}
	if err := srv.AddUser(User{Name: "bob", Password: "x"}); err == nil {
		t.Errorf("a second bob was created")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
