// Package adminapi is the replica's admin API, /api/v0/…: accounts,
// organizations, teams, repositories, permissions, settings and cluster
// status, as JSON. Callers authenticate with Basic auth or a bearer token
// from /auth/token.
package adminapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/internal/reqinfo"
	"github.com/dtr-registry/dtr/registry/member"
	"github.com/dtr-registry/dtr/registry/meta"
)

// ClusterInfo is what the API needs of the metadata member.
type ClusterInfo interface {
	Status(ctx context.Context) member.Status
	Members(ctx context.Context) ([]member.Info, error)
	AddLearner(ctx context.Context, name, peerURL string) (uint64, string, error)
	Promote(ctx context.Context, id uint64) error
	Remove(ctx context.Context, id uint64) error
}

// Config wires the API to the replica.
type Config struct {
	Store     *meta.Store
	Verifier  *auth.Verifier
	Logins    *auth.Logins // Basic auth: throttled, bounded password checks
	ReplicaID string
	Cluster   ClusterInfo
	Log       logrus.FieldLogger
	// Backup streams a backup of the cluster (GET /api/v0/meta/backup,
	// ?includeImages=true with the images).
	Backup func(ctx context.Context, w io.Writer, includeImages bool) error
	// CheckStorage compares what the repositories reference with what the
	// storage holds (GET /api/v0/meta/storage_check).
	CheckStorage func(ctx context.Context) (contract.StorageCheck, error)
	// DeleteRepositoryContent removes a repository's tags, manifests and
	// layer links ("namespace/name") from storage; a repository that has
	// none is not an error. DeleteNamespaceContent does the same for every
	// repository under a namespace. nil: the replica has no storage to clear.
	DeleteRepositoryContent func(ctx context.Context, repo string) error
	DeleteNamespaceContent  func(ctx context.Context, namespace string) error
	// ListTags lists a repository's tags with the time each was last pushed,
	// for the dry run of a pruning policy. nil: the replica has no storage.
	ListTags func(ctx context.Context, repo string) ([]meta.TagInfo, error)
	// RotateTokenKey makes a new token-signing key current (POST
	// /api/v0/meta/token_key/rotate).
	RotateTokenKey func(ctx context.Context) (contract.TokenKeyRotation, error)
	// TestWebhook sends a sample event to a webhook's endpoint once (POST
	// /api/v0/webhooks/test) and returns the endpoint's HTTP status.
	TestWebhook func(ctx context.Context, hook meta.Webhook) (int, error)
	// EmergencyRepair forces this replica's member into a new cluster of
	// one, in place, once per token (POST /api/v0/meta/emergency_repair);
	// it returns a contract.EmergencyRepair* status. nil: not supported.
	EmergencyRepair func(token string) (string, error)
}

// API is the admin API handler.
type API struct {
	cfg Config
	mux *http.ServeMux
}

// MaxBody bounds every request body.
const MaxBody = 1 << 20

