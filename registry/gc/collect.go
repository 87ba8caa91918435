// Package gc is online garbage collection: it deletes the blobs no
// repository's manifests reference while the registry serves pushes and
// pulls, on storage shared by every replica, one replica at a time. The
// safety argument is docs/gc.md; Guard is the push path's half of it.
package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/internal/drivererr"
	"github.com/dtr-registry/dtr/registry/meta"
)

// Where Distribution keeps repositories and blob data.
const (
	repositoriesRoot = "/docker/registry/v2/repositories"
	blobsRoot        = "/docker/registry/v2/blobs/sha256"
)

// BlobDataPath is where Distribution keeps the data of a sha256 digest.
func BlobDataPath(d string) string {
	hex := strings.TrimPrefix(d, "sha256:")
	if len(hex) < 2 {
		return path.Join(blobsRoot, hex, "data")
	}
	return path.Join(blobsRoot, hex[:2], hex, "data")
}

// DefaultGrace keeps blobs uploaded in the last hour: a client uploads its
// layers before its manifest, and clocks of replicas and storage may differ.
const DefaultGrace = time.Hour

// DefaultWorkers is how many batches a sweep deletes at once: S3 answers a
// delete in tens of milliseconds, so one at a time would take days for a
// million blobs.
const DefaultWorkers = 8

// sweepBatch is how many candidates one tombstone transaction covers: a
// compare per digest plus two, and two puts per digest, under etcd's 128.
const sweepBatch = 50

// minRetention is the least time a deleted tombstone is kept: a push that
// found the blob before its deletion (a HEAD, a mount) and sends its
// manifest within it is refused instead of stored with a hole.
const minRetention = time.Hour

// retentionRenew is how often a sweep grants a fresh lease for deleted
// tombstones, so that each lives about its retention after its deletion.
const retentionRenew = 10 * time.Minute

// Options are one run's parameters.
type Options struct {
	DryRun  bool
	Grace   time.Duration
	Workers int
	// DeleteUntagged marks from tags instead of every stored manifest: a
	// manifest that no tag names, directly or as an index's child or a
	// referrer of what is kept, is removed from its repository.
	DeleteUntagged bool
}

// Progress is a run's report, written into its job record as it goes.
type Progress struct {
	Phase               string `json:"phase"` // marking, listing, sweeping, done
	DryRun              bool   `json:"dryRun,omitempty"`
	Repositories        int64  `json:"repositories"`
	ManifestsMarked     int64  `json:"manifestsMarked"`
	BlobsMarked         int64  `json:"blobsMarked"`
	BlobsScanned        int64  `json:"blobsScanned"`
	Candidates          int64  `json:"candidates"`
	CandidateBytes      int64  `json:"candidateBytes"`
	BlobsSwept          int64  `json:"blobsSwept"`
	BytesFreed          int64  `json:"bytesFreed"`
	BlobsKept           int64  `json:"blobsKept"`
	LinksRemoved        int64  `json:"linksRemoved"`
	RepositoriesRemoved int64  `json:"repositoriesRemoved"`
	UntaggedManifests   int64  `json:"untaggedManifests,omitempty"` // found, with deleteUntagged
	ManifestsRemoved    int64  `json:"manifestsRemoved,omitempty"`  // of them, removed from their repository
	Yields              int64  `json:"yields"`                      // steps taken one at a time, with a rest, while clients were served
	Errors              int64  `json:"errors"`
	StoppedAtDeadline   bool   `json:"stoppedAtDeadline,omitempty"`
}

// Config wires the collector to the replica.
type Config struct {
	Store *meta.Store
	Etcd  Etcd
	// Driver is the registry's storage now (nil while it is not set up).
	Driver func() driver.StorageDriver
	// StorageRepositories lists every repository directory in storage
	// ("namespace/name", nested ones too); it need not look inside the
	// directories of known repositories that hold no other known one.
	StorageRepositories func(ctx context.Context, known map[string]bool) ([]string, error)
	// Busy reports whether the registry is serving clients now; a run
	// then gives way to them (pace.go). Nil: never.
	Busy func() bool
}

// Collector runs garbage collection.
type Collector struct{ cfg Config }

// New returns a collector.
func New(cfg Config) *Collector { return &Collector{cfg: cfg} }

