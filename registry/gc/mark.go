package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/dtr-registry/dtr/registry/meta"
)

// mark finds every digest the roots reference: the repositories with a
// record, and those storage holds without one in a namespace whose account
// exists (a push that crashed before its record; the reconciler adopts
// them). It returns the repositories that are no root: in storage, without
// a record, their namespace account gone.
func (r *Run) mark(ctx context.Context) ([]string, error) {
	known, err := r.c.cfg.Store.RepositoryNames(ctx)
	if err != nil {
		return nil, err
	}
	inStorage, err := r.c.cfg.StorageRepositories(ctx, known)
	if err != nil {
		return nil, err
	}
	roots := make([]string, 0, len(known))
	for name := range known {
		roots = append(roots, name)
	}
	var orphans []string
	accounts := map[string]bool{}
	for _, repo := range inStorage {
		if known[repo] {
			continue
		}
		ns, _, _ := strings.Cut(repo, "/")
		exists, seen := accounts[ns]
		if !seen {
			_, err := r.c.cfg.Store.Account(ctx, ns)
			switch {
			case err == nil:
				exists = true
			case errors.Is(err, meta.ErrNotFound):
			default:
				return nil, err
			}
			accounts[ns] = exists
		}
		if exists {
			roots = append(roots, repo)
			r.logf("repository %s is in storage without a record (a push that did not finish?): marked like the others", repo)
		} else {
			orphans = append(orphans, repo)
		}
	}
	sort.Strings(roots)
	r.prog.repos.Store(int64(len(roots)))
	if r.opts.DeleteUntagged {
		if err := r.loadReferrers(ctx); err != nil {
			return nil, err
		}
	}
	if err := parallel(ctx, r.opts.Workers, roots, func(repo string) error {
		return r.paced(ctx, func() error { return r.walkRepository(ctx, repo) })
	}); err != nil {
		return nil, err
	}
	// Every manifest a revision link names, then the child manifests of
	// indexes, each read once however many repositories hold it.
	pending := r.takePending()
	for len(pending) > 0 {
		if err := parallel(ctx, r.opts.Workers, pending, func(d string) error {
			return r.paced(ctx, func() error { return r.readManifest(ctx, d) })
		}); err != nil {
			return nil, err
		}
		pending = r.takePending()
	}
	r.logf("marked %d manifests and %d blobs in %d repositories", r.prog.manifests.Load(), r.prog.blobsMarked.Load(), len(roots))
	return orphans, nil
}

// walkRepository lists a repository's manifest revisions (marking each,
// or with deleteUntagged what its tags keep) and its layer links (noting
// when each was written, and where).
func (r *Run) walkRepository(ctx context.Context, repo string) error {
	revisions := path.Join(repositoriesRoot, repo, "_manifests", "revisions")
	var mu sync.Mutex
	stored := map[string]driver.FileInfo{}
	err := r.drv.Walk(ctx, revisions, func(fi driver.FileInfo) error {
		d, err := r.linkTarget(ctx, revisions, fi)
		switch {
		case d == "":
		case r.opts.DeleteUntagged:
			mu.Lock()
			stored[d] = fi
			mu.Unlock()
		default:
			r.markManifest(d)
		}
		return err
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("listing the manifests of %s: %w", repo, err)
	}
	if r.opts.DeleteUntagged {
		if err := r.keepTagged(ctx, repo, stored); err != nil {
			return err
		}
	}
	layers := path.Join(repositoriesRoot, repo, "_layers")
	err = r.drv.Walk(ctx, layers, func(fi driver.FileInfo) error {
		d, err := r.linkTarget(ctx, layers, fi)
		if d == "" {
			return err
		}
		r.mu.Lock()
		if t := fi.ModTime(); t.After(r.linkTime[d]) || t.IsZero() {
			if t.IsZero() {
				t = r.t0 // unknown: as new as can be, so the blob is kept
			}
			r.linkTime[d] = t
		}
		r.links[d] = append(r.links[d], path.Dir(fi.Path()))
		r.mu.Unlock()
		return nil
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("listing the layer links of %s: %w", repo, err)
	}
	return nil
}

// linkTarget is the canonical digest a link file <dir>/<alg>/<hex>/link
// names: the path says it for sha256; for another algorithm the link's
// content does (Distribution stores all content under sha256), and the
// alias is remembered for the manifests that use it. "" for anything else.
func (r *Run) linkTarget(ctx context.Context, dir string, fi driver.FileInfo) (string, error) {
	if fi.IsDir() || path.Base(fi.Path()) != "link" {
		return "", nil
	}
	rel := strings.Split(strings.TrimPrefix(fi.Path(), dir+"/"), "/")
	if len(rel) != 3 {
		return "", nil
	}
	alg, hex := rel[0], rel[1]
	if alg == "sha256" {
		if !hexRE.MatchString(hex) {
			return "", nil
		}
		return "sha256:" + hex, nil
	}
	b, err := r.drv.GetContent(ctx, fi.Path())
	if isNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", fi.Path(), err)
	}
	target := strings.TrimSpace(string(b))
	if !strings.HasPrefix(target, "sha256:") || !hexRE.MatchString(target[len("sha256:"):]) {
		return "", nil
	}
	r.mu.Lock()
	r.aliases[alg+":"+hex] = target
	r.mu.Unlock()
	return target, nil
}

func (r *Run) markManifest(d string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.markLocked(d)
	if !r.parsed[d] {
		r.parsed[d] = false // queued, not read yet
	}
}

func (r *Run) markLocked(d string) {
	if !r.marked[d] {
		r.marked[d] = true
		r.prog.blobsMarked.Add(1)
	}
}

// takePending returns the manifests queued and not read yet, and counts
// them as read.
func (r *Run) takePending() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for d, done := range r.parsed {
		if !done {
			out = append(out, d)
			r.parsed[d] = true
		}
	}
	sort.Strings(out)
	r.prog.manifests.Add(int64(len(out)))
	return out
}

