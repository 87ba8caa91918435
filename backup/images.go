package backup

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/dtr-registry/dtr/contract"
)

// The image section (format 2). Every backup has an index of what the
// repositories reference; with --include-images the blobs follow it, each
// once, named by its digest:
//
//	images/index.json                 repositories (tags, manifests, layers) and every referenced blob
//	images/blobs/sha256/<hex>         the blob's bytes, sha256 = <hex>
//
// The index comes before the blobs, so a reader knows what it restores
// before the first blob, and a restore without images can still name the
// tags that storage lacks.
const (
	ImageIndexName = "images/index.json"
	blobPrefix     = "images/blobs/sha256/"
)

// MaxIndex bounds the image index a reader accepts (about 200 bytes a blob).
const MaxIndex = 256 << 20

// MaxBlob bounds one blob: a layer may be large, but not without limit.
const MaxBlob = 1 << 40

// Images is the manifest's summary of the image section.
type Images struct {
	// Included: the blobs are in the archive (dtr backup --include-images).
	Included     bool  `json:"included"`
	Repositories int   `json:"repositories"`
	Tags         int   `json:"tags"`
	Manifests    int   `json:"manifests"`
	Blobs        int   `json:"blobs"` // referenced digests, manifests too
	Bytes        int64 `json:"bytes"` // their size
	// Missing counts referenced blobs the source storage did not hold.
	Missing int `json:"missing,omitempty"`
}

// ImageIndex is images/index.json.
type ImageIndex struct {
	Repositories []ImageRepository `json:"repositories"`
	Blobs        []Blob            `json:"blobs"` // sorted by digest
}

// ImageRepository is what one repository links: its tags (tag → manifest
// digest), its manifest revisions and its layer links.
type ImageRepository struct {
	Name      string            `json:"name"`
	Tags      map[string]string `json:"tags,omitempty"`
	Manifests []string          `json:"manifests,omitempty"`
	Layers    []string          `json:"layers,omitempty"`
}

// Blob is one referenced digest.
type Blob struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// Manifest: a manifest or index; References are what it names
	// (config, layers, child manifests).
	Manifest   bool     `json:"manifest,omitempty"`
	References []string `json:"references,omitempty"`
	// Missing: the source storage did not hold it when the backup was
	// taken, so no backup can bring it back.
	Missing bool `json:"missing,omitempty"`
}

var digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// ValidDigest reports whether d is a canonical sha256 digest.
func ValidDigest(d string) bool { return digestRE.MatchString(d) }

// BlobPath is a blob's member path.
func BlobPath(digest string) string { return blobPrefix + strings.TrimPrefix(digest, "sha256:") }

// blobMember returns the digest a member path names, if it is a blob's.
func blobMember(p string) (string, bool) {
	hex, ok := strings.CutPrefix(p, blobPrefix)
	if !ok || !digestRE.MatchString("sha256:"+hex) {
		return "", false
	}
	return "sha256:" + hex, true
}

// Check verifies the index is whole: valid digests, blobs sorted and
// unique, and everything a repository or a manifest names is listed.
func (ix *ImageIndex) Check() error {
	listed := make(map[string]*Blob, len(ix.Blobs))
	for i := range ix.Blobs {
		b := &ix.Blobs[i]
		if !ValidDigest(b.Digest) {
			return fmt.Errorf("the image index lists %q, not a sha256 digest", b.Digest)
		}
		if i > 0 && ix.Blobs[i-1].Digest >= b.Digest {
			return fmt.Errorf("the image index lists its blobs out of order or twice (%s)", b.Digest)
		}
		if b.Size < 0 || b.Size > MaxBlob {
			return fmt.Errorf("the image index gives blob %s %d bytes", b.Digest, b.Size)
		}
		listed[b.Digest] = b
	}
	for _, b := range ix.Blobs {
		for _, ref := range b.References {
			if listed[ref] == nil {
				return fmt.Errorf("manifest %s references %s, which the image index does not list", b.Digest, ref)
			}
		}
	}
	seen := map[string]bool{}
	for _, r := range ix.Repositories {
		if r.Name == "" || seen[r.Name] || cleanRepoName(r.Name) != nil {
			return fmt.Errorf("the image index names repository %q twice or unsafely", r.Name)
		}
		seen[r.Name] = true
		for tag, d := range r.Tags {
			if tag == "" || strings.ContainsAny(tag, "/\\") || tag == "." || tag == ".." {
				return fmt.Errorf("repository %s: unsafe tag %q", r.Name, tag)
			}
			if b := listed[d]; b == nil || !b.Manifest {
				return fmt.Errorf("tag %s:%s names %s, which the image index does not list as a manifest", r.Name, tag, d)
			}
		}
		for _, d := range r.Manifests {
			if b := listed[d]; b == nil || !b.Manifest {
				return fmt.Errorf("repository %s links manifest %s, which the image index does not list as one", r.Name, d)
			}
		}
		for _, d := range r.Layers {
			if listed[d] == nil {
				return fmt.Errorf("repository %s links blob %s, which the image index does not list", r.Name, d)
			}
		}
	}
	return nil
}