// TestHooks let tests interleave a push with a run at exact points; each
// receives the digest at hand. Nil in production.
var TestHooks struct {
	// BeforeTombstones runs before the tombstone transaction of a batch
	// (the candidates are chosen, nothing is written yet).
	BeforeTombstones atomic.Pointer[func(digests []string)]
	// BeforeDelete runs after a blob's tombstones, before its deletion.
	BeforeDelete atomic.Pointer[func(digest string)]
	// AfterDelete runs after a blob's data was deleted, before its
	// deleting tombstone is removed.
	AfterDelete atomic.Pointer[func(digest string)]
}

func hook[T any](p *atomic.Pointer[func(T)], v T) {
	if fn := p.Load(); fn != nil {
		(*fn)(v)
	}
}

// Run is one garbage collection run.
type Run struct {
	c      *Collector
	drv    driver.StorageDriver
	opts   Options
	lease  *Lease
	logf   func(format string, args ...any)
	t0     time.Time
	cutoff time.Time // T0 - grace
	r0     int64     // the epoch's revision
	prog   counters
	paceMu sync.Mutex // one step at a time while clients are served

	mu        sync.Mutex
	marked    map[string]bool                // canonical digests referenced
	aliases   map[string]string              // a non-sha256 digest -> the canonical digest it names
	linkTime  map[string]time.Time           // canonical digest -> newest layer link naming it
	links     map[string][]string            // canonical digest -> layer link directories naming it
	untagged  map[string][]string            // canonical digest -> revision link directories of it untagged (deleteUntagged)
	refs      map[string]*manifestRefs       // manifests read while keeping tags, for the marking to reuse
	referrers map[string]map[string][]string // deleteUntagged: repository -> subject -> referrers
	parsed    map[string]bool                // manifests read (or queued to be)
}

type counters struct {
	phase                                                      atomic.Pointer[string]
	repos, manifests, blobsMarked, scanned, cands, candBytes   atomic.Int64
	swept, freed, kept, linksRemoved, reposRemoved, errorCount atomic.Int64
	untagged, manifestsRemoved, yields                         atomic.Int64
}

func (c *counters) setPhase(p string) { c.phase.Store(&p) }

