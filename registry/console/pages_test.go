package console_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestWhatEachUserSees: the console shows a user only what the admin API
// would: a private repository the user may not read is "not found", word
// for word like one that does not exist; read-only users get no delete or
// settings forms and are refused if they post them anyway; system pages are
// for system administrators.
func TestWhatEachUserSees(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)

	carol := newBrowser(t, r)
	carol.login("carol", "carol-password")
	_, list := carol.get("/repositories")
	if !strings.Contains(list, "acme/pub") || strings.Contains(list, "acme/app") {
		t.Fatalf("carol's repository list: want acme/pub and not acme/app\n%s", excerpt(list))
	}
	resp, hidden := carol.get("/repositories/acme/app")
	wantPage(t, "carol opens acme/app", resp, hidden, http.StatusNotFound, "There is no repository acme/app, or you may not see it.")
	resp, missing := carol.get("/repositories/acme/nothing")
	wantPage(t, "carol opens acme/nothing", resp, missing, http.StatusNotFound)
	if strings.ReplaceAll(hidden, "acme/app", "X") != strings.ReplaceAll(missing, "acme/nothing", "X") {
		t.Error("a hidden repository's page differs from a missing one's: the difference tells the name exists")
	}
	resp, body := carol.post("/repositories/acme/app", url.Values{"action": {"delete-tag"}, "tag": {"v1"}, "confirmed": {"yes"}})
	wantPage(t, "carol deletes a tag of a hidden repository", resp, body, http.StatusNotFound, "or you may not see it")
	_, org := carol.get("/orgs/acme")
	if strings.Contains(org, "devs") || strings.Contains(org, "acme/app") {
		t.Errorf("carol, no member of acme, sees its teams or private repositories:\n%s", excerpt(org))
	}
	for _, p := range []string{"/users", "/system", "/system/storage", "/system/replicas", "/system/gc", "/system/identity"} {
		resp, body := carol.get(p)
		wantPage(t, "carol opens "+p, resp, body, http.StatusForbidden, "Only a system administrator")
	}
	resp, body = carol.post("/users", url.Values{"action": {"make-admin"}, "user": {"carol"}})
	wantPage(t, "carol makes herself admin", resp, body, http.StatusForbidden)

	bob := newBrowser(t, r) // read-only on acme/app through team readers
	bob.login("bob", "bob-password")
	resp, body = bob.get("/repositories/acme/app")
	wantPage(t, "bob opens acme/app", resp, body, http.StatusOK, "acme/app", "Your access: read-only", "docker pull")
	if strings.Contains(body, `value="delete-tag"`) || strings.Contains(body, `value="settings"`) || strings.Contains(body, "Who has access") {
		t.Error("a read-only user gets delete, settings or access forms")
	}
	resp, body = bob.post("/repositories/acme/app", url.Values{"action": {"delete-tag"}, "tag": {"v1"}, "confirmed": {"yes"}})
	wantPage(t, "bob deletes a tag", resp, body, http.StatusForbidden, "needs admin access")
	resp, body = bob.post("/repositories/acme/app", url.Values{"action": {"settings"}, "visibility": {"public"}})
	wantPage(t, "bob changes visibility", resp, body, http.StatusForbidden, "needs admin access")
	if strings.Contains(body, `href="/users"`) {
		t.Error("a user's navigation shows Users")
	}
	a := newBrowser(t, r)
	a.login(admin, adminPW)
	if _, body := a.get("/repositories"); !strings.Contains(body, `href="/users"`) || !strings.Contains(body, "acme/app") {
		t.Error("the admin's page lacks Users or acme/app")
	}
}

