package commands

import (
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/ucp"
)

// replicaOptions are the replica settings install, join, reconfigure and
// restore share. Each command declares only the flags DTR gave it; validate
// checks only what the command has.
type replicaOptions struct {
	ucpNode       string
	replicaID     string
	externalURL   string
	dtrCA         string
	dtrCert       string
	dtrKey        string
	storageVolume string
	nfsURL        string
	nfsOptions    string
	asyncNFS      bool
	httpPort      int
	httpsPort     int
	rethinkDBMB   string
	overlaySubnet string
	httpProxy     string
	httpsProxy    string
	noProxy       string
	logProtocol   string
	logHost       string
	enablePprof   bool
	clientCert    bool
	clientCA      string
	caBundle      string
	// Observability (observability.go).
	metricsPort      int
	metricsTokenFile string
	otlpEndpoint     string
}

const defaultOverlaySubnet = "10.1.0.0/24"

func addNodeFlag(f flags, o *replicaOptions, usage string) {
	f.String(&o.ucpNode, "ucp-node", "", usage, "UCP_NODE")
}

func addReplicaIDFlag(f flags, o *replicaOptions, usage string, env ...string) {
	f.String(&o.replicaID, "replica-id", "", usage, env...)
}

func addExternalURLFlag(f flags, o *replicaOptions) {
	f.String(&o.externalURL, "dtr-external-url", "", "URL of the host or load balancer clients use to reach the registry, https://host[:port]; use an FQDN", "DTR_EXTERNAL_URL")
}

func addCertFlags(f flags, o *replicaOptions) {
	f.String(&o.dtrCA, "dtr-ca", "", "PEM-encoded CA certificate of the registry's TLS certificate; default: a generated cluster CA", "DTR_CA", "MSR_CA")
	f.String(&o.dtrCert, "dtr-cert", "", "PEM-encoded TLS certificate of the registry, intermediates appended; default: issued by the cluster CA", "DTR_CERT", "MSR_CERT")
	f.String(&o.dtrKey, "dtr-key", "", "PEM-encoded private key of --dtr-cert", "DTR_KEY", "MSR_KEY")
}

func addStorageVolumeFlag(f flags, o *replicaOptions) {
	f.String(&o.storageVolume, "dtr-storage-volume", "", "Volume name or absolute host path for image storage (default: volume dtr-registry-<replica-id>); a host path must be writable by uid 10001, the replica's user (chown 10001:10001 <path>), or the command fails and undoes itself; must be shared storage for more than one replica", "DTR_STORAGE_VOLUME")
}

func addNFSFlags(f flags, o *replicaOptions) {
	f.String(&o.nfsURL, "nfs-storage-url", "", "Store images on NFS: nfs://<server>/<path>; every node needs an NFS client; \"\" turns NFS off on reconfigure", "NFS_STORAGE_URL")
	f.String(&o.nfsOptions, "nfs-options", "", "NFS mount options, passed verbatim, e.g. rw,nfsvers=4", "NFS_OPTIONS")
}

func addAsyncNFSFlag(f flags, o *replicaOptions) {
	f.Bool(&o.asyncNFS, "async-nfs", false, "Mount the NFS storage asynchronously (needs --nfs-storage-url)", "ASYNC_NFS")
}

func addPortFlags(f flags, o *replicaOptions) {
	f.Int(&o.httpPort, "replica-http-port", 80, "Public HTTP port of the replica on its node; redirects to HTTPS except /_ping", "REPLICA_HTTP_PORT")
	f.Int(&o.httpsPort, "replica-https-port", 443, "Public HTTPS port of the replica on its node; may differ per replica", "REPLICA_HTTPS_PORT")
}

func addRethinkFlag(f flags, o *replicaOptions) {
	f.String(&o.rethinkDBMB, "replica-rethinkdb-cache-mb", "auto", "Accepted for DTR compatibility; dtr keeps metadata in etcd and ignores it", "RETHINKDB_CACHE_MB")
}

func addOverlayFlag(f flags, o *replicaOptions) {
	f.String(&o.overlaySubnet, "overlay-subnet", defaultOverlaySubnet, "Subnet of the dtr-ol overlay network; must not clash with the nodes' networks", "DTR_OVERLAY_SUBNET")
}

