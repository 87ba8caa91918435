package registry_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

// startUpload starts a blob upload in repo, sends part of a blob and never
// finishes it, as a client killed mid-push does; it returns the upload's id
// and where to continue it.
func startUpload(t *testing.T, r *registrytest.Replica, tok, repo string, part []byte) (id, loc string) {
	t.Helper()
	st, h, body := r.Do(t, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", tok, nil, nil)
	if st != http.StatusAccepted {
		t.Fatalf("starting an upload: %d %s", st, body)
	}
	st, h, body = r.Do(t, http.MethodPatch, relative(h.Get("Location")), tok, part, map[string]string{"Content-Type": "application/octet-stream"})
	if st != http.StatusAccepted {
		t.Fatalf("sending part of a blob: %d %s", st, body)
	}
	return h.Get("Docker-Upload-UUID"), relative(h.Get("Location"))
}

func relative(loc string) string {
	if u, err := url.Parse(loc); err == nil && u.IsAbs() {
		return u.RequestURI()
	}
	return loc
}

// writeAged writes a file (and its directory) last modified age ago.
func writeAged(t testing.TB, p string, content []byte, age time.Duration) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-age)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// A sweep removes the uploads unfinished for more than a week (also one
// whose startedat was never written) and the temporary files a kill left in
// the storage and the data directories, keeps fresh ones, and never touches
// what was pushed.
func TestSweepLeftovers(t *testing.T) {
	r := registrytest.StartNew(t)
	const repo = "admin/leftovers"
	tok := r.Token(t, admin, adminPW, "repository:"+repo+":push,pull")
	img, st := r.PushImage(t, tok, repo, "v1", []byte("layer that must survive"))
	if st != http.StatusCreated {
		t.Fatalf("push: %d", st)
	}
	storage := filepath.Join(r.Opts.DataDir, "registry", "docker/registry/v2")
	uploads := filepath.Join(storage, "repositories", repo, "_uploads")

	oldID, oldLoc := startUpload(t, r, tok, repo, []byte("abandoned a week ago"))
	week := 8 * 24 * time.Hour
	if err := os.WriteFile(filepath.Join(uploads, oldID, "startedat"), []byte(time.Now().Add(-week).UTC().Format(time.RFC3339)), 0o600); err != nil {
		t.Fatal(err)
	}
	freshID, freshLoc := startUpload(t, r, tok, repo, []byte("fresh "))

	// A kill while Distribution wrote an upload's startedat: the directory
	// holds only the driver's temporary file.
	const noStartID = "0b5e3a36-7c1e-4d7b-9a57-2f0b8c1d2e3f"
	writeAged(t, filepath.Join(uploads, noStartID, "startedat.5f7d1c2a-3b4e-4f60-8a91-0c2d3e4f5a6b.tmp"), []byte("x"), week)
	if err := os.Chtimes(filepath.Join(uploads, noStartID), time.Now().Add(-week), time.Now().Add(-week)); err != nil {
		t.Fatal(err)
	}

	hex := strings.TrimPrefix(img.ManifestDigest, "sha256:")
	oldTemps := []string{
		filepath.Join(storage, "repositories", repo, "_manifests/tags/v1/current/link.6a0c8f7e-1d2b-4c3a-9e8f-7a6b5c4d3e2f.tmp"),
		filepath.Join(storage, "blobs/sha256", hex[:2], hex, "data.7b1d9e8f-2e3c-4d4b-8f9a-8b7c6d5e4f3a.tmp"),
		filepath.Join(r.Opts.DataDir, "tls", "server.pem.tmp"),
		filepath.Join(r.Opts.DataDir, "restore", "receiving-123456.tar"),
	}
	for _, p := range oldTemps {
		writeAged(t, p, []byte("left by a kill"), 2*time.Hour)
	}
	keep := []string{
		// fresh: a write may be under way
		filepath.Join(storage, "repositories", repo, "_manifests/tags/v1/current/link.8c2e0f9a-3f4d-4e5c-9a0b-9c8d7e6f5a4b.tmp"),
		filepath.Join(r.Opts.DataDir, "tls", "peer.pem.tmp"),
		// not a form the driver writes
		filepath.Join(storage, "repositories", repo, "notes.tmp"),
	}
	writeAged(t, keep[0], []byte("x"), time.Minute)
	writeAged(t, keep[1], []byte("x"), time.Minute)
	writeAged(t, keep[2], []byte("x"), 2*time.Hour)

	res, err := r.SweepLeftovers(context.Background(), true)
	if err != nil || res.Errors != 0 {
		t.Fatalf("sweep: %+v, %v", res, err)
	}
	slices.Sort(res.Uploads)
	wantUploads := []string{repo + "/" + noStartID, repo + "/" + oldID}
	slices.Sort(wantUploads)
	if !slices.Equal(res.Uploads, wantUploads) || res.UploadBytes < int64(len("abandoned a week ago")) {
		t.Fatalf("uploads removed: %v (%d bytes); want %v", res.Uploads, res.UploadBytes, wantUploads)
	}
	slices.Sort(res.TempFiles)
	want := slices.Clone(oldTemps)
	slices.Sort(want)
	if !slices.Equal(res.TempFiles, want) || res.TempBytes != int64(len(oldTemps)*len("left by a kill")) {
		t.Fatalf("temporary files removed: %v (%d bytes); want %v", res.TempFiles, res.TempBytes, want)
	}
	for _, p := range append([]string{filepath.Join(uploads, oldID), filepath.Join(uploads, noStartID)}, oldTemps...) {
		if exists(p) {
			t.Errorf("%s is still there", p)
		}
	}
	for _, p := range append([]string{filepath.Join(uploads, freshID)}, keep...) {
		if !exists(p) {
			t.Errorf("%s was removed", p)
		}
	}

	// The abandoned upload is gone for the client too; the fresh one
	// finishes; what was pushed is still served, byte for byte.
	if st, _, body := r.Do(t, http.MethodPatch, oldLoc, tok, []byte("more"), map[string]string{"Content-Type": "application/octet-stream"}); st != http.StatusNotFound {
		t.Errorf("continuing a removed upload: %d %s; want 404", st, body)
	}
	blob := []byte("fresh upload, finished")
	sep := "?"
	if strings.Contains(freshLoc, "?") {
		sep = "&"
	}
	if st, _, body := r.Do(t, http.MethodPut, freshLoc+sep+"digest="+registrytest.Digest(blob), tok, blob[len("fresh "):], map[string]string{"Content-Type": "application/octet-stream"}); st != http.StatusCreated {
		t.Errorf("finishing the fresh upload: %d %s", st, body)
	}
	st, _, body := r.Do(t, http.MethodGet, "/v2/"+repo+"/manifests/v1", tok, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	if st != http.StatusOK || !bytes.Equal(body, img.Manifest) {
		t.Fatalf("pulling the manifest after the sweep: %d %s", st, body)
	}
	st, _, body = r.Do(t, http.MethodGet, "/v2/"+repo+"/blobs/"+registrytest.Digest(img.Layer), tok, nil, nil)
	if st != http.StatusOK || !bytes.Equal(body, img.Layer) {
		t.Fatalf("pulling the layer after the sweep: %d %q", st, body)
	}

	// Nothing is left for the next sweep.
	res, err = r.SweepLeftovers(context.Background(), true)
	if err != nil || len(res.Uploads)+len(res.TempFiles)+res.Errors != 0 {
		t.Fatalf("second sweep: %+v, %v; want nothing removed", res, err)
	}
}

// Without the storage (a replica that is not the metadata leader), only the
// replica's own data directories are swept.
func TestSweepLeftoversDataDirsOnly(t *testing.T) {
	r := registrytest.StartNew(t)
	storageTemp := filepath.Join(r.Opts.DataDir, "registry", "docker/registry/v2/repositories/admin/x/_manifests/tags/v1/current/link.6a0c8f7e-1d2b-4c3a-9e8f-7a6b5c4d3e2f.tmp")
	dataTemp := filepath.Join(r.Opts.DataDir, "tls", "server.pem.tmp")
	writeAged(t, storageTemp, []byte("x"), 2*time.Hour)
	writeAged(t, dataTemp, []byte("x"), 2*time.Hour)
	res, err := r.SweepLeftovers(context.Background(), false)
	if err != nil || res.Repositories != 0 || !slices.Equal(res.TempFiles, []string{dataTemp}) {
		t.Fatalf("sweep without storage: %+v, %v; want only %s removed", res, err, dataTemp)
	}
	if !exists(storageTemp) {
		t.Fatal("a sweep without storage removed a file in the storage")
	}
}

// BenchmarkSweepLeftovers measures one sweep over 10,000 repositories (10
// namespaces of 1,000, each with a tagged manifest and a layer link) in
// filesystem storage, laid out directly on disk: with nothing to remove
// (the usual run), and with 100 abandoned uploads of 1 MiB and 100 stray
// temporary files to remove.
func BenchmarkSweepLeftovers(b *testing.B) {
	const namespaces, perNamespace, leftovers = 10, 1000, 100
	r := registrytest.StartNew(b)
	root := filepath.Join(r.Opts.DataDir, "registry", "docker/registry/v2")
	const hex = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	const layer = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
	writeAged(b, filepath.Join(root, "blobs/sha256", hex[:2], hex, "data"), []byte("{}"), 0)
	var repos []string
	for n := range namespaces {
		for i := range perNamespace {
			repo := filepath.Join(root, "repositories", fmt.Sprintf("org%d", n), fmt.Sprintf("app%d", i))
			repos = append(repos, repo)
			for _, p := range []string{
				"_manifests/revisions/sha256/" + hex + "/link",
				"_manifests/tags/latest/current/link",
				"_manifests/tags/latest/index/sha256/" + hex + "/link",
				"_layers/sha256/" + layer + "/link",
			} {
				writeAged(b, filepath.Join(repo, p), []byte("sha256:"+hex), 0)
			}
		}
	}
	data := bytes.Repeat([]byte("u"), 1<<20)
	plant := func() {
		for i := range leftovers {
			repo := repos[i*len(repos)/leftovers]
			up := filepath.Join(repo, "_uploads", fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
			writeAged(b, filepath.Join(up, "data"), data, 0)
			writeAged(b, filepath.Join(up, "startedat"), []byte(time.Now().Add(-200*time.Hour).UTC().Format(time.RFC3339)), 0)
			writeAged(b, filepath.Join(repo, "_manifests/tags/latest/current", fmt.Sprintf("link.00000000-0000-4000-8000-%012d.tmp", i)), []byte("sha256:"+hex), 2*time.Hour)
		}
	}
	ctx := context.Background()
	if res, err := r.SweepLeftovers(ctx, true); err != nil || res.Repositories != namespaces*perNamespace {
		b.Fatalf("first sweep: %+v, %v", res.Repositories, err)
	}
	b.Run("nothing-to-remove", func(b *testing.B) {
		for b.Loop() {
			res, err := r.SweepLeftovers(ctx, true)
			if err != nil || len(res.Uploads)+len(res.TempFiles) != 0 || res.Repositories != namespaces*perNamespace {
				b.Fatalf("%+v, %v", res, err)
			}
		}
	})
	// Distribution's own purger on the same tree, for comparison: it walks
	// every repository's directories except _layers and _manifests.
	b.Run("distribution-purger", func(b *testing.B) {
		drv := filesystem.New(filesystem.DriverParameters{RootDirectory: filepath.Join(r.Opts.DataDir, "registry"), MaxThreads: 100})
		for b.Loop() {
			if deleted, errs := storage.PurgeUploads(ctx, drv, time.Now().Add(-168*time.Hour), true); len(deleted)+len(errs) != 0 {
				b.Fatalf("%d deleted, %v", len(deleted), errs)
			}
		}
	})
	b.Run("100-uploads-100-temps", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			plant()
			b.StartTimer()
			res, err := r.SweepLeftovers(ctx, true)
			if err != nil || len(res.Uploads) != leftovers || len(res.TempFiles) != leftovers || res.UploadBytes < leftovers<<20 {
				b.Fatalf("%d uploads (%d bytes), %d temporary files, %v", len(res.Uploads), res.UploadBytes, len(res.TempFiles), err)
			}
		}
	})
}
