package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/distribution/distribution/v3"
	repositorymiddleware "github.com/distribution/distribution/v3/registry/middleware/repository"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/opencontainers/go-digest"
)

// The manifest media types Distribution stores, and what each one is.
const (
	mediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaForeignLayer   = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

var manifestIsIndex = map[string]bool{
	mediaOCIManifest: false, mediaDockerManifest: false,
	mediaOCIIndex: true, mediaDockerList: true,
}

// pushError is a manifest PUT refused before Distribution sees it, in the
// registry's error format.
type pushError struct {
	status int
	code   string
	msg    string
}

func (e *pushError) Error() string { return e.code + ": " + e.msg }

func invalidManifest(format string, args ...any) *pushError {
	return &pushError{http.StatusBadRequest, "MANIFEST_INVALID", fmt.Sprintf(format, args...)}
}

// descriptorFields are the parts of a descriptor the checks read.
type descriptorFields struct {
	MediaType string   `json:"mediaType"`
	Digest    string   `json:"digest"`
	URLs      []string `json:"urls"`
}

// parseManifest checks a manifest PUT's body and Content-Type before
// Distribution stores it, and returns the fields the extensions use.
// Distribution answers 500 to some client mistakes (a schemaVersion other
// than 2, which is what any JSON object that is not a manifest has; an
// invalid reference digest; a bad foreign-layer URL), and with sparse
// manifests allowed it skips the reference checks altogether: every rule a
// stored manifest must meet is checked here, as a 400 that names the fix.
func parseManifest(contentType string, body []byte) (manifestFields, error) {
	var mf manifestFields
	if contentType == "" {
		return mf, invalidManifest("no Content-Type: send the manifest's media type, such as %s", mediaOCIManifest)
	}
	ct, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return mf, invalidManifest("Content-Type %q: %v", contentType, err)
	}
	index, known := manifestIsIndex[ct]
	if !known {
		return mf, invalidManifest("Content-Type %q is not a manifest media type: use %s, %s, %s or %s", ct, mediaOCIManifest, mediaOCIIndex, mediaDockerManifest, mediaDockerList)
	}
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return mf, invalidManifest("the manifest must be a JSON object")
	}
	if err := json.Unmarshal(body, &mf); err != nil {
		return mf, invalidManifest("the manifest is not valid JSON for %s: %v", ct, err)
	}
	if mf.SchemaVersion == nil || *mf.SchemaVersion != 2 {
		return mf, invalidManifest("schemaVersion must be 2: this body is not a manifest")
	}
	if mf.MediaType != ct && (mf.MediaType != "" || ct == mediaDockerManifest || ct == mediaDockerList) {
		return mf, invalidManifest("the manifest's mediaType %q disagrees with its Content-Type %q: send the manifest's mediaType as Content-Type", mf.MediaType, ct)
	}
	if mf.Subject != nil {
		if err := checkDescriptor("subject", *mf.Subject); err != nil {
			return mf, err
		}
	}
	if index {
		if mf.Config != nil || mf.Layers != nil {
			return mf, invalidManifest("an image index has no config or layers: send an image manifest with Content-Type %s", mediaOCIManifest)
		}
		for i, d := range mf.Manifests {
			if err := checkDescriptor(fmt.Sprintf("manifests[%d]", i), d); err != nil {
				return mf, err
			}
		}
		return mf, nil
	}
	if ct == mediaOCIManifest && mf.Manifests != nil {
		return mf, invalidManifest("an image manifest has no manifests list: send an image index with Content-Type %s", mediaOCIIndex)
	}
	if mf.Config == nil {
		return mf, invalidManifest("an image manifest needs a config descriptor")
	}
	if err := checkDescriptor("config", *mf.Config); err != nil {
		return mf, err
	}
	for i, d := range mf.Layers {
		where := fmt.Sprintf("layers[%d]", i)
		if err := checkDescriptor(where, d); err != nil {
			return mf, err
		}
		if ct == mediaDockerManifest && d.MediaType == mediaForeignLayer && len(d.URLs) == 0 {
			return mf, invalidManifest("%s: a foreign layer needs urls to fetch it from", where)
		}
		for _, u := range d.URLs {
			// The rule of Distribution's validation.manifests.urls.allow
			// (distributionConfig), applied to every layer.
			pu, err := url.Parse(u)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Fragment != "" {
				return mf, invalidManifest("%s: url %q: give an http or https URL without a fragment", where, u)
			}
		}
	}
	return mf, nil
}

