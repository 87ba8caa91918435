package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	distauth "github.com/distribution/distribution/v3/registry/auth"
	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/gc"
	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/internal/reqinfo"
	"github.com/dtr-registry/dtr/registry/meta"
)

// ociExtensions wraps the Distribution App with what it lacks: the referrers
// API and the OCI-Subject header (an index kept in the metadata store), tag
// immutability, and repository records created on first push.
type ociExtensions struct {
	next   http.Handler
	store  *meta.Store
	verify *auth.Verifier
	realm  func(*http.Request) string // the token endpoint for 401s
	log    logrus.FieldLogger
	// driver is the registry's storage, for the revision links of manifests
	// pushed by a non-sha256 digest.
	driver func() driver.StorageDriver
	// writesRefused says why the metadata store takes no writes now (a
	// full metadata volume, metadatafull.go), or "".
	writesRefused func() string
	// allowSparse says whether a manifest may reference content the
	// repository does not hold (the allowSparseManifests setting).
	allowSparse func() bool
	// gcGuard checks a committed manifest's references against garbage
	// collection (docs/gc.md); nil: no collection runs.
	gcGuard *gc.Guard
	// tagsPushed hears of every manifest PUT that wrote tags, after its
	// 201, for tag pruning (pruning.go); it must return at once.
	tagsPushed func(repo string, tags []string)
	// manifests serves manifest pulls from memory (manifestcache.go); nil:
	// every pull goes to Distribution.
	manifests *manifestCache
}

// maxManifest is Distribution's own manifest size limit.
const maxManifest = 4 << 20

var (
	digestRE = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)
)

// route splits /v2/<name>/<kind>/<ref> (string work, not regexps: this runs
// on every registry request).
func route(p, kind string) (name, ref string, ok bool) {
	rest, found := strings.CutPrefix(p, "/v2/")
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/"+kind+"/")
	if i <= 0 {
		return "", "", false
	}
	name, ref = rest[:i], rest[i+len(kind)+2:]
	if ref == "" || strings.Contains(ref, "/") {
		return "", "", false
	}
	return name, ref, true
}

// uploadRoute returns <name> of /v2/<name>/blobs/uploads/….
func uploadRoute(p string) (string, bool) {
	rest, found := strings.CutPrefix(p, "/v2/")
	if !found {
		return "", false
	}
	i := strings.Index(rest, "/blobs/uploads/")
	if i <= 0 {
		return "", false
	}
	return rest[:i], true
}

// isDigest reports whether s looks like algorithm:encoded.
func isDigest(s string) bool { return strings.Contains(s, ":") && digestRE.MatchString(s) }

func (o *ociExtensions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if refuseInvalidName(w, r) || o.refuseForFullMetadata(w, r) {
		return
	}
	if name, ref, ok := route(p, "referrers"); ok {
		o.referrers(w, r, name, ref)
		return
	}
	if name, ref, ok := route(p, "manifests"); ok {
		switch r.Method {
		case http.MethodPut:
			o.putManifest(w, r, name, ref)
			return
		case http.MethodDelete:
			o.deleteManifest(w, r, name, ref)
			return
		case http.MethodGet, http.MethodHead:
			if s, ok := o.next.(*swappable); ok {
				defer s.serving()() // traffic, for garbage collection's pacing
			}
			if !o.serveManifest(w, r, name, ref) {
				o.next.ServeHTTP(keepDigest(w, ref), r)
			}
			return
		}
	}
	if name, ref, ok := route(p, "blobs"); ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		if s, ok := o.next.(*swappable); ok {
			defer s.serving()() // a download counts as traffic for garbage collection too
		}
		if !o.serveBlob(w, r, name, ref) {
			o.next.ServeHTTP(keepDigest(w, ref), r)
		}
		return
	}
	if name, ok := uploadRoute(p); ok && (r.Method == http.MethodPut || r.Method == http.MethodPost) {
		q := r.URL.Query()
		if mount, from := q.Get("mount"), q.Get("from"); r.Method == http.MethodPost && mount != "" && from != "" && !isCanonical(mount) && isDigest(mount) {
			o.mount(w, r, name, from, mount)
			return
		}
		d := q.Get("digest")
		if d == "" {
			d = q.Get("mount")
		}
		o.next.ServeHTTP(keepDigest(w, d), r)
		return
	}
	o.next.ServeHTTP(w, r)
}

