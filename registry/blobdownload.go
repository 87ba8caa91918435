package registry

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/dtr-registry/dtr/registry/gc"
)

// Blob downloads. Distribution's blob reader puts a 4 MiB buffer in front
// of every download, even of a 1 MiB layer: 32 clients pulling hold 128 MiB
// of buffers. A whole-blob GET of a sha256 blob is answered here instead,
// after the same checks (a pull token for the repository, the repository's
// link to the blob, the data in storage), streaming through a pooled
// buffer; everything else, with nothing written, goes on to Distribution
// (docs/architecture.md §4).

// downloadBuffer is the size of one download's buffer: large enough for
// the kernel to fill a socket's send buffer in a few writes.
const downloadBuffer = 64 << 10

var downloadBuffers = sync.Pool{New: func() any { b := make([]byte, downloadBuffer); return &b }}

// blobCacheControl is what Distribution sends with a blob: its content never
// changes under its digest.
const blobCacheControl = "max-age=31536000"

// serveBlob answers GET /v2/<repo>/blobs/<ref> and reports whether it did.
// It leaves to Distribution, having written nothing: HEAD, ranges and
// conditional requests, digests of other algorithms, a blob the repository
// does not link or storage does not hold, and any storage error before the
// first byte.
func (o *ociExtensions) serveBlob(w http.ResponseWriter, r *http.Request, repo, ref string) bool {
	if r.Method != http.MethodGet || r.Header.Get("Range") != "" || r.Header.Get("If-None-Match") != "" ||
		r.Header.Get("If-Modified-Since") != "" || !isCanonical(ref) || !isDigest(ref) || o.driver == nil {
		return false
	}
	drv := o.driver()
	if drv == nil {
		return false
	}
	if _, ok := o.authorize(w, r, repo, "pull"); !ok {
		return true // answered with the challenge, as Distribution would
	}
	ctx := r.Context()
	link, err := drv.GetContent(ctx, layerLink(repo, ref))
	if err != nil || strings.TrimSpace(string(link)) != ref {
		return false
	}
	data := gc.BlobDataPath(ref)
	fi, err := drv.Stat(ctx, data)
	if err != nil || fi.IsDir() {
		return false
	}
	rc, err := drv.Reader(ctx, data, 0)
	if err != nil {
		return false
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Docker-Distribution-Api-Version", "registry/2.0")
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	h.Set("Docker-Content-Digest", ref)
	h.Set("ETag", fmt.Sprintf(`"%s"`, ref))
	h.Set("Cache-Control", blobCacheControl)
	h.Set("Accept-Ranges", "bytes")
	w.WriteHeader(http.StatusOK)
	buf := downloadBuffers.Get().(*[]byte)
	defer downloadBuffers.Put(buf)
	// Only the data's length: a blob appended to under us (it never is)
	// must not send more than Content-Length said. A short copy is a
	// client gone or storage failing; the client's digest check catches
	// a truncated body either way.
	if n, err := io.CopyBuffer(onlyWriter{w}, io.LimitReader(rc, fi.Size()), *buf); err != nil || n != fi.Size() {
		o.log.WithField("repository", repo).WithField("digest", ref).Debugf("blob download ended after %d of %d bytes: %v", n, fi.Size(), err)
	}
	return true
}

// onlyWriter hides the ResponseWriter's ReadFrom, which would copy with a
// buffer of its own instead of the pooled one.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }
