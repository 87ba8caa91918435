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

	"github.com/dtr-registry/dtr/images"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// ErrInvalid marks a stream that is not a complete, intact dtr backup.
var ErrInvalid = errors.New("invalid backup")

// MaxManifest bounds the manifest a reader accepts.
const MaxManifest = 64 << 20

// MaxMember bounds one member: records, keys and settings are small.
const MaxMember = 1 << 30

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Verify reads a whole backup stream and checks it: one root directory
// dtr-backup-v<version>/, only regular files and directories under it,
// safe paths, the manifest last, and every file's size and sha256 as the
// manifest lists them, with nothing missing and nothing extra. It returns the
// manifest; it never trusts a stream it did not read to the end.
func Verify(r io.Reader) (Manifest, error) { return VerifyWith(r, nil) }

// VerifyWith is Verify, calling onIndex with the image index as soon as it
// passes (before the blobs it lists), e.g. to show progress.
func VerifyWith(r io.Reader, onIndex func(*ImageIndex)) (Manifest, error) {
	return VerifyStream(r, VerifyOptions{OnIndex: onIndex})
}

// VerifyOptions are what a verification does besides reading.
type VerifyOptions struct {
	// OnIndex receives the image index as soon as it passes, before the
	// blobs it lists.
	OnIndex func(*ImageIndex)
	// Copy, when set, receives every member but the blobs as it is read: a
	// spool of the backup whose blobs go elsewhere (Blob).
	Copy *tar.Writer
	// Member, when it returns a writer, receives the bytes of that member
	// (not a blob) as they are read.
	Member func(path string) io.Writer
	// Blob, when set, receives each blob's bytes as they are hashed: one
	// pass over them. Its Commit is called once they matched the digest,
	// its Cancel when they did not; a damaged stream can still be refused
	// after a Commit (a later member), so what it keeps must stay aside
	// until the whole stream verified.
	Blob func(digest string, size int64) (BlobSink, error)
	// BlobsElsewhere: the stream is such a spool, without the blobs its
	// index includes (the caller verifies them where it put them). Their
	// manifest entries must still name their digest and the index's size.
	BlobsElsewhere bool
}

// BlobSink is where VerifyStream writes a blob's bytes.
type BlobSink interface {
	io.Writer
	Commit() error
	Cancel()
}

// sinkError marks an error of a BlobSink or a Copy (the caller's storage),
// not of the stream.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }

type sinkWriter struct{ w io.Writer }

func (s sinkWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		err = &sinkError{err}
	}
	return n, err
}

// copyError is the caller's error a copy failed with, if it was one.
func copyError(err error) error {
	var se *sinkError
	if errors.As(err, &se) {
		return se.err
	}
	return nil
}

