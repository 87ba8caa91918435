package registry

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/dtr-registry/dtr/pki"
)

// interim serves the replica's ports in the phases before the replica itself
// can: while it waits for a backup, and while its metadata member waits for
// a quorum. /_live answers, so that Swarm does not restart a replica that
// only waits; /_ping says what it waits for, so load balancers keep it out.
type interim struct {
	servers []*http.Server
	errc    chan error
}

// startInterim listens on the replica's ports with handler (HTTPS with
// tlsCfg, and plain HTTP).
func (r *Replica) startInterim(handler http.Handler, tlsCfg *tls.Config) (*interim, error) {
	s := &interim{
		servers: []*http.Server{
			{Addr: r.opts.HTTPSAddr, Handler: handler, TLSConfig: tlsCfg, ReadHeaderTimeout: 30 * time.Second},
			{Addr: r.opts.HTTPAddr, Handler: handler, ReadHeaderTimeout: 10 * time.Second},
		},
		errc: make(chan error, 2),
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

// stop finishes the requests in flight and frees the ports.
func (s *interim) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range s.servers {
		_ = srv.Shutdown(ctx)
	}
}

// interimCert is a server certificate of the cluster CA for the interim
// ports; the replica's own certificates are issued once it has started.
func interimCert(ca *pki.CA, hosts []string) (tls.Certificate, error) {
	kp, err := ca.Issue("server", hosts, 24*time.Hour)
	if err != nil {
		return tls.Certificate{}, err
	}
	return kp.TLSCertificate()
}

// quorumWait is the reason a restarted replica gives while its metadata
// member waits for the other replicas.
const quorumWait = "starting: the metadata member waits for a quorum of the cluster's replicas; start the stopped replicas' nodes, or run 'dtr emergency-repair' if they are gone for good"

// serveWhileStarting answers on the replica's ports while a restarted
// metadata member waits for a quorum (it cannot serve before then), and
// says in the log, every 30 s, that it still waits. The returned func stops
// both; a replica that cannot open its ports still starts and fails in Serve.
func (r *Replica) serveWhileStarting(ca *pki.CA, hosts []string) func() {
	waiting := func(w http.ResponseWriter, req *http.Request) {
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]any{"Healthy": false, "Error": quorumWait})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_live", func(w http.ResponseWriter, _ *http.Request) {
		writeJSONStatus(w, http.StatusOK, map[string]any{"Live": true, "Starting": "waiting for a quorum", "Replica": r.opts.ReplicaID})
	})
	mux.HandleFunc("/_ping", waiting)
	mux.HandleFunc("/health", waiting)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		registryError(w, http.StatusServiceUnavailable, "UNAVAILABLE", quorumWait)
	})
	var srv *interim
	cert, err := interimCert(ca, hosts)
	if err == nil {
		srv, err = r.startInterim(accessLog(r.log, mux), &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: aeadSuites, Certificates: []tls.Certificate{cert}})
	}
	if err != nil {
		r.log.WithError(err).Warn("not answering on the replica's ports until the metadata member starts")
	}
	done := make(chan struct{})
	go func() {
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
	}()
	return func() {
		close(done)
		if srv != nil {
			srv.stop()
		}
	}
}
