// Command dtr-registry runs one dtr replica: the registry API, token auth,
// admin API, metadata member and health endpoints. It is the dtr-registry
// image's entrypoint and runs as a plain process in tests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/meta"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		args = []string{"serve"}
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:])
	case "healthcheck":
		return healthcheck(args[1:])
	case "version", "--version":
		fmt.Println("dtr-registry", images.Version)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "dtr-registry: unknown command %q; use serve, healthcheck or version\n", args[0])
		return 2
	}
}

// readSecret reads a secret from a file (a Swarm secret): never from
// arguments, which every user of the node can read.
func readSecret(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading secret: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// settings is serve's configuration: the replica's options, and what main
// resolves itself (the log format, and the secrets' files, read only after
// the flags parsed).
type settings struct {
	opts              registry.Options
	s3                meta.S3
	s3Insecure        bool
	logFormat         string
	adminPasswordFile string
	s3SecretKeyFile   string
}

// parseSettings parses serve's flags; c, the environment as the installer
// writes it, gives each flag's default, and a flag given wins.
func parseSettings(args []string, c contract.Config) (settings, error) {
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	port := c.PublicHTTPSPort
	if port == 0 {
		port = 443
	}
	var st settings
	o := &st.opts
	var hostnames string
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&o.ReplicaID, "replica-id", c.ReplicaID, "this replica's 12-hex-character ID ($DTR_REPLICA_ID)")
	fs.StringVar(&o.DataDir, "data-dir", or(c.DataDir, "/var/lib/dtr"), "the replica's data: metadata and issued certificates ($DTR_DATA_DIR)")
	fs.StringVar(&o.CADir, "ca-dir", c.CADir, "the cluster CA (ca.pem, ca-key.pem); default <data-dir>/ca ($DTR_CA_DIR)")
	fs.StringVar(&o.StorageRoot, "storage-root", c.StorageRoot, "filesystem storage directory; default <data-dir>/registry ($DTR_STORAGE_ROOT)")
	fs.StringVar(&o.HTTPAddr, "http-addr", or(c.HTTPAddr, ":"+strconv.Itoa(contract.HTTPPort)), "plain HTTP listen address: health and redirect ($DTR_HTTP_ADDR)")
	fs.StringVar(&o.HTTPSAddr, "https-addr", or(c.HTTPSAddr, ":"+strconv.Itoa(contract.HTTPSPort)), "HTTPS listen address ($DTR_HTTPS_ADDR)")
	fs.IntVar(&o.PublicHTTPSPort, "public-https-port", port, "the HTTPS port clients use, for redirects ($DTR_PUBLIC_HTTPS_PORT)")
	fs.StringVar(&o.CACertFile, "ca-cert-file", c.CACertFile, "the cluster CA certificate handed over by the installer ($DTR_CA_CERT_FILE)")
	fs.StringVar(&o.CAKeyFile, "ca-key-file", c.CAKeyFile, "the cluster CA key handed over by the installer ($DTR_CA_KEY_FILE)")
	fs.StringVar(&o.PeerListen, "peer-listen", c.PeerListen, "metadata peer listen URL (default https://0.0.0.0:12380)")
	fs.StringVar(&o.PeerAdvertise, "peer-advertise", c.PeerAdvertise, "metadata peer URL others use (default https://dtr-registry-<id>:12380)")
	fs.StringVar(&o.ClientSocket, "client-socket", c.ClientSocket, "the metadata store's unix socket for local clients, mode 0600 in a 0700 directory; default <data-dir>/etcd-client/etcd.sock ($DTR_CLIENT_SOCKET)")
	fs.StringVar(&o.InitialCluster, "initial-cluster", c.InitialCluster, "when joining: id=peerURL,… of the cluster")
	fs.BoolVar(&o.Join, "join", c.Join, "join an existing cluster (added as a learner by the installer)")
	fs.BoolVar(&o.InsecurePeers, "insecure-peers", c.InsecurePeers, "plain-HTTP metadata peers: single-host tests only")
	fs.StringVar(&o.TLSCertFile, "tls-cert", c.TLSCertFile, "PEM certificate chain for HTTPS (default: issued by the cluster CA)")
	fs.StringVar(&o.TLSKeyFile, "tls-key", c.TLSKeyFile, "PEM key of --tls-cert")
	fs.StringVar(&hostnames, "hostnames", strings.Join(c.Hostnames, ","), "comma-separated extra names and addresses for issued certificates")
	fs.StringVar(&o.AdminUsername, "admin-username", c.AdminUsername, "first admin of a new cluster")
	fs.StringVar(&st.adminPasswordFile, "admin-password-file", c.AdminPasswordFile, "file holding the first admin's password")
	fs.StringVar(&o.ExternalURL, "external-url", c.ExternalURL, "https URL clients use (new cluster)")
	fs.StringVar(&o.Storage.Type, "storage", or(c.Storage, "filesystem"), "storage of a new cluster: filesystem or s3")
	fs.StringVar(&st.s3.Region, "s3-region", or(c.S3Region, "us-east-1"), "S3 region")
	fs.StringVar(&st.s3.Bucket, "s3-bucket", c.S3Bucket, "S3 bucket")
	fs.StringVar(&st.s3.RegionEndpoint, "s3-endpoint", c.S3Endpoint, "S3-compatible endpoint URL")
	fs.StringVar(&st.s3.AccessKey, "s3-access-key", c.S3AccessKey, "S3 access key")
	fs.StringVar(&st.s3SecretKeyFile, "s3-secret-key-file", c.S3SecretKeyFile, "file holding the S3 secret key")
	fs.BoolVar(&st.s3.ForcePathStyle, "s3-path-style", c.S3PathStyle, "path-style bucket URLs (S3-compatible servers)")
	fs.StringVar(&st.s3.RootDirectory, "s3-root", c.S3Root, "prefix inside the bucket")
	fs.BoolVar(&st.s3Insecure, "s3-insecure", c.S3Insecure, "plain http to the S3 endpoint")
	fs.BoolVar(&o.Restore, "restore", c.Restore, "with no metadata yet, wait for 'dtr restore' to send a backup and load it ($DTR_RESTORE)")
	fs.StringVar(&o.RestoreStorage, "restore-storage", or(c.RestoreStorage, contract.RestoreKeepStorage), "with --restore: backup (keep the backed-up storage settings) or filesystem ($DTR_RESTORE_STORAGE)")
	fs.StringVar(&o.ForceNewCluster, "force-new-cluster", c.ForceNewCluster, "emergency repair: a new token makes the metadata member the only member of its cluster, once ($DTR_FORCE_NEW_CLUSTER)")
	fs.StringVar(&o.LogLevel, "log-level", or(c.LogLevel, "info"), "debug, info, warn, error or fatal")
	fs.StringVar(&st.logFormat, "log-format", or(c.LogFormat, "text"), "text or json")
	// Observability (docs/observability.md); off unless set.
	fs.StringVar(&o.MetricsAddr, "metrics-addr", c.MetricsAddr, "serve /metrics without authentication on this address, e.g. 10.0.0.5:9102 ($DTR_METRICS_ADDR); /metrics on HTTPS always needs credentials")
	fs.StringVar(&o.MetricsTokenFile, "metrics-token-file", c.MetricsTokenFile, "file holding a bearer token that may read /metrics and nothing else ($DTR_METRICS_TOKEN_FILE)")
	fs.StringVar(&o.OTLPEndpoint, "otlp-endpoint", c.OTLPEndpoint, "export OpenTelemetry traces to this OTLP/HTTP collector URL, e.g. http://otel-collector:4318 ($DTR_OTLP_ENDPOINT); off when empty")
	if err := fs.Parse(args); err != nil {
		return settings{}, err
	}
	if hostnames != "" {
		o.Hostnames = strings.Split(hostnames, ",")
	}
	return st, nil
}

