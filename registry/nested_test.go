package registry_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestNestedRepositories: names of three and more components (what helm
// push oci://host/admin/charts does, as Harbor and GitLab allow) are
// repositories of the first component's namespace, created on push, with
// permissions and visibility of their own full name, in the admin API
// (escaped as one segment or as plain segments), the referrers API, deletion
// and the reconciler. Names dtr cannot hold get 400 NAME_INVALID saying
// why, never a bare 401.
func TestNestedRepositories(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	scope := func(repo string) string { return "repository:" + repo + ":push,pull" }
	pull := func(tok, repo, ref string) (int, []byte) {
		st, _, body := r.Do(t, "GET", "/v2/"+repo+"/manifests/"+ref, tok, nil, map[string]string{"Accept": manifestAccept})
		return st, body
	}
	push := func(user, pw, repo string) registrytest.Image {
		t.Helper()
		img, st := r.PushImage(t, r.Token(t, user, pw, scope(repo)), repo, "v1", []byte("layer of "+repo))
		if st != http.StatusCreated {
			t.Fatalf("%s pushes %s: %d, want 201", user, repo, st)
		}
		return img
	}

	// Create on push, as the namespace's owner, three and four levels deep.
	hello := push(admin, adminPW, "admin/charts/hello")
	push("alice", "alice-password", "alice/a/b")
	deep := push("alice", "alice-password", "alice/a/b/c")
	if st, body := pull(r.Token(t, admin, adminPW, scope("admin/charts/hello")), "admin/charts/hello", "v1"); st != 200 || string(body) != string(hello.Manifest) {
		t.Fatalf("pulling admin/charts/hello: %d", st)
	}
	var rec map[string]any
	if st := r.API(t, "alice", "alice-password", "GET", "/api/v0/repositories/alice/a%2Fb%2Fc", nil, &rec); st != 200 ||
		rec["namespace"] != "alice" || rec["name"] != "a/b/c" || rec["visibility"] != "private" || rec["createdBy"] != "alice" {
		t.Fatalf("record of alice/a/b/c (escaped form): %d %v", st, rec)
	}
	rec = nil
	if st := r.API(t, "alice", "alice-password", "GET", "/api/v0/repositories/alice/a/b/c", nil, &rec); st != 200 || rec["name"] != "a/b/c" {
		t.Fatalf("record of alice/a/b/c (plain form): %d %v", st, rec)
	}

	t.Run("names dtr cannot hold are NAME_INVALID", func(t *testing.T) {
		for _, c := range []struct{ repo, says string }{
			{"a/charts/hello", `first component "a" must be a user or organization name`},
			{"hello", "use <namespace>/<name>"},
			{"admin/" + strings.Repeat("x/", 125) + "y", "at most 255 characters"},
		} {
			st, _, body := r.Do(t, "POST", "/v2/"+c.repo+"/blobs/uploads/", r.Token(t, admin, adminPW, scope(c.repo)), nil, nil)
			var e struct {
				Errors []struct{ Code, Message string }
			}
			_ = json.Unmarshal(body, &e)
			if st != http.StatusBadRequest || len(e.Errors) != 1 || e.Errors[0].Code != "NAME_INVALID" || !strings.Contains(e.Errors[0].Message, c.says) {
				t.Errorf("push to %.40s: %d %s; want 400 NAME_INVALID saying %q", c.repo, st, body, c.says)
			}
		}
		if st, _, _ := r.Do(t, "GET", "/v2/a/charts/hello/tags/list", "", nil, nil); st != http.StatusBadRequest {
			t.Errorf("tags of an invalid name without a token: %d, want 400", st)
		}
	})

	t.Run("permissions per full name", func(t *testing.T) {
		carol := func(repo string) string { return r.Token(t, "carol", "carol-password", scope(repo)) }
		if st, _ := pull(carol("alice/a/b/c"), "alice/a/b/c", "v1"); st != http.StatusUnauthorized {
			t.Fatalf("carol pulls alice's private alice/a/b/c: %d, want 401", st)
		}
		if _, st := r.PushImage(t, carol("alice/a/b/c"), "alice/a/b/c", "v2", []byte("carol's")); st != http.StatusUnauthorized {
			t.Fatalf("carol pushes to alice/a/b/c: %d, want 401", st)
		}
		if _, st := r.PushImage(t, carol("alice/x/y"), "alice/x/y", "v1", []byte("carol's")); st != http.StatusUnauthorized {
			t.Fatalf("carol creates alice/x/y by pushing: %d, want 401", st)
		}
		if st := r.API(t, "carol", "carol-password", "GET", "/api/v0/repositories/alice/a/b/c", nil, nil); st != http.StatusNotFound {
			t.Fatalf("carol gets the record of alice/a/b/c: %d, want 404", st)
		}
		if st := r.API(t, "alice", "alice-password", "PUT", "/api/v0/repositories/alice/a/b/c/userAccess/carol", map[string]any{"accessLevel": "read-only"}, nil); st != 200 {
			t.Fatalf("alice grants carol read-only on alice/a/b/c: %d", st)
		}
		if st, body := pull(carol("alice/a/b/c"), "alice/a/b/c", "v1"); st != 200 || string(body) != string(deep.Manifest) {
			t.Fatalf("carol pulls alice/a/b/c after the grant: %d", st)
		}
		if _, st := r.PushImage(t, carol("alice/a/b/c"), "alice/a/b/c", "v2", []byte("carol's")); st != http.StatusUnauthorized {
			t.Fatalf("carol pushes with read-only: %d, want 401", st)
		}
		// The grant is on the full name: not on the parent repository.
		if st, _ := pull(carol("alice/a/b"), "alice/a/b", "v1"); st != http.StatusUnauthorized {
			t.Fatalf("carol pulls alice/a/b with a grant on alice/a/b/c: %d, want 401", st)
		}
		var grants struct {
			UserAccessList []struct{ User, AccessLevel string }
		}
		if st := r.API(t, "alice", "alice-password", "GET", "/api/v0/repositories/alice/a%2Fb%2Fc/userAccess", nil, &grants); st != 200 || len(grants.UserAccessList) != 1 || grants.UserAccessList[0].User != "carol" {
			t.Fatalf("grants of alice/a/b/c: %d %+v", st, grants)
		}
		if st := r.API(t, "alice", "alice-password", "DELETE", "/api/v0/repositories/alice/a/b/c/userAccess/carol", nil, nil); st != http.StatusNoContent {
			t.Fatalf("revoking carol's grant: %d", st)
		}
		if st, _ := pull(carol("alice/a/b/c"), "alice/a/b/c", "v1"); st != http.StatusUnauthorized {
			t.Fatalf("carol pulls alice/a/b/c after the revocation: %d, want 401", st)
		}
	})

	t.Run("visibility per full name", func(t *testing.T) {
		if st := r.API(t, "alice", "alice-password", "PATCH", "/api/v0/repositories/alice/a/b/c", map[string]any{"visibility": "public"}, nil); st != 200 {
			t.Fatalf("making alice/a/b/c public: %d", st)
		}
		if st, _ := pull(r.Token(t, "", "", "repository:alice/a/b/c:pull"), "alice/a/b/c", "v1"); st != 200 {
			t.Fatalf("anonymous pull of the public alice/a/b/c: %d", st)
		}
		if st, _ := pull(r.Token(t, "", "", "repository:alice/a/b:pull"), "alice/a/b", "v1"); st != http.StatusUnauthorized {
			t.Fatalf("anonymous pull of the private alice/a/b: %d, want 401", st)
		}
		if st := r.API(t, "alice", "alice-password", "PATCH", "/api/v0/repositories/alice/a%2Fb%2Fc", map[string]any{"visibility": "private"}, nil); st != 200 {
			t.Fatalf("making alice/a/b/c private again: %d", st)
		}
		if st, _ := pull(r.Token(t, "", "", "repository:alice/a/b/c:pull"), "alice/a/b/c", "v1"); st != http.StatusUnauthorized {
			t.Fatalf("anonymous pull of alice/a/b/c made private: %d, want 401", st)
		}
	})

	t.Run("listed in the admin API", func(t *testing.T) {
		var list struct {
			Repositories []struct{ Namespace, Name string }
		}
		if st := r.API(t, "alice", "alice-password", "GET", "/api/v0/repositories/alice", nil, &list); st != 200 {
			t.Fatalf("listing alice's repositories: %d", st)
		}
		var names []string
		for _, rp := range list.Repositories {
			names = append(names, rp.Namespace+"/"+rp.Name)
		}
		if !slices.Equal(names, []string{"alice/a/b", "alice/a/b/c"}) {
			t.Fatalf("alice's repositories: %v", names)
		}
		list.Repositories = nil
		if st := r.API(t, admin, adminPW, "GET", "/api/v0/repositories", nil, &list); st != 200 || len(list.Repositories) != 5 {
			t.Fatalf("every repository: %d %+v", st, list.Repositories)
		}
		if st := r.API(t, admin, adminPW, "POST", "/api/v0/repositories/acme", map[string]any{"name": "team/app"}, nil); st != 201 {
			t.Fatalf("creating acme/team/app: %d", st)
		}
		for _, bad := range []string{"team//app", "team/App", "/app"} {
			if st := r.API(t, admin, adminPW, "POST", "/api/v0/repositories/acme", map[string]any{"name": bad}, nil); st != http.StatusBadRequest {
				t.Errorf("creating acme/%s: %d, want 400", bad, st)
			}
		}
		if st := r.API(t, admin, adminPW, "GET", "/api/v0/repositories/acme/team/app/teamAccess", nil, nil); st != 200 {
			t.Errorf("team grants of acme/team/app (plain form): %d", st)
		}
		if st := r.API(t, admin, adminPW, "PUT", "/api/v0/repositories/acme/team/app", nil, nil); st != http.StatusNotFound {
			t.Errorf("PUT on a repository: %d, want 404", st)
		}
	})

	// A referrer of admin/charts/hello, and the parent admin/charts next to it.
	tok := r.Token(t, admin, adminPW, "repository:admin/charts/hello:push,pull,delete")
	empty, _ := r.PushBlob(t, tok, "admin/charts/hello", []byte("{}"))
	artifact := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sig","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + empty + `","size":2},"layers":[{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + empty + `","size":2}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + hello.ManifestDigest + `","size":` + itoa(len(hello.Manifest)) + `}}`
	ad := registrytest.Digest([]byte(artifact))
	referrers := func(repo string) []string {
		t.Helper()
		st, _, body := r.Do(t, "GET", "/v2/"+repo+"/referrers/"+hello.ManifestDigest, r.Token(t, admin, adminPW, "repository:"+repo+":pull"), nil, nil)
		var idx struct{ Manifests []struct{ Digest string } }
		if err := json.Unmarshal(body, &idx); st != 200 || err != nil {
			t.Fatalf("referrers of %s: %d %s", repo, st, body)
		}
		var out []string
		for _, m := range idx.Manifests {
			out = append(out, m.Digest)
		}
		return out
	}
	t.Run("referrers", func(t *testing.T) {
		st, h, body := r.Do(t, "PUT", "/v2/admin/charts/hello/manifests/"+ad, tok, []byte(artifact), map[string]string{"Content-Type": manifestAccept})
		if st != 201 || h.Get("OCI-Subject") != hello.ManifestDigest {
			t.Fatalf("artifact PUT: %d %s", st, body)
		}
		if got := referrers("admin/charts/hello"); !slices.Equal(got, []string{ad}) {
			t.Fatalf("referrers of admin/charts/hello: %v, want %s", got, ad)
		}
		push(admin, adminPW, "admin/charts")
		if got := referrers("admin/charts"); len(got) != 0 {
			t.Fatalf("referrers in admin/charts: %v, want none", got)
		}
	})

	t.Run("reconciler finds nested repositories in storage", func(t *testing.T) {
		ctx := context.Background()
		if err := r.ForgetRepositoryRecords(ctx); err != nil {
			t.Fatal(err)
		}
		res, err := r.Reconcile(ctx)
		slices.Sort(res.Created)
		want := []string{"admin/charts", "admin/charts/hello", "alice/a/b", "alice/a/b/c"}
		slices.Sort(want)
		if err != nil || !slices.Equal(res.Created, want) || res.Errors != 0 {
			t.Fatalf("reconcile: created %v (errors %d), %v; want %v", res.Created, res.Errors, err, want)
		}
		if got := referrers("admin/charts/hello"); !slices.Equal(got, []string{ad}) {
			t.Fatalf("referrers of admin/charts/hello after reconciling: %v", got)
		}
		// A periodic run lists no recorded repository without recorded
		// nested ones (with two-level names, one listing per namespace):
		// admin/charts/hello waits for the full run of a replica's start.
		if err := r.ForgetRepositoryRecords(ctx); err != nil {
			t.Fatal(err)
		}
		if st := r.API(t, admin, adminPW, "POST", "/api/v0/repositories/admin", map[string]any{"name": "charts"}, nil); st != 201 {
			t.Fatalf("recording admin/charts: %d", st)
		}
		res, err = r.Reconcile(ctx)
		slices.Sort(res.Created)
		if err != nil || !slices.Equal(res.Created, []string{"alice/a/b", "alice/a/b/c"}) {
			t.Fatalf("periodic reconcile: created %v, %v", res.Created, err)
		}
		res, err = r.ReconcileFull(ctx)
		if err != nil || !slices.Equal(res.Created, []string{"admin/charts/hello"}) || res.Repositories != 4 {
			t.Fatalf("full reconcile: created %v of %d repositories, %v; want admin/charts/hello", res.Created, res.Repositories, err)
		}
	})

	t.Run("abandoned uploads swept", func(t *testing.T) {
		id, _ := startUpload(t, r, tok, "admin/charts/hello", []byte("abandoned"))
		started := filepath.Join(r.Opts.DataDir, "registry", "docker/registry/v2/repositories/admin/charts/hello/_uploads", id, "startedat")
		writeAged(t, started, []byte(time.Now().Add(-8*24*time.Hour).UTC().Format(time.RFC3339)), 0)
		res, err := r.SweepLeftovers(context.Background(), true)
		if err != nil || !slices.Equal(res.Uploads, []string{"admin/charts/hello/" + id}) || res.Errors != 0 {
			t.Fatalf("sweep: uploads %v (errors %d), %v; want admin/charts/hello/%s", res.Uploads, res.Errors, err, id)
		}
	})

	t.Run("deleting a parent keeps the nested repository", func(t *testing.T) {
		if st := r.API(t, admin, adminPW, "DELETE", "/api/v0/repositories/admin/charts", nil, nil); st != http.StatusNoContent {
			t.Fatalf("deleting admin/charts: %d", st)
		}
		tok := r.Token(t, admin, adminPW, scope("admin/charts"), scope("admin/charts/hello"))
		if st, _ := pull(tok, "admin/charts", "v1"); st != http.StatusNotFound {
			t.Errorf("admin/charts:v1 after its deletion: %d, want 404", st)
		}
		if st, body := pull(tok, "admin/charts/hello", "v1"); st != 200 || string(body) != string(hello.Manifest) {
			t.Fatalf("admin/charts/hello after deleting admin/charts: %d", st)
		}
		if st := r.API(t, admin, adminPW, "GET", "/api/v0/repositories/admin/charts/hello", nil, nil); st != 200 {
			t.Fatalf("record of admin/charts/hello after deleting admin/charts: %d", st)
		}
		if got := referrers("admin/charts/hello"); !slices.Equal(got, []string{ad}) {
			t.Fatalf("referrers of admin/charts/hello after deleting admin/charts: %v", got)
		}
		if st := r.API(t, admin, adminPW, "DELETE", "/api/v0/repositories/admin/charts/hello", nil, nil); st != http.StatusNoContent {
			t.Fatalf("deleting admin/charts/hello: %d", st)
		}
		if st, _ := pull(tok, "admin/charts/hello", "v1"); st != http.StatusNotFound {
			t.Errorf("admin/charts/hello:v1 after its deletion: %d, want 404", st)
		}
		if st := r.API(t, admin, adminPW, "GET", "/api/v0/repositories/admin/charts%2Fhello", nil, nil); st != http.StatusNotFound {
			t.Errorf("record of admin/charts/hello after its deletion: %d, want 404", st)
		}
		if got := referrers("admin/charts/hello"); len(got) != 0 {
			t.Errorf("referrers of the deleted admin/charts/hello: %v", got)
		}
	})
}
