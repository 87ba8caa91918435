package syncer_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/identity/ldap/slapdtest"
	"github.com/dtr-registry/dtr/registry/identity/syncer"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

const (
	admin   = registrytest.AdminUser
	adminPW = registrytest.AdminPassword
	alicePW = "alice-ldap-pw-1"
	bobPW   = "bob-ldap-pw-12"
	carolPW = "carol-ldap-pw-1"
)

// pulls reports whether a fresh token for user grants pull on repo, as the
// token server decides it (docker login, then a pull).
func pulls(t *testing.T, r *registrytest.Replica, user, pw, repo string) bool {
	t.Helper()
	tok := r.Token(t, user, pw, "repository:"+repo+":pull")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Access []struct {
			Type, Name string
			Actions    []string
		} `json:"access"`
	}
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	for _, a := range claims.Access {
		if a.Type == "repository" && a.Name == repo && slices.Contains(a.Actions, "pull") {
			return true
		}
	}
	return false
}

// tokenStatus is the status of GET /auth/token with Basic credentials.
func tokenStatus(t *testing.T, r *registrytest.Replica, user, pw string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", r.URL+"/auth/token?service=dtr&scope="+url.QueryEscape("repository:eng/app:pull"), nil)
	req.SetBasicAuth(user, pw)
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Details string `json:"details"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Details
}

// syncNow queues an ldap_sync job through the jobs API and waits for it.
func syncNow(t *testing.T, r *registrytest.Replica) syncer.Result {
	t.Helper()
	var j meta.Job
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/jobs", map[string]any{"action": "ldap_sync"}, &j); st != 202 {
		t.Fatalf("queueing ldap_sync: %d", st)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if st := r.API(t, admin, adminPW, "GET", "/api/v0/jobs/"+j.ID, nil, &j); st != 200 {
			t.Fatalf("job %s: %d", j.ID, st)
		}
		if j.Finished() {
			if j.Status != meta.JobDone {
				var lines []meta.JobLogLine
				r.API(t, admin, adminPW, "GET", "/api/v0/jobs/"+j.ID+"/logs", nil, &lines)
				t.Fatalf("sync %s: %s %s\n%v", j.ID, j.Status, j.Error, lines)
			}
			var res syncer.Result
			if err := json.Unmarshal(j.Progress, &res); err != nil {
				t.Fatalf("progress %s: %v", j.Progress, err)
			}
			return res
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("sync %s still %s after 30 s", j.ID, j.Status)
	return syncer.Result{}
}

// TestLDAPSource runs a replica against a real slapd: settings with the
// write-only reader password, the test call, sign-in through the
// directory, group-to-team sync deciding a pull grant, removal from the
// group and from the directory within one sync, break-glass local
// accounts, and a directory that is down.
func TestLDAPSource(t *testing.T) {
	s := slapdtest.Start(t)
	s.AddUser("alice", "Alice Liddell", alicePW)
	s.AddUser("bob", "Bob Builder", bobPW)
	s.AddUser("carol", "Carol Local", carolPW)
	s.AddGroup("admins", "bob")
	s.AddGroup("devs", "alice", "bob")
	r := registrytest.StartNew(t)

	api := func(method, path string, in any, want int) []byte {
		t.Helper()
		var raw json.RawMessage
		if got := r.API(t, admin, adminPW, method, path, in, &raw); got != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, got, want, raw)
		}
		return raw
	}
	// A local carol exists before the source: she keeps her account.
	api("POST", "/api/v0/accounts", map[string]any{"name": "carol", "password": "carol-local-pw"}, 201)
	api("POST", "/api/v0/accounts", map[string]any{"name": "eng", "isOrg": true}, 201)
	api("POST", "/api/v0/accounts/eng/teams", map[string]any{"name": "devs"}, 201)
	api("POST", "/api/v0/repositories/eng", map[string]any{"name": "app", "visibility": "private"}, 201)
	api("PUT", "/api/v0/repositories/eng/app/teamAccess/devs", map[string]any{"accessLevel": "read-only"}, 200)

	ldapSettings := map[string]any{
		"serverURL": s.URL, "startTLS": true, "rootCerts": string(s.CAPEM),
		"readerDN": slapdtest.ReaderDN, "readerPassword": slapdtest.ReaderPW,
		"userSearch":   map[string]any{"baseDN": slapdtest.People, "filter": "(objectClass=inetOrgPerson)", "usernameAttr": "uid"},
		"adminGroupDN": slapdtest.GroupDN("admins"),
	}
	// Linking a team needs the LDAP source first.
	api("PUT", "/api/v0/accounts/eng/teams/devs/memberSyncConfig", map[string]any{"enableSync": true, "groupDN": slapdtest.GroupDN("devs")}, 400)
	api("PUT", "/api/v0/meta/settings/identity", map[string]any{"kind": "ldap", "syncSchedule": "@hourly", "ldap": ldapSettings}, 200)
	api("PUT", "/api/v0/accounts/eng/teams/devs/memberSyncConfig", map[string]any{"enableSync": true, "groupDN": slapdtest.GroupDN("devs")}, 200)
	// A second replica reads the same settings and accounts.
	r2 := registrytest.Join(t, r, admin, adminPW, "bbbbbbbbbbbb")

	t.Run("secrets are write-only", func(t *testing.T) {
		for _, p := range []string{"/api/v0/meta/settings/identity", "/api/v0/meta/settings"} {
			raw := api("GET", p, nil, 200)
			if strings.Contains(string(raw), slapdtest.ReaderPW) || !strings.Contains(string(raw), meta.SecretMask) {
				t.Fatalf("GET %s shows the reader password or no mask: %s", p, raw)
			}
		}
		// A PUT with the mask keeps the password: sign-in still works below.
		masked := map[string]any{}
		for k, v := range ldapSettings {
			masked[k] = v
		}
		masked["readerPassword"] = meta.SecretMask
		api("PUT", "/api/v0/meta/settings/identity", map[string]any{"kind": "ldap", "ldap": masked}, 200)
		var c meta.Cron
		if st := r.API(t, admin, adminPW, "GET", "/api/v0/crons/ldap_sync", nil, &c); st != 200 || c.Schedule != "@hourly" {
			t.Fatalf("ldap_sync cron: %d %+v", st, c)
		}
		// Only administrators read or change the settings.
		api("POST", "/api/v0/accounts", map[string]any{"name": "dave", "password": "dave-local-pw"}, 201)
		if st := r.API(t, "dave", "dave-local-pw", "GET", "/api/v0/meta/settings/identity", nil, nil); st != 403 {
			t.Fatalf("a user read the identity settings: %d", st)
		}
		if st := r.API(t, "dave", "dave-local-pw", "POST", "/api/v0/meta/settings/identity/test", map[string]any{"username": "alice", "password": alicePW}, nil); st != 403 {
			t.Fatalf("a user ran the test call: %d", st)
		}
		if st := r.API(t, "dave", "dave-local-pw", "PUT", "/api/v0/accounts/eng/teams/devs/memberSyncConfig", map[string]any{"enableSync": true, "groupDN": slapdtest.GroupDN("admins")}, nil); st != 403 {
			t.Fatalf("a user linked a team: %d", st)
		}
		if st := r.API(t, "dave", "dave-local-pw", "GET", "/api/v0/accounts/eng/teams/devs/memberSyncConfig", nil, nil); st != 403 {
			t.Fatalf("a non-member read a team's link: %d", st)
		}
		if st := r.API(t, "", "", "GET", "/api/v0/meta/settings/identity", nil, nil); st != 401 {
			t.Fatalf("anonymous: %d", st)
		}
	})

	t.Run("test call", func(t *testing.T) {
		test := func(in map[string]any) syncer.TestResult {
			t.Helper()
			var res syncer.TestResult
			raw := api("POST", "/api/v0/meta/settings/identity/test", in, 200)
			if err := json.Unmarshal(raw, &res); err != nil {
				t.Fatal(err)
			}
			return res
		}
		if res := test(map[string]any{"username": "alice", "password": alicePW}); !res.OK || !res.Found || res.IsAdmin || !slices.Equal(res.Teams, []string{"eng/devs"}) {
			t.Fatalf("alice: %+v", res)
		}
		if res := test(map[string]any{"username": "bob", "password": bobPW}); !res.Found || !res.IsAdmin {
			t.Fatalf("bob: %+v", res)
		}
		if res := test(map[string]any{"username": "alice", "password": "wrong"}); !res.OK || res.Found || !strings.Contains(res.Message, "refused") {
			t.Fatalf("wrong password: %+v", res)
		}
		if res := test(map[string]any{"username": "*)(uid=*", "password": alicePW}); res.Found {
			t.Fatalf("injection: %+v", res)
		}
		if res := test(map[string]any{"username": "carol", "password": carolPW}); !res.Found || !res.LocalAccount {
			t.Fatalf("carol, a local account: %+v", res)
		}
		wrong := map[string]any{}
		for k, v := range ldapSettings {
			wrong[k] = v
		}
		wrong["readerPassword"] = "not-the-reader-password"
		res := test(map[string]any{"username": "alice", "password": alicePW, "identity": map[string]any{"kind": "ldap", "ldap": wrong}})
		if res.OK || res.Found || !strings.Contains(res.Message, "wrong ldap.readerDN or ldap.readerPassword") {
			t.Fatalf("wrong reader password: %+v", res)
		}
		wrong["readerPassword"], wrong["serverURL"], wrong["startTLS"] = meta.SecretMask, "ldaps://127.0.0.1:1", false
		res = test(map[string]any{"username": "alice", "password": alicePW, "identity": map[string]any{"kind": "ldap", "ldap": wrong}})
		if res.OK || !strings.Contains(res.Message, "cannot connect") {
			t.Fatalf("unreachable server: %+v", res)
		}
		// The test call did not change the saved settings.
		if res := test(map[string]any{"username": "alice", "password": alicePW}); !res.Found {
			t.Fatalf("after testing other settings: %+v", res)
		}
	})

	t.Run("sign-in and group sync", func(t *testing.T) {
		if pulls(t, r, "alice", alicePW, "eng/app") {
			t.Fatal("alice pulls before a sync put her in the team")
		}
		var acc meta.Account
		if st := r.API(t, admin, adminPW, "GET", "/api/v0/accounts/alice", nil, &acc); st != 200 || acc.Source != "ldap" || !acc.IsActive || acc.IsAdmin {
			t.Fatalf("alice's account after sign-in: %d %+v", st, acc)
		}
		// Her password is the directory's: dtr does not set one.
		if st := r.API(t, "alice", alicePW, "POST", "/api/v0/accounts/alice/changePassword", map[string]any{"oldPassword": alicePW, "newPassword": "a-new-password"}, nil); st != 400 {
			t.Fatalf("changing a directory user's password in dtr: %d, want 400", st)
		}
		// bob is an administrator through the admin group.
		if st := r.API(t, "bob", bobPW, "GET", "/api/v0/meta/settings/identity", nil, nil); st != 200 {
			t.Fatalf("bob, in the admin group: %d", st)
		}
		res := syncNow(t, r)
		if res.Added < 2 || res.Deactivated != 0 {
			t.Fatalf("first sync: %+v", res)
		}
		if !pulls(t, r, "alice", alicePW, "eng/app") || !pulls(t, r2, "alice", alicePW, "eng/app") {
			t.Fatal("alice, in group devs, does not pull after the sync")
		}
		// Out of the group: the next sync takes the team's grant away.
		s.RemoveMember("devs", "alice")
		if res := syncNow(t, r); res.Removed != 1 {
			t.Fatalf("sync after removal: %+v", res)
		}
		if pulls(t, r, "alice", alicePW, "eng/app") || pulls(t, r2, "alice", alicePW, "eng/app") {
			t.Fatal("alice still pulls after she left group devs and a sync ran")
		}
		if !pulls(t, r, "bob", bobPW, "eng/app") {
			t.Fatal("bob lost the grant")
		}
	})

	t.Run("removed from the directory", func(t *testing.T) {
		// A token from the second replica, used there: the deactivation
		// a sync on the first writes ends it.
		tok := r2.Token(t, "bob", bobPW, "repository:eng/app:pull")
		if st, _, _ := r2.Do(t, "GET", "/v2/eng/app/tags/list", tok, nil, nil); st == 401 {
			t.Fatalf("bob's token refused before the sync: %d", st)
		}
		s.Delete(slapdtest.UserDN("bob"))
		if res := syncNow(t, r); res.Deactivated != 1 {
			t.Fatalf("sync after deleting bob: %+v", res)
		}
		var acc meta.Account
		if r.API(t, admin, adminPW, "GET", "/api/v0/accounts/bob", nil, &acc); acc.IsActive {
			t.Fatalf("bob still active: %+v", acc)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			st, _, _ := r2.Do(t, "GET", "/v2/eng/app/tags/list", tok, nil, nil)
			if st == 401 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("bob's token still works on the second replica 2 s after the sync: %d", st)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if st, _ := tokenStatus(t, r, "bob", bobPW); st != 401 {
			t.Fatalf("bob signs in after leaving the directory: %d", st)
		}
	})

	t.Run("back in the directory", func(t *testing.T) {
		s.AddUser("bob", "Bob Builder", bobPW)
		if res := syncNow(t, r); res.Updated != 1 {
			t.Fatalf("sync after bob came back: %+v", res)
		}
		if st, _ := tokenStatus(t, r, "bob", bobPW); st != 200 {
			t.Fatalf("bob back in the directory: %d", st)
		}
	})

	t.Run("administrator deactivates", func(t *testing.T) {
		api("PATCH", "/api/v0/accounts/alice", map[string]any{"isActive": false}, 200)
		if st, _ := tokenStatus(t, r, "alice", alicePW); st != 401 {
			t.Fatalf("alice, deactivated in dtr, signs in through the directory: %d", st)
		}
		syncNow(t, r)
		var acc meta.Account
		if r.API(t, admin, adminPW, "GET", "/api/v0/accounts/alice", nil, &acc); acc.IsActive {
			t.Fatal("a sync activated alice again")
		}
		api("PATCH", "/api/v0/accounts/alice", map[string]any{"isActive": true}, 200)
		if st, _ := tokenStatus(t, r, "alice", alicePW); st != 200 {
			t.Fatalf("alice activated again: %d", st)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, body := range []map[string]any{
			{"kind": "kerberos"},
			{"kind": "ldap"},
			{"kind": "ldap", "ldap": map[string]any{"serverURL": "ldap://x.example.org", "readerDN": "cn=r", "readerPassword": "p", "userSearch": map[string]any{"baseDN": "dc=x", "usernameAttr": "uid"}}},
			{"kind": "ldap", "syncSchedule": "every hour", "ldap": ldapSettings},
			{"kind": "ucp", "ucp": map[string]any{"url": "http://ucp.example.org", "username": "a", "password": "b"}},
			{"kind": "ldap", "ldap": ldapSettings, "extra": true},
		} {
			if st := r.API(t, admin, adminPW, "PUT", "/api/v0/meta/settings/identity", body, nil); st != 400 {
				t.Errorf("PUT %v: %d, want 400", body, st)
			}
		}
		if st := r.API(t, admin, adminPW, "POST", "/api/v0/jobs", map[string]any{"action": "ldap_sync", "parameters": map[string]string{"x": "y"}}, nil); st != 400 {
			t.Errorf("ldap_sync with parameters: %d", st)
		}
		api("PUT", "/api/v0/accounts/eng/teams/devs/memberSyncConfig", map[string]any{"enableSync": true, "groupDN": "devs"}, 400)
		api("PUT", "/api/v0/accounts/eng/teams/nosuch/memberSyncConfig", map[string]any{"enableSync": true, "groupDN": slapdtest.GroupDN("devs")}, 404)
		// The settings still work.
		if st, _ := tokenStatus(t, r, "alice", alicePW); st != 200 {
			t.Fatalf("alice after refused changes: %d", st)
		}
	})

	t.Run("local accounts keep working", func(t *testing.T) {
		// carol's local password works; the directory's does not take
		// her account over.
		if st, _ := tokenStatus(t, r, "carol", "carol-local-pw"); st != 200 {
			t.Fatalf("local carol: %d", st)
		}
		if st, _ := tokenStatus(t, r, "carol", carolPW); st != 401 {
			t.Fatalf("directory carol took over the local account: %d", st)
		}
		var acc meta.Account
		if r.API(t, admin, adminPW, "GET", "/api/v0/accounts/carol", nil, &acc); acc.Source != "" {
			t.Fatalf("carol's account changed: %+v", acc)
		}
	})

	t.Run("name case does not escape the lockout", func(t *testing.T) {
		s.AddUser("dan", "Dan", "dan-ldap-password")
		for i, name := range []string{"dan", "Dan", "DAN", "dAn", "daN", "DAn"} {
			if st, _ := tokenStatus(t, r, name, "wrong-password"); st != 401 {
				t.Fatalf("wrong password %d as %q: %d", i, name, st)
			}
		}
		if st, _ := tokenStatus(t, r, "dan", "dan-ldap-password"); st != 429 {
			t.Fatalf("after 6 failures under names differing in case: %d, want 429", st)
		}
	})

	t.Run("directory down", func(t *testing.T) {
		s.Stop()
		for i := 0; i < 8; i++ { // past the free failures: never a lockout
			st, details := tokenStatus(t, r, "alice", "some-password")
			if st != 503 || !strings.Contains(details, "identity source") {
				t.Fatalf("attempt %d with the directory down: %d %q, want 503 naming the identity source", i, st, details)
			}
		}
		if st := r.API(t, "alice", "some-password", "GET", "/api/v0/accounts/alice", nil, nil); st != 503 {
			t.Fatalf("admin API with the directory down: %d", st)
		}
		// Break glass: the local administrator signs in.
		if st, _ := tokenStatus(t, r, admin, adminPW); st != 200 {
			t.Fatalf("local admin with the directory down: %d", st)
		}
		var j meta.Job
		r.API(t, admin, adminPW, "POST", "/api/v0/jobs", map[string]any{"action": "ldap_sync"}, &j)
		deadline := time.Now().Add(30 * time.Second)
		for !j.Finished() && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			r.API(t, admin, adminPW, "GET", "/api/v0/jobs/"+j.ID, nil, &j)
		}
		if j.Status != meta.JobErrored || !strings.Contains(j.Error, "cannot connect") {
			t.Fatalf("sync with the directory down: %s %q", j.Status, j.Error)
		}
		// A failed sync changes nothing: alice's account stands.
		var acc meta.Account
		if r.API(t, admin, adminPW, "GET", "/api/v0/accounts/alice", nil, &acc); !acc.IsActive {
			t.Fatalf("alice deactivated by a failed sync: %+v", acc)
		}
	})
}

// TestSignInFlood: 200 concurrent sign-ins with names the directory does
// not know are refused (401, or 429 once the address is locked; 503 only
// when the replica is busy), never a server error, and the directory
// and the replica keep answering.
func TestSignInFlood(t *testing.T) {
	s := slapdtest.Start(t)
	s.AddUser("alice", "Alice", alicePW)
	r := registrytest.StartNew(t)
	if st := r.API(t, admin, adminPW, "PUT", "/api/v0/meta/settings/identity", map[string]any{"kind": "ldap", "ldap": map[string]any{
		"serverURL": s.LDAPSURL, "rootCerts": string(s.CAPEM), "readerDN": slapdtest.ReaderDN, "readerPassword": slapdtest.ReaderPW,
		"userSearch": map[string]any{"baseDN": slapdtest.People, "usernameAttr": "uid"},
	}}, nil); st != 200 {
		t.Fatalf("settings: %d", st)
	}
	const n = 200
	statuses := make(chan int, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		go func() {
			st, _ := tokenStatus(t, r, "flood"+strconv.Itoa(i), "wrong-password")
			statuses <- st
		}()
	}
	count := map[int]int{}
	for i := 0; i < n; i++ {
		count[<-statuses]++
	}
	t.Logf("%d concurrent sign-ins of unknown names in %s: %v", n, time.Since(start).Round(time.Millisecond), count)
	// The directory sees at most the address's free failures and the
	// checks already running when the lock began (16 per replica).
	if count[401]+count[429]+count[503] != n || count[401] == 0 || count[401] > auth.FreeAddressFailures+16 {
		t.Fatalf("statuses %v: want only 401, 429 and 503, at most %d refused by the directory", count, auth.FreeAddressFailures+16)
	}
	if st, _, _ := r.Do(t, "GET", "/_ping", "", nil, nil); st != 200 {
		t.Fatalf("/_ping after the flood: %d", st)
	}
	time.Sleep(slapdAddressLock)
	if st, _ := tokenStatus(t, r, "alice", alicePW); st != 200 {
		t.Fatalf("alice after the flood: %d", st)
	}
}

// slapdAddressLock outlasts the longest address lock (auth.MaxAddressLockout).
const slapdAddressLock = 10*time.Second + 500*time.Millisecond
