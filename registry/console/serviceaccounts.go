package console

import (
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
)

// Service accounts of an organization, for pipelines: the admin API's
// /accounts/{org}/serviceAccounts, for the organization's admins and
// system administrators (the API's rule; members who are not admins are
// refused, others told the organization does not exist). A token of a
// service account reaches only the repositories it lists; its secret is
// in the answer to the form's POST only.

type serviceAccountsPage struct {
	Org      string
	Accounts []meta.ServiceAccount
	Form     struct{ Name, Description string }
}

type saTokenRow struct {
	tokenRow
	Access []meta.TokenRepositoryAccess
}

type serviceAccountPage struct {
	Org     string
	Account meta.ServiceAccount
	Tokens  []saTokenRow
	Repos   []meta.Repository // the organization's, to choose from
	Created *newToken
	Login   string
	Form    saTokenForm
}

type saTokenForm struct {
	Name, Expires string
	Repos         []string
	Push          bool
}

// Chosen reports whether the form chose repository name.
func (f saTokenForm) Chosen(name string) bool {
	for _, r := range f.Repos {
		if r == name {
			return true
		}
	}
	return false
}

func saBase(org string) string { return "/accounts/" + url.PathEscape(org) + "/serviceAccounts" }
func saPage(org string) string { return "/orgs/" + url.PathEscape(org) + "/serviceaccounts" }

func (c *Console) serviceAccounts(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showServiceAccounts(w, r, s, http.StatusOK, "", serviceAccountsPage{})
}

func (c *Console) showServiceAccounts(w http.ResponseWriter, r *http.Request, s *session, status int, problem string, d serviceAccountsPage) error {
	if err := tokensOwnOnly(s); err != nil {
		return err
	}
	d.Org = r.PathValue("org")
	if err := s.api("GET", saBase(d.Org), nil, &d.Accounts); err != nil {
		return err
	}
	sort.Slice(d.Accounts, func(i, j int) bool { return d.Accounts[i].Name < d.Accounts[j].Name })
	c.render(w, r, status, "serviceaccounts", s, page{Title: d.Org + " · service accounts", Section: "orgs", Error: problem, Data: d})
	return nil
}

func (c *Console) serviceAccountsAction(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := tokensOwnOnly(s); err != nil {
		return err
	}
	org, f := r.PathValue("org"), r.PostForm
	if f.Get("action") != "create" {
		return errorPage(http.StatusBadRequest, "Unknown action "+strconv.Quote(f.Get("action"))+".")
	}
	var d serviceAccountsPage
	d.Form.Name, d.Form.Description = strings.TrimSpace(f.Get("name")), strings.TrimSpace(f.Get("description"))
	var sa meta.ServiceAccount
	if err := s.api("POST", saBase(org), map[string]string{"name": d.Form.Name, "description": d.Form.Description}, &sa); err != nil {
		ue := asUserError(err)
		if ue.Status == http.StatusNotFound || ue.Status == http.StatusForbidden {
			return err
		}
		return c.showServiceAccounts(w, r, s, ue.Status, ue.Message, d)
	}
	return done(w, r, saPage(org)+"/"+url.PathEscape(sa.Name), "sa-created")
}

func (c *Console) serviceAccount(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showServiceAccount(w, r, s, http.StatusOK, "", serviceAccountPage{})
}

func (c *Console) showServiceAccount(w http.ResponseWriter, r *http.Request, s *session, status int, problem string, d serviceAccountPage) error {
	if err := tokensOwnOnly(s); err != nil {
		return err
	}
	d.Org = r.PathValue("org")
	base := saBase(d.Org) + "/" + url.PathEscape(r.PathValue("name"))
	if err := s.api("GET", base, nil, &d.Account); err != nil {
		return err
	}
	var ts []meta.APIToken
	if err := s.api("GET", base+"/tokens", nil, &ts); err != nil {
		return err
	}
	now := c.cfg.Now()
	for _, t := range ts {
		row := saTokenRow{tokenRow: tokenRow{ID: t.HashedToken, Name: t.TokenLabel, GeneratedBy: t.GeneratedBy, Active: t.IsActive, Created: t.CreatedAt}, Access: t.RepositoryAccess}
		if t.ExpiresAt != nil {
			row.Expires, row.Expired = *t.ExpiresAt, !t.ExpiresAt.After(now)
		}
		if t.LastUsed != nil {
			row.LastUsed = *t.LastUsed
		}
		d.Tokens = append(d.Tokens, row)
	}
	sort.SliceStable(d.Tokens, func(i, j int) bool { return d.Tokens[i].Created.After(d.Tokens[j].Created) })
	// The organization's admins may grant any of its repositories.
	repos, err := c.cfg.Store.Repositories(r.Context(), d.Org)
	if err != nil {
		return err
	}
	d.Repos = repos[:min(len(repos), maxTeamRepos)]
	c.render(w, r, status, "serviceaccount", s, page{Title: d.Account.Username, Section: "orgs", Error: problem, Data: d})
	return nil
}

