package registry_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// The stress test's shape: pushers, each with two repositories, pushing
// for gcStressFor while garbage collection runs back to back.
const (
	gcStressPushers = 4
	gcStressFor     = 15 * time.Second
)

// TestGCStress: pushers that keep re-using (uploading and mounting) a
// shared set of layers, moving and deleting tags, deleting manifests and
// now and then their repository, while garbage collection runs again and
// again with no grace period. A push may be refused (503, or a blob
// unknown) and is then pushed again; every acknowledged push pulls back
// at once. Afterwards every tag left pulls with the bytes pushed, every
// blob in storage re-hashes to its digest, no manifest references a
// missing blob, and a last run leaves no unreferenced blob.
func TestGCStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	r := registrytest.StartNew(t)
	gcStress(t, r, filepath.Join(r.Opts.DataDir, "registry"), "0s")
}

// TestGCStressOnS3: the same on S3 (versitygw), with a grace period of 2 s:
// S3 reports modification times to the second, so with none every run
// would take the layers uploaded in its first second, and pushes would be
// refused again and again.
func TestGCStressOnS3(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	s3 := registrytest.StartS3(t)
	o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
	o.Storage = s3.Storage()
	r := registrytest.Start(t, o)
	gcStress(t, r, s3.ObjectDir(), "2s")
}

// errUploadRace is a blob upload answered 503 because a sweep removed the
// blob's directory as the upload moved into it.
var errUploadRace = errors.New("upload raced with a sweep")

// stressImage is a pushed image: its manifest and its blobs, config first.
type stressImage struct {
	manifest []byte
	blobs    [][]byte
}

// stressClient pushes and pulls without failing the test itself: it runs
// on goroutines of its own.
type stressClient struct {
	t   *testing.T
	r   *registrytest.Replica
	tok string
}