// TestReadableRepositories: the console's one-pass listing gives exactly
// the repositories meta.AccessFor lets each user read, for every kind of
// grant: owner, organization admin, team and user grants, namespace-wide
// team grants, public repositories, nested names, no access.
func TestReadableRepositories(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	api := func(method, path string, in any) {
		t.Helper()
		if st := r.API(t, admin, adminPW, method, path, in, nil); st/100 != 2 {
			t.Fatalf("%s %s: %d", method, path, st)
		}
	}
	api("POST", "/api/v0/accounts", map[string]any{"name": "dave", "password": "dave-password"})
	api("POST", "/api/v0/accounts", map[string]any{"name": "globex", "isOrg": true})
	api("POST", "/api/v0/accounts/globex/teams", map[string]any{"name": "all"})
	api("PUT", "/api/v0/accounts/globex/teams/all/members/carol", nil)
	api("PUT", "/api/v0/accounts/globex/members/dave", map[string]any{"isAdmin": true})
	api("PUT", "/api/v0/repositoryNamespaces/globex/teamAccess/all", map[string]any{"accessLevel": "read-only"})
	for _, rp := range []struct{ ns, name, vis string }{
		{"globex", "one", "private"}, {"globex", "charts/two", "private"}, {"acme", "secret", "private"},
		{"acme", "charts/deep/x", "private"}, {"alice", "mine", "private"}, {"dave", "pub", "public"},
	} {
		api("POST", "/api/v0/repositories/"+rp.ns, map[string]any{"name": rp.name, "visibility": rp.vis})
	}
	api("PUT", "/api/v0/repositories/acme/secret/userAccess/carol", map[string]any{"accessLevel": "read-only"})
	api("PUT", "/api/v0/repositories/acme/charts%2Fdeep%2Fx/teamAccess/readers", map[string]any{"accessLevel": "read-only"})

	store := openStore(t, r)
	all, err := store.Repositories(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "alice", "bob", "carol", "dave", admin} {
		var user *meta.Account
		if name != "" {
			acc, err := store.Account(ctx(t), name)
			if err != nil {
				t.Fatal(err)
			}
			user = &acc
		}
		var want []string
		for _, rp := range all {
			a, err := store.AccessFor(ctx(t), user, rp.Namespace, rp.Name)
			if err != nil {
				t.Fatal(err)
			}
			if a.Level >= meta.Read {
				want = append(want, rp.FullName())
			}
		}
		slices.Sort(want)
		rs, err := store.ReadableRepositories(ctx(t), user)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, rp := range rs {
			got = append(got, rp.FullName())
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("user %q: ReadableRepositories %v, AccessFor allows %v", name, got, want)
		}
		t.Logf("%-6q reads %d of %d repositories", name, len(got), len(all))
	}
}

