package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

const (
	ociManifestType = "application/vnd.oci.image.manifest.v1+json"
	ociIndexType    = "application/vnd.oci.image.index.v1+json"
)

// drillImages is what the images drill pushed: tag → digest, and every
// blob's digest.
type drillImages struct {
	tags  map[string]string // "repo:tag" → manifest digest
	bytes int64             // unique bytes pushed
}

// noise is n random bytes: layers that do not compress, as real ones
// mostly do not.
func noise(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// pushImageSet pushes three repositories sharing two large base layers
// (mounted, not uploaded again), a two-platform index, and a referrer; mb
// sets the size of the base layers.
func pushImageSet(t *testing.T, r *registrytest.Replica, mb int) *drillImages {
	t.Helper()
	repos := []string{"admin/base", "admin/web", "admin/api", "admin/multi"}
	scopes := make([]string, len(repos))
	for i, repo := range repos {
		scopes[i] = "repository:" + repo + ":push,pull"
	}
	tok := r.Token(t, "admin", adminPassword, scopes...)
	d := &drillImages{tags: map[string]string{}}
	upload := func(repo string, b []byte) string {
		dg, st := r.PushBlob(t, tok, repo, b)
		if st != http.StatusCreated {
			t.Fatalf("pushing a %d-byte blob to %s: %d", len(b), repo, st)
		}
		d.bytes += int64(len(b))
		return dg
	}
	mount := func(repo, from, dg string) {
		st, _, body := r.Do(t, "POST", "/v2/"+repo+"/blobs/uploads/?mount="+dg+"&from="+from, tok, nil, nil)
		if st != http.StatusCreated {
			t.Fatalf("mounting %s into %s: %d %s", dg, repo, st, body)
		}
	}
	type layer struct {
		digest string
		size   int
	}
	put := func(repo, ref string, layers ...layer) (string, []byte) {
		cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"repo":%q,"ref":%q}`, repo, ref))
		cd := upload(repo, cfg)
		descs := make([]string, len(layers))
		for i, l := range layers {
			descs[i] = fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}`, l.digest, l.size)
		}
		m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
			ociManifestType, cd, len(cfg), strings.Join(descs, ",")))
		if ref == "" {
			ref = registrytest.Digest(m)
		}
		if st, _, body := r.Do(t, "PUT", "/v2/"+repo+"/manifests/"+ref, tok, m, map[string]string{"Content-Type": ociManifestType}); st != http.StatusCreated {
			t.Fatalf("pushing %s:%s: %d %s", repo, ref, st, body)
		}
		return registrytest.Digest(m), m
	}
	base := []layer{}
	for i := 0; i < 2; i++ {
		b := noise(mb << 20)
		base = append(base, layer{upload("admin/base", b), len(b)})
	}
	dg, _ := put("admin/base", "1.0", base...)
	d.tags["admin/base:1.0"] = dg
	var webV1 []byte
	for _, repo := range []string{"admin/web", "admin/api", "admin/multi"} {
		for _, l := range base {
			mount(repo, "admin/base", l.digest)
		}
	}
	for _, repo := range []string{"admin/web", "admin/api"} {
		own := noise(mb << 19)
		ol := layer{upload(repo, own), len(own)}
		dg, m := put(repo, "v1", append(base, ol)...)
		d.tags[repo+":v1"] = dg
		if repo == "admin/web" {
			webV1 = m
		}
		small := noise(64 << 10)
		dg, _ = put(repo, "v2", append(base, ol, layer{upload(repo, small), len(small)})...)
		d.tags[repo+":v2"] = dg
		d.tags[repo+":latest"] = dg
	}
	// latest is v2 again: the same manifest under a second tag.
	for _, repo := range []string{"admin/web", "admin/api"} {
		_, _, m := r.Do(t, "GET", "/v2/"+repo+"/manifests/v2", tok, nil, map[string]string{"Accept": ociManifestType})
		if st, _, body := r.Do(t, "PUT", "/v2/"+repo+"/manifests/latest", tok, m, map[string]string{"Content-Type": ociManifestType}); st != http.StatusCreated {
			t.Fatalf("tagging %s:latest: %d %s", repo, st, body)
		}
	}
	// A two-platform index: both platforms share the base layers.
	amd, amdM := put("admin/multi", "", base[0], layer{upload("admin/multi", noise(1<<20)), 1 << 20})
	arm, armM := put("admin/multi", "", base[1], layer{upload("admin/multi", noise(2<<20)), 2 << 20})
	index := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"arm64","os":"linux"}}]}`,
		ociIndexType, ociManifestType, amd, len(amdM), ociManifestType, arm, len(armM)))
	if st, _, body := r.Do(t, "PUT", "/v2/admin/multi/manifests/v1", tok, index, map[string]string{"Content-Type": ociIndexType}); st != http.StatusCreated {
		t.Fatalf("pushing the index: %d %s", st, body)
	}
	d.tags["admin/multi:v1"] = registrytest.Digest(index)
	// A referrer (an SBOM) of admin/web:v1, stored by digest, untagged.
	empty := upload("admin/web", []byte("{}"))
	sbom := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":"application/vnd.example.sbom","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2}],"subject":{"mediaType":%q,"digest":%q,"size":%d}}`,
		ociManifestType, empty, empty, ociManifestType, d.tags["admin/web:v1"], len(webV1)))
	if st, _, body := r.Do(t, "PUT", "/v2/admin/web/manifests/"+registrytest.Digest(sbom), tok, sbom, map[string]string{"Content-Type": ociManifestType}); st != http.StatusCreated {
		t.Fatalf("pushing the referrer: %d %s", st, body)
	}
	return d
}