// VerifyStream is Verify with the options o.
func VerifyStream(r io.Reader, o VerifyOptions) (Manifest, error) {
	onIndex := o.OnIndex
	var buf []byte
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	var manifestEnd int64
	root := ""
	seen := map[string]File{}
	var manifest *Manifest
	var index *ImageIndex
	blobs := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Manifest{}, invalid("the stream is not a complete tar (truncated or corrupt): %v", err)
		}
		if manifest != nil {
			return Manifest{}, invalid("%s follows the manifest, which must come last", hdr.Name)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		top, rest, _ := strings.Cut(name, "/")
		if root == "" {
			if !strings.HasPrefix(top, "dtr-backup-v") || len(top) == len("dtr-backup-v") {
				return Manifest{}, invalid("the archive does not start with a dtr-backup-v<version>/ directory (first entry %q): this is not a dtr backup", hdr.Name)
			}
			root = top
		}
		if top != root {
			return Manifest{}, invalid("entry %q is outside %s/", hdr.Name, root)
		}
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse") {
				// Sparse members expand holes without reading input: a tiny
				// stream could make the reader hash zeros for ever.
				return Manifest{}, invalid("entry %q is a sparse file; a dtr backup has none", hdr.Name)
			}
		}
		digest, isBlob := blobMember(rest)
		if limit := memberLimit(rest, isBlob); hdr.Size < 0 || hdr.Size > limit {
			return Manifest{}, invalid("entry %q claims %d bytes; such members are at most %d", hdr.Name, hdr.Size, limit)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if rest != "" {
				if err := cleanMember(rest); err != nil {
					return Manifest{}, invalid("%v", err)
				}
			}
			if o.Copy != nil {
				if err := o.Copy.WriteHeader(hdr); err != nil {
					return Manifest{}, err
				}
			}
			continue
		case tar.TypeReg:
		default:
			return Manifest{}, invalid("entry %q has type %q; a dtr backup holds only files and directories", hdr.Name, string(hdr.Typeflag))
		}
		if err := cleanMember(rest); err != nil {
			return Manifest{}, invalid("%v", err)
		}
		if _, dup := seen[rest]; dup {
			return Manifest{}, invalid("%s appears twice", rest)
		}
		switch {
		case isBlob && index == nil:
			return Manifest{}, invalid("blob %s comes before %s", digest, ImageIndexName)
		case rest == ImageIndexName && blobs > 0:
			return Manifest{}, invalid("%s follows a blob", ImageIndexName)
		case index != nil && !isBlob && rest != ManifestName:
			return Manifest{}, invalid("%s follows the image section; records come first", rest)
		}
		var copies []io.Writer
		if o.Copy != nil && !isBlob {
			if err := o.Copy.WriteHeader(hdr); err != nil {
				return Manifest{}, err
			}
			copies = append(copies, sinkWriter{o.Copy})
		}
		if o.Member != nil && !isBlob {
			if w := o.Member(rest); w != nil {
				copies = append(copies, sinkWriter{w})
			}
		}
		var sink BlobSink
		if isBlob && o.Blob != nil {
			var err error
			if sink, err = o.Blob(digest, hdr.Size); err != nil {
				return Manifest{}, err
			}
			copies = append(copies, sinkWriter{sink})
		}
		body := io.Reader(tr)
		if len(copies) > 0 {
			body = io.TeeReader(tr, io.MultiWriter(copies...))
		}
		if rest == ImageIndexName {
			b, err := io.ReadAll(io.LimitReader(body, hdr.Size))
			if cerr := copyError(err); cerr != nil {
				return Manifest{}, cerr
			}
			if err != nil || int64(len(b)) != hdr.Size {
				return Manifest{}, invalid("%s is truncated: %v", rest, err)
			}
			ix, err := ParseImageIndex(b)
			if err != nil {
				return Manifest{}, invalid("%v", err)
			}
			index = ix
			h := sha256.Sum256(b)
			seen[rest] = File{Path: rest, Size: hdr.Size, SHA256: hex.EncodeToString(h[:])}
			if onIndex != nil {
				onIndex(ix)
			}
			continue
		}
		if rest == ManifestName {
			if hdr.Size > MaxManifest {
				return Manifest{}, invalid("manifest of %d bytes is larger than %d", hdr.Size, MaxManifest)
			}
			b, err := io.ReadAll(io.LimitReader(body, hdr.Size))
			if cerr := copyError(err); cerr != nil {
				return Manifest{}, cerr
			}
			if err != nil || int64(len(b)) != hdr.Size {
				return Manifest{}, invalid("the manifest is truncated: %v", err)
			}
			manifestEnd = (cr.n + 511) / 512 * 512
			var m Manifest
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&m); err != nil {
				return Manifest{}, invalid("the manifest does not parse: %v", err)
			}
			manifest = &m
			continue
		}
		h := sha256.New()
		if buf == nil {
			buf = make([]byte, 256<<10)
		}
		n, err := copyDense(h, body, cr, buf)
		if err == nil && n != hdr.Size {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			if sink != nil {
				sink.Cancel()
			}
			if cerr := copyError(err); cerr != nil {
				return Manifest{}, cerr
			}
			return Manifest{}, invalid("%s is truncated or corrupt (%d of %d bytes): %v", rest, n, hdr.Size, err)
		}
		sum := hex.EncodeToString(h.Sum(nil))
		if isBlob {
			if "sha256:"+sum != digest {
				if sink != nil {
					sink.Cancel()
				}
				return Manifest{}, invalid("blob %s does not match its digest (its bytes hash to sha256:%s): the backup is corrupt", digest, sum)
			}
			if sink != nil {
				if err := sink.Commit(); err != nil {
					return Manifest{}, err
				}
			}
			blobs++
		}
		seen[rest] = File{Path: rest, Size: n, SHA256: sum}
	}
	if root == "" {
		return Manifest{}, invalid("the stream is empty: did the backup write to this file? (backup must run without -t)")
	}
	if manifest == nil {
		return Manifest{}, invalid("no %s at the end: the backup is truncated", ManifestName)
	}
	if cr.n < manifestEnd+1024 {
		// tar ends with two zero blocks; without them the stream was cut.
		return Manifest{}, invalid("the archive lacks its end marker: the backup is truncated")
	}
	m := *manifest
	if m.Checksum == "" || m.Checksum != m.sum() {
		return Manifest{}, invalid("the manifest does not match its checksum: it was changed or damaged")
	}
	if m.Format < minFormat || m.Format > FormatVersion {
		return Manifest{}, invalid("format %d; this dtr reads formats %d to %d", m.Format, minFormat, FormatVersion)
	}
	if Root(m.DTRVersion) != root {
		return Manifest{}, invalid("the manifest says dtr %s but the root directory is %s/", m.DTRVersion, root)
	}
	if o.BlobsElsewhere && index != nil && m.Images != nil && m.Images.Included {
		// Taken as listed: checkImages holds them to the index, and the
		// caller re-hashes them against their digest where they are.
		for _, f := range m.Files {
			if d, ok := blobMember(f.Path); ok && "sha256:"+f.SHA256 == d {
				if _, inStream := seen[f.Path]; !inStream {
					seen[f.Path] = f
				}
			}
		}
	}
	listed := map[string]bool{}
	for _, f := range m.Files {
		if listed[f.Path] {
			return Manifest{}, invalid("the manifest lists %s twice", f.Path)
		}
		listed[f.Path] = true
		got, ok := seen[f.Path]
		switch {
		case !ok:
			return Manifest{}, invalid("%s is listed in the manifest but missing", f.Path)
		case got.Size != f.Size:
			return Manifest{}, invalid("%s has %d bytes; the manifest says %d", f.Path, got.Size, f.Size)
		case got.SHA256 != f.SHA256:
			return Manifest{}, invalid("%s does not match its sha256 in the manifest: the backup is corrupt", f.Path)
		}
	}
	for p := range seen {
		if !listed[p] {
			return Manifest{}, invalid("%s is not listed in the manifest", p)
		}
	}
	if err := checkImages(m, index, seen); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// memberLimit is the largest member a path may be.
