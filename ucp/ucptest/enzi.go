package ucptest

// UCP/MKE keeps its users, organizations and teams in eNZi, served under
// /enzi/v0/; GET /id/ is the signed-in account. The stand-in follows the
// shapes of UCP 3.x / MKE 3.x (eNZi API v0, as used by Docker's own scripts
// and Mirantis' terraform-provider-mke):
//
//	GET /id/                                     account
//	GET /enzi/v0/accounts?filter=&start=&limit=  {"accounts":[account],"nextPageStart":"",
//	                                              "usersCount","orgsCount","resourceCount"}
//	GET /enzi/v0/accounts/{nameOrID}             account
//	GET /enzi/v0/accounts/{org}/members          {"members":[{"member":account,"isAdmin","isPublic"}],"nextPageStart":""}
//	GET /enzi/v0/accounts/{org}/teams            {"teams":[{"orgID","id","name","description","membersCount"}],"nextPageStart":""}
//	GET /enzi/v0/accounts/{org}/teams/{team}/members   like the organization's members
//
// account is {"name","id","fullName","isOrg","isAdmin","isActive","isImported"}
// (organizations add "membersCount" and "teamsCount"). Lists are ordered by
// name; start is the name where a page begins and nextPageStart, also sent as
// the X-Next-Page-Start header, is empty on the last page. Errors are
// {"errors":[{"code","message"}]}. What a signed-in user may read: every
// account (eNZi lists them to everyone), and an organization's members and
// teams when they are an administrator or a member of it; anything else is
// 403 NOT_AUTHORIZED.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// User is a UCP user.
type User struct {
	Name     string
	Password string
	FullName string
	Admin    bool // a UCP administrator
	Inactive bool // deactivated: UCP refuses their login and sessions
}

// Org is a UCP organization.
type Org struct {
	Name string
	// Members maps a user name to whether they administer the organization.
	Members map[string]bool
	// Teams maps a team name to its members' names; a team member who is not
	// in Members joins the organization, as in UCP.
	Teams map[string][]string
}

type account struct {
	id, name, password, fullName string
	org, admin, active           bool
	members                      map[string]bool // organizations: user → org admin
	teams                        map[string]*team
}

type team struct {
	id, name string
	members  map[string]bool
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) populate(o Options) error {
	if o.Username != "" {
		if err := s.AddUser(User{Name: o.Username, Password: o.Password, Admin: true}); err != nil {
			return err
		}
	}
	for _, u := range o.Users {
		if err := s.AddUser(u); err != nil {
			return err
		}
	}
	for _, org := range o.Orgs {
		if err := s.AddOrg(org); err != nil {
			return err
		}
	}
	return nil
}