// checkDigest checks that a manifest PUT by digest sends content with that
// digest, in any available algorithm.
func checkDigest(ref string, body []byte) error {
	dg, err := digest.Parse(ref)
	if err != nil {
		return &pushError{http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("digest %s: %v", ref, err)}
	}
	if dg.Algorithm().FromBytes(body) != dg {
		return &pushError{http.StatusBadRequest, "DIGEST_INVALID", "manifest digest does not match " + ref}
	}
	return nil
}

// sameContent reports whether body is the content of digest d, whatever
// its algorithm: a tag naming the sha512 digest of a manifest names the
// same manifest as its sha256 digest.
func sameContent(d string, body []byte) bool {
	dg, err := digest.Parse(d)
	return err == nil && dg.Algorithm().FromBytes(body) == dg
}

func checkDescriptor(where string, d descriptorFields) error {
	if err := digest.Digest(d.Digest).Validate(); err != nil {
		return invalidManifest("%s: digest %q: %v", where, d.Digest, err)
	}
	return nil
}

// maxPushTags bounds the tags of one manifest PUT (the path's and ?tag=):
// each is two storage writes before the client hears 201. The OCI spec asks
// for at least 10.
const maxPushTags = 32

// tagRE is the OCI distribution-spec's tag grammar.
var tagRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// pushTags returns the tags a manifest PUT applies: the path's reference
// when it is a tag, then each ?tag= value, without repeats.
func pushTags(ref string, query []string) ([]string, error) {
	var tags []string
	if !isDigest(ref) {
		tags = append(tags, ref)
	}
	for _, t := range query {
		if !containsString(tags, t) {
			tags = append(tags, t)
		}
	}
	if len(tags) > maxPushTags {
		return nil, &pushError{http.StatusRequestURITooLong, "TAG_INVALID", fmt.Sprintf("%d tags: push at most %d tags per request", len(tags), maxPushTags)}
	}
	for _, t := range tags {
		if !tagRE.MatchString(t) {
			return nil, &pushError{http.StatusBadRequest, "TAG_INVALID", fmt.Sprintf("invalid tag %q: a tag is 1-128 letters, digits, '_', '.' and '-', and does not start with '.' or '-'", t)}
		}
	}
	return tags, nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// tagIndexLink and tagCurrentLink are where Distribution records that a
// tag names a manifest digest (its tag store's layout).
func tagIndexLink(repo, tag, d string) string {
	alg, hex, _ := strings.Cut(d, ":")
	return path.Join("/docker/registry/v2/repositories", repo, "_manifests/tags", tag, "index", alg, hex, "link")
}

func tagCurrentLink(repo, tag string) string {
	return path.Join("/docker/registry/v2/repositories", repo, "_manifests/tags", tag, "current/link")
}

// tagManifest points tag at manifest digest d the way Distribution's tag
// store does: the index entry first, then the current link. d may be a
// non-sha256 digest linked to its content by linkDigest; a pull by tag then
// answers with that digest.
func (o *ociExtensions) tagManifest(ctx context.Context, repo, tag, d string) error {
	drv := o.driver()
	if drv == nil {
		return fmt.Errorf("storage not configured")
	}
	if err := drv.PutContent(ctx, tagIndexLink(repo, tag, d), []byte(d)); err != nil {
		return err
	}
	return drv.PutContent(ctx, tagCurrentLink(repo, tag), []byte(d))
}

// sparseMiddleware is the Distribution repository middleware that stores a
// manifest without checking that what it references is in the repository,
// for a PUT marked by withSparse (the allowSparseManifests setting): an
// image index whose platforms are not all pushed, an image whose layers are
// elsewhere. Pulling what is missing answers 404 (MANIFEST_UNKNOWN,
// BLOB_UNKNOWN); parseManifest still checks the manifest itself.
const sparseMiddleware = "dtr-sparse-manifests"

type sparseKey struct{}

// withSparse marks a manifest PUT's context for sparseMiddleware.
func withSparse(ctx context.Context) context.Context {
	return context.WithValue(ctx, sparseKey{}, true)
}

func init() {
	if err := repositorymiddleware.Register(sparseMiddleware, func(_ context.Context, repo distribution.Repository, _ map[string]any) (distribution.Repository, error) {
		return sparseRepository{repo}, nil
	}); err != nil {
		panic(err)
	}
}

type sparseRepository struct{ distribution.Repository }

func (r sparseRepository) Manifests(ctx context.Context, options ...distribution.ManifestServiceOption) (distribution.ManifestService, error) {
	if sparse, _ := ctx.Value(sparseKey{}).(bool); sparse {
		options = append(options, storage.SkipLayerVerification())
	}
	return r.Repository.Manifests(ctx, options...)
}
