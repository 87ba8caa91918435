package commands

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// validateReplicaID lower-cases a replica ID and checks it with DTR's messages.
func validateReplicaID(id string) (string, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	for _, r := range id {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return "", usageErrorf("Replica IDs must be hexadecimal: %s", id)
		}
	}
	if len(id) != 12 {
		return "", usageErrorf("Replica IDs must be 12 characters long. This one is %d", len(id))
	}
	return id, nil
}

// validateReplicaIDs checks a comma-separated list of replica IDs.
func validateReplicaIDs(list string) ([]string, error) {
	var ids []string
	seen := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		id, err := validateReplicaID(s)
		if err != nil {
			return nil, err
		}
		if !seen[id] {
			ids = append(ids, id)
			seen[id] = true
		}
	}
	return ids, nil
}

func validatePort(flag string, p int) error {
	if p < 1 || p > 65535 {
		return usageErrorf("--%s %d: a port must be between 1 and 65535", flag, p)
	}
	return nil
}

// normalizeExternalURL accepts "host", "host:port" or "https://host[:port]"
// and returns "https://host[:port]".
func normalizeExternalURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", nil
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", usageErrorf("--dtr-external-url %q: %v", raw, err)
	}
	if u.Scheme != "https" {
		return "", usageErrorf("--dtr-external-url %q: clients reach dtr over https only; use https://%s", raw, u.Host)
	}
	if u.Hostname() == "" {
		return "", usageErrorf("--dtr-external-url %q has no host", raw)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return "", usageErrorf("--dtr-external-url %q: give only https://host[:port], without path, query or credentials", raw)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", usageErrorf("--dtr-external-url %q: port %q is not between 1 and 65535", raw, p)
		}
	}
	return "https://" + u.Host, nil
}

// validateNFSURL checks nfs://<host>/<path>.
func validateNFSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "nfs" || u.Hostname() == "" || !strings.HasPrefix(u.Path, "/") {
		return usageErrorf("--nfs-storage-url %q: use nfs://<server>/<exported path>, e.g. nfs://10.0.0.5/dtr", raw)
	}
	if u.Port() != "" {
		return usageErrorf("--nfs-storage-url %q: leave the port out; pass it with --nfs-options port=<n>", raw)
	}
	return nil
}

var volumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// validateStorageVolume accepts a volume name or an absolute host path.
func validateStorageVolume(v string) error {
	if strings.HasPrefix(v, "/") {
		if path.Clean(v) == "/" {
			return usageErrorf("--dtr-storage-volume %q: refusing to store images in the root directory", v)
		}
		return nil
	}
	if !volumeName.MatchString(v) {
		return usageErrorf("--dtr-storage-volume %q: give a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+) or an absolute host path such as /srv/dtr", v)
	}
	return nil
}

func validateSubnet(s string) error {
	ip, n, err := net.ParseCIDR(s)
	if err != nil || ip.To4() == nil {
		return usageErrorf("--overlay-subnet %q: give an IPv4 CIDR such as 10.1.0.0/24", s)
	}
	if ones, _ := n.Mask.Size(); ones > 29 {
		return usageErrorf("--overlay-subnet %q: /%d leaves too few addresses; use /29 or larger (default 10.1.0.0/24)", s, ones)
	}
	return nil
}

func validateProxy(flag, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") || u.Host == "" {
		return usageErrorf("--%s %q: give a URL such as http://proxy.example.com:3128", flag, s)
	}
	return nil
}

// validatePEM checks that a flag holds PEM blocks of the expected kind.
func validatePEM(flag, s string, wantKey bool) error {
	rest := []byte(s)
	found := false
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		found = true
		switch {
		case wantKey && !strings.Contains(b.Type, "PRIVATE KEY"):
			return usageErrorf("--%s holds a %q block; it needs a PEM private key", flag, b.Type)
		case !wantKey && b.Type != "CERTIFICATE":
			return usageErrorf("--%s holds a %q block; it needs PEM certificates", flag, b.Type)
		case !wantKey:
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				return usageErrorf("--%s: a certificate does not parse: %v", flag, err)
			}
		}
	}
	if !found {
		return usageErrorf("--%s holds no PEM data; pass the file's content, e.g. --%s \"$(cat file.pem)\"", flag, flag)
	}
	return nil
}

func validateDuration(flag, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usageErrorf("--%s %q: give a positive Go duration such as 30m or 2h", flag, s)
	}
	return d, nil
}
