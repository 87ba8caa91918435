package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// parallel runs fn(i) for i in [0, n) on workers goroutines.
func parallel(n, workers int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// timedDTR runs the installer and returns its log, wall time and peak RSS.
// The peak is the child's own VmHWM, sampled every 20 ms while it runs:
// wait4's ru_maxrss would report this test process's RSS instead, because
// Go starts children with CLONE_VM and Linux carries the parent's high-water
// mark across the exec.
func timedDTR(t *testing.T, stdin, stdout *os.File, args ...string) (string, time.Duration, int64) {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(dtrBin, args...)
	cmd.Env = append(os.Environ(), "UCP_URL=unix:///var/run/docker.sock", "UCP_USERNAME=admin", "UCP_PASSWORD="+adminPassword, "NO_COLOR=1")
	cmd.Stdin = stdin
	logFile := filepath.Join(t.TempDir(), "log")
	lf, _ := os.Create(logFile)
	cmd.Stderr = lf
	cmd.Stdout = lf
	if stdout != nil {
		cmd.Stdout = stdout
	}
	err := cmd.Start()
	var rss atomic.Int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	if err == nil {
		go func() {
			defer close(sampled)
			for {
				if kib := vmHWM(cmd.Process.Pid); kib > rss.Load() {
					rss.Store(kib)
				}
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		err = cmd.Wait()
		close(done)
		<-sampled
	}
	lf.Close()
	took := time.Since(start)
	log, _ := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("dtr %s: %v\n%s", args[0], err, log)
	}
	return string(log), took, rss.Load()
}

// vmHWM is a process's peak resident set in KiB (0 once it is gone).
func vmHWM(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// TestBackupRestoreScale measures backup and restore of a large registry
// (DTR_SCALE=1; DTR_SCALE_REPOS, DTR_SCALE_TAGS, DTR_SCALE_USERS change the
// default 10,000 repositories × 5 tags and 1,000 users). It asserts only
// that everything comes back; the times go to the log and docs/.
func TestBackupRestoreScale(t *testing.T) {
	if os.Getenv("DTR_SCALE") == "" {
		t.Skip("scale measurement: set DTR_SCALE=1 (make bench does)")
	}
	repos, tags, users := envInt("DTR_SCALE_REPOS", 10000), envInt("DTR_SCALE_TAGS", 5), envInt("DTR_SCALE_USERS", 1000)
	const blobs = "dtr-scale-blobs"
	node := cleanSwarm(t, blobs)
	first := replicaID(t, mustDTR(t, "install", "--ucp-node", node, "--replica-http-port", "31080", "--replica-https-port", "31443", "--dtr-storage-volume", blobs))
	reg := remote(t, 31443)
	reg.Client.Transport.(*http.Transport).MaxIdleConnsPerHost = 16

	start := time.Now()
	parallel(users, 4, func(i int) {
		if st := reg.API(t, "admin", adminPassword, "POST", "/api/v0/accounts", map[string]any{"name": fmt.Sprintf("user%04d", i), "password": fmt.Sprintf("password-%04d", i)}, nil); st != 201 {
			t.Errorf("user%04d: %d", i, st)
		}
	})
	t.Logf("created %d users in %v", users, time.Since(start).Round(time.Second))
	if st := reg.API(t, "admin", adminPassword, "POST", "/api/v0/accounts", map[string]any{"name": "scale", "isOrg": true}, nil); st != 201 {
		t.Fatalf("org: %d", st)
	}
	start = time.Now()
	digests := make([]string, repos)
	// One token for a chunk of repositories: a token per repository would
	// spend the run in bcrypt (every Basic-auth token request checks the
	// password).
	const chunk = 50
	parallel((repos+chunk-1)/chunk, 8, func(c int) {
		var scopes []string
		for i := c * chunk; i < min(repos, (c+1)*chunk); i++ {
			scopes = append(scopes, fmt.Sprintf("repository:scale/repo%05d:push,pull", i))
		}
		tok := reg.Token(t, "admin", adminPassword, scopes...)
		for i := c * chunk; i < min(repos, (c+1)*chunk); i++ {
			repo := fmt.Sprintf("scale/repo%05d", i)
			img, st := reg.PushImage(t, tok, repo, "t0", []byte("layer of "+repo))
			if st != 201 {
				t.Errorf("%s: %d", repo, st)
				return
			}
			digests[i] = img.ManifestDigest
			for k := 1; k < tags; k++ {
				if st, _, _ := reg.Do(t, "PUT", "/v2/"+repo+"/manifests/t"+strconv.Itoa(k), tok, img.Manifest, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}); st != 201 {
					t.Errorf("%s:t%d: %d", repo, k, st)
				}
			}
		}
	})
	t.Logf("pushed %d repositories × %d tags in %v", repos, tags, time.Since(start).Round(time.Second))
	if t.Failed() {
		t.FailNow()
	}

	// Backup and restore runs times on the one registry built above: each
	// restore brings back the same registry, which the next run backs up.
	runs := envInt("DTR_SCALE_RUNS", 3)
	var backupTook, restoreTook []time.Duration
	var backupRSS, restoreRSS []int64
	var size int64
	for r := 0; r < runs; r++ {
		bk := filepath.Join(t.TempDir(), "dtr.bkp")
		out, _ := os.Create(bk)
		_, took, rss := timedDTR(t, nil, out, "backup", "--existing-replica-id", first)
		out.Close()
		st, _ := os.Stat(bk)
		size = st.Size()
		backupTook, backupRSS = append(backupTook, took), append(backupRSS, rss)
		t.Logf("MEASURE run %d backup: %v, %d bytes, installer peak RSS %d KiB", r+1, took.Round(10*time.Millisecond), size, rss)

		for _, id := range replicaIDs(t) {
			mustDTR(t, "destroy", "--replica-id", id)
		}
		in, _ := os.Open(bk)
		log, took, rss := timedDTR(t, in, nil, "restore", "--ucp-node", node, "--replica-http-port", "31080", "--replica-https-port", "31443", "--dtr-storage-volume", blobs)
		in.Close()
		restoreTook, restoreRSS = append(restoreTook, took), append(restoreRSS, rss)
		t.Logf("MEASURE run %d restore to healthy: %v, installer peak RSS %d KiB", r+1, took.Round(10*time.Millisecond), rss)
		if !strings.Contains(log, "Restore complete.") {
			t.Fatalf("restore log:\n%s", log)
		}
		first = replicaIDs(t)[0] // the backed-up replica's ID, kept by restore
		checkRestored(t, repos, tags, users, digests, 20)
	}

	if out := os.Getenv("DTR_BENCH_SCALE"); out != "" {
		section := fmt.Sprintf("## Backup and restore at scale\n\n%d repositories × %d tags and %d users (plus their org), built once by pushes, then %d runs of backup → destroy → restore on it: the median, and the range in brackets.\n\n"+
			"| operation | time | size | installer peak RSS | goal |\n|---|---|---|---|---|\n"+
			"| backup | %s | %.1f MB | %s | ≤ 5 s |\n| restore → healthy | %s | – | %s | ≤ 60 s |\n",
			repos, tags, users, runs, spread(backupTook), float64(size)/1e6, spreadInt(backupRSS, "KiB"), spread(restoreTook), spreadInt(restoreRSS, "KiB"))
		if err := os.WriteFile(out, []byte(section), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkRestored pulls samples random tags and logs in as random users.
func checkRestored(t *testing.T, repos, tags, users int, digests []string, samples int) {
	t.Helper()
	reg := remote(t, 31443)
	accept := map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}
	for n := 0; n < samples; n++ {
		i := rand.IntN(repos)
		repo := fmt.Sprintf("scale/repo%05d", i)
		tok := reg.Token(t, "admin", adminPassword, "repository:"+repo+":pull")
		k := rand.IntN(tags)
		if code, h, _ := reg.Do(t, "GET", "/v2/"+repo+"/manifests/t"+strconv.Itoa(k), tok, nil, accept); code != 200 || h.Get("Docker-Content-Digest") != digests[i] {
			t.Errorf("%s:t%d after the restore: %d %s", repo, k, code, h.Get("Docker-Content-Digest"))
		}
		u := rand.IntN(users)
		reg.Token(t, fmt.Sprintf("user%04d", u), fmt.Sprintf("password-%04d", u))
	}
}

// replicaIDs lists the replicas on the engine.
func replicaIDs(t *testing.T) []string {
	t.Helper()
	var ids []string
	for _, svc := range strings.Fields(MustDocker(t, "service", "ls", "-q", "--filter", "label=com.docker.dtr.role=registry")) {
		ids = append(ids, MustDocker(t, "service", "inspect", "--format", "{{index .Spec.Labels \"com.docker.dtr.replica\"}}", svc))
	}
	return ids
}