func addProxyFlags(f flags, o *replicaOptions) {
	f.String(&o.httpProxy, "http-proxy", "", "HTTP proxy for the replicas' outbound requests", "DTR_HTTP_PROXY")
	f.String(&o.httpsProxy, "https-proxy", "", "HTTPS proxy for the replicas' outbound requests", "DTR_HTTPS_PROXY")
	f.String(&o.noProxy, "no-proxy", "", "Hosts the replicas reach without the proxy, e.g. acme.com, acme.org", "DTR_NO_PROXY")
}

func addLogFlags(f flags, o *replicaOptions) {
	f.String(&o.logProtocol, "log-protocol", "internal", "Where the replicas send logs: internal, tcp or udp (syslog)", "LOG_PROTOCOL")
	f.String(&o.logHost, "log-host", "", "Syslog endpoint host:port for --log-protocol tcp or udp", "LOG_HOST")
}

func addPprofFlag(f flags, o *replicaOptions) {
	f.Bool(&o.enablePprof, "enable-pprof", false, "Serve /debug/pprof on the replicas (admin only)", "DTR_PPROF")
}

func addClientCertFlags(f flags, o *replicaOptions) {
	f.Bool(&o.clientCert, "enable-client-cert-auth", false, "Accept TLS client certificates signed by --client-cert-auth-ca as authentication", "ENABLE_CLIENT_CERT_AUTH")
	f.String(&o.clientCA, "client-cert-auth-ca", "", "PEM-encoded CA certificates for client certificate authentication", "CLIENT_CA")
}

func addCABundleFlag(f flags, o *replicaOptions) {
	f.String(&o.caBundle, "custom-ca-cert-bundle", "", "PEM-encoded extra CA certificates the replicas trust for outbound TLS", "CUSTOM_CA_CERTS_BUNDLE")
}

// validate checks the replica flags cmd declares, normalising where DTR did.
func (o *replicaOptions) validate(cmd *cobra.Command) error {
	has := func(name string) bool { return cmd.Flags().Lookup(name) != nil }
	if has("replica-id") && o.replicaID != "" {
		id, err := validateReplicaID(o.replicaID)
		if err != nil {
			return err
		}
		o.replicaID = id
	}
	if has("dtr-external-url") {
		u, err := normalizeExternalURL(o.externalURL)
		if err != nil {
			return err
		}
		o.externalURL = u
	}
	if has("replica-http-port") {
		if err := validatePort("replica-http-port", o.httpPort); err != nil {
			return err
		}
		if err := validatePort("replica-https-port", o.httpsPort); err != nil {
			return err
		}
		if o.httpPort == o.httpsPort {
			return usageErrorf("--replica-http-port and --replica-https-port are both %d; give them different ports", o.httpPort)
		}
	}
	if has("dtr-cert") {
		if (o.dtrCert == "") != (o.dtrKey == "") {
			return usageErrorf("--dtr-cert and --dtr-key go together: give both, or neither to use a certificate from the generated cluster CA")
		}
		for _, c := range []struct {
			flag, val string
			key       bool
		}{{"dtr-ca", o.dtrCA, false}, {"dtr-cert", o.dtrCert, false}, {"dtr-key", o.dtrKey, true}} {
			if c.val != "" {
				if err := validatePEM(c.flag, c.val, c.key); err != nil {
					return err
				}
			}
		}
	}
	if has("dtr-storage-volume") && o.storageVolume != "" {
		if err := validateStorageVolume(o.storageVolume); err != nil {
			return err
		}
	}
	if has("nfs-storage-url") && o.nfsURL != "" {
		if err := validateNFSURL(o.nfsURL); err != nil {
			return err
		}
		if o.storageVolume != "" {
			return usageErrorf("--dtr-storage-volume and --nfs-storage-url both choose the image storage; give one")
		}
	}
	if has("nfs-options") && o.nfsOptions != "" && o.nfsURL == "" && !changed(cmd, "nfs-storage-url") {
		return usageErrorf("--nfs-options needs --nfs-storage-url")
	}
	if has("async-nfs") && o.asyncNFS && o.nfsURL == "" {
		return usageErrorf("--async-nfs needs --nfs-storage-url")
	}
	if has("replica-rethinkdb-cache-mb") && o.rethinkDBMB != "auto" {
		if n, err := strconv.Atoi(o.rethinkDBMB); err != nil || n < 0 {
			return usageErrorf("--replica-rethinkdb-cache-mb %q: give a number of MB or auto", o.rethinkDBMB)
		}
	}
	if has("overlay-subnet") {
		if err := validateSubnet(o.overlaySubnet); err != nil {
			return err
		}
	}
	if has("http-proxy") {
		for flag, v := range map[string]string{"http-proxy": o.httpProxy, "https-proxy": o.httpsProxy} {
			if v != "" {
				if err := validateProxy(flag, v); err != nil {
					return err
				}
			}
		}
	}
	if has("log-protocol") {
		switch strings.ToLower(o.logProtocol) {
		case "internal":
			if o.logHost != "" {
				return usageErrorf("--log-host needs --log-protocol tcp or udp")
			}
		case "tcp", "udp":
			if o.logHost == "" {
				return usageErrorf("--log-protocol %s needs --log-host host:port", o.logProtocol)
			}
		default:
			return usageErrorf("--log-protocol %q: use internal, tcp or udp", o.logProtocol)
		}
	}
	if has("enable-client-cert-auth") {
		if o.clientCert && o.clientCA == "" {
			return usageErrorf("--enable-client-cert-auth needs --client-cert-auth-ca")
		}
		if o.clientCA != "" {
			if err := validatePEM("client-cert-auth-ca", o.clientCA, false); err != nil {
				return err
			}
		}
	}
	if has("custom-ca-cert-bundle") && o.caBundle != "" {
		if err := validatePEM("custom-ca-cert-bundle", o.caBundle, false); err != nil {
			return err
		}
	}
	return o.validateObservability(cmd)
}

