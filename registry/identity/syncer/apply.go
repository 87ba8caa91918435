// Package syncer keeps dtr's accounts in step with the identity source: it
// builds the source from the settings, reads its directory into the
// metadata on a schedule and on demand (ldap_sync jobs), and answers the
// settings test call (docs/identity.md).
package syncer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/identity/ldap"
	"github.com/dtr-registry/dtr/registry/identity/ucp"
	"github.com/dtr-registry/dtr/registry/meta"
)

// NewSource builds the source the settings name, nil for local. links are
// the teams linked to LDAP groups (only an LDAP source uses them).
func NewSource(st meta.IdentitySettings, links []meta.TeamSync) (identity.Source, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	switch st.Kind {
	case meta.IdentityLDAP:
		cfg := ldap.Config{Settings: *st.LDAP}
		for _, l := range links {
			if l.EnableSync {
				cfg.Teams = append(cfg.Teams, ldap.TeamLink{Org: l.Org, Team: l.Team, GroupDN: l.GroupDN, MemberAttr: l.GroupMemberAttr})
			}
		}
		return ldap.New(cfg)
	case meta.IdentityUCP:
		s, err := ucp.New(ucp.Config{URL: st.UCP.URL, CAPEM: []byte(st.UCP.CA), Username: st.UCP.Username, Password: st.UCP.Password})
		if err != nil {
			return nil, fmt.Errorf("%w %v", meta.ErrInvalid, err)
		}
		return s, nil
	}
	return nil, nil
}

// Result counts what a sync changed.
type Result struct {
	Users        int `json:"users"` // in the directory
	Created      int `json:"created"`
	Updated      int `json:"updated"`
	Deactivated  int `json:"deactivated"`
	OrgsCreated  int `json:"orgsCreated"`
	TeamsCreated int `json:"teamsCreated"`
	Added        int `json:"membershipsAdded"`
	Removed      int `json:"membershipsRemoved"`
	Skipped      int `json:"skipped"` // names held by local accounts
}

// Changed reports whether the sync changed anything.
func (r Result) Changed() bool {
	return r.Created+r.Updated+r.Deactivated+r.OrgsCreated+r.TeamsCreated+r.Added+r.Removed > 0
}

