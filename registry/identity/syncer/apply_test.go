package syncer_test

import (
	"context"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/identity/syncer"
	"github.com/dtr-registry/dtr/registry/member"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// store is a metadata client of r's member, through its client socket.
func store(t *testing.T, r *registrytest.Replica) *meta.Store {
	t.Helper()
	sock := r.Opts.ClientSocket
	if sock == "" {
		sock = member.ClientSocketIn(r.Opts.DataDir)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"unix://" + sock}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return meta.New(cli)
}

// TestApplyOrganizations applies directories shaped as UCP's (organizations
// with their members) to the accounts, twice: what the directory stops
// listing goes, dtr's own accounts and memberships stay.
func TestApplyOrganizations(t *testing.T) {
	r := registrytest.StartNew(t)
	s := store(t, r)
	ctx := context.Background()
	logf := func(f string, a ...any) { t.Logf(f, a...) }
	// Local: user lou, org "eng" with team "ops" holding lou.
	if _, err := s.CreateAccount(ctx, meta.Account{Name: "lou"}, "lou-local-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAccount(ctx, meta.Account{Name: "eng", IsOrg: true}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTeam(ctx, meta.Team{Org: "eng", Name: "ops"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTeamMember(ctx, "eng", "ops", "lou"); err != nil {
		t.Fatal(err)
	}
	dir := identity.Directory{
		Users: []identity.User{{Name: "ann", IsActive: true, IsAdmin: true}, {Name: "ben", IsActive: true}, {Name: "lou", IsActive: true}, {Name: "zed", IsActive: true}},
		Orgs: []identity.Org{
			{Name: "eng", Members: map[string]bool{"ann": true, "ben": false, "lou": false}, Teams: []identity.Team{{Name: "ops", Members: []string{"ben", "lou"}}}},
			{Name: "web", Members: map[string]bool{"ben": false, "lou": true}, Teams: []identity.Team{{Name: "front", Members: []string{"ben", "lou"}}, {Name: "empty", Members: nil}}},
		},
	}
	res, err := syncer.Apply(ctx, s, identity.KindUCP, dir, logf)
	if err != nil {
		t.Fatal(err)
	}
	// ann and ben created (zed is in no organization: made at sign-in);
	// lou is local, skipped; web created with team front, not "empty".
	if res.Created != 2 || res.OrgsCreated != 1 || res.TeamsCreated != 1 || res.Skipped == 0 {
		t.Fatalf("first apply: %+v", res)
	}
	if _, err := s.Account(ctx, "zed"); err == nil {
		t.Fatal("zed, in no organization, was created")
	}
	ann, _ := s.Account(ctx, "ann")
	if !ann.IsAdmin || ann.Source != identity.KindUCP || !ann.IsActive || ann.PasswordHash != "" {
		t.Fatalf("ann: %+v", ann)
	}
	members := func(org, team string) []string {
		t.Helper()
		ms, err := s.TeamMembers(ctx, org, team)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.User)
		}
		slices.Sort(out)
		return out
	}
	if got := members("eng", "ops"); !slices.Equal(got, []string{"ben", "lou"}) {
		t.Fatalf("eng/ops: %v", got)
	}
	if m, err := s.OrgMember(ctx, "eng", "ann"); err != nil || !m.IsAdmin {
		t.Fatalf("ann in eng: %+v %v", m, err)
	}
	if got := members("web", "front"); !slices.Equal(got, []string{"ben"}) {
		t.Fatalf("web/front: %v (the local lou is never added by a source)", got)
	}
	if _, err := s.OrgMember(ctx, "web", "lou"); err == nil {
		t.Fatal("the local lou was made a member of web by the source")
	}

	// Second directory: ben left eng and team front, ann is no admin and
	// gone from eng, lou is gone from the directory (local: untouched).
	dir2 := identity.Directory{
		Users: []identity.User{{Name: "ann", IsActive: true}, {Name: "ben", IsActive: true}},
		Orgs: []identity.Org{
			{Name: "eng", Members: map[string]bool{}, Teams: []identity.Team{{Name: "ops"}}},
			{Name: "web", Members: map[string]bool{"ben": false}},
		},
	}
	if res, err = syncer.Apply(ctx, s, identity.KindUCP, dir2, logf); err != nil {
		t.Fatal(err)
	}
	if got := members("eng", "ops"); !slices.Equal(got, []string{"lou"}) {
		t.Fatalf("eng/ops after: %v (the local lou stays, ben goes)", got)
	}
	if _, err := s.OrgMember(ctx, "eng", "ann"); err == nil {
		t.Fatal("ann still in eng")
	}
	if got := members("web", "front"); len(got) != 0 {
		t.Fatalf("web/front, no longer listed in an org the source made: %v", got)
	}
	if ann, _ = s.Account(ctx, "ann"); ann.IsAdmin {
		t.Fatal("ann still an administrator")
	}
	lou, _ := s.Account(ctx, "lou")
	if !lou.IsActive || lou.Source != "" || lou.PasswordHash == "" {
		t.Fatalf("local lou changed: %+v", lou)
	}

	// ben disappears: deactivated; back: active again. An account an
	// administrator deactivated stays so.
	if res, _ = syncer.Apply(ctx, s, identity.KindUCP, identity.Directory{Users: dir2.Users[:1]}, logf); res.Deactivated != 1 {
		t.Fatalf("ben gone: %+v", res)
	}
	ben, _ := s.Account(ctx, "ben")
	if ben.IsActive || !ben.DeactivatedBySync {
		t.Fatalf("ben after leaving: %+v", ben)
	}
	if _, err := s.UpsertSourceUser(ctx, identity.KindUCP, "ben", "", false); err != nil {
		t.Fatalf("ben signs in again through the source: %v", err)
	}
	if _, err := s.UpdateAccount(ctx, "ann", func(a *meta.Account) error { a.IsActive = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if res, _ = syncer.Apply(ctx, s, identity.KindUCP, dir2, logf); res.Updated+res.Deactivated != 0 {
		t.Fatalf("third apply changed accounts: %+v", res)
	}
	if ann, _ = s.Account(ctx, "ann"); ann.IsActive {
		t.Fatal("a sync activated ann, whom an administrator deactivated")
	}
	if _, err := s.UpsertSourceUser(ctx, identity.KindUCP, "ann", "", false); err == nil {
		t.Fatal("ann, deactivated by an administrator, signed in through the source")
	}
}