// verifyImages pulls every tag (the same digest), follows indexes, and
// re-hashes every manifest and blob it pulls; the referrer must be listed.
func verifyImages(t *testing.T, r *registrytest.Replica, d *drillImages) {
	t.Helper()
	accept := map[string]string{"Accept": ociManifestType + ", " + ociIndexType}
	blobs := 0
	for ref, want := range d.tags {
		repo, tag, _ := strings.Cut(ref, ":")
		tok := r.Token(t, "admin", adminPassword, "repository:"+repo+":pull")
		pending := []string{tag}
		for len(pending) > 0 {
			mref := pending[0]
			pending = pending[1:]
			st, h, body := r.Do(t, "GET", "/v2/"+repo+"/manifests/"+mref, tok, nil, accept)
			if st != 200 {
				t.Fatalf("pulling %s (%s): %d %s", ref, mref, st, body)
			}
			got := registrytest.Digest(body)
			if (mref == tag && (h.Get("Docker-Content-Digest") != want || got != want)) || (mref != tag && got != mref) {
				t.Fatalf("%s (%s) pulls as %s, hashes to %s; want %s", ref, mref, h.Get("Docker-Content-Digest"), got, want)
			}
			var m struct {
				Config    *struct{ Digest string }
				Layers    []struct{ Digest string }
				Manifests []struct{ Digest string }
			}
			json.Unmarshal(body, &m)
			var ds []string
			if m.Config != nil {
				ds = append(ds, m.Config.Digest)
			}
			for _, l := range m.Layers {
				ds = append(ds, l.Digest)
			}
			for _, c := range m.Manifests {
				pending = append(pending, c.Digest)
			}
			for _, dg := range ds {
				if got := pullBlobDigest(t, r, tok, repo, dg); got != dg {
					t.Fatalf("blob %s of %s re-hashes to %s", dg, ref, got)
				}
				blobs++
			}
		}
	}
	tok := r.Token(t, "admin", adminPassword, "repository:admin/web:pull")
	st, _, body := r.Do(t, "GET", "/v2/admin/web/referrers/"+d.tags["admin/web:v1"], tok, nil, nil)
	if st != 200 || !strings.Contains(string(body), "application/vnd.example.sbom") {
		t.Fatalf("the referrer of admin/web:v1: %d %s", st, body)
	}
	t.Logf("verified %d tags and %d blob pulls", len(d.tags), blobs)
}

