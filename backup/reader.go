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
func Verify(r io.Reader) (Manifest, error) {
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	var manifestEnd int64
	root := ""
	seen := map[string]File{}
	var manifest *Manifest
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
		if hdr.Size < 0 || hdr.Size > MaxMember {
			return Manifest{}, invalid("entry %q claims %d bytes; members are at most %d", hdr.Name, hdr.Size, int64(MaxMember))
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if rest != "" {
				if err := cleanMember(rest); err != nil {
					return Manifest{}, invalid("%v", err)
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
		if rest == ManifestName {
			if hdr.Size > MaxManifest {
				return Manifest{}, invalid("manifest of %d bytes is larger than %d", hdr.Size, MaxManifest)
			}
			b, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
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
		n, err := copyDense(h, tr, cr)
		if err != nil || n != hdr.Size {
			return Manifest{}, invalid("%s is truncated or corrupt (%d of %d bytes): %v", rest, n, hdr.Size, err)
		}
		seen[rest] = File{Path: rest, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
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
	if m.Format != FormatVersion {
		return Manifest{}, invalid("format %d; this dtr reads format %d", m.Format, FormatVersion)
	}
	if Root(m.DTRVersion) != root {
		return Manifest{}, invalid("the manifest says dtr %s but the root directory is %s/", m.DTRVersion, root)
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
	return m, nil
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
func copyDense(w io.Writer, tr io.Reader, cr *countingReader) (int64, error) {
	start := cr.n
	buf := make([]byte, 32<<10)
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