func (c *Console) serviceAccountAction(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := tokensOwnOnly(s); err != nil {
		return err
	}
	org, name, f := r.PathValue("org"), r.PathValue("name"), r.PostForm
	base := saBase(org) + "/" + url.PathEscape(name)
	back := saPage(org) + "/" + url.PathEscape(name)
	// Only the organization's managers get further (the API's answer).
	var sa meta.ServiceAccount
	if err := s.api("GET", base, nil, &sa); err != nil {
		return err
	}
	switch f.Get("action") {
	case "create-token":
		tf := saTokenForm{Name: strings.TrimSpace(f.Get("name")), Expires: strings.TrimSpace(f.Get("expires")), Repos: f["repo"], Push: f.Get("access") == "push"}
		show := func(status int, problem string) error {
			return c.showServiceAccount(w, r, s, status, problem, serviceAccountPage{Form: tf})
		}
		if tf.Name == "" {
			return show(http.StatusBadRequest, "Give the token a name that says which pipeline uses it, such as \"build-webapp\".")
		}
		if len(tf.Repos) == 0 {
			return show(http.StatusBadRequest, "Choose the repositories the token may reach: a service account's token reaches only those.")
		}
		exp, err := expiryDate(tf.Expires, c.cfg.Now())
		if err != nil {
			return show(http.StatusBadRequest, err.Error())
		}
		actions := []string{"pull"}
		if tf.Push {
			actions = append(actions, "push")
		}
		type grant struct {
			Repository string   `json:"repository"`
			Actions    []string `json:"actions"`
		}
		req := struct {
			TokenLabel       string     `json:"tokenLabel"`
			ExpiresAt        *time.Time `json:"expiresAt,omitempty"`
			RepositoryAccess []grant    `json:"repositoryAccess"`
		}{TokenLabel: tf.Name, ExpiresAt: exp}
		for _, rp := range tf.Repos {
			full := rp
			if !strings.Contains(rp, "/") {
				full = org + "/" + rp
			}
			req.RepositoryAccess = append(req.RepositoryAccess, grant{Repository: full, Actions: actions})
		}
		var nt newToken
		if err := s.api("POST", base+"/tokens", req, &nt); err != nil {
			ue := asUserError(err)
			return show(ue.Status, ue.Message)
		}
		// The answer to this POST is the only page with the secret.
		return c.showServiceAccount(w, r, s, http.StatusCreated, "", serviceAccountPage{Created: &nt,
			Login: "docker login -u " + sa.Username + " --password-stdin " + c.pullHost(r)})
	case "revoke":
		id := f.Get("token")
		if !validTokenID(id) {
			return errorPage(http.StatusBadRequest, "Token "+strconv.Quote(id)+" is not a token's ID; reload the page and use its buttons.")
		}
		if f.Get("confirmed") != "yes" {
			return c.confirm(w, r, s, confirmPage{Action: back, Button: "Revoke token", Back: back,
				Warning: "Revoke token " + id[:12] + " of " + sa.Username + "? Pipelines that log in with it stop working at once."})
		}
		if err := s.api("DELETE", base+"/tokens/"+id, nil, nil); err != nil {
			return err
		}
		return done(w, r, back, "token-revoked")
	case "delete":
		if f.Get("confirmed") != "yes" {
			return c.confirm(w, r, s, confirmPage{Action: back, Button: "Delete " + sa.Username, Back: back,
				Warning: "Delete service account " + sa.Username + " with all its tokens? Pipelines that log in as it stop working at once."})
		}
		if err := s.api("DELETE", base, nil, nil); err != nil {
			return err
		}
		return done(w, r, saPage(org), "sa-deleted")
	}
	return errorPage(http.StatusBadRequest, "Unknown action "+strconv.Quote(f.Get("action"))+".")
}
