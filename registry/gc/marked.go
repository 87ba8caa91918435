package gc

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/distribution/distribution/v3/registry/storage/driver"
)

// Marked is what the marking of a collection finds in some repositories, in
// the detail a backup of the images and a storage check need: what is
// referenced, by what, and where it is linked.
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
}

// Mark runs the marking of a collection over repos, and only that: no
// lease, no epoch, nothing deleted. Every stored manifest of a repository
// is a root, as in a collection that keeps untagged manifests.
func Mark(ctx context.Context, drv driver.StorageDriver, repos []string, workers int, logf func(format string, args ...any)) (*Marked, error) {
	r, err := New(Config{Driver: func() driver.StorageDriver { return drv }}).NewRun(nil, Options{Workers: workers}, logf)
	if err != nil {
		return nil, err
	}
	repos = append([]string(nil), repos...)
	sort.Strings(repos)
	m := &Marked{References: map[string][]string{}, Revisions: map[string][]string{}, LayerLinks: map[string][]string{}}
	var mu sync.Mutex
	err = parallel(ctx, r.opts.Workers, repos, func(repo string) error {
		if err := r.walkRepository(ctx, repo); err != nil {
			return err
		}
		// The revision links again, by repository (a collection only
		// needs their union): one listing for sha256, whose directory
		// names are the digests; a walk only for another algorithm.
		revisions := path.Join(repositoriesRoot, repo, "_manifests", "revisions")
		algs, err := r.drv.List(ctx, revisions)
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("listing the manifests of %s: %w", repo, err)
		}
		var revs []string
		var rmu sync.Mutex // a driver may walk in parallel
		for _, alg := range algs {
			if path.Base(alg) == "sha256" {
				hexes, err := r.drv.List(ctx, alg)
				if err != nil && !isNotFound(err) {
					return fmt.Errorf("listing the manifests of %s: %w", repo, err)
				}
				for _, h := range hexes {
					if !hexRE.MatchString(path.Base(h)) {
						continue
					}
					// A deleted manifest leaves its directory without a link.
					if _, err := r.drv.Stat(ctx, path.Join(h, "link")); err == nil {
						revs = append(revs, "sha256:"+path.Base(h))
					} else if !isNotFound(err) {
						return fmt.Errorf("reading the manifests of %s: %w", repo, err)
					}
				}
				continue
			}
			err := r.drv.Walk(ctx, alg, func(fi driver.FileInfo) error {
				d, err := r.linkTarget(ctx, revisions, fi)
				if d != "" {
					rmu.Lock()
					revs = append(revs, d)
					rmu.Unlock()
				}
				return err
			})
			if err != nil && !isNotFound(err) {
				return fmt.Errorf("listing the manifests of %s: %w", repo, err)
			}
		}
		sort.Strings(revs)
		mu.Lock()
		m.Revisions[repo] = compact(revs)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	var manifests []string
	pending := r.takePending()
	for len(pending) > 0 {
		if err := parallel(ctx, r.opts.Workers, pending, func(d string) error { return r.readManifest(ctx, d) }); err != nil {
			return nil, err
		}
		manifests = append(manifests, pending...)
		pending = r.takePending()
	}
	// What each manifest names, as readManifest resolved it (a second read
	// of each manifest: they are small, and the collection's path stays
	// as it is).
	err = parallel(ctx, r.opts.Workers, manifests, func(d string) error {
		mr, err := r.loadManifest(ctx, d)
		if mr == nil {
			return err
		}
		names := mr.blobs()
		for _, c := range mr.Manifests {
			names = append(names, c.Digest)
		}
		r.mu.Lock()
		refs := make([]string, 0, len(names))
		for _, n := range names {
			if c := r.resolveLocked(n); c != "" {
				refs = append(refs, c)
			}
		}
		r.mu.Unlock()
		sort.Strings(refs)
		refs = compact(refs)
		mu.Lock()
		m.References[d] = refs
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.Digests = r.marked
	prefix := repositoriesRoot + "/"
	for d, dirs := range r.links {
		if !r.marked[d] {
			continue // linked, named by no manifest: a collection drops it
		}
		for _, dir := range dirs {
			rest := strings.TrimPrefix(dir, prefix) // <repo>/_layers/<alg>/<hex>
			if i := strings.LastIndex(rest, "/_layers/"); i > 0 {
				m.LayerLinks[rest[:i]] = append(m.LayerLinks[rest[:i]], d)
			}
		}
	}
	for repo, ds := range m.LayerLinks {
		sort.Strings(ds)
		m.LayerLinks[repo] = compact(ds)
	}
	return m, nil
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
