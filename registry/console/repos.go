package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
)

// SortTags orders tags newest first, then by name.
func SortTags(tags []Tag) {
	sort.SliceStable(tags, func(i, j int) bool {
		if !tags[i].PushedAt.Equal(tags[j].PushedAt) {
			return tags[i].PushedAt.After(tags[j].PushedAt)
		}
		return tags[i].Name < tags[j].Name
	})
}

// perPage is the rows of a repository list page; ?per= may ask for up to maxPerPage.
const (
	perPage    = 50
	maxPerPage = 200
)

type repoList struct {
	Repos        []meta.Repository
	Total, Shown int
	Q, Sort      string
	Page, Pages  int
	Per          int
	Prev, Next   string
	SortLinks    map[string]string
	ServerTime   string
}

func queryInt(r *http.Request, name string, def, lo, hi int) int {
	v, err := strconv.Atoi(r.URL.Query().Get(name))
	if err != nil {
		return def
	}
	return min(max(v, lo), hi)
}

func (c *Console) repositories(w http.ResponseWriter, r *http.Request, s *session) error {
	start := time.Now()
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	order := r.URL.Query().Get("sort")
	switch order {
	case "name", "-name", "created", "-created":
	default:
		order = "name"
	}
	per := queryInt(r, "per", perPage, 1, maxPerPage)
	all, err := c.readable(r.Context(), &s.acc)
	if err != nil {
		return err
	}
	if q != "" {
		lq := strings.ToLower(q)
		all = slices.DeleteFunc(all, func(rp meta.Repository) bool {
			return !strings.Contains(rp.FullName(), lq) && !strings.Contains(strings.ToLower(rp.Description), lq)
		})
	}
	switch order { // ReadableRepositories sorts by namespace and name
	case "-name":
		slices.Reverse(all)
	case "created", "-created":
		sort.SliceStable(all, func(i, j int) bool {
			if order == "created" {
				return all[i].CreatedAt.Before(all[j].CreatedAt)
			}
			return all[i].CreatedAt.After(all[j].CreatedAt)
		})
	}
	pages := max(1, (len(all)+per-1)/per)
	pg := queryInt(r, "page", 1, 1, pages)
	lo, hi := (pg-1)*per, min(pg*per, len(all))
	link := func(p int, o string) string {
		v := url.Values{}
		if q != "" {
			v.Set("q", q)
		}
		if o != "name" {
			v.Set("sort", o)
		}
		if p > 1 {
			v.Set("page", strconv.Itoa(p))
		}
		if per != perPage {
			v.Set("per", strconv.Itoa(per))
		}
		if len(v) == 0 {
			return "/repositories"
		}
		return "/repositories?" + v.Encode()
	}
	d := repoList{Repos: all[lo:hi], Total: len(all), Shown: hi - lo, Q: q, Sort: order, Page: pg, Pages: pages, Per: per,
		SortLinks: map[string]string{"name": link(1, "name"), "-name": link(1, "-name"), "created": link(1, "created"), "-created": link(1, "-created")}}
	if pg > 1 {
		d.Prev = link(pg-1, order)
	}
	if pg < pages {
		d.Next = link(pg+1, order)
	}
	elapsed := time.Since(start)
	d.ServerTime = fmt.Sprintf("%.1f ms", float64(elapsed.Microseconds())/1000)
	// Server-Timing lets browsers and tests see the server's share of a page.
	w.Header().Set("Server-Timing", fmt.Sprintf("app;dur=%.1f", float64(elapsed.Microseconds())/1000))
	c.render(w, r, http.StatusOK, "repositories", s, page{Title: "Repositories", Section: "repositories", Data: d})
	return nil
}

type newRepoForm struct {
	Namespaces    []string
	Namespace     string
	Name          string
	Visibility    string
	Description   string
	ImmutableTags bool
}

// namespaces are where the user may create repositories: its own, and the
// organizations it belongs to (all of them for a system administrator);
// the admin API decides whether the user may create in one.
func (c *Console) namespaces(r *http.Request, s *session) ([]string, error) {
	out := []string{s.acc.Name}
	var list struct {
		Accounts []meta.Account `json:"accounts"`
	}
	if err := s.api("GET", "/accounts", nil, &list); err != nil {
		return nil, err
	}
	for _, a := range list.Accounts {
		if !a.IsOrg {
			continue
		}
		if s.acc.IsAdmin {
			out = append(out, a.Name)
			continue
		}
		_, err := c.cfg.Store.OrgMember(r.Context(), a.Name, s.acc.Name)
		if err == nil {
			out = append(out, a.Name)
		} else if !errors.Is(err, meta.ErrNotFound) {
			return nil, err
		}
	}
	return out, nil
}