func memberLimit(p string, isBlob bool) int64 {
	switch {
	case isBlob:
		return MaxBlob
	case p == ImageIndexName:
		return MaxIndex
	}
	return MaxMember
}

// checkImages holds the image section to the manifest: the index it
// summarises, and with images included every blob the index lists (but
// those the source lacked), each once; without, none.
func checkImages(m Manifest, ix *ImageIndex, seen map[string]File) error {
	if m.Format < 2 {
		if ix != nil || m.Images != nil {
			return invalid("a format %d backup has no image section", m.Format)
		}
		return nil
	}
	if ix == nil || m.Images == nil {
		return invalid("no %s: the backup is incomplete", ImageIndexName)
	}
	if want := ix.Summary(m.Images.Included); want != *m.Images {
		return invalid("the manifest's image summary %+v does not match %s (%+v)", *m.Images, ImageIndexName, want)
	}
	want := 0
	for _, b := range ix.Blobs {
		if b.Missing || !m.Images.Included {
			continue
		}
		want++
		f, ok := seen[BlobPath(b.Digest)]
		if !ok {
			return invalid("blob %s is listed in %s but missing from the archive", b.Digest, ImageIndexName)
		}
		if f.Size != b.Size {
			return invalid("blob %s has %d bytes; the image index says %d", b.Digest, f.Size, b.Size)
		}
	}
	got := 0
	for p := range seen {
		if _, ok := blobMember(p); ok {
			got++
		}
	}
	if got != want {
		return invalid("the archive holds %d blobs; its image index lists %d to include", got, want)
	}
	return nil
}

// ParseImageIndex decodes and checks an image index strictly.
func ParseImageIndex(b []byte) (*ImageIndex, error) {
	var ix ImageIndex
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ix); err != nil {
		return nil, fmt.Errorf("%s does not parse: %v", ImageIndexName, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: data after the index", ImageIndexName)
	}
	if err := ix.Check(); err != nil {
		return nil, err
	}
	return &ix, nil
}

// CheckVersion refuses a backup of another minor version than this dtr's.
func CheckVersion(m Manifest, version string) error {
	if images.MinorVersion(m.DTRVersion) != images.MinorVersion(version) {
		return fmt.Errorf("Couldn't restore from backup version %s on %s. Supported versions to restore from: %s.x", m.DTRVersion, version, images.MinorVersion(version))
	}
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// copyDense copies a member, refusing one that yields more bytes than the
// stream holds: sparse tar members (in any of tar's sparse formats) expand
// holes without input, so a few bytes could make the reader hash gigabytes.
func copyDense(w io.Writer, tr io.Reader, cr *countingReader, buf []byte) (int64, error) {
	start := cr.n
	var n int64
	for {
		k, err := tr.Read(buf)
		if k > 0 {
			n += int64(k)
			if n > cr.n-start+64<<10 {
				return n, errors.New("the member yields more data than the stream holds (a sparse file)")
			}
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
