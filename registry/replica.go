// Package registry is the replica server: the Docker/OCI registry API (CNCF
// Distribution as a library) with the referrers API around it, the token
// server, the admin API, metadata in an embedded etcd member, health
// endpoints and TLS.
package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/pki"
	"github.com/dtr-registry/dtr/registry/adminapi"
	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/member"
	"github.com/dtr-registry/dtr/registry/meta"
)

// Options configure one replica.
type Options struct {
	ReplicaID string
	DataDir   string // etcd data in DataDir/etcd, issued certificates in DataDir/tls
	CADir     string // the cluster CA (the dtr-ca-<id> volume); default DataDir/ca
	// CACertFile and CAKeyFile, when set, are the cluster CA as the installer
	// hands it over (a Swarm config and secret); they are copied into CADir.
	CACertFile string
	CAKeyFile  string
	// StorageRoot is where filesystem storage keeps blobs (a volume, host
	// path or NFS mount); default DataDir/registry.
	StorageRoot string

	HTTPAddr        string // plain HTTP: /_ping, /health, and a redirect to HTTPS
	HTTPSAddr       string
	PublicHTTPSPort int // the HTTPS port clients use, for redirects (default 443)

	// Metadata member.
	PeerListen     string // default https://0.0.0.0:12380
	PeerAdvertise  string // default https://dtr-registry-<id>:12380
	ClientSocket   string // unix socket, mode 0600 in a 0700 dir; default DataDir/etcd-client/etcd.sock
	InitialCluster string // "id=peerURL,..." when joining
	Join           bool   // join an existing cluster (the member was added as a learner)
	InsecurePeers  bool   // plain-http peers: single-host tests only

	TLSCertFile string   // operator's certificate (chain) for HTTPS; default: issued by the cluster CA
	TLSKeyFile  string   //
	Hostnames   []string // extra names and addresses for the issued certificates

	// Bootstrap of a new cluster (ignored when the cluster exists).
	AdminUsername string
	AdminPassword string
	ExternalURL   string
	Storage       meta.Storage

	// Restore: a replica with no metadata waits for the installer to send a
	// backup (see restorePhase) and loads it instead of founding a cluster.
	// RestoreStorage is contract.RestoreKeepStorage or RestoreFilesystem.
	Restore        bool
	RestoreStorage string
	// ForceNewCluster, when it differs from the token this replica last
	// forced with, restarts the metadata member as the only member of its
	// cluster, keeping its data (emergency-repair). The token makes it
	// happen once per repair, however often the container restarts.
	ForceNewCluster string

	LogLevel       string
	Log            *logrus.Logger
	HealthInterval time.Duration // default 2 s
	ReportInterval time.Duration // default 3 s
	// MetadataLowSpace and MetadataSpaceReserve tune the guard of the
	// metadata volume (member.Config's LowSpace and SpaceReserve); zero
	// means member's defaults. Tests on small filesystems set them.
	MetadataLowSpace     int64
	MetadataSpaceReserve int64
	// Schema is the metadata schema the replica's build knows; nil means
	// meta.Current. Tests run replicas of other builds with it.
	Schema *meta.Schema

	// MetricsAddr, when set, serves /metrics without authentication on
	// this address (docs/observability.md); /metrics on the HTTPS port
	// always needs credentials.
	MetricsAddr string
	// MetricsTokenFile holds a bearer token that may read /metrics and
	// nothing else.
	MetricsTokenFile string
	// WebhookRetryBase is the wait before a failed webhook delivery's
	// first retry, doubling per attempt; default 1 s. Tests shorten it.
	WebhookRetryBase time.Duration
	// WebhookTimeout bounds one delivery attempt; default 10 s.
	WebhookTimeout time.Duration
	// OTLPEndpoint, when set, exports traces to this OTLP/HTTP collector
	// URL (tracing.go); tracing is off by default.
	OTLPEndpoint string
}