// TestRepositoryPages: a new repository through the form; a pushed tag
// with its digest, size, platform and pull line; settings and grants; a tag
// deleted after a confirmation, without JavaScript.
func TestRepositoryPages(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	store := openStore(t, r)
	a := newBrowser(t, r)
	a.login(admin, adminPW)

	resp, body := a.get("/repositories/new")
	wantPage(t, "new repository form", resp, body, http.StatusOK, `<option value="admin"`, `<option value="acme"`)
	resp, body = a.post("/repositories/new", url.Values{"namespace": {"acme"}, "name": {"Bad Name"}, "visibility": {"private"}})
	wantPage(t, "an invalid name", resp, body, http.StatusBadRequest, "use", `value="Bad Name"`)
	resp, body = a.post("/repositories/new", url.Values{"namespace": {"acme"}, "name": {"web"}, "visibility": {"private"}, "immutableTags": {"on"}, "description": {"the web tier"}})
	redirectTo(t, "create acme/web", resp, body, "/repositories/acme/web?done=repo-created")
	rec, err := store.Repository(ctx(t), "acme", "web")
	if err != nil || !rec.ImmutableTags || rec.Visibility != "private" || rec.Description != "the web tier" || rec.CreatedBy != admin {
		t.Fatalf("acme/web: %+v %v", rec, err)
	}
	resp, body = a.post("/repositories/new", url.Values{"namespace": {"acme"}, "name": {"web"}, "visibility": {"private"}})
	wantPage(t, "a second acme/web", resp, body, http.StatusConflict, "already exists")

	bob := newBrowser(t, r)
	bob.login("bob", "bob-password")
	resp, body = bob.post("/repositories/new", url.Values{"namespace": {"acme"}, "name": {"bobs"}, "visibility": {"public"}})
	wantPage(t, "bob creates in acme", resp, body, http.StatusForbidden, "you may not create repositories in namespace acme")

	// A push, as a team member with read-write access.
	tok := r.Token(t, "alice", "alice-password", "repository:acme/app:pull,push")
	img, st := r.PushImage(t, tok, "acme/app", "v1", []byte("layer one"))
	if st != http.StatusCreated {
		t.Fatalf("push: %d", st)
	}
	resp, body = a.get("/repositories/acme/app")
	wantPage(t, "acme/app with a tag", resp, body, http.StatusOK, ">v1<", strings.TrimPrefix(img.ManifestDigest, "sha256:")[:12],
		"linux/amd64", "docker pull "+r.Host+"/acme/app:v1", "team devs", "read-write")

	resp, body = a.post("/repositories/acme/app", url.Values{"action": {"grant-user"}, "user": {"carol"}, "level": {"read-only"}})
	redirectTo(t, "grant carol", resp, body, "/repositories/acme/app?done=grant-saved")
	carol := newBrowser(t, r)
	carol.login("carol", "carol-password")
	resp, body = carol.get("/repositories/acme/app")
	wantPage(t, "carol after her grant", resp, body, http.StatusOK, ">v1<")
	resp, body = a.post("/repositories/acme/app", url.Values{"action": {"revoke-user"}, "user": {"carol"}})
	redirectTo(t, "revoke carol", resp, body, "/repositories/acme/app?done=grant-removed")
	if resp, _ := carol.get("/repositories/acme/app"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("carol after the revocation: %d, want 404", resp.StatusCode)
	}

	resp, body = a.post("/repositories/acme/app", url.Values{"action": {"settings"}, "visibility": {"public"}, "description": {"now public"}})
	redirectTo(t, "settings", resp, body, "/repositories/acme/app?done=repo-saved")
	if rec, _ := store.Repository(ctx(t), "acme", "app"); rec.Visibility != "public" || rec.Description != "now public" {
		t.Errorf("after the settings form: %+v", rec)
	}

	resp, body = a.post("/repositories/acme/app", url.Values{"action": {"delete-tag"}, "tag": {"../../app/_manifests"}, "confirmed": {"yes"}})
	wantPage(t, "a path as tag", resp, body, http.StatusBadRequest, "is not a tag name")

	// Delete the tag: first the confirmation page (no JavaScript), then the deletion.
	resp, body = a.post("/repositories/acme/app", url.Values{"action": {"delete-tag"}, "tag": {"v1"}})
	wantPage(t, "delete without confirmation", resp, body, http.StatusOK, "Are you sure?", `name="confirmed" value="yes"`, "Delete tag v1")
	if st, _, _ := r.Do(t, "GET", "/v2/acme/app/manifests/v1", tok, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}); st != http.StatusOK {
		t.Fatalf("the tag went before the confirmation: %d", st)
	}
	resp, body = a.post("/repositories/acme/app", url.Values{"action": {"delete-tag"}, "tag": {"v1"}, "confirmed": {"yes"}})
	redirectTo(t, "delete confirmed", resp, body, "/repositories/acme/app?done=tag-deleted")
	if st, _, _ := r.Do(t, "GET", "/v2/acme/app/manifests/v1", tok, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}); st != http.StatusNotFound {
		t.Fatalf("pull of the deleted tag: %d, want 404", st)
	}
	resp, body = a.get("/repositories/acme/app?done=tag-deleted")
	wantPage(t, "after the deletion", resp, body, http.StatusOK, "Tag deleted.", "No tags yet")

	resp, body = a.post("/repositories/acme/web", url.Values{"action": {"delete-repo"}, "confirmed": {"yes"}})
	redirectTo(t, "delete acme/web", resp, body, "/repositories?done=repo-deleted")
	if _, err := store.Repository(ctx(t), "acme", "web"); err == nil {
		t.Error("acme/web outlived its deletion")
	}
}

