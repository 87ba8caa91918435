package adminapi

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/meta"
)

// WebhookRequest is the body of POST /api/v0/webhooks (DTR's fields, and
// secret: the HMAC key of the signature header; one is generated when it
// is left out) and of POST /api/v0/webhooks/test (id: test an existing
// webhook, signed with its secret).
type WebhookRequest struct {
	ID                  string `json:"id,omitempty"`
	Type                string `json:"type"`
	Key                 string `json:"key"`
	Endpoint            string `json:"endpoint"`
	TLSCert             string `json:"tlsCert,omitempty"`
	SkipTLSVerification bool   `json:"skipTLSVerification"`
	Secret              string `json:"secret,omitempty"`
}

// WebhookUpdate is the body of POST /api/v0/webhooks/update.
type WebhookUpdate struct {
	ID                  string  `json:"id"`
	Inactive            *bool   `json:"inactive,omitempty"`
	TLSCert             *string `json:"tlsCert,omitempty"`
	SkipTLSVerification *bool   `json:"skipTLSVerification,omitempty"`
}

// minWebhookSecret bounds a caller's own secret from below.
const minWebhookSecret = 16

func webhookView(w meta.Webhook) meta.Webhook {
	w.Secret = ""
	return w
}

// checkWebhook validates a webhook's type, key, endpoint and certificate,
// and that me may watch key.
func (a *API) checkWebhook(r *http.Request, me *meta.Account, req WebhookRequest) error {
	if !slices.Contains(meta.WebhookTypes, req.Type) {
		return errorf(http.StatusBadRequest, "INVALID_WEBHOOK", "type %q: use one of %s", req.Type, strings.Join(meta.WebhookTypes, ", "))
	}
	u, err := url.Parse(req.Endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errorf(http.StatusBadRequest, "INVALID_WEBHOOK", "endpoint %q: give an http or https URL", req.Endpoint)
	}
	if req.TLSCert != "" {
		if err := checkPEMCerts(req.TLSCert); err != nil {
			return errorf(http.StatusBadRequest, "INVALID_WEBHOOK", "tlsCert: %v", err)
		}
	}
	switch {
	case meta.ClusterWebhookType(req.Type) && req.Key != "":
		return errorf(http.StatusBadRequest, "INVALID_WEBHOOK", "%s events concern the cluster: leave key empty", req.Type)
	case req.Key == "":
		if !me.IsAdmin {
			return errorf(http.StatusForbidden, "FORBIDDEN", "only a system administrator may watch every repository: give key as namespace or namespace/repository")
		}
	case strings.Contains(req.Key, "/"):
		ns, repo, err := meta.SplitRepository(req.Key)
		if err != nil {
			return err
		}
		if _, err := a.repoAccess(r.Context(), me, ns, repo, meta.Admin); err != nil {
			return err
		}
	default:
		if err := a.namespaceAdmin(r, me, req.Key); err != nil {
			return err
		}
	}
	return nil
}

// namespaceAdmin lets through the administrators of a namespace: system
// administrators, the user whose namespace it is, and an organization's
// admins. Namespaces are accounts, which every user may list, so a missing
// one is named as such.
func (a *API) namespaceAdmin(r *http.Request, me *meta.Account, ns string) error {
	acc, err := a.cfg.Store.Account(r.Context(), ns)
	if errors.Is(err, meta.ErrNotFound) {
		return errorf(http.StatusNotFound, "NO_SUCH_ACCOUNT", "namespace %s does not exist", ns)
	} else if err != nil {
		return err
	}
	if me.IsAdmin || me.Name == ns {
		return nil
	}
	if acc.IsOrg {
		m, err := a.cfg.Store.OrgMember(r.Context(), ns, me.Name)
		if err == nil && m.IsAdmin {
			return nil
		}
		if err != nil && !errors.Is(err, meta.ErrNotFound) {
			return err
		}
	}
	return errorf(http.StatusForbidden, "FORBIDDEN", "only the administrators of namespace %s (its own user, its organization's admins) and system administrators manage its webhooks; you may watch your own namespace and repositories you administer", ns)
}

func checkPEMCerts(s string) error {
	rest := []byte(s)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate found")
	}
	return nil
}

func (a *API) createWebhook(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	var req WebhookRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if err := a.checkWebhook(r, me, req); err != nil {
		return err
	}
	secret := req.Secret
	if secret == "" {
		var b [32]byte
		_, _ = rand.Read(b[:])
		secret = hex.EncodeToString(b[:])
	} else if len(secret) < minWebhookSecret {
		return errorf(http.StatusBadRequest, "INVALID_WEBHOOK", "secret shorter than %d characters: give a longer one, or leave it out to have one generated", minWebhookSecret)
	}
	hook := meta.Webhook{ID: meta.NewWebhookID(), Type: req.Type, Key: req.Key, Endpoint: req.Endpoint, AuthorID: me.Name,
		CreatedAt: time.Now().UTC(), TLSCert: req.TLSCert, SkipTLSVerification: req.SkipTLSVerification, Secret: secret}
	if err := a.cfg.Store.CreateWebhook(r.Context(), hook); err != nil {
		return err
	}
	// The secret is shown this once.
	httpjson.Write(w, http.StatusCreated, hook)
	return nil
}

// ownWebhook reads a webhook its author or an administrator may manage.
func (a *API) ownWebhook(r *http.Request, me *meta.Account, id string) (meta.Webhook, error) {
	hook, err := a.cfg.Store.Webhook(r.Context(), id)
	if errors.Is(err, meta.ErrNotFound) || err == nil && !me.IsAdmin && hook.AuthorID != me.Name {
		return hook, errorf(http.StatusNotFound, "NO_SUCH_WEBHOOK", "no webhook %s", id)
	}
	return hook, err
}