// warnIgnored logs flags dtr accepts for DTR compatibility but does not use.
func (o *replicaOptions) warnIgnored(cli *Cli, cmd *cobra.Command) {
	if changed(cmd, "replica-rethinkdb-cache-mb") {
		cli.Log.Warn("--replica-rethinkdb-cache-mb has no effect: dtr keeps its metadata in etcd, not RethinkDB")
	}
}

// config is the replica's orchestrator configuration from these flags.
func (o *replicaOptions) config(id string, node ucp.Node, image, imageID, jobImageID, level string) orchestrator.ReplicaConfig {
	return orchestrator.ReplicaConfig{
		ID: id, Node: node.Hostname, NodeAddr: node.Addr,
		HTTPPort: o.httpPort, HTTPSPort: o.httpsPort,
		Storage: orchestrator.Storage{Volume: o.storageVolume, NFSURL: o.nfsURL, NFSOptions: o.nfsOptions, AsyncNFS: o.asyncNFS},
		Image:   image, ImageID: imageID, JobImageID: jobImageID, Version: images.Version,
		ExternalURL: o.externalURL, LogLevel: level,
		HTTPProxy: o.httpProxy, HTTPSProxy: o.httpsProxy, NoProxy: o.noProxy,
		MetricsPort: o.metricsPort, OTLPEndpoint: o.otlpEndpoint,
	}
}

// unsupported refuses settings this version accepts for DTR compatibility
// but cannot apply yet: an operator must never believe a setting took effect.
func unsupported(cmd *cobra.Command) error {
	for _, flag := range []string{"enable-client-cert-auth", "client-cert-auth-ca", "custom-ca-cert-bundle", "enable-pprof", "log-host"} {
		if changed(cmd, flag) {
			return usageErrorf("--%s is not supported by this version of dtr yet; leave it out (nothing was changed)", flag)
		}
	}
	if fl := cmd.Flags().Lookup("log-protocol"); fl != nil && fl.Changed && fl.Value.String() != "internal" {
		return usageErrorf("--log-protocol %s is not supported by this version of dtr yet: replicas log to stderr (docker service logs); nothing was changed", fl.Value.String())
	}
	return nil
}