// refuseForFullMetadata answers 507 to a push's first request (an upload's
// POST) and to a manifest PUT while the metadata store refuses writes: the
// client learns it before sending its layers, and no manifest reaches the
// storage that the metadata could not record. Uploads under way go on;
// their manifest is refused.
func (o *ociExtensions) refuseForFullMetadata(w http.ResponseWriter, r *http.Request) bool {
	if o.writesRefused == nil {
		return false
	}
	_, isUpload := uploadRoute(r.URL.Path)
	_, _, isManifest := route(r.URL.Path, "manifests")
	if !(isUpload && r.Method == http.MethodPost) && !(isManifest && r.Method == http.MethodPut) {
		return false
	}
	if reason := o.writesRefused(); reason != "" {
		refuseFullMetadata(w, reason)
		return true
	}
	return false
}

// isCanonical reports whether a digest uses Distribution's own algorithm.
func isCanonical(d string) bool { return strings.HasPrefix(d, "sha256:") }

// keepDigest makes Docker-Content-Digest answer with the digest the client
// asked for. Distribution stores content under sha256 and reports that even
// for a sha512 request, which OCI clients reject.
func keepDigest(w http.ResponseWriter, requested string) http.ResponseWriter {
	if requested == "" || isCanonical(requested) || !isDigest(requested) {
		return w
	}
	return &statusRecorder{ResponseWriter: w, beforeWrite: func(status int) {
		if status >= 200 && status < 300 && w.Header().Get("Docker-Content-Digest") != "" {
			w.Header().Set("Docker-Content-Digest", requested)
		}
	}}
}

// layerLink is where Distribution links a blob digest into a repository.
func layerLink(repo, d string) string {
	alg, hex, _ := strings.Cut(d, ":")
	return path.Join("/docker/registry/v2/repositories", repo, "_layers", alg, hex, "link")
}

// mount handles a cross-repository mount by a non-sha256 digest:
// Distribution mounts the content but links only its sha256 digest into the
// target, so the digest the client used would be unknown there.
func (o *ociExtensions) mount(w http.ResponseWriter, r *http.Request, repo, from, d string) {
	ctx := context.WithoutCancel(r.Context())
	rec := &statusRecorder{ResponseWriter: w, beforeWrite: func(status int) {
		if status != http.StatusCreated {
			return
		}
		drv := o.driver()
		if drv == nil {
			return
		}
		canonical, err := drv.GetContent(ctx, layerLink(from, d))
		if err == nil {
			err = drv.PutContent(ctx, layerLink(repo, d), canonical)
		}
		if err == nil {
			err = drv.PutContent(ctx, layerLink(repo, strings.TrimSpace(string(canonical))), canonical)
		}
		if err != nil {
			o.log.WithError(err).Errorf("linking mounted blob %s into %s", d, repo)
		}
		w.Header().Set("Docker-Content-Digest", d)
	}}
	o.next.ServeHTTP(rec, r)
}

// revisionLink is where Distribution links a manifest digest to its content.
func revisionLink(repo, d string) string {
	alg, hex, _ := strings.Cut(d, ":")
	return path.Join("/docker/registry/v2/repositories", repo, "_manifests/revisions", alg, hex, "link")
}