// TestOrganizationsAndUsers: organizations, teams, members and grants, and
// the users page's create, deactivate, admin and password forms.
func TestOrganizationsAndUsers(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	store := openStore(t, r)
	a := newBrowser(t, r)
	a.login(admin, adminPW)

	resp, body := a.post("/orgs", url.Values{"name": {"web"}})
	redirectTo(t, "create org", resp, body, "/orgs/web?done=org-created")
	resp, body = a.post("/orgs", url.Values{"name": {"Not Valid"}})
	wantPage(t, "invalid org name", resp, body, http.StatusBadRequest, "account name")
	resp, body = a.post("/orgs/web", url.Values{"action": {"create-team"}, "team": {"ops"}})
	redirectTo(t, "create team", resp, body, "/orgs/web/teams/ops?done=team-created")
	resp, body = a.post("/orgs/web/teams/ops", url.Values{"action": {"add-member"}, "user": {"carol"}})
	redirectTo(t, "add carol to ops", resp, body, "/orgs/web/teams/ops?done=member-saved")
	resp, body = a.post("/orgs/web", url.Values{"action": {"add-member"}, "user": {"alice"}, "isAdmin": {"on"}})
	redirectTo(t, "alice org admin", resp, body, "/orgs/web?done=member-saved")
	resp, body = a.post("/orgs/web", url.Values{"action": {"grant-namespace"}, "team": {"ops"}, "level": {"read-write"}})
	redirectTo(t, "namespace grant", resp, body, "/orgs/web?done=grant-saved")
	if gs, _ := store.NamespaceTeamGrants(ctx(t), "web"); len(gs) != 1 || gs[0].Level != meta.ReadWrite {
		t.Fatalf("namespace grants of web: %+v", gs)
	}
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/repositories/web", map[string]any{"name": "site"}, nil); st != 201 {
		t.Fatal(st)
	}
	resp, body = a.post("/orgs/web/teams/ops", url.Values{"action": {"grant-repo"}, "repo": {"site"}, "level": {"admin"}})
	redirectTo(t, "repo grant", resp, body, "/orgs/web/teams/ops?done=grant-saved")
	resp, body = a.get("/orgs/web/teams/ops")
	wantPage(t, "team page", resp, body, http.StatusOK, "carol", "web/site", "admin", "Namespace-wide: <strong>read-write</strong>")
	resp, body = a.get("/orgs/web")
	wantPage(t, "org page", resp, body, http.StatusOK, "ops", "alice", "organization admin", "web/site")

	// alice administers web: she manages it without being a system admin.
	alice := newBrowser(t, r)
	alice.login("alice", "alice-password")
	resp, body = alice.post("/orgs/web/teams/ops", url.Values{"action": {"remove-member"}, "user": {"carol"}})
	redirectTo(t, "alice removes carol", resp, body, "/orgs/web/teams/ops?done=member-removed")
	carol := newBrowser(t, r)
	carol.login("carol", "carol-password")
	resp, body = carol.post("/orgs/web", url.Values{"action": {"add-member"}, "user": {"carol"}, "isAdmin": {"on"}})
	wantPage(t, "carol makes herself org admin", resp, body, http.StatusForbidden, "only an admin of organization web")

	resp, body = a.post("/orgs/web/teams/ops", url.Values{"action": {"delete-team"}})
	wantPage(t, "delete team asks", resp, body, http.StatusOK, "Are you sure?")
	resp, body = a.post("/orgs/web/teams/ops", url.Values{"action": {"delete-team"}, "confirmed": {"yes"}})
	redirectTo(t, "delete team", resp, body, "/orgs/web?done=team-deleted")

	// Users.
	resp, body = a.post("/users", url.Values{"action": {"create"}, "user": {"dave"}, "password": {"short"}})
	wantPage(t, "short password", resp, body, http.StatusBadRequest, "at least 8 characters")
	resp, body = a.post("/users", url.Values{"action": {"create"}, "user": {"dave"}, "password": {"dave-password"}, "fullName": {"Dave D"}})
	redirectTo(t, "create dave", resp, body, "/users?done=user-created")
	for _, step := range []struct {
		action string
		check  func(meta.Account) bool
	}{
		{"make-admin", func(a meta.Account) bool { return a.IsAdmin }},
		{"revoke-admin", func(a meta.Account) bool { return !a.IsAdmin }},
		{"deactivate", func(a meta.Account) bool { return !a.IsActive }},
		{"activate", func(a meta.Account) bool { return a.IsActive }},
	} {
		resp, body = a.post("/users", url.Values{"action": {step.action}, "user": {"dave"}})
		redirectTo(t, step.action, resp, body, "/users?done=user-saved")
		if acc, err := store.Account(ctx(t), "dave"); err != nil || !step.check(acc) {
			t.Fatalf("after %s: %+v %v", step.action, acc, err)
		}
	}
	resp, body = a.post("/users", url.Values{"action": {"reset-password"}, "user": {"dave"}, "password": {"dave-new-password"}})
	redirectTo(t, "reset password", resp, body, "/users?done=password-changed")
	dave := newBrowser(t, r)
	dave.login("dave", "dave-new-password")
	resp, body = a.get("/users")
	wantPage(t, "users page", resp, body, http.StatusOK, "dave", "Dave D", "carol")

	// A user's own password.
	resp, body = dave.post("/account", url.Values{"old": {"dave-new-password"}, "new": {"dave-third-pw"}, "repeat": {"dave-third-pw"}})
	redirectTo(t, "own password", resp, body, "/login?signedout=1")
	if resp, _ := dave.get("/repositories"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("dave's session after his password change: %d, want 401", resp.StatusCode)
	}
	dave.login("dave", "dave-third-pw")
}

