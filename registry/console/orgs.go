package console

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/dtr-registry/dtr/registry/meta"
)

type orgRow struct {
	Name     string
	FullName string
	Member   bool
}

func (c *Console) organizations(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showOrganizations(w, r, s, http.StatusOK, "")
}

func (c *Console) showOrganizations(w http.ResponseWriter, r *http.Request, s *session, status int, problem string) error {
	var list struct {
		Accounts []meta.Account `json:"accounts"`
	}
	if err := s.api("GET", "/accounts", nil, &list); err != nil {
		return err
	}
	var rows []orgRow
	for _, a := range list.Accounts {
		if !a.IsOrg {
			continue
		}
		_, err := c.cfg.Store.OrgMember(r.Context(), a.Name, s.acc.Name)
		if err != nil && !errors.Is(err, meta.ErrNotFound) {
			return err
		}
		rows = append(rows, orgRow{Name: a.Name, FullName: a.FullName, Member: err == nil})
	}
	c.render(w, r, status, "orgs", s, page{Title: "Organizations", Section: "orgs", Error: problem, Data: rows})
	return nil
}

func (c *Console) createOrganization(w http.ResponseWriter, r *http.Request, s *session) error {
	name := strings.TrimSpace(r.PostForm.Get("name"))
	err := s.api("POST", "/accounts", map[string]any{"name": name, "isOrg": true, "fullName": r.PostForm.Get("fullName")}, nil)
	if err != nil {
		ue := asUserError(err)
		return c.showOrganizations(w, r, s, ue.Status, ue.Message)
	}
	return done(w, r, "/orgs/"+url.PathEscape(name), "org-created")
}

type orgPage struct {
	Org        meta.Account
	IsAdmin    bool // may manage the organization
	Members    []meta.Membership
	Teams      []meta.Team
	NSGrants   []meta.Grant
	Repos      []meta.Repository
	Levels     []string
	MembersErr string
}

var levels = []string{"read-only", "read-write", "admin"}

func (c *Console) orgAdmin(r *http.Request, s *session, org string) (bool, error) {
	if s.acc.IsAdmin {
		return true, nil
	}
	m, err := c.cfg.Store.OrgMember(r.Context(), org, s.acc.Name)
	if errors.Is(err, meta.ErrNotFound) {
		return false, nil
	}
	return err == nil && m.IsAdmin, err
}

func (c *Console) organization(w http.ResponseWriter, r *http.Request, s *session) error {
	org := r.PathValue("org")
	d := orgPage{Levels: levels}
	if err := s.api("GET", "/accounts/"+url.PathEscape(org), nil, &d.Org); err != nil {
		return err
	}
	if !d.Org.IsOrg {
		return errorPage(http.StatusNotFound, org+" is a user, not an organization.")
	}
	var err error
	if d.IsAdmin, err = c.orgAdmin(r, s, org); err != nil {
		return err
	}
	var ms struct {
		Members []meta.Membership `json:"members"`
	}
	var ts struct {
		Teams []meta.Team `json:"teams"`
	}
	if err := s.api("GET", "/accounts/"+url.PathEscape(org)+"/members", nil, &ms); err != nil {
		// Members and teams are shown to the organization's members only.
		d.MembersErr = asUserError(err).Message
	} else {
		d.Members = ms.Members
		if err := s.api("GET", "/accounts/"+url.PathEscape(org)+"/teams", nil, &ts); err != nil {
			return err
		}
		d.Teams = ts.Teams
	}
	if d.IsAdmin {
		var gs struct {
			List []meta.Grant `json:"teamAccessList"`
		}
		if err := s.api("GET", "/repositoryNamespaces/"+url.PathEscape(org)+"/teamAccess", nil, &gs); err != nil {
			return err
		}
		d.NSGrants = gs.List
	}
	all, err := c.readable(r.Context(), &s.acc)
	if err != nil {
		return err
	}
	for _, rp := range all {
		if rp.Namespace == org {
			d.Repos = append(d.Repos, rp)
		}
	}
	c.render(w, r, http.StatusOK, "org", s, page{Title: org, Section: "orgs", Data: d})
	return nil
}

