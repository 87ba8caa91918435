package security_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// nameReuseAccount: a new account with a deleted account's name starts with
// nothing (issue 12, point 3).
func nameReuseAccount(t *testing.T, p *report) {
	r := startReplica(t, nil)
	createUser(t, r, "nr-bob", "Bob-old-"+randomWord())
	createOrg(t, r, "nr-acme")
	apiMust(t, r, "POST", "/api/v0/accounts/nr-acme/teams", map[string]any{"name": "devs"}, 201)
	apiMust(t, r, "PUT", "/api/v0/accounts/nr-acme/members/nr-bob", nil, 200)
	apiMust(t, r, "PUT", "/api/v0/accounts/nr-acme/teams/devs/members/nr-bob", nil, 200)
	apiMust(t, r, "POST", "/api/v0/repositories/nr-acme", map[string]any{"name": "app", "visibility": "private"}, 201)
	apiMust(t, r, "PUT", "/api/v0/repositories/nr-acme/app/userAccess/nr-bob", map[string]any{"accessLevel": "read-write"}, 200)
	apiMust(t, r, "PUT", "/api/v0/repositories/nr-acme/app/teamAccess/devs", map[string]any{"accessLevel": "read-only"}, 200)
	pushImage(t, r, admin, adminPW, "nr-acme/app", "v1")

	apiMust(t, r, "DELETE", "/api/v0/accounts/nr-bob", nil, 204)
	newPW := "Bob-new-" + randomWord()
	createUser(t, r, "nr-bob", newPW)

	var members struct {
		Members []struct {
			User string `json:"user"`
		} `json:"members"`
	}
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/accounts/nr-acme/members", nil, &members); st != 200 {
		t.Fatalf("org members: %d", st)
	}
	for _, m := range members.Members {
		p.check(m.User != "nr-bob", "the new nr-bob is a member of nr-acme")
	}
	var team struct {
		Members []struct {
			User string `json:"user"`
		} `json:"members"`
	}
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/accounts/nr-acme/teams/devs/members", nil, &team); st != 200 {
		t.Fatalf("team members: %d", st)
	}
	for _, m := range team.Members {
		p.check(m.User != "nr-bob", "the new nr-bob is in team devs")
	}
	var grants map[string][]map[string]any
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/repositories/nr-acme/app/userAccess", nil, &grants); st != 200 {
		t.Fatalf("user grants: %d", st)
	}
	for _, g := range grants["userAccessList"] {
		p.check(g["user"] != "nr-bob", "the new nr-bob has the old grant on nr-acme/app")
	}
	st := pullStatus(t, r, "nr-bob", newPW, "nr-acme/app", "v1")
	p.notef("the new nr-bob pulls nr-acme/app:v1 → %d", st)
	p.check(st == http.StatusUnauthorized || st == http.StatusNotFound, "the new nr-bob pulled the private nr-acme/app (%d)", st)
}

// nameReuseOrg: a user named like a deleted organization cannot reach the
// organization's images (point 3).
func nameReuseOrg(t *testing.T, p *report) {
	r := startReplica(t, nil)
	createOrg(t, r, "nr-org")
	apiMust(t, r, "POST", "/api/v0/repositories/nr-org", map[string]any{"name": "app", "visibility": "private"}, 201)
	img := pushImage(t, r, admin, adminPW, "nr-org/app", "v1")

	st := r.API(t, admin, adminPW, "DELETE", "/api/v0/accounts/nr-org", nil, nil)
	switch {
	case st == http.StatusNoContent:
		p.notef("org deleted with its repositories")
	case st >= 400 && st < 500:
		// Refused while it holds repositories: delete them first.
		p.notef("org deletion refused (%d) while it holds a repository", st)
		apiMust(t, r, "DELETE", "/api/v0/repositories/nr-org/app", nil, 204)
		apiMust(t, r, "DELETE", "/api/v0/accounts/nr-org", nil, 204)
	default:
		t.Fatalf("deleting org nr-org: %d", st)
	}
	pw := "Org-heir-" + randomWord()
	createUser(t, r, "nr-org", pw)
	tok := r.Token(t, "nr-org", pw, "repository:nr-org/app:pull,push")
	byTag, _, _ := r.Do(t, "GET", "/v2/nr-org/app/manifests/v1", tok, nil, manifestAccept)
	byDigest, _, _ := r.Do(t, "GET", "/v2/nr-org/app/manifests/"+img.ManifestDigest, tok, nil, manifestAccept)
	tagsSt, _, body := r.Do(t, "GET", "/v2/nr-org/app/tags/list", tok, nil, nil)
	p.notef("the heir pulls by tag → %d, by digest → %d, tags/list → %d %s", byTag, byDigest, tagsSt, strings.TrimSpace(string(body)))
	gone := func(st int) bool { return st == http.StatusNotFound || st == http.StatusUnauthorized }
	p.check(gone(byTag), "the new user nr-org pulled the deleted org's image by tag (%d)", byTag)
	p.check(gone(byDigest), "the new user nr-org pulled the deleted org's image by digest (%d)", byDigest)
	if tagsSt == http.StatusOK {
		var tags struct {
			Tags []string `json:"tags"`
		}
		_ = json.Unmarshal(body, &tags)
		p.check(len(tags.Tags) == 0, "tags/list shows the deleted org's tags %v", tags.Tags)
	}
}

// nameReuseRepo: a deleted repository's tags and manifests are unreachable
// at once (point 3).
func nameReuseRepo(t *testing.T, p *report) {
	r := startReplica(t, nil)
	pw := "Alice-" + randomWord()
	createUser(t, r, "nr-alice", pw)
	img := pushImage(t, r, "nr-alice", pw, "nr-alice/app", "v1")
	if st := r.API(t, "nr-alice", pw, "DELETE", "/api/v0/repositories/nr-alice/app", nil, nil); st != http.StatusNoContent {
		t.Fatalf("deleting nr-alice/app: %d", st)
	}
	byTag := pullStatus(t, r, "nr-alice", pw, "nr-alice/app", "v1")
	byDigest := pullStatus(t, r, "nr-alice", pw, "nr-alice/app", img.ManifestDigest)
	p.notef("right after the delete: by tag → %d, by digest → %d", byTag, byDigest)
	p.check(byTag == http.StatusNotFound, "the deleted repository's tag still pulls (%d, want 404)", byTag)
	p.check(byDigest == http.StatusNotFound, "the deleted repository's manifest still pulls by digest (%d, want 404)", byDigest)
}
