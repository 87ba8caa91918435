package registry_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// takeBackupWith asks for a backup with or without the images.
func takeBackupWith(t *testing.T, r *registrytest.Replica, images bool) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/v0/meta/backup?includeImages=%v", r.URL, images), nil)
	req.SetBasicAuth(admin, adminPW)
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v0/meta/backup: %v %s %.300s", err, resp.Status, b)
	}
	return b
}

// drImage is a tag the drill expects back.
type drImage struct{ repo, tag, digest string }

// pushDrillImages pushes several repositories sharing a layer, a
// two-platform index and a signature-like referrer; it returns the tags.
func pushDrillImages(t *testing.T, r *registrytest.Replica) []drImage {
	t.Helper()
	tok := r.Token(t, admin, adminPW, "repository:admin/app:push,pull", "repository:admin/tools:push,pull", "repository:admin/multi:push,pull")
	shared := make([]byte, 1<<20)
	rand.Read(shared)
	own := func(n int) []byte { b := make([]byte, n); rand.Read(b); return b }
	var out []drImage
	app, appM := pushLayers(t, r, tok, "admin/app", "v1", shared, own(300<<10))
	out = append(out, drImage{"admin/app", "v1", app})
	app2, _ := pushLayers(t, r, tok, "admin/app", "v2", shared, own(10<<10))
	out = append(out, drImage{"admin/app", "v2", app2})
	tools, _ := pushLayers(t, r, tok, "admin/tools", "latest", shared)
	out = append(out, drImage{"admin/tools", "latest", tools})
	amd, amdM := pushLayers(t, r, tok, "admin/multi", "", shared, own(1000))
	arm, armM := pushLayers(t, r, tok, "admin/multi", "", own(2000))
	index := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"arm64","os":"linux"}}]}`,
		ociManifest, amd, len(amdM), ociManifest, arm, len(armM)))
	if st, _, b := r.Do(t, "PUT", "/v2/admin/multi/manifests/v1", tok, index, map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}); st != 201 {
		t.Fatalf("pushing the index: %d %s", st, b)
	}
	out = append(out, drImage{"admin/multi", "v1", registrytest.Digest(index)})
	art, ad := artifactFor(t, r, tok, "admin/app", registrytest.Image{Manifest: appM, ManifestDigest: app})
	if st, _, b := putManifest(t, r, tok, "admin/app", ad, art); st != 201 {
		t.Fatalf("pushing the referrer: %d %s", st, b)
	}
	return out
}

// checkImagesBack pulls every tag (same digest) and every blob its
// manifests name (re-hashed), following indexes, and the referrer.
func checkImagesBack(t *testing.T, r *registrytest.Replica, imgs []drImage) {
	t.Helper()
	accept := map[string]string{"Accept": ociManifest + ", application/vnd.oci.image.index.v1+json"}
	for _, im := range imgs {
		tok := r.Token(t, admin, adminPW, "repository:"+im.repo+":pull")
		pending := []string{im.tag}
		for len(pending) > 0 {
			ref := pending[0]
			pending = pending[1:]
			st, h, body := r.Do(t, "GET", "/v2/"+im.repo+"/manifests/"+ref, tok, nil, accept)
			if st != 200 {
				t.Fatalf("pulling %s:%s (%s): %d %s", im.repo, im.tag, ref, st, body)
			}
			if ref == im.tag && h.Get("Docker-Content-Digest") != im.digest {
				t.Fatalf("%s:%s is %s, was %s", im.repo, im.tag, h.Get("Docker-Content-Digest"), im.digest)
			}
			if got := registrytest.Digest(body); ref != im.tag && got != ref {
				t.Fatalf("manifest %s re-hashes to %s", ref, got)
			}
			var m struct {
				Config    *struct{ Digest string }
				Layers    []struct{ Digest string }
				Manifests []struct{ Digest string }
			}
			json.Unmarshal(body, &m)
			var blobs []string
			if m.Config != nil {
				blobs = append(blobs, m.Config.Digest)
			}
			for _, l := range m.Layers {
				blobs = append(blobs, l.Digest)
			}
			for _, c := range m.Manifests {
				pending = append(pending, c.Digest)
			}
			for _, d := range blobs {
				st, _, b := r.Do(t, "GET", "/v2/"+im.repo+"/blobs/"+d, tok, nil, nil)
				if st != 200 || registrytest.Digest(b) != d {
					t.Fatalf("blob %s of %s:%s: %d, re-hashes to %s", d, im.repo, im.tag, st, registrytest.Digest(b))
				}
			}
		}
	}
	tok := r.Token(t, admin, adminPW, "repository:admin/app:pull")
	if refs := referrersOf(t, r, tok, "admin/app", imgs[0].digest); !strings.Contains(refs, "application/vnd.example.sbom") {
		t.Fatalf("the referrer is gone: %s", refs)
	}
}

// rehashStorage re-hashes every blob in a filesystem storage.
func rehashStorage(t *testing.T, root string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(root, "docker/registry/v2/blobs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "data" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		if hex.EncodeToString(h[:]) != filepath.Base(filepath.Dir(p)) {
			t.Errorf("%s does not re-hash", p)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func storageCheck(t *testing.T, r *registrytest.Replica) contract.StorageCheck {
	t.Helper()
	var res contract.StorageCheck
	if st := r.API(t, admin, adminPW, "GET", contract.StorageCheckPath, nil, &res); st != 200 {
		t.Fatalf("GET %s: %d", contract.StorageCheckPath, st)
	}
	return res
}

// restoreInto starts a replica that restores bk into an empty storage of
// its own.
func restoreInto(t *testing.T, bk []byte) *registrytest.Replica {
	t.Helper()
	o := restoreOptions(t, bk, filepath.Join(t.TempDir(), "restored"))
	o.ReplicaID = "bbbbbbbbbbbb"
	o.StorageRoot = filepath.Join(t.TempDir(), "empty-storage")
	os.MkdirAll(filepath.Join(o.DataDir, "restore"), 0o700)
	if err := os.WriteFile(filepath.Join(o.DataDir, "restore", "backup.tar"), bk, 0o600); err != nil {
		t.Fatal(err)
	}
	return registrytest.Start(t, o)
}

// TestBackupRestoreImages: a backup with images restores into an empty
// storage: every tag pulls with its digest, every blob re-hashes, the
// referrer is back, and the storage check finds nothing missing.
func TestBackupRestoreImages(t *testing.T) {
	a := registrytest.StartNew(t)
	imgs := pushDrillImages(t, a)
	// A deleted manifest leaves its revision directory: not a manifest to
	// back up, nor to bring back.
	dtok := a.Token(t, admin, adminPW, "repository:admin/tools:push,pull,delete")
	gone, _ := pushLayers(t, a, dtok, "admin/tools", "gone", []byte("deleted before the backup"))
	if st, _, b := a.Do(t, "DELETE", "/v2/admin/tools/manifests/"+gone, dtok, nil, nil); st != 202 {
		t.Fatalf("deleting %s: %d %s", gone, st, b)
	}
	if res := storageCheck(t, a); res.MissingBlobs != 0 || res.ReferencedBlobs < 10 {
		t.Fatalf("storage check of the source: %+v", res)
	}
	bk := takeBackupWith(t, a, true)
	m, err := backup.Verify(bytes.NewReader(bk))
	if err != nil {
		t.Fatal(err)
	}
	// 4 tags; manifests: app v1, v2, referrer, tools, amd, arm, index.
	if im := m.Images; im == nil || !im.Included || im.Tags != 4 || im.Manifests != 7 || im.Missing != 0 || im.Repositories != 3 {
		t.Fatalf("image summary: %+v", m.Images)
	}
	// Each blob once: the shared layer is in the archive one time.
	blobs := 0
	for _, f := range m.Files {
		if strings.HasPrefix(f.Path, "images/blobs/") {
			blobs++
		}
	}
	if blobs != m.Images.Blobs {
		t.Fatalf("%d blob members for %d referenced blobs", blobs, m.Images.Blobs)
	}
	t.Logf("backup with images: %d bytes, %d blobs (%d bytes of them)", len(bk), blobs, m.Images.Bytes)
	a.Stop()

	b := restoreInto(t, bk)
	checkImagesBack(t, b, imgs)
	if st, _, _ := b.Do(t, "GET", "/v2/admin/tools/manifests/"+gone, b.Token(t, admin, adminPW, "repository:admin/tools:pull"), nil, map[string]string{"Accept": ociManifest}); st != 404 {
		t.Fatalf("the manifest deleted before the backup came back: %d", st)
	}
	if n := rehashStorage(t, b.Opts.StorageRoot); n != m.Images.Blobs {
		t.Fatalf("the restored storage holds %d blobs, the backup %d", n, m.Images.Blobs)
	}
	if res := storageCheck(t, b); res.MissingBlobs != 0 || res.ReferencedBlobs != m.Images.Blobs {
		t.Fatalf("storage check after restore: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(b.Opts.DataDir, "restore", "backup.tar")); !os.IsNotExist(err) {
		t.Errorf("the received backup is still on disk after the restore: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b.Opts.StorageRoot, "dtr-restore")); err == nil {
		entries, _ := os.ReadDir(filepath.Join(b.Opts.StorageRoot, "dtr-restore"))
		if len(entries) > 0 {
			t.Errorf("staged blobs left behind: %d", len(entries))
		}
	}
	// A push onto the restored registry mounts the restored layer: the
	// layer links are there for the push path (and its GC guard) too.
	tok := b.Token(t, admin, adminPW, "repository:admin/tools:push,pull")
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	var m1 struct{ Layers []struct{ Digest string } }
	_, _, body := b.Do(t, "GET", "/v2/admin/tools/manifests/latest", tok, nil, map[string]string{"Accept": ociManifest})
	json.Unmarshal(body, &m1)
	if st, _, _ := b.Do(t, "HEAD", "/v2/admin/tools/blobs/"+m1.Layers[0].Digest, tok, nil, nil); st != 200 {
		t.Fatalf("HEAD of a restored layer: %d", st)
	}
	cd, _ := b.PushBlob(t, tok, "admin/tools", cfg)
	m2 := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		ociManifest, cd, len(cfg), m1.Layers[0].Digest, 1<<20))
	if st, _, b := putManifest(t, b, tok, "admin/tools", "v2", m2); st != 201 {
		t.Fatalf("pushing onto the restored layer: %d %s", st, b)
	}
	// A restart restores nothing again.
	checkImagesBack(t, b.Restart(), imgs)
}

// TestRestoreWithoutImagesReportsMissing: a backup without images, restored
// onto an empty storage, names the tags whose blobs are missing.
func TestRestoreWithoutImagesReportsMissing(t *testing.T) {
	a := registrytest.StartNew(t)
	imgs := pushDrillImages(t, a)
	bk := takeBackupWith(t, a, false)
	m, err := backup.Verify(bytes.NewReader(bk))
	if err != nil {
		t.Fatal(err)
	}
	if im := m.Images; im == nil || im.Included || im.Tags != 4 {
		t.Fatalf("image summary: %+v", m.Images)
	}
	for _, f := range m.Files {
		if strings.HasPrefix(f.Path, "images/blobs/") {
			t.Fatalf("a backup without images holds %s", f.Path)
		}
	}
	a.Stop()
	b := restoreInto(t, bk)
	live := storageCheck(t, b)
	if live.Restored == nil {
		t.Fatalf("no check of the restored backup: %+v", live)
	}
	res := live.Missing()
	if res.MissingBlobs != m.Images.Blobs || res.AffectedTags != len(imgs) || res.AffectedRepositories != 3 {
		t.Fatalf("storage check: %+v", res)
	}
	sum := res.Summary()
	for _, im := range imgs {
		if !strings.Contains(sum, im.repo+":"+im.tag) {
			t.Errorf("the report does not name %s:%s: %s", im.repo, im.tag, sum)
		}
	}
	t.Logf("report: %s", sum)
	// Once the blobs are there (copied from the old storage), the check
	// says so and forgets the restored index.
	copyTree(t, filepath.Join(a.Opts.DataDir, "registry", "docker/registry/v2/blobs"), filepath.Join(b.Opts.StorageRoot, "docker/registry/v2/blobs"))
	if res := storageCheck(t, b); res.Restored == nil || res.Restored.MissingBlobs != 0 {
		t.Fatalf("storage check after copying the blobs: %+v", res.Restored)
	}
	if res := storageCheck(t, b); res.Restored != nil {
		t.Fatalf("the restored index is still checked: %+v", res.Restored)
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBackupRestoreImagesS3: a restore that keeps the backed-up S3 storage
// writes the images into the bucket, which lost them.
func TestBackupRestoreImagesS3(t *testing.T) {
	if testing.Short() {
		t.Skip("S3 test: skipped with -short")
	}
	s3 := registrytest.StartS3(t)
	o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
	o.Storage = s3.Storage()
	a := registrytest.Start(t, o)
	imgs := pushDrillImages(t, a)
	bk := takeBackupWith(t, a, true)
	a.Stop()
	if _, err := os.Stat(filepath.Join(s3.ObjectDir(), "docker/registry/v2/blobs")); err != nil {
		t.Fatalf("the bucket's blobs are not where the test empties it: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(s3.ObjectDir(), "docker")); err != nil {
		t.Fatal(err)
	}
	b := restoreInto(t, bk)
	checkImagesBack(t, b, imgs)
	if res := storageCheck(t, b); res.MissingBlobs != 0 || res.ReferencedBlobs == 0 {
		t.Fatalf("storage check after the restore into S3: %+v", res)
	}
	if entries, _ := os.ReadDir(filepath.Join(s3.ObjectDir(), "dtr-restore")); len(entries) > 0 {
		t.Errorf("staged blobs left in the bucket: %d", len(entries))
	}
}

// TestBackupIndexMeasure measures what the image index adds to a backup of
// a large registry (docs/backup.md): 10,000 repositories × 5 tags laid out
// in storage (DTR_BACKUP_BENCH_REPOS changes it). DTR_BACKUP_BENCH=1 runs it.
func TestBackupIndexMeasure(t *testing.T) {
	if os.Getenv("DTR_BACKUP_BENCH") == "" {
		t.Skip("the backup index measurement: DTR_BACKUP_BENCH=1 runs it (docs/backup.md)")
	}
	total := 10000
	if v, err := strconv.Atoi(os.Getenv("DTR_BACKUP_BENCH_REPOS")); err == nil && v >= 10 {
		total = v / 10 * 10
	}
	l := gcLayout{namespaces: 10, perNamespace: total / 10, tags: 5, layerSize: 4096, base: randomBytes(64 << 10)}
	r := registrytest.StartNew(t)
	for n := range l.namespaces {
		if st := r.API(t, admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": fmt.Sprintf("org%d", n), "isOrg": true}, nil); st != http.StatusCreated {
			t.Fatalf("creating org%d: %d", n, st)
		}
	}
	files, _ := l.write(t, filepath.Join(r.Opts.DataDir, "registry"), false)
	if res, err := r.Reconcile(context.Background()); err != nil || len(res.Created) != total {
		t.Fatalf("recording the repositories: %d created, %v", len(res.Created), err)
	}
	for i, images := range []bool{false, true, false, true} {
		// DTR_BACKUP_BENCH_CPUPROFILE=<file>: a CPU profile of the third
		// backup (without images, warm), for finding where the time goes.
		var prof *os.File
		if p := os.Getenv("DTR_BACKUP_BENCH_CPUPROFILE"); p != "" && i == 2 {
			var err error
			if prof, err = os.Create(p); err != nil {
				t.Fatal(err)
			}
			if err := pprof.StartCPUProfile(prof); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		bk := takeBackupWith(t, r, images)
		took := time.Since(start)
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
		}
		m, err := backup.Verify(bytes.NewReader(bk))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d repositories (%d files in storage), images=%v: %v, %d bytes, %d tags, %d blobs (%d bytes)",
			total, files, images, took.Round(time.Millisecond), len(bk), m.Images.Tags, m.Images.Blobs, m.Images.Bytes)
	}
}
