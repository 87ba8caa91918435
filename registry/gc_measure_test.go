package registry_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/gc"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// gcLayout is the measurement's data: repositories of tags images each,
// every image a shared config, a shared base layer and a layer of its own;
// the images deleted (half of them) keep their blobs and layer links, as a
// manifest deletion leaves them.
type gcLayout struct {
	namespaces, perNamespace, tags int
	layerSize                      int
	base                           []byte
}

func (l gcLayout) repo(n, i int) string { return fmt.Sprintf("org%d/app%d", n, i) }

// deleted: tags 3 and 4 of every repository and tag 2 of every other one,
// 2.5 of 5 on average.
func (l gcLayout) deleted(i, k int) bool { return k >= 3 || (k == 2 && i%2 == 0) }

// image is the unique layer and the manifest of a repository's tag k.
func (l gcLayout) image(repo string, k int) (layer, manifest []byte) {
	layer = []byte(strings.Repeat(fmt.Sprintf("%s tag %d ", repo, k), l.layerSize/8))[:l.layerSize]
	manifest = []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		ociManifest, registrytest.Digest(gcConfig), len(gcConfig), registrytest.Digest(l.base), len(l.base), registrytest.Digest(layer), len(layer)))
	return layer, manifest
}

// write lays the data out under root (Distribution's filesystem layout),
// everything when onlyDeleted is false, otherwise only the blobs and layer
// links of the deleted images (garbage again after a run). It returns the
// files written and the bytes of the deleted images' blobs.
func (l gcLayout) write(t testing.TB, root string, onlyDeleted bool) (files int, garbageBytes int64) {
	t.Helper()
	v2 := filepath.Join(root, "docker/registry/v2")
	made := map[string]bool{}
	put := func(p string, b []byte) {
		if dir := filepath.Dir(p); !made[dir] {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			made[dir] = true
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files++
	}
	blob := func(b []byte) string {
		d := registrytest.Digest(b)
		hexd := strings.TrimPrefix(d, "sha256:")
		put(filepath.Join(v2, "blobs/sha256", hexd[:2], hexd, "data"), b)
		return d
	}
	link := func(dir, d string) {
		put(filepath.Join(dir, "sha256", strings.TrimPrefix(d, "sha256:"), "link"), []byte(d))
	}
	var shared []string
	if !onlyDeleted {
		shared = []string{blob(gcConfig), blob(l.base)}
	}
	for n := range l.namespaces {
		for i := range l.perNamespace {
			repo := l.repo(n, i)
			dir := filepath.Join(v2, "repositories", repo)
			for _, d := range shared {
				link(filepath.Join(dir, "_layers"), d)
			}
			for k := range l.tags {
				del := l.deleted(i, k)
				if onlyDeleted && !del {
					continue
				}
				layer, m := l.image(repo, k)
				ld, md := blob(layer), blob(m)
				link(filepath.Join(dir, "_layers"), ld)
				if del {
					garbageBytes += int64(len(layer) + len(m))
					continue
				}
				tag := filepath.Join(dir, "_manifests/tags", "v"+strconv.Itoa(k))
				link(filepath.Join(dir, "_manifests/revisions"), md)
				put(filepath.Join(tag, "current/link"), []byte(md))
				link(filepath.Join(tag, "index"), md)
			}
		}
	}
	return files, garbageBytes
}

// latencies are one client loop's push and pull times.
type latencies struct {
	mu         sync.Mutex
	push, pull []time.Duration
	errors     []string
}

func (l *latencies) p(which []time.Duration, q float64) time.Duration {
	if len(which) == 0 {
		return 0
	}
	s := slices.Clone(which)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*q))]
}

// clientLoop pushes a small image (config and a 16 KiB layer of its own)
// and pulls it back, with clients goroutines, until stop is closed.
func clientLoop(t *testing.T, r *registrytest.Replica, tok string, clients int, stop <-chan struct{}) *latencies {
	lat := &latencies{}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			cl := &stressClient{t: t, r: r, tok: tok}
			repo := fmt.Sprintf("admin/latency%d", c)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				layer := randomBytes(16 << 10)
				start := time.Now()
				img, refused, err := cl.push(repo, "t"+strconv.Itoa(i%8), "", [][]byte{layer})
				pushed := time.Since(start)
				if err == nil && refused == 0 {
					start = time.Now()
					err = cl.pull(repo, "t"+strconv.Itoa(i%8), img)
				}
				pulled := time.Since(start)
				lat.mu.Lock()
				switch {
				case err != nil:
					lat.errors = append(lat.errors, err.Error())
				case refused > 0:
					lat.errors = append(lat.errors, fmt.Sprintf("push %s refused %d times", repo, refused))
				default:
					lat.push = append(lat.push, pushed)
					lat.pull = append(lat.pull, pulled)
				}
				lat.mu.Unlock()
			}
		})
	}
	t.Cleanup(wg.Wait)
	return lat
}