func (a *API) listWebhooks(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	hooks, err := a.cfg.Store.Webhooks(r.Context())
	if err != nil {
		return err
	}
	typ := r.URL.Query().Get("webhookType")
	out := []meta.Webhook{}
	for _, h := range hooks {
		if (me.IsAdmin || h.AuthorID == me.Name) && (typ == "" || typ == "any" || typ == h.Type) {
			out = append(out, webhookView(h))
		}
	}
	httpjson.Write(w, http.StatusOK, out)
	return nil
}

// listRepositoryWebhooks answers GET
// /api/v0/repositories/{ns}/{repo}/webhooks: the webhooks on one
// repository, whoever made them, for its administrators. A caller who may
// not see a private repository gets the answer of one that does not exist.
func (a *API) listRepositoryWebhooks(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns, repo := r.PathValue("ns"), r.PathValue("repo")
	if _, err := a.repoAccess(r.Context(), me, ns, repo, meta.Admin); err != nil {
		return err
	}
	return a.writeWebhooks(w, r, ns+"/"+repo)
}

// listNamespaceWebhooks answers GET
// /api/v0/repositoryNamespaces/{ns}/webhooks: the webhooks on a whole
// namespace, for its administrators.
func (a *API) listNamespaceWebhooks(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns := r.PathValue("ns")
	if err := a.namespaceAdmin(r, me, ns); err != nil {
		return err
	}
	return a.writeWebhooks(w, r, ns)
}

// writeWebhooks answers with the webhooks keyed on key (webhookType
// filters by type), their secrets left out.
func (a *API) writeWebhooks(w http.ResponseWriter, r *http.Request, key string) error {
	hooks, err := a.cfg.Store.Webhooks(r.Context())
	if err != nil {
		return err
	}
	typ := r.URL.Query().Get("webhookType")
	out := []meta.Webhook{}
	for _, h := range hooks {
		if h.Key == key && (typ == "" || typ == "any" || typ == h.Type) {
			out = append(out, webhookView(h))
		}
	}
	httpjson.Write(w, http.StatusOK, out)
	return nil
}

func (a *API) getWebhook(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	hook, err := a.ownWebhook(r, me, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, webhookView(hook))
	return nil
}

func (a *API) deleteWebhook(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	id := r.PathValue("id")
	if _, err := a.ownWebhook(r, me, id); err != nil {
		return err
	}
	if err := a.cfg.Store.DeleteWebhook(r.Context(), id); err != nil {
		if errors.Is(err, meta.ErrNotFound) {
			return errorf(http.StatusNotFound, "NO_SUCH_WEBHOOK", "no webhook %s", id)
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) updateWebhook(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	var req WebhookUpdate
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if _, err := a.ownWebhook(r, me, req.ID); err != nil {
		return err
	}
	if req.TLSCert != nil && *req.TLSCert != "" {
		if err := checkPEMCerts(*req.TLSCert); err != nil {
			return errorf(http.StatusBadRequest, "INVALID_WEBHOOK", "tlsCert: %v", err)
		}
	}
	hook, err := a.cfg.Store.UpdateWebhook(r.Context(), req.ID, func(h *meta.Webhook) error {
		if req.Inactive != nil {
			h.Inactive = *req.Inactive
		}
		if req.TLSCert != nil {
			h.TLSCert = *req.TLSCert
		}
		if req.SkipTLSVerification != nil {
			h.SkipTLSVerification = *req.SkipTLSVerification
		}
		return nil
	})
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, []meta.Webhook{webhookView(hook)})
	return nil
}

// WebhookTestResult is the answer of POST /api/v0/webhooks/test.
type WebhookTestResult struct {
	StatusCode int    `json:"statusCode"`
	Error      string `json:"error,omitempty"`
}

// testWebhook sends a sample payload once: to an existing webhook (id),
// signed with its secret, or to the endpoint in the request, unsigned
// (an empty key). The endpoint's failure is the answer's content, not an
// API error.
func (a *API) testWebhook(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	var req WebhookRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if a.cfg.TestWebhook == nil {
		return errorf(http.StatusServiceUnavailable, "UNAVAILABLE", "this replica cannot send webhooks")
	}
	var hook meta.Webhook
	if req.ID != "" {
		h, err := a.ownWebhook(r, me, req.ID)
		if err != nil {
			return err
		}
		hook = h
	} else {
		if err := a.checkWebhook(r, me, req); err != nil {
			return err
		}
		hook = meta.Webhook{Type: req.Type, Endpoint: req.Endpoint, TLSCert: req.TLSCert, SkipTLSVerification: req.SkipTLSVerification}
	}
	code, err := a.cfg.TestWebhook(r.Context(), hook)
	res := WebhookTestResult{StatusCode: code}
	if err != nil {
		res.Error = err.Error()
	}
	httpjson.Write(w, http.StatusOK, res)
	return nil
}

// webhookDeliveries answers GET /api/v0/webhooks/{id}/deliveries: the
// webhook's delivery log, newest first.
func (a *API) webhookDeliveries(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	id := r.PathValue("id")
	if _, err := a.ownWebhook(r, me, id); err != nil {
		return err
	}
	es, err := a.cfg.Store.DeliveryLog(r.Context(), id)
	if err != nil {
		return err
	}
	if es == nil {
		es = []meta.DeliveryLogEntry{}
	}
	es, err = page(w, r, es, func(e meta.DeliveryLogEntry) string { return e.ID })
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, es)
	return nil
}