// manifestRefs are the references of every manifest format Distribution
// has stored: OCI and Docker image manifests (config, layers), indexes and
// manifest lists (manifests), OCI's short-lived artifact manifest (blobs)
// and Docker schema 1 (fsLayers). A subject is not a reference that keeps
// its target: a signature does not keep the image it signs.
type manifestRefs struct {
	Config    *struct{ Digest string }  `json:"config"`
	Layers    []struct{ Digest string } `json:"layers"`
	Blobs     []struct{ Digest string } `json:"blobs"`
	Manifests []struct{ Digest string } `json:"manifests"`
	FSLayers  []struct {
		BlobSum string `json:"blobSum"`
	} `json:"fsLayers"`
}

// loadManifest reads manifest d's references, nil when it has none to
// give: its data is missing, or it is not JSON (no client can pull it, so
// nothing usable depends on what it might have named).
func (r *Run) loadManifest(ctx context.Context, d string) (*manifestRefs, error) {
	r.mu.Lock()
	m, ok := r.refs[d]
	delete(r.refs, d)
	r.mu.Unlock()
	if ok {
		return m, nil
	}
	b, err := r.drv.GetContent(ctx, BlobDataPath(d))
	if isNotFound(err) {
		r.logf("manifest %s is linked but its data is missing: nothing to mark", d)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", d, err)
	}
	m = &manifestRefs{}
	if err := json.Unmarshal(b, m); err != nil {
		r.logf("manifest %s is not JSON (%v): nothing it names is marked", d, err)
		return nil, nil
	}
	return m, nil
}

// blobs are the blobs (not child manifests) a manifest references, as
// written in it.
func (m *manifestRefs) blobs() []string {
	var out []string
	if m.Config != nil {
		out = append(out, m.Config.Digest)
	}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	for _, l := range m.Blobs {
		out = append(out, l.Digest)
	}
	for _, l := range m.FSLayers {
		out = append(out, l.BlobSum)
	}
	return out
}

// readManifest marks what manifest d references and queues its children.
func (r *Run) readManifest(ctx context.Context, d string) error {
	m, err := r.loadManifest(ctx, d)
	if m == nil {
		return err
	}
	blobs := m.blobs()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ref := range blobs {
		if c := r.resolveLocked(ref); c != "" {
			r.markLocked(c)
		}
	}
	for _, child := range m.Manifests {
		if c := r.resolveLocked(child.Digest); c != "" {
			r.markLocked(c)
			if _, seen := r.parsed[c]; !seen {
				r.parsed[c] = false
			}
		}
	}
	return nil
}

// resolveLocked is the canonical digest of a reference, "" when no
// repository links it by that name (then storage has nothing under it).
func (r *Run) resolveLocked(ref string) string {
	if hex, ok := strings.CutPrefix(ref, "sha256:"); ok {
		if hexRE.MatchString(hex) {
			return ref
		}
		return ""
	}
	return r.aliases[ref]
}

