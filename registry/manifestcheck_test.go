package registry

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/meta"
)

// fuzzApp is a Distribution App configured as a replica's
// (distributionConfig), on in-memory storage and without authentication.
func fuzzApp(tb testing.TB) http.Handler {
	cfg, err := distributionConfig(meta.Cluster{HTTPSecret: "fuzz"}, meta.Storage{Type: "inmemory"}, "", nil, nil, "error")
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Auth = nil
	app, err := newApp(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	level := logrus.GetLevel()
	logrus.SetLevel(logrus.PanicLevel) // Distribution logs every refused PUT
	tb.Cleanup(func() {
		logrus.SetLevel(level)
		_ = app.Shutdown()
	})
	return app
}

var fuzzTypes = []string{mediaOCIManifest, mediaOCIIndex, mediaDockerManifest, mediaDockerList}

var fuzzAccept = strings.Join(fuzzTypes, ", ")

// FuzzManifestPut: parseManifest, in front of Distribution, refuses a body
// with a 400 MANIFEST_INVALID, or Distribution (as a replica configures it,
// sparse manifests on or off) answers it with no 5xx, and a stored manifest
// is served back by digest without one either.
func FuzzManifestPut(f *testing.F) {
	d := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }
	cfg := `"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + d('a') + `","size":2}`
	layer := `{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + d('b') + `","size":3}`
	child := `{"mediaType":"` + mediaOCIManifest + `","digest":"` + d('c') + `","size":4,"platform":{"architecture":"amd64","os":"linux"}}`
	// kind picks a manifest Content-Type (most inputs then reach the JSON
	// checks and Distribution), or past them the fuzzed rawType.
	add := func(ct, body string, sparse bool) {
		for i, t := range fuzzTypes {
			if t == ct {
				f.Add(uint8(i), "", []byte(body), sparse)
				return
			}
		}
		f.Add(uint8(len(fuzzTypes)), ct, []byte(body), sparse)
	}
	for _, s := range []struct{ ct, body string }{
		{mediaOCIManifest, `{"schemaVersion":2,"mediaType":"` + mediaOCIManifest + `",` + cfg + `,"layers":[` + layer + `]}`},
		{mediaOCIManifest, `{"schemaVersion":2,` + cfg + `,"layers":[],"subject":` + child + `,"artifactType":"application/x"}`},
		{mediaOCIManifest, `{"schemaVersion":2,` + cfg + `,"layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"` + d('d') + `","size":1,"urls":["https://example.com/l"]}]}`},
		{mediaOCIIndex, `{"schemaVersion":2,"mediaType":"` + mediaOCIIndex + `","manifests":[` + child + `]}`},
		{mediaOCIIndex, `{"schemaVersion":2,"manifests":[]}`},
		{mediaDockerManifest, `{"schemaVersion":2,"mediaType":"` + mediaDockerManifest + `",` + cfg + `,"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"` + d('e') + `","size":1,"urls":["http://x/y"]}]}`},
		{mediaDockerList, `{"schemaVersion":2,"mediaType":"` + mediaDockerList + `","manifests":[` + child + `]}`},
		{mediaOCIManifest + "; charset=utf-8", `{"foo":1}`},
		{mediaOCIIndex, `null`}, {mediaOCIManifest, `[]`}, {"", `{}`}, {"application/json", `{"schemaVersion":2}`},
		{mediaOCIManifest, `{"schemaVersion":2,"mediaType":"` + mediaOCIManifest + `","config":{"digest":"sha512:00"},"layers":null}`},
	} {
		add(s.ct, s.body, false)
		add(s.ct, s.body, true)
	}
	app := fuzzApp(f)
	f.Fuzz(func(t *testing.T, kind uint8, rawType string, body []byte, sparse bool) {
		contentType := rawType
		if int(kind) < len(fuzzTypes) {
			contentType = fuzzTypes[kind]
		}
		if len(body) > maxManifest {
			return // answered 413 before parsing
		}
		if _, err := parseManifest(contentType, body); err != nil {
			var pe *pushError
			if !errors.As(err, &pe) || pe.status != http.StatusBadRequest || pe.code != "MANIFEST_INVALID" || pe.msg == "" {
				t.Fatalf("parseManifest(%q, %q) = %v, want a 400 MANIFEST_INVALID", contentType, body, err)
			}
			return
		}
		dg := digest.FromBytes(body).String()
		req := httptest.NewRequest(http.MethodPut, "/v2/fuzz/repo/manifests/"+dg, bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		if sparse {
			req = req.WithContext(withSparse(req.Context()))
		}
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("PUT %q as %q (sparse %v): %d %s", body, contentType, sparse, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusCreated {
			return
		}
		get := httptest.NewRequest(http.MethodGet, "/v2/fuzz/repo/manifests/"+dg, nil)
		get.Header.Set("Accept", fuzzAccept)
		rec = httptest.NewRecorder()
		app.ServeHTTP(rec, get)
		if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), body) {
			t.Fatalf("GET of stored %q: %d %s", body, rec.Code, rec.Body)
		}
	})
}

// TestSparseMiddleware: the App distributionConfig builds stores a manifest
// whose references are missing only for a PUT marked withSparse.
func TestSparseMiddleware(t *testing.T) {
	app := fuzzApp(t)
	missing := "sha256:" + strings.Repeat("f", 64)
	for _, m := range []struct{ ct, body string }{
		{mediaOCIIndex, `{"schemaVersion":2,"mediaType":"` + mediaOCIIndex + `","manifests":[{"mediaType":"` + mediaOCIManifest + `","digest":"` + missing + `","size":1}]}`},
		{mediaOCIManifest, `{"schemaVersion":2,"mediaType":"` + mediaOCIManifest + `","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + missing + `","size":1},"layers":[]}`},
	} {
		for _, sparse := range []bool{false, true} {
			req := httptest.NewRequest(http.MethodPut, "/v2/fuzz/repo/manifests/"+digest.FromString(m.body).String(), strings.NewReader(m.body))
			req.Header.Set("Content-Type", m.ct)
			if sparse {
				req = req.WithContext(withSparse(req.Context()))
			}
			rec := httptest.NewRecorder()
			app.ServeHTTP(rec, req)
			want := http.StatusBadRequest
			if sparse {
				want = http.StatusCreated
			}
			if rec.Code != want || (!sparse && !strings.Contains(rec.Body.String(), "MANIFEST_BLOB_UNKNOWN")) {
				t.Errorf("%s, sparse %v: %d %s, want %d", m.ct, sparse, rec.Code, rec.Body, want)
			}
		}
	}
}
