package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/registry/gc"
	"github.com/dtr-registry/dtr/registry/meta"
)

// stagedBackup receives a backup holding blobs as an upload does: the
// records spooled to spool, the blobs staged in the filesystem storage at
// root.
func stagedBackup(t *testing.T, root, spool string, blobs ...[]byte) (*stager, []backup.Blob) {
	t.Helper()
	ix := &backup.ImageIndex{}
	var listed []backup.Blob
	for _, b := range blobs {
		h := sha256.Sum256(b)
		listed = append(listed, backup.Blob{Digest: "sha256:" + hex.EncodeToString(h[:]), Size: int64(len(b))})
	}
	// sorted by digest, as the index requires
	for i := range listed {
		for j := i + 1; j < len(listed); j++ {
			if listed[j].Digest < listed[i].Digest {
				listed[i], listed[j] = listed[j], listed[i]
				blobs[i], blobs[j] = blobs[j], blobs[i]
			}
		}
	}
	ix.Blobs = listed
	var buf bytes.Buffer
	bw, err := backup.NewWriter(&buf, images.Version)
	if err != nil {
		t.Fatal(err)
	}
	if err := bw.AddImageIndex(ix, true); err != nil {
		t.Fatal(err)
	}
	for i, b := range listed {
		if err := bw.AddBlob(b.Digest, bytes.NewReader(blobs[i])); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Close(backup.Manifest{DTRVersion: images.Version, Created: time.Now().UTC().Truncate(time.Second), ClusterID: "c", SourceReplica: "aaaaaaaaaaaa"}); err != nil {
		t.Fatal(err)
	}
	r := &Replica{opts: Options{RestoreStorage: contract.RestoreFilesystem, StorageRoot: root}, log: logrus.NewEntry(logrus.New())}
	st := &stager{ctx: context.Background(), r: r}
	f, err := os.Create(spool)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	m, err := backup.VerifyStream(&buf, backup.VerifyOptions{Copy: tw, Member: st.member, Blob: st.blob})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if m.Images == nil || !m.Images.Included || st.staged != len(blobs) {
		t.Fatalf("staged %d of %d blobs: %+v", st.staged, len(blobs), m.Images)
	}
	return st, listed
}

// TestRestoreStagedAfterRestart: a replica that restarts between receiving
// an upload and placing its images checks every staged blob against its
// digest again before it moves it: a staged blob damaged meanwhile stops
// the restore (the replica never reports healthy with it), an intact one is
// placed, and one placed before the restart is kept.
func TestRestoreStagedAfterRestart(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "storage")
	spool := filepath.Join(t.TempDir(), "backup.tar")
	a, b := bytes.Repeat([]byte("a"), 3000), bytes.Repeat([]byte("b"), 70000)
	st, listed := stagedBackup(t, root, spool, a, b)
	drv := st.drv

	// The spool holds no blob, and verifies only as a spool.
	if fi, _ := os.Stat(spool); fi.Size() > 16<<10 {
		t.Fatalf("the spool holds %d bytes", fi.Size())
	}
	f, _ := os.Open(spool)
	if _, err := backup.Verify(f); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("the spool verified as a whole backup: %v", err)
	}
	f.Close()

	// Damage the second staged blob; place the first as a restart would
	// find it, already moved.
	first, second := listed[0], listed[1]
	if _, err := placeStaged(ctx, drv, first, true, make([]byte, 1<<10)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "dtr-restore", strings.TrimPrefix(second.Digest, "sha256:"))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	os.WriteFile(p, data, 0o600)
	_, err = restoreImages(ctx, drv, spool, true, true, t.Logf)
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("a damaged staged blob was placed: %v", err)
	}
	if _, err := drv.Stat(ctx, gc.BlobDataPath(second.Digest)); !isNotFound(err) {
		t.Fatalf("the damaged blob is in place: %v", err)
	}

	// Intact again: placed; the one moved before is kept.
	data[len(data)/2] ^= 1
	os.WriteFile(p, data, 0o600)
	res, err := restoreImages(ctx, drv, spool, true, true, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 1 || res.Present != 1 || res.Check.MissingBlobs != 0 {
		t.Fatalf("restore after the restart: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(root, "dtr-restore")); !os.IsNotExist(err) {
		t.Fatalf("the staging area is left: %v", err)
	}
	// A blob neither staged nor in place (the staging area lost) is named.
	os.RemoveAll(filepath.Join(root, "docker"))
	if _, err := restoreImages(ctx, drv, spool, true, true, t.Logf); err == nil || !strings.Contains(err.Error(), "restore the backup again") {
		t.Fatalf("a lost staged blob: %v", err)
	}
}

// TestStagerRefusesDamagedSettings: restoring into the backed-up storage
// reads it from the settings record; one that does not parse is refused as
// damage before any blob is written.
func TestStagerRefusesDamagedSettings(t *testing.T) {
	r := &Replica{opts: Options{RestoreStorage: contract.RestoreKeepStorage, StorageRoot: t.TempDir()}, log: logrus.NewEntry(logrus.New())}
	st := &stager{ctx: context.Background(), r: r}
	w := st.member(contract.RecordSettings)
	w.Write([]byte(`{"key":"/dtr/settings","value":{"storage":`))
	if _, err := st.blob("sha256:"+strings.Repeat("0", 64), 1); err == nil || !strings.Contains(err.Error(), "settings record") {
		t.Fatalf("damaged settings: %v", err)
	}
	st.settings.Reset()
	v, _ := json.Marshal(meta.Settings{Storage: meta.Storage{Type: "nosuchdriver"}})
	b, _ := json.Marshal(backup.Record{Key: "/dtr/settings", Value: v})
	st.member(contract.RecordSettings).Write(b)
	if _, err := st.blob("sha256:"+strings.Repeat("0", 64), 1); err == nil || !strings.Contains(err.Error(), "--dtr-storage-volume") {
		t.Fatalf("a storage that cannot be opened: %v", err)
	}
}

// TestFilesystemDriverName: the image index lists link directories on the
// filesystem driver (a walk would stat every entry) and walks on others;
// it tells them apart by the name the replica's wrapped driver reports.
func TestFilesystemDriverName(t *testing.T) {
	drv, err := newDriver(context.Background(), meta.Storage{Type: "filesystem"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if drv.Name() != "filesystem" {
		t.Fatalf("the filesystem driver is named %q", drv.Name())
	}
}
