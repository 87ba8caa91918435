package registry

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/storage/driver"
	storagemiddleware "github.com/distribution/distribution/v3/registry/storage/driver/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/meta"
)

// replicaMetrics are the replica's own Prometheus metrics. They live in a
// registry of the replica's (tests run several replicas in one process);
// /metrics serves them together with the process-wide default registry,
// where the embedded etcd member (etcd_server_*, etcd_disk_*), Distribution's
// storage timers (registry_storage_action_seconds) and the Go runtime
// register themselves.
type replicaMetrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec   // route, method, code
	latency  *prometheus.HistogramVec // route, method
	bytesIn  *prometheus.CounterVec   // route
	bytesOut *prometheus.CounterVec   // route

	storageOps    *prometheus.CounterVec // op
	storageErrors *prometheus.CounterVec // op

	metaLatency *prometheus.HistogramVec // op
	metaErrors  *prometheus.CounterVec   // op

	logins *prometheus.CounterVec // result

	gcRuns  *prometheus.CounterVec // action, result
	gcFreed prometheus.Counter

	auditRecords *prometheus.CounterVec // result: written, dropped, failed

	webhookDeliveries *prometheus.CounterVec // result: delivered, retried, failed, lost
}

const metricsNamespace = "dtr"

func newReplicaMetrics(r *Replica) *replicaMetrics {
	m := &replicaMetrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: "http", Name: "requests_total",
		Help: "HTTP requests answered, by route, method and status code."}, []string{"route", "method", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metricsNamespace, Subsystem: "http", Name: "request_duration_seconds",
		Help:    "Time from a request's arrival to the end of its answer, by route and method.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}}, []string{"route", "method"})
	m.bytesIn = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: "http", Name: "request_bytes_total",
		Help: "Request body bytes read, by route."}, []string{"route"})
	m.bytesOut = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: "http", Name: "response_bytes_total",
		Help: "Response body bytes written, by route."}, []string{"route"})
	m.storageOps = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: "storage", Name: "operations_total",
		Help: "Storage driver calls made by the registry, by operation."}, []string{"op"})
	m.storageErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: "storage", Name: "errors_total",
		Help: "Storage driver calls that failed (a missing path is an answer, not an error), by operation."}, []string{"op"})
	m.metaLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metricsNamespace, Subsystem: "metadata", Name: "request_duration_seconds",
		Help:    "Metadata store calls (etcd), by operation.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"op"})
	m.metaErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: "metadata", Name: "errors_total",
		Help: "Metadata store calls that failed, by operation."}, []string{"op"})
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: "auth", Name: "logins_total",
		Help: "Password checks (token server and admin API Basic auth), by result: succeeded, failed, throttled, error."}, []string{"result"})
	m.gcRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: "gc", Name: "runs_total",
		Help: "Garbage collection and pruning runs this replica finished, by action and result."}, []string{"action", "result"})
	m.gcFreed = prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: "gc", Name: "freed_bytes_total",
		Help: "Bytes of storage freed by garbage collection runs on this replica."})
	m.auditRecords = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: "audit", Name: "records_total",
		Help: "Audit records, by result: written to the metadata store, dropped (queue full) or failed."}, []string{"result"})
	m.webhookDeliveries = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: "webhook", Name: "deliveries_total",
		Help: "Webhook delivery attempts made by this replica, by result: delivered, retried (failed, will retry), failed (given up); lost: events the metadata store refused to queue."}, []string{"result"})
	for _, c := range []prometheus.Collector{m.webhookDeliveries, m.requests, m.latency, m.bytesIn, m.bytesOut, m.storageOps, m.storageErrors,
		m.metaLatency, m.metaErrors, m.logins, m.gcRuns, m.gcFreed, m.auditRecords} {
		f(c)
	}
	for _, res := range []string{"succeeded", "failed", "throttled"} {
		m.logins.WithLabelValues(res) // present at 0 from the start: rate() needs a first sample
	}
	id := prometheus.Labels{"replica": r.opts.ReplicaID}
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metricsNamespace, Subsystem: "replica", Name: "healthy", ConstLabels: id,
		Help: "1 while this replica's health checks pass (what /_ping answers), else 0."}, func() float64 {
		if r.health != nil && r.health.Current().Healthy {
			return 1
		}
		return 0
	}))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metricsNamespace, Subsystem: "metadata", Name: "writes_refused", ConstLabels: id,
		Help: "1 while the metadata store refuses writes (a full metadata volume or database), else 0."}, func() float64 {
		if r.member != nil && r.metadataWritesRefused() != "" {
			return 1
		}
		return 0
	}))
	return m
}

