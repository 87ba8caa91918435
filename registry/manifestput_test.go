package registry_test

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

const (
	mtOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	mtOCIIndex    = "application/vnd.oci.image.index.v1+json"
)

func sha512Digest(b []byte) string {
	h := sha512.Sum512(b)
	return "sha512:" + hex.EncodeToString(h[:])
}

// errorCode is the first error code of a registry error body.
func errorCode(body []byte) string {
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

// ociImage is a one-layer image manifest whose blobs are pushed to repo.
func ociImage(t *testing.T, r *registrytest.Replica, tok, repo, layer string) []byte {
	t.Helper()
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cd, st := r.PushBlob(t, tok, repo, config)
	if st != 201 {
		t.Fatalf("config blob: %d", st)
	}
	ld, st := r.PushBlob(t, tok, repo, []byte(layer))
	if st != 201 {
		t.Fatalf("layer blob: %d", st)
	}
	return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		mtOCIManifest, cd, len(config), ld, len(layer))
}

// headDigest is the digest a HEAD of repo:ref answers, or "" with its status.
func headDigest(t *testing.T, r *registrytest.Replica, tok, repo, ref string) (string, int) {
	t.Helper()
	st, h, _ := r.Do(t, "HEAD", "/v2/"+repo+"/manifests/"+ref, tok, nil, map[string]string{"Accept": mtOCIManifest + ", " + mtOCIIndex})
	return h.Get("Docker-Content-Digest"), st
}

