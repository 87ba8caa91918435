package registry_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/pki"
	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// blobOffsets are where each blob member's data starts in a backup.
func blobOffsets(t *testing.T, bk []byte) map[string]int64 {
	t.Helper()
	cr := &countReader{r: bytes.NewReader(bk)}
	tr := tar.NewReader(cr)
	out := map[string]int64{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, rest, _ := strings.Cut(hdr.Name, "/"); strings.HasPrefix(rest, "images/blobs/sha256/") && hdr.Size > 0 {
			out[rest] = cr.n
		}
	}
}

// withoutMember is bk without the member at path p (below the root).
func withoutMember(t *testing.T, bk []byte, p string) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(bk))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, rest, _ := strings.Cut(hdr.Name, "/"); rest == p {
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// stagedFiles are the files in a filesystem storage's staging area and
// its blob data files.
func stagedFiles(t *testing.T, root string) (staged, blobs int) {
	t.Helper()
	count := func(dir string) int {
		n := 0
		filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	return count(filepath.Join(root, "dtr-restore")), count(filepath.Join(root, "docker/registry/v2/blobs"))
}

// TestRestoreUploadImages: dtr restore's upload of a backup with images.
// The replica stages the blobs in the storage as it receives them; a
// damaged upload (truncated inside a blob, a flipped byte in a blob) is
// refused with nothing left in the storage, and the good one restores every
// image with nothing left staged. DTR_RESTORE_BENCH_MB adds a layer of that
// size and logs the replica's times (docs/backup.md).
func TestRestoreUploadImages(t *testing.T) { restoreUploadImages(t, false) }

// TestRestoreUploadImagesS3: the same into the backed-up S3 storage, which
// lost its images: the replica stages them in the bucket, which it finds
// in the backup's settings record as the upload arrives.
func TestRestoreUploadImagesS3(t *testing.T) {
	if testing.Short() {
		t.Skip("S3 test: skipped with -short")
	}
	restoreUploadImages(t, true)
}

func restoreUploadImages(t *testing.T, onS3 bool) {
	var a *registrytest.Replica
	var s3 *registrytest.S3Server
	if onS3 {
		s3 = registrytest.StartS3(t)
		o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
		o.Storage = s3.Storage()
		a = registrytest.Start(t, o)
	} else {
		a = registrytest.StartNew(t)
	}
	imgs := pushDrillImages(t, a)
	if mb, _ := strconv.Atoi(os.Getenv("DTR_RESTORE_BENCH_MB")); mb > 0 {
		big := make([]byte, mb<<20)
		rand.Read(big)
		tok := a.Token(t, admin, adminPW, "repository:admin/big:push,pull")
		d, _ := pushLayers(t, a, tok, "admin/big", "v1", big)
		imgs = append(imgs, drImage{"admin/big", "v1", d})
	}
	bk := takeBackupWith(t, a, true)
	m, err := backup.Verify(bytes.NewReader(bk))
	if err != nil {
		t.Fatal(err)
	}
	a.Stop()

	o := restoreOptions(t, bk, filepath.Join(t.TempDir(), "restored"))
	o.StorageRoot = filepath.Join(t.TempDir(), "empty-storage")
	root := o.StorageRoot // where the storage keeps its files
	if onS3 {
		root = s3.ObjectDir()
		if err := os.RemoveAll(filepath.Join(root, "docker")); err != nil {
			t.Fatal(err)
		}
	}
	o.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t))
	o.HTTPSAddr = fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	type started struct {
		r   *registry.Replica
		err error
	}
	done := make(chan started, 1)
	go func() {
		r, err := registry.Start(ctx, o)
		done <- started{r, err}
	}()
	caPEM, _ := os.ReadFile(o.CACertFile)
	keyPEM, _ := os.ReadFile(o.CAKeyFile)
	ca, err := pki.ParseCA(caPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	kp, err := ca.Issue(backup.RestoreClientName, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := kp.TLSCertificate()
	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "dtr-replica", Certificates: []tls.Certificate{cert}}}}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + o.HTTPAddr + "/_live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the waiting replica is not live: %v", err)
		}
	}
	put := func(body []byte) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, "https://"+o.HTTPSAddr+backup.RestorePath, bytes.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	offsets := blobOffsets(t, bk)
	var last string
	var lastAt int64
	for p, at := range offsets {
		if at > lastAt {
			last, lastAt = p, at
		}
	}
	if last == "" {
		t.Fatal("no blob in the backup")
	}
	// The last blob: every other one was staged by the time it is refused.
	flipped := append([]byte(nil), bk...)
	flipped[lastAt] ^= 0x01
	for _, c := range []struct {
		name string
		body []byte
		want string
	}{
		{"truncated inside the last blob", bk[:lastAt+1], "truncated"},
		{"a flipped byte in the last blob", flipped, "does not match its digest"},
		{"the last blob left out (the manifest as it was)", withoutMember(t, bk, last), "missing"},
	} {
		st, body := put(c.body)
		if st != 400 || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s, want 400 %q", c.name, st, body, c.want)
		}
		if staged, blobs := stagedFiles(t, root); staged+blobs != 0 {
			t.Errorf("%s: left %d staged blobs and %d blobs in the storage", c.name, staged, blobs)
		}
		if entries, _ := os.ReadDir(filepath.Join(o.DataDir, "restore")); len(entries) != 0 {
			t.Errorf("%s: left %d files in the restore directory", c.name, len(entries))
		}
	}
	select {
	case s := <-done:
		t.Fatalf("the replica stopped waiting after refused uploads: %v", s.err)
	default:
	}

	start := time.Now()
	if st, body := put(bk); st != 200 {
		t.Fatalf("upload: %d %s", st, body)
	}
	upload := time.Since(start)
	if staged, _ := stagedFiles(t, root); staged != m.Images.Blobs {
		t.Errorf("%d blobs staged after the upload, the backup holds %d", staged, m.Images.Blobs)
	}
	if fi, err := os.Stat(filepath.Join(o.DataDir, "restore", "backup.tar")); err != nil || fi.Size() > int64(len(bk))-m.Images.Bytes+1<<20 {
		t.Errorf("the spooled records: %v (%v bytes of a %d-byte backup with %d bytes of blobs)", err, fi, len(bk), m.Images.Bytes)
	}
	s := <-done
	if s.err != nil {
		t.Fatalf("the replica did not start from the backup: %v", s.err)
	}
	finish := time.Since(start) - upload
	mib := float64(len(bk)) / (1 << 20)
	t.Logf("backup of %.1f MiB (%d blobs): upload received, verified and staged in %v (%.0f MiB/s); records loaded and images placed in %v",
		mib, m.Images.Blobs, upload.Round(time.Millisecond), mib/upload.Seconds(), finish.Round(time.Millisecond))
	s.r.Close()

	b := registrytest.Start(t, o)
	checkImagesBack(t, b, imgs)
	if n := rehashStorage(t, root); n != m.Images.Blobs {
		t.Fatalf("the restored storage holds %d blobs, the backup %d", n, m.Images.Blobs)
	}
	if staged, _ := stagedFiles(t, root); staged != 0 {
		t.Errorf("%d staged blobs left after the restore", staged)
	}
	if _, err := os.Stat(filepath.Join(o.DataDir, "restore", "backup.tar")); !os.IsNotExist(err) {
		t.Errorf("the received backup is still on disk after the restore: %v", err)
	}
	if res := storageCheck(t, b); res.MissingBlobs != 0 || res.ReferencedBlobs != m.Images.Blobs {
		t.Fatalf("storage check after restore: %+v", res)
	}
}