// blob uploads b into repo, by a mount from another repository when from
// is set (the registry answers with an upload when it cannot mount).
func (c *stressClient) blob(repo, from string, b []byte) error {
	d := registrytest.Digest(b)
	p := "/v2/" + repo + "/blobs/uploads/"
	if from != "" {
		p += "?mount=" + d + "&from=" + from
	}
	st, h, body := c.r.Do(c.t, "POST", p, c.tok, nil, nil)
	switch st {
	case 201:
		return nil
	case 202:
	default:
		return fmt.Errorf("POST %s: %d %s", p, st, body)
	}
	loc := h.Get("Location")
	if strings.HasPrefix(loc, "http") {
		u, err := url.Parse(loc)
		if err != nil {
			return err
		}
		loc = u.RequestURI()
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	st, h, body = c.r.Do(c.t, "PUT", loc+sep+"digest="+d, c.tok, b, map[string]string{"Content-Type": "application/octet-stream"})
	switch {
	case st == 201:
	case st == 503 && h.Get("Retry-After") != "":
		// Its blob's directory was swept as the upload moved into it:
		// nothing is stored, the client uploads again.
		return errUploadRace
	default:
		return fmt.Errorf("PUT blob %s into %s: %d %s", d, repo, st, body)
	}
	return nil
}

// push pushes layers as repo:tag until the registry takes the manifest;
// refused counts the manifests refused because a blob was collected under
// the push (it then uploads every blob again, without mounts).
func (c *stressClient) push(repo, tag, from string, layers [][]byte) (img stressImage, refused int, err error) {
	descs := make([]string, len(layers))
	for i, l := range layers {
		descs[i] = fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}`, registrytest.Digest(l), len(l))
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
		ociManifest, registrytest.Digest(gcConfig), len(gcConfig), strings.Join(descs, ",")))
	img = stressImage{manifest: m, blobs: append([][]byte{gcConfig}, layers...)}
	for attempt := range 50 {
		if attempt > 0 {
			from = ""
			time.Sleep(20 * time.Millisecond)
		}
		raced := false
		for _, b := range img.blobs {
			err := c.blob(repo, from, b)
			if errors.Is(err, errUploadRace) {
				raced = true
				break
			}
			if err != nil {
				return img, refused, err
			}
		}
		if raced {
			refused++
			continue
		}
		st, _, body := c.r.Do(c.t, "PUT", "/v2/"+repo+"/manifests/"+tag, c.tok, m, map[string]string{"Content-Type": ociManifest})
		switch {
		case st == 201:
			return img, refused, nil
		case st == 503 || (st == 400 && strings.Contains(string(body), "BLOB_UNKNOWN")):
			refused++
		default:
			return img, refused, fmt.Errorf("PUT manifest %s:%s: %d %s", repo, tag, st, body)
		}
	}
	return img, refused, fmt.Errorf("PUT manifest %s:%s: refused 50 times in a row", repo, tag)
}

// pull GETs repo:ref and its blobs and compares them with img, byte for byte.
func (c *stressClient) pull(repo, ref string, img stressImage) error {
	st, h, body := c.r.Do(c.t, "GET", "/v2/"+repo+"/manifests/"+ref, c.tok, nil, map[string]string{"Accept": ociManifest})
	if st != 200 || !bytes.Equal(body, img.manifest) || h.Get("Docker-Content-Digest") != registrytest.Digest(img.manifest) {
		return fmt.Errorf("GET manifest %s:%s: %d %.200s, digest %q; want the %d bytes of %s", repo, ref, st, body, h.Get("Docker-Content-Digest"), len(img.manifest), registrytest.Digest(img.manifest))
	}
	for _, b := range img.blobs {
		d := registrytest.Digest(b)
		st, _, got := c.r.Do(c.t, "GET", "/v2/"+repo+"/blobs/"+d, c.tok, nil, nil)
		if st != 200 || !bytes.Equal(got, b) {
			return fmt.Errorf("GET blob %s of %s:%s: %d, %d bytes hashing to %s: %.200s", d, repo, ref, st, len(got), registrytest.Digest(got), got)
		}
	}
	return nil
}

// stressPusher is one pusher's loop; tags is what it knows its
// repositories hold at the end, by "repo:tag".
func stressPusher(c *stressClient, p int, repos []string, shared [][]byte, stop <-chan struct{}, until time.Time) (tags map[string]stressImage, pushes, refused int, err error) {
	rng := mrand.New(mrand.NewPCG(uint64(p), 16))
	tags = map[string]stressImage{}
	own := repos[2*p : 2*p+2]
	forget := func(repo string, keep func(tag string, img stressImage) bool) {
		for k, img := range tags {
			if r, tag, _ := strings.Cut(k, ":"); r == repo && !keep(tag, img) {
				delete(tags, k)
			}
		}
	}
	for k := 0; time.Now().Before(until); k++ {
		select {
		case <-stop:
			return tags, pushes, refused, nil
		default:
		}
		repo := own[rng.IntN(2)]
		tag := fmt.Sprintf("t%d", rng.IntN(4))
		i := rng.IntN(len(shared))
		j := (i + 1 + rng.IntN(len(shared)-1)) % len(shared)
		unique := []byte(strings.Repeat(fmt.Sprintf("pusher %d image %d %x ", p, k, rng.Uint64()), 64))
		from := repos[rng.IntN(len(repos))]
		if from == repo {
			from = ""
		}
		img, n, perr := c.push(repo, tag, from, [][]byte{shared[i], shared[j], unique})
		refused += n
		if perr != nil {
			return tags, pushes, refused, perr
		}
		pushes++
		tags[repo+":"+tag] = img
		if err := c.pull(repo, tag, img); err != nil {
			return tags, pushes, refused, fmt.Errorf("pulling what was just pushed: %w", err)
		}
		md := registrytest.Digest(img.manifest)
		switch n := rng.IntN(20); {
		case n < 4: // the tag
			if st, _, body := c.r.Do(c.t, "DELETE", "/v2/"+repo+"/manifests/"+tag, c.tok, nil, nil); st != 202 {
				return tags, pushes, refused, fmt.Errorf("deleting tag %s:%s: %d %s", repo, tag, st, body)
			}
			delete(tags, repo+":"+tag)
		case n < 7: // the manifest, and so every tag naming it
			if st, _, body := c.r.Do(c.t, "DELETE", "/v2/"+repo+"/manifests/"+md, c.tok, nil, nil); st != 202 {
				return tags, pushes, refused, fmt.Errorf("deleting manifest %s@%s: %d %s", repo, md, st, body)
			}
			forget(repo, func(_ string, other stressImage) bool { return registrytest.Digest(other.manifest) != md })
		case n == 7: // the repository
			if st := c.r.API(c.t, admin, adminPW, "DELETE", "/api/v0/repositories/"+repo, nil, nil); st != 204 {
				return tags, pushes, refused, fmt.Errorf("deleting repository %s: %d", repo, st)
			}
			forget(repo, func(string, stressImage) bool { return false })
		}
	}
	return tags, pushes, refused, nil
}

func gcStress(t *testing.T, r *registrytest.Replica, root, grace string) {
	var repos, scopes []string
	for p := range gcStressPushers {
		for _, s := range []string{"a", "b"} {
			repo := fmt.Sprintf("admin/stress%d%s", p, s)
			repos = append(repos, repo)
			scopes = append(scopes, "repository:"+repo+":push,pull,delete")
		}
	}
	c := &stressClient{t: t, r: r, tok: r.Token(t, admin, adminPW, scopes...)}
	shared := make([][]byte, 6)
	for i := range shared {
		shared[i] = []byte(strings.Repeat(fmt.Sprintf("shared layer %d ", i), 2048))
	}

	type result struct {
		tags            map[string]stressImage
		pushes, refused int
		err             error
	}
	results := make([]result, gcStressPushers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop) // before the wait: a failed run stops the pushers
	until := time.Now().Add(gcStressFor)
	for p := range gcStressPushers {
		wg.Go(func() {
			tags, pushes, refused, err := stressPusher(c, p, repos, shared, stop, until)
			results[p] = result{tags, pushes, refused, err}
		})
	}

	// Garbage collection back to back with a grace period of (about)
	// none: whatever is not referenced at a run's start is a candidate.
	var runs, swept, kept int64
	for time.Now().Before(until) {
		j := runGC(t, r, map[string]string{"gracePeriod": grace, "workers": "4"}, meta.JobDone)
		runs++
		swept += j.Progress.BlobsSwept
		kept += j.Progress.BlobsKept
	}
	wg.Wait()
	tags := map[string]stressImage{}
	var pushes, refused int
	for p, res := range results {
		if res.err != nil {
			t.Errorf("pusher %d: %v", p, res.err)
		}
		pushes += res.pushes
		refused += res.refused
		for k, img := range res.tags {
			tags[k] = img
		}
	}
	if t.Failed() {
		logStressDigests(t, r, results)
		t.FailNow()
	}
	last := runGC(t, r, map[string]string{"gracePeriod": "0s"}, meta.JobDone)
	t.Logf("%d pushes (%d manifests refused and pushed again), %d runs during the pushes deleting %d blobs (%d kept at the last moment), the last run %d; %d tags left",
		pushes, refused, runs, swept, kept, last.Progress.BlobsSwept, len(tags))
	if runs < 3 || swept+last.Progress.BlobsSwept == 0 || pushes < 4*gcStressPushers {
		t.Fatalf("%d runs, %d blobs deleted, %d pushes: too little happened to show anything", runs, swept+last.Progress.BlobsSwept, pushes)
	}

	// Every tag left pulls with the bytes pushed, and the registry lists
	// exactly those tags.
	for _, repo := range repos {
		var want []string
		for k, img := range tags {
			if rp, tag, _ := strings.Cut(k, ":"); rp == repo {
				want = append(want, tag)
				if err := c.pull(repo, tag, img); err != nil {
					t.Error(err)
				}
			}
		}
		slices.Sort(want)
		st, _, body := r.Do(t, "GET", "/v2/"+repo+"/tags/list", c.tok, nil, nil)
		var list struct{ Tags []string }
		_ = json.Unmarshal(body, &list)
		slices.Sort(list.Tags)
		if (st != 200 && !(st == 404 && len(want) == 0)) || !slices.Equal(list.Tags, want) {
			t.Errorf("tags of %s: %d %v, want %v", repo, st, list.Tags, want)
		}
	}
	if d := danglingManifests(t, root); len(d) > 0 {
		t.Fatalf("manifests with missing blobs:\n%s", strings.Join(d, "\n"))
	}
	// Every blob re-hashes to its digest, and after the quiet last run
	// every blob is referenced by a manifest some repository holds.
	referenced := referencedBlobs(t, root)
	for d := range storedBlobs(t, root) {
		hexd := strings.TrimPrefix(d, "sha256:")
		b, err := os.ReadFile(filepath.Join(root, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data"))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); "sha256:"+hex.EncodeToString(sum[:]) != d {
			t.Errorf("blob %s: its data hashes to sha256:%x", d, sum)
		}
		if !referenced[d] {
			t.Errorf("blob %s is referenced by no manifest after the last run", d)
		}
	}
}

// referencedBlobs are the manifests linked in the repositories in storage
// under root and the blobs (config, layers) they reference.
func referencedBlobs(t *testing.T, root string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir(filepath.Join(root, "docker/registry/v2/repositories"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "link" || !strings.Contains(p, "/_manifests/revisions/sha256/") {
			return err
		}
		hexd := filepath.Base(filepath.Dir(p))
		out["sha256:"+hexd] = true
		b, err := os.ReadFile(filepath.Join(root, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data"))
		if err != nil {
			return err
		}
		var m struct {
			Config *struct{ Digest string }  `json:"config"`
			Layers []struct{ Digest string } `json:"layers"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("manifest %s: %w", p, err)
		}
		if m.Config != nil {
			out[m.Config.Digest] = true
		}
		for _, l := range m.Layers {
			out[l.Digest] = true
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// logStressDigests logs what the runs' logs say of the digests the
// pushers' errors name: deleted, kept, or nothing.
func logStressDigests[T any](t *testing.T, r *registrytest.Replica, results []T) {
	t.Helper()
	digests := map[string]bool{}
	for _, res := range results {
		for _, w := range strings.Fields(fmt.Sprintf("%+v", res)) {
			if i := strings.Index(w, "sha256:"); i >= 0 && len(w) >= i+71 {
				digests[w[i:i+71]] = true
			}
		}
	}
	var list struct{ Jobs []gcJob }
	r.API(t, admin, adminPW, "GET", "/api/v0/jobs?action=onlinegc&limit=1000", nil, &list)
	for _, j := range list.Jobs {
		for _, l := range jobLog(t, r, j.ID) {
			for d := range digests {
				if strings.Contains(l, d) {
					t.Logf("job %s: %s", j.ID, l)
				}
			}
		}
	}
}
