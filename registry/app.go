package registry

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"

	// Distribution's pieces register themselves when imported.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"

	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/meta"
)

func init() {
	// Distribution traces through OpenTelemetry; without this it would send
	// spans to localhost:4318 from every replica.
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" {
		os.Setenv("OTEL_TRACES_EXPORTER", "none")
	}
}

// storageParams turns the replica's storage settings into a Distribution
// driver name and parameters. Filesystem storage is the replica's own mount.
func storageParams(st meta.Storage, filesystemRoot string) (string, configuration.Parameters, error) {
	switch st.Type {
	case "filesystem", "":
		return "filesystem", configuration.Parameters{"rootdirectory": filesystemRoot}, nil
	case "inmemory": // tests and benchmarks only
		return "inmemory", configuration.Parameters{}, nil
	case "s3":
		s3 := st.S3
		if s3 == nil {
			return "", nil, fmt.Errorf("storage type s3 without s3 settings")
		}
		p := configuration.Parameters{
			"region":         s3.Region,
			"bucket":         s3.Bucket,
			"forcepathstyle": s3.ForcePathStyle,
			"skipverify":     s3.SkipVerify,
		}
		for k, v := range map[string]string{"regionendpoint": s3.RegionEndpoint, "accesskey": s3.AccessKey, "secretkey": s3.SecretKey, "rootdirectory": s3.RootDirectory} {
			if v != "" {
				p[k] = v
			}
		}
		if s3.Secure != nil {
			p["secure"] = strconv.FormatBool(*s3.Secure)
		}
		return "s3", p, nil
	}
	return "", nil, fmt.Errorf("unknown storage type %q", st.Type)
}

// newDriver opens the storage driver the health check probes.
func newDriver(ctx context.Context, st meta.Storage, filesystemRoot string) (driver.StorageDriver, error) {
	name, params, err := storageParams(st, filesystemRoot)
	if err != nil {
		return nil, err
	}
	d, err := factory.Create(ctx, name, params)
	if err != nil {
		return nil, err
	}
	// The same classification as the App's driver, sharing its state: a
	// push refused for lack of space makes the probe write at once.
	return newFaultDriver(d, storageKey(name, params)), nil
}

// distributionConfig builds Distribution's configuration in code, with the
// defaults configuration.Parse would have applied.
func distributionConfig(cluster meta.Cluster, st meta.Storage, filesystemRoot string, verifier *auth.Verifier, realm func(*http.Request) string, logLevel string) (*configuration.Configuration, error) {
	name, params, err := storageParams(st, filesystemRoot)
	if err != nil {
		return nil, err
	}
	cfg := &configuration.Configuration{}
	cfg.Log.Level = configuration.Loglevel(logLevel)
	cfg.Log.AccessLog.Disabled = true // dtr writes its own access log, without credentials
	cfg.Catalog.MaxEntries = 1000     // Parse's default; 0 would make /v2/_catalog empty
	cfg.Tags.MaxTags = 1000
	cfg.HTTP.Secret = cluster.HTTPSecret // identical on every replica: uploads may move between them
	cfg.Storage = configuration.Storage{
		name:       params,
		"delete":   configuration.Parameters{"enabled": true},
		"redirect": configuration.Parameters{"disable": true}, // clients reach only the replicas, never the bucket
		// dtr's own sweep removes unfinished uploads, once for the cluster and
		// with the driver's stray temporary files: leftovers.go says why.
		"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
	}
	// dtr's own access controller: Distribution's token checks, with the
	// cluster's verifier (which caches verified tokens and checks account
	// epochs) and a realm at the configured external URL.
	cfg.Auth = configuration.Auth{auth.ControllerName: configuration.Parameters{"verifier": verifier, "realm": realm}}
	// Full and failing storage get typed errors the HTTP answer is chosen
	// from (storagefull.go).
	cfg.Middleware = map[string][]configuration.Middleware{"storage": {{
		Name: faultMiddleware, Options: configuration.Parameters{"key": storageKey(name, params)},
	}}, "repository": {{
		// Sparse manifests, per PUT (manifestcheck.go): Distribution's own
		// validation.manifests.indexes.platforms covers only indexes and
		// is fixed for the App's life.
		Name: sparseMiddleware,
	}}}
	// Non-distributable (foreign) layers carry URLs; accept http(s) ones.
	cfg.Validation.Manifests.URLs.Allow = []string{`^https?://`}
	return cfg, nil
}

// newApp builds a Distribution App, turning its panics into errors.
func newApp(ctx context.Context, cfg *configuration.Configuration) (app *handlers.App, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("starting the registry: %v", r)
		}
	}()
	return handlers.NewApp(ctx, cfg), nil
}

// swappable is the current Distribution App, replaced when settings change.
// It counts the clients it serves, for garbage collection to give way to.
type swappable struct {
	cur      atomic.Pointer[handlers.App]
	inflight atomic.Int64
	lastDone atomic.Int64 // UnixNano
}

func (s *swappable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	app := s.cur.Load()
	if app == nil {
		http.Error(w, "registry starting", http.StatusServiceUnavailable)
		return
	}
	defer s.serving()()
	answerStorageErrors(app, w, r)
}

// serving counts a client's request until the function it returns is
// called; requests nest (a blob GET that falls through to the App) without
// harm.
func (s *swappable) serving() func() {
	s.inflight.Add(1)
	return func() {
		s.lastDone.Store(time.Now().UnixNano())
		s.inflight.Add(-1)
	}
}

// busyWithin is how recently a request must have ended for the registry to
// count as busy: clients that loop leave short gaps between requests.
const busyWithin = 100 * time.Millisecond

// busy reports whether clients are being served, or were a moment ago.
func (s *swappable) busy() bool {
	return s.inflight.Load() > 0 || time.Since(time.Unix(0, s.lastDone.Load())) < busyWithin
}

func (s *swappable) swap(app *handlers.App) {
	if old := s.cur.Swap(app); old != nil {
		_ = old.Shutdown()
	}
}
