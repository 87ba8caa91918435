package registry_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/pki"
)

// pipelineLimit measures, in MB/s, what a push's whole path allows on this
// machine without any registry: buf sent over TLS 1.3 on loopback (the
// client encrypting, the receiver decrypting, on the same cores as in the
// data-path rows), the receiver either discarding it (tlsOnly) or hashing it
// with sha256 and writing it to a file in dir, fsynced at the end, as a blob
// upload does.
func pipelineLimit(t *testing.T, buf []byte, dir string, tlsOnly bool) float64 {
	t.Helper()
	ca, err := pki.NewCA("bench CA")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue("bench", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			defer c.Close()
			if tlsOnly {
				_, err = io.Copy(io.Discard, c)
				return err
			}
			f, err := os.CreateTemp(dir, "pipeline")
			if err != nil {
				return err
			}
			defer os.Remove(f.Name())
			defer f.Close()
			h := sha256.New()
			if _, err := io.Copy(io.MultiWriter(h, f), c); err != nil {
				return err
			}
			_ = h.Sum(nil)
			return f.Sync()
		}()
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	start := time.Now()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(buf); off += 64 << 10 {
		if _, err := c.Write(buf[off:min(off+64<<10, len(buf))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return float64(len(buf)) / time.Since(start).Seconds() / 1e6
}

// TestPipelineLimit keeps pipelineLimit honest where make bench does not
// run: both forms move every byte and give a positive rate.
// DTR_PIPELINE_MB=256 measures at make bench's size.
func TestPipelineLimit(t *testing.T) {
	mb := 8
	if v, err := strconv.Atoi(os.Getenv("DTR_PIPELINE_MB")); err == nil && v > 0 {
		mb = v
	}
	buf := randomBytes(mb << 20)
	for _, tlsOnly := range []bool{true, false} {
		r := pipelineLimit(t, buf, t.TempDir(), tlsOnly)
		if r <= 0 {
			t.Fatalf("pipelineLimit(tlsOnly=%v) = %v MB/s", tlsOnly, r)
		}
		t.Logf("%d MiB, TLS only %v: %.0f MB/s", mb, tlsOnly, r)
	}
}
