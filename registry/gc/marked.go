package gc

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/distribution/distribution/v3/registry/storage/driver"
)

// Marked is what the marking of a collection finds in some repositories, in
// the detail a backup of the images and a storage check need: what is
// referenced, by what, where it is linked, and the repositories' tags.
type Marked struct {
	// Digests are every canonical digest referenced: the manifests, and
	// what they name.
	Digests map[string]bool
	// References are, for each manifest whose data could be read, the
	// canonical digests it names (config, layers, child manifests).
	References map[string][]string
	// Revisions are each repository's manifest revision links.
	Revisions map[string][]string
	// LayerLinks are each repository's layer links to referenced digests.
	LayerLinks map[string][]string
	// Tags are each repository's tags: tag → the digest its current link
	// names, as written there.
	Tags map[string]map[string]string
	// Sizes are what the marking learnt of sizes without asking storage:
	// a manifest's length as read, another blob's as a manifest naming it
	// gives it (0 when none does, as in Docker schema 1).
	Sizes map[string]int64
	// Missing are the linked manifests whose data storage lacks.
	Missing map[string]bool
}

// Mark runs the marking of a collection over repos, and only that: no
// lease, no epoch, nothing deleted. Every stored manifest of a repository
// is a root, as in a collection that keeps untagged manifests.
//
// It keeps what a collection keeps with fewer storage calls, as a backup
// runs it on every registry whatever its size: the links of a repository
// in one walk where the driver lists trees natively (S3), else one listing
// per link directory (whose names are the digests) and a stat of each
// link; one read of each tag's current link; and one read of each
// manifest, which gives its references and the sizes of what it names.
func Mark(ctx context.Context, drv driver.StorageDriver, repos []string, workers int, logf func(format string, args ...any)) (*Marked, error) {
	r, err := New(Config{Driver: func() driver.StorageDriver { return drv }}).NewRun(nil, Options{Workers: workers}, logf)
	if err != nil {
		return nil, err
	}
	repos = append([]string(nil), repos...)
	sort.Strings(repos)
	m := &Marked{References: map[string][]string{}, Revisions: map[string][]string{}, LayerLinks: map[string][]string{},
		Tags: map[string]map[string]string{}, Sizes: map[string]int64{}, Missing: map[string]bool{}}
	layers := map[string][]string{}
	var mu sync.Mutex
	// A driver whose walk lists a tree in a few calls (S3: a listing
	// without a delimiter, a page per 1,000 keys) walks each repository
	// once; on a filesystem a walk stats every entry, so the link
	// directories are listed and only the links stat'ed.
	walks := drv.Name() != "filesystem" && drv.Name() != "inmemory"
	err = parallel(ctx, r.opts.Workers, repos, func(repo string) error {
		dir := path.Join(repositoriesRoot, repo)
		var revs, lays []string
		var tags map[string]string
		var err error
		if walks {
			revs, lays, tags, err = r.walkLinks(ctx, repo)
			if err != nil {
				return err
			}
		} else {
			revs, err = r.linkedDigests(ctx, path.Join(dir, "_manifests", "revisions"))
			if err != nil {
				return fmt.Errorf("listing the manifests of %s: %w", repo, err)
			}
			lays, err = r.linkedDigests(ctx, path.Join(dir, "_layers"))
			if err != nil {
				return fmt.Errorf("listing the layer links of %s: %w", repo, err)
			}
			if tags, err = r.tags(ctx, repo); err != nil {
				return err
			}
		}
		for _, d := range revs {
			r.markManifest(d)
		}
		mu.Lock()
		m.Revisions[repo], layers[repo] = revs, lays
		if len(tags) > 0 {
			m.Tags[repo] = tags
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Every manifest a revision link names, then the child manifests of
	// indexes, each read once however many repositories hold it. Every
	// link was listed first: a reference by another algorithm resolves
	// through the aliases they gave.
	for pending := r.takePending(); len(pending) > 0; pending = r.takePending() {
		if err := parallel(ctx, r.opts.Workers, pending, func(d string) error { return r.readIndexed(ctx, d, m, &mu) }); err != nil {
			return nil, err
		}
	}
	m.Digests = r.marked
	for repo, ds := range layers {
		var kept []string
		for _, d := range ds {
			if r.marked[d] { // linked, named by no manifest: a collection drops it
				kept = append(kept, d)
			}
		}
		if len(kept) > 0 {
			m.LayerLinks[repo] = kept
		}
	}
	return m, nil
}

// linkedDigests are the canonical digests of the links under dir
// (<dir>/<alg>/<hex>/link), sorted: for sha256 a listing, whose directory
// names are the digests, and a stat of each link (a deleted link leaves its
// directory behind); for another algorithm a walk, whose links say the
// digest.
func (r *Run) linkedDigests(ctx context.Context, dir string) ([]string, error) {
	algs, err := r.drv.List(ctx, dir)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	var mu sync.Mutex // a driver may walk in parallel
	for _, alg := range algs {
		if path.Base(alg) != "sha256" {
			err := r.drv.Walk(ctx, alg, func(fi driver.FileInfo) error {
				d, err := r.linkTarget(ctx, dir, fi)
				if d != "" {
					mu.Lock()
					out = append(out, d)
					mu.Unlock()
				}
				return err
			})
			if err != nil && !isNotFound(err) {
				return nil, err
			}
			continue
		}
		hexes, err := r.drv.List(ctx, alg)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, h := range hexes {
			if !hexRE.MatchString(path.Base(h)) {
				continue
			}
			fi, err := r.drv.Stat(ctx, path.Join(h, "link"))
			switch {
			case err == nil && !fi.IsDir():
				out = append(out, "sha256:"+path.Base(h))
			case err == nil, isNotFound(err):
			default:
				return nil, err
			}
		}
	}
	sort.Strings(out)
	return compact(out), nil
}

// walkLinks walks a repository once for its revision links, layer links
// and tags (not into its uploads, nor into repositories nested in it).
func (r *Run) walkLinks(ctx context.Context, repo string) (revs, layers []string, tags map[string]string, err error) {
	dir := path.Join(repositoriesRoot, repo)
	revDir, layerDir := path.Join(dir, "_manifests", "revisions"), path.Join(dir, "_layers")
	var mu sync.Mutex // a driver may walk in parallel
	var tagNames []string
	err = r.drv.Walk(ctx, dir, func(fi driver.FileInfo) error {
		rel := strings.TrimPrefix(fi.Path(), dir+"/")
		if fi.IsDir() {
			if top, _, _ := strings.Cut(rel, "/"); top == "_uploads" || !strings.HasPrefix(top, "_") {
				return driver.ErrSkipDir
			}
			return nil
		}
		var d string
		var err error
		var into *[]string
		switch {
		case strings.HasPrefix(rel, "_manifests/revisions/"):
			d, err = r.linkTarget(ctx, revDir, fi)
			into = &revs
		case strings.HasPrefix(rel, "_layers/"):
			d, err = r.linkTarget(ctx, layerDir, fi)
			into = &layers
		default:
			// _manifests/tags/<tag>/current/link
			if p := strings.Split(rel, "/"); len(p) == 5 && p[0] == "_manifests" && p[1] == "tags" && p[3] == "current" && p[4] == "link" {
				mu.Lock()
				tagNames = append(tagNames, p[2])
				mu.Unlock()
			}
			return nil
		}
		if d != "" {
			mu.Lock()
			*into = append(*into, d)
			mu.Unlock()
		}
		return err
	})
	if err != nil && !isNotFound(err) {
		return nil, nil, nil, fmt.Errorf("listing the links of %s: %w", repo, err)
	}
	sort.Strings(revs)
	sort.Strings(layers)
	tags = make(map[string]string, len(tagNames))
	for _, t := range tagNames {
		b, err := r.drv.GetContent(ctx, path.Join(dir, "_manifests", "tags", t, "current", "link"))
		if isNotFound(err) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reading tag %s of %s: %w", t, repo, err)
		}
		tags[t] = strings.TrimSpace(string(b))
	}
	return compact(revs), compact(layers), tags, nil
}

// tags reads a repository's tags: the digest each one's current link names.
func (r *Run) tags(ctx context.Context, repo string) (map[string]string, error) {
	dirs, err := r.drv.List(ctx, path.Join(repositoriesRoot, repo, "_manifests", "tags"))
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the tags of %s: %w", repo, err)
	}
	out := make(map[string]string, len(dirs))
	for _, t := range dirs {
		b, err := r.drv.GetContent(ctx, path.Join(t, "current", "link"))
		if isNotFound(err) {
			continue // deleted meanwhile, or a tag directory without a current link
		}
		if err != nil {
			return nil, fmt.Errorf("reading tag %s of %s: %w", path.Base(t), repo, err)
		}
		out[path.Base(t)] = strings.TrimSpace(string(b))
	}
	return out, nil
}

// descriptor is a reference in a manifest, with the size it claims.
type descriptor struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// indexedManifest is manifestRefs with the sizes the descriptors give.
type indexedManifest struct {
	Config    *descriptor  `json:"config"`
	Layers    []descriptor `json:"layers"`
	Blobs     []descriptor `json:"blobs"`
	Manifests []descriptor `json:"manifests"`
	FSLayers  []struct {
		BlobSum string `json:"blobSum"`
	} `json:"fsLayers"`
}

// readIndexed is readManifest for Mark: it marks what manifest d names and
// queues its children, and records in m its references, its length and the
// sizes it gives its references.
func (r *Run) readIndexed(ctx context.Context, d string, m *Marked, mu *sync.Mutex) error {
	b, err := r.drv.GetContent(ctx, BlobDataPath(d))
	if isNotFound(err) {
		r.logf("manifest %s is linked but its data is missing: nothing to mark", d)
		mu.Lock()
		m.Missing[d] = true
		mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading manifest %s: %w", d, err)
	}
	var mf indexedManifest
	if err := json.Unmarshal(b, &mf); err != nil {
		r.logf("manifest %s is not JSON (%v): nothing it names is marked", d, err)
		mu.Lock()
		m.Sizes[d] = int64(len(b))
		mu.Unlock()
		return nil
	}
	blobs := append([]descriptor(nil), mf.Layers...)
	if mf.Config != nil {
		blobs = append(blobs, *mf.Config)
	}
	blobs = append(blobs, mf.Blobs...)
	for _, l := range mf.FSLayers {
		blobs = append(blobs, descriptor{Digest: l.BlobSum})
	}
	refs := make([]string, 0, len(blobs)+len(mf.Manifests))
	sizes := make(map[string]int64, cap(refs))
	r.mu.Lock()
	for _, ref := range blobs {
		if c := r.resolveLocked(ref.Digest); c != "" {
			r.markLocked(c)
			refs = append(refs, c)
			if ref.Size > 0 {
				sizes[c] = ref.Size
			}
		}
	}
	for _, child := range mf.Manifests {
		if c := r.resolveLocked(child.Digest); c != "" {
			r.markLocked(c)
			if _, seen := r.parsed[c]; !seen {
				r.parsed[c] = false
			}
			refs = append(refs, c)
			if child.Size > 0 {
				sizes[c] = child.Size
			}
		}
	}
	r.mu.Unlock()
	sort.Strings(refs)
	refs = compact(refs)
	mu.Lock()
	defer mu.Unlock()
	m.References[d] = refs
	m.Sizes[d] = int64(len(b)) // what was read beats what a parent claims
	for c, n := range sizes {
		if _, known := m.Sizes[c]; !known {
			m.Sizes[c] = n
		}
	}
	return nil
}

func compact(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