// cleanRepoName refuses a repository name that could leave the storage's
// repositories directory.
func cleanRepoName(name string) error {
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." || strings.HasPrefix(part, "_") || strings.ContainsAny(part, "\\\x00") {
			return fmt.Errorf("unsafe repository name %q", name)
		}
	}
	return nil
}

// Summary is the manifest's account of the index.
func (ix *ImageIndex) Summary(included bool) Images {
	s := Images{Included: included, Repositories: len(ix.Repositories), Blobs: len(ix.Blobs)}
	for _, r := range ix.Repositories {
		s.Tags += len(r.Tags)
	}
	for _, b := range ix.Blobs {
		if b.Manifest {
			s.Manifests++
		}
		if b.Missing {
			s.Missing++
		} else {
			s.Bytes += b.Size
		}
	}
	return s
}

// MaxExamples is how many affected tags a storage check names.
const MaxExamples = 10

// CheckStorage compares the index with a storage: present reports whether
// storage holds a blob's data. It names the tags (and untagged manifests,
// such as signatures) that cannot be pulled whole.
func (ix *ImageIndex) CheckStorage(present func(digest string) (bool, error)) (contract.StorageCheck, error) {
	byDigest := make(map[string]*Blob, len(ix.Blobs))
	for i := range ix.Blobs {
		byDigest[ix.Blobs[i].Digest] = &ix.Blobs[i]
	}
	res := contract.StorageCheck{ReferencedBlobs: len(ix.Blobs), Repositories: len(ix.Repositories)}
	missing := map[string]bool{}
	for _, b := range ix.Blobs {
		ok, err := present(b.Digest)
		if err != nil {
			return res, err
		}
		if !ok {
			missing[b.Digest] = true
			res.MissingBlobs++
			res.MissingBytes += b.Size
		}
	}
	// broken: a manifest misses itself or anything it reaches (memoised;
	// indexes are at most a few levels deep).
	memo := map[string]bool{}
	var broken func(d string, depth int) bool
	broken = func(d string, depth int) bool {
		if v, ok := memo[d]; ok {
			return v
		}
		v := missing[d]
		if b := byDigest[d]; b != nil && !v && depth < 8 {
			for _, ref := range b.References {
				if broken(ref, depth+1) {
					v = true
					break
				}
			}
		}
		memo[d] = v
		return v
	}
	affectedRepos := 0
	for _, r := range ix.Repositories {
		hit := false
		tags := make([]string, 0, len(r.Tags))
		for t := range r.Tags {
			tags = append(tags, t)
		}
		sort.Strings(tags)
		tagged := map[string]bool{}
		for _, t := range tags {
			d := r.Tags[t]
			tagged[d] = true
			if broken(d, 0) {
				hit = true
				res.AffectedTags++
				if len(res.Examples) < MaxExamples {
					res.Examples = append(res.Examples, contract.AffectedImage{Repository: r.Name, Tag: t, Digest: d})
				}
			}
		}
		for _, d := range r.Manifests {
			if !tagged[d] && broken(d, 0) {
				hit = true
				res.AffectedManifests++
				if len(res.Examples) < MaxExamples {
					res.Examples = append(res.Examples, contract.AffectedImage{Repository: r.Name, Digest: d})
				}
			}
		}
		if hit {
			affectedRepos++
		}
	}
	res.AffectedRepositories = affectedRepos
	return res, nil
}
