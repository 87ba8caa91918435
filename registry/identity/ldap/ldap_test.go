package ldap_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/pki"
	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/identity/ldap"
	"github.com/dtr-registry/dtr/registry/identity/ldap/slapdtest"
	"github.com/dtr-registry/dtr/registry/meta"
)

const (
	alicePW = "alice-password-1"
	bobPW   = "bob-password-123"
)

// directory starts slapd with alice and bob, bob an administrator, alice
// in group devs.
func directory(t *testing.T) *slapdtest.Server {
	s := slapdtest.Start(t)
	s.AddUser("alice", "Alice Liddell", alicePW)
	s.AddUser("bob", "Bob Builder", bobPW)
	s.AddGroup("admins", "bob")
	s.AddGroup("devs", "alice")
	return s
}

func settings(s *slapdtest.Server, ldaps bool) meta.LDAPSettings {
	st := meta.LDAPSettings{
		ServerURL: s.URL, StartTLS: true, RootCerts: string(s.CAPEM),
		ReaderDN: slapdtest.ReaderDN, ReaderPassword: slapdtest.ReaderPW,
		UserSearch:   meta.LDAPUserSearch{BaseDN: slapdtest.People, Filter: "(objectClass=inetOrgPerson)", UsernameAttr: "uid"},
		AdminGroupDN: slapdtest.GroupDN("admins"),
	}
	if ldaps {
		st.ServerURL, st.StartTLS = s.LDAPSURL, false
	}
	return st
}

