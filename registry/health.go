package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver"
)

// Health is the body of /_ping and /health, in DTR's shape.
type Health struct {
	Error   string `json:"Error"`
	Healthy bool   `json:"Healthy"`
}

// check is one component's probe; it must return within its context.
type check struct {
	name  string
	probe func(ctx context.Context) error
}

// healthChecker probes the replica's components in the background so that
// /_ping answers at once from the last result and never blocks.
type healthChecker struct {
	checks   []check
	interval time.Duration
	timeout  time.Duration

	// onResult sees each result before /_ping serves it, so that a replica
	// answering healthy has already told the cluster so.
	onResult func(Health)

	mu   sync.RWMutex
	last Health
	at   time.Time
}

func newHealthChecker(interval, timeout time.Duration, checks ...check) *healthChecker {
	return &healthChecker{checks: checks, interval: interval, timeout: timeout,
		last: Health{Error: "starting", Healthy: false}}
}

// run probes until ctx ends; the first round runs at once.
func (h *healthChecker) run(ctx context.Context) {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		h.probe(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe runs every check concurrently, each bounded by the timeout.
func (h *healthChecker) probe(ctx context.Context) Health {
	errs := make([]string, len(h.checks))
	var wg sync.WaitGroup
	for i, c := range h.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, h.timeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c.probe(cctx) }()
			select {
			case err := <-done:
				if err != nil {
					errs[i] = c.name + ": " + err.Error()
				}
			case <-cctx.Done():
				errs[i] = c.name + ": no answer within " + h.timeout.String()
			}
		}()
	}
	wg.Wait()
	var bad []string
	for _, e := range errs {
		if e != "" {
			bad = append(bad, e)
		}
	}
	res := Health{Healthy: len(bad) == 0, Error: strings.ReplaceAll(strings.Join(bad, "; "), "\n", " ")}
	if h.onResult != nil {
		h.onResult(res)
	}
	h.mu.Lock()
	h.last, h.at = res, time.Now()
	h.mu.Unlock()
	return res
}

// Current is the last result.
func (h *healthChecker) Current() Health {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if time.Since(h.at) > 3*h.interval+h.timeout && !h.at.IsZero() {
		return Health{Error: "health checks stalled since " + h.at.UTC().Format(time.RFC3339)}
	}
	return h.last
}

// ServeHTTP answers /_ping and /health: 200 when healthy, 503 with what is wrong.
func (h *healthChecker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	res := h.Current()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if res.Healthy {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	if r.Method != http.MethodHead {
		_ = json.NewEncoder(w).Encode(res)
	}
}

// storageProbe checks that the storage answers: Stat("/") where "not found"
// (an empty bucket or directory) counts as healthy.
func storageProbe(d func() driver.StorageDriver) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		drv := d()
		if drv == nil {
			return errors.New("storage not configured")
		}
		_, err := drv.Stat(ctx, "/")
		var nf driver.PathNotFoundError
		if err != nil && !errors.As(err, &nf) {
			return errors.New("storage unreachable: " + err.Error())
		}
		return nil
	}
}
