package registry_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

var benchReport = flag.String("bench-report", "", "write the side-by-side benchmark table to this markdown file (make bench)")

// target is a registry under benchmark: bare Distribution or a dtr replica.
type target struct {
	name   string
	url    string
	client *http.Client
	token  func(repo string) string // "" for no auth
}

func (tg *target) do(method, path, repo string, body []byte, hdr map[string]string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, tg.url+path, rd)
	if err != nil {
		return nil, err
	}
	if tok := tg.token(repo); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return tg.client.Do(req)
}

// startUpload starts a blob upload in repo and returns its location path.
func (tg *target) startUpload(repo string) (string, error) {
	resp, err := tg.do("POST", "/v2/"+repo+"/blobs/uploads/", repo, nil, nil)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		return "", fmt.Errorf("POST upload: %s", resp.Status)
	}
	loc := resp.Header.Get("Location")
	return loc[strings.Index(loc, "/v2/"):], nil
}

// finishUpload PUTs the digest of the blob uploaded at loc, with the last
// (or, for a monolithic upload, the only) part of its body.
func (tg *target) finishUpload(repo, loc, d string, body []byte) error {
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	var hdr map[string]string
	if body != nil {
		hdr = map[string]string{"Content-Type": "application/octet-stream"}
	}
	resp, err := tg.do("PUT", loc+sep+"digest="+d, repo, body, hdr)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		return fmt.Errorf("PUT upload: %s", resp.Status)
	}
	return nil
}

func (tg *target) pushBlob(repo string, b []byte) (string, error) {
	loc, err := tg.startUpload(repo)
	if err != nil {
		return "", err
	}
	d := registrytest.Digest(b)
	return d, tg.finishUpload(repo, loc, d, b)
}

// pushChunked uploads b in PATCH chunks of chunk bytes, then PUTs the digest.
func (tg *target) pushChunked(repo string, b []byte, chunk int) (string, error) {
	loc, err := tg.startUpload(repo)
	if err != nil {
		return "", err
	}
	for off := 0; off < len(b); off += chunk {
		end := min(off+chunk, len(b))
		resp, err := tg.do("PATCH", loc, repo, b[off:end], map[string]string{"Content-Type": "application/octet-stream",
			"Content-Range": fmt.Sprintf("%d-%d", off, end-1)})
		if err != nil {
			return "", err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			return "", fmt.Errorf("PATCH upload: %s", resp.Status)
		}
		loc = resp.Header.Get("Location")
		loc = loc[strings.Index(loc, "/v2/"):]
	}
	d := registrytest.Digest(b)
	return d, tg.finishUpload(repo, loc, d, nil)
}

func (tg *target) get(path, repo string, hdr map[string]string) (int64, error) {
	resp, err := tg.do("GET", path, repo, nil, hdr)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return n, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return n, err
}

// bareDistribution serves a Distribution App with no auth on the same kind
// of storage (filesystem) and TLS, for comparison.
func bareDistribution(t testing.TB) *target {
	cfg := &configuration.Configuration{}
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true
	cfg.Catalog.MaxEntries = 1000
	cfg.Tags.MaxTags = 1000
	cfg.HTTP.Secret = "bench"
	cfg.Storage = configuration.Storage{
		"filesystem": configuration.Parameters{"rootdirectory": t.TempDir()},
		"delete":     configuration.Parameters{"enabled": true},
		"redirect":   configuration.Parameters{"disable": true},
	}
	logrus.SetLevel(logrus.WarnLevel) // as dtr runs it: no per-request info lines
	app := handlers.NewApp(context.Background(), cfg)
	srv := httptest.NewUnstartedServer(app)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &target{name: "bare", url: srv.URL, client: &http.Client{Transport: tr}, token: func(string) string { return "" }}
}

