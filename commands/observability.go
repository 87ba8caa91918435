package commands

import (
	"context"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/ucp"
)

// The replicas' metrics and tracing settings (docs/observability.md).

// metricsTokenEnv carries the metrics token itself, for operators who keep
// it out of files: docker run -e DTR_METRICS_TOKEN passes it from their
// shell without putting it in any process's arguments.
const metricsTokenEnv = "DTR_METRICS_TOKEN"

// minMetricsToken is the replica's lower bound (registry.loadMetricsToken);
// maxMetricsToken bounds what the installer reads.
const (
	minMetricsToken = 16
	maxMetricsToken = 4096
)

func addMetricsPortFlag(f flags, o *replicaOptions, usage string) {
	f.Int(&o.metricsPort, "metrics-port", 0, usage, "DTR_METRICS_PORT")
}

func addMetricsTokenFlag(f flags, o *replicaOptions, usage string) {
	f.String(&o.metricsTokenFile, "metrics-token-file", "", usage, "DTR_METRICS_TOKEN_FILE")
}

func addOTLPFlag(f flags, o *replicaOptions, usage string) {
	f.String(&o.otlpEndpoint, "otlp-endpoint", "", usage, "DTR_OTLP_ENDPOINT")
}

// validateObservability checks the metrics and tracing flags cmd declares.
func (o *replicaOptions) validateObservability(cmd *cobra.Command) error {
	has := func(name string) bool { return cmd.Flags().Lookup(name) != nil }
	if has("metrics-port") && o.metricsPort != 0 {
		if err := validatePort("metrics-port", o.metricsPort); err != nil {
			return usageErrorf("%v, or 0 to publish no metrics port", err)
		}
	}
	if has("otlp-endpoint") && o.otlpEndpoint != "" {
		if err := validateOTLPEndpoint(o.otlpEndpoint); err != nil {
			return err
		}
	}
	return nil
}

// validateOTLPEndpoint accepts what the replica's OTLP/HTTP exporter takes:
// an http or https URL with a host.
func validateOTLPEndpoint(s string) error {
	u, err := url.Parse(s)
	switch {
	case err == nil && u.User != nil:
		return usageErrorf("--otlp-endpoint: leave credentials out of the URL: the replicas' environment, where it is kept, is no place for them; give the collector's URL without user:password@, e.g. https://otel.example.com:4318")
	case err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Hostname() != "" && u.RawQuery == "" && u.Fragment == "":
		return nil
	case err == nil && u.Scheme == "grpc":
		return usageErrorf("--otlp-endpoint %q: the replicas export over OTLP/HTTP, not gRPC; give the collector's HTTP receiver, e.g. http://otel-collector:4318", s)
	}
	return usageErrorf("--otlp-endpoint %q: give the collector's OTLP/HTTP URL, e.g. http://otel-collector:4318 or https://otel.example.com/v1/traces", s)
}

// metricsPortClash refuses a metrics port that is also the replica's HTTP
// or HTTPS port.
func metricsPortClash(metrics, http, https int) error {
	if metrics != 0 && (metrics == http || metrics == https) {
		return usageErrorf("--metrics-port %d is also the replica's HTTP or HTTPS port; give another port", metrics)
	}
	return nil
}

// metricsToken reads the metrics-only token from --metrics-token-file or
// from $DTR_METRICS_TOKEN; never from a flag's value, which every user of
// the node sees in the process list. given is false when neither is set;
// an explicitly empty --metrics-token-file is given with no token
// (reconfigure: remove it).
func (o *replicaOptions) metricsToken(cli *Cli, cmd *cobra.Command) (token string, given bool, err error) {
	fromEnv, inEnv := "", false
	if cli.LookupEnv != nil {
		fromEnv, inEnv = cli.LookupEnv(metricsTokenEnv)
		inEnv = inEnv && fromEnv != ""
	}
	fileGiven := changed(cmd, "metrics-token-file")
	switch {
	case inEnv && fileGiven:
		return "", false, usageErrorf("both $%s and --metrics-token-file give the metrics token; give one", metricsTokenEnv)
	case inEnv:
		token = fromEnv
	case fileGiven && o.metricsTokenFile == "":
		return "", true, nil
	case fileGiven:
		f, err := os.Open(o.metricsTokenFile)
		if err != nil {
			return "", false, usageErrorf("--metrics-token-file: %v; the installer runs in a container: mount the file into it, e.g. -v /root/metrics.token:/metrics.token:ro --metrics-token-file /metrics.token", err)
		}
		defer f.Close()
		// A token is short; a device or a wrong file must not be read whole.
		b, err := io.ReadAll(io.LimitReader(f, maxMetricsToken+1))
		if err != nil {
			return "", false, usageErrorf("--metrics-token-file: %v", err)
		}
		if len(b) > maxMetricsToken {
			return "", false, usageErrorf("--metrics-token-file %s holds more than %d bytes: give a file with just the token, e.g. openssl rand -hex 32 > metrics.token", o.metricsTokenFile, maxMetricsToken)
		}
		token = string(b)
	default:
		return "", false, nil
	}
	token = strings.TrimSpace(token)
	where := "--metrics-token-file " + o.metricsTokenFile
	if inEnv {
		where = "$" + metricsTokenEnv
	}
	if len(token) < minMetricsToken {
		return "", false, usageErrorf("the metrics token in %s is shorter than %d characters: use a random one, e.g. openssl rand -hex 32", where, minMetricsToken)
	}
	for _, c := range token {
		if c < '!' || c > '~' {
			return "", false, usageErrorf("the metrics token in %s holds a space, control or non-ASCII character; Prometheus sends it in an HTTP header: use a random one, e.g. openssl rand -hex 32", where)
		}
	}
	return token, true, nil
}

// checkMetricsPort refuses a metrics port that is the replica's HTTP or
// HTTPS port, or that another service publishes on node.
func (o *replicaOptions) checkMetricsPort(ctx context.Context, cluster *ucp.Cluster, node string) error {
	if o.metricsPort == 0 {
		return nil
	}
	if err := metricsPortClash(o.metricsPort, o.httpPort, o.httpsPort); err != nil {
		return err
	}
	users, err := orchestrator.PortsInUse(ctx, cluster, node, o.metricsPort)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return usageErrorf("port %d is already published on node %s by service %s: choose another --metrics-port", o.metricsPort, node, users[0].Service)
	}
	return nil
}
