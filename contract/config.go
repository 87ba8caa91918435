package contract

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Config is a replica's configuration as the installer writes it into the
// replica's service environment and the replica reads it back. Secrets are
// never values here, only the paths of the files that hold them.
type Config struct {
	ReplicaID       string
	DataDir         string // the metadata volume's mount: DataDir
	CADir           string
	StorageRoot     string // filesystem image storage: StorageDir
	HTTPAddr        string // listen addresses; empty: the replica's defaults
	HTTPSAddr       string
	PublicHTTPSPort int // the HTTPS port clients use, for redirects
	CACertFile      string
	CAKeyFile       string
	PeerListen      string
	PeerAdvertise   string // PeerURLAt(node address, peer port), or PeerURL(ReplicaID) on the overlay
	ClientSocket    string
	Hostnames       []string // extra names and addresses for issued certificates
	LogLevel        string
	LogFormat       string
	ExternalURL     string

	// Join: start as a learner of the cluster InitialCluster describes
	// ("id=peerURL,…", from the admin API's add-replica answer).
	Join           bool
	InitialCluster string
	InsecurePeers  bool // plain-HTTP peers: single-host tests only

	// AdminUsername and AdminPasswordFile: the first admin of a new cluster.
	AdminUsername     string
	AdminPasswordFile string

	// TLSCertFile and TLSKeyFile: the operator's HTTPS certificate.
	TLSCertFile string
	TLSKeyFile  string

	// Storage of a new cluster: "filesystem" (default) or "s3".
	Storage         string
	S3Region        string
	S3Bucket        string
	S3Endpoint      string
	S3AccessKey     string
	S3SecretKeyFile string
	S3Root          string
	S3PathStyle     bool
	S3Insecure      bool

	// Restore: wait for dtr restore to send a backup; RestoreStorage is
	// RestoreKeepStorage or RestoreFilesystem.
	Restore        bool
	RestoreStorage string

	// ForceNewCluster: emergency repair's one-time token.
	ForceNewCluster string

	// The proxies the replica's own outbound requests (S3) go through;
	// standard names, which Go's HTTP client reads itself.
	HTTPProxy  string
	HTTPSProxy string
	NoProxy    string

	// Observability (docs/observability.md): the address of the
	// unauthenticated /metrics listener, the file holding the metrics-only
	// bearer token (a Swarm secret), and the OTLP/HTTP trace collector.
	// Empty: off.
	MetricsAddr      string
	MetricsTokenFile string
	OTLPEndpoint     string
}

// envVar is one line of the table that maps Config to its environment.
type envVar struct {
	name string
	str  func(*Config) *string
	flag func(*Config) *bool
	num  func(*Config) *int
	list func(*Config) *[]string
}