// GCRun records a finished garbage collection or pruning run: action is the
// job's action (e.g. "onlinegc"), result "done", "errored" or "cancelled",
// freed the bytes of storage it removed.
func (m *replicaMetrics) GCRun(action, result string, freed int64) {
	if m == nil {
		return
	}
	m.gcRuns.WithLabelValues(action, result).Inc()
	if freed > 0 {
		m.gcFreed.Add(float64(freed))
	}
}

// webhook counts webhook deliveries by result.
func (m *replicaMetrics) webhook(result string, n int) {
	if m != nil {
		m.webhookDeliveries.WithLabelValues(result).Add(float64(n))
	}
}

// GCRunFinished is the hook for the GC runner, called once per finished
// collection or pruning run: it counts the run (replicaMetrics.GCRun) and
// sends the GC_COMPLETED webhook event.
func (r *Replica) GCRunFinished(action, result string, freed int64) {
	r.metrics.GCRun(action, result, freed)
	r.webhooks.clusterEvent(meta.WebhookGCCompleted, map[string]any{"action": action, "result": result, "freedBytes": freed, "replica": r.opts.ReplicaID})
}

// login counts one password check's outcome (auth.Logins.Outcome).
func (m *replicaMetrics) login(err error) {
	var te *auth.ThrottledError
	switch {
	case err == nil:
		m.logins.WithLabelValues("succeeded").Inc()
	case errors.Is(err, auth.ErrBadCredentials):
		m.logins.WithLabelValues("failed").Inc()
	case errors.As(err, &te):
		m.logins.WithLabelValues("throttled").Inc()
	default:
		m.logins.WithLabelValues("error").Inc()
	}
}

// gatherer is what /metrics serves.
func (m *replicaMetrics) gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{m.reg, prometheus.DefaultGatherer}
}

// routeOf names a request's route for metric labels: a fixed set, never
// the path itself, whose repository names would make one series each.
func routeOf(p string) string {
	switch {
	case p == "/v2/" || p == "/v2":
		return "v2_base"
	case p == "/v2/_catalog":
		return "v2_catalog"
	case strings.HasPrefix(p, "/v2/"):
		if _, ok := uploadRoute(p); ok {
			return "v2_blob_upload"
		}
		for _, k := range []string{"manifests", "blobs", "referrers"} {
			if _, _, ok := route(p, k); ok {
				return "v2_" + strings.TrimSuffix(k, "s")
			}
		}
		if strings.HasSuffix(p, "/tags/list") {
			return "v2_tags"
		}
		return "v2_other"
	case p == "/auth/token":
		return "token"
	case strings.HasPrefix(p, "/api/v0/"):
		seg, _, _ := strings.Cut(strings.TrimPrefix(p, "/api/v0/"), "/")
		switch seg {
		case "accounts", "repositories", "repositoryNamespaces", "meta", "jobs", "crons", "events", "webhooks":
			return "api_" + seg
		}
		return "api_other"
	case p == "/_ping" || p == "/health" || p == "/_live":
		return "health"
	case p == "/metrics":
		return "metrics"
	}
	return "other"
}

