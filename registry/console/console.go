// Package console is the web console every replica serves at "/": sign-in
// with the registry's accounts, repositories and their tags, organizations
// and teams, users, and the system settings (docs/console.md).
//
// It holds no rules of its own about who may do what. Every change, and
// every read the admin API answers, is a call to the admin API's handler in
// the same process, authenticated as the signed-in account with a token for
// the API's own scope; what the API has no route for (tags, the repository
// list) is checked with the metadata store's access functions, the ones the
// API and the token server use. Sessions are records in the metadata store,
// so any replica accepts a session another one started.
package console

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/meta"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Tag is a tag as the repository page shows it.
type Tag struct {
	Name      string
	Digest    string
	MediaType string
	Size      int64    // the manifest's config and layers; an index: the sum over its platforms' manifests
	Platforms []string // "linux/amd64"; empty for a single-platform image without a config platform
	PushedAt  time.Time
	// PushedBy is the account whose push wrote the tag's current digest,
	// from the audit trail; the console fills it in ("" when unknown).
	PushedBy  string
	Referrers []Referrer // signatures, SBOMs and other artifacts whose subject is the tag's manifest
}

// Referrer is an artifact that refers to a manifest.
type Referrer struct {
	Digest       string
	ArtifactType string
}

// Config wires the console to its replica.
type Config struct {
	Store *meta.Store
	// Watcher watches Store's records (the same etcd client): the
	// repository list keeps its records between pages until one changes.
	// nil: every list reads them all.
	Watcher clientv3.Watcher
	Logins  *auth.Logins // sign-in: the same throttled, bounded password checks as the API
	// API is the admin API's handler; IssueAPIToken signs a short-lived
	// token for the admin API's scope for an account, with which the
	// console calls API on the account's behalf.
	API           http.Handler
	IssueAPIToken func(acc meta.Account) (string, error)
	// APICalled, when set, hears of every call the console made to API
	// (req is the call, as the API saw it): the replica's audit trail
	// records the console's changes as the API's own.
	APICalled func(req *http.Request, status int, user string)
	// Tags lists a repository's tags ("namespace/name"), newest first or
	// in any order; DeleteTag removes one tag (its manifest stays, pullable
	// by digest). The console checks access before it calls them.
	Tags      func(ctx context.Context, repo string) ([]Tag, error)
	DeleteTag func(ctx context.Context, repo, tag string) error
	// TestStorage writes, reads back and removes an object with the given
	// storage settings, before the Storage page saves them.
	TestStorage func(ctx context.Context, st meta.Storage) error
	ReplicaID   string
	Version     string
	Log         logrus.FieldLogger
	// IdleTimeout ends a session nobody used for that long (default 30
	// minutes); MaxAge ends any session that long after sign-in (default
	// 12 hours).
	IdleTimeout time.Duration
	MaxAge      time.Duration
	Now         func() time.Time
}

// Console is the web console's handler.
type Console struct {
	cfg   Config
	repos *meta.RepositoryCache // nil without a Watcher
	mux   *http.ServeMux
	pages map[string]*template.Template
}