func (c *Console) organizationAction(w http.ResponseWriter, r *http.Request, s *session) error {
	org := r.PathValue("org")
	f := r.PostForm
	base := "/accounts/" + url.PathEscape(org)
	back := "/orgs/" + url.PathEscape(org)
	var err error
	flash := ""
	switch f.Get("action") {
	case "add-member":
		err = s.api("PUT", base+"/members/"+url.PathEscape(strings.TrimSpace(f.Get("user"))), map[string]bool{"isAdmin": f.Get("isAdmin") == "on"}, nil)
		flash = "member-saved"
	case "remove-member":
		err = s.api("DELETE", base+"/members/"+url.PathEscape(f.Get("user")), nil, nil)
		flash = "member-removed"
	case "create-team":
		team := strings.TrimSpace(f.Get("team"))
		if err = s.api("POST", base+"/teams", map[string]string{"name": team, "description": f.Get("description")}, nil); err == nil {
			return done(w, r, back+"/teams/"+url.PathEscape(team), "team-created")
		}
	case "grant-namespace":
		err = s.api("PUT", "/repositoryNamespaces/"+url.PathEscape(org)+"/teamAccess/"+url.PathEscape(f.Get("team")), map[string]string{"accessLevel": f.Get("level")}, nil)
		flash = "grant-saved"
	case "revoke-namespace":
		err = s.api("DELETE", "/repositoryNamespaces/"+url.PathEscape(org)+"/teamAccess/"+url.PathEscape(f.Get("team")), nil, nil)
		flash = "grant-removed"
	default:
		return errorPage(http.StatusBadRequest, "Unknown action "+strconv.Quote(f.Get("action"))+".")
	}
	if err != nil {
		return err
	}
	return done(w, r, back, flash)
}

type teamGrant struct {
	Repo  string // the name in the organization
	Level meta.Level
}

type teamPage struct {
	Org      string
	Team     meta.Team
	IsAdmin  bool
	Members  []meta.TeamMember
	Grants   []teamGrant
	NSLevel  string
	Repos    []meta.Repository
	Levels   []string
	Truncate bool
	// Sync is the team's link to a directory group, for those the API
	// shows it to (members of the organization); nil: not shown.
	Sync *teamSync
	// SysAdmin may link the team (the API's rule); Source is then the
	// identity source's kind.
	SysAdmin bool
	Source   string
}

// teamSync is the admin API's memberSyncConfig.
type teamSync struct {
	EnableSync      bool   `json:"enableSync"`
	GroupDN         string `json:"groupDN"`
	GroupMemberAttr string `json:"groupMemberAttr"`
}

// maxTeamRepos bounds the repositories whose grants a team page reads.
const maxTeamRepos = 500