func (o *Options) defaults() error {
	if o.ReplicaID == "" {
		return errors.New("--replica-id is required")
	}
	if o.DataDir == "" {
		return errors.New("--data-dir is required")
	}
	abs, err := filepath.Abs(o.DataDir)
	if err != nil {
		return err
	}
	o.DataDir = abs
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.CADir, filepath.Join(o.DataDir, "ca"))
	def(&o.StorageRoot, filepath.Join(o.DataDir, "registry"))
	def(&o.HTTPAddr, ":"+strconv.Itoa(contract.HTTPPort))
	def(&o.HTTPSAddr, ":"+strconv.Itoa(contract.HTTPSPort))
	scheme := "https"
	if o.InsecurePeers {
		scheme = "http"
	}
	peerPort := ":" + strconv.Itoa(contract.PeerPort)
	def(&o.PeerListen, scheme+"://0.0.0.0"+peerPort)
	def(&o.PeerAdvertise, scheme+"://"+contract.ServiceName(o.ReplicaID)+peerPort) // contract.PeerURL with https
	def(&o.ClientSocket, member.ClientSocketIn(o.DataDir))
	def(&o.LogLevel, "info")
	if o.PublicHTTPSPort == 0 {
		o.PublicHTTPSPort = 443
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = 2 * time.Second
	}
	if o.ReportInterval == 0 {
		o.ReportInterval = 3 * time.Second // cluster_status: stale after 9 s
	}
	if o.Log == nil {
		o.Log = logrus.New()
	}
	if o.Storage.Type == "" {
		o.Storage.Type = "filesystem"
	}
	return nil
}

// Replica is a running replica.
type Replica struct {
	opts     Options
	log      *logrus.Entry
	disk     onDisk // markers and spool start-up reads and leaves
	received atomic.Pointer[backup.Manifest]
	member   *member.Member
	store    *meta.Store
	cluster  meta.Cluster
	ca       *pki.CA
	keys     atomic.Pointer[auth.Keyring]
	verify   *auth.Verifier
	accounts *auth.Accounts
	logins   *auth.Logins
	identity atomic.Pointer[identityBox] // the identity source: identity.go
	// externalURL is the settings' external URL ("" when unset), kept by
	// watchSettings: realms and redirects come from it, never from the
	// request's Host.
	externalURL atomic.Pointer[string]
	// sparseRefused is the allowSparseManifests setting turned off, kept
	// like externalURL (the zero value is the setting's default).
	sparseRefused atomic.Bool
	// ownNames are the names and addresses in the replica's certificate:
	// without an external URL, a Host naming one of them may be the realm.
	ownNames map[string]bool
	app      swappable
	// manifests serves manifest pulls from memory (manifestcache.go).
	manifests manifestCache
	driver    atomic.Pointer[driverBox]
	health    *healthChecker
	tls       *tls.Config
	handler   http.Handler
	// metrics are the replica's Prometheus metrics (metrics.go);
	// metricsToken is the hash of the metrics-only token, or nil.
	metrics      *replicaMetrics
	metricsToken *[32]byte
	audit        *auditor // the audit trail (audit.go)
	stopTracing  func(context.Context) error
	webhooks     *webhookDispatcher // webhooks.go

	mu       sync.Mutex
	storage  meta.Storage
	cancel   context.CancelFunc
	done     sync.WaitGroup
	stopOnce sync.Once
	forced   bool // this start forced a new cluster (emergency repair)

	// An emergency repair in place (repair.go): repairToken is the
	// accepted token; repairc is closed then, which ends Serve.
	repairMu    sync.Mutex
	repairToken string
	repairc     chan struct{}
}

type driverBox struct{ d driver.StorageDriver }

// applyStorage (re)builds the registry App and the health probe's driver for
// the storage settings.
func (r *Replica) applyStorage(ctx context.Context, st meta.Settings) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.app.cur.Load() != nil && reflect.DeepEqual(r.storage, st.Storage) {
		return nil
	}
	if st.Storage.Type == "filesystem" {
		if err := os.MkdirAll(r.opts.StorageRoot, 0o700); err != nil {
			return fmt.Errorf("storage directory: %w", err)
		}
		r.spareMetadataDisk(r.opts.StorageRoot)
	}
	level := st.LogLevel
	if level == "" {
		level = r.opts.LogLevel
	}
	quietDistribution(level)
	cfg, err := distributionConfig(r.cluster, st.Storage, r.opts.StorageRoot, r.verify, r.realm, level)
	if err != nil {
		return err
	}
	r.metrics.instrument(cfg)
	app, err := newApp(context.WithoutCancel(ctx), cfg)
	if err != nil {
		return err
	}
	drv, err := newDriver(context.WithoutCancel(ctx), st.Storage, r.opts.StorageRoot)
	if err != nil {
		return err
	}
	r.app.swap(app)
	r.driver.Store(&driverBox{drv})
	r.storage = st.Storage
	r.log.WithField("storage", st.Storage.Type).Info("registry storage configured")
	return nil
}