// deployedReplica starts a replica that logs as a deployed one does: at info,
// one access-log line per request, into a file (the engine's log driver
// reads a pipe; a file costs the same write per line).
func deployedReplica(t testing.TB) *registrytest.Replica {
	o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
	f, err := os.Create(filepath.Join(t.TempDir(), "replica.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	o.Log.SetOutput(f)
	o.Log.SetLevel(logrus.InfoLevel)
	o.LogLevel = "info"
	return registrytest.Start(t, o)
}

// dtrTarget is a replica with auth and metadata; the client caches one token
// per repository, as docker does for its lifetime.
func dtrTarget(t *testing.T) *target {
	r := deployedReplica(t)
	var mu sync.Mutex
	tokens := map[string]string{}
	tr := r.Client.Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = 64
	return &target{name: "dtr", url: r.URL, client: r.Client, token: func(repo string) string {
		mu.Lock()
		defer mu.Unlock()
		if tok, ok := tokens[repo]; ok {
			return tok
		}
		tok := r.Token(t, admin, adminPW, "repository:"+repo+":push,pull")
		tokens[repo] = tok
		return tok
	}}
}

type measurement struct {
	mbps    []float64 // per run
	reqs    []float64
	latency []time.Duration // every request of every run
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func pct(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

// run does ops operations with conc workers, runs times, each op moving size bytes.
func run(t *testing.T, runs, ops, conc int, size int64, op func(i int) error) measurement {
	var m measurement
	for r := 0; r < runs; r++ {
		var mu sync.Mutex
		var wg sync.WaitGroup
		next := make(chan int)
		start := time.Now()
		for w := 0; w < conc; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					s := time.Now()
					if err := op(r*ops + i); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					m.latency = append(m.latency, time.Since(s))
					mu.Unlock()
				}
			}()
		}
		for i := 0; i < ops; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		el := time.Since(start).Seconds()
		m.mbps = append(m.mbps, float64(size)*float64(ops)/el/1e6)
		m.reqs = append(m.reqs, float64(ops)/el)
	}
	return m
}

// sideBySide measures n targets runs times each, one run at a time, taking
// turns and swapping who goes first every run: a slow moment of this shared
// machine, or the disk writing back what the previous target wrote, must not
// land on one target only.
func sideBySide(runs, n int, one func(i, r int) measurement) []measurement {
	ms := make([]measurement, n)
	for r := 0; r < runs; r++ {
		for j := 0; j < n; j++ {
			i := j
			if r%2 == 1 {
				i = n - 1 - j
			}
			m := one(i, r)
			ms[i].mbps = append(ms[i].mbps, m.mbps...)
			ms[i].reqs = append(ms[i].reqs, m.reqs...)
			ms[i].latency = append(ms[i].latency, m.latency...)
		}
	}
	return ms
}

// limits measures the disk's write throughput (with fsync, where the
// storage lives), one core's sha256 rate, TLS over loopback, and the whole
// pipeline a push needs (pipelineLimit), runs times each.
func limits(t *testing.T, runs int) (disk, sha, tlsRate, pipeline []float64) {
	buf := randomBytes(256 << 20)
	for r := 0; r < runs; r++ {
		f, err := os.CreateTemp(t.TempDir(), "disk")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		disk = append(disk, float64(len(buf))/time.Since(start).Seconds()/1e6)
		f.Close()
		os.Remove(f.Name())
		start = time.Now()
		h := sha256.Sum256(buf)
		_ = h
		sha = append(sha, float64(len(buf))/time.Since(start).Seconds()/1e6)
		tlsRate = append(tlsRate, pipelineLimit(t, buf, t.TempDir(), true))
		pipeline = append(pipeline, pipelineLimit(t, buf, t.TempDir(), false))
	}
	return disk, sha, tlsRate, pipeline
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// TestBenchReport measures bare Distribution and a dtr replica side by side
// in one process and writes the table (make bench). No assertion on times.
func TestBenchReport(t *testing.T) {
	if *benchReport == "" {
		t.Skip("benchmark report: run make bench")
	}
	bare := bareDistribution(t)
	dtr := dtrTarget(t)
	type row struct {
		name        string
		bare, dtr   measurement
		bytesPerOp  int64
		latencyOnly bool
	}
	var rows []row
	const runs = 5
	for _, c := range []struct {
		name      string
		size, ops int
		conc      int
	}{
		{"push 1 MiB blob", 1 << 20, 40, 1},
		{"push 1 MiB blob", 1 << 20, 80, 8},
		{"push 1 MiB blob", 1 << 20, 160, 32},
		{"push 1 MiB blob chunked (4 × 256 KiB)", 1 << 20, 40, 8},
		{"pull 1 MiB blob", 1 << 20, 100, 1},
		{"pull 1 MiB blob", 1 << 20, 200, 8},
		{"pull 1 MiB blob", 1 << 20, 320, 32},
		{"push 64 MiB blob", 64 << 20, 3, 1},
		{"push 64 MiB blob", 64 << 20, 8, 8},
		{"push 64 MiB blob chunked (8 × 8 MiB)", 64 << 20, 3, 1},
		{"pull 64 MiB blob", 64 << 20, 4, 1},
		{"pull 64 MiB blob", 64 << 20, 16, 8},
		{"pull 64 MiB blob", 64 << 20, 32, 32},
	} {
		var ops [2]func(k int) error
		for i, tg := range []*target{bare, dtr} {
			repo := fmt.Sprintf("admin/bench-%d-%d", c.size, c.conc)
			payload := randomBytes(c.size)
			chunked := strings.Contains(c.name, "chunked")
			if strings.HasPrefix(c.name, "pull") {
				d, err := tg.pushBlob(repo, payload)
				if err != nil {
					t.Fatal(err)
				}
				ops[i] = func(int) error {
					_, err := tg.get("/v2/"+repo+"/blobs/"+d, repo, nil)
					return err
				}
			} else {
				ops[i] = func(k int) error {
					b := append([]byte(nil), payload...)
					copy(b, fmt.Sprintf("%08d", k)) // a new blob each time
					var err error
					if chunked {
						_, err = tg.pushChunked(repo, b, c.size/map[bool]int{true: 4, false: 8}[c.size == 1<<20])
					} else {
						_, err = tg.pushBlob(repo, b)
					}
					return err
				}
			}
		}
		ms := sideBySide(runs, 2, func(i, r int) measurement {
			return run(t, 1, c.ops, c.conc, int64(c.size), func(k int) error { return ops[i](r*c.ops + k) })
		})
		rows = append(rows, row{name: fmt.Sprintf("%s, %d client(s)", c.name, c.conc), bare: ms[0], dtr: ms[1], bytesPerOp: int64(c.size)})
	}
	for _, mc := range []struct {
		method string
		conc   int
	}{{"GET", 1}, {"GET", 8}, {"GET", 32}, {"HEAD", 1}, {"HEAD", 8}, {"HEAD", 32}} {
		ms := sideBySide(runs, 2, func(i, _ int) measurement {
			return manifestReads(t, []*target{bare, dtr}[i], mc.method, mc.conc, 1, 0)
		})
		rows = append(rows, row{name: fmt.Sprintf("manifest %s, %d client(s)", mc.method, mc.conc), bare: ms[0], dtr: ms[1], latencyOnly: true})
	}

	gap := manifestGap(t, bare, dtr, runs)
	diskW, sha, tlsRate, pipeline := limits(t, runs)

	var b strings.Builder
	b.WriteString("## Data path\n\nBoth targets run in one process over TLS on loopback with filesystem storage: **bare** is a Distribution v3.1.2 App without auth; **dtr** is a replica with token auth (one cached token per repository, as docker caches), metadata in etcd and its OCI wrapper. Each row is 5 runs: the median, and the range in brackets; the two targets take turns run by run, swapping who goes first, so that the disk writing back one target's data, or a slow moment of the machine, does not land on the other only. No assertion is made on absolute times; compare the ratio.\n\n")
	b.WriteString("| operation | bare MB/s | dtr MB/s | bare req/s | dtr req/s | bare p50 / p99 | dtr p50 / p99 | dtr/bare |\n|---|---|---|---|---|---|---|---|\n")
	f := func(v []float64) string {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return fmt.Sprintf("%.1f [%.1f–%.1f]", median(v), s[0], s[len(s)-1])
	}
	for _, r := range rows {
		ratio := median(r.dtr.reqs) / median(r.bare.reqs)
		mb := func(m measurement) string {
			if r.latencyOnly {
				return "–"
			}
			return f(m.mbps)
		}
		lat := func(m measurement) string {
			return fmt.Sprintf("%v / %v", pct(m.latency, 0.5).Round(10*time.Microsecond), pct(m.latency, 0.99).Round(10*time.Microsecond))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %.2f× throughput, p99 %.2f× |\n", r.name, mb(r.bare), mb(r.dtr), f(r.bare.reqs), f(r.dtr.reqs), lat(r.bare), lat(r.dtr),
			ratio, float64(pct(r.dtr.latency, 0.99))/float64(pct(r.bare.latency, 0.99)))
	}
	rss := func() string {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			return "?"
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmHWM") {
				return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
			}
		}
		return "?"
	}
	fmt.Fprintf(&b, "\nPeak RSS of the benchmark process (both registries and the clients): %s.\n", rss())
	b.WriteString("\n## The limit\n\nWhat this machine allows, measured in the same run: a blob push crosses TLS (the client encrypts, the registry decrypts, on the same cores), hashes every byte (sha256) and writes it to disk, so neither registry can push faster than the whole pipeline, measured here without any registry: 256 MiB over TLS 1.3 on loopback in 64 KiB writes, the receiver hashing it and writing it to a file in the storage's filesystem, fsynced at the end.\n\n")
	b.WriteString("| limit | MB/s |\n|---|---|\n")
	fmt.Fprintf(&b, "| disk write, 256 MiB file + fsync, in the storage's filesystem | %s |\n", f(diskW))
	fmt.Fprintf(&b, "| sha256, 256 MiB in memory, one core | %s |\n", f(sha))
	fmt.Fprintf(&b, "| TLS 1.3 over loopback (encrypt + decrypt), receiver discards | %s |\n", f(tlsRate))
	fmt.Fprintf(&b, "| **the whole pipeline**: TLS over loopback, receiver hashes and writes the file (+ fsync) | %s |\n", f(pipeline))
	for _, r := range rows {
		if strings.HasPrefix(r.name, "push 64 MiB blob, 1 client") {
			fmt.Fprintf(&b, "| dtr push of a 64 MiB blob, 1 client (from the table above): %.0f%% of the pipeline | %s |\n",
				100*median(r.dtr.mbps)/median(pipeline), f(r.dtr.mbps))
		}
	}
	b.WriteString(gap)
	fmt.Print(b.String())
	if err := os.WriteFile(*benchReport, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pushManifest pushes a small image to repo:v1 once per target.
func pushManifest(t testing.TB, tg *target, repo string) []byte {
	cfgD, _ := tg.pushBlob(repo, []byte(`{"architecture":"amd64","os":"linux"}`))
	layer, _ := tg.pushBlob(repo, randomBytes(1024))
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":37},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":1024}]}`, cfgD, layer)
	resp, err := tg.do("PUT", "/v2/"+repo+"/manifests/v1", repo, []byte(m), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("manifest PUT on %s: %v %v", tg.name, err, resp)
	}
	resp.Body.Close()
	return []byte(m)
}

// manifestReads measures GET or HEAD of one manifest by conc clients, runs
// times ops requests (0: 200 per client).
func manifestReads(t *testing.T, tg *target, method string, conc, runs, ops int) measurement {
	const repo = "admin/bench-manifest"
	m := pushManifest(t, tg, repo)
	hdr := map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}
	if ops == 0 {
		ops = 200 * conc
	}
	return run(t, runs, ops, conc, int64(len(m)), func(int) error {
		resp, err := tg.do(method, "/v2/"+repo+"/manifests/v1", repo, nil, hdr)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s manifest: %s", method, resp.Status)
		}
		return nil
	})
}

// manifestGap splits the manifest GET gap between bare Distribution and dtr
// into its steps, each measured in this run at 8 clients: the bearer token
// every request carries (bare Distribution ignores it), then token auth and
// dtr's routing with the access log off, then the access log.
func manifestGap(t *testing.T, bare, dtr *target, runs int) string {
	const conc = 8
	tok := dtr.token("admin/bench-manifest")
	withHeader := &target{name: "bare + header", url: bare.url, client: bare.client, token: func(string) string { return tok }}
	quiet := deployedReplica(t)
	quiet.Opts.Log.SetLevel(logrus.WarnLevel)
	qtok := quiet.Token(t, admin, adminPW, "repository:admin/bench-manifest:push,pull")
	quietTarget := &target{name: "dtr, access log off", url: quiet.URL, client: quiet.Client, token: func(string) string { return qtok }}
	steps := []struct {
		what string
		tg   *target
	}{
		{"bare Distribution", bare},
		{"+ the client sends dtr's bearer token (" + fmt.Sprint(len(tok)) + " bytes; bare ignores it)", withHeader},
		{"dtr with its access log off: + token auth, admin routes, OCI wrapper", quietTarget},
		{"dtr as deployed: + one access-log line per request", dtr},
	}
	ms := sideBySide(runs, len(steps), func(i, _ int) measurement {
		return manifestReads(t, steps[i].tg, "GET", conc, 1, 8000)
	})
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Where the manifest GET gap goes\n\nManifest GET at %d clients, one step at a time; the steps take turns, 8,000 requests a run, %d runs each (median and range). µs/request is the wall time per request at the median throughput; the last column is what the step adds.\n\n", conc, runs)
	b.WriteString("| step | req/s | µs/request | p50 / p99 | adds |\n|---|---|---|---|---|\n")
	prev := 0.0
	for i, st := range steps {
		m := ms[i]
		s := append([]float64(nil), m.reqs...)
		sort.Float64s(s)
		us := 1e6 / median(m.reqs)
		add := "–"
		if prev > 0 {
			add = fmt.Sprintf("%+.1f µs", us-prev)
		}
		prev = us
		fmt.Fprintf(&b, "| %s | %.0f [%.0f–%.0f] | %.1f | %v / %v | %s |\n", st.what, median(m.reqs), s[0], s[len(s)-1], us,
			pct(m.latency, 0.5).Round(10*time.Microsecond), pct(m.latency, 0.99).Round(10*time.Microsecond), add)
	}
	return b.String()
}

// BenchmarkManifestGET is the hot read path alone, for profiling:
// go test -run '^$' -bench ManifestGET -cpuprofile cpu.prof ./registry
func BenchmarkManifestGET(b *testing.B) {
	for _, name := range []string{"bare", "dtr"} {
		b.Run(name, func(b *testing.B) {
			var tg *target
			if name == "bare" {
				tg = bareDistribution(b)
			} else {
				r := deployedReplica(b)
				tok := r.Token(b, admin, adminPW, "repository:admin/m:push,pull")
				tg = &target{name: "dtr", url: r.URL, client: r.Client, token: func(string) string { return tok }}
			}
			repo := "admin/m"
			d, err := tg.pushBlob(repo, []byte("{}"))
			if err != nil {
				b.Fatal(err)
			}
			m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":2},"layers":[]}`, d)
			resp, err := tg.do("PUT", "/v2/"+repo+"/manifests/v1", repo, []byte(m), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
			if err != nil || resp.StatusCode != 201 {
				b.Fatalf("PUT: %v %v", err, resp)
			}
			hdr := map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := tg.get("/v2/"+repo+"/manifests/v1", repo, hdr); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
