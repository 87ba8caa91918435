package security_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// The transport probes' numbers (issue 12, point 8).
const (
	// maxSlowBody is our bound on "small-body endpoints have a read
	// deadline": a client that announces a body and sends none is cut off
	// within it.
	maxSlowBody = 20 * time.Second
	// unauthBody is the unauthenticated manifest PUT's body: larger than
	// Distribution's 4 MiB manifest limit, as in the review.
	unauthBody = 5 << 20
	// unauthChunk and unauthPace write that body slowly, so that the bytes
	// the server read before it answered can be counted.
	unauthChunk = 64 << 10
	unauthPace  = 10 * time.Millisecond
	// maxUnauthRead is how much of an unauthenticated body the server may
	// read before answering: what the connection's buffers take anyway.
	maxUnauthRead = 1 << 20
)

// tlsDial opens a TLS connection to r trusting its CA.
func tlsDial(r *registrytest.Replica, cfg *tls.Config) (*tls.Conn, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.CACertPEM())
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.RootCAs, cfg.ServerName = pool, "dtr-replica"
	return tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", r.Host, cfg)
}

// stalledBody sends a request head announcing a 100-byte body, sends no
// body, and answers how long the server took to answer or close.
func stalledBody(r *registrytest.Replica, method, path string, header map[string]string) (time.Duration, string, error) {
	conn, err := tlsDial(r, nil)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n", method, path, r.Host)
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	start := time.Now()
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return 0, "", err
	}
	_ = conn.SetReadDeadline(start.Add(maxSlowBody + time.Second))
	status := "closed"
	if line, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
		status = strings.TrimSpace(line)
	} else {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			status = "still waiting"
		}
	}
	return time.Since(start), status, nil
}

// slowBody: a client that announces a body and never sends it does not hold
// a connection and a goroutine open (point 8).
func slowBody(t *testing.T, p *report) {
	r := startReplica(t, nil)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(admin+":"+adminPW))
	cases := []struct {
		name, method, path string
		header             map[string]string
	}{
		{"admin API POST", "POST", "/api/v0/accounts", map[string]string{"Authorization": basic, "Content-Type": "application/json"}},
		{"token POST", "POST", "/auth/token", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
	}
	var wg sync.WaitGroup
	for _, tc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			took, status, err := stalledBody(r, tc.method, tc.path, tc.header)
			if err != nil {
				p.brokef("%s: %v", tc.name, err)
				return
			}
			p.notef("%s cut off after %.1f s (%s)", tc.name, took.Seconds(), status)
			p.check(took <= maxSlowBody, "%s still waiting for its body after %.1f s (limit %v)", tc.name, took.Seconds(), maxSlowBody)
		}()
	}
	wg.Wait()
}

// unauthenticatedManifestPut: the registry checks authorization before it
// reads a manifest body (point 8).
func unauthenticatedManifestPut(t *testing.T, p *report) {
	r := startReplica(t, nil)
	pw := "Alice-" + randomWord()
	createUser(t, r, "um-alice", pw)
	pushImage(t, r, "um-alice", pw, "um-alice/app", "v1")

	pr, pwr := io.Pipe()
	var written atomic.Int64
	go func() {
		chunk := make([]byte, unauthChunk)
		for i := range chunk {
			chunk[i] = '{'
		}
		for written.Load() < unauthBody {
			n, err := pwr.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
			time.Sleep(unauthPace)
		}
		pwr.Close()
	}()
	req, _ := http.NewRequest("PUT", r.URL+"/v2/um-alice/app/manifests/v9", pr)
	req.ContentLength = unauthBody
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	start := time.Now()
	resp, err := newClient(r, time.Minute).Do(req)
	read := written.Load()
	took := time.Since(start)
	pr.CloseWithError(errors.New("the probe has its answer"))
	if err != nil {
		t.Fatalf("unauthenticated manifest PUT: %v", err)
	}
	drain(resp)
	p.notef("%d after %s of the %s body were sent, in %s", resp.StatusCode, mib(read), mib(unauthBody), ms(took))
	p.check(resp.StatusCode == http.StatusUnauthorized, "an unauthenticated manifest PUT answered %d, want 401", resp.StatusCode)
	p.check(read <= maxUnauthRead, "the server read %s of an unauthenticated body before answering", mib(read))
}

// realmAndRedirect: the bearer realm and the HTTP→HTTPS redirect come from
// the configured external URL, never from the client's headers (point 8).
func realmAndRedirect(t *testing.T, p *report) {
	const external = "https://registry.example.test"
	r := startReplica(t, func(o *registry.Options) { o.ExternalURL = external })
	c := newClient(r, 30*time.Second)
	req, _ := http.NewRequest("GET", r.URL+"/v2/", nil)
	req.Host = "evil.example"
	req.Header.Set("X-Forwarded-Proto", "http")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET /v2/: %v", err)
	}
	drain(resp)
	challenge := resp.Header.Get("WWW-Authenticate")

	req, _ = http.NewRequest("GET", r.HTTP+"/v2/", nil)
	req.Host = "evil.example"
	resp, err = c.Do(req)
	if err != nil {
		t.Fatalf("plain-HTTP GET /v2/: %v", err)
	}
	drain(resp)
	location := resp.Header.Get("Location")
	p.notef("challenge %s; redirect %d to %s", challenge, resp.StatusCode, location)
	p.check(strings.Contains(challenge, "realm="), "the 401 has no bearer realm: %q", challenge)
	p.check(!strings.Contains(challenge, "evil.example"), "the bearer realm follows the Host header")
	p.check(!strings.Contains(challenge, `realm="http://`), "the bearer realm follows X-Forwarded-Proto")
	p.check(!strings.Contains(location, "evil.example"), "the redirect follows the Host header")
}

// tlsProbe: HTTPS sends HSTS and TLS 1.2 offers AEAD suites only (point 8).
func tlsProbe(t *testing.T, p *report) {
	r := startReplica(t, nil)
	resp, err := newClient(r, 30*time.Second).Get(r.URL + "/v2/")
	if err != nil {
		t.Fatalf("GET /v2/: %v", err)
	}
	drain(resp)
	hsts := resp.Header.Get("Strict-Transport-Security")
	p.check(hsts != "", "HTTPS responses carry no Strict-Transport-Security")

	conn, err := tlsDial(r, &tls.Config{
		MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA},
	})
	cbc := "refused"
	if err == nil {
		cbc = "accepted (" + tls.CipherSuiteName(conn.ConnectionState().CipherSuite) + ")"
		conn.Close()
	}
	p.notef("HSTS %q; TLS 1.2 with CBC suites only: %s", hsts, cbc)
	p.check(err != nil, "a TLS 1.2 client offering only CBC suites got %s", cbc)
}