// New returns the admin API.
func New(cfg Config) *API {
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	h := func(pattern string, fn func(w http.ResponseWriter, r *http.Request, me *meta.Account) error) {
		a.mux.HandleFunc(pattern, a.wrap(fn))
	}
	h("GET /api/v0/accounts", a.listAccounts)
	h("POST /api/v0/accounts", a.createAccount)
	h("GET /api/v0/accounts/{name}", a.getAccount)
	h("PATCH /api/v0/accounts/{name}", a.patchAccount)
	h("DELETE /api/v0/accounts/{name}", a.deleteAccount)
	h("POST /api/v0/accounts/{name}/changePassword", a.changePassword)
	h("GET /api/v0/accounts/{org}/members", a.listOrgMembers)
	h("PUT /api/v0/accounts/{org}/members/{member}", a.putOrgMember)
	h("DELETE /api/v0/accounts/{org}/members/{member}", a.deleteOrgMember)
	h("GET /api/v0/accounts/{org}/teams", a.listTeams)
	h("POST /api/v0/accounts/{org}/teams", a.createTeam)
	h("GET /api/v0/accounts/{org}/teams/{team}", a.getTeam)
	h("DELETE /api/v0/accounts/{org}/teams/{team}", a.deleteTeam)
	h("GET /api/v0/accounts/{org}/teams/{team}/members", a.listTeamMembers)
	h("PUT /api/v0/accounts/{org}/teams/{team}/members/{member}", a.putTeamMember)
	h("DELETE /api/v0/accounts/{org}/teams/{team}/members/{member}", a.deleteTeamMember)
	h("GET /api/v0/repositories", a.listAllRepositories)
	h("GET /api/v0/repositories/{ns}", a.listRepositories)
	h("POST /api/v0/repositories/{ns}", a.createRepository)
	h("GET /api/v0/repositories/{ns}/{repo}", a.getRepository)
	h("PATCH /api/v0/repositories/{ns}/{repo}", a.patchRepository)
	h("DELETE /api/v0/repositories/{ns}/{repo}", a.deleteRepository)
	h("GET /api/v0/repositories/{ns}/{repo}/teamAccess", a.listTeamAccess)
	h("PUT /api/v0/repositories/{ns}/{repo}/teamAccess/{team}", a.putTeamAccess)
	h("DELETE /api/v0/repositories/{ns}/{repo}/teamAccess/{team}", a.deleteTeamAccess)
	h("GET /api/v0/repositories/{ns}/{repo}/userAccess", a.listUserAccess)
	h("PUT /api/v0/repositories/{ns}/{repo}/userAccess/{user}", a.putUserAccess)
	h("DELETE /api/v0/repositories/{ns}/{repo}/userAccess/{user}", a.deleteUserAccess)
	h("GET /api/v0/repositories/{ns}/{repo}/pruningPolicies", a.listPruningPolicies)
	h("POST /api/v0/repositories/{ns}/{repo}/pruningPolicies", a.createPruningPolicy)
	h("POST /api/v0/repositories/{ns}/{repo}/pruningPolicies/test", a.testPruningPolicy)
	h("GET /api/v0/repositories/{ns}/{repo}/pruningPolicies/{id}", a.getPruningPolicy)
	h("PUT /api/v0/repositories/{ns}/{repo}/pruningPolicies/{id}", a.putPruningPolicy)
	h("DELETE /api/v0/repositories/{ns}/{repo}/pruningPolicies/{id}", a.deletePruningPolicy)
	// A nested name (admin/charts/hello) as plain segments; escaped as one
	// segment ({ns}/charts%2Fhello) it takes the routes above.
	for _, m := range []string{"GET", "POST", "PATCH", "PUT", "DELETE"} {
		h(m+" /api/v0/repositories/{ns}/{path...}", a.nestedRepository)
	}
	h("GET /api/v0/repositoryNamespaces/{ns}/teamAccess", a.listNamespaceAccess)
	h("PUT /api/v0/repositoryNamespaces/{ns}/teamAccess/{team}", a.putNamespaceAccess)
	h("DELETE /api/v0/repositoryNamespaces/{ns}/teamAccess/{team}", a.deleteNamespaceAccess)
	h("GET /api/v0/meta/settings", a.getSettings)
	h("PATCH /api/v0/meta/settings", a.patchSettings)
	h("GET /api/v0/meta/settings/identity", a.getIdentitySettings) // identity.go
	h("PUT /api/v0/meta/settings/identity", a.putIdentitySettings)
	h("POST /api/v0/meta/settings/identity/test", a.testIdentitySettings)
	h("GET /api/v0/accounts/{org}/teams/{team}/memberSyncConfig", a.getMemberSync)
	h("PUT /api/v0/accounts/{org}/teams/{team}/memberSyncConfig", a.putMemberSync)
	h("DELETE /api/v0/accounts/{org}/teams/{team}/memberSyncConfig", a.deleteMemberSync)
	a.mux.HandleFunc("GET /api/v0/meta/cluster_status", a.wrapOutage(a.clusterStatus))
	a.mux.HandleFunc("POST /api/v0/meta/emergency_repair", a.handler(a.emergencyRepair, a.authenticateForRepair))
	h("POST /api/v0/meta/replicas", a.addReplica)
	h("POST /api/v0/meta/replicas/{id}/promote", a.promoteReplica)
	h("DELETE /api/v0/meta/replicas/{id}", a.removeReplica)
	h("POST /api/v0/meta/replicas/{id}/drain", a.drainReplica)
	h("DELETE /api/v0/meta/replicas/{id}/drain", a.undrainReplica)
	h("GET /api/v0/meta/backup", a.backup)
	h("GET "+contract.StorageCheckPath, a.storageCheck)
	h("POST /api/v0/meta/token_key/rotate", a.rotateTokenKey)
	h("GET /api/v0/jobs", a.listJobs)
	h("POST /api/v0/jobs", a.createJob)
	h("GET /api/v0/jobs/{id}", a.getJob)
	h("DELETE /api/v0/jobs/{id}", a.deleteJob)
	h("POST /api/v0/jobs/{id}/cancel", a.cancelJobRoute)
	h("GET /api/v0/jobs/{id}/logs", a.jobLogs)
	h("GET /api/v0/events", a.listEvents)
	h("GET /api/v0/webhooks", a.listWebhooks)
	h("POST /api/v0/webhooks", a.createWebhook)
	h("POST /api/v0/webhooks/test", a.testWebhook)
	h("POST /api/v0/webhooks/update", a.updateWebhook)
	h("GET /api/v0/webhooks/{id}", a.getWebhook)
	h("DELETE /api/v0/webhooks/{id}", a.deleteWebhook)
	h("GET /api/v0/webhooks/{id}/deliveries", a.webhookDeliveries)
	h("GET /api/v0/repositories/{ns}/{repo}/events", a.listRepositoryEvents)
	h("GET /api/v0/repositories/{ns}/{repo}/webhooks", a.listRepositoryWebhooks)
	h("GET /api/v0/repositoryNamespaces/{ns}/webhooks", a.listNamespaceWebhooks)
	h("GET /api/v0/api_tokens", a.listAPITokens)
	h("POST /api/v0/api_tokens", a.createAPIToken)
	h("GET /api/v0/api_tokens/{id}", a.getAPIToken)
	h("PATCH /api/v0/api_tokens/{id}", a.patchAPIToken)
	h("DELETE /api/v0/api_tokens/{id}", a.deleteAPIToken)
	h("GET /api/v0/accounts/{org}/serviceAccounts", a.listServiceAccounts) // serviceaccounts.go
	h("POST /api/v0/accounts/{org}/serviceAccounts", a.createServiceAccount)
	h("GET /api/v0/accounts/{org}/serviceAccounts/{name}", a.getServiceAccount)
	h("DELETE /api/v0/accounts/{org}/serviceAccounts/{name}", a.deleteServiceAccount)
	h("GET /api/v0/accounts/{org}/serviceAccounts/{name}/tokens", a.listServiceAccountTokens)
	h("POST /api/v0/accounts/{org}/serviceAccounts/{name}/tokens", a.createServiceAccountToken)
	h("GET /api/v0/accounts/{org}/serviceAccounts/{name}/tokens/{id}", a.getServiceAccountToken)
	h("DELETE /api/v0/accounts/{org}/serviceAccounts/{name}/tokens/{id}", a.deleteServiceAccountToken)
	h("GET /api/v0/crons", a.listCrons)
	h("POST /api/v0/crons", a.putCron)
	h("GET /api/v0/crons/{action}", a.getCron)
	h("DELETE /api/v0/crons/{action}", a.deleteCron)
	a.mux.HandleFunc("/api/v0/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &Error{Status: http.StatusNotFound, Code: "NOT_FOUND", Message: "no such API endpoint: " + r.Method + " " + r.URL.Path})
	})
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Error is an API error with its HTTP status.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter is when to try again (the Retry-After header) for 429, 503
	// and 507; zero means retryAfterDefault.
	RetryAfter time.Duration
}

