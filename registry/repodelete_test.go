package registry_test

import (
	"net/http"
	"testing"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

const manifestAccept = "application/vnd.oci.image.manifest.v1+json"

// pullStatus is the status of pulling repo's manifest ref and, when layer
// is set, its layer blob; 200 on either means old content is reachable.
func pullStatus(t *testing.T, r *registrytest.Replica, token, repo, ref string) int {
	t.Helper()
	st, _, _ := r.Do(t, "GET", "/v2/"+repo+"/manifests/"+ref, token, nil, map[string]string{"Accept": manifestAccept})
	return st
}

// TestDeletedRepositoryContentGone: deleting a repository makes its tags,
// manifests and layers unreachable at once; the same name created again is
// empty. Before, the recreated repository served the old image. A sibling
// whose name extends the deleted one keeps its content.
func TestDeletedRepositoryContentGone(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/repositories/acme", map[string]any{"name": "app2"}, nil); st != 201 {
		t.Fatalf("creating acme/app2: %d", st)
	}
	push := r.Token(t, admin, adminPW, "repository:acme/app:push,pull", "repository:acme/app2:push,pull")
	img, st := r.PushImage(t, push, "acme/app", "v1", []byte("old private layer"))
	if st != 201 {
		t.Fatalf("push acme/app: %d", st)
	}
	sibling, st := r.PushImage(t, push, "acme/app2", "v1", []byte("sibling layer"))
	if st != 201 {
		t.Fatalf("push acme/app2: %d", st)
	}
	if st := r.API(t, admin, adminPW, "DELETE", "/api/v0/repositories/acme/app", nil, nil); st != http.StatusNoContent {
		t.Fatalf("deleting acme/app: %d", st)
	}
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/repositories/acme", map[string]any{"name": "app", "visibility": "public"}, nil); st != 201 {
		t.Fatalf("recreating acme/app: %d", st)
	}
	pull := r.Token(t, admin, adminPW, "repository:acme/app:pull", "repository:acme/app2:pull")
	for _, ref := range []string{"v1", img.ManifestDigest} {
		if st := pullStatus(t, r, pull, "acme/app", ref); st != http.StatusNotFound {
			t.Errorf("manifest %s of the recreated acme/app: %d, want 404", ref, st)
		}
	}
	if st, _, _ := r.Do(t, "GET", "/v2/acme/app/blobs/"+registrytest.Digest(img.Layer), pull, nil, nil); st != http.StatusNotFound {
		t.Errorf("old layer through the recreated acme/app: %d, want 404", st)
	}
	if st, _, body := r.Do(t, "GET", "/v2/acme/app2/manifests/"+sibling.ManifestDigest, pull, nil, map[string]string{"Accept": manifestAccept}); st != 200 || string(body) != string(sibling.Manifest) {
		t.Errorf("acme/app2 after deleting acme/app: %d, want its manifest", st)
	}
	// A repeated deletion of content that is already gone is not an error.
	if st := r.API(t, admin, adminPW, "DELETE", "/api/v0/repositories/acme/app", nil, nil); st != http.StatusNoContent {
		t.Fatalf("deleting the empty acme/app: %d", st)
	}
}

// TestDeletedOrganizationNameReuse: the finding "a new user named like the
// deleted org pulled its old private image". The organization goes only
// after its repositories (and their content) are deleted, so the new user
// acme finds nothing, also not what a push with a token issued before the
// deletion wrote after it.
func TestDeletedOrganizationNameReuse(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	alice := r.Token(t, "alice", "alice-password", "repository:acme/app:push,pull")
	img, st := r.PushImage(t, alice, "acme/app", "v1", []byte("acme's private layer"))
	if st != 201 {
		t.Fatalf("alice pushes acme/app: %d", st)
	}
	for _, p := range []string{"/api/v0/repositories/acme/app", "/api/v0/repositories/acme/pub", "/api/v0/accounts/acme"} {
		if st := r.API(t, admin, adminPW, "DELETE", p, nil, nil); st != http.StatusNoContent {
			t.Fatalf("DELETE %s: %d", p, st)
		}
	}
	// alice's token was issued before the deletion and is still valid: her
	// push lands in storage, under a namespace that no longer exists.
	late, st := r.PushImage(t, alice, "acme/app", "late", []byte("pushed after the deletion"))
	if st != 201 {
		t.Logf("push with the old token after the deletion: %d (refused; nothing to clear)", st)
	}
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": "acme", "password": "new-acme-password"}, nil); st != 201 {
		t.Fatalf("creating the user acme: %d", st)
	}
	tok := r.Token(t, "acme", "new-acme-password", "repository:acme/app:pull")
	for _, ref := range []string{"v1", img.ManifestDigest, "late", late.ManifestDigest} {
		if ref == "" {
			continue
		}
		if st := pullStatus(t, r, tok, "acme/app", ref); st == http.StatusOK {
			t.Errorf("the new user acme pulled acme/app:%s of the deleted organization", ref)
		}
	}
	if st, _, _ := r.Do(t, "GET", "/v2/acme/app/blobs/"+registrytest.Digest(img.Layer), tok, nil, nil); st == http.StatusOK {
		t.Errorf("the new user acme pulled the deleted organization's layer")
	}
}