func source(t *testing.T, st meta.LDAPSettings, teams ...ldap.TeamLink) *ldap.Source {
	t.Helper()
	src, err := ldap.New(ldap.Config{Settings: st, Teams: teams, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// TestAuthenticate: over StartTLS and over ldaps://, the right password
// signs in with the directory's name and admin flag; a wrong or empty
// password, an unknown user and filter syntax in the name are refused as
// bad credentials.
func TestAuthenticate(t *testing.T) {
	s := directory(t)
	for _, tc := range []struct {
		name  string
		ldaps bool
	}{{"StartTLS", false}, {"ldaps", true}} {
		t.Run(tc.name, func(t *testing.T) {
			src := source(t, settings(s, tc.ldaps))
			ctx := context.Background()
			u, err := src.Authenticate(ctx, "alice", alicePW)
			if err != nil || u.Name != "alice" || u.FullName != "Alice Liddell" || u.IsAdmin || !u.IsActive || u.Email != "alice@example.org" {
				t.Fatalf("alice: %+v, %v", u, err)
			}
			if u, err := src.Authenticate(ctx, "Bob", bobPW); err != nil || u.Name != "bob" || !u.IsAdmin {
				t.Fatalf("Bob (an administrator): %+v, %v", u, err)
			}
			for _, bad := range []struct{ name, pw string }{
				{"alice", "wrong-password"},
				{"alice", ""}, // an unauthenticated bind would succeed
				{"carol", alicePW},
				{"bob", alicePW},
			} {
				if _, err := src.Authenticate(ctx, bad.name, bad.pw); !errors.Is(err, identity.ErrBadCredentials) {
					t.Errorf("%q/%q: %v, want bad credentials", bad.name, bad.pw, err)
				}
			}
		})
	}
}

// TestInjection: filter syntax in the name never matches an entry, with
// the right password of an existing user.
func TestInjection(t *testing.T) {
	s := directory(t)
	src := source(t, settings(s, false))
	for _, name := range []string{"*", "a*", "alice)(uid=*", "*)(|(uid=*)", "alice)(|(objectClass=*)", `alice\2a`, "alice\x00", "(uid=alice)", "alice*"} {
		if u, err := src.Authenticate(context.Background(), name, alicePW); !errors.Is(err, identity.ErrBadCredentials) {
			t.Errorf("name %q: %+v, %v: want bad credentials", name, u, err)
		}
	}
}

// TestServiceAccountErrors: a wrong reader password, a CA that did not
// sign the server's certificate and a server that does not answer are
// the source's fault (ErrUnavailable), each named in the operator's words.
func TestServiceAccountErrors(t *testing.T) {
	s := directory(t)
	otherCA, err := pki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	wrongPW := settings(s, false)
	wrongPW.ReaderPassword = "not-the-password"
	badCA := settings(s, true)
	badCA.RootCerts = string(otherCA.CertPEM())
	badCAStartTLS := settings(s, false)
	badCAStartTLS.RootCerts = string(otherCA.CertPEM())
	down := settings(s, true)
	down.ServerURL = "ldaps://127.0.0.1:1"
	for _, tc := range []struct {
		name string
		st   meta.LDAPSettings
		want string
	}{
		{"wrong reader password", wrongPW, "wrong ldap.readerDN or ldap.readerPassword"},
		{"bad CA (ldaps)", badCA, "not signed by a CA in ldap.rootCerts"},
		{"bad CA (StartTLS)", badCAStartTLS, "not signed by a CA in ldap.rootCerts"},
		{"unreachable", down, "cannot connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := source(t, tc.st)
			_, err := src.Authenticate(context.Background(), "alice", alicePW)
			if !errors.Is(err, identity.ErrUnavailable) || errors.Is(err, identity.ErrBadCredentials) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Authenticate: %v, want unavailable naming %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.st.ReaderPassword) {
				t.Fatalf("the error shows the reader password: %v", err)
			}
			if _, err := src.Directory(context.Background()); !errors.Is(err, identity.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Directory: %v, want unavailable naming %q", err, tc.want)
			}
		})
	}
}

// TestDirectory lists users, administrators and the linked groups'
// members; a link to a group that does not exist lists an empty team.
func TestDirectory(t *testing.T) {
	s := directory(t)
	s.AddUser("carol", "Carol", "carol-password-1")
	s.Add("posixGroup", "cn=ops,"+slapdtest.Groups, map[string][]string{"objectClass": {"posixGroup"}, "cn": {"ops"}, "gidNumber": {"500"}, "memberUid": {"carol", "Bob"}})
	src := source(t, settings(s, false),
		ldap.TeamLink{Org: "eng", Team: "devs", GroupDN: slapdtest.GroupDN("devs")},
		ldap.TeamLink{Org: "eng", Team: "ops", GroupDN: "cn=ops," + slapdtest.Groups, MemberAttr: "memberUid"},
		ldap.TeamLink{Org: "sales", Team: "gone", GroupDN: slapdtest.GroupDN("nosuchgroup")},
	)
	d, err := src.Directory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range d.Users {
		names = append(names, u.Name)
		if u.IsAdmin != (u.Name == "bob") {
			t.Errorf("%s: admin %v", u.Name, u.IsAdmin)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"alice", "bob", "carol"}) {
		t.Fatalf("users %v", names)
	}
	teams := map[string][]string{}
	for _, o := range d.Orgs {
		if o.Members != nil {
			t.Errorf("org %s lists members; LDAP has no organizations", o.Name)
		}
		for _, tm := range o.Teams {
			m := slices.Clone(tm.Members)
			slices.Sort(m)
			teams[o.Name+"/"+tm.Name] = m
		}
	}
	want := map[string][]string{"eng/devs": {"alice"}, "eng/ops": {"bob", "carol"}, "sales/gone": {}}
	for k, v := range want {
		if got, ok := teams[k]; !ok || !slices.Equal(got, v) {
			t.Errorf("team %s: %v, want %v", k, got, v)
		}
	}
}

// TestSettingsRefused: settings that cannot work are refused when the
// source is made, naming the field.
func TestSettingsRefused(t *testing.T) {
	good := meta.LDAPSettings{ServerURL: "ldaps://ldap.example.org", ReaderDN: "cn=reader,dc=example,dc=org", ReaderPassword: "pw",
		UserSearch: meta.LDAPUserSearch{BaseDN: "ou=people,dc=example,dc=org", UsernameAttr: "uid"}}
	for _, tc := range []struct {
		want string
		edit func(*meta.LDAPSettings)
	}{
		{"ldap.serverURL", func(s *meta.LDAPSettings) { s.ServerURL = "http://ldap.example.org" }},
		{"sends passwords in clear", func(s *meta.LDAPSettings) { s.ServerURL = "ldap://ldap.example.org" }},
		{"ldap.startTLS", func(s *meta.LDAPSettings) { s.StartTLS = true }},
		{"ldap.readerPassword", func(s *meta.LDAPSettings) { s.ReaderPassword = "" }},
		{"ldap.readerDN", func(s *meta.LDAPSettings) { s.ReaderDN = "not a dn" }},
		{"ldap.userSearch.baseDN", func(s *meta.LDAPSettings) { s.UserSearch.BaseDN = "" }},
		{"usernameAttr", func(s *meta.LDAPSettings) { s.UserSearch.UsernameAttr = "uid)(x" }},
		{"ldap.userSearch.filter", func(s *meta.LDAPSettings) { s.UserSearch.Filter = "(objectClass=person" }},
		{"ldap.rootCerts", func(s *meta.LDAPSettings) { s.RootCerts = "not a certificate" }},
	} {
		st := good
		tc.edit(&st)
		_, err := ldap.New(ldap.Config{Settings: st})
		if !errors.Is(err, meta.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.want, err)
		}
	}
	if _, err := ldap.New(ldap.Config{Settings: good}); err != nil {
		t.Fatal(err)
	}
	plain := good
	plain.ServerURL, plain.InsecurePlaintext = "ldap://127.0.0.1", true
	if _, err := ldap.New(ldap.Config{Settings: plain}); err != nil {
		t.Fatalf("insecurePlaintext: %v", err)
	}
}