func serve(ctx context.Context, args []string) int {
	env, err := contract.ParseEnv(os.Environ())
	if err != nil {
		fmt.Fprintf(os.Stderr, "dtr-registry: the environment: %v\n", err)
		return 2
	}
	st, err := parseSettings(args, env)
	if err != nil {
		return 2 // the flag package said why
	}
	o := st.opts
	log := logrus.New()
	log.SetOutput(os.Stderr)
	if st.logFormat == "json" {
		log.SetFormatter(&logrus.JSONFormatter{})
	}
	level, err := logrus.ParseLevel(o.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dtr-registry: --log-level %q: use debug, info, warn, error or fatal\n", o.LogLevel)
		return 2
	}
	log.SetLevel(level)
	o.Log = log
	if o.RestoreStorage != contract.RestoreKeepStorage && o.RestoreStorage != contract.RestoreFilesystem {
		log.Errorf("--restore-storage %q: use %s or %s", o.RestoreStorage, contract.RestoreKeepStorage, contract.RestoreFilesystem)
		return 2
	}
	if o.AdminPassword, err = readSecret(st.adminPasswordFile); err != nil {
		log.Error(err)
		return 2
	}
	if o.Storage.Type == "s3" {
		s3 := st.s3
		if s3.SecretKey, err = readSecret(st.s3SecretKeyFile); err != nil {
			log.Error(err)
			return 2
		}
		if st.s3Insecure {
			f := false
			s3.Secure = &f
		}
		o.Storage.S3 = &s3
	}
	go func() {
		<-ctx.Done()
		log.Info("stopping: finishing requests in flight, then closing the metadata member")
	}()
	for {
		r, err := registry.Start(ctx, o)
		if err != nil {
			log.WithError(err).Error("the replica did not start")
			return 1
		}
		err = r.Serve(ctx)
		start := time.Now()
		if cerr := r.Close(); cerr != nil {
			log.WithError(cerr).Warn("closing the replica")
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			log.WithError(err).Error("serving")
			return 1
		}
		if tok, ok := r.RepairRequested(); ok && ctx.Err() == nil {
			// An emergency repair in place: start again in this process,
			// forcing once with the token (the data volume records it).
			log.WithField("close", time.Since(start).Round(time.Millisecond)).Warn("emergency repair: starting the replica again")
			o.ForceNewCluster = tok
			continue
		}
		log.WithField("close", time.Since(start).Round(time.Millisecond)).Info("stopped")
		return 0
	}
}

// healthcheck is the image's exec-form HEALTHCHECK: the image has no shell or
// curl, so the binary asks its own /_ping.
func healthcheck(args []string) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	// Not a setting the installer writes (contract.Config): a default for
	// the image's own health check only.
	def := "http://127.0.0.1:" + strconv.Itoa(contract.HTTPPort) + "/_live"
	if v, ok := os.LookupEnv("DTR_HEALTHCHECK_URL"); ok {
		def = v
	}
	url := fs.String("url", def, "health endpoint to ask ($DTR_HEALTHCHECK_URL)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(*url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "unhealthy:", resp.Status)
		return 1
	}
	return 0
}
