package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dtr-registry/dtr/registry/gc"
)

// Manifest pulls from memory (docs/architecture.md §4, "Manifest cache").
// Distribution reads a tag's link, the repository's revision link and the
// manifest's data for every GET and HEAD. A replica keeps what those reads
// found: a manifest's bytes by digest for as long as there is room (content
// never changes under its digest), and which digest a repository's tag or
// digest reference resolves to for at most manifestCacheTTL. A push or
// delete of a manifest through this replica forgets the repository's
// references at once; a tag moved or a manifest deleted through another
// replica, by tag pruning or by garbage collection is seen within the TTL.

// manifestCacheTTL bounds how stale a reference may be served.
const manifestCacheTTL = time.Second

// Bounds of the cache: references, and bytes of manifests.
const (
	maxCachedRefs          = 20000
	maxCachedManifestBytes = 32 << 20
)

// cacheableTypes are the manifest media types served from memory, when the
// client accepts the type; anything else goes to Distribution, which knows
// the rules for clients that do not.
var cacheableTypes = map[string]bool{
	"application/vnd.oci.image.manifest.v1+json":                true,
	"application/vnd.oci.image.index.v1+json":                   true,
	"application/vnd.docker.distribution.manifest.v2+json":      true,
	"application/vnd.docker.distribution.manifest.list.v2+json": true,
}

type cachedManifest struct {
	mediaType string
	body      []byte
}

type cachedRef struct {
	digest string
	gen    uint64 // the repository's generation when it was read
	at     time.Time
}

type manifestCache struct {
	mu      sync.Mutex
	refs    map[string]cachedRef // repo + "@" + reference
	byHash  map[string]*cachedManifest
	bytes   int
	gens    map[string]uint64 // repo -> generation, bumped by this replica's writes
	nextGen uint64
}

// init makes the zero cache usable; c.mu is held.
func (c *manifestCache) init() {
	if c.refs == nil {
		c.refs, c.byHash, c.gens = map[string]cachedRef{}, map[string]*cachedManifest{}, map[string]uint64{}
	}
}

// forget makes every reference of repo read again: call it before and after
// a write to the repository's manifests or tags.
func (c *manifestCache) forget(repo string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.nextGen++
	c.gens[repo] = c.nextGen
	if len(c.gens) > maxCachedRefs {
		c.forgetAllLocked()
	}
}

// forgetAll makes every reference read again (a namespace deleted).
func (c *manifestCache) forgetAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgetAllLocked()
}

func (c *manifestCache) forgetAllLocked() {
	c.refs, c.gens = map[string]cachedRef{}, map[string]uint64{}
	c.byHash = map[string]*cachedManifest{} // what a deleted namespace held goes too
	c.bytes = 0
}

func (c *manifestCache) gen(repo string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gens[repo]
}

func (c *manifestCache) get(repo, ref string, now time.Time) (string, *cachedManifest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.refs[repo+"@"+ref]
	if !ok || e.gen != c.gens[repo] || now.Sub(e.at) >= manifestCacheTTL {
		return "", nil
	}
	return e.digest, c.byHash[e.digest]
}

func (c *manifestCache) put(repo, ref, digest string, m *cachedManifest, gen uint64, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	if gen != c.gens[repo] {
		return // written meanwhile: what was read may be old already
	}
	for k := range c.refs { // arbitrary entries: the map's order is random
		if len(c.refs) < maxCachedRefs {
			break
		}
		delete(c.refs, k)
	}
	c.refs[repo+"@"+ref] = cachedRef{digest: digest, gen: gen, at: at}
	if _, ok := c.byHash[digest]; ok {
		return
	}
	for d, old := range c.byHash {
		if c.bytes+len(m.body) <= maxCachedManifestBytes {
			break
		}
		delete(c.byHash, d)
		c.bytes -= len(old.body)
	}
	if len(m.body) <= maxCachedManifestBytes {
		c.byHash[digest] = m
		c.bytes += len(m.body)
	}
}

// serveManifest answers GET and HEAD of /v2/<repo>/manifests/<ref> from the
// cache, loading it on a miss, and reports whether it did. It leaves to
// Distribution, having written nothing: conditional requests, digests of
// other algorithms, a reference storage does not resolve in the repository,
// media types outside cacheableTypes and clients that do not accept the
// manifest's type.
func (o *ociExtensions) serveManifest(w http.ResponseWriter, r *http.Request, repo, ref string) bool {
	if o.manifests == nil || r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != "" {
		return false
	}
	if isDigest(ref) && !isCanonical(ref) || !isDigest(ref) && !tagRE.MatchString(ref) {
		return false
	}
	if _, ok := o.authorize(w, r, repo, "pull"); !ok {
		return true // answered with the challenge, as Distribution would
	}
	now := time.Now()
	d, m := o.manifests.get(repo, ref, now)
	if m == nil {
		gen := o.manifests.gen(repo)
		var ok bool
		if d, m, ok = o.loadManifest(r.Context(), repo, ref); !ok {
			return false
		}
		o.manifests.put(repo, ref, d, m, gen, now)
	}
	if !accepts(r, m.mediaType) {
		return false
	}
	h := w.Header()
	h.Set("Docker-Distribution-Api-Version", "registry/2.0")
	h.Set("Content-Type", m.mediaType)
	h.Set("Content-Length", strconv.Itoa(len(m.body)))
	h.Set("Docker-Content-Digest", d)
	h.Set("Etag", `"`+d+`"`)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(m.body)
	}
	return true
}

// loadManifest reads what Distribution would: the tag's link, the
// repository's revision link, the manifest's bytes (checked against the
// digest).
func (o *ociExtensions) loadManifest(ctx context.Context, repo, ref string) (string, *cachedManifest, bool) {
	drv := o.driver()
	if drv == nil {
		return "", nil, false
	}
	root := path.Join("/docker/registry/v2/repositories", repo, "_manifests")
	d := ref
	if !isDigest(ref) {
		b, err := drv.GetContent(ctx, path.Join(root, "tags", ref, "current", "link"))
		if err != nil {
			return "", nil, false
		}
		d = strings.TrimSpace(string(b))
		if !isCanonical(d) || !isDigest(d) {
			return "", nil, false
		}
	}
	if _, err := drv.GetContent(ctx, revisionLink(repo, d)); err != nil {
		return "", nil, false
	}
	if m := o.cachedContent(d); m != nil {
		return d, m, true
	}
	body, err := drv.GetContent(ctx, gc.BlobDataPath(d))
	if err != nil {
		return "", nil, false
	}
	if sum := sha256.Sum256(body); "sha256:"+hex.EncodeToString(sum[:]) != d {
		return "", nil, false
	}
	var mt struct {
		MediaType string `json:"mediaType"`
	}
	if json.Unmarshal(body, &mt) != nil || !cacheableTypes[mt.MediaType] {
		return "", nil, false
	}
	return d, &cachedManifest{mediaType: mt.MediaType, body: body}, true
}

func (o *ociExtensions) cachedContent(d string) *cachedManifest {
	c := o.manifests
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byHash[d]
}

// accepts reports whether the request's Accept headers name mediaType.
func accepts(r *http.Request, mediaType string) bool {
	for _, h := range r.Header.Values("Accept") {
		for _, part := range strings.Split(h, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == mediaType {
				return true
			}
		}
	}
	return false
}
