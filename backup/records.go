package backup

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/dtr-registry/dtr/contract"
)

// Record is one metadata key and its JSON value. Every *.json file of a
// backup is a Record; restore writes Key back as it was, whatever the file
// is called, so file names only help a human reading `tar -t`.
type Record struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// Files that are not records: the operator's TLS certificate, which lives in
// Swarm objects rather than in the metadata.
const (
	TLSCertFile = contract.RecordTLSCert
	TLSKeyFile  = contract.RecordTLSKey
)

// RestoreClientName is the common name of the client certificate dtr
// restore presents when it sends a backup to the replica it created; the
// cluster CA in that backup issues it, so only whoever holds the backup can
// restore it.
const RestoreClientName = "dtr-restore"

// RestorePath is where a waiting replica takes the backup (PUT, HTTPS).
const RestorePath = "/api/v0/meta/restore"

// IsRecord reports whether an archive path holds a Record.
func IsRecord(path string) bool {
	return strings.HasSuffix(path, ".json") && path != ManifestName && !strings.HasPrefix(path, "images/")
}

// ParseRecord decodes a record strictly: exactly key and value, nothing after.
func ParseRecord(path string, b []byte) (Record, error) {
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return Record{}, fmt.Errorf("%s: not a record: %v", path, err)
	}
	if dec.More() {
		return Record{}, fmt.Errorf("%s: data after the record", path)
	}
	if rec.Key == "" || len(rec.Value) == 0 || !json.Valid(rec.Value) {
		return Record{}, fmt.Errorf("%s: a record needs a key and a JSON value", path)
	}
	return rec, nil
}

// SafeName makes a metadata key component usable as a file name: keys are
// already path-escaped, but ".." is legal in them and never in a backup path.
func SafeName(s string) string { return strings.ReplaceAll(s, "..", "%2E%2E") }

// Walk calls fn with every file of a backup stream (path relative to the
// root directory, and its content), in archive order, skipping the manifest
// and the image section (WalkImages reads that). It checks only what it
// needs to walk: Verify the stream first.
func Walk(r io.Reader, fn func(path string, data []byte) error) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return invalid("reading the archive: %v", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		_, rest, _ := strings.Cut(hdr.Name, "/")
		if rest == ManifestName || strings.HasPrefix(rest, "images/") {
			continue
		}
		if hdr.Size > MaxMember {
			return invalid("%s claims %d bytes", rest, hdr.Size)
		}
		b, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
		if err != nil {
			return invalid("reading %s: %v", rest, err)
		}
		if err := fn(rest, b); err != nil {
			return err
		}
	}
}

// WalkImages reads a backup's image section: index receives the image
// index (nil for a backup without one, which ends the walk), then blob is
// called with every blob in the archive and a reader of its bytes that
// fails, at its end, if they do not match the digest. blob must read the
// reader to its end before it keeps anything. Verify the stream first.
func WalkImages(r io.Reader, index func(*ImageIndex) error, blob func(b Blob, body io.Reader) error) error {
	tr := tar.NewReader(r)
	var ix *ImageIndex
	sizes := map[string]Blob{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return invalid("reading the archive: %v", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		_, rest, _ := strings.Cut(hdr.Name, "/")
		if rest == ImageIndexName {
			if hdr.Size > MaxIndex {
				return invalid("%s claims %d bytes", rest, hdr.Size)
			}
			b, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
			if err != nil {
				return invalid("reading %s: %v", rest, err)
			}
			if ix, err = ParseImageIndex(b); err != nil {
				return invalid("%v", err)
			}
			for _, bl := range ix.Blobs {
				sizes[bl.Digest] = bl
			}
			if err := index(ix); err != nil {
				return err
			}
			continue
		}
		d, ok := blobMember(rest)
		if !ok {
			continue
		}
		bl, listed := sizes[d]
		if ix == nil || !listed || bl.Size != hdr.Size {
			return invalid("blob %s is not in the image index as it is in the archive", d)
		}
		if err := blob(bl, &digestReader{r: io.LimitReader(tr, hdr.Size), want: d, left: hdr.Size, h: sha256.New()}); err != nil {
			return err
		}
	}
	if ix == nil {
		return index(nil)
	}
	return nil
}

// digestReader passes a blob's bytes through and, at their end, fails
// unless they are as many as the index says and hash to the digest.
type digestReader struct {
	r    io.Reader
	h    hash.Hash
	want string
	left int64
}

func (d *digestReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	d.left -= int64(n)
	if errors.Is(err, io.EOF) {
		if d.left != 0 {
			return n, invalid("blob %s is truncated", d.want)
		}
		if got := "sha256:" + hex.EncodeToString(d.h.Sum(nil)); got != d.want {
			return n, invalid("blob %s does not match its digest (its bytes hash to %s): the backup is corrupt", d.want, got)
		}
	}
	return n, err
}
