package registry

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/pki"
	"github.com/dtr-registry/dtr/registry/internal/httpjson"
)

// interim answers on the replica's ports in the start-up phases that wait
// before the replica itself can serve: for a backup (awaitRestore), and for
// a quorum (startMember on a restart). One listener per port; a phase is
// shown by swapping what it answers, not by opening another server.
//
// In every phase /_live answers 200, so that Swarm does not restart a
// replica that only waits, and /_ping and /health answer 503 with what it
// waits for, so that load balancers keep it out; every other path and the
// TLS configuration are the phase's.
type interim struct {
	servers []*http.Server
	errc    chan error
	phase   atomic.Pointer[interimPhase]
}

// interimPhase is what the interim listener answers in one phase.
type interimPhase struct {
	live    map[string]any // /_live's body, besides "Live": true
	waiting string         // /_ping's and /health's Error
	other   http.Handler   // every other path
	tls     *tls.Config
}

// listenInterim opens the replica's ports (HTTPS and plain HTTP) showing p.
func (r *Replica) listenInterim(p *interimPhase) (*interim, error) {
	s := &interim{errc: make(chan error, 2)}
	s.show(p)
	mux := http.NewServeMux()
	mux.HandleFunc("/_live", func(w http.ResponseWriter, _ *http.Request) {
		body := map[string]any{"Live": true}
		for k, v := range s.phase.Load().live {
			body[k] = v
		}
		httpjson.Write(w, http.StatusOK, body)
	})
	waiting := func(w http.ResponseWriter, _ *http.Request) {
		httpjson.Write(w, http.StatusServiceUnavailable, contract.Health{Healthy: false, Error: s.phase.Load().waiting})
	}
	mux.HandleFunc("/_ping", waiting)
	mux.HandleFunc("/health", waiting)
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		s.phase.Load().other.ServeHTTP(w, req)
	})
	handler := accessLog(r.log, r.metrics, mux)
	tlsCfg := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return s.phase.Load().tls, nil
	}}
	s.servers = []*http.Server{
		{Addr: r.opts.HTTPSAddr, Handler: handler, TLSConfig: tlsCfg, ReadHeaderTimeout: 30 * time.Second},
		{Addr: r.opts.HTTPAddr, Handler: handler, ReadHeaderTimeout: 10 * time.Second},
	}
	for i, srv := range s.servers {
		ln, err := net.Listen("tcp", srv.Addr)
		if err != nil {
			for _, started := range s.servers[:i] {
				started.Close()
			}
			return nil, fmt.Errorf("listening on %s: %w", srv.Addr, err)
		}
		go func(srv *http.Server) {
			if srv.TLSConfig != nil {
				s.errc <- srv.ServeTLS(ln, "", "")
			} else {
				s.errc <- srv.Serve(ln)
			}
		}(srv)
	}
	return s, nil
}

// show makes p what the listener answers from the next request on.
func (s *interim) show(p *interimPhase) { s.phase.Store(p) }

// stop finishes the requests in flight and frees the ports; a nil interim
// (no phase waited) has nothing to stop.
func (s *interim) stop() {
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range s.servers {
		_ = srv.Shutdown(ctx)
	}
}

// interimTLS is the interim listener's TLS configuration: a server
// certificate of the cluster CA for hosts (the replica's own certificates
// are issued once it has started), as the replica offers TLS.
func interimTLS(ca *pki.CA, hosts []string) (*tls.Config, error) {
	kp, err := ca.Issue("server", hosts, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	cert, err := kp.TLSCertificate()
	if err != nil {
		return nil, err
	}
	// NextProtos as net/http sets them on a server's own configuration: a
	// configuration chosen per connection must name HTTP/2 itself.
	return &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: aeadSuites, Certificates: []tls.Certificate{cert},
		NextProtos: []string{"h2", "http/1.1"}}, nil
}

// quorumWait is the reason a restarted replica gives while its metadata
// member waits for the other replicas.
const quorumWait = "starting: the metadata member waits for a quorum of the cluster's replicas; start the stopped replicas' nodes, or run 'dtr emergency-repair' if they are gone for good"

// quorumPhase is what a restarted replica answers while its metadata member
// waits for a quorum: registry and API requests get 503 UNAVAILABLE.
func (r *Replica) quorumPhase(hosts []string) (*interimPhase, error) {
	tlsCfg, err := interimTLS(r.ca, hosts)
	if err != nil {
		return nil, err
	}
	return &interimPhase{
		live:    map[string]any{"Starting": "waiting for a quorum", "Replica": r.opts.ReplicaID},
		waiting: quorumWait,
		other: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			httpjson.Error(w, http.StatusServiceUnavailable, "UNAVAILABLE", quorumWait)
		}),
		tls: tlsCfg,
	}, nil
}

// logQuorumWait says in the log, every 30 s until done is closed, that the
// metadata member still waits for a quorum.
func (r *Replica) logQuorumWait(done <-chan struct{}) {
	began := time.Now()
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			r.log.WithField("waited", time.Since(began).Round(time.Second)).Warn("the metadata member still waits for a quorum of the cluster's replicas")
		}
	}
}