func (c *Console) newRepositoryPage(w http.ResponseWriter, r *http.Request, s *session) error {
	ns, err := c.namespaces(r, s)
	if err != nil {
		return err
	}
	f := newRepoForm{Namespaces: ns, Namespace: r.URL.Query().Get("namespace"), Visibility: meta.Private}
	c.render(w, r, http.StatusOK, "newrepo", s, page{Title: "New repository", Section: "repositories", Data: f})
	return nil
}

func (c *Console) createRepository(w http.ResponseWriter, r *http.Request, s *session) error {
	f := newRepoForm{
		Namespace:     r.PostForm.Get("namespace"),
		Name:          strings.TrimSpace(r.PostForm.Get("name")),
		Visibility:    r.PostForm.Get("visibility"),
		Description:   r.PostForm.Get("description"),
		ImmutableTags: r.PostForm.Get("immutableTags") == "on",
	}
	req := map[string]any{"name": f.Name, "visibility": f.Visibility, "shortDescription": f.Description, "immutableTags": f.ImmutableTags}
	err := s.api("POST", "/repositories/"+url.PathEscape(f.Namespace), req, nil)
	if err == nil {
		return done(w, r, "/repositories/"+f.Namespace+"/"+f.Name, "repo-created")
	}
	ue := asUserError(err)
	if f.Namespaces, err = c.namespaces(r, s); err != nil {
		return err
	}
	c.render(w, r, ue.Status, "newrepo", s, page{Title: "New repository", Section: "repositories", Error: ue.Message, Data: f})
	return nil
}

type repoPage struct {
	Repo       meta.Repository
	Full       string
	Level      string
	IsAdmin    bool
	Tags       []Tag
	MoreTags   int // tags not shown (older than the newest maxTags)
	TagsError  string
	Pull       string // "host/ns/name"
	TeamGrants []meta.Grant
	UserGrants []meta.Grant
	Teams      []meta.Team
	Policies   []meta.PruningPolicy
	Policy     policyForm        // the add-a-policy form, as last sent
	Prunable   *[]pruneCandidate // the dry run's answer, when one was asked for
	Hooks      webhookList
	ServerTime string
	serverMS   float64
	pushersMS  float64 // of serverMS, finding who pushed the tags shown
}

// repoRef splits the path of a repository page; a name the rules refuse,
// like one the caller may not read, is "not found".
func repoRef(r *http.Request) (full, ns, name string, err error) {
	full = r.PathValue("path")
	ns, name, err = meta.SplitRepository(full)
	if err != nil {
		return "", "", "", notFound(full)
	}
	return full, ns, name, nil
}

func notFound(full string) error {
	return errorPage(http.StatusNotFound, "There is no repository "+full+", or you may not see it.")
}

// apiRepoPath is the admin API's path of a repository: a nested name is
// one escaped segment.
func apiRepoPath(ns, name string) string {
	return "/repositories/" + url.PathEscape(ns) + "/" + url.PathEscape(name)
}

// access is the caller's access to an existing repository; a repository
// the caller may not read does not exist for it.
func (c *Console) access(r *http.Request, s *session, full, ns, name string) (meta.Access, error) {
	a, err := c.cfg.Store.AccessFor(r.Context(), &s.acc, ns, name)
	if err != nil {
		return a, err
	}
	if !a.Exists || a.Level < meta.Read {
		return a, notFound(full)
	}
	return a, nil
}

func (c *Console) pullHost(r *http.Request) string {
	if st, _, err := c.cfg.Store.Settings(r.Context()); err == nil && st.ExternalURL != "" {
		ext := st.ExternalURL
		if u, err := url.Parse(ext); err == nil && u.Host != "" {
			return u.Host
		}
		return strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(ext, "https://"), "http://"), "/")
	}
	return r.Host
}

func (c *Console) repository(w http.ResponseWriter, r *http.Request, s *session) error {
	d, err := c.loadRepository(r, s)
	if err != nil {
		return err
	}
	c.showRepository(w, r, s, http.StatusOK, "", d)
	return nil
}

