package registry

import (
	"net/http"
	"strings"

	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/meta"
)

// repositoryOf returns <name> of a registry request that names a
// repository: /v2/<name>/manifests/<ref>, /blobs/<digest>, /referrers/<digest>,
// /tags/list and /blobs/uploads/[<id>]. A name may itself hold "manifests"
// or "blobs" as a component; the last occurrence is the route's, as in
// Distribution's router, since a reference or digest holds no '/'.
func repositoryOf(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", false
	}
	if i := strings.LastIndex(rest, "/blobs/uploads/"); i > 0 && !strings.Contains(rest[i+len("/blobs/uploads/"):], "/") {
		return rest[:i], true
	}
	if name, ok := strings.CutSuffix(rest, "/tags/list"); ok && name != "" {
		return name, true
	}
	for _, kind := range []string{"manifests", "blobs", "referrers"} {
		if name, _, ok := route(p, kind); ok {
			return name, true
		}
	}
	return "", false
}

// refuseInvalidName answers 400 NAME_INVALID, saying why, to a registry
// request for a name dtr cannot hold (meta.SplitRepository). Distribution
// checks names only after authorization, so such a push got a bare 401
// from a token that could grant nothing, which reads like a wrong
// password. The check is on the name's form only and so tells nothing about
// which accounts or repositories exist.
func refuseInvalidName(w http.ResponseWriter, r *http.Request) bool {
	name, ok := repositoryOf(r.URL.Path)
	if !ok {
		return false
	}
	if _, _, err := meta.SplitRepository(name); err != nil {
		httpjson.Error(w, http.StatusBadRequest, "NAME_INVALID", err.Error())
		return true
	}
	return false
}
