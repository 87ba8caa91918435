package backup

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func digestOf(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// imageFixture is two repositories sharing a layer, an index with two
// platform manifests, and a signature (an untagged manifest).
type imageFixture struct {
	ix    ImageIndex
	blobs map[string][]byte
}

func newImageFixture() imageFixture {
	f := imageFixture{blobs: map[string][]byte{}}
	add := func(b []byte, manifest bool, refs ...string) string {
		d := digestOf(b)
		f.blobs[d] = b
		f.ix.Blobs = append(f.ix.Blobs, Blob{Digest: d, Size: int64(len(b)), Manifest: manifest, References: refs})
		return d
	}
	shared := add(bytes.Repeat([]byte("shared layer "), 40000), false)
	own := add(bytes.Repeat([]byte("own layer "), 30000), false)
	cfgA, cfgB := add([]byte(`{"architecture":"amd64"}`), false), add([]byte(`{"architecture":"arm64"}`), false)
	amd := add([]byte(`{"schemaVersion":2,"amd64":1}`), true, cfgA, shared)
	arm := add([]byte(`{"schemaVersion":2,"arm64":1}`), true, cfgB, shared, own)
	idx := add([]byte(`{"schemaVersion":2,"manifests":2}`), true, amd, arm)
	sig := add([]byte(`{"schemaVersion":2,"subject":1}`), true, cfgA)
	single := add([]byte(`{"schemaVersion":2,"single":1}`), true, cfgA, shared)
	// The index writer sorts; the fixture must too.
	sortBlobs(f.ix.Blobs)
	f.ix.Repositories = []ImageRepository{
		{Name: "acme/app", Tags: map[string]string{"1.0": idx, "latest": idx}, Manifests: []string{amd, arm, idx, sig}, Layers: []string{cfgA, cfgB, shared, own}},
		{Name: "acme/tools/cli", Tags: map[string]string{"v1": single}, Manifests: []string{single}, Layers: []string{cfgA, shared}},
	}
	return f
}

func sortBlobs(bs []Blob) {
	for i := 1; i < len(bs); i++ {
		for j := i; j > 0 && bs[j-1].Digest > bs[j].Digest; j-- {
			bs[j-1], bs[j] = bs[j], bs[j-1]
		}
	}
}

func (f imageFixture) backup(t testing.TB, include bool) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := NewWriter(&b, "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddJSON("meta/accounts/admin.json", Record{Key: "/dtr/accounts/admin", Value: json.RawMessage(`{"name":"admin"}`)}); err != nil {
		t.Fatal(err)
	}
	ix := f.ix
	if err := w.AddImageIndex(&ix, include); err != nil {
		t.Fatal(err)
	}
	if include {
		for _, bl := range f.ix.Blobs {
			if err := w.AddBlob(bl.Digest, bytes.NewReader(f.blobs[bl.Digest])); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(Manifest{DTRVersion: "0.1.0", Created: time.Unix(1700000000, 0).UTC(), ClusterID: "c1", SourceReplica: "000000000001", EtcdRevision: 7}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestImagesRoundTrip(t *testing.T) {
	f := newImageFixture()
	for _, include := range []bool{true, false} {
		t.Run(fmt.Sprint("include=", include), func(t *testing.T) {
			b := f.backup(t, include)
			var seenIndex *ImageIndex
			m, err := VerifyWith(bytes.NewReader(b), func(ix *ImageIndex) { seenIndex = ix })
			if err != nil {
				t.Fatal(err)
			}
			if m.Format != 2 || m.Images == nil || m.Images.Included != include || m.Images.Blobs != len(f.ix.Blobs) || m.Images.Tags != 3 || m.Images.Manifests != 5 || seenIndex == nil {
				t.Fatalf("manifest: %+v images %+v", m, m.Images)
			}
			got := map[string]bool{}
			err = WalkImages(bytes.NewReader(b), func(ix *ImageIndex) error {
				if ix == nil || len(ix.Repositories) != 2 {
					t.Fatalf("index: %+v", ix)
				}
				return nil
			}, func(bl Blob, body io.Reader) error {
				data, err := io.ReadAll(body)
				if err != nil {
					return err
				}
				if !bytes.Equal(data, f.blobs[bl.Digest]) {
					t.Fatalf("blob %s differs", bl.Digest)
				}
				got[bl.Digest] = true
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if include && len(got) != len(f.blobs) || !include && len(got) != 0 {
				t.Fatalf("walked %d blobs of %d (include=%v)", len(got), len(f.blobs), include)
			}
			// Records are still what Walk gives, never a blob.
			n := 0
			if err := Walk(bytes.NewReader(b), func(p string, _ []byte) error {
				if strings.HasPrefix(p, "images/") {
					t.Fatalf("Walk gave %s", p)
				}
				n++
				return nil
			}); err != nil || n != 1 {
				t.Fatalf("Walk: %d files, %v", n, err)
			}
		})
	}
}

// rewrite copies a backup member by member through fn (which may drop or
// change one), then re-hashes and re-seals the manifest, so that only the
// rule under test can catch the change.
func rewrite(t *testing.T, b []byte, fn func(name string, data []byte) ([]byte, bool)) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	sums := map[string]File{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		_, rest, _ := strings.Cut(strings.TrimSuffix(h.Name, "/"), "/")
		if rest == ManifestName {
			var m Manifest
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			m.Files = m.Files[:0]
			for _, f := range sums {
				m.Files = append(m.Files, f)
			}
			m.Seal()
			data, _ = json.Marshal(m)
		} else if h.Typeflag == tar.TypeReg {
			var keep bool
			if data, keep = fn(rest, data); !keep {
				continue
			}
			sum := sha256.Sum256(data)
			sums[rest] = File{Path: rest, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
		}
		h.Size = int64(len(data))
		tw.WriteHeader(h)
		tw.Write(data)
	}
	tw.Close()
	return out.Bytes()
}

func TestImagesRefuseDamage(t *testing.T) {
	f := newImageFixture()
	good := f.backup(t, true)
	shared := f.ix.Repositories[1].Layers[1]
	at := bytes.Index(good, f.blobs[shared])
	if at < 0 {
		t.Fatal("the shared layer is not in the archive")
	}
	flipped := append([]byte(nil), good...)
	flipped[at+1000] ^= 0x01
	indexAt := bytes.Index(good, []byte(`{"repositories":`))
	manifestAt := bytes.LastIndex(good, []byte(`"dtrVersion"`)) - 600
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"a flipped byte in a blob", flipped, "does not match its digest"},
		{"a blob listed in the index but missing from the tar", rewrite(t, good, func(name string, data []byte) ([]byte, bool) {
			return data, name != BlobPath(shared)
		}), "listed in images/index.json but missing"},
		{"a blob replaced, manifest re-hashed", rewrite(t, good, func(name string, data []byte) ([]byte, bool) {
			if name == BlobPath(shared) {
				return bytes.ToUpper(data), true
			}
			return data, true
		}), "does not match its digest"},
		{"a blob the index does not list", rewrite(t, good, func(name string, data []byte) ([]byte, bool) {
			if name == ImageIndexName {
				var ix ImageIndex
				json.Unmarshal(data, &ix)
				ix.Blobs[0].Missing = true
				data, _ = json.Marshal(ix)
			}
			return data, true
		}), "image summary"},
		{"an index naming a blob it does not list", rewrite(t, good, func(name string, data []byte) ([]byte, bool) {
			if name == ImageIndexName {
				data = bytes.Replace(data, []byte(`"layers":["`), []byte(`"layers":["sha256:`+strings.Repeat("0", 64)+`","`), 1)
			}
			return data, true
		}), "does not list"},
		{"an index with a repository escaping storage", rewrite(t, good, func(name string, data []byte) ([]byte, bool) {
			if name == ImageIndexName {
				data = bytes.Replace(data, []byte(`"name":"acme/app"`), []byte(`"name":"acme/../../x"`), 1)
			}
			return data, true
		}), "unsafe"},
		{"a flipped byte in the index", func() []byte {
			c := append([]byte(nil), good...)
			c[indexAt+5] ^= 0x20
			return c
		}(), "images/index.json"},
		{"truncated in the manifest's last bytes", good[:manifestAt], "trunc"},
	}
	// Truncated at several points inside the image section.
	for _, off := range []int{indexAt + 10, at + 7, at + 512*3, len(good) / 2, len(good) - 4000} {
		cases = append(cases, struct {
			name string
			in   []byte
			want string
		}{fmt.Sprintf("truncated at %d of %d", off, len(good)), good[:off], "trunc"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(tc.in))
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v, want an ErrInvalid containing %q", err, tc.want)
			}
		})
	}
	// WalkImages checks each blob again as it is read: a restore that did
	// not verify first still never takes a damaged blob.
	err := WalkImages(bytes.NewReader(flipped), func(*ImageIndex) error { return nil }, func(bl Blob, body io.Reader) error {
		_, err := io.Copy(io.Discard, body)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("WalkImages of a flipped blob: %v", err)
	}
}

func TestWriterRefusesDamagedStorage(t *testing.T) {
	f := newImageFixture()
	w, err := NewWriter(io.Discard, "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	ix := f.ix
	if err := w.AddImageIndex(&ix, true); err != nil {
		t.Fatal(err)
	}
	d := f.ix.Blobs[0].Digest
	bad := bytes.ToUpper(f.blobs[d])
	if err := w.AddBlob(d, bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("AddBlob of damaged data: %v", err)
	}
	if err := w.AddBlob(d, bytes.NewReader(f.blobs[d][:3])); err == nil {
		t.Fatal("AddBlob of short data succeeded")
	}
	if err := w.Add("images/x", 1, strings.NewReader("x")); err == nil {
		t.Fatal("Add wrote into the image section")
	}
	if err := w.Close(Manifest{DTRVersion: "0.1.0"}); err == nil || !strings.Contains(err.Error(), "were not written") {
		t.Fatalf("Close with blobs left: %v", err)
	}
}

func TestCheckStorage(t *testing.T) {
	f := newImageFixture()
	all := func(string) (bool, error) { return true, nil }
	res, err := f.ix.CheckStorage(all)
	if err != nil || res.MissingBlobs != 0 || res.Summary() != "" {
		t.Fatalf("everything present: %+v %v", res, err)
	}
	none := func(string) (bool, error) { return false, nil }
	res, _ = f.ix.CheckStorage(none)
	if res.MissingBlobs != len(f.ix.Blobs) || res.AffectedTags != 3 || res.AffectedRepositories != 2 || res.Examples[0].String() != "acme/app:1.0" {
		t.Fatalf("nothing present: %+v", res)
	}
	// Only the layer arm64 alone uses: the index's tags break (through
	// their child), the other repository's tag does not.
	own := f.ix.Repositories[0].Layers[3]
	res, _ = f.ix.CheckStorage(func(d string) (bool, error) { return d != own, nil })
	if res.MissingBlobs != 1 || res.AffectedTags != 2 || res.AffectedManifests != 1 || res.AffectedRepositories != 1 {
		t.Fatalf("one layer missing: %+v", res)
	}
	if s := res.Summary(); !strings.Contains(s, "acme/app:latest") || strings.Contains(s, "acme/tools/cli") {
		t.Fatalf("summary: %s", s)
	}
}