// quietDistribution sets the level of the logger Distribution writes to
// (logrus's standard logger; handlers.NewApp does not configure it). dtr
// writes its own access log, so Distribution's per-request info lines
// ("authorized request", "response completed") would only double every line
// and cost time; its warnings and errors stay.
func quietDistribution(level string) {
	l, err := logrus.ParseLevel(level)
	if err != nil || l > logrus.WarnLevel && l != logrus.DebugLevel && l != logrus.TraceLevel {
		l = logrus.WarnLevel
	}
	logrus.SetLevel(l)
}

// watchSettings applies storage changes made through any replica.
func (r *Replica) watchSettings(ctx context.Context) {
	for ctx.Err() == nil {
		wch := r.member.Client().Watch(clientv3.WithRequireLeader(ctx), meta.SettingsKey())
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			st, _, err := r.store.Settings(ctx)
			if err != nil {
				r.log.WithError(err).Warn("reading changed settings")
				continue
			}
			r.externalURL.Store(&st.ExternalURL)
			r.sparseRefused.Store(!st.SparseManifestsAllowed())
			r.applyIdentity(st)
			if err := r.applyStorage(ctx, st); err != nil {
				r.log.WithError(err).Error("applying changed storage settings; keeping the previous storage")
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// live answers the container's health check: the process serves. Readiness
// (/_ping) is for load balancers; a learner that is still catching up, or a
// replica without quorum, must not be restarted by Swarm for it.
func live(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"Live":true}` + "\n"))
}

// reportHealth returns the health checker's callback that records this
// replica's health for cluster_status: at once when it changes, and every
// ReportInterval otherwise.
func (r *Replica) reportHealth() func(context.Context, Health) {
	var last Health
	var at time.Time
	return func(ctx context.Context, h Health) {
		if h == last && time.Since(at) < r.opts.ReportInterval {
			return
		}
		if r.metadataWritesRefused() != "" {
			// The write would be refused, and each refused write still
			// grows every member's log; cluster_status says why reports
			// stopped.
			return
		}
		// ctx ends when the replica closes: a report that cannot be
		// written without a quorum must not hold up Close.
		ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		err := r.store.ReportHealth(ctx, meta.ReplicaReport{ID: r.opts.ReplicaID, Healthy: h.Healthy, Error: h.Error, Version: images.Version, Schema: r.schema().Version(), At: time.Now().UTC()})
		if err == nil {
			last, at = h, time.Now()
		}
	}
}

// TLSConfig is the HTTPS server configuration.
func (r *Replica) TLSConfig() *tls.Config { return r.tls.Clone() }

// CACertPEM is the cluster CA's certificate, which clients trust.
func (r *Replica) CACertPEM() []byte { return r.ca.CertPEM() }

func (r *Replica) routes() http.Handler {
	tokens := &auth.Server{Store: r.store, Keys: r.keys.Load, Logins: r.logins, Log: r.log}
	api := adminapi.New(adminapi.Config{
		Store:          r.store,
		Verifier:       r.verify,
		Logins:         r.logins,
		RotateTokenKey: r.rotateTokenKey,
		ReplicaID:      r.opts.ReplicaID,
		Cluster:        r.member,
		Log:            r.log,
		Backup: func(ctx context.Context, w io.Writer, includeImages bool) error {
			_, err := r.WriteBackup(ctx, w, BackupOptions{IncludeImages: includeImages})
			return err
		},
		CheckStorage:            r.checkStorage,
		DeleteRepositoryContent: r.deleteRepositoryContent,
		DeleteNamespaceContent:  r.deleteNamespaceContent,
		ListTags:                r.listRepositoryTags,
		TestWebhook:             r.webhooks.TestWebhook,
		EmergencyRepair:         r.requestRepair,
	})
	mux := http.NewServeMux()
	mux.Handle("/_ping", r.health)
	mux.Handle("/health", r.health)
	mux.HandleFunc("/_live", live)
	mux.Handle("/metrics", r.metricsHandler(false))
	mux.Handle("/auth/token", smallBodies(tokens))
	mux.Handle("/api/v0/", smallBodies(api))
	mux.Handle("/v2/", &ociExtensions{next: &r.app, store: r.store, verify: r.verify, realm: r.realm, log: r.log, writesRefused: r.metadataWritesRefused, allowSparse: func() bool { return !r.sparseRefused.Load() }, driver: func() driver.StorageDriver {
		if b := r.driver.Load(); b != nil {
			return b.d
		}
		return nil
	}, gcGuard: r.gcGuard(), tagsPushed: r.newPushPruner().pushed, manifests: &r.manifests})
	mux.Handle("/", smallBodies(r.consoleHandler(api))) // the web console (console.go)
	return r.traced(accessLog(r.log, r.metrics, strictTransport(mux), r.audit.request, r.webhooks.request))
}

// httpHandler serves the plain HTTP port: health for load balancers, and a
// redirect to HTTPS for everything else.
func (r *Replica) httpHandler() http.Handler {
	return accessLog(r.log, r.metrics, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/_ping", "/health":
			r.health.ServeHTTP(w, req)
			return
		case "/_live":
			live(w, req)
			return
		}
		http.Redirect(w, req, r.publicBase(req)+req.URL.RequestURI(), http.StatusMovedPermanently)
	}))
}

// Serve listens on the HTTP and HTTPS addresses until ctx ends, then shuts
// down gracefully.
func (r *Replica) Serve(ctx context.Context) error {
	httpsLn, err := net.Listen("tcp", r.opts.HTTPSAddr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", r.opts.HTTPSAddr, err)
	}
	httpLn, err := net.Listen("tcp", r.opts.HTTPAddr)
	if err != nil {
		httpsLn.Close()
		return fmt.Errorf("listening on %s: %w", r.opts.HTTPAddr, err)
	}
	return r.ServeListeners(ctx, httpLn, httpsLn)
}

// ServeListeners serves on listeners the caller opened.
func (r *Replica) ServeListeners(ctx context.Context, httpLn, httpsLn net.Listener) error {
	stdlog := r.log.WriterLevel(logrus.DebugLevel)
	defer stdlog.Close()
	servers := []*http.Server{
		{Handler: r.handler, TLSConfig: r.TLSConfig(), ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 10 * time.Minute, MaxHeaderBytes: maxHeaderBytes},
		{Handler: r.httpHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, MaxHeaderBytes: maxHeaderBytes},
	}
	errc := make(chan error, 2)
	go func() { errc <- servers[0].ServeTLS(httpsLn, "", "") }()
	go func() { errc <- servers[1].Serve(httpLn) }()
	r.log.WithFields(logrus.Fields{"https": httpsLn.Addr().String(), "http": httpLn.Addr().String()}).Info("serving")
	var err error
	grace := 20 * time.Second
	select {
	case err = <-errc:
	case <-ctx.Done():
	case <-r.repairc:
		// An emergency repair restarts the replica in place: requests in
		// flight get a moment, not Swarm's grace period, since each second
		// here is a second of the repair.
		grace = repairGrace
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	for _, s := range servers {
		if s.Shutdown(sctx) != nil {
			_ = s.Close()
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close stops the background work, the registry App and the metadata member.
func (r *Replica) Close() error {
	var err error
	r.stopOnce.Do(func() {
		if r.cancel != nil {
			r.cancel()
		}
		r.done.Wait()
		if app := r.app.cur.Swap(nil); app != nil {
			_ = app.Shutdown()
		}
		err = r.member.Close()
		if r.stopTracing != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = r.stopTracing(ctx) // sends the spans still buffered
			cancel()
		}
	})
	return err
}
