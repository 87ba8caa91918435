// Package registry is the replica server: the Docker/OCI registry API (CNCF
// Distribution as a library), token auth, the admin API, metadata in
// embedded etcd and the health endpoints.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// Options configure one replica.
type Options struct {
	HTTPAddr string
	DataDir  string
}

// Health is the body of /_ping and /health, in DTR's shape.
type Health struct {
	Error   string `json:"Error"`
	Healthy bool   `json:"Healthy"`
}

// Serve runs the replica until ctx ends. This version serves only the health
// endpoints and reports itself unhealthy: the registry API comes next.
func Serve(ctx context.Context, o Options) error {
	mux := http.NewServeMux()
	ping := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(Health{Error: "registry API not implemented in this version"})
	}
	mux.HandleFunc("/_ping", ping)
	mux.HandleFunc("/health", ping)
	srv := &http.Server{Addr: o.HTTPAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