// showRepository renders a repository page loaded by loadRepository, with
// problem (a refused form) on it.
func (c *Console) showRepository(w http.ResponseWriter, r *http.Request, s *session, status int, problem string, d repoPage) {
	// Server-Timing lets browsers and tests see the server's share of a page.
	w.Header().Set("Server-Timing", fmt.Sprintf("app;dur=%.1f, pushers;dur=%.1f", d.serverMS, d.pushersMS))
	c.render(w, r, status, "repository", s, page{Title: d.Full, Section: "repositories", Error: problem, Data: d})
}

// loadRepository reads what a repository page shows; the caller may read
// the repository, else it does not exist for the caller.
func (c *Console) loadRepository(r *http.Request, s *session) (repoPage, error) {
	start := time.Now()
	full, ns, name, err := repoRef(r)
	if err != nil {
		return repoPage{}, err
	}
	a, err := c.access(r, s, full, ns, name)
	if err != nil {
		return repoPage{}, err
	}
	d := repoPage{Full: full, Level: a.Level.String(), IsAdmin: a.Level >= meta.Admin, Pull: c.pullHost(r) + "/" + full,
		Policy: defaultPolicyForm()}
	if err := s.api("GET", apiRepoPath(ns, name), nil, &d.Repo); err != nil {
		return d, err
	}
	if d.Tags, err = c.cfg.Tags(r.Context(), full); err != nil {
		d.TagsError = "The tags could not be listed: " + err.Error() + ". Check System → Replicas and the storage settings."
	}
	if len(d.Tags) > maxTags {
		d.Tags, d.MoreTags = d.Tags[:maxTags], len(d.Tags)-maxTags
	}
	t0 := time.Now()
	c.pushedBy(r, full, d.Tags)
	d.pushersMS = float64(time.Since(t0).Microseconds()) / 1000
	if d.IsAdmin {
		var tg struct {
			List []meta.Grant `json:"teamAccessList"`
		}
		var ug struct {
			List []meta.Grant `json:"userAccessList"`
		}
		if err := s.api("GET", apiRepoPath(ns, name)+"/teamAccess", nil, &tg); err != nil {
			return d, err
		}
		if err := s.api("GET", apiRepoPath(ns, name)+"/userAccess", nil, &ug); err != nil {
			return d, err
		}
		if err := s.api("GET", apiRepoPath(ns, name)+"/pruningPolicies", nil, &d.Policies); err != nil {
			return d, err
		}
		if d.Hooks, err = c.webhooksOf(s, full); err != nil {
			return d, err
		}
		d.TeamGrants, d.UserGrants = tg.List, ug.List
		if org, err := c.cfg.Store.Account(r.Context(), ns); err == nil && org.IsOrg {
			if d.Teams, err = c.cfg.Store.Teams(r.Context(), ns); err != nil {
				return d, err
			}
		}
	}
	elapsed := float64(time.Since(start).Microseconds()) / 1000
	d.ServerTime, d.serverMS = fmt.Sprintf("%.1f ms", elapsed), elapsed
	return d, nil
}

// pushedBy fills in who pushed each tag shown, from the audit trail: one
// read of the events around the shown tags' times (meta.Store.LastPushes),
// whatever the number of repositories or tags beyond the page. Without the
// record (trimmed, or a push from before the trail) the page shows "—".
func (c *Console) pushedBy(r *http.Request, full string, tags []Tag) {
	if len(tags) == 0 {
		return
	}
	want := make([]meta.TagPush, len(tags))
	for i, t := range tags {
		want[i] = meta.TagPush{Name: t.Name, Digest: t.Digest, At: t.PushedAt}
	}
	got, err := c.cfg.Store.LastPushes(r.Context(), full, want)
	if err != nil {
		c.cfg.Log.WithError(err).WithField("repository", full).Warn("console: reading who pushed the tags")
		return
	}
	for i := range tags {
		if e, ok := got[tags[i].Name]; ok {
			tags[i].PushedBy = e.Actor
			if e.Actor == "" {
				tags[i].PushedBy = "anonymous"
			}
		}
	}
}

// maxTags bounds the tags a repository page shows, newest first (the
// replica reads the manifests of those it shows).
const maxTags = 100

// confirmPage asks before something that cannot be undone; without
// JavaScript it is the confirmation, with it the browser's dialog is.
type confirmPage struct {
	Action  string // the form's action URL
	Fields  map[string]string
	Warning string
	Button  string
	Back    string
}

