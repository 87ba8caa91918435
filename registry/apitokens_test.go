package registry_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/adminapi"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// tokenAnswer is /auth/token's answer, as docker reads it.
type tokenAnswer struct {
	Token        string `json:"token"`
	RefreshToken string `json:"refresh_token"`
}

// login asks /auth/token for scopes with Basic credentials (docker login
// then pull/push), and returns the status and answer.
func login(t *testing.T, r *registrytest.Replica, user, password string, offline bool, scopes ...string) (int, tokenAnswer) {
	t.Helper()
	q := url.Values{"service": {"dtr"}, "scope": scopes}
	if offline {
		q.Set("offline_token", "true")
		q.Set("client_id", "docker")
	}
	req, _ := http.NewRequest(http.MethodGet, r.URL+"/auth/token?"+q.Encode(), nil)
	req.SetBasicAuth(user, password)
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out tokenAnswer
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// TestAPITokens: a user's access token is a password for docker login
// (push and pull) and the admin API, without a refresh token that would
// outlive it; read-only and repository-limited tokens get no more; tokens
// are managed only with a password, are the owner's alone, never listed
// with their secret, record when they were used, expire, and once revoked
// fail at once for logins and within 2 s for the registry tokens issued
// with them, on both replicas.
func TestAPITokens(t *testing.T) {
	r1 := registrytest.StartNew(t)
	setupAccounts(t, r1)
	r2 := join(t, r1, "bbbbbbbbbbbb")
	const alicePW = "alice-password"
	create := func(user, password string, req adminapi.CreateAPITokenRequest, want int) adminapi.NewAPIToken {
		t.Helper()
		var nt adminapi.NewAPIToken
		if st := r1.API(t, user, password, "POST", "/api/v0/api_tokens", req, &nt); st != want {
			t.Fatalf("POST api_tokens as %s %+v: %d, want %d", user, req, st, want)
		}
		return nt
	}
	ci := create("alice", alicePW, adminapi.CreateAPITokenRequest{TokenLabel: "ci"}, 200)
	if !strings.HasPrefix(ci.Token, meta.APITokenPrefix) || ci.HashedToken != meta.HashAPIToken(ci.Token) || !ci.IsActive || ci.Username != "alice" {
		t.Fatalf("created token: %+v", ci)
	}
	create("alice", alicePW, adminapi.CreateAPITokenRequest{TokenLabel: " "}, 400)
	create("alice", alicePW, adminapi.CreateAPITokenRequest{TokenLabel: "past", ExpiresAt: ptr(time.Now().Add(-time.Hour))}, 400)
	create("alice", ci.Token, adminapi.CreateAPITokenRequest{TokenLabel: "from a token"}, 403)
	create("alice", alicePW, adminapi.CreateAPITokenRequest{TokenLabel: "not mine"}, 200)
	if st := r1.API(t, "alice", alicePW, "POST", "/api/v0/api_tokens?username=bob", adminapi.CreateAPITokenRequest{TokenLabel: "x"}, nil); st != 403 {
		t.Errorf("alice creating bob's token: %d, want 403", st)
	}

	// docker login and push with the token; no refresh token.
	scope := "repository:alice/app:push,pull"
	st, ans := login(t, r1, "alice", ci.Token, true, scope)
	if st != 200 || ans.Token == "" || ans.RefreshToken != "" {
		t.Fatalf("login with the token: %d, refresh token %q", st, ans.RefreshToken)
	}
	img, st := r1.PushImage(t, ans.Token, "alice/app", "v1", []byte("pushed with an access token"))
	if st != 201 {
		t.Fatalf("push with the token: %d", st)
	}
	if st, _ := login(t, r1, "bob", ci.Token, false, scope); st != 401 {
		t.Errorf("bob with alice's token: %d, want 401", st)
	}
	var acc map[string]any
	if st := r1.API(t, "alice", ci.Token, "GET", "/api/v0/accounts/alice", nil, &acc); st != 200 {
		t.Errorf("admin API with the token: %d", st)
	}
	if st := r1.API(t, "alice", ci.Token, "POST", "/api/v0/accounts/alice/changePassword", map[string]string{"oldPassword": ci.Token, "newPassword": "stolen-password"}, nil); st != 403 {
		t.Errorf("changing the password with a token: %d, want 403", st)
	}
	if st := r1.API(t, "alice", alicePW, "POST", "/api/v0/accounts/alice/changePassword", map[string]string{"oldPassword": ci.Token, "newPassword": "stolen-password"}, nil); st != 403 {
		t.Errorf("a token given as the old password: %d, want 403", st)
	}

	// Listed without the secret, with when it was last used.
	var list []map[string]any
	if st := r1.API(t, "alice", alicePW, "GET", "/api/v0/api_tokens", nil, &list); st != 200 || len(list) != 2 {
		t.Fatalf("list: %d, %d tokens", st, len(list))
	}
	for _, tk := range list {
		if _, ok := tk["token"]; ok {
			t.Errorf("a listed token carries its secret: %v", tk)
		}
		if tk["hashedToken"] == ci.HashedToken && tk["lastUsed"] == nil {
			t.Errorf("lastUsed not recorded: %v", tk)
		}
	}
	if st := r1.API(t, "bob", "bob-password", "GET", "/api/v0/api_tokens/"+ci.HashedToken, nil, nil); st != 404 {
		t.Errorf("bob reading alice's token: %d, want 404", st)
	}

	// Read-only: pulls only, admin API reads only.
	ro := create("alice", alicePW, adminapi.CreateAPITokenRequest{TokenLabel: "ro", ReadOnly: true}, 200)
	_, roAns := login(t, r1, "alice", ro.Token, false, scope)
	if st, _, _ := r1.Do(t, "GET", "/v2/alice/app/manifests/v1", roAns.Token, nil, map[string]string{"Accept": ociManifest}); st != 200 {
		t.Errorf("pull with a read-only token: %d", st)
	}
	if _, st := r1.PushBlob(t, roAns.Token, "alice/app", []byte("refused")); st != 401 {
		t.Errorf("push with a read-only token: %d, want 401", st)
	}
	if st := r1.API(t, "alice", ro.Token, "PATCH", "/api/v0/accounts/alice", map[string]any{"fullName": "x"}, nil); st != 403 {
		t.Errorf("admin API change with a read-only token: %d, want 403", st)
	}

	// Limited to one repository: nothing elsewhere, no admin API.
	lim := create("alice", alicePW, adminapi.CreateAPITokenRequest{TokenLabel: "deploy", Repositories: []string{"alice/app"}}, 200)
	_, limAns := login(t, r1, "alice", lim.Token, false, scope, "repository:alice/other:push,pull")
	if _, st := r1.PushBlob(t, limAns.Token, "alice/app", []byte("allowed")); st != 201 {
		t.Errorf("push to the token's repository: %d", st)
	}
	if _, st := r1.PushBlob(t, limAns.Token, "alice/other", []byte("refused")); st != 401 {
		t.Errorf("push outside the token's repositories: %d, want 401", st)
	}
	if st := r1.API(t, "alice", lim.Token, "GET", "/api/v0/accounts/alice", nil, nil); st != 403 {
		t.Errorf("admin API with a repository-limited token: %d, want 403", st)
	}

	// Expiry.
	short := create("alice", alicePW, adminapi.CreateAPITokenRequest{TokenLabel: "short", ExpiresAt: ptr(time.Now().Add(1500 * time.Millisecond))}, 200)
	if st, _ := login(t, r1, "alice", short.Token, false, scope); st != 200 {
		t.Errorf("an unexpired token: %d", st)
	}
	time.Sleep(2 * time.Second)
	if st, _ := login(t, r1, "alice", short.Token, false, scope); st != 401 {
		t.Errorf("an expired token: %d, want 401", st)
	}

	// Revocation: logins fail at once, registry tokens issued with it
	// within 2 s on both replicas; a deactivated token likewise.
	// The second replica keeps its own storage in this test: a pull there
	// is authorized (404, the image is on the first) or not (401).
	pull := func(r *registrytest.Replica, tok string) int {
		st, _, _ := r.Do(t, "GET", "/v2/alice/app/manifests/"+img.ManifestDigest, tok, nil, map[string]string{"Accept": ociManifest})
		return st
	}
	if a, b := pull(r1, ans.Token), pull(r2, ans.Token); a != 200 || b != 404 {
		t.Fatalf("the token's registry token before the revocation: %d on the first replica (want 200), %d on the second (want 404)", a, b)
	}
	if st := r1.API(t, "alice", alicePW, "DELETE", "/api/v0/api_tokens/"+ci.HashedToken, nil, nil); st != 200 {
		t.Fatalf("revoking: %d", st)
	}
	revoked := time.Now()
	if st, _ := login(t, r2, "alice", ci.Token, false, scope); st != 401 {
		t.Errorf("login with a revoked token: %d, want 401", st)
	}
	for _, r := range []*registrytest.Replica{r1, r2} {
		for pull(r, ans.Token) != 401 {
			if time.Since(revoked) > 2*time.Second {
				t.Fatalf("a registry token of the revoked access token still pulls after 2 s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("the revoked token's registry tokens failed on both replicas %v after the revocation", time.Since(revoked).Round(time.Millisecond))
	if st := r1.API(t, "alice", alicePW, "PATCH", "/api/v0/api_tokens/"+ro.HashedToken, adminapi.PatchAPITokenRequest{IsActive: ptr(false)}, nil); st != 200 {
		t.Fatalf("deactivating: %d", st)
	}
	if st, _ := login(t, r1, "alice", ro.Token, false, scope); st != 401 {
		t.Errorf("login with a deactivated token: %d, want 401", st)
	}
	if st := r1.API(t, "alice", alicePW, "DELETE", "/api/v0/api_tokens/"+ci.HashedToken, nil, nil); st != 404 {
		t.Errorf("revoking again: %d, want 404", st)
	}
}

func ptr[T any](v T) *T { return &v }
