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

// env returns $DTR_<NAME> for a flag's default, so the image can be
// configured with environment variables as well as flags.
func env(name, def string) string {
	if v, ok := os.LookupEnv("DTR_" + name); ok {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(env(name, "")); err == nil {
		return v
	}
	return def
}

func envBool(name string) bool {
	v := strings.ToLower(env(name, ""))
	return v == "1" || v == "true" || v == "yes"
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

func serve(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var o registry.Options
	var hostnames, adminPwFile, s3SecretFile, logFormat string
	var s3 meta.S3
	var s3Insecure bool
	fs.StringVar(&o.ReplicaID, "replica-id", env("REPLICA_ID", ""), "this replica's 12-hex-character ID ($DTR_REPLICA_ID)")
	fs.StringVar(&o.DataDir, "data-dir", env("DATA_DIR", "/var/lib/dtr"), "the replica's data: metadata and issued certificates ($DTR_DATA_DIR)")
	fs.StringVar(&o.CADir, "ca-dir", env("CA_DIR", ""), "the cluster CA (ca.pem, ca-key.pem); default <data-dir>/ca ($DTR_CA_DIR)")
	fs.StringVar(&o.StorageRoot, "storage-root", env("STORAGE_ROOT", ""), "filesystem storage directory; default <data-dir>/registry ($DTR_STORAGE_ROOT)")
	fs.StringVar(&o.HTTPAddr, "http-addr", env("HTTP_ADDR", ":8080"), "plain HTTP listen address: health and redirect ($DTR_HTTP_ADDR)")
	fs.StringVar(&o.HTTPSAddr, "https-addr", env("HTTPS_ADDR", ":8443"), "HTTPS listen address ($DTR_HTTPS_ADDR)")
	fs.IntVar(&o.PublicHTTPSPort, "public-https-port", envInt("PUBLIC_HTTPS_PORT", 443), "the HTTPS port clients use, for redirects ($DTR_PUBLIC_HTTPS_PORT)")
	fs.StringVar(&o.CACertFile, "ca-cert-file", env("CA_CERT_FILE", ""), "the cluster CA certificate handed over by the installer ($DTR_CA_CERT_FILE)")
	fs.StringVar(&o.CAKeyFile, "ca-key-file", env("CA_KEY_FILE", ""), "the cluster CA key handed over by the installer ($DTR_CA_KEY_FILE)")
	fs.StringVar(&o.PeerListen, "peer-listen", env("PEER_LISTEN", ""), "metadata peer listen URL (default https://0.0.0.0:12380)")
	fs.StringVar(&o.PeerAdvertise, "peer-advertise", env("PEER_ADVERTISE", ""), "metadata peer URL others use (default https://dtr-registry-<id>:12380)")
	fs.StringVar(&o.ClientSocket, "client-socket", env("CLIENT_SOCKET", ""), "the metadata store's unix socket for local clients, mode 0600 in a 0700 directory; default <data-dir>/etcd-client/etcd.sock ($DTR_CLIENT_SOCKET)")
	fs.StringVar(&o.InitialCluster, "initial-cluster", env("INITIAL_CLUSTER", ""), "when joining: id=peerURL,… of the cluster")
	fs.BoolVar(&o.Join, "join", envBool("JOIN"), "join an existing cluster (added as a learner by the installer)")
	fs.BoolVar(&o.InsecurePeers, "insecure-peers", envBool("INSECURE_PEERS"), "plain-HTTP metadata peers: single-host tests only")
	fs.StringVar(&o.TLSCertFile, "tls-cert", env("TLS_CERT", ""), "PEM certificate chain for HTTPS (default: issued by the cluster CA)")
	fs.StringVar(&o.TLSKeyFile, "tls-key", env("TLS_KEY", ""), "PEM key of --tls-cert")
	fs.StringVar(&hostnames, "hostnames", env("HOSTNAMES", ""), "comma-separated extra names and addresses for issued certificates")
	fs.StringVar(&o.AdminUsername, "admin-username", env("ADMIN_USERNAME", ""), "first admin of a new cluster")
	fs.StringVar(&adminPwFile, "admin-password-file", env("ADMIN_PASSWORD_FILE", ""), "file holding the first admin's password")
	fs.StringVar(&o.ExternalURL, "external-url", env("EXTERNAL_URL", ""), "https URL clients use (new cluster)")
	fs.StringVar(&o.Storage.Type, "storage", env("STORAGE", "filesystem"), "storage of a new cluster: filesystem or s3")
	fs.StringVar(&s3.Region, "s3-region", env("S3_REGION", "us-east-1"), "S3 region")
	fs.StringVar(&s3.Bucket, "s3-bucket", env("S3_BUCKET", ""), "S3 bucket")
	fs.StringVar(&s3.RegionEndpoint, "s3-endpoint", env("S3_ENDPOINT", ""), "S3-compatible endpoint URL")
	fs.StringVar(&s3.AccessKey, "s3-access-key", env("S3_ACCESS_KEY", ""), "S3 access key")
	fs.StringVar(&s3SecretFile, "s3-secret-key-file", env("S3_SECRET_KEY_FILE", ""), "file holding the S3 secret key")
	fs.BoolVar(&s3.ForcePathStyle, "s3-path-style", envBool("S3_PATH_STYLE"), "path-style bucket URLs (S3-compatible servers)")
	fs.StringVar(&s3.RootDirectory, "s3-root", env("S3_ROOT", ""), "prefix inside the bucket")
	fs.BoolVar(&s3Insecure, "s3-insecure", envBool("S3_INSECURE"), "plain http to the S3 endpoint")
	fs.BoolVar(&o.Restore, "restore", envBool("RESTORE"), "with no metadata yet, wait for 'dtr restore' to send a backup and load it ($DTR_RESTORE)")
	fs.StringVar(&o.RestoreStorage, "restore-storage", env("RESTORE_STORAGE", registry.RestoreKeepStorage), "with --restore: backup (keep the backed-up storage settings) or filesystem ($DTR_RESTORE_STORAGE)")
	fs.StringVar(&o.ForceNewCluster, "force-new-cluster", env("FORCE_NEW_CLUSTER", ""), "emergency repair: a new token makes the metadata member the only member of its cluster, once ($DTR_FORCE_NEW_CLUSTER)")
	fs.StringVar(&o.LogLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn, error or fatal")
	fs.StringVar(&logFormat, "log-format", env("LOG_FORMAT", "text"), "text or json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	if logFormat == "json" {
		log.SetFormatter(&logrus.JSONFormatter{})
	}
	level, err := logrus.ParseLevel(o.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dtr-registry: --log-level %q: use debug, info, warn, error or fatal\n", o.LogLevel)
		return 2
	}
	log.SetLevel(level)
	o.Log = log
	if o.RestoreStorage != registry.RestoreKeepStorage && o.RestoreStorage != registry.RestoreFilesystem {
		log.Errorf("--restore-storage %q: use %s or %s", o.RestoreStorage, registry.RestoreKeepStorage, registry.RestoreFilesystem)
		return 2
	}
	if hostnames != "" {
		o.Hostnames = strings.Split(hostnames, ",")
	}
	if o.AdminPassword, err = readSecret(adminPwFile); err != nil {
		log.Error(err)
		return 2
	}
	if o.Storage.Type == "s3" {
		if s3.SecretKey, err = readSecret(s3SecretFile); err != nil {
			log.Error(err)
			return 2
		}
		if s3Insecure {
			f := false
			s3.Secure = &f
		}
		o.Storage.S3 = &s3
	}
	r, err := registry.Start(ctx, o)
	if err != nil {
		log.WithError(err).Error("the replica did not start")
		return 1
	}
	go func() {
		<-ctx.Done()
		log.Info("stopping: finishing requests in flight, then closing the metadata member")
	}()
	err = r.Serve(ctx)
	start := time.Now()
	if cerr := r.Close(); cerr != nil {
		log.WithError(cerr).Warn("closing the replica")
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.WithError(err).Error("serving")
		return 1
	}
	log.WithField("close", time.Since(start).Round(time.Millisecond)).Info("stopped")
	return 0
}

// healthcheck is the image's exec-form HEALTHCHECK: the image has no shell or
// curl, so the binary asks its own /_ping.
func healthcheck(args []string) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	url := fs.String("url", env("HEALTHCHECK_URL", "http://127.0.0.1:8080/_live"), "health endpoint to ask")
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