// methodOf bounds the method label to the methods HTTP defines.
func methodOf(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// countingBody counts the request body bytes a handler reads.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

// observe records one answered request.
func (m *replicaMetrics) observe(method, path string, status int, in, out int64, took time.Duration) {
	if m == nil {
		return
	}
	rt, method := routeOf(path), methodOf(method)
	if status == 0 {
		status = http.StatusOK // the handler wrote nothing: net/http answers 200
	}
	m.requests.WithLabelValues(rt, method, fmt.Sprint(status)).Inc()
	m.latency.WithLabelValues(rt, method).Observe(took.Seconds())
	if in > 0 {
		m.bytesIn.WithLabelValues(rt).Add(float64(in))
	}
	if out > 0 {
		m.bytesOut.WithLabelValues(rt).Add(float64(out))
	}
}

// metricsStorageMiddleware counts the registry App's storage calls; the
// replica's metrics come in through the middleware's options.
const metricsStorageMiddleware = "dtr-storage-metrics"

func init() {
	if err := storagemiddleware.Register(metricsStorageMiddleware, func(_ context.Context, d driver.StorageDriver, opts map[string]any) (driver.StorageDriver, error) {
		m, _ := opts["metrics"].(*replicaMetrics)
		if m == nil {
			return d, nil
		}
		return &countingDriver{StorageDriver: d, m: m}, nil
	}); err != nil {
		panic(err)
	}
}

// countingDriver counts storage calls and their failures.
type countingDriver struct {
	driver.StorageDriver
	m *replicaMetrics
}

func (d *countingDriver) count(op string, err error) {
	d.m.storageOps.WithLabelValues(op).Inc()
	var nf driver.PathNotFoundError
	if err != nil && !errors.As(err, &nf) && !errors.Is(err, context.Canceled) {
		d.m.storageErrors.WithLabelValues(op).Inc()
	}
}

func (d *countingDriver) GetContent(ctx context.Context, path string) ([]byte, error) {
	b, err := d.StorageDriver.GetContent(ctx, path)
	d.count("GetContent", err)
	return b, err
}

func (d *countingDriver) PutContent(ctx context.Context, path string, content []byte) error {
	err := d.StorageDriver.PutContent(ctx, path, content)
	d.count("PutContent", err)
	return err
}

func (d *countingDriver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	rc, err := d.StorageDriver.Reader(ctx, path, offset)
	d.count("Reader", err)
	return rc, err
}

func (d *countingDriver) Writer(ctx context.Context, path string, append bool) (driver.FileWriter, error) {
	w, err := d.StorageDriver.Writer(ctx, path, append)
	d.count("Writer", err)
	return w, err
}

func (d *countingDriver) Stat(ctx context.Context, path string) (driver.FileInfo, error) {
	fi, err := d.StorageDriver.Stat(ctx, path)
	d.count("Stat", err)
	return fi, err
}

func (d *countingDriver) List(ctx context.Context, path string) ([]string, error) {
	l, err := d.StorageDriver.List(ctx, path)
	d.count("List", err)
	return l, err
}

func (d *countingDriver) Move(ctx context.Context, src, dst string) error {
	err := d.StorageDriver.Move(ctx, src, dst)
	d.count("Move", err)
	return err
}

func (d *countingDriver) Delete(ctx context.Context, path string) error {
	err := d.StorageDriver.Delete(ctx, path)
	d.count("Delete", err)
	return err
}

func (d *countingDriver) Walk(ctx context.Context, path string, f driver.WalkFn, options ...func(*driver.WalkOptions)) error {
	err := d.StorageDriver.Walk(ctx, path, f, options...)
	d.count("Walk", err)
	return err
}

// timedKV times the replica's metadata store calls. etcd's own server
// metrics (leader, proposals, fsync latency) come from the member itself.
type timedKV struct {
	clientv3.KV
	m *replicaMetrics
}

func (k timedKV) done(op string, start time.Time, err error) {
	k.m.metaLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		k.m.metaErrors.WithLabelValues(op).Inc()
	}
}

func (k timedKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	start := time.Now()
	resp, err := k.KV.Get(ctx, key, opts...)
	k.done("get", start, err)
	return resp, err
}