// Apply makes the accounts what the directory says, for the accounts that
// come from a source (meta.Account.Source) only: dtr's own accounts are
// never changed, and a directory name held by one is skipped, never linked.
//
//   - A source user missing from the directory, or disabled there, is
//     deactivated: its tokens end on every replica (a new epoch). The
//     directory activates it again; one an administrator deactivated in
//     dtr stays deactivated.
//   - Administrator flag, full name and activity follow the directory.
//   - A directory user that a team or organization names and that has no
//     account yet is created (active, without a password: it signs in
//     through the source); others are created at their first sign-in.
//   - Every team the directory lists gets exactly the listed source users
//     (local members stay); an organization whose member list is given
//     (UCP) gets exactly those source users, with their admin flag.
//   - A source that created an organization also owns its teams: a team
//     the directory no longer lists loses its source users.
func Apply(ctx context.Context, store *meta.Store, kind string, dir identity.Directory, logf func(string, ...any)) (Result, error) {
	res := Result{Users: len(dir.Users)}
	accs, err := store.Accounts(ctx)
	if err != nil {
		return res, err
	}
	byName := make(map[string]meta.Account, len(accs))
	for _, a := range accs {
		byName[a.Name] = a
	}
	users := make(map[string]identity.User, len(dir.Users))
	for _, u := range dir.Users {
		users[u.Name] = u
	}
	fromSource := func(name string) bool {
		a, ok := byName[name]
		return ok && !a.IsOrg && a.Source != ""
	}

	// Users: follow the directory; missing ones are deactivated.
	for _, a := range accs {
		if a.IsOrg || a.Source == "" || (!a.IsActive && !a.DeactivatedBySync) {
			continue // local, or deactivated by an administrator: left alone
		}
		u, listed := users[a.Name]
		active, admin := listed && u.IsActive, listed && u.IsAdmin
		fullName := a.FullName
		if listed && u.FullName != "" {
			fullName = u.FullName
		}
		if a.IsActive == active && (!active || a.IsAdmin == admin) && a.FullName == fullName && (!listed || a.Source == kind) {
			continue
		}
		updated, err := store.UpdateAccount(ctx, a.Name, func(x *meta.Account) error {
			if x.IsOrg || x.Source == "" || (!x.IsActive && !x.DeactivatedBySync) {
				return errSkip
			}
			x.IsActive, x.FullName, x.DeactivatedBySync = active, fullName, !active
			if active {
				x.IsAdmin, x.Source = admin, kind
			}
			return nil
		})
		switch {
		case errors.Is(err, errSkip), errors.Is(err, meta.ErrNotFound):
			continue
		case err != nil:
			return res, err
		}
		byName[a.Name] = updated
		if a.IsActive && !active {
			res.Deactivated++
			why := "no longer in the directory"
			if listed {
				why = "disabled in the directory"
			}
			logf("deactivated %s: %s; its tokens end", a.Name, why)
		} else {
			res.Updated++
			logf("updated %s: active %v, administrator %v", a.Name, updated.IsActive, updated.IsAdmin)
		}
	}

	// ensureUser makes sure a listed, active directory user has a source
	// account; false when the name is a local account's or not listed.
	ensureUser := func(name string) (bool, error) {
		if a, ok := byName[name]; ok {
			if a.IsOrg || a.Source == "" {
				res.Skipped++
				logf("skipped %s: the name is dtr's own %s, which a directory never changes", name, map[bool]string{true: "organization", false: "local account"}[a.IsOrg])
				return false, nil
			}
			return a.IsActive, nil
		}
		u, ok := users[name]
		if !ok || !u.IsActive {
			return false, nil
		}
		a, err := store.UpsertSourceUser(ctx, kind, u.Name, u.FullName, u.IsAdmin)
		if errors.Is(err, meta.ErrExists) || errors.Is(err, meta.ErrInvalid) {
			res.Skipped++
			logf("skipped %s: %v", name, err)
			return false, nil
		}
		if err != nil {
			return false, err
		}
		byName[name] = a
		res.Created++
		logf("created %s (administrator %v)", name, a.IsAdmin)
		return true, nil
	}

	for _, o := range dir.Orgs {
		org, ok := byName[o.Name]
		switch {
		case ok && !org.IsOrg:
			res.Skipped++
			logf("skipped organization %s: the name is a user's", o.Name)
			continue
		case !ok:
			if err := meta.ValidateAccountName(o.Name); err != nil {
				res.Skipped++
				logf("skipped organization %s: %v", o.Name, err)
				continue
			}
			created, err := store.CreateAccount(ctx, meta.Account{Name: o.Name, IsOrg: true, Source: kind}, "")
			if err != nil && !errors.Is(err, meta.ErrExists) {
				return res, err
			}
			if err == nil {
				res.OrgsCreated++
				logf("created organization %s", o.Name)
				org = created
			} else if org, err = store.Account(ctx, o.Name); err != nil {
				return res, err
			}
			byName[o.Name] = org
		}
		if o.Members != nil {
			if err := syncOrgMembers(ctx, store, o, fromSource, ensureUser, &res, logf); err != nil {
				return res, err
			}
		}
		listed := map[string]bool{}
		for _, t := range o.Teams {
			listed[t.Name] = true
			if err := syncTeam(ctx, store, o.Name, t, fromSource, ensureUser, &res, logf); err != nil {
				return res, err
			}
		}
		if org.Source == "" {
			continue
		}
		teams, err := store.Teams(ctx, o.Name)
		if err != nil {
			return res, err
		}
		for _, t := range teams {
			if !listed[t.Name] {
				if err := syncTeam(ctx, store, o.Name, identity.Team{Name: t.Name}, fromSource, ensureUser, &res, logf); err != nil {
					return res, err
				}
			}
		}
	}
	return res, nil
}