func (c *Console) confirm(w http.ResponseWriter, r *http.Request, s *session, cp confirmPage) error {
	fields := map[string]string{"confirmed": "yes"}
	for k, v := range r.PostForm {
		if k != "csrf" && k != "confirmed" && len(v) > 0 {
			fields[k] = v[0]
		}
	}
	cp.Fields = fields
	c.render(w, r, http.StatusOK, "confirm", s, page{Title: "Confirm", Data: cp})
	return nil
}

func (c *Console) repositoryAction(w http.ResponseWriter, r *http.Request, s *session) error {
	full, ns, name, err := repoRef(r)
	if err != nil {
		return err
	}
	a, err := c.access(r, s, full, ns, name)
	if err != nil {
		return err
	}
	back := "/repositories/" + full
	f := r.PostForm
	confirmed := f.Get("confirmed") == "yes"
	switch act := f.Get("action"); act {
	case "add-policy", "test-policy", "delete-policy", "enable-policy", "disable-policy":
		return c.pruningAction(w, r, s, act, ns, name, back)
	case "create-webhook", "test-webhook", "delete-webhook":
		return c.webhookAction(w, r, s, act, full, back)
	case "delete-tag":
		tag := f.Get("tag")
		if a.Level < meta.Admin {
			return errorPage(http.StatusForbidden, fmt.Sprintf("Deleting a tag of %s needs admin access to it; you have %s.", full, a.Level))
		}
		if !tagName.MatchString(tag) {
			return errorPage(http.StatusBadRequest, "Tag "+strconv.Quote(tag)+" is not a tag name: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'.")
		}
		if !confirmed {
			return c.confirm(w, r, s, confirmPage{Action: back, Button: "Delete tag " + tag, Back: back,
				Warning: "Delete tag " + full + ":" + tag + "? Pulls of this tag will fail; the image stays pullable by digest until garbage collection removes it."})
		}
		if err := c.cfg.DeleteTag(r.Context(), full, tag); err != nil {
			return errorPage(http.StatusServiceUnavailable, "The tag was not deleted: "+err.Error()+". Check the storage (System → Replicas) and try again.")
		}
		c.cfg.Log.WithFields(map[string]any{"repository": full, "tag": tag, "user": s.acc.Name}).Info("console: tag deleted")
		return done(w, r, back, "tag-deleted")
	case "settings":
		vis, desc := f.Get("visibility"), f.Get("description")
		imm := f.Get("immutableTags") == "on"
		if err := s.api("PATCH", apiRepoPath(ns, name), map[string]any{"visibility": vis, "shortDescription": desc, "immutableTags": imm}, nil); err != nil {
			return err
		}
		return done(w, r, back, "repo-saved")
	case "grant-team":
		if err := s.api("PUT", apiRepoPath(ns, name)+"/teamAccess/"+url.PathEscape(f.Get("team")), map[string]string{"accessLevel": f.Get("level")}, nil); err != nil {
			return err
		}
		return done(w, r, back, "grant-saved")
	case "revoke-team":
		if err := s.api("DELETE", apiRepoPath(ns, name)+"/teamAccess/"+url.PathEscape(f.Get("team")), nil, nil); err != nil {
			return err
		}
		return done(w, r, back, "grant-removed")
	case "grant-user":
		if err := s.api("PUT", apiRepoPath(ns, name)+"/userAccess/"+url.PathEscape(strings.TrimSpace(f.Get("user"))), map[string]string{"accessLevel": f.Get("level")}, nil); err != nil {
			return err
		}
		return done(w, r, back, "grant-saved")
	case "revoke-user":
		if err := s.api("DELETE", apiRepoPath(ns, name)+"/userAccess/"+url.PathEscape(f.Get("user")), nil, nil); err != nil {
			return err
		}
		return done(w, r, back, "grant-removed")
	case "delete-repo":
		if a.Level < meta.Admin {
			return errorPage(http.StatusForbidden, fmt.Sprintf("Deleting %s needs admin access to it; you have %s.", full, a.Level))
		}
		if !confirmed {
			return c.confirm(w, r, s, confirmPage{Action: back, Button: "Delete repository " + full, Back: back,
				Warning: "Delete repository " + full + " with all its tags and settings? This cannot be undone."})
		}
		if err := s.api("DELETE", apiRepoPath(ns, name), nil, nil); err != nil {
			return err
		}
		return done(w, r, "/repositories", "repo-deleted")
	}
	return errorPage(http.StatusBadRequest, "Unknown action "+strconv.Quote(f.Get("action"))+".")
}

// tagName is the grammar of a tag (Distribution's reference.TagRegexp).
var tagName = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
