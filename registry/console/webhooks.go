package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/dtr-registry/dtr/registry/meta"
)

// Webhooks: System → Webhooks for system administrators (every webhook,
// any key), and a repository page's Webhooks for its admins (key fixed to
// the repository). Listing, creating, testing, deleting and the delivery
// log are the admin API's /webhooks calls: it decides who may watch what,
// and a non-admin sees the webhooks they created.

// webhookForm is the create form, as sent.
type webhookForm struct {
	Type, Key, Endpoint, TLSCert string
	SkipTLSVerification          bool
}

type webhookList struct {
	Hooks []meta.Webhook
	Types []string
	// Key is the repository a repository page's webhooks watch; "" on
	// System → Webhooks, whose form takes any key.
	Key     string
	Form    webhookForm
	Created *meta.Webhook // just created: its secret is shown this once
	// TestResult is what the last test's endpoint answered.
	TestResult string
	TestOK     bool
}

// repoWebhookTypes are the types a repository's webhook may have: cluster
// events go only to webhooks without a key.
func repoWebhookTypes() []string {
	return slices.DeleteFunc(slices.Clone(meta.WebhookTypes), meta.ClusterWebhookType)
}

// webhooksOf lists the webhooks the caller may see (the API's answer)
// whose key is key; every one when all is set.
func (c *Console) listWebhooks(s *session, key string, all bool) ([]meta.Webhook, error) {
	var hooks []meta.Webhook
	if err := s.api("GET", "/webhooks", nil, &hooks); err != nil {
		return nil, err
	}
	if !all {
		hooks = slices.DeleteFunc(hooks, func(h meta.Webhook) bool { return h.Key != key })
	}
	return hooks, nil
}

// webhooksOf is a repository page's webhook section: every webhook on the
// repository (GET /repositories/{ns}/{repo}/webhooks, for its admins);
// from an API without that route, the caller's own (GET /webhooks by key).
func (c *Console) webhooksOf(s *session, repo string) (webhookList, error) {
	ns, name, err := meta.SplitRepository(repo)
	if err != nil {
		return webhookList{}, err
	}
	var hooks []meta.Webhook
	err = s.api("GET", apiRepoPath(ns, name)+"/webhooks", nil, &hooks)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound && strings.HasPrefix(ae.Message, "no such API endpoint") {
		hooks, err = c.listWebhooks(s, repo, false)
	}
	if err != nil {
		return webhookList{}, err
	}
	return webhookList{Hooks: hooks, Types: repoWebhookTypes(), Key: repo, Form: webhookForm{Type: meta.WebhookTagPush}}, nil
}

func (c *Console) systemWebhooks(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showSystemWebhooks(w, r, s, http.StatusOK, "", nil)
}

func (c *Console) showSystemWebhooks(w http.ResponseWriter, r *http.Request, s *session, status int, problem string, wl *webhookList) error {
	if err := requireAdmin(s); err != nil {
		return err
	}
	hooks, err := c.listWebhooks(s, "", true)
	if err != nil {
		return err
	}
	d := webhookList{Form: webhookForm{Type: meta.WebhookTagPush}}
	if wl != nil {
		d = *wl
	}
	d.Hooks, d.Types, d.Key = hooks, meta.WebhookTypes, ""
	c.render(w, r, status, "webhooks", s, page{Title: "Webhooks", Section: "system", Error: problem, Data: d})
	return nil
}

func (c *Console) systemWebhooksAction(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := requireAdmin(s); err != nil {
		return err
	}
	act := r.PostForm.Get("action")
	switch act {
	case "create-webhook", "test-webhook", "delete-webhook":
		return c.webhookAction(w, r, s, act, "", "/system/webhooks")
	}
	return errorPage(http.StatusBadRequest, "Unknown action "+strconv.Quote(act)+".")
}