// TestCancel: a cancelled request ends the source's call at once.
func TestCancel(t *testing.T) {
	s := directory(t)
	src := source(t, settings(s, false))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if _, err := src.Authenticate(ctx, "alice", alicePW); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("cancelled: %v after %s", err, time.Since(start))
	}
}

// TestActiveDirectoryAttributes: the username attribute is named in any
// case and its values are lowercased (Frank signs in as frank); a disabled
// account (Active Directory's userAccountControl bit 2) cannot sign in and
// is listed inactive. (Debian's msuser schema gives sAMAccountName no
// equality rule, so uid stands in for it here.)
func TestActiveDirectoryAttributes(t *testing.T) {
	s := slapdtest.Start(t)
	for _, u := range []struct{ cn, uid, uac string }{{"Frank Ad", "Frank", "512"}, {"Eve Ad", "eve", "514"}} {
		s.Add("AD user", "cn="+u.cn+","+slapdtest.People, map[string][]string{
			"objectClass": {"inetOrgPerson", "extensibleObject"}, "cn": {u.cn}, "sn": {u.uid},
			"uid": {u.uid}, "userAccountControl": {u.uac}, "userPassword": {"ad-password-1"},
		})
	}
	st := settings(s, true)
	st.UserSearch.UsernameAttr, st.AdminGroupDN = "UID", ""
	src := source(t, st)
	if u, err := src.Authenticate(context.Background(), "frank", "ad-password-1"); err != nil || u.Name != "frank" || u.FullName != "Frank Ad" {
		t.Fatalf("frank: %+v %v", u, err)
	}
	if _, err := src.Authenticate(context.Background(), "eve", "ad-password-1"); !errors.Is(err, identity.ErrBadCredentials) {
		t.Fatalf("eve, disabled: %v", err)
	}
	d, err := src.Directory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	active := map[string]bool{}
	for _, u := range d.Users {
		active[u.Name] = u.IsActive
	}
	if len(active) != 2 || !active["frank"] || active["eve"] {
		t.Fatalf("users: %v", active)
	}
}