// NewRun prepares a run; the caller holds lease for its whole length (a dry
// run too: one run at a time). logf receives the lines of the job's log and
// must be safe for concurrent use.
func (c *Collector) NewRun(lease *Lease, opts Options, logf func(format string, args ...any)) (*Run, error) {
	drv := c.cfg.Driver()
	if drv == nil {
		return nil, errors.New("the registry storage is not configured yet; run garbage collection once the replica is healthy")
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.Grace < 0 {
		opts.Grace = 0
	}
	r := &Run{c: c, drv: drv, opts: opts, lease: lease, logf: logf,
		marked: map[string]bool{}, aliases: map[string]string{}, linkTime: map[string]time.Time{},
		links: map[string][]string{}, untagged: map[string][]string{}, refs: map[string]*manifestRefs{}, parsed: map[string]bool{}}
	r.prog.setPhase("starting")
	return r, nil
}

// Progress is the run's report so far; safe to call at any time.
func (r *Run) Progress() Progress {
	c := &r.prog
	p := Progress{DryRun: r.opts.DryRun, Repositories: c.repos.Load(), ManifestsMarked: c.manifests.Load(), BlobsMarked: c.blobsMarked.Load(),
		BlobsScanned: c.scanned.Load(), Candidates: c.cands.Load(), CandidateBytes: c.candBytes.Load(), BlobsSwept: c.swept.Load(),
		BytesFreed: c.freed.Load(), BlobsKept: c.kept.Load(), LinksRemoved: c.linksRemoved.Load(),
		RepositoriesRemoved: c.reposRemoved.Load(), Errors: c.errorCount.Load(),
		UntaggedManifests: c.untagged.Load(), ManifestsRemoved: c.manifestsRemoved.Load(), Yields: c.yields.Load()}
	if ph := c.phase.Load(); ph != nil {
		p.Phase = *ph
	}
	return p
}

// candidate is a blob the run may delete, or, with linksOnly, a manifest
// whose data another repository still uses: only its untagged revision
// links go.
type candidate struct {
	digest    string
	size      int64
	linksOnly bool
}

// Execute runs: epoch, mark, list, then (unless a dry run) sweep. It stops
// between deletions when ctx ends; what it did until then stands.
func (r *Run) Execute(ctx context.Context) (Progress, error) {
	etcd := r.c.cfg.Etcd
	// Markers of an earlier run are meaningless to this one (only those
	// written after its epoch count); clear them before the epoch.
	if _, err := etcd.Delete(ctx, touchedDir, clientv3.WithPrefix()); err != nil {
		return r.Progress(), fmt.Errorf("clearing old garbage collection markers: %w", err)
	}
	r.t0 = time.Now()
	r.cutoff = r.t0.Add(-r.opts.Grace)
	epoch, _ := json.Marshal(map[string]any{"t0": r.t0.UTC(), "grace": r.opts.Grace.String(), "dryRun": r.opts.DryRun})
	resp, err := etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(lockKey), "=", r.lease.LockRevision())).
		Then(clientv3.OpPut(epochKey, string(epoch), clientv3.WithLease(r.lease.ID()))).
		Commit()
	if err != nil {
		return r.Progress(), fmt.Errorf("writing the garbage collection epoch: %w", err)
	}
	if !resp.Succeeded {
		return r.Progress(), ErrLeaseLost
	}
	r.r0 = resp.Header.Revision
	defer func() {
		// The run is over: its epoch and markers go (the lease's release
		// would take the epoch too).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = etcd.Txn(cctx).Then(clientv3.OpDelete(epochKey), clientv3.OpDelete(touchedDir, clientv3.WithPrefix())).Commit()
	}()
	r.logf("epoch %s (metadata revision %d); grace period %s: blobs written since %s are kept",
		r.t0.UTC().Format(time.RFC3339), r.r0, r.opts.Grace, r.cutoff.UTC().Format(time.RFC3339))

	r.prog.setPhase("marking")
	orphans, err := r.mark(ctx)
	if err != nil {
		return r.Progress(), fmt.Errorf("marking: %w", err)
	}
	r.prog.setPhase("listing")
	cands, err := r.list(ctx)
	if err != nil {
		return r.Progress(), fmt.Errorf("listing blobs: %w", err)
	}
	if r.opts.DryRun {
		for _, o := range orphans {
			r.logf("would remove repository %s: no record and its namespace account is gone", o)
		}
		for _, c := range cands {
			for _, l := range r.untagged[c.digest] {
				r.logf("would remove untagged manifest %s from %s", c.digest, repositoryOf(l))
			}
			if !c.linksOnly {
				r.logf("would delete blob %s (%d bytes)", c.digest, c.size)
			}
		}
		p := r.Progress()
		r.logf("dry run: %d blobs, %d bytes would be freed; %d untagged manifests would be removed; %d blobs scanned, %d marked",
			p.Candidates, p.CandidateBytes, p.UntaggedManifests, p.BlobsScanned, p.BlobsMarked)
		r.prog.setPhase("done")
		return r.Progress(), nil
	}
	r.prog.setPhase("sweeping")
	for _, o := range orphans {
		if err := r.removeRepository(ctx, o); err != nil {
			return r.Progress(), err
		}
	}
	if err := r.sweep(ctx, cands); err != nil {
		return r.Progress(), err
	}
	r.prog.setPhase("done")
	p := r.Progress()
	r.logf("done: %d blobs deleted, %d bytes freed, %d untagged manifests removed, %d kept because a push referenced them during the run",
		p.BlobsSwept, p.BytesFreed, p.ManifestsRemoved, p.BlobsKept)
	return p, nil
}

var hexRE = regexp.MustCompile(`^[a-f0-9]{64}$`)

func isNotFound(err error) bool { return drivererr.NotFound(err) }

// parallel runs fn on every item with n goroutines and returns the first
// error; it stops handing out items once one failed or ctx ended.
func parallel[T any](ctx context.Context, n int, items []T, fn func(T) error) error {
	ch := make(chan T)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	fail := make(chan struct{})
	for range min(n, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				if err := fn(it); err != nil {
					once.Do(func() { first = err; close(fail) })
				}
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case ch <- it:
		case <-fail:
			break feed
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
