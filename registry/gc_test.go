package registry_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/gc"
	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// gcConfig is the config every test image shares.
var gcConfig = []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)

// pushLayers pushes an OCI image of layers (config shared by all) as
// repo:ref (a tag, or "" to push by digest) and returns its manifest
// digest and body.
func pushLayers(t *testing.T, r *registrytest.Replica, tok, repo, tag string, layers ...[]byte) (string, []byte) {
	t.Helper()
	cd, st := r.PushBlob(t, tok, repo, gcConfig)
	if st != 201 {
		t.Fatalf("pushing the config to %s: %d", repo, st)
	}
	descs := make([]string, len(layers))
	for i, l := range layers {
		d, st := r.PushBlob(t, tok, repo, l)
		if st != 201 {
			t.Fatalf("pushing a layer to %s: %d", repo, st)
		}
		descs[i] = fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}`, d, len(l))
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
		ociManifest, cd, len(gcConfig), strings.Join(descs, ",")))
	md := registrytest.Digest(m)
	ref := tag
	if ref == "" {
		ref = md
	}
	if st, _, body := r.Do(t, "PUT", "/v2/"+repo+"/manifests/"+ref, tok, m, map[string]string{"Content-Type": ociManifest}); st != 201 {
		t.Fatalf("pushing %s:%s: %d %s", repo, ref, st, body)
	}
	return md, m
}

// gcJob is a job as the API answers it, with garbage collection's progress.
type gcJob struct {
	meta.Job
	Progress gc.Progress `json:"progress"`
}

// startGC queues a garbage collection job and returns its ID.
func startGC(t *testing.T, r *registrytest.Replica, params map[string]string) string {
	t.Helper()
	var j gcJob
	if st := r.API(t, admin, adminPW, "POST", "/api/v0/jobs", map[string]any{"action": "onlinegc", "parameters": params}, &j); st != http.StatusAccepted {
		t.Fatalf("POST /api/v0/jobs: %d", st)
	}
	if j.ID == "" || j.Status != meta.JobWaiting || j.Action != "onlinegc" {
		t.Fatalf("queued job: %+v", j.Job)
	}
	return j.ID
}

// waitJob polls a job until it has finished.
func waitJob(t *testing.T, r *registrytest.Replica, id string, within time.Duration) gcJob {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var j gcJob
		if st := r.API(t, admin, adminPW, "GET", "/api/v0/jobs/"+id, nil, &j); st != 200 {
			t.Fatalf("GET job %s: %d", id, st)
		}
		if j.Finished() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after %v: %+v", id, j.Status, within, j.Progress)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runGC runs a job to its end and checks it ended as want.
func runGC(t *testing.T, r *registrytest.Replica, params map[string]string, want string) gcJob {
	t.Helper()
	j := waitJob(t, r, startGC(t, r, params), 25*time.Second)
	if j.Status != want {
		t.Fatalf("job %s: %s (%s), want %s; log:\n%s", j.ID, j.Status, j.Error, want, strings.Join(jobLog(t, r, j.ID), "\n"))
	}
	return j
}

func jobLog(t *testing.T, r *registrytest.Replica, id string) []string {
	t.Helper()
	var lines []meta.JobLogLine
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/jobs/"+id+"/logs", nil, &lines); st != 200 {
		t.Fatalf("GET logs of %s: %d", id, st)
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		if l.LineNum != i {
			t.Fatalf("log line %d has lineNum %d", i, l.LineNum)
		}
		out[i] = l.Data
	}
	return out
}

// loggedDigests are the digests of the log lines that contain what.
func loggedDigests(lines []string, what string) map[string]bool {
	out := map[string]bool{}
	for _, l := range lines {
		if _, rest, ok := strings.Cut(l, what+" "); ok {
			d, _, _ := strings.Cut(rest, " ")
			out[d] = true
		}
	}
	return out
}

// storedBlobs maps every blob in storage under root to its size.
func storedBlobs(t *testing.T, root string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	dir := filepath.Join(root, "docker/registry/v2/blobs/sha256")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.Name() == "data" && !d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			out["sha256:"+filepath.Base(filepath.Dir(p))] = fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pullVerified pulls repo@ref (a manifest or an index) and every blob it
// references, and checks each against its digest.
func pullVerified(t *testing.T, r *registrytest.Replica, tok, repo, ref string) {
	t.Helper()
	st, h, body := r.Do(t, "GET", "/v2/"+repo+"/manifests/"+ref, tok, nil, map[string]string{"Accept": ociManifest + ", application/vnd.oci.image.index.v1+json"})
	if st != 200 {
		t.Fatalf("pull %s:%s: %d", repo, ref, st)
	}
	if d := h.Get("Docker-Content-Digest"); d != registrytest.Digest(body) {
		t.Fatalf("pull %s:%s: digest %s, content hashes to %s", repo, ref, d, registrytest.Digest(body))
	}
	var m struct {
		Config    *struct{ Digest string }  `json:"config"`
		Layers    []struct{ Digest string } `json:"layers"`
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	for _, c := range m.Manifests {
		pullVerified(t, r, tok, repo, c.Digest)
	}
	var blobs []string
	if m.Config != nil {
		blobs = append(blobs, m.Config.Digest)
	}
	for _, l := range m.Layers {
		blobs = append(blobs, l.Digest)
	}
	for _, d := range blobs {
		st, _, b := r.Do(t, "GET", "/v2/"+repo+"/blobs/"+d, tok, nil, nil)
		sum := sha256.Sum256(b)
		if st != 200 || "sha256:"+hex.EncodeToString(sum[:]) != d {
			t.Fatalf("pull %s:%s: blob %s: %d, %d bytes hashing to sha256:%x", repo, ref, d, st, len(b), sum)
		}
	}
}

// gcScenario pushes images sharing layers into several repositories,
// deletes a manifest, a tag, a repository, an organization's repository
// and the organization, and plants a repository left by a namespace that is
// gone; then a dry run and a real run, checked against the storage's files
// under root.
func gcScenario(t *testing.T, r *registrytest.Replica, root string) {
	api := func(method, path string, in any, want int) {
		t.Helper()
		if st := r.API(t, admin, adminPW, method, path, in, nil); st != want {
			t.Fatalf("%s %s: %d, want %d", method, path, st, want)
		}
	}
	setupAccounts(t, r)
	api("POST", "/api/v0/accounts", map[string]any{"name": "gone", "isOrg": true}, 201)
	var scopes []string
	for _, repo := range []string{"admin/keep", "admin/drop", "admin/multi", "acme/app", "acme/tmp", "gone/app"} {
		scopes = append(scopes, "repository:"+repo+":push,pull,delete")
	}
	tok := r.Token(t, admin, adminPW, scopes...)
	layer := func(name string, kb int) []byte { return []byte(strings.Repeat(name+" layer data ", kb*1024/16)) }
	shared := layer("shared", 64)

	pushLayers(t, r, tok, "admin/keep", "v1", shared, layer("keep", 8))
	oldDigest, oldManifest := pushLayers(t, r, tok, "admin/keep", "old", shared, layer("old", 9))
	tagOnlyDigest, _ := pushLayers(t, r, tok, "admin/keep", "tagonly", shared, layer("tagonly", 10))
	_, dropManifest := pushLayers(t, r, tok, "admin/drop", "v1", shared, layer("drop", 11))
	pushLayers(t, r, tok, "acme/app", "v1", shared, layer("acme", 12))
	_, tmpManifest := pushLayers(t, r, tok, "acme/tmp", "v1", shared, layer("tmp", 13))
	_, goneManifest := pushLayers(t, r, tok, "gone/app", "v1", shared, layer("gone", 14))
	c1, c1m := pushLayers(t, r, tok, "admin/multi", "", shared, layer("child1", 15))
	c2, c2m := pushLayers(t, r, tok, "admin/multi", "", shared, layer("child2", 16))
	index := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":%q,"digest":%q,"size":%d},{"mediaType":%q,"digest":%q,"size":%d}]}`,
		ociManifest, c1, len(c1m), ociManifest, c2, len(c2m)))
	if st, _, b := r.Do(t, "PUT", "/v2/admin/multi/manifests/v1", tok, index, map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}); st != 201 {
		t.Fatalf("pushing the index: %d %s", st, b)
	}
	// A namespace whose account is gone left a repository in storage (a
	// crash during a deletion; storage copied from elsewhere).
	repos := filepath.Join(root, "docker/registry/v2/repositories")
	if err := os.CopyFS(filepath.Join(repos, "ghost/app"), os.DirFS(filepath.Join(repos, "admin/drop"))); err != nil {
		t.Fatal(err)
	}

	// Deleted: a manifest by digest, a tag (its manifest stays, pulled by
	// digest), a repository, an organization's repository, and an
	// organization with its repository.
	if st, _, b := r.Do(t, "DELETE", "/v2/admin/keep/manifests/"+oldDigest, tok, nil, nil); st != 202 {
		t.Fatalf("deleting manifest %s: %d %s", oldDigest, st, b)
	}
	if st, _, b := r.Do(t, "DELETE", "/v2/admin/keep/manifests/tagonly", tok, nil, nil); st != 202 {
		t.Fatalf("deleting tag tagonly: %d %s", st, b)
	}
	api("DELETE", "/api/v0/repositories/admin/drop", nil, 204)
	api("DELETE", "/api/v0/repositories/acme/tmp", nil, 204)
	api("DELETE", "/api/v0/repositories/gone/app", nil, 204)
	api("DELETE", "/api/v0/accounts/gone", nil, 204)

	// What must go: each deleted image's own layer and its manifest; the
	// shared layer and config stay.
	want := map[string]bool{}
	for _, b := range [][]byte{oldManifest, layer("old", 9), dropManifest, layer("drop", 11), tmpManifest, layer("tmp", 13), goneManifest, layer("gone", 14)} {
		want[registrytest.Digest(b)] = true
	}
	before := storedBlobs(t, root)
	var wantBytes int64
	for d := range want {
		if _, ok := before[d]; !ok {
			t.Fatalf("blob %s is not in storage before the run", d)
		}
		wantBytes += before[d]
	}

	grace := map[string]string{"gracePeriod": "0s"}
	dry := runGC(t, r, map[string]string{"gracePeriod": "0s", "dryRun": "true"}, meta.JobDone)
	dryLog := jobLog(t, r, dry.ID)
	if got := loggedDigests(dryLog, "would delete blob"); !maps.Equal(got, want) {
		t.Errorf("the dry run would delete %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	if p := dry.Progress; !p.DryRun || p.Candidates != int64(len(want)) || p.CandidateBytes != wantBytes || p.BlobsSwept != 0 || p.BytesFreed != 0 {
		t.Errorf("dry run progress %+v, want %d candidates of %d bytes and nothing swept", p, len(want), wantBytes)
	}
	if after := storedBlobs(t, root); !maps.Equal(after, before) {
		t.Fatalf("the dry run changed the storage: %d blobs before, %d after", len(before), len(after))
	}

	run := runGC(t, r, grace, meta.JobDone)
	realLog := jobLog(t, r, run.ID)
	if got := loggedDigests(realLog, "deleted blob"); !maps.Equal(got, want) {
		t.Errorf("the run deleted %v, want %v (the dry run's set)", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	after := storedBlobs(t, root)
	var freed int64
	for d, size := range before {
		if _, ok := after[d]; !ok {
			freed += size
			if !want[d] {
				t.Errorf("blob %s was deleted but is referenced", d)
			}
		}
	}
	if freed != wantBytes || run.Progress.BytesFreed != wantBytes || run.Progress.BlobsSwept != int64(len(want)) {
		t.Errorf("storage shrank by %d bytes, progress says %d in %d blobs; want exactly %d bytes in %d blobs",
			freed, run.Progress.BytesFreed, run.Progress.BlobsSwept, wantBytes, len(want))
	}
	if run.Progress.RepositoriesRemoved != 1 || run.Progress.LinksRemoved == 0 {
		t.Errorf("progress %+v: want the ghost repository removed and the layer links of deleted blobs", run.Progress)
	}
	if _, err := os.Stat(filepath.Join(repos, "ghost/app/_manifests")); !os.IsNotExist(err) {
		t.Errorf("the repository without a record or account is still in storage: %v", err)
	}
	t.Logf("freed %d bytes in %d blobs; marked %d manifests, %d blobs; %d log lines",
		freed, run.Progress.BlobsSwept, run.Progress.ManifestsMarked, run.Progress.BlobsMarked, len(realLog))

	pull := r.Token(t, admin, adminPW, "repository:admin/keep:pull", "repository:admin/multi:pull", "repository:acme/app:pull")
	pullVerified(t, r, pull, "admin/keep", "v1")
	pullVerified(t, r, pull, "admin/keep", tagOnlyDigest) // untagged, kept
	pullVerified(t, r, pull, "admin/multi", "v1")
	pullVerified(t, r, pull, "acme/app", "v1")
	if st, _, _ := r.Do(t, "GET", "/v2/admin/keep/manifests/"+oldDigest, pull, nil, map[string]string{"Accept": ociManifest}); st != 404 {
		t.Errorf("the deleted manifest answers %d, want 404", st)
	}

	// Nothing left to collect: a second run frees nothing.
	again := runGC(t, r, grace, meta.JobDone)
	if again.Progress.Candidates != 0 || again.Progress.BlobsSwept != 0 {
		t.Errorf("a second run: %+v, want nothing to delete", again.Progress)
	}
	// The jobs list, newest first.
	var list struct{ Jobs []gcJob }
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/jobs?action=onlinegc&limit=2", nil, &list); st != 200 || len(list.Jobs) != 2 ||
		list.Jobs[0].ID != again.ID || list.Jobs[1].ID != run.ID {
		t.Errorf("GET /api/v0/jobs?action=onlinegc&limit=2: %d, %d jobs", st, len(list.Jobs))
	}
}

// TestGCFreesUnreferenced: storage shrinks by exactly the blobs nothing
// references any more, the dry run names exactly those, and every tag
// left pulls with bytes that hash to their digests.
func TestGCFreesUnreferenced(t *testing.T) {
	r := registrytest.StartNew(t)
	gcScenario(t, r, filepath.Join(r.Opts.DataDir, "registry"))
}

// TestGCOnS3: the same on S3 (versitygw).
func TestGCOnS3(t *testing.T) {
	if testing.Short() {
		t.Skip("S3 test: skipped with -short")
	}
	s3 := registrytest.StartS3(t)
	o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
	o.Storage = s3.Storage()
	r := registrytest.Start(t, o)
	gcScenario(t, r, s3.ObjectDir())
}

// setHook installs a gc test hook until the test ends.
func setHook[T any](t *testing.T, p interface {
	Store(*func(T))
}, fn func(T)) {
	p.Store(&fn)
	t.Cleanup(func() { p.Store(nil) })
}

// danglingManifests lists the manifests in storage under root that
// reference a blob whose data is missing.
func danglingManifests(t *testing.T, root string) []string {
	t.Helper()
	blobs := storedBlobs(t, root)
	var out []string
	repos := filepath.Join(root, "docker/registry/v2/repositories")
	err := filepath.WalkDir(repos, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "link" || !strings.Contains(p, "/_manifests/revisions/sha256/") {
			return err
		}
		md := "sha256:" + filepath.Base(filepath.Dir(p))
		if _, ok := blobs[md]; !ok {
			out = append(out, p+": manifest data missing")
			return nil
		}
		hexd := strings.TrimPrefix(md, "sha256:")
		b, err := os.ReadFile(filepath.Join(root, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data"))
		if err != nil {
			return err
		}
		var m struct {
			Config *struct{ Digest string }  `json:"config"`
			Layers []struct{ Digest string } `json:"layers"`
		}
		_ = json.Unmarshal(b, &m)
		if m.Config != nil {
			m.Layers = append(m.Layers, *m.Config)
		}
		for _, l := range m.Layers {
			if _, ok := blobs[l.Digest]; !ok {
				out = append(out, fmt.Sprintf("%s references missing blob %s", p, l.Digest))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGCRaceWithPush interleaves pushes with a sweep at its three points,
// through test hooks: a push that references an unreferenced blob before
// the sweep's tombstones keeps it; one after the tombstones, before or
// after the deletion, is refused with 503 and leaves no manifest behind;
// its retry with the blob uploaded again succeeds. Never is a manifest
// stored whose blob is missing (sparse manifests are allowed, so only the
// collection's guard stands between the push and that).
func TestGCRaceWithPush(t *testing.T) {
	r := registrytest.StartNew(t)
	root := filepath.Join(r.Opts.DataDir, "registry")
	tok := r.Token(t, admin, adminPW, "repository:admin/src:push,pull,delete", "repository:admin/dst:push,pull")
	base := []byte(strings.Repeat("base layer ", 1000))
	victims := [][]byte{[]byte(strings.Repeat("victim one ", 900)), []byte(strings.Repeat("victim two ", 800)), []byte(strings.Repeat("victim three ", 700))}
	vd := make([]string, len(victims))
	for i, v := range victims {
		vd[i] = registrytest.Digest(v)
	}
	pushLayers(t, r, tok, "admin/src", "base", base)
	gone, _ := pushLayers(t, r, tok, "admin/src", "all", base, victims[0], victims[1], victims[2])
	if st, _, _ := r.Do(t, "DELETE", "/v2/admin/src/manifests/"+gone, tok, nil, nil); st != 202 {
		t.Fatalf("deleting %s: %d", gone, st)
	}
	cd := registrytest.Digest(gcConfig)
	// mountAndPush is a client that learned the blob is in admin/src:
	// it mounts it (and the config) into admin/dst and pushes a manifest.
	mountAndPush := func(tag string, layer []byte) (int, http.Header) {
		for _, d := range []string{cd, registrytest.Digest(layer)} {
			r.Do(t, "POST", "/v2/admin/dst/blobs/uploads/?mount="+d+"&from=admin/src", tok, nil, nil)
		}
		m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
			ociManifest, cd, len(gcConfig), registrytest.Digest(layer), len(layer)))
		st, h, _ := r.Do(t, "PUT", "/v2/admin/dst/manifests/"+tag, tok, m, map[string]string{"Content-Type": ociManifest})
		if st != 201 {
			// Refused: nothing may name it, by tag or by digest.
			for _, ref := range []string{tag, registrytest.Digest(m)} {
				if st, _, _ := r.Do(t, "GET", "/v2/admin/dst/manifests/"+ref, tok, nil, map[string]string{"Accept": ociManifest}); st != 404 {
					t.Errorf("refused manifest %s answers %d, want 404", ref, st)
				}
			}
		}
		return st, h
	}
	var mu sync.Mutex // the hooks run on the replica's sweep goroutine
	results := map[string]int{}
	record := func(name string, st int) {
		mu.Lock()
		defer mu.Unlock()
		results[name] = st
	}
	var once sync.Once
	setHook(t, &gc.TestHooks.BeforeTombstones, func(batch []string) {
		if slices.Contains(batch, vd[0]) {
			once.Do(func() {
				st, _ := mountAndPush("one", victims[0])
				record("one", st)
			})
		}
	})
	setHook(t, &gc.TestHooks.BeforeDelete, func(d string) {
		if d == vd[1] {
			st, h := mountAndPush("two", victims[1])
			record("two", st)
			if st == 503 && h.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
		}
	})
	setHook(t, &gc.TestHooks.AfterDelete, func(d string) {
		if d == vd[2] {
			st, _ := mountAndPush("three", victims[2])
			record("three", st)
		}
	})
	j := runGC(t, r, map[string]string{"gracePeriod": "0s", "workers": "1"}, meta.JobDone)
	mu.Lock()
	defer mu.Unlock()
	if results["one"] != 201 || results["two"] != 503 || results["three"] != 503 {
		t.Fatalf("pushes during the sweep: %v; want one 201 (before the tombstones), two and three 503", results)
	}
	deleted := loggedDigests(jobLog(t, r, j.ID), "deleted blob")
	if deleted[vd[0]] || !deleted[vd[1]] || !deleted[vd[2]] || j.Progress.BlobsKept != 1 {
		t.Fatalf("deleted %v, kept %d: want victims two and three deleted, one kept", slices.Sorted(maps.Keys(deleted)), j.Progress.BlobsKept)
	}
	pullVerified(t, r, tok, "admin/dst", "one")
	// A client that still believes victim three is there (it saw it
	// before the deletion) is refused, even with sparse manifests allowed.
	m3 := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		ociManifest, cd, len(gcConfig), vd[2], len(victims[2])))
	if st, _, _ := r.Do(t, "PUT", "/v2/admin/dst/manifests/three", tok, m3, map[string]string{"Content-Type": ociManifest}); st != 503 {
		t.Errorf("a manifest naming a blob the run deleted: %d, want 503", st)
	}
	// The retry, with the layer uploaded again, succeeds.
	pushLayers(t, r, tok, "admin/dst", "two", victims[1])
	pullVerified(t, r, tok, "admin/dst", "two")
	if d := danglingManifests(t, root); len(d) > 0 {
		t.Fatalf("manifests with missing blobs:\n%s", strings.Join(d, "\n"))
	}
}

// TestGCCancelAndRerun: a run cancelled in the middle of its sweep stops
// (status canceled, part deleted), and the next run deletes the rest.
func TestGCCancelAndRerun(t *testing.T) {
	r := registrytest.StartNew(t)
	root := filepath.Join(r.Opts.DataDir, "registry")
	tok := r.Token(t, admin, adminPW, "repository:admin/junk:push,pull")
	const n = 120
	junk := map[string]bool{}
	for i := range n {
		d, st := r.PushBlob(t, tok, "admin/junk", []byte(fmt.Sprintf("unreferenced blob %d", i)))
		if st != 201 {
			t.Fatalf("pushing blob %d: %d", i, st)
		}
		junk[d] = true
	}
	ids := make(chan string, 1)
	deletions := 0 // one worker: the hook runs on one goroutine
	setHook(t, &gc.TestHooks.BeforeDelete, func(string) {
		if deletions++; deletions == 10 {
			id := <-ids
			if st := r.API(t, admin, adminPW, "POST", "/api/v0/jobs/"+id+"/cancel", nil, nil); st != 204 {
				t.Errorf("cancel: %d", st)
			}
			time.Sleep(2500 * time.Millisecond) // the runner looks every second
		}
	})
	id := startGC(t, r, map[string]string{"gracePeriod": "0s", "workers": "1"})
	ids <- id
	first := waitJob(t, r, id, 25*time.Second)
	if first.Status != meta.JobCanceled || first.Progress.BlobsSwept == 0 || first.Progress.BlobsSwept >= n || first.EndTime.IsZero() {
		t.Fatalf("cancelled run: %s, swept %d of %d", first.Status, first.Progress.BlobsSwept, n)
	}
	left := 0
	for d := range storedBlobs(t, root) {
		if junk[d] {
			left++
		}
	}
	if left != n-int(first.Progress.BlobsSwept) {
		t.Fatalf("%d junk blobs left after deleting %d of %d", left, first.Progress.BlobsSwept, n)
	}
	gc.TestHooks.BeforeDelete.Store(nil)
	second := runGC(t, r, map[string]string{"gracePeriod": "0s"}, meta.JobDone)
	if second.Progress.BlobsSwept != int64(left) {
		t.Fatalf("the next run deleted %d, want the %d left", second.Progress.BlobsSwept, left)
	}
	for d := range storedBlobs(t, root) {
		if junk[d] {
			t.Fatalf("blob %s survived both runs", d)
		}
	}
	// A finished job: DELETE removes it.
	if st := r.API(t, admin, adminPW, "DELETE", "/api/v0/jobs/"+id, nil, nil); st != 204 {
		t.Fatalf("deleting a finished job: %d", st)
	}
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/jobs/"+id, nil, &e); st != 404 || len(e.Errors) == 0 || e.Errors[0].Code != "NO_SUCH_JOB" {
		t.Fatalf("GET a deleted job: %d %+v, want 404 NO_SUCH_JOB", st, e)
	}
}

// TestGCLease: with two replicas, each given a job, one runs while the
// other's job waits; cluster_status names the holder; the second runs
// after the first ends.
func TestGCLease(t *testing.T) {
	r1 := registrytest.StartNew(t)
	r2 := join(t, r1, "bbbbbbbbbbbb")
	tok := r1.Token(t, admin, adminPW, "repository:admin/junk:push,pull")
	for i := range 3 {
		r1.PushBlob(t, tok, "admin/junk", []byte(fmt.Sprintf("lease test blob %d", i)))
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var first sync.Once
	setHook(t, &gc.TestHooks.BeforeTombstones, func([]string) {
		first.Do(func() {
			close(entered)
			<-release
		})
	})
	a, b := startGC(t, r1, map[string]string{"gracePeriod": "0s"}), startGC(t, r2, map[string]string{"gracePeriod": "0s"})
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		close(release)
		t.Fatal("no run started")
	}
	jobs := func() map[string]gcJob {
		out := map[string]gcJob{}
		for _, id := range []string{a, b} {
			var j gcJob
			r2.API(t, admin, adminPW, "GET", "/api/v0/jobs/"+id, nil, &j)
			out[id] = j
		}
		return out
	}
	var running gcJob
	for range 2 {
		js := jobs()
		n := 0
		for _, j := range js {
			if j.Status == meta.JobRunning {
				running, n = j, n+1
			} else if j.Status != meta.JobWaiting {
				t.Errorf("job %s: %s while the other runs", j.ID, j.Status)
			}
		}
		if n != 1 {
			t.Errorf("%d jobs running at once", n)
		}
		var cs struct {
			Holder string `json:"gc_lock_holder"`
		}
		r2.API(t, admin, adminPW, "GET", "/api/v0/meta/cluster_status", nil, &cs)
		if cs.Holder == "" || cs.Holder != running.WorkerID {
			t.Errorf("gc_lock_holder %q, the running job's worker %q", cs.Holder, running.WorkerID)
		}
		time.Sleep(1500 * time.Millisecond) // both replicas look again meanwhile
	}
	close(release)
	ja, jb := waitJob(t, r1, a, 20*time.Second), waitJob(t, r1, b, 20*time.Second)
	if ja.Status != meta.JobDone || jb.Status != meta.JobDone {
		t.Fatalf("jobs: %s (%s), %s (%s)", ja.Status, ja.Error, jb.Status, jb.Error)
	}
	if !(ja.EndTime.Before(jb.StartTime) || jb.EndTime.Before(ja.StartTime)) {
		t.Errorf("runs overlap: %s-%s and %s-%s", ja.StartTime, ja.EndTime, jb.StartTime, jb.EndTime)
	}
	var cs struct {
		Holder string `json:"gc_lock_holder"`
	}
	r1.API(t, admin, adminPW, "GET", "/api/v0/meta/cluster_status", nil, &cs)
	if cs.Holder != "" {
		t.Errorf("gc_lock_holder %q after both runs", cs.Holder)
	}
}