// pullBlobDigest streams a blob and returns its sha256 digest.
func pullBlobDigest(t *testing.T, r *registrytest.Replica, tok, repo, dg string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", r.URL+"/v2/"+repo+"/blobs/"+dg, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET blob %s of %s: %s", dg, repo, resp.Status)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// rehashVolume re-hashes every blob in a replica's storage volume.
func rehashVolume(t *testing.T, volume string) (int, int64) {
	t.Helper()
	root := MustDocker(t, "volume", "inspect", "--format", "{{.Mountpoint}}", volume)
	n, size := 0, int64(0)
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Name() != "data" || !strings.Contains(p, "/blobs/sha256/") {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		k, err := io.Copy(h, f)
		if err != nil {
			return err
		}
		if hex.EncodeToString(h.Sum(nil)) != filepath.Base(filepath.Dir(p)) {
			t.Errorf("%s does not re-hash", p)
		}
		n++
		size += k
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, size
}

// backupTo runs dtr backup into a file; it returns the file, the log, the
// wall time and the installer's peak RSS (KiB).
func backupTo(t *testing.T, id string, extra ...string) (string, string, time.Duration, int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dtr.bkp")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	log, took, rss := timedDTR(t, nil, f, append([]string{"backup", "--existing-replica-id", id}, extra...)...)
	if !strings.Contains(log, "Backup complete.") {
		t.Fatalf("backup:\n%s", log)
	}
	return path, log, took, rss
}

// rewriteBackup streams a backup into a new file through fn, which may drop
// a member or change its bytes; the manifest is re-hashed and re-sealed,
// so that only the rule under test can refuse the result.
func rewriteBackup(t *testing.T, path string, fn func(name string, r io.Reader, w io.Writer) (keep bool, err error)) string {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	outPath := filepath.Join(t.TempDir(), "rewritten.bkp")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	tr, tw := tar.NewReader(in), tar.NewWriter(out)
	files := map[string]backup.File{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(strings.TrimSuffix(h.Name, "/"), "/")
		if h.Typeflag != tar.TypeReg {
			tw.WriteHeader(h)
			continue
		}
		if rest == backup.ManifestName {
			var m backup.Manifest
			if err := json.NewDecoder(tr).Decode(&m); err != nil {
				t.Fatal(err)
			}
			m.Files = m.Files[:0]
			for _, f := range files {
				m.Files = append(m.Files, f)
			}
			m.Seal()
			b, _ := json.Marshal(m)
			h.Size = int64(len(b))
			tw.WriteHeader(h)
			tw.Write(b)
			continue
		}
		// Into a temporary file first: the size goes in the header.
		tmp, err := os.CreateTemp(t.TempDir(), "member")
		if err != nil {
			t.Fatal(err)
		}
		keep, err := fn(rest, tr, tmp)
		if err != nil {
			t.Fatal(err)
		}
		if keep {
			tmp.Seek(0, io.SeekStart)
			st, _ := tmp.Stat()
			h.Size = st.Size()
			tw.WriteHeader(h)
			hs := sha256.New()
			io.Copy(io.MultiWriter(tw, hs), tmp)
			files[rest] = backup.File{Path: rest, Size: st.Size(), SHA256: hex.EncodeToString(hs.Sum(nil))}
		}
		tmp.Close()
		os.Remove(tmp.Name())
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return outPath
}

// TestDisasterRecoveryImages: the drill the README promises for a registry
// whose images live in the replica's own volume: backup --include-images,
// destroy (the volume goes), restore with --dtr-use-default-storage, and
// every tag pulls with the same digest and every blob re-hashes. Before
// that, damaged backups are refused with nothing created, and a restore
// of a backup without images names the tags the empty volume lacks.
// DTR_DR_IMAGES_MB sets the base layers' size (default 64: about 260 MB in
// all); DTR_BENCH_IMAGES names a file for the measured numbers.
func TestDisasterRecoveryImages(t *testing.T) {
	node := cleanSwarm(t)
	mb := 64
	if v, err := strconv.Atoi(os.Getenv("DTR_DR_IMAGES_MB")); err == nil && v > 0 {
		mb = v
	}
	first := replicaID(t, mustDTR(t, "install", "--ucp-node", node, "--replica-http-port", "31080", "--replica-https-port", "31443"))
	volume := "dtr-registry-" + first
	reg := remote(t, 31443)
	start := time.Now()
	imgs := pushImageSet(t, reg, mb)
	t.Logf("pushed %d tags, %d MiB in %v", len(imgs.tags), imgs.bytes>>20, time.Since(start).Round(100*time.Millisecond))
	srcBlobs, srcBytes := rehashVolume(t, volume)

	check := mustDTR(t, "backup", "--existing-replica-id", first, "--check-storage")
	if !strings.Contains(check, "The storage holds all") {
		t.Fatalf("backup --check-storage of a whole registry:\n%s", check)
	}
	plain, _, _, _ := backupTo(t, first)
	full, log, backupTook, backupRSS := backupTo(t, first, "--include-images")
	if !strings.Contains(log, "Images included:") {
		t.Fatalf("backup --include-images log:\n%s", log)
	}
	_, replicaBackupHWM := containerRSS(t, volume)
	st, _ := os.Stat(full)
	out, err := exec.Command("tar", "-tf", full).Output()
	if err != nil {
		t.Fatalf("tar -tf: %v", err)
	}
	if n := strings.Count(string(out), "/images/blobs/sha256/") - 1; n != srcBlobs {
		t.Fatalf("the backup holds %d blobs, the storage %d", n, srcBlobs)
	}
	// The same storage with tar, on the same disk, for comparison.
	mount := MustDocker(t, "volume", "inspect", "--format", "{{.Mountpoint}}", volume)
	tarFile := filepath.Join(t.TempDir(), "storage.tar")
	tarStart := time.Now()
	if out, err := exec.Command("tar", "-cf", tarFile, "-C", mount, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar -c: %v %s", err, out)
	}
	tarTook := time.Since(tarStart)
	tarDir := t.TempDir()
	untarStart := time.Now()
	if out, err := exec.Command("tar", "-xf", tarFile, "-C", tarDir).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v %s", err, out)
	}
	untarTook := time.Since(untarStart)
	os.Remove(tarFile)
	os.RemoveAll(tarDir)

	destroyAll(t)

	// Damaged backups: refused, nothing created.
	raw, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	var ix *backup.ImageIndex
	errStop := errors.New("stop")
	if err := backup.WalkImages(bytes.NewReader(raw), func(i *backup.ImageIndex) error { ix = i; return errStop }, nil); err != errStop || ix == nil {
		t.Fatalf("reading the image index: %v", err)
	}
	big := ""
	for _, b := range ix.Blobs {
		if b.Size >= int64(mb<<20) {
			big = b.Digest
			break
		}
	}
	if big == "" {
		t.Fatal("no base layer in the image index")
	}
	at := dataOffset(t, raw, backup.BlobPath(big))
	write := func(b []byte) string {
		p := filepath.Join(t.TempDir(), "bad.bkp")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := append([]byte(nil), raw...)
	flipped[at+(mb<<19)] ^= 0x01 // in the middle of the blob's bytes
	bad := []struct{ name, path, want string }{
		{"truncated inside the image section", write(raw[:at+(mb<<19)]), "trunc"},
		{"a flipped byte in a blob", write(flipped), "does not match its digest"},
		{"a blob listed but missing from the tar", rewriteBackup(t, full, func(name string, r io.Reader, w io.Writer) (bool, error) {
			_, err := io.Copy(w, r)
			return name != backup.BlobPath(big), err
		}), "listed in images/index.json but missing"},
	}
	raw, flipped = nil, nil
	for _, c := range bad {
		log, code := restoreFrom(t, c.path, restoreArgs(node, "--dtr-use-default-storage"))
		if code == 0 || !strings.Contains(log, c.want) || !strings.Contains(log, "nothing was changed") {
			t.Errorf("restore of %s: exit %d, log lacks %q:\n%s", c.name, code, c.want, log)
		}
		if left := labelled(t); left != "" {
			t.Fatalf("restore of %s left objects behind:\n%s", c.name, left)
		}
		os.Remove(c.path)
	}

	// A backup without images onto the new, empty volume: restore says
	// which tags lack their blobs, and how to fix it.
	log, code := restoreFrom(t, plain, restoreArgs(node, "--dtr-use-default-storage"))
	if code != 0 || !strings.Contains(log, "Restore complete.") || !strings.Contains(log, "missing from the registry storage") ||
		!strings.Contains(log, "admin/api:v1") || !strings.Contains(log, "--include-images") {
		t.Fatalf("restore without images onto an empty volume: exit %d\n%s", code, log)
	}
	check, code = dtr(t, "backup", "--existing-replica-id", first, "--check-storage")
	if code == 0 || !strings.Contains(check, "admin/api:v2") {
		t.Fatalf("backup --check-storage after a restore without images: exit %d\n%s", code, check)
	}
	destroyAll(t)

	// The backup with images: the images come back.
	f, err := os.Open(full)
	if err != nil {
		t.Fatal(err)
	}
	log, restoreTook, restoreRSS := timedDTR(t, f, nil, restoreArgs(node, "--dtr-use-default-storage")...)
	f.Close()
	if !strings.Contains(log, "Restore complete.") || !strings.Contains(log, "The storage holds all") {
		t.Fatalf("restore with images:\n%s", log)
	}
	_, replicaRestoreHWM := containerRSS(t, volume)
	reg = remote(t, 31443)
	verifyImages(t, reg, imgs)
	if n, size := rehashVolume(t, volume); n != srcBlobs || size != srcBytes {
		t.Fatalf("the restored volume holds %d blobs (%d bytes), the old one %d (%d)", n, size, srcBlobs, srcBytes)
	}
	// The replica's own account of the restore, from its log.
	replicaLog := MustDocker(t, "service", "logs", "--raw", volume)
	took := map[string]string{}
	for _, l := range strings.Split(replicaLog, "\n") {
		if strings.Contains(l, "path="+backup.RestorePath) {
			if _, v, ok := strings.Cut(l, " ms="); ok {
				took["received"] = strings.Fields(v)[0] + "ms"
			}
		}
		for _, step := range []string{"restored the backup's records", "restored the images"} {
			if !strings.Contains(l, `msg="`+step) {
				continue
			}
			if _, v, ok := strings.Cut(l, " took="); ok {
				took[step] = strings.Fields(v)[0]
			}
		}
	}

	// The ceiling of the path every byte of a backup takes: one pull of a
	// base layer through the replica's published port.
	pullTok := reg.Token(t, "admin", adminPassword, "repository:admin/base:pull")
	pullStart := time.Now()
	pullBlobDigest(t, reg, pullTok, "admin/base", big)
	pullTook := time.Since(pullStart)
	if len(took) < 3 {
		t.Logf("the replica's log lacks the restore's steps:\n%.1500s", replicaLog)
	}
	mib := float64(st.Size()) / (1 << 20)
	rows := []string{
		fmt.Sprintf("| backup --include-images (installer to a file) | %.0f MiB in %v: **%.0f MiB/s** | tar -cf of the volume: %v, %.0f MiB/s | %.2f× |",
			mib, backupTook.Round(10*time.Millisecond), mib/backupTook.Seconds(), tarTook.Round(10*time.Millisecond), mib/tarTook.Seconds(), tarTook.Seconds()/backupTook.Seconds()),
		fmt.Sprintf("| restore with images, to healthy (verify, spool, service, send, load, write, check) | %v: **%.0f MiB/s** | tar -xf into a directory: %v, %.0f MiB/s | %.2f× |",
			restoreTook.Round(10*time.Millisecond), mib/restoreTook.Seconds(), untarTook.Round(10*time.Millisecond), mib/untarTook.Seconds(), untarTook.Seconds()/restoreTook.Seconds()),
		fmt.Sprintf("| of which the replica: receiving and verifying the upload / loading the records / writing and checking the images (its log) | %s / %s / %s | | |", took["received"], took["restored the backup's records"], took["restored the images"]),
		fmt.Sprintf("| for scale: one pull of a %d MiB layer through the replica's port (TLS, docker-proxy) | %v: %.0f MiB/s | | |", mb, pullTook.Round(10*time.Millisecond), float64(mb)/pullTook.Seconds()),
		fmt.Sprintf("| installer peak RSS: backup / restore | %d / %d MiB | | |", backupRSS>>10, restoreRSS>>10),
		fmt.Sprintf("| replica peak RSS (VmHWM): source after backup / restored after restore | %d / %d MiB | | |", replicaBackupHWM>>10, replicaRestoreHWM>>10),
	}
	for _, r := range rows {
		t.Log(r)
	}
	if p := os.Getenv("DTR_BENCH_IMAGES"); p != "" {
		md := "## Backup and restore with images\n\n" + fmt.Sprintf("%d blobs, %d MiB of images in %d tags (TestDisasterRecoveryImages, DTR_DR_IMAGES_MB=%d).\n\n", srcBlobs, srcBytes>>20, len(imgs.tags), mb) +
			"| what | dtr | tar of the same storage | ratio |\n|---|---|---|---|\n" + strings.Join(rows, "\n") + "\n"
		if err := os.WriteFile(p, []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	destroyAll(t)
}

// dataOffset is where a member's bytes start in a tar.
func dataOffset(t *testing.T, raw []byte, member string) int {
	t.Helper()
	r := bytes.NewReader(raw)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no member %s: %v", member, err)
		}
		if strings.HasSuffix(h.Name, "/"+member) {
			return len(raw) - r.Len() // archive/tar reads no further than the header
		}
	}
}