// authorize checks the bearer token for action on repo, as Distribution does
// for its own routes, and answers the challenge itself when it fails.
func (o *ociExtensions) authorize(w http.ResponseWriter, r *http.Request, repo, action string) (*token.ClaimSet, bool) {
	challenge := func(errCode string) {
		ch := &auth.Challenge{Realm: o.realm(r), Err: errCode, Access: []distauth.Access{{Resource: distauth.Resource{Type: "repository", Name: repo}, Action: action}}}
		ch.SetHeaders(r, w)
		httpjson.Error(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		challenge("")
		return nil, false
	}
	claims, err := o.verify.Verify(raw)
	if err != nil {
		challenge("invalid_token")
		return nil, false
	}
	if auth.Allows(claims, "repository", repo, action) {
		// What Distribution's access controller records for its routes,
		// for the access log and the audit trail.
		reqinfo.SetUser(r.Context(), claims.Subject)
		return claims, true
	}
	challenge("insufficient_scope")
	return nil, false
}

// referrers serves GET /v2/<name>/referrers/<digest> from the index.
func (o *ociExtensions) referrers(w http.ResponseWriter, r *http.Request, repo, digest string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpjson.Error(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "use GET")
		return
	}
	if _, ok := o.authorize(w, r, repo, "pull"); !ok {
		return
	}
	if !isDigest(digest) {
		httpjson.Error(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest "+digest)
		return
	}
	descs, err := o.store.Referrers(r.Context(), repo, digest)
	if err != nil {
		o.log.WithError(err).Error("reading the referrers index")
		w.Header().Set("Retry-After", "5")
		httpjson.Error(w, http.StatusServiceUnavailable, "UNAVAILABLE", "metadata unavailable; try again")
		return
	}
	if at := r.URL.Query().Get("artifactType"); at != "" {
		kept := descs[:0]
		for _, d := range descs {
			if d.ArtifactType == at {
				kept = append(kept, d)
			}
		}
		descs = kept
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	if descs == nil {
		descs = []meta.Descriptor{}
	}
	body, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     descs,
	})
	w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// manifestFields are the parts of a manifest the extensions read and
// parseManifest checks.
type manifestFields struct {
	SchemaVersion *int               `json:"schemaVersion"`
	MediaType     string             `json:"mediaType"`
	ArtifactType  string             `json:"artifactType"`
	Config        *descriptorFields  `json:"config"`
	Layers        []descriptorFields `json:"layers"`
	Manifests     []descriptorFields `json:"manifests"`
	Subject       *descriptorFields  `json:"subject"`
	Annotations   map[string]string  `json:"annotations"`
}

// statusRecorder lets the wrapper act once the App's status is known and
// before any of it reaches the client: add headers (beforeWrite), or answer
// in the App's place (replace, used when a manifest PUT's metadata writes
// fail after Distribution committed the manifest).
type statusRecorder struct {
	http.ResponseWriter
	status      int
	beforeWrite func(status int)
	// replace runs first; when it returns true it has written its own
	// answer to the underlying writer, and the App's status and body are
	// dropped.
	replace  func(status int) bool
	replaced bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
		if s.replace != nil && s.replace(code) {
			s.replaced = true
			return
		}
		if s.beforeWrite != nil {
			s.beforeWrite(code)
		}
	}
	if s.replaced {
		return
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if s.replaced {
		return len(b), nil
	}
	return s.ResponseWriter.Write(b)
}

// metadataWriteTimeout bounds the metadata writes of a manifest PUT. Without
// a quorum an etcd write waits forever; past this the client gets a 503 to
// retry rather than a request that hangs (or, as before, a 201 after 15-27 s
// for a push that was never indexed).
const metadataWriteTimeout = 5 * time.Second

// retryAfterSeconds is the Retry-After of a manifest PUT refused because the
// metadata store did not answer: about one leader election.
const retryAfterSeconds = "5"

// afterManifestCommit, when set (by tests only), runs between the storage
// writes of a manifest PUT (Distribution's commit, the digest link, the
// tags) and the metadata writes; an error stands for a crash or a lost
// quorum at exactly that point.
var afterManifestCommit atomic.Pointer[func(repo, digest string) error]

// retryLater answers 503 with Retry-After in Distribution's error format.
func retryLater(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", retryAfterSeconds)
	httpjson.Error(w, http.StatusServiceUnavailable, "UNAVAILABLE", msg)
}

func (o *ociExtensions) putManifest(w http.ResponseWriter, r *http.Request, repo, ref string) {
	o.manifests.forget(repo)
	defer o.manifests.forget(repo)
	// Authorize before reading the body: an anonymous client must get its
	// 401 without the replica reading and hashing up to 4 MiB first.
	// Distribution checks again, with the same token.
	if _, ok := o.authorize(w, r, repo, "push"); !ok {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifest+1))
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, "MANIFEST_INVALID", "reading the manifest: "+err.Error())
		return
	}
	if len(body) > maxManifest {
		httpjson.Error(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", "manifest larger than 4 MiB")
		return
	}
	// The tags (the path's and ?tag=) and the manifest are checked here:
	// Distribution answers some client mistakes with 500, and it applies
	// only the path's tag.
	tags, err := pushTags(ref, r.URL.Query()["tag"])
	if err == nil && isDigest(ref) {
		err = checkDigest(ref, body)
	}
	var mf manifestFields
	if err == nil {
		mf, err = parseManifest(r.Header.Get("Content-Type"), body)
	}
	var perr *pushError
	if errors.As(err, &perr) {
		httpjson.Error(w, perr.status, perr.code, perr.msg)
		return
	}
	// Distribution stores the manifest by its sha256 digest and tags
	// nothing; recordManifest links a non-sha256 digest and writes the tags.
	canonical := digest.FromBytes(body).String()
	requested := ""
	if isDigest(ref) && !isCanonical(ref) {
		requested = ref
	}
	ns, name, nameErr := meta.SplitRepository(repo)
	// Read the record before anything is stored: a metadata store that does
	// not answer refuses the push now, before storage and metadata can part.
	ctx := context.WithoutCancel(r.Context()) // a client gone mid-write must not cut our writes
	known := false
	if nameErr == nil {
		rctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
		rec, err := o.store.Repository(rctx, ns, name)
		cancel()
		switch {
		case err == nil:
			known = true
			for _, tag := range tags {
				if !rec.ImmutableTags {
					break
				}
				if existing := o.tagDigest(r, repo, tag); existing != "" && !sameContent(existing, body) {
					httpjson.Error(w, http.StatusBadRequest, "TAG_INVALID", fmt.Sprintf("tag %s of %s is immutable; push a new tag", tag, repo))
					return
				}
			}
		case !errors.Is(err, meta.ErrNotFound):
			o.log.WithError(err).Errorf("reading the record of %s before a manifest push", repo)
			retryLater(w, "metadata unavailable; try again")
			return
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	if ref != canonical {
		r.URL.Path = "/v2/" + repo + "/manifests/" + canonical
		r.URL.RawPath = ""
	}
	if o.allowSparse != nil && o.allowSparse() {
		r = r.WithContext(withSparse(r.Context()))
	}
	subject := ""
	if mf.Subject != nil && isDigest(mf.Subject.Digest) {
		subject = mf.Subject.Digest
	}
	var blobRefs, manifestRefs []string
	if mf.Config != nil {
		blobRefs = append(blobRefs, mf.Config.Digest)
	}
	for _, l := range mf.Layers {
		blobRefs = append(blobRefs, l.Digest)
	}
	for _, c := range mf.Manifests {
		manifestRefs = append(manifestRefs, c.Digest)
	}
	// Both stores agree before the client hears 201: when Distribution
	// answers 201 the manifest is committed to storage, and the hook below,
	// which runs before that status is written, writes the sha512 link, the
	// tags, the referrers index and the repository record. If any of
	// them fails the client gets 503 with Retry-After instead, and its
	// retry is idempotent: Distribution's put of the same manifest is a
	// no-op, the index write is a put and the record create takes "exists"
	// as success. A crash between the commit and these writes leaves no 201
	// behind, and the reconciler (reconcile.go) repairs the record.
	rec := &statusRecorder{ResponseWriter: w, replace: func(status int) bool {
		if status != http.StatusCreated {
			return false
		}
		dg := w.Header().Get("Docker-Content-Digest")
		if requested != "" {
			dg = requested
		}
		if dg == "" {
			dg = "sha256:" + sha256Hex(body)
		}
		// Its own deadline: the storage write before it may have been slow.
		wctx, cancel := context.WithTimeout(ctx, metadataWriteTimeout)
		defer cancel()
		err := o.recordManifest(wctx, r, manifestRecord{
			repo: repo, ns: ns, name: name, named: nameErr == nil, known: known,
			requested: requested, canonical: canonical, subject: subject, tags: tags,
			desc:     referrerDescriptor(mf, body, r.Header.Get("Content-Type"), dg),
			blobRefs: blobRefs, manifestRefs: manifestRefs,
		})
		if err == nil {
			return false
		}
		for _, h := range []string{"Location", "Docker-Content-Digest", "Content-Length", "Content-Type"} {
			w.Header().Del(h)
		}
		var ce *gc.CollectedError
		if errors.As(err, &ce) {
			o.log.WithError(err).Warnf("manifest %s of %s refused: garbage collection removes a blob it references", dg, repo)
			retryLater(w, ce.Error())
			return true
		}
		var sf *storageFaultError
		if errors.As(err, &sf) && answerStorageFault(w, sf.fault) {
			// A digest link or tag met a full or failing storage.
			o.log.WithError(err).Errorf("recording manifest %s of %s", dg, repo)
			return true
		}
		if errors.Is(err, meta.ErrNotFound) {
			// The namespace's account was deleted during the push.
			httpjson.Error(w, http.StatusNotFound, "NAME_UNKNOWN", err.Error())
			return true
		}
		if meta.NoSpace(err) {
			// Raised between the gate and this write; the reconciler records
			// the stored manifest once space is back.
			o.log.WithError(err).Errorf("recording manifest %s of %s: the metadata store is full; answered 507", dg, repo)
			refuseFullMetadata(w, "the metadata store is full")
			return true
		}
		o.log.WithError(err).Errorf("recording manifest %s of %s; answered 503 for the client to retry", dg, repo)
		retryLater(w, "the manifest is stored but the metadata store did not record it; push again")
		return true
	}, beforeWrite: func(status int) {
		if status != http.StatusCreated {
			return
		}
		if subject != "" {
			w.Header().Set("OCI-Subject", subject)
		}
		if requested != "" {
			w.Header().Set("Docker-Content-Digest", requested)
			w.Header().Set("Location", "/v2/"+repo+"/manifests/"+requested)
		}
		for _, tag := range tags {
			w.Header().Add("OCI-Tag", tag)
		}
	}}
	o.next.ServeHTTP(rec, r)
	if rec.status == http.StatusCreated && !rec.replaced && len(tags) > 0 && nameErr == nil && o.tagsPushed != nil {
		o.tagsPushed(repo, tags)
	}
}

// manifestRecord is what a committed manifest PUT must write besides the
// manifest itself.
type manifestRecord struct {
	repo, ns, name       string
	named                bool // repo is a dtr name (namespace/name) that gets a record
	known                bool // the record existed before the push
	requested, canonical string
	subject              string
	tags                 []string // to point at the manifest (requested, else canonical)
	desc                 meta.Descriptor
	// blobRefs (config, layers) and manifestRefs (an index's children) are
	// the digests the manifest references, as it names them.
	blobRefs, manifestRefs []string
}

// recordManifest writes, in order, the storage link of a non-sha256 digest,
// the tags, the referrers index entry and the repository record. Each write is
// idempotent, so a client's retry after an error redoes them safely.
func (o *ociExtensions) recordManifest(ctx context.Context, r *http.Request, m manifestRecord) error {
	// Before anything names the manifest: a blob it references may be
	// going (gc.go).
	if err := o.guardCollection(ctx, m); err != nil {
		return err
	}
	target := m.canonical
	if m.requested != "" {
		if err := o.linkDigest(ctx, m.repo, m.requested, m.canonical); err != nil {
			return fmt.Errorf("linking %s to %s in %s: %w", m.requested, m.canonical, m.repo, err)
		}
		target = m.requested
	}
	for _, tag := range m.tags {
		if err := o.tagManifest(ctx, m.repo, tag, target); err != nil {
			return fmt.Errorf("tagging %s as %s in %s: %w", target, tag, m.repo, err)
		}
	}
	// The storage holds the manifest and its tags; the metadata follows.
	if hook := afterManifestCommit.Load(); hook != nil {
		if err := (*hook)(m.repo, m.desc.Digest); err != nil {
			return err
		}
	}
	if m.subject != "" {
		if err := o.store.AddReferrer(ctx, m.repo, m.subject, m.desc); err != nil {
			return fmt.Errorf("indexing referrer %s of %s in %s: %w", m.desc.Digest, m.subject, m.repo, err)
		}
	}
	if m.named && !m.known {
		return o.ensureRepository(ctx, r, m.ns, m.name)
	}
	return nil
}

// referrerDescriptor is the referrers index entry of manifest body, stored
// as digest dg; contentType is what the client sent, used when the manifest
// does not name its own media type.
func referrerDescriptor(mf manifestFields, body []byte, contentType, dg string) meta.Descriptor {
	d := meta.Descriptor{
		MediaType:    contentType,
		Digest:       dg,
		Size:         int64(len(body)),
		ArtifactType: mf.ArtifactType,
		Annotations:  mf.Annotations,
	}
	if mf.MediaType != "" {
		d.MediaType = mf.MediaType
	}
	if d.ArtifactType == "" && mf.Config != nil {
		d.ArtifactType = mf.Config.MediaType
	}
	return d
}

// ensureRepository creates the record of a repository pushed for the first
// time (create-on-push); the token server already checked the pusher may.
// An existing record is success, so that a retried push and a reconciler
// racing with it agree.
func (o *ociExtensions) ensureRepository(ctx context.Context, r *http.Request, ns, name string) error {
	creator := ""
	if raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if c, err := o.verify.Verify(raw); err == nil {
			creator = c.Subject
		}
	}
	_, err := o.store.CreateRepository(ctx, meta.Repository{Namespace: ns, Name: name, Visibility: meta.Private, CreatedBy: creator})
	switch {
	case errors.Is(err, meta.ErrExists):
		return nil
	case err != nil:
		return fmt.Errorf("recording repository %s/%s created by push: %w", ns, name, err)
	}
	o.log.WithFields(logrus.Fields{"repository": ns + "/" + name, "user": creator}).Info("repository created by push")
	reqinfo.AddNote(ctx, meta.WebhookRepoCreated, ns+"/"+name) // webhooks.go
	return nil
}

// tagDigest asks the App which digest a tag points at, with the client's own
// credentials ("" when the tag does not exist).
func (o *ociExtensions) tagDigest(r *http.Request, repo, tag string) string {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodHead, "/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		return ""
	}
	req.Host = r.Host
	req.TLS = r.TLS
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	req.Header.Set("Accept", strings.Join([]string{
		"application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
		"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json",
	}, ", "))
	rec := &headRecorder{header: http.Header{}}
	o.next.ServeHTTP(rec, req)
	if rec.status != http.StatusOK {
		return ""
	}
	return rec.header.Get("Docker-Content-Digest")
}

