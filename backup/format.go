// Package backup is dtr's backup archive: a plain POSIX tar, written as a
// stream, whose manifest (written last, so the writer never buffers the
// backup) lists every file with its size and sha256. The reader verifies the
// whole stream (structure, manifest, sizes, hashes, version) before a
// restore may use any of it.
//
//	dtr-backup-v<version>/
//	  meta/<kind>/<key>.json   one JSON document per record
//	  certs/…                  CA, TLS and token-signing keys (the backup is a secret)
//	  config/…                 settings
//	  images/index.json        what the repositories reference (images.go)
//	  images/blobs/sha256/<hex>  with --include-images: each blob once
//	  manifest.json            last: format, versions, cluster, source, revision, files
package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/contract"
)

// FormatVersion is the archive layout version: 2 added the image section.
// A reader takes 1 too (a backup without it, restored like one without
// images).
const FormatVersion = 2

// minFormat is the oldest layout a reader takes.
const minFormat = 1

// ManifestName is the manifest's name inside the root directory.
const ManifestName = contract.BackupManifest

// Manifest describes a backup.
type Manifest struct {
	Format        int       `json:"format"`
	DTRVersion    string    `json:"dtrVersion"`
	Created       time.Time `json:"created"`
	ClusterID     string    `json:"clusterID"`
	SourceReplica string    `json:"sourceReplica"`
	EtcdRevision  int64     `json:"etcdRevision"`
	// Images summarises the image section (format 2).
	Images *Images `json:"images,omitempty"`
	Files  []File  `json:"files"`
	// Checksum is the sha256 of the manifest itself, written with Checksum
	// empty: the manifest guards every file, and this guards the manifest.
	Checksum string `json:"checksum"`
}

// sum is the manifest's checksum.
func (m Manifest) sum() string {
	m.Checksum = ""
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // a Manifest always marshals
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Seal sets the manifest's checksum (after any change to it).
func (m *Manifest) Seal() { m.Checksum = m.sum() }

// File is one archive member (path relative to the root directory).
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Root is the root directory name for a dtr version.
func Root(version string) string { return "dtr-backup-v" + version }

// cleanMember checks a member path relative to the root: no absolute paths,
// no "..", no empty components, only the top-level directories the format has.
func cleanMember(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.Contains(p, "..") {
		return fmt.Errorf("unsafe path %q", p)
	}
	top, _, _ := strings.Cut(p, "/")
	switch top {
	case "meta", "certs", "config":
		return nil
	case "images":
		if _, ok := blobMember(p); ok || p == ImageIndexName {
			return nil
		}
		if p == "images" || p == "images/blobs" || p == strings.TrimSuffix(blobPrefix, "/") {
			return nil // their directories
		}
	case ManifestName:
		if p == ManifestName {
			return nil
		}
	}
	return fmt.Errorf("unexpected path %q (a dtr backup holds meta/, certs/, config/, images/ and manifest.json)", p)
}