// gcBenchRepos is the number of repositories the measurement lays out:
// DTR_GC_BENCH_REPOS, default 10,000 (10 namespaces).
func gcBenchRepos(t *testing.T) int {
	n := 10000
	if s := os.Getenv("DTR_GC_BENCH_REPOS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 10 || v%10 != 0 {
			t.Fatalf("DTR_GC_BENCH_REPOS=%q: give a multiple of 10", s)
		}
		n = v
	}
	return n
}

// TestGCMeasure measures garbage collection on the filesystem: 10,000
// repositories × 5 tags with half the tags' images deleted (docs/gc.md,
// "Numbers"): mark, list and sweep times and bytes freed; push and pull
// p99 while idle and during a run; and Distribution's offline
// MarkAndSweep (what `registry garbage-collect` runs) on the same data
// laid out apart. Set DTR_GC_BENCH=1 to run it.
func TestGCMeasure(t *testing.T) {
	if os.Getenv("DTR_GC_BENCH") == "" {
		t.Skip("the garbage collection measurement: DTR_GC_BENCH=1 runs it (docs/gc.md)")
	}
	total := gcBenchRepos(t)
	l := gcLayout{namespaces: 10, perNamespace: total / 10, tags: 5, layerSize: 4096, base: randomBytes(64 << 10)}
	ctx := context.Background()
	r := registrytest.StartNew(t)
	root := filepath.Join(r.Opts.DataDir, "registry")
	for n := range l.namespaces {
		if st := r.API(t, admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": fmt.Sprintf("org%d", n), "isOrg": true}, nil); st != http.StatusCreated {
			t.Fatalf("creating org%d: %d", n, st)
		}
	}
	start := time.Now()
	files, garbageBytes := l.write(t, root, false)
	t.Logf("laid out %d repositories, %d files, in %v", total, files, time.Since(start).Round(time.Millisecond))
	if res, err := r.Reconcile(ctx); err != nil || len(res.Created) != total {
		t.Fatalf("recording the repositories: %d created, %v", len(res.Created), err)
	}
	deletedImages := 0
	for i := range l.perNamespace {
		for k := range l.tags {
			if l.deleted(i, k) {
				deletedImages += l.namespaces
			}
		}
	}

	var lines atomic.Int64
	logf := func(string, ...any) { lines.Add(1) }
	run := func(what string, grace time.Duration) (gc.Progress, registry.GCPhases) {
		t.Helper()
		p, ph, err := r.RunGC(ctx, gc.Options{Grace: grace, Workers: gc.DefaultWorkers}, logf)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if p.BlobsSwept != int64(2*deletedImages) || p.BytesFreed != garbageBytes || p.Errors != 0 {
			t.Fatalf("%s: %+v; want the %d blobs (%d bytes) of the %d deleted images", what, p, 2*deletedImages, garbageBytes, deletedImages)
		}
		return p, ph
	}
	phase := func(ph registry.GCPhases, from, to string) time.Duration {
		if ph[from].IsZero() || ph[to].IsZero() {
			return 0
		}
		return ph[to].Sub(ph[from]).Round(time.Millisecond)
	}

	// dtr alone on the data.
	p, ph := run("the run alone", 0)
	mark, list, sweep := phase(ph, "marking", "listing"), phase(ph, "listing", "sweeping"), phase(ph, "sweeping", "end")
	dtrTotal := phase(ph, "marking", "end")

	// Push and pull while idle, then while a run collects the same garbage
	// laid out again.
	tok := r.Token(t, admin, adminPW, "repository:admin/latency0:push,pull", "repository:admin/latency1:push,pull")
	const clients = 2
	stop := make(chan struct{})
	idle := clientLoop(t, r, tok, clients, stop)
	time.Sleep(15 * time.Second)
	close(stop)
	time.Sleep(500 * time.Millisecond)
	l.write(t, root, true)
	stop = make(chan struct{})
	during := clientLoop(t, r, tok, clients, stop)
	// The garbage is older than the grace period once the run starts; the
	// clients' uploads, waiting for their manifests, are not.
	time.Sleep(3 * time.Second)
	p2, ph2 := run("the run during pushes and pulls", 2*time.Second)
	close(stop)
	time.Sleep(500 * time.Millisecond)
	for _, lat := range []*latencies{idle, during} {
		lat.mu.Lock()
		if len(lat.errors) > 0 {
			t.Errorf("%d client errors, the first: %s", len(lat.errors), lat.errors[0])
		}
		lat.mu.Unlock()
	}

	// Distribution's offline collector on the same data, laid out apart.
	distRoot := t.TempDir()
	l.write(t, distRoot, false)
	before := storedBlobs(t, distRoot)
	drv := filesystem.New(filesystem.DriverParameters{RootDirectory: distRoot, MaxThreads: 100})
	reg, err := storage.NewRegistry(ctx, drv)
	if err != nil {
		t.Fatal(err)
	}
	std := logrus.StandardLogger()
	out := std.Out
	std.SetOutput(io.Discard) // its vacuum logs each deletion at info
	dstart := time.Now()
	err = storage.MarkAndSweep(ctx, drv, reg, storage.GCOpts{Quiet: true})
	distTotal := time.Since(dstart).Round(time.Millisecond)
	std.SetOutput(out)
	if err != nil {
		t.Fatalf("Distribution's MarkAndSweep: %v", err)
	}
	after := storedBlobs(t, distRoot)
	var distFreed int64
	for d, size := range before {
		if _, ok := after[d]; !ok {
			distFreed += size
		}
	}
	if distFreed != garbageBytes {
		t.Errorf("Distribution freed %d bytes, dtr %d", distFreed, garbageBytes)
	}

	idle.mu.Lock()
	during.mu.Lock()
	defer idle.mu.Unlock()
	defer during.mu.Unlock()
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
	}
	ratio := func(a, b time.Duration) string { return strconv.FormatFloat(float64(a)/float64(b), 'f', 2, 64) }
	var b strings.Builder
	fmt.Fprintf(&b, "%d repositories × %d tags, %d images deleted (%d blobs, %.1f MB); %d blobs in storage\n\n", total, l.tags, deletedImages, 2*deletedImages, float64(garbageBytes)/1e6, len(before))
	b.WriteString("| | mark | list | sweep | total | blobs deleted | bytes freed |\n|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| dtr online, idle registry | %v | %v | %v | %v | %d | %d |\n", mark, list, sweep, dtrTotal, p.BlobsSwept, p.BytesFreed)
	fmt.Fprintf(&b, "| dtr online, during pushes and pulls | %v | %v | %v | %v | %d | %d |\n",
		phase(ph2, "marking", "listing"), phase(ph2, "listing", "sweeping"), phase(ph2, "sweeping", "end"), phase(ph2, "marking", "end"), p2.BlobsSwept, p2.BytesFreed)
	fmt.Fprintf(&b, "| Distribution MarkAndSweep, offline | | | | %v | %d | %d |\n\n", distTotal, len(before)-len(after), distFreed)
	fmt.Fprintf(&b, "time ratio Distribution / dtr: %s\n\n", ratio(distTotal, dtrTotal))
	fmt.Fprintf(&b, "| %d clients | pushes | push p50 | push p99 | pulls | pull p50 | pull p99 |\n|---|---|---|---|---|---|---|\n", clients)
	for _, row := range []struct {
		name string
		lat  *latencies
	}{{"idle", idle}, {"during the run", during}} {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %d | %s | %s |\n", row.name, len(row.lat.push), ms(row.lat.p(row.lat.push, .5)), ms(row.lat.p(row.lat.push, .99)),
			len(row.lat.pull), ms(row.lat.p(row.lat.pull, .5)), ms(row.lat.p(row.lat.pull, .99)))
	}
	fmt.Fprintf(&b, "\np99 during / idle: push %s, pull %s\n", ratio(during.p(during.push, .99), idle.p(idle.push, .99)), ratio(during.p(during.pull, .99), idle.p(idle.pull, .99)))
	fmt.Fprintf(&b, "ratio gc_p99_push_during_vs_idle %s\nratio gc_p99_pull_during_vs_idle %s\nratio gc_distribution_time_vs_dtr %s\n",
		ratio(during.p(during.push, .99), idle.p(idle.push, .99)), ratio(during.p(during.pull, .99), idle.p(idle.pull, .99)), ratio(distTotal, dtrTotal))
	t.Logf("garbage collection, %d log lines:\n%s", lines.Load(), b.String())
	if out := os.Getenv("DTR_BENCH_GC"); out != "" {
		report := "## Online garbage collection\n\n`registry/gc_measure_test.go`, on the filesystem (docs/gc.md explains the layout).\n\n" + b.String()
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
