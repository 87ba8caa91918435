package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/images"
)

// spread is "median [min–max]" of durations.
func spread(d []time.Duration) string {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	r := func(x time.Duration) string { return x.Round(100 * time.Millisecond).String() }
	return fmt.Sprintf("%s [%s–%s]", r(s[len(s)/2]), r(s[0]), r(s[len(s)-1]))
}

func spreadInt(v []int64, unit string) string {
	s := append([]int64(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return fmt.Sprintf("%d %s [%d–%d]", s[len(s)/2], unit, s[0], s[len(s)-1])
}

// containerRSS is the VmRSS and VmHWM (peak) of a service's container's
// main process, in KiB, read from /proc on this host.
func containerRSS(t *testing.T, service string) (rss, hwm int64) {
	t.Helper()
	id := MustDocker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+service)
	pid := MustDocker(t, "inspect", "--format", "{{.State.Pid}}", strings.Fields(id)[0])
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				rss = n
			} else {
				hwm = n
			}
		}
	}
	return rss, hwm
}

// TestOpsBench measures the operations an operator waits for, on the local
// engine (a single-node swarm), for make bench: install and join to
// healthy, emergency repair, the installer's peak memory, the replica's RSS
// idle and under 32 pulling clients, and the image sizes. It writes a
// markdown section to $DTR_BENCH_OPS. The backup/restore rows at scale come
// from TestBackupRestoreScale, run by the same make bench.
func TestOpsBench(t *testing.T) {
	out := os.Getenv("DTR_BENCH_OPS")
	if out == "" {
		t.Skip("operations benchmark: run make bench")
	}
	node := cleanSwarm(t)
	const runs = 3
	var install, join1, join2, repair []time.Duration
	var installRSS, joinRSS, repairRSS []int64
	var idleRSS, loadRSS []int64
	for r := 0; r < runs; r++ {
		log, d, rss := timedDTR(t, nil, nil, "install", "--ucp-node", node, "--replica-http-port", "31080", "--replica-https-port", "31443")
		install, installRSS = append(install, d), append(installRSS, rss)
		first := replicaID(t, log)
		idle, peak := footprint(t, first)
		idleRSS, loadRSS = append(idleRSS, idle), append(loadRSS, peak)
		log, d, rss = timedDTR(t, nil, nil, "join", "--ucp-node", node, "--existing-replica-id", first, "--replica-http-port", "32080", "--replica-https-port", "32443")
		join1, joinRSS = append(join1, d), append(joinRSS, rss)
		second := replicaID(t, log)
		log, d, _ = timedDTR(t, nil, nil, "join", "--ucp-node", node, "--existing-replica-id", first, "--replica-http-port", "33080", "--replica-https-port", "33443")
		join2 = append(join2, d)
		third := replicaID(t, log)
		for _, id := range []string{second, third} {
			MustDocker(t, "service", "scale", "-d", "dtr-registry-"+id+"=0")
		}
		reg := remote(t, 31443)
		for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			resp, err := reg.Client.Get(reg.URL + "/_ping")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 503 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("quorum loss not reported")
			}
		}
		_, d, rss = timedDTR(t, nil, nil, "emergency-repair", "--existing-replica-id", first, "--prune", "--yes")
		repair, repairRSS = append(repair, d), append(repairRSS, rss)
		for _, id := range replicaIDs(t) {
			mustDTR(t, "destroy", "--replica-id", id)
		}
	}
	size := func(ref string) string {
		b := MustDocker(t, "image", "inspect", "--format", "{{.Size}}", ref)
		n, _ := strconv.ParseFloat(b, 64)
		return fmt.Sprintf("%.1f MB", n/1e6)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Operations\n\nThe real installer against the local engine (a single-node swarm, replicas on different ports), %d runs each: median [range]. Peak memory is the installer process's own high-water mark (VmHWM, sampled every 20 ms).\n\n", runs)
	b.WriteString("| operation | time | installer peak RSS | goal / reference |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| install → healthy | %s | %s | ≤ 20 s |\n", spread(install), spreadInt(installRSS, "KiB"))
	fmt.Fprintf(&b, "| join → healthy (2nd replica) | %s | %s | ≤ 10 s; DTR 2.4: 166 s (its own join log) |\n", spread(join1), spreadInt(joinRSS, "KiB"))
	fmt.Fprintf(&b, "| join → healthy (3rd replica) | %s | – | ≤ 10 s |\n", spread(join2))
	fmt.Fprintf(&b, "| emergency-repair → healthy (3 replicas, 2 stopped) | %s | %s | – |\n", spread(repair), spreadInt(repairRSS, "KiB"))
	fmt.Fprintf(&b, "\n## Footprint\n\nThe first replica of each of the %d runs: median [range].\n\n| what | value | goal |\n|---|---|---|\n", runs)
	fmt.Fprintf(&b, "| replica RSS, idle (20 s after install) | %s | ≤ 100 MiB |\n", spreadInt(idleRSS, "KiB"))
	fmt.Fprintf(&b, "| replica peak RSS under 32 clients pulling a 1 MiB blob for 15 s | %s | – |\n", spreadInt(loadRSS, "KiB"))
	fmt.Fprintf(&b, "| image %s | %s | – |\n", images.Registry(), size(images.Registry()))
	fmt.Fprintf(&b, "| image %s | %s | – |\n", images.Installer(), size(images.Installer()))
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
}

// footprint is the replica's RSS 20 s after install, and its peak RSS while
// 32 clients pull a 1 MiB blob for 15 s, in KiB.
func footprint(t *testing.T, replica string) (idle, peak int64) {
	t.Helper()
	time.Sleep(20 * time.Second)
	idle, _ = containerRSS(t, "dtr-registry-"+replica)
	reg := remote(t, 31443)
	tok := reg.Token(t, "admin", adminPassword, "repository:admin/load:push,pull")
	d, code := reg.PushBlob(t, tok, "admin/load", randomBlob(1<<20))
	if code != 201 {
		t.Fatalf("push: %d", code)
	}
	reg.Client.Transport.(*http.Transport).MaxIdleConnsPerHost = 32
	var wg sync.WaitGroup
	stop := time.Now().Add(15 * time.Second)
	for c := 0; c < 32; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				req, _ := http.NewRequest("GET", reg.URL+"/v2/admin/load/blobs/"+d, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := reg.Client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	_, peak = containerRSS(t, "dtr-registry-"+replica)
	return idle, peak
}

func randomBlob(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}