type headRecorder struct {
	header http.Header
	status int
}

func (h *headRecorder) Header() http.Header         { return h.header }
func (h *headRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headRecorder) WriteHeader(code int)        { h.status = code }

// linkDigest makes requested (e.g. a sha512 digest) name the manifest stored
// as canonical, the way Distribution links blobs pushed by sha512.
func (o *ociExtensions) linkDigest(ctx context.Context, repo, requested, canonical string) error {
	drv := o.driver()
	if drv == nil {
		return errors.New("storage not configured")
	}
	return drv.PutContent(ctx, revisionLink(repo, requested), []byte(canonical))
}

func (o *ociExtensions) deleteManifest(w http.ResponseWriter, r *http.Request, repo, ref string) {
	o.manifests.forget(repo)
	defer o.manifests.forget(repo)
	ctx := context.WithoutCancel(r.Context())
	canonical := ""
	if isDigest(ref) && !isCanonical(ref) {
		if drv := o.driver(); drv != nil {
			if b, err := drv.GetContent(ctx, revisionLink(repo, ref)); err == nil {
				canonical = strings.TrimSpace(string(b))
			}
		}
	}
	rec := &statusRecorder{ResponseWriter: w}
	o.next.ServeHTTP(rec, r)
	if rec.status != http.StatusAccepted || !isDigest(ref) {
		return
	}
	if err := o.store.RemoveReferrer(ctx, repo, ref); err != nil {
		o.log.WithError(err).Errorf("removing %s of %s from the referrers index", ref, repo)
	}
	if canonical != "" && isCanonical(canonical) {
		// The sha512 link is gone; remove the sha256 revision it named too.
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "/v2/"+repo+"/manifests/"+canonical, nil)
		if err == nil {
			req.Host, req.TLS = r.Host, r.TLS
			req.Header.Set("Authorization", r.Header.Get("Authorization"))
			o.next.ServeHTTP(&headRecorder{header: http.Header{}}, req)
		}
	}
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