// list walks the blob store once and returns the candidates: data not
// marked, written before the cutoff, and linked into no repository since;
// then, with deleteUntagged, the untagged manifests whose data stays (used
// elsewhere, or missing): only their revision links go.
func (r *Run) list(ctx context.Context) ([]candidate, error) {
	var cands []candidate
	seen := map[string]bool{}
	stretch := time.Now()
	err := r.drv.Walk(ctx, blobsRoot, func(fi driver.FileInfo) error {
		if fi.IsDir() || path.Base(fi.Path()) != "data" {
			return nil
		}
		if len(seen)%listStretch == 0 {
			stretch = r.breathe(ctx, stretch)
		}
		hex := path.Base(path.Dir(fi.Path()))
		if !hexRE.MatchString(hex) {
			return nil
		}
		r.prog.scanned.Add(1)
		d := "sha256:" + hex
		seen[d] = true
		if r.marked[d] || !r.oldEnough(fi.ModTime()) || !r.linksOldEnough(d) {
			return nil
		}
		cands = append(cands, candidate{digest: d, size: fi.Size()})
		r.prog.cands.Add(1)
		r.prog.candBytes.Add(fi.Size())
		return nil
	})
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	for d := range r.untagged {
		if r.marked[d] || !seen[d] {
			cands = append(cands, candidate{digest: d, linksOnly: true})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].digest < cands[j].digest })
	return cands, nil
}

// listStretch is how many blobs the listing reads between two chances to
// give way to clients.
const listStretch = 256

// oldEnough: written before the cutoff. A driver that reports no time
// keeps the blob.
func (r *Run) oldEnough(t time.Time) bool { return !t.IsZero() && t.Before(r.cutoff) }

func (r *Run) linksOldEnough(d string) bool {
	t, ok := r.linkTime[d]
	return !ok || t.Before(r.cutoff)
}

// untaggedMinAge keeps a manifest that no tag names yet for at least this
// long, whatever the grace period: a push writes the manifest, then its
// tag, and a run between the two must not take the manifest.
const untaggedMinAge = 10 * time.Minute

// loadReferrers reads the referrers index once (deleteUntagged): a
// referrer of a kept manifest is kept, tagged or not.
func (r *Run) loadReferrers(ctx context.Context) error {
	idx, err := r.c.cfg.Store.IndexedReferrers(ctx)
	if err != nil {
		return err
	}
	r.referrers = map[string]map[string][]string{}
	for _, e := range idx {
		m := r.referrers[e.Repo]
		if m == nil {
			m = map[string][]string{}
			r.referrers[e.Repo] = m
		}
		m[e.Subject] = append(m[e.Subject], e.Digest)
	}
	return nil
}

// keepTagged marks what a repository keeps with deleteUntagged: the
// manifests its tags name, the children of kept indexes, the referrers of
// kept manifests, and every manifest stored recently. The revision links
// of the other stored manifests are noted for the sweep.
func (r *Run) keepTagged(ctx context.Context, repo string, stored map[string]driver.FileInfo) error {
	tagged, err := r.tagTargets(ctx, repo)
	if err != nil {
		return err
	}
	kept := map[string]bool{}
	var queue []string
	keep := func(d string) {
		if d != "" && !kept[d] {
			kept[d] = true
			queue = append(queue, d)
		}
	}
	for _, d := range tagged {
		keep(d)
	}
	recent := r.cutoff
	if t := r.t0.Add(-untaggedMinAge); t.Before(recent) {
		recent = t
	}
	for d, fi := range stored {
		if t := fi.ModTime(); t.IsZero() || !t.Before(recent) {
			keep(d)
		}
	}
	for i := 0; i < len(queue); i++ {
		d := queue[i]
		m, err := r.loadManifest(ctx, d)
		if err != nil {
			return err
		}
		if m != nil {
			r.mu.Lock()
			r.refs[d] = m // for the marking, which reads it next
			for _, c := range m.Manifests {
				keep(r.resolveLocked(c.Digest))
			}
			r.mu.Unlock()
		}
		for _, ref := range r.referrers[repo][d] {
			keep(ref)
		}
	}
	for d := range kept {
		r.markManifest(d)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for d, fi := range stored {
		if !kept[d] {
			r.untagged[d] = append(r.untagged[d], path.Dir(fi.Path()))
			r.prog.untagged.Add(1)
		}
	}
	return nil
}

// tagTargets are the canonical digests a repository's tags name.
func (r *Run) tagTargets(ctx context.Context, repo string) ([]string, error) {
	dir := path.Join(repositoriesRoot, repo, "_manifests", "tags")
	tags, err := r.drv.List(ctx, dir)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the tags of %s: %w", repo, err)
	}
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		b, err := r.drv.GetContent(ctx, path.Join(t, "current", "link"))
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading tag %s of %s: %w", path.Base(t), repo, err)
		}
		r.mu.Lock()
		out = append(out, r.resolveLocked(strings.TrimSpace(string(b))))
		r.mu.Unlock()
	}
	return out, nil
}

// repositoryOf is the repository of a link directory under repositoriesRoot.
func repositoryOf(link string) string {
	rel := strings.TrimPrefix(link, repositoriesRoot+"/")
	if i := strings.Index(rel, "/_"); i >= 0 {
		return rel[:i]
	}
	return rel
}