func (c *Console) team(w http.ResponseWriter, r *http.Request, s *session) error {
	org, name := r.PathValue("org"), r.PathValue("team")
	base := "/accounts/" + url.PathEscape(org) + "/teams/" + url.PathEscape(name)
	d := teamPage{Org: org, Levels: levels}
	if err := s.api("GET", base, nil, &d.Team); err != nil {
		return err
	}
	var ms struct {
		Members []meta.TeamMember `json:"members"`
	}
	if err := s.api("GET", base+"/members", nil, &ms); err != nil {
		return err
	}
	d.Members = ms.Members
	var err error
	if d.IsAdmin, err = c.orgAdmin(r, s, org); err != nil {
		return err
	}
	var ts teamSync
	if err := s.api("GET", base+"/memberSyncConfig", nil, &ts); err == nil {
		d.Sync = &ts
	} else if st := asUserError(err).Status; st != http.StatusForbidden && st != http.StatusNotFound {
		return err
	}
	if s.acc.IsAdmin {
		var is meta.IdentitySettings
		if err := s.api("GET", "/meta/settings/identity", nil, &is); err != nil {
			return err
		}
		d.SysAdmin, d.Source = true, is.Kind
		if d.Source == "" {
			d.Source = meta.IdentityLocal
		}
	}
	if d.IsAdmin {
		var gs struct {
			List []meta.Grant `json:"teamAccessList"`
		}
		if err := s.api("GET", "/repositoryNamespaces/"+url.PathEscape(org)+"/teamAccess", nil, &gs); err != nil {
			return err
		}
		for _, g := range gs.List {
			if g.Team == name {
				d.NSLevel = g.Level.String()
			}
		}
		repos, err := c.cfg.Store.Repositories(r.Context(), org)
		if err != nil {
			return err
		}
		if len(repos) > maxTeamRepos {
			repos, d.Truncate = repos[:maxTeamRepos], true
		}
		d.Repos = repos
		for _, rp := range repos {
			var tg struct {
				List []meta.Grant `json:"teamAccessList"`
			}
			if err := s.api("GET", apiRepoPath(org, rp.Name)+"/teamAccess", nil, &tg); err != nil {
				return err
			}
			for _, g := range tg.List {
				if g.Team == name {
					d.Grants = append(d.Grants, teamGrant{Repo: rp.Name, Level: g.Level})
				}
			}
		}
	}
	c.render(w, r, http.StatusOK, "team", s, page{Title: org + " / " + name, Section: "orgs", Data: d})
	return nil
}

func (c *Console) teamAction(w http.ResponseWriter, r *http.Request, s *session) error {
	org, name := r.PathValue("org"), r.PathValue("team")
	f := r.PostForm
	base := "/accounts/" + url.PathEscape(org) + "/teams/" + url.PathEscape(name)
	back := "/orgs/" + url.PathEscape(org) + "/teams/" + url.PathEscape(name)
	var err error
	flash := ""
	switch f.Get("action") {
	case "add-member":
		err = s.api("PUT", base+"/members/"+url.PathEscape(strings.TrimSpace(f.Get("user"))), nil, nil)
		flash = "member-saved"
	case "remove-member":
		err = s.api("DELETE", base+"/members/"+url.PathEscape(f.Get("user")), nil, nil)
		flash = "member-removed"
	case "grant-repo":
		err = s.api("PUT", apiRepoPath(org, strings.TrimSpace(f.Get("repo")))+"/teamAccess/"+url.PathEscape(name), map[string]string{"accessLevel": f.Get("level")}, nil)
		flash = "grant-saved"
	case "revoke-repo":
		err = s.api("DELETE", apiRepoPath(org, f.Get("repo"))+"/teamAccess/"+url.PathEscape(name), nil, nil)
		flash = "grant-removed"
	case "link-group":
		req := teamSync{EnableSync: true, GroupDN: strings.TrimSpace(f.Get("groupDN")), GroupMemberAttr: strings.TrimSpace(f.Get("groupMemberAttr"))}
		if req.GroupDN == "" {
			return errorPage(http.StatusBadRequest, "Give the DN of the directory group whose members make up the team, such as cn=developers,ou=groups,dc=example,dc=com.")
		}
		err = s.api("PUT", base+"/memberSyncConfig", req, nil)
		flash = "team-linked"
	case "unlink-group":
		err = s.api("DELETE", base+"/memberSyncConfig", nil, nil)
		flash = "team-unlinked"
	case "delete-team":
		if f.Get("confirmed") != "yes" {
			return c.confirm(w, r, s, confirmPage{Action: back, Button: "Delete team " + name, Back: back,
				Warning: "Delete team " + org + "/" + name + "? Its members lose the access it granted."})
		}
		if err = s.api("DELETE", base, nil, nil); err == nil {
			return done(w, r, "/orgs/"+url.PathEscape(org), "team-deleted")
		}
	default:
		return errorPage(http.StatusBadRequest, "Unknown action "+strconv.Quote(f.Get("action"))+".")
	}
	if err != nil {
		return err
	}
	return done(w, r, back, flash)
}