// webhookAction creates, tests or deletes a webhook; repo is the
// repository of the page ("" on System → Webhooks, whose form names the
// key), back the page to return to.
func (c *Console) webhookAction(w http.ResponseWriter, r *http.Request, s *session, act, repo, back string) error {
	f := r.PostForm
	show := func(status int, problem string, wl webhookList) error {
		if repo == "" {
			return c.showSystemWebhooks(w, r, s, status, problem, &wl)
		}
		d, err := c.loadRepository(r, s)
		if err != nil {
			return err
		}
		if !d.IsAdmin && problem != "" {
			return errorPage(status, problem)
		}
		hooks := d.Hooks.Hooks
		d.Hooks = wl
		d.Hooks.Hooks, d.Hooks.Types, d.Hooks.Key = hooks, repoWebhookTypes(), repo
		c.showRepository(w, r, s, status, problem, d)
		return nil
	}
	switch act {
	case "create-webhook":
		wf := webhookForm{Type: f.Get("type"), Key: strings.TrimSpace(f.Get("key")), Endpoint: strings.TrimSpace(f.Get("endpoint")),
			TLSCert: strings.TrimSpace(f.Get("tlsCert")), SkipTLSVerification: f.Get("skipTLSVerification") == "on"}
		if repo != "" {
			wf.Key = repo
		}
		req := map[string]any{"type": wf.Type, "key": wf.Key, "endpoint": wf.Endpoint, "tlsCert": wf.TLSCert, "skipTLSVerification": wf.SkipTLSVerification}
		var hook meta.Webhook
		if err := s.api("POST", "/webhooks", req, &hook); err != nil {
			ue := asUserError(err)
			return show(ue.Status, ue.Message, webhookList{Form: wf})
		}
		// The answer holds the secret, shown this once: the page is the
		// POST's answer, not a redirect that would need it elsewhere.
		return show(http.StatusCreated, "", webhookList{Created: &hook, Form: webhookForm{Type: wf.Type}})
	case "test-webhook":
		id := f.Get("webhook")
		if !validWebhookID(id) {
			return errorPage(http.StatusBadRequest, "Webhook "+strconv.Quote(id)+" is not a webhook's ID; reload the page and use its buttons.")
		}
		var res struct {
			StatusCode int    `json:"statusCode"`
			Error      string `json:"error"`
		}
		if err := s.api("POST", "/webhooks/test", map[string]string{"id": id}, &res); err != nil {
			ue := asUserError(err)
			return show(ue.Status, ue.Message, webhookList{Form: webhookForm{Type: meta.WebhookTagPush}})
		}
		wl := webhookList{Form: webhookForm{Type: meta.WebhookTagPush}}
		switch {
		case res.StatusCode >= 200 && res.StatusCode < 300 && res.Error == "":
			wl.TestResult, wl.TestOK = fmt.Sprintf("The endpoint of webhook %s took the test event: it answered %d.", id[:min(12, len(id))], res.StatusCode), true
		case res.StatusCode != 0:
			wl.TestResult = fmt.Sprintf("The endpoint of webhook %s refused the test event: it answered %d %s. Check the receiver's log: a signature it does not accept (the secret) or a path it does not serve are the usual reasons.", id[:min(12, len(id))], res.StatusCode, http.StatusText(res.StatusCode))
		default:
			wl.TestResult = fmt.Sprintf("The test of webhook %s failed: %s. Check the endpoint's address, that the replicas can reach it, and its certificate (give its CA).", id[:min(12, len(id))], res.Error)
		}
		return show(http.StatusOK, "", wl)
	case "delete-webhook":
		id := f.Get("webhook")
		if !validWebhookID(id) {
			return errorPage(http.StatusBadRequest, "Webhook "+strconv.Quote(id)+" is not a webhook's ID; reload the page and use its buttons.")
		}
		if f.Get("confirmed") != "yes" {
			return c.confirm(w, r, s, confirmPage{Action: back, Button: "Delete webhook", Back: back,
				Warning: "Delete webhook " + id[:min(12, len(id))] + " with its delivery log? Its endpoint gets no more events."})
		}
		if err := s.api("DELETE", "/webhooks/"+url.PathEscape(id), nil, nil); err != nil {
			ue := asUserError(err)
			return show(ue.Status, ue.Message, webhookList{Form: webhookForm{Type: meta.WebhookTagPush}})
		}
		return done(w, r, back, "webhook-deleted")
	}
	return errorPage(http.StatusBadRequest, "Unknown action "+strconv.Quote(act)+".")
}

// validWebhookID: webhook IDs are 64 hex digits (meta.NewWebhookID).
func validWebhookID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

type deliveriesPage struct {
	Hook       meta.Webhook
	Deliveries []meta.DeliveryLogEntry
	Back       string
}

// webhookDeliveries is a webhook's page: its settings and delivery log,
// for its creator and system administrators (the API's rule; anyone else
// gets "no webhook").
func (c *Console) webhookDeliveries(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	if !validWebhookID(id) {
		return errorPage(http.StatusNotFound, "There is no webhook "+id+", or you may not see it.")
	}
	var d deliveriesPage
	if err := s.api("GET", "/webhooks/"+id, nil, &d.Hook); err != nil {
		if ue := asUserError(err); ue.Status == http.StatusNotFound {
			return errorPage(http.StatusNotFound, "There is no webhook "+id+", or you may not see it.")
		}
		return err
	}
	if err := s.api("GET", "/webhooks/"+id+"/deliveries?pageSize=100", nil, &d.Deliveries); err != nil {
		return err
	}
	section := "repositories"
	switch {
	case strings.Contains(d.Hook.Key, "/"):
		d.Back = "/repositories/" + d.Hook.Key
	case s.acc.IsAdmin:
		d.Back, section = "/system/webhooks", "system"
	default:
		d.Back = "/repositories"
	}
	c.render(w, r, http.StatusOK, "webhook", s, page{Title: "Webhook", Section: section, Data: d})
	return nil
}
