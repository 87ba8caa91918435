package registry

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/dtr-registry/dtr/pki"
)

// Files of the replica's CA directory (the dtr-ca-<id> volume).
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

// loadOrCreateCA reads the cluster CA from dir; a replica that starts a new
// cluster creates it, a joiner must have been given it by the installer.
func loadOrCreateCA(dir string, create bool) (*pki.CA, error) {
	certPEM, err1 := os.ReadFile(filepath.Join(dir, caCertFile))
	keyPEM, err2 := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err1 == nil && err2 == nil {
		return pki.ParseCA(certPEM, keyPEM)
	}
	if !create {
		return nil, fmt.Errorf("the cluster CA is missing from %s (%s, %s): a joining replica gets it from the installer; re-run join", dir, caCertFile, caKeyFile)
	}
	ca, err := pki.NewCA("dtr cluster CA")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	keyPEM, err = ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, caKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, caCertFile), ca.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// writeFileAtomic writes through a temporary file and a rename, so a crash
// never leaves half a key behind.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// localAddresses lists this host's unicast addresses, for certificate SANs.
func localAddresses() []string {
	var out []string
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}

// issueFiles returns dir/name.pem and dir/name-key.pem holding a certificate
// from ca for hosts. Files a previous start left that still fit (same CA,
// every host, a month or more to live, the key matching) are kept: a replica
// restarting on a full data volume must not need to write them. New ones
// that cannot be written there (a full volume) go to a private temporary
// directory instead, since they can be issued again at any start.
func issueFiles(ca *pki.CA, dir, name string, hosts []string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if certFits(ca, certFile, keyFile, hosts) {
		// Kept as it is, but never readable by others, whatever put it there.
		if err := os.Chmod(keyFile, 0o600); err != nil {
			return "", "", err
		}
		return certFile, keyFile, nil
	}
	kp, err := ca.Issue(name, hosts, certValidity)
	if err != nil {
		return "", "", err
	}
	werr := writePair(dir, certFile, keyFile, kp)
	if werr == nil {
		return certFile, keyFile, nil
	}
	// /dev/shm is memory in a container: not the full disk the data
	// volume and the container's own layer usually share.
	tmp, err := os.MkdirTemp("/dev/shm", "dtr-tls-")
	if err != nil {
		tmp, err = os.MkdirTemp("", "dtr-tls-")
	}
	if err != nil {
		return "", "", fmt.Errorf("writing the %s certificate: %w (and no temporary directory: %v)", name, werr, err)
	}
	certFile, keyFile = filepath.Join(tmp, name+".pem"), filepath.Join(tmp, name+"-key.pem")
	if err := writePair(tmp, certFile, keyFile, kp); err != nil {
		return "", "", fmt.Errorf("writing the %s certificate: %w (and in %s: %v)", name, werr, tmp, err)
	}
	return certFile, keyFile, nil
}

// certValidity is the life of the certificates a replica issues itself; one
// that has less than certRenewBefore left is issued again at start.
const (
	certValidity    = 2 * 365 * 24 * time.Hour
	certRenewBefore = 30 * 24 * time.Hour
)

func writePair(dir, certFile, keyFile string, kp pki.KeyPair) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(keyFile, kp.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, kp.CertPEM, 0o644)
}

// certFits reports whether the pair on disk is one issueFiles would keep.
// The node's interface addresses are not required: a new Swarm task gets
// new overlay addresses, and every peer, the installer and clients reach a
// replica by name (its service name, TLSServerName, the external name) or
// by the node address the installer passes among hosts.
func certFits(ca *pki.CA, certFile, keyFile string, hosts []string) bool {
	certPEM, err1 := os.ReadFile(certFile)
	keyPEM, err2 := os.ReadFile(keyFile)
	if err1 != nil || err2 != nil {
		return false
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM) // also checks that the key matches
	if err != nil || len(pair.Certificate) == 0 {
		return false
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || cert.CheckSignatureFrom(ca.Cert) != nil || time.Until(cert.NotAfter) < certRenewBefore {
		return false
	}
	local := map[string]bool{}
	for _, a := range localAddresses() {
		local[a] = true
	}
	for _, h := range hosts {
		if h == "" || local[h] {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(cert.DNSNames, h) {
			return false
		}
	}
	return true
}

// newTokenKey makes the cluster's token-signing key and a self-signed
// certificate for it (Distribution trusts the certificate's key).
func newTokenKey() (certPEM, keyPEM []byte, err error) {
	ca, err := pki.NewCA("dtr token signing")
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = ca.KeyPEM()
	return ca.CertPEM(), keyPEM, err
}

// aeadSuites are the TLS 1.2 suites the replica offers: forward-secret key
// exchange and AEAD ciphers only, no CBC (Lucky13-style padding oracles).
// TLS 1.3's suites are not configurable and all AEAD.
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// serverTLS is the HTTPS configuration from certificate/key file pairs; Go
// picks the first one whose names match the name the client asks for (SNI),
// else the first.
func serverTLS(pairs ...[2]string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: aeadSuites}
	for _, p := range pairs {
		cert, err := tls.LoadX509KeyPair(p[0], p[1])
		if err != nil {
			return nil, fmt.Errorf("loading the TLS certificate %s: %w", p[0], err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, nil
}

// installCA copies the CA the installer provides into dir.
func installCA(certFile, keyFile, dir string) error {
	cert, err := os.ReadFile(certFile)
	if err != nil {
		return fmt.Errorf("reading the cluster CA certificate: %w", err)
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return fmt.Errorf("reading the cluster CA key: %w", err)
	}
	if _, err := pki.ParseCA(cert, key); err != nil {
		return fmt.Errorf("the cluster CA from %s and %s: %w", certFile, keyFile, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, caKeyFile), key, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, caCertFile), cert, 0o644)
}