var errSkip = errors.New("skip")

func syncOrgMembers(ctx context.Context, store *meta.Store, o identity.Org, fromSource func(string) bool, ensureUser func(string) (bool, error), res *Result, logf func(string, ...any)) error {
	current, err := store.OrgMembers(ctx, o.Name)
	if err != nil {
		return err
	}
	have := map[string]meta.Membership{}
	for _, m := range current {
		have[m.User] = m
		if _, want := o.Members[m.User]; !want && fromSource(m.User) {
			if err := store.RemoveOrgMember(ctx, o.Name, m.User); err != nil && !errors.Is(err, meta.ErrNotFound) {
				return err
			}
			res.Removed++
			logf("removed %s from organization %s", m.User, o.Name)
		}
	}
	names := make([]string, 0, len(o.Members))
	for n := range o.Members {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		admin := o.Members[n]
		if m, ok := have[n]; ok && m.IsAdmin == admin {
			continue
		}
		ok, err := ensureUser(n)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := store.SetOrgMember(ctx, o.Name, n, admin); err != nil {
			if errors.Is(err, meta.ErrNotFound) {
				continue
			}
			return err
		}
		res.Added++
		logf("set %s as a member of organization %s (admin %v)", n, o.Name, admin)
	}
	return nil
}

func syncTeam(ctx context.Context, store *meta.Store, org string, t identity.Team, fromSource func(string) bool, ensureUser func(string) (bool, error), res *Result, logf func(string, ...any)) error {
	if _, err := store.Team(ctx, org, t.Name); errors.Is(err, meta.ErrNotFound) {
		if len(t.Members) == 0 {
			return nil
		}
		if err := meta.ValidateTeamName(t.Name); err != nil {
			res.Skipped++
			logf("skipped team %s/%s: %v", org, t.Name, err)
			return nil
		}
		if _, err := store.CreateTeam(ctx, meta.Team{Org: org, Name: t.Name}); err != nil && !errors.Is(err, meta.ErrExists) {
			return err
		}
		res.TeamsCreated++
		logf("created team %s/%s", org, t.Name)
	} else if err != nil {
		return err
	}
	current, err := store.TeamMembers(ctx, org, t.Name)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, m := range t.Members {
		want[m] = true
	}
	have := map[string]bool{}
	for _, m := range current {
		have[m.User] = true
		if !want[m.User] && fromSource(m.User) {
			if err := store.RemoveTeamMember(ctx, org, t.Name, m.User); err != nil && !errors.Is(err, meta.ErrNotFound) {
				return err
			}
			res.Removed++
			logf("removed %s from team %s/%s", m.User, org, t.Name)
		}
	}
	members := slices.Clone(t.Members)
	slices.Sort(members)
	for _, m := range slices.Compact(members) {
		if have[m] {
			continue
		}
		ok, err := ensureUser(m)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := store.AddTeamMember(ctx, org, t.Name, m); err != nil {
			if errors.Is(err, meta.ErrNotFound) {
				continue
			}
			return err
		}
		res.Added++
		logf("added %s to team %s/%s", m, org, t.Name)
	}
	return nil
}

// describe is a one-line summary for logs and the job.
func (r Result) describe() string {
	parts := []string{fmt.Sprintf("%d users in the directory", r.Users)}
	for _, p := range []struct {
		n    int
		what string
	}{{r.Created, "created"}, {r.Updated, "updated"}, {r.Deactivated, "deactivated"}, {r.OrgsCreated, "organizations created"},
		{r.TeamsCreated, "teams created"}, {r.Added, "memberships added"}, {r.Removed, "memberships removed"}, {r.Skipped, "skipped"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	return strings.Join(parts, ", ")
}