func (k timedKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	start := time.Now()
	resp, err := k.KV.Put(ctx, key, val, opts...)
	k.done("put", start, err)
	return resp, err
}

func (k timedKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	start := time.Now()
	resp, err := k.KV.Delete(ctx, key, opts...)
	k.done("delete", start, err)
	return resp, err
}

func (k timedKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	start := time.Now()
	resp, err := k.KV.Do(ctx, op)
	k.done("do", start, err)
	return resp, err
}

func (k timedKV) Txn(ctx context.Context) clientv3.Txn {
	return &timedTxn{Txn: k.KV.Txn(ctx), kv: k}
}

type timedTxn struct {
	clientv3.Txn
	kv timedKV
}

func (t *timedTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { t.Txn = t.Txn.If(cs...); return t }
func (t *timedTxn) Then(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Then(ops...); return t }
func (t *timedTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(ops...); return t }

func (t *timedTxn) Commit() (*clientv3.TxnResponse, error) {
	start := time.Now()
	resp, err := t.Txn.Commit()
	t.kv.done("txn", start, err)
	return resp, err
}

// metricsHandler serves /metrics to an administrator (Basic auth, or an
// admin API token of an admin) or to the holder of the metrics token; open
// serves it to anyone (the separate metrics port).
func (r *Replica) metricsHandler(open bool) http.Handler {
	serve := promhttp.HandlerFor(r.metrics.gatherer(), promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	if open {
		return serve
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if err := r.metricsCaller(req); err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="dtr"`)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		serve.ServeHTTP(w, req)
	})
}

var errMetricsAuth = errors.New("metrics need an administrator's credentials (Basic auth or an admin API token), or the metrics token as a bearer token")

// metricsCaller checks the credentials of a /metrics request.
func (r *Replica) metricsCaller(req *http.Request) error {
	ctx := req.Context()
	if name, pw, ok := req.BasicAuth(); ok {
		acc, err := r.logins.Check(ctx, req.RemoteAddr, name, pw)
		if err != nil || !acc.IsAdmin {
			return errMetricsAuth
		}
		return nil
	}
	raw, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok || raw == "" {
		return errMetricsAuth
	}
	if want := r.metricsToken; want != nil {
		got := sha256.Sum256([]byte(raw))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			return nil
		}
	}
	claims, err := r.verify.Verify(raw)
	if err != nil || !auth.AllowsAdminAPI(claims) {
		return errMetricsAuth
	}
	acc, err := r.store.Account(ctx, claims.Subject)
	if err != nil || !acc.IsAdmin || !acc.IsActive {
		return errMetricsAuth
	}
	return nil
}

// loadMetricsToken reads the metrics token file (Options.MetricsTokenFile);
// only its hash is kept.
func loadMetricsToken(path string) (*[32]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("metrics token: %w (check --metrics-token-file)", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return nil, fmt.Errorf("metrics token in %s is shorter than 16 characters: write a longer random token (e.g. openssl rand -hex 32)", path)
	}
	h := sha256.Sum256([]byte(tok))
	return &h, nil
}

// serveMetricsPort serves /metrics without authentication on
// Options.MetricsAddr until ctx ends. Operators bind it to an address only
// their Prometheus reaches.
func (r *Replica) serveMetricsPort(ctx context.Context, ln net.Listener) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", r.metricsHandler(true))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	r.log.WithField("addr", ln.Addr().String()).Info("serving unauthenticated metrics")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		r.log.WithError(err).Error("metrics port")
	}
}

var _ clientv3.KV = timedKV{}

// instrument adds the storage call counters to a registry App's
// configuration.
func (m *replicaMetrics) instrument(cfg *configuration.Configuration) {
	if m == nil {
		return
	}
	if cfg.Middleware == nil {
		cfg.Middleware = map[string][]configuration.Middleware{}
	}
	cfg.Middleware["storage"] = append(cfg.Middleware["storage"], configuration.Middleware{
		Name: metricsStorageMiddleware, Options: configuration.Parameters{"metrics": m},
	})
}
