package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/dtr-registry/dtr/contract"
)

// Health is the body of /_ping and /health (WriteError: Error says it
// too, and /_ping?for=push answers 503).
type Health = contract.Health

// writesRefusedError is a check's failure that stops pushes but not pulls.
// /_ping stays 200 for it: with shared storage (which every multi-replica
// cluster has) a full storage is full on every replica at once, so a load
// balancer that took them out would gain no push and lose every pull.
type writesRefusedError struct{ msg string }

func (e *writesRefusedError) Error() string { return e.msg }

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
	onResult func(context.Context, Health)

	mu      sync.RWMutex
	last    Health
	at      time.Time
	stopped string // set by stop: the answer from then on
}

// stop makes /_ping answer 503 with why from now on, whatever the checks
// find: the replica is about to stop serving (an emergency repair in place).
func (h *healthChecker) stop(why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = why
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
	writesOnly := make([]bool, len(h.checks))
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
					var wr *writesRefusedError
					writesOnly[i] = errors.As(err, &wr)
				}
			case <-cctx.Done():
				errs[i] = c.name + ": no answer within " + h.timeout.String()
			}
		}()
	}
	wg.Wait()
	var all, bad, writes []string
	for i, e := range errs {
		switch {
		case e == "":
		case writesOnly[i]:
			writes = append(writes, e)
		default:
			bad = append(bad, e)
		}
		if e != "" {
			all = append(all, e)
		}
	}
	// /_ping answers anyone: no paths of the node in it (the installer
	// names the host directory itself when it reports the problem).
	oneLine := func(s []string) string {
		return strings.ReplaceAll(string(scrubPaths([]byte(strings.Join(s, "; ")))), "\n", " ")
	}
	res := Health{Healthy: len(bad) == 0, Error: oneLine(all), WriteError: oneLine(writes)}
	if h.onResult != nil {
		h.onResult(ctx, res)
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
	if h.stopped != "" {
		return Health{Error: h.stopped}
	}
	if time.Since(h.at) > 3*h.interval+h.timeout && !h.at.IsZero() {
		return Health{Error: "health checks stalled since " + h.at.UTC().Format(time.RFC3339)}
	}
	return h.last
}

// ServeHTTP answers /_ping and /health: 200 when the replica serves (pulls
// included), 503 with what is wrong. With ?for=push it also answers 503 when
// pushes are refused (WriteError), for a load balancer that checks its
// push (PUT, POST, PATCH, DELETE) pool separately from its pull pool.
func (h *healthChecker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	res := h.Current()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if res.Healthy && (res.WriteError == "" || r.URL.Query().Get("for") != "push") {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	if r.Method != http.MethodHead {
		_ = json.NewEncoder(w).Encode(res)
	}
}

// storageWriteEvery is how often the storage probe writes; the rounds between
// (every 2 s) only Stat the root. Measured by BenchmarkStorageProbe on the
// development machine's local disk: a write and delete takes ~4.4 ms (the
// filesystem driver syncs), a Stat ~6 µs. On S3 a write is two billed
// requests: every 2 s that would be ~86,000 a day per replica for no gain.
// A storage that turns read-only is caught within 30 s, and a failed write
// is retried every round, so a fix shows at once.
const storageWriteEvery = 30 * time.Second

// storageProbe checks that the replica can write to its storage: it writes
// and deletes a small object under /dtr-health/ (its own name, so replicas
// sharing the storage never collide), at once, then every storageWriteEvery,
// and on every round after a failed write; the rounds between only Stat the
// root, where "not found" (an empty bucket or directory) counts as healthy.
// A replica that can read but not write would answer pulls and fail every
// push, and a load balancer would keep sending it traffic.
//
// A push that met a full storage (seen by the driver middleware in
// storagefull.go) makes the next round write, so /_ping names the full
// storage within one round rather than storageWriteEvery; after a failed
// write every round writes, so freed space shows within one round too.
func storageProbe(d func() driver.StorageDriver) func(ctx context.Context) error {
	var id [8]byte
	_, _ = rand.Read(id[:])
	path := "/dtr-health/" + hex.EncodeToString(id[:])
	var (
		mu      sync.Mutex
		wrote   time.Time // the last write that succeeded, to this driver
		wroteTo driver.StorageDriver
	)
	return func(ctx context.Context) error {
		// A probe that outlived its round's timeout still holds mu; this
		// round then waits and is reported as slow, which it is.
		mu.Lock()
		defer mu.Unlock()
		drv := d()
		if drv == nil {
			return errors.New("storage not configured")
		}
		pushFull := false
		if fd, ok := drv.(*faultDriver); ok {
			pushFull = fd.state.fullSince(wrote)
		}
		if pushFull || !sameDriver(drv, wroteTo) || time.Since(wrote) >= storageWriteEvery {
			if err := writeProbe(ctx, drv, path); err != nil {
				wroteTo = nil
				return err
			}
			wrote, wroteTo = time.Now(), drv
			return nil
		}
		_, err := drv.Stat(ctx, "/")
		var nf driver.PathNotFoundError
		if err != nil && !errors.As(err, &nf) {
			return errors.New("storage unreachable: " + err.Error())
		}
		return nil
	}
}

// sameDriver compares drivers by identity; the settings watcher replaces the
// driver when the storage changes, and the new one must be written to at once.
func sameDriver(a, b driver.StorageDriver) bool {
	if a == nil || b == nil {
		return false
	}
	return reflect.ValueOf(a).Kind() == reflect.Pointer && reflect.TypeOf(a) == reflect.TypeOf(b) &&
		reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer()
}

// writeProbe writes and removes the probe object; its error names the storage
// and what the operator must change.
func writeProbe(ctx context.Context, drv driver.StorageDriver, path string) error {
	err := drv.PutContent(ctx, path, []byte(time.Now().UTC().Format(time.RFC3339)))
	if err == nil {
		var nf driver.PathNotFoundError
		if err = drv.Delete(ctx, path); errors.As(err, &nf) {
			err = nil
		}
	}
	if err == nil || ctx.Err() != nil {
		return err
	}
	fault, errno := classifyStorageError(err)
	if fault == faultFull {
		// Not a permission problem: no chown, and not unhealthy for pulls.
		what := "full (no space left on the device)"
		if errno == syscall.EDQUOT {
			what = "over its disk quota"
		}
		return &writesRefusedError{msg: "the registry storage is " + what +
			": pushes are refused with 507, pulls are served; free space on it or grow its volume or quota, and pushes resume at once, with no restart"}
	}
	fix := "give the replica write access to the bucket or share (its credentials or policy)"
	if drv.Name() == "filesystem" {
		// The installer names the host path; the replica only sees its mount.
		fix = "on the replica's node, chown -R 10001:10001 the host directory or volume mounted as its storage (or make it writable for uid 10001)"
	}
	switch errno {
	case syscall.EROFS:
		fix = "its volume is mounted read-only: mount it read-write"
	case syscall.EIO:
		fix = "its disk or share reports I/O errors: check it on the replica's node"
	}
	// Distribution's drivers prefix their errors with their name.
	return fmt.Errorf("cannot write to the registry storage (%v): the replica runs as uid 10001; %s", err, fix)
}
