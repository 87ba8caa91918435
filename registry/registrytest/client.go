package registrytest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Token fetches an access token the way docker does: GET /auth/token with
// Basic auth (user "" for anonymous) and the scopes.
func (r *Replica) Token(t testing.TB, user, password string, scopes ...string) string {
	t.Helper()
	q := url.Values{"service": {"dtr"}}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	req, _ := http.NewRequest(http.MethodGet, r.URL+"/auth/token?"+q.Encode(), nil)
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("token for %q: %s %s", user, resp.Status, b)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Token
}

// Do sends a request with a bearer token (if not empty) and returns the
// status, headers and body.
func (r *Replica) Do(t testing.TB, method, path, token string, body []byte, header map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, r.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = nil
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// API calls the admin API with Basic auth and decodes a JSON answer into out.
func (r *Replica) API(t testing.TB, user, password, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.URL+path, body)
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// Digest is the sha256 digest of b.
func Digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// PushBlob uploads b monolithically (POST then PUT) and returns its digest.
func (r *Replica) PushBlob(t testing.TB, token, repo string, b []byte) (string, int) {
	t.Helper()
	status, h, body := r.Do(t, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", token, nil, nil)
	if status != http.StatusAccepted {
		return "", status
	}
	_ = body
	loc := h.Get("Location")
	if strings.HasPrefix(loc, "http") {
		u, _ := url.Parse(loc)
		loc = u.RequestURI()
	}
	d := Digest(b)
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	status, _, body = r.Do(t, http.MethodPut, loc+sep+"digest="+d, token, b, map[string]string{"Content-Type": "application/octet-stream"})
	if status != http.StatusCreated {
		t.Logf("blob PUT: %d %s", status, body)
	}
	return d, status
}

// Image is a pushed single-layer image.
type Image struct {
	Manifest       []byte
	ManifestDigest string
	Layer          []byte
}

// PushImage pushes a one-layer OCI image as repo:tag and returns it.
func (r *Replica) PushImage(t testing.TB, token, repo, tag string, layer []byte) (Image, int) {
	t.Helper()
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cd, st := r.PushBlob(t, token, repo, config)
	if st != http.StatusCreated {
		return Image{}, st
	}
	ld, st := r.PushBlob(t, token, repo, layer)
	if st != http.StatusCreated {
		return Image{}, st
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		cd, len(config), ld, len(layer))
	status, _, body := r.Do(t, http.MethodPut, "/v2/"+repo+"/manifests/"+tag, token, []byte(m), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
	if status != http.StatusCreated {
		t.Logf("manifest PUT: %d %s", status, body)
	}
	return Image{Manifest: []byte(m), ManifestDigest: Digest([]byte(m)), Layer: layer}, status
}

// SetupAccounts creates the accounts, org, teams and repositories the
// permission tests use, through the admin API.
func SetupAccounts(t testing.TB, r *Replica, adminUser, adminPassword string) {
	t.Helper()
	api := func(method, path string, in any, want int) {
		t.Helper()
		if got := r.API(t, adminUser, adminPassword, method, path, in, nil); got != want {
			t.Fatalf("%s %s: %d, want %d", method, path, got, want)
		}
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		api("POST", "/api/v0/accounts", map[string]any{"name": u, "password": u + "-password"}, 201)
	}
	api("POST", "/api/v0/accounts", map[string]any{"name": "acme", "isOrg": true}, 201)
	api("POST", "/api/v0/accounts/acme/teams", map[string]any{"name": "devs"}, 201)
	api("POST", "/api/v0/accounts/acme/teams", map[string]any{"name": "readers"}, 201)
	api("PUT", "/api/v0/accounts/acme/teams/devs/members/alice", nil, 200)
	api("PUT", "/api/v0/accounts/acme/teams/readers/members/bob", nil, 200)
	api("POST", "/api/v0/repositories/acme", map[string]any{"name": "app", "visibility": "private"}, 201)
	api("POST", "/api/v0/repositories/acme", map[string]any{"name": "pub", "visibility": "public"}, 201)
	api("PUT", "/api/v0/repositories/acme/app/teamAccess/devs", map[string]any{"accessLevel": "read-write"}, 200)
	api("PUT", "/api/v0/repositories/acme/app/teamAccess/readers", map[string]any{"accessLevel": "read-only"}, 200)
}
