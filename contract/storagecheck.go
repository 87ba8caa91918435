package contract

import (
	"fmt"
	"strings"
)

// StorageCheckPath is the admin API call that compares what the
// repositories reference with what the registry storage holds (dtr backup
// --check-storage).
const StorageCheckPath = "/api/v0/meta/storage_check"

// StorageCheck is how many referenced blobs a storage lacks, and which
// images that breaks.
type StorageCheck struct {
	Repositories    int   `json:"repositories"`
	ReferencedBlobs int   `json:"referencedBlobs"`
	MissingBlobs    int   `json:"missingBlobs"`
	MissingBytes    int64 `json:"missingBytes"`
	// AffectedTags cannot be pulled whole; AffectedManifests are untagged
	// manifests (signatures, other referrers, an index's children) that
	// cannot either.
	AffectedTags         int             `json:"affectedTags"`
	AffectedManifests    int             `json:"affectedManifests"`
	AffectedRepositories int             `json:"affectedRepositories"`
	Examples             []AffectedImage `json:"examples,omitempty"` // the first few
	// Restored is the same check of what the backup this replica restored
	// referenced, while storage lacks some of it: the tags whose links
	// storage never had are known only from the backup.
	Restored *StorageCheck `json:"restored,omitempty"`
}

// Missing is the check that names what is missing: the restored backup's
// when there is one (it knows every tag), else the storage's own.
func (c StorageCheck) Missing() StorageCheck {
	if c.Restored != nil && c.Restored.MissingBlobs > 0 {
		return *c.Restored
	}
	return c
}

// AffectedImage is a tag (or an untagged manifest) that lacks blobs.
type AffectedImage struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest"`
}

func (a AffectedImage) String() string {
	if a.Tag != "" {
		return a.Repository + ":" + a.Tag
	}
	return a.Repository + "@" + a.Digest
}

// Summary is the check in one sentence, "" when nothing is missing.
func (c StorageCheck) Summary() string {
	if c.MissingBlobs == 0 {
		return ""
	}
	names := make([]string, len(c.Examples))
	for i, e := range c.Examples {
		names[i] = e.String()
	}
	more := ""
	if n := c.AffectedTags + c.AffectedManifests - len(c.Examples); n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	return fmt.Sprintf("%d of %d referenced blobs (%d bytes) are missing from the registry storage; %d tags and %d untagged manifests in %d repositories cannot be pulled: %s%s",
		c.MissingBlobs, c.ReferencedBlobs, c.MissingBytes, c.AffectedTags, c.AffectedManifests, c.AffectedRepositories, strings.Join(names, ", "), more)
}
