package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/internal/units"
	"github.com/dtr-registry/dtr/registry/meta"
)

// page is what every template gets: the layout's fields and the page's Data.
type page struct {
	Title   string
	Section string // the navigation entry to highlight
	Me      *meta.Account
	CSRF    string
	Flash   string // what the last change did
	Error   string // what went wrong, in the operator's words
	Message string
	Next    string
	Version string
	Replica string
	Data    any
}

// flashes are the messages a redirect after a change may show (?done=…):
// a fixed set, so that a link cannot put words on the page.
var flashes = map[string]string{
	"repo-created":     "Repository created.",
	"repo-saved":       "Repository settings saved.",
	"repo-deleted":     "Repository deleted with its tags.",
	"tag-deleted":      "Tag deleted. Its manifest stays pullable by digest until garbage collection removes it.",
	"grant-saved":      "Access saved.",
	"grant-removed":    "Access removed.",
	"org-created":      "Organization created.",
	"member-saved":     "Member saved.",
	"member-removed":   "Member removed.",
	"team-created":     "Team created.",
	"team-deleted":     "Team deleted.",
	"user-created":     "User created.",
	"user-saved":       "User saved.",
	"password-changed": "Password changed. Sessions and tokens of that account have ended.",
	"settings-saved":   "Settings saved. Every replica applies them within seconds.",
	"storage-saved":    "Storage tested and saved. Every replica switches to it within seconds.",
	"gc-scheduled":     "Garbage collection schedule saved.",
	"gc-unscheduled":   "Garbage collection schedule removed.",
	"gc-started":       "Garbage collection started; it appears under Past runs.",
	"policy-added":     "Pruning policy added. Tags it matches are pruned at the next push and the next scheduled run.",
	"policy-saved":     "Pruning policy saved.",
	"policy-deleted":   "Pruning policy deleted.",
	"webhook-deleted":  "Webhook deleted with its delivery log.",
	"sa-created":       "Service account created. Create a token for each pipeline that logs in as it.",
	"sa-deleted":       "Service account deleted with its tokens.",
	"token-revoked":    "Access token revoked. It no longer works on any replica.",
	"identity-saved":   "Identity settings saved. Every replica uses them for the next sign-in.",
	"sync-started":     "Sync started; it appears under Recent syncs.",
	"team-linked":      "Team linked to the directory group. The next sync sets its members.",
	"team-unlinked":    "Link to the directory group removed. The team keeps its members; add and remove them here from now on.",
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"iso": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"size": units.HumanBytes,
	"short": func(d string) string {
		_, h, ok := strings.Cut(d, ":")
		if ok && len(h) > 12 {
			return h[:12]
		}
		return d
	},
	"path":  func(s string) string { return (&url.URL{Path: s}).EscapedPath() },
	"seg":   url.PathEscape,
	"query": url.QueryEscape,
	"join":  strings.Join,
	// ruleOps and ruleFields are the pruning form's choices.
	"ruleOps":    func() any { return pruningOperators },
	"ruleFields": func() []string { return pruningFields },
	// head is the start of a long ID, as the pages show it.
	"head": func(s string) string { return s[:min(12, len(s))] },
	// dict passes several values to a shared template.
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[fmt.Sprint(kv[i])] = kv[i+1]
		}
		return m
	},
}

var pageNames = []string{"login", "expired", "message", "confirm", "repositories", "repository", "newrepo",
	"orgs", "org", "team", "users", "account", "system", "storage", "replicas", "gc", "webhooks", "webhook",
	"tokens", "identity", "serviceaccounts", "serviceaccount"}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// render writes a page; s is nil on pages shown without a session.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, p page) {
	p.Version, p.Replica = c.cfg.Version, c.cfg.ReplicaID
	if s != nil {
		me := s.acc
		p.Me, p.CSRF = &me, s.rec.CSRF
	}
	if p.Flash == "" {
		p.Flash = flashes[r.URL.Query().Get("done")]
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		c.cfg.Log.WithError(err).WithField("page", name).Error("console: rendering")
		http.Error(w, "the console could not render this page; the replica's log has the details", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Pages hold what only this session may see.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// done redirects after a change (POST, then GET), with a flash message.
func done(w http.ResponseWriter, r *http.Request, to, flash string) error {
	sep := "?"
	if strings.Contains(to, "?") {
		sep = "&"
	}
	http.Redirect(w, r, to+sep+"done="+flash, http.StatusSeeOther)
	return nil
}
