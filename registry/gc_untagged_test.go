package registry_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// ageRevisions dates every manifest revision link under repos back by age,
// as if pushed then: a run keeps untagged manifests younger than 10 minutes.
func ageRevisions(t *testing.T, root string, age time.Duration) {
	t.Helper()
	then := time.Now().Add(-age)
	dir := filepath.Join(root, "docker/registry/v2/repositories")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == "link" && strings.Contains(p, "/_manifests/revisions/") {
			return os.Chtimes(p, then, then)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGCDeleteUntagged: with deleteUntagged, a run removes from each
// repository the manifests no tag keeps — an image whose tag moved, an
// image pushed by digest only, a signature of an untagged image — and
// frees the blobs only they used; it keeps what tags name, an index's
// children, the referrers of a tagged image, a manifest another
// repository tags (only this repository's link goes), and an untagged
// manifest pushed in the last minutes. The dry run names exactly what the
// run then removes.
func TestGCDeleteUntagged(t *testing.T) {
	r := registrytest.StartNew(t)
	root := filepath.Join(r.Opts.DataDir, "registry")
	tok := r.Token(t, admin, adminPW, "repository:admin/app:push,pull,delete", "repository:admin/other:push,pull")
	layer := func(name string, kb int) []byte { return []byte(strings.Repeat(name+" layer data ", kb*1024/16)) }
	shared := layer("shared", 32)
	put := func(repo, ref, mediaType string, body []byte) string {
		t.Helper()
		if ref == "" {
			ref = registrytest.Digest(body)
		}
		if st, _, b := r.Do(t, "PUT", "/v2/"+repo+"/manifests/"+ref, tok, body, map[string]string{"Content-Type": mediaType}); st != 201 {
			t.Fatalf("PUT %s:%s: %d %s", repo, ref, st, b)
		}
		return registrytest.Digest(body)
	}
	signature := func(subject string, subjectBody []byte, name string) []byte {
		sig, st := r.PushBlob(t, tok, "admin/app", layer(name, 1))
		if st != 201 {
			t.Fatalf("pushing %s: %d", name, st)
		}
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":"application/vnd.example.sig","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/octet-stream","digest":%q,"size":%d}],"subject":{"mediaType":%q,"digest":%q,"size":%d}}`,
			ociManifest, sig, len(layer(name, 1)), ociManifest, subject, len(subjectBody)))
	}
	if _, st := r.PushBlob(t, tok, "admin/app", []byte("{}")); st != 201 {
		t.Fatalf("pushing the empty config: %d", st)
	}

	moved, movedM := pushLayers(t, r, tok, "admin/app", "v1", shared, layer("moved", 4)) // tag moves away below
	current, currentM := pushLayers(t, r, tok, "admin/app", "v1", shared, layer("current", 5))
	byDigest, _ := pushLayers(t, r, tok, "admin/app", "", shared, layer("bydigest", 6))
	both, _ := pushLayers(t, r, tok, "admin/app", "", shared, layer("both", 7))
	if d, _ := pushLayers(t, r, tok, "admin/other", "keep", shared, layer("both", 7)); d != both {
		t.Fatalf("the same image in admin/other has digest %s, want %s", d, both)
	}
	c1, c1m := pushLayers(t, r, tok, "admin/app", "", shared, layer("child1", 8))
	c2, c2m := pushLayers(t, r, tok, "admin/app", "", shared, layer("child2", 9))
	put("admin/app", "multi", "application/vnd.oci.image.index.v1+json", []byte(fmt.Sprintf(
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":%q,"digest":%q,"size":%d},{"mediaType":%q,"digest":%q,"size":%d}]}`,
		ociManifest, c1, len(c1m), ociManifest, c2, len(c2m))))
	keptSig := put("admin/app", "", ociManifest, signature(current, currentM, "sig-current"))
	goneSig := put("admin/app", "", ociManifest, signature(moved, movedM, "sig-moved"))
	ageRevisions(t, root, 2*time.Hour)
	fresh, _ := pushLayers(t, r, tok, "admin/app", "", shared, layer("fresh", 10)) // untagged, but just pushed

	before := storedBlobs(t, root)
	params := map[string]string{"deleteUntagged": "true", "gracePeriod": "0s"}
	dry := runGC(t, r, map[string]string{"deleteUntagged": "true", "gracePeriod": "0s", "dryRun": "true"}, meta.JobDone)
	wouldRemove := loggedDigests(jobLog(t, r, dry.ID), "would remove untagged manifest")
	want := map[string]bool{moved: true, byDigest: true, both: true, goneSig: true}
	if !equalSets(wouldRemove, want) || dry.Progress.UntaggedManifests != 4 {
		t.Fatalf("dry run: would remove %v (%d untagged), want %v", keys(wouldRemove), dry.Progress.UntaggedManifests, keys(want))
	}
	if after := storedBlobs(t, root); len(after) != len(before) {
		t.Fatalf("the dry run deleted %d blobs", len(before)-len(after))
	}

	j := runGC(t, r, params, meta.JobDone)
	lines := jobLog(t, r, j.ID)
	if removed := loggedDigests(lines, "removed untagged manifest"); !equalSets(removed, want) || j.Progress.ManifestsRemoved != 4 {
		t.Fatalf("removed %v (%d), want %v; log:\n%s", keys(removed), j.Progress.ManifestsRemoved, keys(want), strings.Join(lines, "\n"))
	}
	for _, d := range []string{moved, byDigest, both, goneSig} {
		if st, _, _ := r.Do(t, "GET", "/v2/admin/app/manifests/"+d, tok, nil, map[string]string{"Accept": ociManifest}); st != 404 {
			t.Errorf("admin/app@%s after the run: %d, want 404", d, st)
		}
	}
	pullVerified(t, r, tok, "admin/app", "v1")
	pullVerified(t, r, tok, "admin/app", "multi")
	pullVerified(t, r, tok, "admin/app", keptSig)
	pullVerified(t, r, tok, "admin/app", fresh)
	pullVerified(t, r, tok, "admin/other", "keep")
	pullVerified(t, r, tok, "admin/other", both)

	// Freed: the manifests removed everywhere and the layers only they used.
	after := storedBlobs(t, root)
	var freed int64
	for d, n := range before {
		if _, ok := after[d]; !ok {
			freed += n
		}
	}
	if j.Progress.BytesFreed != freed || j.Progress.BlobsSwept != int64(len(before)-len(after)) {
		t.Errorf("progress says %d blobs, %d bytes freed; storage lost %d blobs, %d bytes", j.Progress.BlobsSwept, j.Progress.BytesFreed, len(before)-len(after), freed)
	}
	for _, d := range []string{moved, byDigest, goneSig, registrytest.Digest(layer("moved", 4)), registrytest.Digest(layer("bydigest", 6)), registrytest.Digest(layer("sig-moved", 1))} {
		if _, ok := after[d]; ok {
			t.Errorf("blob %s survived the run", d)
		}
	}
	if _, ok := after[both]; !ok {
		t.Errorf("manifest %s, tagged in admin/other, was deleted", both)
	}
	if dangling := danglingManifests(t, root); len(dangling) > 0 {
		t.Fatalf("manifests with missing blobs: %v", dangling)
	}

	// A second run finds nothing more to do.
	if j := runGC(t, r, params, meta.JobDone); j.Progress.UntaggedManifests != 0 || j.Progress.BlobsSwept != 0 {
		t.Errorf("second run: %+v", j.Progress)
	}
}

func equalSets(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