// AddUser creates a UCP user.
func (s *Server) AddUser(u User) error {
	if u.Name == "" || u.Password == "" {
		return fmt.Errorf("ucptest: a user needs a name and a password")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.accounts[u.Name] != nil {
		return fmt.Errorf("ucptest: account %q exists", u.Name)
	}
	s.accounts[u.Name] = &account{id: newID(), name: u.Name, password: u.Password, fullName: u.FullName, admin: u.Admin, active: !u.Inactive}
	return nil
}

// RemoveUser deletes a UCP user: their sessions end and they leave every
// organization and team.
func (s *Server) RemoveUser(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.user(name); err != nil {
		return err
	}
	delete(s.accounts, name)
	for tok, who := range s.tokens {
		if who == name {
			delete(s.tokens, tok)
		}
	}
	for _, a := range s.accounts {
		if a.org {
			delete(a.members, name)
			for _, t := range a.teams {
				delete(t.members, name)
			}
		}
	}
	return nil
}

// SetUserActive activates or deactivates a user; a deactivated user's
// sessions stop working.
func (s *Server) SetUserActive(name string, active bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.user(name)
	if err != nil {
		return err
	}
	a.active = active
	return nil
}

// SetUserAdmin makes a user a UCP administrator or takes it away.
func (s *Server) SetUserAdmin(name string, admin bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.user(name)
	if err != nil {
		return err
	}
	a.admin = admin
	return nil
}

// AddOrg creates an organization with its members and teams.
func (s *Server) AddOrg(o Org) error {
	if o.Name == "" {
		return fmt.Errorf("ucptest: an organization needs a name")
	}
	s.mu.Lock()
	if s.accounts[o.Name] != nil {
		s.mu.Unlock()
		return fmt.Errorf("ucptest: account %q exists", o.Name)
	}
	s.accounts[o.Name] = &account{id: newID(), name: o.Name, org: true, active: true, members: map[string]bool{}, teams: map[string]*team{}}
	s.mu.Unlock()
	for user, admin := range o.Members {
		if err := s.SetMember(o.Name, user, admin); err != nil {
			return err
		}
	}
	for name, members := range o.Teams {
		if err := s.AddTeam(o.Name, name, members...); err != nil {
			return err
		}
	}
	return nil
}

// SetMember adds a user to an organization or changes their admin flag.
func (s *Server) SetMember(org, user string, admin bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, err := s.org(org)
	if err != nil {
		return err
	}
	if _, err := s.user(user); err != nil {
		return err
	}
	o.members[user] = admin
	return nil
}

// RemoveMember takes a user out of an organization and its teams.
func (s *Server) RemoveMember(org, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, err := s.org(org)
	if err != nil {
		return err
	}
	if _, ok := o.members[user]; !ok {
		return fmt.Errorf("ucptest: %q is not a member of %q", user, org)
	}
	delete(o.members, user)
	for _, t := range o.teams {
		delete(t.members, user)
	}
	return nil
}

// AddTeam creates a team in an organization with members, who join the
// organization if they are not in it.
func (s *Server) AddTeam(org, name string, members ...string) error {
	s.mu.Lock()
	o, err := s.org(org)
	if err == nil && o.teams[name] != nil {
		err = fmt.Errorf("ucptest: team %s/%s exists", org, name)
	}
	if err == nil && name == "" {
		err = fmt.Errorf("ucptest: a team needs a name")
	}
	if err != nil {
		s.mu.Unlock()
		return err
	}
	o.teams[name] = &team{id: newID(), name: name, members: map[string]bool{}}
	s.mu.Unlock()
	for _, m := range members {
		if err := s.SetTeamMember(org, name, m); err != nil {
			return err
		}
	}
	return nil
}

// SetTeamMember adds a user to a team (and to its organization).
func (s *Server) SetTeamMember(org, teamName, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, err := s.org(org)
	if err != nil {
		return err
	}
	t := o.teams[teamName]
	if t == nil {
		return fmt.Errorf("ucptest: no team %s/%s", org, teamName)
	}
	if _, err := s.user(user); err != nil {
		return err
	}
	if _, ok := o.members[user]; !ok {
		o.members[user] = false
	}
	t.members[user] = true
	return nil
}

// RemoveTeamMember takes a user out of a team; they stay in the organization.
func (s *Server) RemoveTeamMember(org, teamName, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, err := s.org(org)
	if err != nil {
		return err
	}
	t := o.teams[teamName]
	if t == nil || !t.members[user] {
		return fmt.Errorf("ucptest: %q is not in team %s/%s", user, org, teamName)
	}
	delete(t.members, user)
	return nil
}

func (s *Server) user(name string) (*account, error) {
	a := s.accounts[name]
	if a == nil || a.org {
		return nil, fmt.Errorf("ucptest: no user %q", name)
	}
	return a, nil
}

func (s *Server) org(name string) (*account, error) {
	a := s.accounts[name]
	if a == nil || !a.org {
		return nil, fmt.Errorf("ucptest: no organization %q", name)
	}
	return a, nil
}

// lookup finds an account by name or ID, as eNZi's {nameOrID}.
func (s *Server) lookup(nameOrID string) *account {
	if a := s.accounts[nameOrID]; a != nil {
		return a
	}
	for _, a := range s.accounts {
		if a.id == nameOrID {
			return a
		}
	}
	return nil
}

// The wire shapes.

type accountJSON struct {
	Name         string `json:"name"`
	ID           string `json:"id"`
	FullName     string `json:"fullName"`
	IsOrg        bool   `json:"isOrg"`
	IsAdmin      bool   `json:"isAdmin"`
	IsActive     bool   `json:"isActive"`
	IsImported   bool   `json:"isImported"`
	MembersCount *int   `json:"membersCount,omitempty"`
	TeamsCount   *int   `json:"teamsCount,omitempty"`
}

type memberJSON struct {
	Member   accountJSON `json:"member"`
	IsAdmin  bool        `json:"isAdmin"`
	IsPublic bool        `json:"isPublic"`
}

type teamJSON struct {
	OrgID        string `json:"orgID"`
	ID           string `json:"id"`
	Name         string `json:"name"`
	Description  string `json:"description"`
	MembersCount int    `json:"membersCount"`
}

func (a *account) json() accountJSON {
	j := accountJSON{Name: a.name, ID: a.id, FullName: a.fullName, IsOrg: a.org, IsAdmin: a.admin, IsActive: a.active}
	if a.org {
		m, t := len(a.members), len(a.teams)
		j.MembersCount, j.TeamsCount = &m, &t
	}
	return j
}

func (s *Server) enziRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /id/{$}", s.authed(func(w http.ResponseWriter, _ *http.Request, who account) {
		writeJSON(w, http.StatusOK, who.json())
	}))
	mux.HandleFunc("GET /enzi/v0/accounts", s.authed(s.listAccounts))
	mux.HandleFunc("GET /enzi/v0/accounts/{account}", s.authed(s.getAccount))
	mux.HandleFunc("GET /enzi/v0/accounts/{org}/members", s.authed(s.orgMembers))
	mux.HandleFunc("GET /enzi/v0/accounts/{org}/teams", s.authed(s.orgTeams))
	mux.HandleFunc("GET /enzi/v0/accounts/{org}/teams/{team}/members", s.authed(s.teamMembers))
	mux.HandleFunc("/enzi/", s.authed(func(w http.ResponseWriter, r *http.Request, _ account) {
		enziError(w, http.StatusNotFound, "NOT_FOUND", "the stand-in does not serve "+r.Method+" "+r.URL.Path)
	}))
}