// TestManifestPutTags: ?tag= on a manifest PUT, by any digest algorithm or
// by tag, applies every tag under the repository's rules, and OCI-Tag lists
// them.
func TestManifestPutTags(t *testing.T) {
	r := registrytest.StartNew(t)
	setupAccounts(t, r)
	scope := "repository:acme/app:push,pull"
	tok := r.Token(t, "alice", "alice-password", scope)
	ct := map[string]string{"Content-Type": mtOCIManifest}

	t.Run("sha512 digest with tags", func(t *testing.T) {
		m := ociImage(t, r, tok, "acme/app", "sha512 layer")
		d := sha512Digest(m)
		st, h, body := r.Do(t, "PUT", "/v2/acme/app/manifests/"+d+"?tag=a512&tag=b512&tag=a512", tok, m, ct)
		if st != 201 || h.Get("Docker-Content-Digest") != d {
			t.Fatalf("PUT: %d %v %s", st, h, body)
		}
		if got := h.Values("OCI-Tag"); !slices.Equal(got, []string{"a512", "b512"}) {
			t.Fatalf("OCI-Tag %q, want a512 and b512 once each", got)
		}
		for _, tag := range []string{"a512", "b512"} {
			if got, st := headDigest(t, r, tok, "acme/app", tag); st != 200 || got != d {
				t.Fatalf("HEAD %s: %d %s, want %s", tag, st, got, d)
			}
			st, h, body := r.Do(t, "GET", "/v2/acme/app/manifests/"+tag, tok, nil, map[string]string{"Accept": mtOCIManifest})
			if st != 200 || string(body) != string(m) || h.Get("Docker-Content-Digest") != d {
				t.Fatalf("GET %s: %d %s %s", tag, st, h.Get("Docker-Content-Digest"), body)
			}
		}
		// A tag moved to another manifest by sha256 names that one.
		other := ociImage(t, r, tok, "acme/app", "another layer")
		od := registrytest.Digest(other)
		if st, _, body := r.Do(t, "PUT", "/v2/acme/app/manifests/b512", tok, other, ct); st != 201 {
			t.Fatalf("PUT by tag: %d %s", st, body)
		}
		if got, _ := headDigest(t, r, tok, "acme/app", "b512"); got != od {
			t.Fatalf("b512 names %s, want %s", got, od)
		}
	})

	t.Run("sha256 digest and path tag", func(t *testing.T) {
		m := ociImage(t, r, tok, "acme/app", "sha256 layer")
		d := registrytest.Digest(m)
		st, h, body := r.Do(t, "PUT", "/v2/acme/app/manifests/path-tag?tag=q1&tag=q2", tok, m, ct)
		if st != 201 || h.Get("Docker-Content-Digest") != d || !strings.HasSuffix(h.Get("Location"), "/v2/acme/app/manifests/"+d) {
			t.Fatalf("PUT: %d %v %s", st, h, body)
		}
		if got := h.Values("OCI-Tag"); !slices.Equal(got, []string{"path-tag", "q1", "q2"}) {
			t.Fatalf("OCI-Tag %q", got)
		}
		st, _, body = r.Do(t, "GET", "/v2/acme/app/tags/list", tok, nil, nil)
		var list struct{ Tags []string }
		_ = json.Unmarshal(body, &list)
		for _, tag := range []string{"path-tag", "q1", "q2"} {
			if !slices.Contains(list.Tags, tag) {
				t.Fatalf("tags/list %d %s lacks %s", st, body, tag)
			}
			if got, _ := headDigest(t, r, tok, "acme/app", tag); got != d {
				t.Fatalf("%s names %q, want %s", tag, got, d)
			}
		}
	})

	t.Run("invalid tags", func(t *testing.T) {
		m := ociImage(t, r, tok, "acme/app", "invalid tags layer")
		d := registrytest.Digest(m)
		many := ""
		for i := range 40 {
			many += fmt.Sprintf("&tag=t%d", i)
		}
		for _, tt := range []struct {
			query string
			want  int
		}{
			{"?tag=", 400}, {"?tag=.dot", 400}, {"?tag=-dash", 400}, {"?tag=" + strings.Repeat("x", 129), 400},
			{"?tag=ok&tag=b%2Fslash", 400}, {"?tag=a%3Ab", 400}, {"?tag=%C3%A9", 400}, {"?x=1" + many, 414},
		} {
			st, _, body := r.Do(t, "PUT", "/v2/acme/app/manifests/"+d+tt.query, tok, m, ct)
			if st != tt.want || errorCode(body) != "TAG_INVALID" {
				t.Errorf("PUT %s: %d %s, want %d TAG_INVALID", tt.query, st, body, tt.want)
			}
		}
		if st, _, body := r.Do(t, "PUT", "/v2/acme/app/manifests/.bad", tok, m, ct); st != 400 || errorCode(body) != "TAG_INVALID" {
			t.Errorf("PUT by an invalid path tag: %d %s", st, body)
		}
		if _, st := headDigest(t, r, tok, "acme/app", d); st != 404 {
			t.Errorf("a refused PUT stored the manifest: HEAD %d", st)
		}
	})

	t.Run("push scope", func(t *testing.T) {
		m := ociImage(t, r, tok, "acme/app", "scope layer")
		d := registrytest.Digest(m)
		for _, tt := range []struct{ user, pw, scope string }{
			{"alice", "alice-password", "repository:acme/app:pull"}, // token without push
			{"bob", "bob-password", scope},                          // read-only team member
		} {
			st, _, _ := r.Do(t, "PUT", "/v2/acme/app/manifests/"+d+"?tag=scoped", r.Token(t, tt.user, tt.pw, tt.scope), m, ct)
			if st != 401 {
				t.Errorf("%s with %s: %d, want 401", tt.user, tt.scope, st)
			}
		}
		if _, st := headDigest(t, r, tok, "acme/app", "scoped"); st != 404 {
			t.Errorf("tag created without push access: %d", st)
		}
	})

	t.Run("immutable tags", func(t *testing.T) {
		if st := r.API(t, admin, adminPW, "POST", "/api/v0/repositories/acme", map[string]any{"name": "frozen", "immutableTags": true}, nil); st != 201 {
			t.Fatalf("create: %d", st)
		}
		if st := r.API(t, admin, adminPW, "PUT", "/api/v0/repositories/acme/frozen/teamAccess/devs", map[string]any{"accessLevel": "read-write"}, nil); st != 200 {
			t.Fatalf("grant: %d", st)
		}
		tok := r.Token(t, "alice", "alice-password", "repository:acme/frozen:push,pull")
		a := ociImage(t, r, tok, "acme/frozen", "first")
		b := ociImage(t, r, tok, "acme/frozen", "second")
		a512 := sha512Digest(a)
		if st, _, body := r.Do(t, "PUT", "/v2/acme/frozen/manifests/"+a512+"?tag=v1", tok, a, ct); st != 201 {
			t.Fatalf("first push: %d %s", st, body)
		}
		for _, path := range []string{
			registrytest.Digest(b) + "?tag=v2&tag=v1", sha512Digest(b) + "?tag=v1", "v1", "v3?tag=v1",
		} {
			st, _, body := r.Do(t, "PUT", "/v2/acme/frozen/manifests/"+path, tok, b, ct)
			if st != 400 || errorCode(body) != "TAG_INVALID" || !strings.Contains(string(body), "immutable") {
				t.Errorf("moving v1 with %s: %d %s, want 400 TAG_INVALID", path, st, body)
			}
		}
		if got, _ := headDigest(t, r, tok, "acme/frozen", "v1"); got != a512 {
			t.Fatalf("v1 names %s, want %s", got, a512)
		}
		for _, tag := range []string{"v2", "v3"} {
			if _, st := headDigest(t, r, tok, "acme/frozen", tag); st != 404 {
				t.Errorf("%s was created by a refused push: %d", tag, st)
			}
		}
		// The same content again, by either digest, is not a move.
		if st, _, body := r.Do(t, "PUT", "/v2/acme/frozen/manifests/"+registrytest.Digest(a)+"?tag=v1&tag=v4", tok, a, ct); st != 201 {
			t.Fatalf("re-push of v1's manifest: %d %s", st, body)
		}
		if st, _, body := r.Do(t, "PUT", "/v2/acme/frozen/manifests/"+registrytest.Digest(b)+"?tag=v5", tok, b, ct); st != 201 {
			t.Fatalf("a new tag: %d %s", st, body)
		}
	})

	t.Run("records like any push", func(t *testing.T) {
		tok := r.Token(t, "alice", "alice-password", "repository:alice/tagged:push,pull")
		subject := ociImage(t, r, tok, "alice/tagged", "subject")
		sd := registrytest.Digest(subject)
		if st, _, body := r.Do(t, "PUT", "/v2/alice/tagged/manifests/"+sd+"?tag=s", tok, subject, ct); st != 201 {
			t.Fatalf("subject: %d %s", st, body)
		}
		var repo map[string]any
		if st := r.API(t, "alice", "alice-password", "GET", "/api/v0/repositories/alice/tagged", nil, &repo); st != 200 || repo["createdBy"] != "alice" {
			t.Fatalf("repository record: %d %v", st, repo)
		}
		empty, _ := r.PushBlob(t, tok, "alice/tagged", []byte("{}"))
		art := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"artifactType":"application/vnd.example.sig","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[],"subject":{"mediaType":%q,"digest":%q,"size":%d}}`,
			mtOCIManifest, empty, mtOCIManifest, sd, len(subject))
		ad := sha512Digest(art)
		st, h, body := r.Do(t, "PUT", "/v2/alice/tagged/manifests/"+ad+"?tag=sig", tok, art, ct)
		if st != 201 || h.Get("OCI-Subject") != sd || h.Get("OCI-Tag") != "sig" {
			t.Fatalf("artifact: %d %v %s", st, h, body)
		}
		_, _, body = r.Do(t, "GET", "/v2/alice/tagged/referrers/"+sd, tok, nil, nil)
		if !strings.Contains(string(body), ad) {
			t.Fatalf("referrers lack %s: %s", ad, body)
		}
	})
}