// retryAfterDefault is the Retry-After of a 503 that knows no better: a
// lost quorum's election or a busy member takes seconds, not minutes.
const retryAfterDefault = 5 * time.Second

// metadataFullRetryAfter is the Retry-After of a change refused because the
// metadata store is full: freeing space is an operator's task, not seconds.
const metadataFullRetryAfter = time.Minute

func (e *Error) Error() string { return e.Message }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

var (
	errForbidden = errorf(http.StatusForbidden, "FORBIDDEN", "you may not do this")
)

func writeError(w http.ResponseWriter, e *Error) {
	switch e.Status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="dtr"`)
	case http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusInsufficientStorage:
		after := e.RetryAfter
		if after <= 0 {
			after = retryAfterDefault
		}
		w.Header().Set("Retry-After", strconv.Itoa(int((after+time.Second-1)/time.Second)))
	}
	httpjson.Error(w, e.Status, e.Code, e.Message)
}

// classify maps store errors to API errors.
func classify(err error) *Error {
	var ae *Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, "TOO_LARGE", "request body larger than %d bytes", MaxBody)
	case errors.Is(err, meta.ErrNotFound):
		return errorf(http.StatusNotFound, "NOT_FOUND", "%v", err)
	case errors.Is(err, meta.ErrExists):
		return errorf(http.StatusConflict, "ALREADY_EXISTS", "%v", err)
	case errors.Is(err, meta.ErrInvalid):
		return errorf(http.StatusBadRequest, "INVALID", "%v", err)
	case meta.NoSpace(err):
		return &Error{Status: http.StatusInsufficientStorage, Code: "METADATA_FULL", RetryAfter: metadataFullRetryAfter,
			Message: "the metadata store is full (a replica's metadata volume or the database quota): changes are refused until an administrator frees space; reads are served (GET /api/v0/meta/cluster_status names the replica)"}
	case meta.Unavailable(err), errors.Is(err, context.Canceled):
		// Never a 500 (the replica is not broken) nor a 4xx (the caller
		// did nothing wrong): the metadata will answer again once the
		// members have a quorum.
		return errorf(http.StatusServiceUnavailable, "UNAVAILABLE", "the metadata store is unavailable (the cluster may have lost quorum: GET /api/v0/meta/cluster_status tells); try again")
	}
	return errorf(http.StatusInternalServerError, "INTERNAL", "internal error; see the replica's log")
}

// wrap authenticates the caller and turns returned errors into responses.
func (a *API) wrap(fn func(w http.ResponseWriter, r *http.Request, me *meta.Account) error) http.HandlerFunc {
	return a.handler(fn, a.authenticate)
}

// wrapOutage is wrap for the read that explains an outage (GET
// cluster_status), which must answer while the metadata has no quorum.
func (a *API) wrapOutage(fn func(w http.ResponseWriter, r *http.Request, me *meta.Account) error) http.HandlerFunc {
	return a.handler(fn, a.authenticateDuringOutage)
}

func (a *API) handler(fn func(w http.ResponseWriter, r *http.Request, me *meta.Account) error, authenticate func(ctx context.Context, r *http.Request) (*meta.Account, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		// Before authentication: a forged request costs no password check.
		err := a.checkMutation(r)
		var me *meta.Account
		if err == nil {
			me, err = authenticate(r.Context(), r)
		}
		if me != nil {
			reqinfo.SetUser(r.Context(), me.Name) // the access log and audit trail name the caller
		}
		if err == nil {
			err = checkTokenLimits(r, me)
		}
		if err == nil {
			err = fn(w, r, me)
		}
		if err != nil {
			e := classify(err)
			if e.Status >= 500 && a.cfg.Log != nil {
				a.cfg.Log.WithError(err).WithField("path", r.URL.Path).Error("admin API")
			}
			writeError(w, e)
		}
	}
}

var errUnauthenticated = errorf(http.StatusUnauthorized, "UNAUTHORIZED", "authentication required: use Basic auth, or a bearer token from /auth/token with scope "+auth.AdminAPIScope)

// authenticate finds the caller: Basic credentials (checked by Logins:
// throttled, bounded, timing-safe), or a bearer token issued for the admin
// API's own scope (auth.AdminAPIScope) whose account epoch still stands. A
// token for registry scopes is not an admin API credential: a pull token
// handed to a CI job must not download backups or create admins.
func (a *API) authenticate(ctx context.Context, r *http.Request) (*meta.Account, error) {
	if name, pw, ok := r.BasicAuth(); ok {
		acc, err := a.cfg.Logins.Check(ctx, r.RemoteAddr, name, pw)
		if err != nil {
			return nil, loginError(err, errUnauthenticated)
		}
		return acc, nil
	}
	if raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		claims, err := a.cfg.Verifier.Verify(raw)
		if err != nil || !auth.AllowsAdminAPI(claims) {
			return nil, errorf(http.StatusUnauthorized, "UNAUTHORIZED", "the bearer token is not valid for the admin API: request one with scope %q, or use Basic auth", auth.AdminAPIScope)
		}
		acc, err := a.cfg.Store.Account(ctx, claims.Subject)
		if errors.Is(err, meta.ErrNotFound) {
			return nil, errUnauthenticated
		}
		if err != nil {
			return nil, err
		}
		if epoch, _ := auth.SplitEpoch(auth.TokenEpoch(claims.JWTID)); !acc.IsActive || acc.Epoch != epoch {
			// The replica's watch may lag this read by moments.
			return nil, errUnauthenticated
		}
		return &acc, nil
	}
	return nil, errUnauthenticated
}

// quorumReadWait bounds the cluster-wide (linearizable) account read of
// authenticateDuringOutage before it falls back to the local copy: without
// quorum the read would fail only after meta.CallTimeout (5 s); the
// member's own quorum probe waits as long as this (member.Status, 1.5 s),
// so cluster_status answers in about 3 s during an outage.
const quorumReadWait = 1500 * time.Millisecond

// authenticateDuringOutage authenticates the caller of GET cluster_status,
// the page an operator opens when the metadata has lost its quorum, so it
// must work then. The same credentials as everywhere (Basic through the
// same Logins, so the same throttling and bounded bcrypt; or an admin API
// token) are checked against the account as the cluster knows it; only
// when the cluster cannot answer (meta.Unavailable) against this member's
// own copy (meta.LocalReads, serializable). That copy may lag by what this
// member missed while cut off, e.g. a password changed on the majority
// side: the old password would still show cluster status here, a read of
// no secret, and never anything else. A valid admin token alone would not
// do: /auth/token cannot issue one during the outage, and an operator who
// had none could not find out what is wrong.
func (a *API) authenticateDuringOutage(ctx context.Context, r *http.Request) (*meta.Account, error) {
	qctx, cancel := context.WithTimeout(ctx, quorumReadWait)
	me, err := a.authenticate(qctx, r)
	cancel()
	if err == nil || !meta.Unavailable(err) || ctx.Err() != nil {
		return me, err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithError(err).Warn("cluster_status: the metadata cannot answer; authenticating against this member's copy of the accounts")
	}
	return a.authenticate(meta.LocalReads(ctx), r)
}

// loginError turns a refused password check into the API's answer: bad for
// wrong credentials, 429 when throttled, 503 when no hasher is free; other
// errors (metadata) pass on to classify, which makes an unavailable
// metadata store a 503: never "wrong password" for an outage.
func loginError(err error, bad *Error) error {
	var te *auth.ThrottledError
	switch {
	case errors.Is(err, auth.ErrBadCredentials):
		return bad
	case errors.As(err, &te):
		e := errorf(http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "%v", te)
		e.RetryAfter = te.RetryAfter
		return e
	case errors.Is(err, auth.ErrBusy):
		return errorf(http.StatusServiceUnavailable, "UNAVAILABLE", "%v", err)
	case errors.Is(err, identity.ErrUnavailable):
		return errorf(http.StatusServiceUnavailable, "IDENTITY_SOURCE_UNAVAILABLE", "%s", auth.SourceUnavailable)
	}
	return err
}
