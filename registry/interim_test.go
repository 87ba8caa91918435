package registry

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/pki"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestInterimSwapsPhases: one interim listener answers /_live, /_ping and
// /health for whichever phase it shows, on both ports, and the phase's own
// paths and TLS configuration; showing another phase swaps all of them
// without reopening a port.
func TestInterimSwapsPhases(t *testing.T) {
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	r := &Replica{opts: Options{ReplicaID: "0123456789ab", HTTPAddr: freeAddr(t), HTTPSAddr: freeAddr(t)}, log: log.WithField("test", t.Name()), ca: ca}
	hosts := []string{contract.TLSServerName, "127.0.0.1"}
	quorum, err := r.quorumPhase(hosts)
	if err != nil {
		t.Fatal(err)
	}
	restore, received, err := r.restorePhase(hosts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.listenInterim(quorum)
	if err != nil {
		t.Fatal(err)
	}
	defer l.stop()

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	// certAsked counts the server's requests for a client certificate: the
	// restore phase's TLS asks for one, the quorum phase's does not.
	var certAsked atomic.Int32
	httpsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: contract.TLSServerName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			certAsked.Add(1)
			return &tls.Certificate{}, nil
		},
	}}}
	get := func(c *http.Client, url string) (int, map[string]any, *http.Response) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		return resp.StatusCode, body, resp
	}
	bases := map[*http.Client]string{http.DefaultClient: "http://" + r.opts.HTTPAddr, httpsClient: "https://" + r.opts.HTTPSAddr}
	for _, phase := range []struct {
		name   string
		p      *interimPhase
		live   string // the field /_live adds
		other  string // the error code of any other path
		status int
		asked  bool // for a client certificate
	}{
		{"quorum", quorum, "Starting", "UNAVAILABLE", 503, false},
		{"restore", restore, "Restore", "RESTORE", 503, true},
	} {
		l.show(phase.p)
		certAsked.Store(0)
		for c, base := range bases {
			if st, body, _ := get(c, base+"/_live"); st != 200 || body["Live"] != true || body[phase.live] == nil || body["Replica"] != "0123456789ab" {
				t.Errorf("%s: %s/_live: %d %v", phase.name, base, st, body)
			}
			for _, p := range []string{"/_ping", "/health"} {
				if st, body, _ := get(c, base+p); st != 503 || body["Healthy"] != false || body["Error"] != phase.p.waiting {
					t.Errorf("%s: %s%s: %d %v", phase.name, base, p, st, body)
				}
			}
			st, body, _ := get(c, base+"/v2/")
			var e contract.APIError
			if b, err := json.Marshal(body); err == nil {
				_ = json.Unmarshal(b, &e)
			}
			if st != phase.status || len(e.Errors) != 1 || e.Errors[0].Code != phase.other {
				t.Errorf("%s: %s/v2/: %d %v, want %d %s", phase.name, base, st, body, phase.status, phase.other)
			}
		}
		if asked := certAsked.Load() > 0; asked != phase.asked {
			t.Errorf("%s: the HTTPS port asked for a client certificate: %v, want %v", phase.name, asked, phase.asked)
		}
	}
	// A backup without a client certificate of the CA is refused.
	req, _ := http.NewRequest(http.MethodPut, "https://"+r.opts.HTTPSAddr+"/api/v0/meta/restore", nil)
	resp, err := httpsClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.TLS == nil {
		t.Errorf("PUT the backup without a client certificate: %d", resp.StatusCode)
	}
	select {
	case <-received:
		t.Error("a refused upload counted as received")
	default:
	}
}