// TestManifestPutClientErrors: whatever a client sends as a manifest, the
// answer is a 4xx naming the problem, never a 500.
func TestManifestPutClientErrors(t *testing.T) {
	r := registrytest.StartNew(t)
	tok := r.Token(t, admin, adminPW, "repository:admin/bad:push,pull")
	good := ociImage(t, r, tok, "admin/bad", "layer")
	config := `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`
	desc := `{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:` + strings.Repeat("a", 64) + `","size":1}`
	cfg := `"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("b", 64) + `","size":1}`
	tests := []struct {
		name, contentType, body, code string
	}{
		{"object that is not a manifest", mtOCIManifest, `{"foo":1}`, "MANIFEST_INVALID"},
		{"empty object as an index", mtOCIIndex, `{}`, "MANIFEST_INVALID"},
		{"array", mtOCIManifest, `[]`, "MANIFEST_INVALID"},
		{"null", mtOCIManifest, `null`, "MANIFEST_INVALID"},
		{"null as an index", mtOCIIndex, `null`, "MANIFEST_INVALID"},
		{"number", mtOCIManifest, `2`, "MANIFEST_INVALID"},
		{"empty body", mtOCIManifest, ``, "MANIFEST_INVALID"},
		{"not JSON", mtOCIManifest, `{"schemaVersion":2,`, "MANIFEST_INVALID"},
		{"a config blob", mtOCIManifest, config, "MANIFEST_INVALID"},
		{"docker manifest without mediaType", "application/vnd.docker.distribution.manifest.v2+json", `{"schemaVersion":2,` + cfg + `,"layers":[]}`, "MANIFEST_INVALID"},
		{"schemaVersion 1", mtOCIManifest, `{"schemaVersion":1,"mediaType":"` + mtOCIManifest + `",` + cfg + `,"layers":[]}`, "MANIFEST_INVALID"},
		{"schemaVersion 3 index", mtOCIIndex, `{"schemaVersion":3,"mediaType":"` + mtOCIIndex + `","manifests":[]}`, "MANIFEST_INVALID"},
		{"schemaVersion a string", mtOCIManifest, `{"schemaVersion":"2","mediaType":"` + mtOCIManifest + `",` + cfg + `,"layers":[]}`, "MANIFEST_INVALID"},
		{"wrong mediaType", mtOCIManifest, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.config.v1+json",` + cfg + `,"layers":[]}`, "MANIFEST_INVALID"},
		{"Content-Type disagrees with the body", mtOCIIndex, string(good), "MANIFEST_INVALID"},
		{"index sent as a manifest", mtOCIManifest, `{"schemaVersion":2,"mediaType":"` + mtOCIIndex + `","manifests":[]}`, "MANIFEST_INVALID"},
		{"index without mediaType sent as a manifest", mtOCIManifest, `{"schemaVersion":2,"manifests":[` + desc + `]}`, "MANIFEST_INVALID"},
		{"no Content-Type", "", string(good), "MANIFEST_INVALID"},
		{"Content-Type not a manifest", "application/json", string(good), "MANIFEST_INVALID"},
		{"Content-Type unparsable", "application/vnd.oci.image.manifest.v1+json; =", string(good), "MANIFEST_INVALID"},
		{"no config", mtOCIManifest, `{"schemaVersion":2,"mediaType":"` + mtOCIManifest + `","layers":[]}`, "MANIFEST_INVALID"},
		{"short layer digest", mtOCIManifest, `{"schemaVersion":2,"mediaType":"` + mtOCIManifest + `",` + cfg + `,"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:abc","size":1}]}`, "MANIFEST_INVALID"},
		{"unknown digest algorithm", mtOCIManifest, `{"schemaVersion":2,"mediaType":"` + mtOCIManifest + `",` + cfg + `,"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"md5:d41d8cd98f00b204e9800998ecf8427e","size":1}]}`, "MANIFEST_INVALID"},
		{"index child digest invalid", mtOCIIndex, `{"schemaVersion":2,"mediaType":"` + mtOCIIndex + `","manifests":[{"mediaType":"` + mtOCIManifest + `","digest":"sha256:ABC","size":1}]}`, "MANIFEST_INVALID"},
		{"subject digest invalid", mtOCIManifest, `{"schemaVersion":2,"mediaType":"` + mtOCIManifest + `",` + cfg + `,"layers":[],"subject":{"mediaType":"` + mtOCIManifest + `","digest":"sha256:zz","size":1}}`, "MANIFEST_INVALID"},
		{"ftp layer URL", mtOCIManifest, `{"schemaVersion":2,"mediaType":"` + mtOCIManifest + `",` + cfg + `,"layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"sha256:` + strings.Repeat("c", 64) + `","size":1,"urls":["ftp://example.com/x"]}]}`, "MANIFEST_INVALID"},
		{"foreign layer without URL", "application/vnd.docker.distribution.manifest.v2+json", `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",` + cfg + `,"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"sha256:` + strings.Repeat("d", 64) + `","size":1}]}`, "MANIFEST_INVALID"},
		{"config and layers in an index", mtOCIIndex, `{"schemaVersion":2,"mediaType":"` + mtOCIIndex + `",` + cfg + `,"manifests":[]}`, "MANIFEST_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, ref := range []string{"v1", registrytest.Digest([]byte(tt.body))} {
				h := map[string]string{}
				if tt.contentType != "" {
					h["Content-Type"] = tt.contentType
				}
				st, _, body := r.Do(t, "PUT", "/v2/admin/bad/manifests/"+ref, tok, []byte(tt.body), h)
				if st != 400 || errorCode(body) != tt.code {
					t.Errorf("PUT by %s: %d %s, want 400 %s", ref, st, body, tt.code)
				}
			}
		})
	}
	// Checked after the body: a wrong digest is still DIGEST_INVALID.
	st, _, body := r.Do(t, "PUT", "/v2/admin/bad/manifests/sha256:"+strings.Repeat("0", 64), tok, good, map[string]string{"Content-Type": mtOCIManifest})
	if st != 400 || errorCode(body) != "DIGEST_INVALID" {
		t.Errorf("wrong digest: %d %s", st, body)
	}
	if st, _, body := r.Do(t, "PUT", "/v2/admin/bad/manifests/v1", tok, good, map[string]string{"Content-Type": mtOCIManifest}); st != 201 {
		t.Fatalf("the good manifest: %d %s", st, body)
	}
}

