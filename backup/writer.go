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
	"time"
)

// Writer streams a backup: files first, the manifest last.
type Writer struct {
	tw    *tar.Writer
	root  string
	dirs  map[string]bool
	files []File
	done  bool
}

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
	if w.done {
		return fmt.Errorf("backup already closed")
	}
	if err := cleanMember(name); err != nil || name == ManifestName {
		return fmt.Errorf("adding %q: %v", name, err)
	}
	full := w.root + "/" + name
	if err := w.dir(path.Dir(full)); err != nil {
		return err
	}
	if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: full, Size: size, Mode: 0o600,
		ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(w.tw, io.TeeReader(io.LimitReader(r, size), h))
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("writing %s: %d of %d bytes", name, n, size)
	}
	w.files = append(w.files, File{Path: name, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))})
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
	w.done = true
	m.Format = FormatVersion
	m.Files = append([]File(nil), w.files...)
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	m.Seal()
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
