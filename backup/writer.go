package backup

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// Writer streams a backup: files first, the manifest last.
type Writer struct {
	tw    *tar.Writer
	root  string
	dirs  map[string]bool
	files []File
	done  bool

	index    *ImageIndex
	pending  map[string]int64 // blobs of the index not written yet
	included bool             // the blobs follow the index
	manifest Manifest
}

// Manifest is the manifest Close wrote.
func (w *Writer) Manifest() Manifest { return w.manifest }

// NewWriter starts a backup of dtr version on w.
func NewWriter(w io.Writer, version string) (*Writer, error) {
	bw := &Writer{tw: tar.NewWriter(w), root: Root(version), dirs: map[string]bool{}}
	return bw, bw.dir(bw.root)
}

func (w *Writer) dir(name string) error {
	if w.dirs[name] {
		return nil
	}
	if parent := path.Dir(name); parent != "." && parent != name {
		if err := w.dir(parent); err != nil {
			return err
		}
	}
	w.dirs[name] = true
	return w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o700,
		ModTime: time.Unix(0, 0), Format: tar.FormatPAX})
}

// Add writes one file of size bytes from r, hashing it as it streams.
func (w *Writer) Add(name string, size int64, r io.Reader) error {
	if strings.HasPrefix(name, "images/") {
		return fmt.Errorf("adding %q: images go through AddImageIndex and AddBlob", name)
	}
	_, err := w.add(name, size, r)
	return err
}

func (w *Writer) add(name string, size int64, r io.Reader) (File, error) {
	if w.done {
		return File{}, fmt.Errorf("backup already closed")
	}
	if err := cleanMember(name); err != nil || name == ManifestName {
		return File{}, fmt.Errorf("adding %q: %v", name, err)
	}
	if w.index != nil && !strings.HasPrefix(name, "images/") {
		return File{}, fmt.Errorf("adding %q: records go before the image section", name)
	}
	full := w.root + "/" + name
	if err := w.dir(path.Dir(full)); err != nil {
		return File{}, err
	}
	if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: full, Size: size, Mode: 0o600,
		ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
		return File{}, err
	}
	h := sha256.New()
	buf := copyBuffers.Get().(*[]byte)
	n, err := io.CopyBuffer(w.tw, io.TeeReader(io.LimitReader(r, size), h), *buf)
	copyBuffers.Put(buf)
	if err != nil {
		return File{}, fmt.Errorf("writing %s: %w", name, err)
	}
	if n != size {
		return File{}, fmt.Errorf("writing %s: %d of %d bytes (it changed while it was read)", name, n, size)
	}
	f := File{Path: name, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}
	w.files = append(w.files, f)
	return f, nil
}

// copyBuffers are the copy buffers of blobs: large enough for disk and
// network speed, one per copy in flight.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// AddImageIndex writes the image section's index, after every record and
// before any blob; with include, every blob it lists (but those missing)
// must follow, through AddBlob.
func (w *Writer) AddImageIndex(ix *ImageIndex, include bool) error {
	if w.index != nil {
		return fmt.Errorf("the image index is written already")
	}
	if err := ix.Check(); err != nil {
		return err
	}
	b, err := json.Marshal(ix)
	if err != nil {
		return err
	}
	if _, err := w.add(ImageIndexName, int64(len(b)), bytesReader(b)); err != nil {
		return err
	}
	w.index, w.included = ix, include
	w.pending = make(map[string]int64, len(ix.Blobs))
	for _, bl := range ix.Blobs {
		if !bl.Missing {
			w.pending[bl.Digest] = bl.Size
		}
	}
	return nil
}

// AddBlob writes a blob the index lists, streaming it from r, and fails if
// its bytes do not match its digest (the storage is damaged): the stream
// is then unusable, and the caller must not Close it.
func (w *Writer) AddBlob(digest string, r io.Reader) error {
	if w.index == nil || !w.included {
		return fmt.Errorf("blob %s: the image index goes first, saying that images are included", digest)
	}
	size, ok := w.pending[digest]
	if !ok {
		return fmt.Errorf("blob %s is not in the image index, or was written already", digest)
	}
	f, err := w.add(BlobPath(digest), size, r)
	if err != nil {
		return err
	}
	if "sha256:"+f.SHA256 != digest {
		return fmt.Errorf("blob %s in the registry storage does not match its digest (its content hashes to sha256:%s): the storage is damaged; remove that blob and push its image again", digest, f.SHA256)
	}
	delete(w.pending, digest)
	return nil
}

// AddJSON writes v as a JSON file.
func (w *Writer) AddJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return w.Add(name, int64(len(b)), bytesReader(b))
}

// Close writes the manifest (m's Files are filled in here) and ends the tar.
func (w *Writer) Close(m Manifest) error {
	if w.done {
		return nil
	}
	if w.index != nil {
		if w.included && len(w.pending) > 0 {
			return fmt.Errorf("%d blobs of the image index were not written", len(w.pending))
		}
		sum := w.index.Summary(w.included)
		m.Images = &sum
	}
	w.done = true
	m.Format = FormatVersion
	if w.index == nil {
		m.Format, m.Images = 1, nil // the layout without an image section
	}
	m.Files = append([]File(nil), w.files...)
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	m.Seal()
	w.manifest = m
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: w.root + "/" + ManifestName, Size: int64(len(b)),
		Mode: 0o600, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
		return err
	}
	if _, err := w.tw.Write(b); err != nil {
		return err
	}
	return w.tw.Close()
}
