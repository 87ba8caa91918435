package registry_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

const (
	admin   = registrytest.AdminUser
	adminPW = registrytest.AdminPassword
)

// setupAccounts creates the accounts, org, teams and repositories the
// permission tests use, through the admin API.
func setupAccounts(t *testing.T, r *registrytest.Replica) {
	registrytest.SetupAccounts(t, r, admin, adminPW)
}

func TestPermissions(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	scope := func(repo string) string { return "repository:" + repo + ":push,pull" }
	adminTok := r.Token(t, admin, adminPW, scope("acme/pub"))
	if _, st := r.PushImage(t, adminTok, "acme/pub", "v1", []byte("public layer")); st != 201 {
		t.Fatalf("admin push to acme/pub: %d", st)
	}
	alice := r.Token(t, "alice", "alice-password", scope("acme/app"))
	img, st := r.PushImage(t, alice, "acme/app", "v1", []byte("private layer"))
	if st != 201 {
		t.Fatalf("alice (read-write through team devs) push: %d", st)
	}
	tests := []struct {
		name         string
		user, pw     string
		method, repo string
		want         int
	}{
		{"read-only team member pulls", "bob", "bob-password", "GET", "acme/app", 200},
		{"read-only team member cannot push", "bob", "bob-password", "PUT", "acme/app", 401},
		{"outsider cannot pull a private repository", "carol", "carol-password", "GET", "acme/app", 401},
		{"anonymous cannot pull a private repository", "", "", "GET", "acme/app", 401},
		{"anonymous pulls a public repository", "", "", "GET", "acme/pub", 200},
		{"anonymous cannot push to a public repository", "", "", "PUT", "acme/pub", 401},
		{"outsider cannot push to another's namespace", "carol", "carol-password", "PUT", "alice/x", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := r.Token(t, tt.user, tt.pw, scope(tt.repo))
			var st int
			if tt.method == "GET" {
				ref := "v1"
				st, _, _ = r.Do(t, "GET", "/v2/"+tt.repo+"/manifests/"+ref, tok, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
			} else {
				st, _, _ = r.Do(t, "PUT", "/v2/"+tt.repo+"/manifests/v2", tok, img.Manifest, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
			}
			if st != tt.want {
				t.Fatalf("status %d, want %d", st, tt.want)
			}
		})
	}

	t.Run("create on push in own namespace", func(t *testing.T) {
		tok := r.Token(t, "alice", "alice-password", scope("alice/own"))
		if _, st := r.PushImage(t, tok, "alice/own", "latest", []byte("own")); st != 201 {
			t.Fatalf("push: %d", st)
		}
		var repo map[string]any
		if st := r.API(t, "alice", "alice-password", "GET", "/api/v0/repositories/alice/own", nil, &repo); st != 200 || repo["visibility"] != "private" || repo["createdBy"] != "alice" {
			t.Fatalf("repository record after push: %d %v", st, repo)
		}
	})
	t.Run("create on push in an org needs namespace write access", func(t *testing.T) {
		tok := r.Token(t, "alice", "alice-password", scope("acme/new"))
		if _, st := r.PushImage(t, tok, "acme/new", "v1", []byte("n")); st != 401 {
			t.Fatalf("push without namespace access: %d, want 401", st)
		}
		if st := r.API(t, admin, adminPW, "PUT", "/api/v0/repositoryNamespaces/acme/teamAccess/devs", map[string]any{"accessLevel": "read-write"}, nil); st != 200 {
			t.Fatalf("namespace grant: %d", st)
		}
		tok = r.Token(t, "alice", "alice-password", scope("acme/new"))
		if _, st := r.PushImage(t, tok, "acme/new", "v1", []byte("n")); st != 201 {
			t.Fatalf("push with namespace read-write: %d", st)
		}
	})
	t.Run("immutable tags", func(t *testing.T) {
		if st := r.API(t, admin, adminPW, "PATCH", "/api/v0/repositories/acme/app", map[string]any{"immutableTags": true}, nil); st != 200 {
			t.Fatalf("patch: %d", st)
		}
		tok := r.Token(t, "alice", "alice-password", scope("acme/app"))
		if _, st := r.PushImage(t, tok, "acme/app", "v1", []byte("a different layer")); st != 400 {
			t.Fatalf("overwriting an immutable tag: %d, want 400", st)
		}
		st, _, _ := r.Do(t, "PUT", "/v2/acme/app/manifests/v1", tok, img.Manifest, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
		if st != 201 {
			t.Fatalf("re-pushing the same manifest to an immutable tag: %d, want 201", st)
		}
		if _, st := r.PushImage(t, tok, "acme/app", "v2", []byte("a different layer")); st != 201 {
			t.Fatalf("a new tag in an immutable repository: %d", st)
		}
	})
	t.Run("catalog is for admins", func(t *testing.T) {
		tok := r.Token(t, admin, adminPW, "registry:catalog:*")
		st, _, body := r.Do(t, "GET", "/v2/_catalog", tok, nil, nil)
		if st != 200 || !strings.Contains(string(body), "acme/app") {
			t.Fatalf("admin catalog: %d %s", st, body)
		}
		tok = r.Token(t, "alice", "alice-password", "registry:catalog:*")
		if st, _, _ := r.Do(t, "GET", "/v2/_catalog", tok, nil, nil); st != 401 {
			t.Fatalf("alice's catalog: %d, want 401", st)
		}
	})
}

func tokenRequest(t *testing.T, r *registrytest.Replica, method, user, pw string, q url.Values) (int, map[string]any) {
	t.Helper()
	var req *http.Request
	if method == "GET" {
		req, _ = http.NewRequest("GET", r.URL+"/auth/token?"+q.Encode(), nil)
	} else {
		req, _ = http.NewRequest("POST", r.URL+"/auth/token", strings.NewReader(q.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestTokenFlow replays what the docker CLI sends (libraries.md §5).
func TestTokenFlow(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	st, body := tokenRequest(t, r, "GET", "alice", "wrong-password", url.Values{"service": {"dtr"}, "account": {"alice"}})
	if st != 401 || body["details"] != "incorrect username or password" {
		t.Fatalf("wrong password: %d %v", st, body)
	}
	st, body = tokenRequest(t, r, "GET", "alice", "alice-password", url.Values{"service": {"dtr"}, "offline_token": {"true"}, "client_id": {"docker"}, "account": {"alice"}})
	rt, _ := body["refresh_token"].(string)
	if st != 200 || rt == "" || body["token"] == "" || body["expires_in"] != float64(300) {
		t.Fatalf("docker login: %d %v", st, body)
	}
	st, body = tokenRequest(t, r, "POST", "", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"docker"}, "service": {"dtr"}, "scope": {"repository:acme/app:push,pull"}})
	if st != 200 || body["scope"] != "repository:acme/app:push,pull" || body["access_token"] == "" {
		t.Fatalf("refresh grant: %d %v", st, body)
	}
	st, _ = tokenRequest(t, r, "POST", "", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt-forged"}})
	if st != 401 {
		t.Fatalf("forged refresh token: %d", st)
	}
	st, body = tokenRequest(t, r, "POST", "", "", url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {"bob-password"}, "access_type": {"offline"}, "scope": {"repository:acme/app:pull"}})
	if st != 200 || body["refresh_token"] == nil {
		t.Fatalf("password grant: %d %v", st, body)
	}
	// A password change revokes the refresh tokens docker stored.
	if st := r.API(t, "alice", "alice-password", "POST", "/api/v0/accounts/alice/changePassword", map[string]any{"oldPassword": "alice-password", "newPassword": "alice-new-password"}, nil); st != 204 {
		t.Fatalf("change password: %d", st)
	}
	st, _ = tokenRequest(t, r, "POST", "", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if st != 401 {
		t.Fatalf("refresh token after a password change: %d, want 401", st)
	}
	if st, _ := tokenRequest(t, r, "GET", "alice", "alice-new-password", url.Values{"service": {"dtr"}}); st != 200 {
		t.Fatalf("login with the new password: %d", st)
	}
}

func TestReferrers(t *testing.T) {
	r := registrytest.StartNew(t)
	tok := r.Token(t, admin, adminPW, "repository:admin/app:push,pull,delete")
	subject, st := r.PushImage(t, tok, "admin/app", "v1", []byte("subject layer"))
	if st != 201 {
		t.Fatalf("push subject: %d", st)
	}
	empty, _ := r.PushBlob(t, tok, "admin/app", []byte("{}"))
	artifact := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sbom","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + empty + `","size":2},"layers":[{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + empty + `","size":2}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + subject.ManifestDigest + `","size":` + itoa(len(subject.Manifest)) + `}}`
	ad := registrytest.Digest([]byte(artifact))
	st, h, body := r.Do(t, "PUT", "/v2/admin/app/manifests/"+ad, tok, []byte(artifact), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
	if st != 201 || h.Get("OCI-Subject") != subject.ManifestDigest {
		t.Fatalf("artifact PUT: %d OCI-Subject=%q %s", st, h.Get("OCI-Subject"), body)
	}
	var idx struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			Digest       string `json:"digest"`
			ArtifactType string `json:"artifactType"`
		} `json:"manifests"`
	}
	st, _, body = r.Do(t, "GET", "/v2/admin/app/referrers/"+subject.ManifestDigest, tok, nil, nil)
	_ = json.Unmarshal(body, &idx)
	if st != 200 || len(idx.Manifests) != 1 || idx.Manifests[0].Digest != ad || idx.Manifests[0].ArtifactType != "application/vnd.example.sbom" {
		t.Fatalf("referrers: %d %s", st, body)
	}
	st, h, body = r.Do(t, "GET", "/v2/admin/app/referrers/"+subject.ManifestDigest+"?artifactType=application/other", tok, nil, nil)
	if st != 200 || h.Get("OCI-Filters-Applied") != "artifactType" || strings.Contains(string(body), ad) {
		t.Fatalf("filtered referrers: %d %v %s", st, h, body)
	}
	if st, _, _ := r.Do(t, "GET", "/v2/admin/app/referrers/"+subject.ManifestDigest, "", nil, nil); st != 401 {
		t.Fatalf("referrers without a token: %d", st)
	}
	if st, _, _ := r.Do(t, "DELETE", "/v2/admin/app/manifests/"+ad, tok, nil, nil); st != 202 {
		t.Fatalf("delete artifact: %d", st)
	}
	st, _, body = r.Do(t, "GET", "/v2/admin/app/referrers/"+subject.ManifestDigest, tok, nil, nil)
	if st != 200 || strings.Contains(string(body), ad) {
		t.Fatalf("referrers after delete: %d %s", st, body)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestRestartKeepsEverything: nothing that matters lives in process memory.
func TestRestartKeepsEverything(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	tok := r.Token(t, "alice", "alice-password", "repository:acme/app:push,pull")
	img, st := r.PushImage(t, tok, "acme/app", "v1", []byte("survives restarts"))
	if st != 201 {
		t.Fatalf("push: %d", st)
	}
	r = r.Restart()
	tok = r.Token(t, "bob", "bob-password", "repository:acme/app:pull")
	st, h, body := r.Do(t, "GET", "/v2/acme/app/manifests/v1", tok, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	if st != 200 || h.Get("Docker-Content-Digest") != img.ManifestDigest || string(body) != string(img.Manifest) {
		t.Fatalf("manifest after restart: %d %s", st, h.Get("Docker-Content-Digest"))
	}
	st, _, body = r.Do(t, "GET", "/v2/acme/app/blobs/"+registrytest.Digest(img.Layer), tok, nil, nil)
	if st != 200 || string(body) != "survives restarts" {
		t.Fatalf("blob after restart: %d %q", st, body)
	}
	if st, _, _ := r.Do(t, "GET", "/v2/acme/app/manifests/v1", r.Token(t, "carol", "carol-password", "repository:acme/app:pull"), nil, nil); st != 401 {
		t.Fatalf("carol after restart: %d, want 401 (permissions kept)", st)
	}
}

func TestAdminAPIErrors(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	raw := func(user, pw, method, path, body string) int {
		req, _ := http.NewRequest(method, r.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := r.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name, user, method, path, body string
		want                           int
	}{
		{"no credentials", "", "GET", "/api/v0/accounts", "", 401},
		{"wrong password", "alice", "GET", "/api/v0/accounts", "", 401},
		{"malformed JSON", admin, "POST", "/api/v0/accounts", "{", 400},
		{"unknown field", admin, "POST", "/api/v0/accounts", `{"name":"dave","password":"dave-password","admn":true}`, 400},
		{"trailing data", admin, "POST", "/api/v0/accounts", `{"name":"dave","password":"dave-password"} {}`, 400},
		{"bad name", admin, "POST", "/api/v0/accounts", `{"name":"Dave!","password":"dave-password"}`, 400},
		{"short password", admin, "POST", "/api/v0/accounts", `{"name":"dave","password":"short"}`, 400},
		{"duplicate", admin, "POST", "/api/v0/accounts", `{"name":"alice","password":"alice-password"}`, 409},
		{"non-admin creates an account", "bob", "POST", "/api/v0/accounts", `{"name":"eve","password":"eve-password"}`, 403},
		{"unknown account", admin, "GET", "/api/v0/accounts/nobody", "", 404},
		{"unknown repository", admin, "GET", "/api/v0/repositories/acme/nothing", "", 404},
		{"hidden repository", "carol", "GET", "/api/v0/repositories/acme/app", "", 404},
		{"read-only user changes a repository", "bob", "PATCH", "/api/v0/repositories/acme/app", `{"visibility":"public"}`, 403},
		{"bad access level", admin, "PUT", "/api/v0/repositories/acme/app/teamAccess/devs", `{"accessLevel":"owner"}`, 400},
		{"bad visibility", admin, "PATCH", "/api/v0/repositories/acme/app", `{"visibility":"secret"}`, 400},
		{"non-admin reads settings", "alice", "GET", "/api/v0/meta/settings", "", 403},
		{"bad storage", admin, "PATCH", "/api/v0/meta/settings", `{"storage":{"type":"floppy"}}`, 400},
		{"unknown endpoint", admin, "GET", "/api/v0/nothing", "", 404},
		{"too large", admin, "POST", "/api/v0/accounts", `{"name":"` + strings.Repeat("a", 2<<20) + `"}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pw := tt.user + "-password"
			if tt.user == admin {
				pw = adminPW
			}
			if tt.name == "wrong password" {
				pw = "nope-nope"
			}
			if got := raw(tt.user, pw, tt.method, tt.path, tt.body); got != tt.want {
				t.Fatalf("status %d, want %d", got, tt.want)
			}
		})
	}
	var status map[string]any
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/meta/cluster_status", nil, &status); st != 200 || status["hasQuorum"] != true || len(status["members"].([]any)) != 1 {
		t.Fatalf("cluster_status: %d %v", st, status)
	}
	var settings map[string]any
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/meta/settings", nil, &settings); st != 200 {
		t.Fatalf("settings: %d %v", st, settings)
	}
}

func TestHealthAndRedirect(t *testing.T) {
	r := registrytest.StartNew(t)
	resp, err := r.Client.Get(r.URL + "/_ping")
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != 200 || h["Healthy"] != true || h["Error"] != "" {
		t.Fatalf("/_ping: %d %v", resp.StatusCode, h)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noRedirect.Get(r.HTTP + "/_ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("plain-HTTP /_ping: %d", resp.StatusCode)
	}
	resp, err = noRedirect.Get(r.HTTP + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(resp.Header.Get("Location"), "https://") {
		t.Fatalf("plain-HTTP /v2/: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestDrain: a replica marked as leaving fails /_ping at its next probe,
// so a load balancer stops sending it requests before it stops.
func TestDrain(t *testing.T) {
	r := registrytest.StartNew(t)
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/meta/replicas/0123456789ab/drain", nil, nil); st != 404 {
		t.Fatalf("draining an unknown replica: %d", st)
	}
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/meta/replicas/"+r.Opts.ReplicaID+"/drain", nil, nil); st != 204 {
		t.Fatalf("drain: %d", st)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := r.Client.Get(r.URL + "/_ping")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 503 && strings.Contains(string(b), "draining") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/_ping after drain: %d %s", resp.StatusCode, b)
		}
	}
}