func (s *Server) authed(h func(http.ResponseWriter, *http.Request, account)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.session(r)
		if !ok {
			unauthorized(w)
			return
		}
		h(w, r, who)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func enziError(w http.ResponseWriter, code int, errCode, msg string) {
	type e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	writeJSON(w, code, map[string][]e{"errors": {{Code: errCode, Message: msg}}})
}

// pageParams reads start and limit; limit is capped at the stand-in's page size.
func (s *Server) pageParams(w http.ResponseWriter, r *http.Request) (start string, limit int, ok bool) {
	q := r.URL.Query()
	limit = 10 // eNZi's default
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			enziError(w, http.StatusBadRequest, "INVALID_FORM_DATA", "limit must be a positive number")
			return "", 0, false
		}
		limit = n
	}
	return q.Get("start"), min(limit, s.pageSize), true
}

// page cuts the items (sorted by name) that begin at start.
func page[T any](w http.ResponseWriter, items []T, name func(T) string, start string, limit int) ([]T, string) {
	slices.SortFunc(items, func(a, b T) int { return strings.Compare(name(a), name(b)) })
	i, _ := slices.BinarySearchFunc(items, start, func(a T, s string) int { return strings.Compare(name(a), s) })
	items = items[i:]
	next := ""
	if len(items) > limit {
		next = name(items[limit])
		items = items[:limit]
	}
	w.Header().Set("X-Next-Page-Start", next)
	return items, next
}

