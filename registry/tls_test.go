package registry_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/pki"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// TestOperatorCertificate: with --tls-cert, clients asking for the external
// name get the operator's certificate, and the installer (asking for
// "dtr-replica") still gets the cluster-CA one, so it can manage the replica.
func TestOperatorCertificate(t *testing.T) {
	opCA, err := pki.NewCA("operator CA")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := opCA.Issue("dtr.example.com", []string{"dtr.example.com"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls-key.pem")
	os.WriteFile(certFile, kp.CertPEM, 0o644)
	os.WriteFile(keyFile, kp.KeyPEM, 0o600)
	o := registrytest.Options(t, filepath.Join(dir, "data"))
	o.TLSCertFile, o.TLSKeyFile = certFile, keyFile
	r := registrytest.Start(t, o) // its client asks for dtr-replica and trusts the cluster CA

	pool := x509.NewCertPool()
	pool.AddCert(opCA.Cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "dtr.example.com"}}}
	resp, err := client.Get(r.URL + "/_ping")
	if err != nil {
		t.Fatalf("a client of the external name with the operator's CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/_ping: %s", resp.Status)
	}
}