// New returns the console.
func New(cfg Config) (*Console, error) {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 12 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		cfg.Log = l
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, mux: http.NewServeMux(), pages: pages}
	if cfg.Watcher != nil {
		c.repos = cfg.Store.NewRepositoryCache(cfg.Watcher)
		go func() {
			// The first listing after a start need not read them all.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.repos.Warm(ctx); err != nil {
				cfg.Log.WithError(err).Debug("console: reading the repositories ahead")
			}
		}()
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	c.mux.Handle("GET /static/", http.StripPrefix("/static/", staticFiles(http.FileServerFS(static))))
	c.mux.HandleFunc("GET /login", c.loginPage)
	c.mux.HandleFunc("POST /login", c.login)
	c.mux.HandleFunc("POST /logout", c.signedIn(c.logout))
	c.mux.HandleFunc("GET /{$}", c.signedIn(func(w http.ResponseWriter, r *http.Request, s *session) error {
		http.Redirect(w, r, "/repositories", http.StatusSeeOther)
		return nil
	}))
	c.mux.HandleFunc("GET /repositories", c.signedIn(c.repositories))
	c.mux.HandleFunc("GET /repositories/new", c.signedIn(c.newRepositoryPage))
	c.mux.HandleFunc("POST /repositories/new", c.signedIn(c.createRepository))
	c.mux.HandleFunc("GET /repositories/{path...}", c.signedIn(c.repository))
	c.mux.HandleFunc("POST /repositories/{path...}", c.signedIn(c.repositoryAction))
	c.mux.HandleFunc("GET /orgs", c.signedIn(c.organizations))
	c.mux.HandleFunc("POST /orgs", c.signedIn(c.createOrganization))
	c.mux.HandleFunc("GET /orgs/{org}", c.signedIn(c.organization))
	c.mux.HandleFunc("POST /orgs/{org}", c.signedIn(c.organizationAction))
	c.mux.HandleFunc("GET /orgs/{org}/serviceaccounts", c.signedIn(c.serviceAccounts))
	c.mux.HandleFunc("POST /orgs/{org}/serviceaccounts", c.signedIn(c.serviceAccountsAction))
	c.mux.HandleFunc("GET /orgs/{org}/serviceaccounts/{name}", c.signedIn(c.serviceAccount))
	c.mux.HandleFunc("POST /orgs/{org}/serviceaccounts/{name}", c.signedIn(c.serviceAccountAction))
	c.mux.HandleFunc("GET /orgs/{org}/teams/{team}", c.signedIn(c.team))
	c.mux.HandleFunc("POST /orgs/{org}/teams/{team}", c.signedIn(c.teamAction))
	c.mux.HandleFunc("GET /users", c.signedIn(c.users))
	c.mux.HandleFunc("POST /users", c.signedIn(c.usersAction))
	c.mux.HandleFunc("GET /account", c.signedIn(c.accountPage))
	c.mux.HandleFunc("POST /account", c.signedIn(c.accountAction))
	c.mux.HandleFunc("GET /account/tokens", c.signedIn(c.accessTokens))
	c.mux.HandleFunc("POST /account/tokens", c.signedIn(c.accessTokensAction))
	c.mux.HandleFunc("GET /system/identity", c.signedIn(c.systemIdentity))
	c.mux.HandleFunc("POST /system/identity", c.signedIn(c.systemIdentityAction))
	c.mux.HandleFunc("GET /system", c.signedIn(c.systemGeneral))
	c.mux.HandleFunc("POST /system", c.signedIn(c.systemGeneralSave))
	c.mux.HandleFunc("GET /system/storage", c.signedIn(c.systemStorage))
	c.mux.HandleFunc("POST /system/storage", c.signedIn(c.systemStorageSave))
	c.mux.HandleFunc("GET /system/replicas", c.signedIn(c.systemReplicas))
	c.mux.HandleFunc("GET /system/gc", c.signedIn(c.systemGC))
	c.mux.HandleFunc("POST /system/gc", c.signedIn(c.systemGCAction))
	c.mux.HandleFunc("GET /system/webhooks", c.signedIn(c.systemWebhooks))
	c.mux.HandleFunc("POST /system/webhooks", c.signedIn(c.systemWebhooksAction))
	c.mux.HandleFunc("GET /webhooks/{id}", c.signedIn(c.webhookDeliveries))
	c.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusNotFound, "message", nil, page{Title: "Not found",
			Message: "There is no page at " + r.URL.Path + ". The registry API is under /v2/, the admin API under /api/v0/."})
	})
	return c, nil
}

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// The console's pages load nothing from elsewhere and are never framed.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	c.mux.ServeHTTP(w, r)
}

// staticFiles caches the embedded assets briefly: they change only with
// the replica's version.
func staticFiles(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// userError is a refusal or a failure in the operator's words, shown on the
// page with the status it answers.
type userError struct {
	Status  int
	Message string
}

func (e *userError) Error() string { return e.Message }

func errorPage(status int, msg string) error { return &userError{Status: status, Message: msg} }

// asUserError maps what went wrong to what the page says.
func asUserError(err error) *userError {
	var ue *userError
	var ae *apiError
	switch {
	case errors.As(err, &ue):
		return ue
	case errors.As(err, &ae):
		return &userError{Status: ae.Status, Message: ae.Message}
	case errors.Is(err, meta.ErrNotFound):
		return &userError{Status: http.StatusNotFound, Message: "Not found."}
	case meta.Unavailable(err):
		return &userError{Status: http.StatusServiceUnavailable, Message: "The metadata store is unavailable (the cluster may have lost its quorum); try again in a few seconds. System → Replicas tells what is wrong."}
	}
	return &userError{Status: http.StatusInternalServerError, Message: "Something went wrong on the replica; its log has the details."}
}

// readable lists the repositories acc may read (meta.Store.ReadableRepositories).
func (c *Console) readable(ctx context.Context, acc *meta.Account) ([]meta.Repository, error) {
	if c.repos != nil {
		return c.repos.ReadableRepositories(ctx, acc)
	}
	return c.cfg.Store.ReadableRepositories(ctx, acc)
}