// envVars is the environment of Config, in one place: a new setting is a
// field above and a line here.
var envVars = []envVar{
	{name: "DTR_REPLICA_ID", str: func(c *Config) *string { return &c.ReplicaID }},
	{name: "DTR_DATA_DIR", str: func(c *Config) *string { return &c.DataDir }},
	{name: "DTR_CA_DIR", str: func(c *Config) *string { return &c.CADir }},
	{name: "DTR_STORAGE_ROOT", str: func(c *Config) *string { return &c.StorageRoot }},
	{name: "DTR_HTTP_ADDR", str: func(c *Config) *string { return &c.HTTPAddr }},
	{name: "DTR_HTTPS_ADDR", str: func(c *Config) *string { return &c.HTTPSAddr }},
	{name: "DTR_PUBLIC_HTTPS_PORT", num: func(c *Config) *int { return &c.PublicHTTPSPort }},
	{name: "DTR_CA_CERT_FILE", str: func(c *Config) *string { return &c.CACertFile }},
	{name: "DTR_CA_KEY_FILE", str: func(c *Config) *string { return &c.CAKeyFile }},
	{name: "DTR_PEER_LISTEN", str: func(c *Config) *string { return &c.PeerListen }},
	{name: "DTR_PEER_ADVERTISE", str: func(c *Config) *string { return &c.PeerAdvertise }},
	{name: "DTR_CLIENT_SOCKET", str: func(c *Config) *string { return &c.ClientSocket }},
	{name: "DTR_HOSTNAMES", list: func(c *Config) *[]string { return &c.Hostnames }},
	{name: "DTR_LOG_LEVEL", str: func(c *Config) *string { return &c.LogLevel }},
	{name: "DTR_LOG_FORMAT", str: func(c *Config) *string { return &c.LogFormat }},
	{name: "DTR_EXTERNAL_URL", str: func(c *Config) *string { return &c.ExternalURL }},
	{name: "DTR_JOIN", flag: func(c *Config) *bool { return &c.Join }},
	{name: "DTR_INITIAL_CLUSTER", str: func(c *Config) *string { return &c.InitialCluster }},
	{name: "DTR_INSECURE_PEERS", flag: func(c *Config) *bool { return &c.InsecurePeers }},
	{name: "DTR_ADMIN_USERNAME", str: func(c *Config) *string { return &c.AdminUsername }},
	{name: "DTR_ADMIN_PASSWORD_FILE", str: func(c *Config) *string { return &c.AdminPasswordFile }},
	{name: "DTR_TLS_CERT", str: func(c *Config) *string { return &c.TLSCertFile }},
	{name: "DTR_TLS_KEY", str: func(c *Config) *string { return &c.TLSKeyFile }},
	{name: "DTR_STORAGE", str: func(c *Config) *string { return &c.Storage }},
	{name: "DTR_S3_REGION", str: func(c *Config) *string { return &c.S3Region }},
	{name: "DTR_S3_BUCKET", str: func(c *Config) *string { return &c.S3Bucket }},
	{name: "DTR_S3_ENDPOINT", str: func(c *Config) *string { return &c.S3Endpoint }},
	{name: "DTR_S3_ACCESS_KEY", str: func(c *Config) *string { return &c.S3AccessKey }},
	{name: "DTR_S3_SECRET_KEY_FILE", str: func(c *Config) *string { return &c.S3SecretKeyFile }},
	{name: "DTR_S3_ROOT", str: func(c *Config) *string { return &c.S3Root }},
	{name: "DTR_S3_PATH_STYLE", flag: func(c *Config) *bool { return &c.S3PathStyle }},
	{name: "DTR_S3_INSECURE", flag: func(c *Config) *bool { return &c.S3Insecure }},
	{name: "DTR_RESTORE", flag: func(c *Config) *bool { return &c.Restore }},
	{name: "DTR_RESTORE_STORAGE", str: func(c *Config) *string { return &c.RestoreStorage }},
	{name: "DTR_FORCE_NEW_CLUSTER", str: func(c *Config) *string { return &c.ForceNewCluster }},
	{name: "HTTP_PROXY", str: func(c *Config) *string { return &c.HTTPProxy }},
	{name: "HTTPS_PROXY", str: func(c *Config) *string { return &c.HTTPSProxy }},
	{name: "NO_PROXY", str: func(c *Config) *string { return &c.NoProxy }},
	{name: "DTR_METRICS_ADDR", str: func(c *Config) *string { return &c.MetricsAddr }},
	{name: "DTR_METRICS_TOKEN_FILE", str: func(c *Config) *string { return &c.MetricsTokenFile }},
	{name: "DTR_OTLP_ENDPOINT", str: func(c *Config) *string { return &c.OTLPEndpoint }},
}

// Env is c as "NAME=value" lines, sorted, leaving out what is unset (the
// empty string, false, 0, no hostnames), so that a service's environment
// lists only what the installer chose.
func (c Config) Env() []string {
	var out []string
	for _, v := range envVars {
		switch {
		case v.str != nil && *v.str(&c) != "":
			out = append(out, v.name+"="+*v.str(&c))
		case v.flag != nil && *v.flag(&c):
			out = append(out, v.name+"=true")
		case v.num != nil && *v.num(&c) != 0:
			out = append(out, v.name+"="+strconv.Itoa(*v.num(&c)))
		case v.list != nil && len(*v.list(&c)) > 0:
			out = append(out, v.name+"="+strings.Join(*v.list(&c), ","))
		}
	}
	sort.Strings(out)
	return out
}

// ParseEnv reads a Config from "NAME=value" lines (os.Environ(), or a
// service's ContainerSpec.Env); names it does not know are ignored. A value
// that does not parse is an error naming the variable.
func ParseEnv(env []string) (Config, error) {
	byName := make(map[string]envVar, len(envVars))
	for _, v := range envVars {
		byName[v.name] = v
	}
	var c Config
	for _, line := range env {
		name, value, ok := strings.Cut(line, "=")
		v, known := byName[name]
		if !ok || !known {
			continue
		}
		switch {
		case v.str != nil:
			*v.str(&c) = value
		case v.flag != nil:
			b, err := parseBool(value)
			if err != nil {
				return Config{}, fmt.Errorf("%s=%q: %w", name, value, err)
			}
			*v.flag(&c) = b
		case v.num != nil:
			n, err := strconv.Atoi(value)
			if err != nil {
				return Config{}, fmt.Errorf("%s=%q: give a number", name, value)
			}
			*v.num(&c) = n
		case v.list != nil:
			*v.list(&c) = nil
			for _, s := range strings.Split(value, ",") {
				if s = strings.TrimSpace(s); s != "" {
					*v.list(&c) = append(*v.list(&c), s)
				}
			}
		}
	}
	return c, nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "true", "yes":
		return true, nil
	case "", "0", "false", "no":
		return false, nil
	}
	return false, fmt.Errorf("give true or false")
}

// EnvNames lists every variable Config reads, for documentation and tests.
func EnvNames() []string {
	out := make([]string, len(envVars))
	for i, v := range envVars {
		out[i] = v.name
	}
	return out
}
