package backup

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
func IsRecord(path string) bool { return strings.HasSuffix(path, ".json") && path != ManifestName }

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
// root directory, and its content), in archive order, skipping the manifest.
// It checks only what it needs to walk: Verify the stream first.
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
		if rest == ManifestName {
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