func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request, _ account) {
	start, limit, ok := s.pageParams(w, r)
	if !ok {
		return
	}
	filter := r.URL.Query().Get("filter")
	keep := map[string]func(*account) bool{
		"": func(*account) bool { return true }, "all": func(*account) bool { return true },
		"users":          func(a *account) bool { return !a.org },
		"orgs":           func(a *account) bool { return a.org },
		"admins":         func(a *account) bool { return !a.org && a.admin },
		"non-admins":     func(a *account) bool { return !a.org && !a.admin },
		"active-users":   func(a *account) bool { return !a.org && a.active },
		"inactive-users": func(a *account) bool { return !a.org && !a.active },
	}[filter]
	if keep == nil {
		enziError(w, http.StatusBadRequest, "INVALID_FORM_DATA", "filter must be one of all, users, orgs, admins, non-admins, active-users, inactive-users")
		return
	}
	s.mu.Lock()
	var all []accountJSON
	users, orgs := 0, 0
	for _, a := range s.accounts {
		if keep(a) {
			all = append(all, a.json())
			if a.org {
				orgs++
			} else {
				users++
			}
		}
	}
	s.mu.Unlock()
	items, next := page(w, all, func(a accountJSON) string { return a.Name }, start, limit)
	writeJSON(w, http.StatusOK, map[string]any{"accounts": items, "nextPageStart": next,
		"usersCount": users, "orgsCount": orgs, "resourceCount": users + orgs})
}

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request, _ account) {
	s.mu.Lock()
	a := s.lookup(r.PathValue("account"))
	var j accountJSON
	if a != nil {
		j = a.json()
	}
	s.mu.Unlock()
	if a == nil {
		enziError(w, http.StatusNotFound, "NO_SUCH_ACCOUNT", "an account with the given name or ID does not exist")
		return
	}
	writeJSON(w, http.StatusOK, j)
}

// visibleOrg is the organization in the path if who may read its members and
// teams; it has written the error otherwise. The caller holds s.mu.
func (s *Server) visibleOrg(w http.ResponseWriter, r *http.Request, who account) *account {
	o := s.lookup(r.PathValue("org"))
	if o == nil || !o.org {
		enziError(w, http.StatusNotFound, "NO_SUCH_ORGANIZATION", "an organization with the given name or ID does not exist")
		return nil
	}
	if _, member := o.members[who.name]; !who.admin && !member {
		enziError(w, http.StatusForbidden, "NOT_AUTHORIZED", "only administrators and members of "+o.name+" may see its members and teams")
		return nil
	}
	return o
}

func (s *Server) members(in map[string]bool, admin func(string) bool) []memberJSON {
	var out []memberJSON
	for name := range in {
		if a := s.accounts[name]; a != nil {
			out = append(out, memberJSON{Member: a.json(), IsAdmin: admin(name), IsPublic: true})
		}
	}
	return out
}

func (s *Server) orgMembers(w http.ResponseWriter, r *http.Request, who account) {
	start, limit, ok := s.pageParams(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	o := s.visibleOrg(w, r, who)
	if o == nil {
		s.mu.Unlock()
		return
	}
	all := s.members(o.members, func(n string) bool { return o.members[n] })
	s.mu.Unlock()
	items, next := page(w, all, func(m memberJSON) string { return m.Member.Name }, start, limit)
	writeJSON(w, http.StatusOK, map[string]any{"members": items, "nextPageStart": next})
}

func (s *Server) orgTeams(w http.ResponseWriter, r *http.Request, who account) {
	start, limit, ok := s.pageParams(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	o := s.visibleOrg(w, r, who)
	if o == nil {
		s.mu.Unlock()
		return
	}
	var all []teamJSON
	for _, t := range o.teams {
		all = append(all, teamJSON{OrgID: o.id, ID: t.id, Name: t.name, MembersCount: len(t.members)})
	}
	s.mu.Unlock()
	items, next := page(w, all, func(t teamJSON) string { return t.Name }, start, limit)
	writeJSON(w, http.StatusOK, map[string]any{"teams": items, "nextPageStart": next})
}

func (s *Server) teamMembers(w http.ResponseWriter, r *http.Request, who account) {
	start, limit, ok := s.pageParams(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	o := s.visibleOrg(w, r, who)
	if o == nil {
		s.mu.Unlock()
		return
	}
	var t *team
	for _, c := range o.teams {
		if c.name == r.PathValue("team") || c.id == r.PathValue("team") {
			t = c
		}
	}
	if t == nil {
		s.mu.Unlock()
		enziError(w, http.StatusNotFound, "NO_SUCH_TEAM", "a team with the given name or ID does not exist in "+o.name)
		return
	}
	all := s.members(t.members, func(string) bool { return false })
	s.mu.Unlock()
	items, next := page(w, all, func(m memberJSON) string { return m.Member.Name }, start, limit)
	writeJSON(w, http.StatusOK, map[string]any{"members": items, "nextPageStart": next})
}

// ExpireSessions ends every session, as UCP does when they time out.
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}