// TestSystemPages: general settings; storage tested before it is saved
// (a bucket that does not answer is refused with nothing saved, a working
// one is saved); replicas from cluster_status; garbage collection's
// schedule, a run and its record.
func TestSystemPages(t *testing.T) {
	r := registrytest.StartNew(t)
	store := openStore(t, r)
	a := newBrowser(t, r)
	a.login(admin, adminPW)

	resp, body := a.get("/system")
	wantPage(t, "general", resp, body, http.StatusOK, "Version", "aaaaaaaaaaaa", r.URL)
	resp, body = a.post("/system", url.Values{"externalURL": {r.URL}, "logLevel": {"warn"}})
	redirectTo(t, "save general", resp, body, "/system?done=settings-saved")
	if st, _, _ := store.Settings(ctx(t)); st.LogLevel != "warn" || st.ExternalURL != r.URL {
		t.Errorf("settings after the form: %+v", st)
	}

	resp, body = a.get("/system/storage")
	wantPage(t, "storage", resp, body, http.StatusOK, `value="filesystem" checked`)
	bad := url.Values{"type": {"s3"}, "bucket": {"nowhere"}, "region": {"us-east-1"}, "regionEndpoint": {"http://127.0.0.1:9"},
		"accessKey": {"k"}, "secretKey": {"s"}, "forcePathStyle": {"on"}, "action": {"save"}}
	resp, body = a.post("/system/storage", bad)
	wantPage(t, "unreachable S3", resp, body, http.StatusBadRequest, "The test failed, so nothing was saved")
	if st, _, _ := store.Settings(ctx(t)); st.Storage.Type != "filesystem" {
		t.Fatalf("a failed test saved the storage: %+v", st.Storage)
	}
	resp, body = a.post("/system/storage", url.Values{"type": {"s3"}, "action": {"test"}})
	wantPage(t, "S3 without a bucket", resp, body, http.StatusBadRequest, "s3 needs at least region and bucket")
	resp, body = a.post("/system/storage", url.Values{"type": {"filesystem"}, "action": {"save"}})
	redirectTo(t, "filesystem saved", resp, body, "/system/storage?done=storage-saved")

	t.Run("S3", func(t *testing.T) {
		s3 := registrytest.StartS3(t)
		form := url.Values{"type": {"s3"}, "bucket": {s3.Bucket}, "region": {"us-east-1"}, "regionEndpoint": {s3.Endpoint},
			"accessKey": {s3.Access}, "secretKey": {s3.Secret}, "forcePathStyle": {"on"}, "action": {"test"}}
		resp, body := a.post("/system/storage", form)
		wantPage(t, "test S3", resp, body, http.StatusOK, "these settings work")
		form.Set("action", "save")
		resp, body = a.post("/system/storage", form)
		redirectTo(t, "save S3", resp, body, "/system/storage?done=storage-saved")
		st, _, _ := store.Settings(ctx(t))
		if st.Storage.Type != "s3" || st.Storage.S3.Bucket != s3.Bucket || st.Storage.S3.SecretKey != s3.Secret {
			t.Fatalf("storage after saving S3: %+v", st.Storage)
		}
		// Every replica switches within seconds; then a push lands in the bucket.
		tok := r.Token(t, admin, adminPW, "repository:admin/ons3:pull,push")
		link := filepath.Join(s3.ObjectDir(), "docker/registry/v2/repositories/admin/ons3/_manifests/tags/v1/current/link")
		for deadline := time.Now().Add(15 * time.Second); ; {
			if _, st := r.PushImage(t, tok, "admin/ons3", "v1", []byte("a layer on S3")); st == http.StatusCreated {
				if _, err := os.Stat(link); err == nil {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("pushes do not reach the S3 bucket 15 s after the Storage page saved it")
			}
			time.Sleep(200 * time.Millisecond)
		}
		// The page shows the secret masked; sent back masked, the stored one is kept and tested.
		_, body = a.get("/system/storage")
		if strings.Contains(body, s3.Secret) || !strings.Contains(body, `value="********"`) {
			t.Fatal("the storage page shows the S3 secret key")
		}
		form.Set("secretKey", "********")
		resp, body = a.post("/system/storage", form)
		redirectTo(t, "save S3 with the kept secret", resp, body, "/system/storage?done=storage-saved")
		if st, _, _ := store.Settings(ctx(t)); st.Storage.S3.SecretKey != s3.Secret {
			t.Fatal("the masked secret replaced the stored one")
		}
		resp, body = a.post("/system/storage", url.Values{"type": {"filesystem"}, "action": {"save"}})
		redirectTo(t, "back to filesystem", resp, body, "/system/storage?done=storage-saved")
	})

	resp, body = a.get("/system/replicas")
	wantPage(t, "replicas", resp, body, http.StatusOK, "aaaaaaaaaaaa", "healthy", "has its quorum", "leader")

	resp, body = a.get("/system/gc")
	wantPage(t, "gc", resp, body, http.StatusOK, "No garbage collection has run yet", "Not scheduled now")
	resp, body = a.post("/system/gc", url.Values{"action": {"schedule"}, "schedule": {"not a schedule"}})
	wantPage(t, "bad schedule", resp, body, http.StatusBadRequest, "schedule")
	resp, body = a.post("/system/gc", url.Values{"action": {"schedule"}, "schedule": {"0 0 3 * * *"}})
	redirectTo(t, "schedule", resp, body, "/system/gc?done=gc-scheduled")
	if c, _, err := store.CronRecord(ctx(t), "onlinegc"); err != nil || c.Schedule != "0 0 3 * * *" {
		t.Fatalf("gc cron: %+v %v", c, err)
	}
	resp, body = a.post("/system/gc", url.Values{"action": {"run"}})
	redirectTo(t, "run", resp, body, "/system/gc?done=gc-started")
	jobs, err := store.Jobs(ctx(t))
	if err != nil || len(jobs) != 1 || jobs[0].Action != "onlinegc" {
		t.Fatalf("jobs after run: %+v %v", jobs, err)
	}
	resp, body = a.get("/system/gc")
	wantPage(t, "gc after a run", resp, body, http.StatusOK, "Next run:", jobs[0].ID)
	resp, body = a.post("/system/gc", url.Values{"action": {"unschedule"}})
	redirectTo(t, "unschedule", resp, body, "/system/gc?done=gc-unscheduled")
}

// TestPagesWithoutJavaScript: every read-only page renders completely on
// the server (this client runs no script), loads nothing from another
// origin, and carries the headers that keep it from being framed or cached.
func TestPagesWithoutJavaScript(t *testing.T) {
	r := registrytest.StartNew(t)
	registrytest.SetupAccounts(t, r, admin, adminPW)
	a := newBrowser(t, r)
	a.login(admin, adminPW)
	for _, p := range []string{"/repositories", "/repositories?q=app", "/repositories/new", "/repositories/acme/app", "/orgs", "/orgs/acme",
		"/orgs/acme/teams/devs", "/users", "/account", "/system", "/system/storage", "/system/replicas", "/system/gc",
		"/account/tokens", "/system/identity", "/orgs/acme/serviceaccounts"} {
		resp, body := a.get(p)
		wantPage(t, p, resp, body, http.StatusOK, "</html>", `<link rel="stylesheet" href="/static/console.css">`)
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") || resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v", p, resp.Header)
		}
		for _, attr := range []string{`src="http`, `href="http`, `action="http`} {
			if strings.Contains(body, attr) {
				t.Errorf("%s loads or links to another origin (%s)", p, attr)
			}
		}
	}
	resp, body := a.get("/static/console.css")
	if resp.StatusCode != 200 || !strings.Contains(body, "--accent") {
		t.Fatalf("stylesheet: %d", resp.StatusCode)
	}
	resp, body = a.get("/no/such/page")
	wantPage(t, "unknown page", resp, body, http.StatusNotFound, "There is no page at /no/such/page")
	// The APIs next to the console answer as before.
	if st, _, _ := r.Do(t, "GET", "/v2/", "", nil, nil); st != http.StatusUnauthorized {
		t.Errorf("/v2/ without credentials: %d, want 401", st)
	}
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/accounts", nil, nil); st != 200 {
		t.Errorf("admin API: %d", st)
	}
}

// TestConsoleChangesAudited: what the console changes lands in the audit
// trail as the admin API call it made, with the signed-in user as actor.
func TestConsoleChangesAudited(t *testing.T) {
	r := registrytest.StartNew(t)
	a := newBrowser(t, r)
	a.login(admin, adminPW)
	resp, body := a.post("/orgs", url.Values{"name": {"audited"}})
	redirectTo(t, "create org", resp, body, "/orgs/audited")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var evs struct {
			Events []meta.Event `json:"events"`
		}
		r.API(t, admin, adminPW, "GET", "/api/v0/events", nil, &evs)
		for _, ev := range evs.Events {
			if ev.Target.Name == "POST /api/v0/accounts" && ev.Actor == admin && ev.Type == "CREATE" && ev.Status == http.StatusCreated {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit event for the organization the console created: %+v", evs.Events)
		}
	}
}