// TestSparseManifests: an index whose platforms are not all pushed, and an
// image whose layers are not, are accepted while allowSparseManifests is on
// (the default); pulling what is missing is a 404. Off, they are refused
// with MANIFEST_BLOB_UNKNOWN, as Distribution does.
func TestSparseManifests(t *testing.T) {
	r := registrytest.StartNew(t)
	tok := r.Token(t, admin, adminPW, "repository:admin/sparse:push,pull")
	present := ociImage(t, r, tok, "admin/sparse", "present")
	pd := registrytest.Digest(present)
	if st, _, body := r.Do(t, "PUT", "/v2/admin/sparse/manifests/"+pd, tok, present, map[string]string{"Content-Type": mtOCIManifest}); st != 201 {
		t.Fatalf("child: %d %s", st, body)
	}
	missing := "sha256:" + strings.Repeat("e", 64)
	index := func(n int) []byte {
		return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":%q,"digest":%q,"size":1024,"platform":{"architecture":"arm64","os":"linux","variant":"v%d"}}]}`,
			mtOCIIndex, mtOCIManifest, pd, len(present), mtOCIManifest, missing, n)
	}
	missingLayer := func(n int) []byte {
		m := ociImage(t, r, tok, "admin/sparse", fmt.Sprintf("layer %d", n))
		return []byte(strings.Replace(string(m), `"layers":[`, `"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"`+missing+`","size":1},`, 1))
	}
	put := func(ct string, m []byte) (int, []byte) {
		st, _, body := r.Do(t, "PUT", "/v2/admin/sparse/manifests/"+registrytest.Digest(m)+"?tag=sparse", tok, m, map[string]string{"Content-Type": ct})
		return st, body
	}
	var settings map[string]any
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/meta/settings", nil, &settings); st != 200 || settings["allowSparseManifests"] != true {
		t.Fatalf("default settings: %d %v", st, settings)
	}
	if st, body := put(mtOCIIndex, index(0)); st != 201 {
		t.Fatalf("sparse index: %d %s", st, body)
	}
	if st, body := put(mtOCIManifest, missingLayer(0)); st != 201 {
		t.Fatalf("image without a layer: %d %s", st, body)
	}
	st, _, body := r.Do(t, "GET", "/v2/admin/sparse/manifests/"+missing, tok, nil, map[string]string{"Accept": mtOCIManifest})
	if st != 404 || errorCode(body) != "MANIFEST_UNKNOWN" {
		t.Fatalf("pull of the missing child: %d %s, want 404 MANIFEST_UNKNOWN", st, body)
	}
	if st, _, body := r.Do(t, "GET", "/v2/admin/sparse/blobs/"+missing, tok, nil, nil); st != 404 || errorCode(body) != "BLOB_UNKNOWN" {
		t.Fatalf("pull of the missing layer: %d %s, want 404 BLOB_UNKNOWN", st, body)
	}

	for _, bad := range []string{`{"allowSparseManifests":"false"}`, `{"allowSparseManifests":0}`, `{"allowSparseManifests":"no"}`, `{"AllowSparseManifests":false}`, `{"allowSparseManifests":false,"allowSparseManifests":true}`} {
		if st := patchSettings(t, r, bad); st != 400 {
			t.Errorf("PATCH %s: %d, want 400", bad, st)
		}
	}
	if st := patchSettings(t, r, `{"allowSparseManifests":false}`); st != 200 {
		t.Fatalf("turning sparse manifests off: %d", st)
	}
	// Replicas apply settings from a watch: within a moment.
	deadline := time.Now().Add(10 * time.Second)
	n := 1
	for {
		st, body := put(mtOCIIndex, index(n))
		if st == 400 && errorCode(body) == "MANIFEST_BLOB_UNKNOWN" {
			break
		}
		if st != 201 || time.Now().After(deadline) {
			t.Fatalf("sparse index with the setting off: %d %s, want 400 MANIFEST_BLOB_UNKNOWN", st, body)
		}
		n++
		time.Sleep(50 * time.Millisecond)
	}
	if st, body := put(mtOCIManifest, missingLayer(1)); st != 400 || errorCode(body) != "MANIFEST_BLOB_UNKNOWN" {
		t.Fatalf("image without a layer, setting off: %d %s", st, body)
	}
	if st := r.API(t, admin, adminPW, "GET", "/api/v0/meta/settings", nil, &settings); st != 200 || settings["allowSparseManifests"] != false {
		t.Fatalf("settings: %d %v", st, settings)
	}
	// The whole index is accepted off too, and the checks on the manifest
	// itself hold either way.
	full := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d}]}`, mtOCIIndex, mtOCIManifest, pd, len(present))
	if st, body := put(mtOCIIndex, full); st != 201 {
		t.Fatalf("complete index: %d %s", st, body)
	}
	if st := patchSettings(t, r, `{"allowSparseManifests":true}`); st != 200 {
		t.Fatalf("turning sparse manifests on: %d", st)
	}
	deadline = time.Now().Add(10 * time.Second)
	for n++; ; n++ {
		st, body := put(mtOCIIndex, index(n))
		if st == 201 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sparse index with the setting on again: %d %s", st, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func patchSettings(t *testing.T, r *registrytest.Replica, body string) int {
	t.Helper()
	req, _ := http.NewRequest("PATCH", r.URL+"/api/v0/meta/settings", strings.NewReader(body))
	req.SetBasicAuth(admin, adminPW)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
