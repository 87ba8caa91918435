package ucp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/meta"
)

// The eNZi v0 shapes dtr reads (UCP 3.x / MKE 3.x); unknown fields are ignored.

type account struct {
	Name     string `json:"name"`
	ID       string `json:"id"`
	FullName string `json:"fullName"`
	IsOrg    bool   `json:"isOrg"`
	IsAdmin  bool   `json:"isAdmin"`
	IsActive bool   `json:"isActive"`
}

type member struct {
	Member  account `json:"member"`
	IsAdmin bool    `json:"isAdmin"`
}

type team struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type accountsPage struct {
	Accounts      []account `json:"accounts"`
	NextPageStart string    `json:"nextPageStart"`
}

type membersPage struct {
	Members       []member `json:"members"`
	NextPageStart string   `json:"nextPageStart"`
}

type teamsPage struct {
	Teams         []team `json:"teams"`
	NextPageStart string `json:"nextPageStart"`
}

// reader is one Directory read: its budget of entries and what it left out.
type reader struct {
	s       *Source
	left    int
	skipped []string
}

// Directory reads every UCP user, organization, member, team and team member
// with the administrator's session.
func (s *Source) Directory(ctx context.Context) (identity.Directory, error) {
	ctx, cancel := context.WithTimeout(ctx, DirectoryTimeout)
	defer cancel()
	r := &reader{s: s, left: MaxDirectoryEntries}
	var accounts []account
	err := pages(ctx, r, "/enzi/v0/accounts", url.Values{"filter": {"all"}}, func(p *accountsPage) (int, string) {
		accounts = append(accounts, p.Accounts...)
		return len(p.Accounts), p.NextPageStart
	})
	if err != nil {
		return identity.Directory{}, err
	}

	// Map names. When UCP accounts share a dtr name, the one already
	// lowercase keeps it; without one, none does.
	byDTR := map[string][]account{}
	for _, a := range accounts {
		n, err := accountName(a.Name)
		if err != nil {
			r.skip("UCP %s %q: %v", kind(a), a.Name, err)
			continue
		}
		byDTR[n] = append(byDTR[n], a)
	}
	users := map[string]string{} // UCP name → dtr name
	ambiguous := map[string]bool{}
	var dir identity.Directory
	var orgs []account
	for n, as := range byDTR {
		if len(as) > 1 {
			var names []string
			owner := -1
			for i, a := range as {
				if a.Name == n {
					owner = i
				} else {
					names = append(names, strconv.Quote(a.Name))
				}
			}
			slices.Sort(names)
			if owner < 0 {
				ambiguous[n] = true
				r.skip("UCP accounts %s: they all map to the dtr name %q; rename all but one in UCP", strings.Join(names, ", "), n)
				continue
			}
			r.skip("UCP accounts %s: UCP account %q has their dtr name; rename them in UCP", strings.Join(names, ", "), n)
			as = as[owner : owner+1]
		}
		a := as[0]
		if a.IsOrg {
			orgs = append(orgs, a)
			continue
		}
		users[a.Name] = n
		dir.Users = append(dir.Users, identity.User{Name: n, FullName: a.FullName, IsAdmin: a.IsAdmin, IsActive: a.IsActive})
	}
	slices.SortFunc(dir.Users, func(a, b identity.User) int { return strings.Compare(a.Name, b.Name) })

	for _, o := range orgs {
		org, err := r.org(ctx, o, users)
		if err != nil {
			return identity.Directory{}, err
		}
		dir.Orgs = append(dir.Orgs, org)
	}
	slices.SortFunc(dir.Orgs, func(a, b identity.Org) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(r.skipped)
	s.mu.Lock()
	s.skipped, s.ambiguous = r.skipped, ambiguous
	s.mu.Unlock()
	for _, why := range r.skipped {
		s.log.Warnf("UCP directory at %s: left out %s", s.base, why)
	}
	return dir, nil
}

func kind(a account) string {
	if a.IsOrg {
		return "organization"
	}
	return "user"
}

func (r *reader) skip(format string, args ...any) {
	r.skipped = append(r.skipped, fmt.Sprintf(format, args...))
}

// org reads one organization's members, teams and team members.
func (r *reader) org(ctx context.Context, o account, users map[string]string) (identity.Org, error) {
	dtrName, _ := accountName(o.Name)
	org := identity.Org{Name: dtrName, Members: map[string]bool{}, Teams: []identity.Team{}}
	ref := "/enzi/v0/accounts/" + url.PathEscape(idOr(o.ID, o.Name))
	err := pages(ctx, r, ref+"/members", nil, func(p *membersPage) (int, string) {
		for _, m := range p.Members {
			if n, ok := users[m.Member.Name]; ok {
				org.Members[n] = m.IsAdmin
			}
		}
		return len(p.Members), p.NextPageStart
	})
	if err != nil {
		return identity.Org{}, err
	}
	var teams []team
	err = pages(ctx, r, ref+"/teams", nil, func(p *teamsPage) (int, string) {
		teams = append(teams, p.Teams...)
		return len(p.Teams), p.NextPageStart
	})
	if err != nil {
		return identity.Org{}, err
	}
	slices.SortFunc(teams, func(a, b team) int { return strings.Compare(a.Name, b.Name) })
	for _, t := range teams {
		if err := meta.ValidateTeamName(t.Name); err != nil {
			r.skip("UCP team %s/%s: %v", o.Name, t.Name, err)
			continue
		}
		dt := identity.Team{Name: t.Name, Members: []string{}}
		err := pages(ctx, r, ref+"/teams/"+url.PathEscape(idOr(t.ID, t.Name))+"/members", nil, func(p *membersPage) (int, string) {
			for _, m := range p.Members {
				// A team member is an organization member in UCP; keep the
				// directory consistent if an answer says otherwise.
				if n, ok := users[m.Member.Name]; ok {
					if _, in := org.Members[n]; in {
						dt.Members = append(dt.Members, n)
					}
				}
			}
			return len(p.Members), p.NextPageStart
		})
		if err != nil {
			return identity.Org{}, err
		}
		slices.Sort(dt.Members)
		dt.Members = slices.Compact(dt.Members)
		org.Teams = append(org.Teams, dt)
	}
	return org, nil
}

func idOr(id, name string) string {
	if id != "" {
		return id
	}
	return name
}

// pages reads every page of an eNZi list at path, handing each to take,
// which returns how many items it held and where the next page starts. Every
// item counts against the directory's budget.
func pages[T any](ctx context.Context, r *reader, path string, q url.Values, take func(*T) (int, string)) error {
	seen := map[string]bool{}
	start := ""
	for {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set("limit", strconv.Itoa(pageSize))
		if start != "" {
			v.Set("start", start)
		}
		var p T
		code, err := r.s.adminGet(ctx, path, v, &p)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return r.s.unexpected("GET "+path, code)
		}
		n, next := take(&p)
		if r.left -= n; r.left < 0 {
			return r.s.unavailable(fmt.Sprintf("the directory holds more than %d users, organizations, teams and memberships, more than dtr reads from UCP", MaxDirectoryEntries))
		}
		if next == "" {
			return nil
		}
		if n == 0 || seen[next] {
			return r.s.unavailable(fmt.Sprintf("GET %s: paging does not advance (nextPageStart %q)", path, next))
		}
		seen[next] = true
		start = next
	}
}
