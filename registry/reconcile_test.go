package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// artifactFor returns an artifact manifest (an SBOM) whose subject is img,
// with its digest; the empty blob it names must be in the repository.
func artifactFor(t *testing.T, r *registrytest.Replica, tok, repo string, img registrytest.Image) ([]byte, string) {
	t.Helper()
	empty, st := r.PushBlob(t, tok, repo, []byte("{}"))
	if st != http.StatusCreated {
		t.Fatalf("pushing the empty blob: %d", st)
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sbom","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d}}`,
		empty, empty, img.ManifestDigest, len(img.Manifest))
	return []byte(m), registrytest.Digest([]byte(m))
}

func putManifest(t *testing.T, r *registrytest.Replica, tok, repo, ref string, m []byte) (int, http.Header, []byte) {
	t.Helper()
	return r.Do(t, http.MethodPut, "/v2/"+repo+"/manifests/"+ref, tok, m, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
}

// referrersOf returns the referrers API's answer for subject.
func referrersOf(t *testing.T, r *registrytest.Replica, tok, repo, subject string) string {
	t.Helper()
	st, _, body := r.Do(t, http.MethodGet, "/v2/"+repo+"/referrers/"+subject, tok, nil, nil)
	if st != http.StatusOK {
		t.Fatalf("referrers of %s: %d %s", subject, st, body)
	}
	return string(body)
}

// repoStatus is the admin API's status for a repository's record.
func repoStatus(t *testing.T, r *registrytest.Replica, repo string) int {
	t.Helper()
	return r.API(t, admin, adminPW, http.MethodGet, "/api/v0/repositories/"+repo, nil, nil)
}

// assertRefused checks a manifest PUT answer that must tell the client to
// retry: 503, Retry-After, a Distribution error body, and no 201's headers.
func assertRefused(t *testing.T, what string, st int, h http.Header, body []byte) {
	t.Helper()
	if st != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(string(body), `"UNAVAILABLE"`) || h.Get("Location") != "" || h.Get("Docker-Content-Digest") != "" {
		t.Fatalf("%s: %d Retry-After=%q Location=%q %s; want 503 with Retry-After and an UNAVAILABLE error", what, st, h.Get("Retry-After"), h.Get("Location"), body)
	}
}

// A manifest PUT whose metadata writes fail is not acknowledged: the client
// gets 503 with Retry-After, never 201, and its retry once the metadata
// answers again gets 201 with both stores in agreement.
func TestManifestPutNeedsMetadata(t *testing.T) {
	r := registrytest.StartNew(t)
	const repo = "admin/unrecorded"
	tok := r.Token(t, admin, adminPW, "repository:"+repo+":push,pull")
	registry.SetAfterManifestCommit(t, func(string, string) error { return errors.New("metadata unavailable (test)") })

	img, st := r.PushImage(t, tok, repo, "v1", []byte("a layer"))
	if st != http.StatusServiceUnavailable {
		t.Fatalf("image push while the metadata fails: %d, want 503", st)
	}
	st, h, body := putManifest(t, r, tok, repo, "v1", img.Manifest)
	assertRefused(t, "image manifest PUT", st, h, body)
	if st := repoStatus(t, r, repo); st != http.StatusNotFound {
		t.Fatalf("repository record after a refused push: %d, want 404", st)
	}

	registry.ClearAfterManifestCommit()
	if st, h, body := putManifest(t, r, tok, repo, "v1", img.Manifest); st != http.StatusCreated || h.Get("Docker-Content-Digest") != img.ManifestDigest {
		t.Fatalf("retry once the metadata answers: %d %v %s, want 201", st, h, body)
	}
	if st := repoStatus(t, r, repo); st != http.StatusOK {
		t.Fatalf("repository record after the retried push: %d, want 200", st)
	}

	// A referrer whose index write fails: refused, not listed; retried:
	// indexed.
	art, ad := artifactFor(t, r, tok, repo, img)
	registry.SetAfterManifestCommit(t, func(string, string) error { return errors.New("metadata unavailable (test)") })
	st, h, body = putManifest(t, r, tok, repo, ad, art)
	assertRefused(t, "referrer PUT", st, h, body)
	if got := referrersOf(t, r, tok, repo, img.ManifestDigest); strings.Contains(got, ad) {
		t.Fatalf("a refused referrer is listed: %s", got)
	}
	registry.ClearAfterManifestCommit()
	if st, h, body := putManifest(t, r, tok, repo, ad, art); st != http.StatusCreated || h.Get("OCI-Subject") != img.ManifestDigest {
		t.Fatalf("referrer retry: %d OCI-Subject=%q %s, want 201", st, h.Get("OCI-Subject"), body)
	}
	if got := referrersOf(t, r, tok, repo, img.ManifestDigest); !strings.Contains(got, ad) {
		t.Fatalf("the retried referrer is not listed: %s", got)
	}
}

// A crash between the storage commit and the metadata writes leaves an image
// and a referrer served by storage but unknown to the metadata; the
// restarted replica's reconciler records the repository and indexes the
// referrer.
func TestReconcileAfterCrash(t *testing.T) {
	r := registrytest.StartNew(t)
	const repo = "admin/crashed"
	tok := r.Token(t, admin, adminPW, "repository:"+repo+":push,pull")
	registry.SetAfterManifestCommit(t, func(string, string) error { return errors.New("killed (test)") })
	img, st := r.PushImage(t, tok, repo, "v1", []byte("crash layer"))
	if st == http.StatusCreated {
		t.Fatal("a push cut before its metadata writes was acknowledged")
	}
	art, ad := artifactFor(t, r, tok, repo, img)
	if st, _, _ := putManifest(t, r, tok, repo, ad, art); st == http.StatusCreated {
		t.Fatal("a referrer push cut before its index write was acknowledged")
	}
	registry.ClearAfterManifestCommit()
	// The stores now disagree, as after a kill -9 at that point.
	if st, _, _ := r.Do(t, http.MethodGet, "/v2/"+repo+"/manifests/v1", tok, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}); st != http.StatusOK {
		t.Fatalf("the committed manifest is not served: %d", st)
	}
	if st := repoStatus(t, r, repo); st != http.StatusNotFound {
		t.Fatalf("repository record before reconciliation: %d, want 404", st)
	}

	r = r.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for repoStatus(t, r, repo) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the restarted replica did not record the repository found in storage within 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	tok = r.Token(t, admin, adminPW, "repository:"+repo+":push,pull")
	if got := referrersOf(t, r, tok, repo, img.ManifestDigest); !strings.Contains(got, ad) || !strings.Contains(got, "application/vnd.example.sbom") {
		t.Fatalf("the reconciled referrer is not listed: %s", got)
	}
	// A second run finds nothing to do.
	res, err := r.Reconcile(context.Background())
	if err != nil || len(res.Created)+len(res.Indexed)+len(res.Unindexed)+res.Errors != 0 {
		t.Fatalf("second reconciliation: %+v, %v; want nothing to fix", res, err)
	}
}

// An index entry whose manifest is gone from storage (deleted outside the
// API, or a crash between the two deletes) is removed by reconciliation.
func TestReconcileRemovesStaleReferrers(t *testing.T) {
	r := registrytest.StartNew(t)
	const repo = "admin/stale"
	tok := r.Token(t, admin, adminPW, "repository:"+repo+":push,pull")
	img, st := r.PushImage(t, tok, repo, "v1", []byte("subject layer"))
	if st != http.StatusCreated {
		t.Fatalf("push: %d", st)
	}
	art, ad := artifactFor(t, r, tok, repo, img)
	if st, _, body := putManifest(t, r, tok, repo, ad, art); st != http.StatusCreated {
		t.Fatalf("referrer push: %d %s", st, body)
	}
	link := filepath.Join(r.Opts.DataDir, "registry", "docker/registry/v2/repositories", repo, "_manifests/revisions/sha256", strings.TrimPrefix(ad, "sha256:"))
	if err := os.RemoveAll(link); err != nil {
		t.Fatal(err)
	}
	res, err := r.Reconcile(context.Background())
	if err != nil || len(res.Unindexed) != 1 || res.Unindexed[0] != repo+"@"+ad || len(res.Created) != 0 {
		t.Fatalf("reconciliation: %+v, %v; want %s@%s removed from the index", res, err, repo, ad)
	}
	if got := referrersOf(t, r, tok, repo, img.ManifestDigest); strings.Contains(got, ad) {
		t.Fatalf("a referrer gone from storage is still listed: %s", got)
	}
}

// BenchmarkReconcile measures one reconciliation over 10,000 repositories
// (10 namespaces of 1,000, one tagged manifest each) in filesystem storage,
// laid out directly on disk: when the stores agree (the periodic run), and
// when every record is missing (the worst crash recovery).
func BenchmarkReconcile(b *testing.B) {
	const namespaces, perNamespace = 10, 1000
	r := registrytest.StartNew(b)
	root := filepath.Join(r.Opts.DataDir, "registry", "docker/registry/v2")
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	d := registrytest.Digest(manifest)
	hex := strings.TrimPrefix(d, "sha256:")
	write := func(p string, content []byte) {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	write(filepath.Join(root, "blobs/sha256", hex[:2], hex, "data"), manifest)
	for n := range namespaces {
		ns := fmt.Sprintf("org%d", n)
		if st := r.API(b, admin, adminPW, "POST", "/api/v0/accounts", map[string]any{"name": ns, "isOrg": true}, nil); st != http.StatusCreated {
			b.Fatalf("creating %s: %d", ns, st)
		}
		for i := range perNamespace {
			repo := filepath.Join(root, "repositories", ns, fmt.Sprintf("app%d", i), "_manifests")
			write(filepath.Join(repo, "revisions/sha256", hex, "link"), []byte(d))
			write(filepath.Join(repo, "tags/latest/current/link"), []byte(d))
		}
	}
	ctx := context.Background()
	res, err := r.Reconcile(ctx) // records every repository once
	if err != nil || len(res.Created) != namespaces*perNamespace {
		b.Fatalf("first reconciliation: %d created, %v", len(res.Created), err)
	}
	b.Logf("first run over %d repositories without records: %v", res.Repositories, res.Elapsed)

	b.Run("in-agreement", func(b *testing.B) {
		for b.Loop() {
			res, err := r.Reconcile(ctx)
			if err != nil || len(res.Created) != 0 || res.Repositories != namespaces*perNamespace {
				b.Fatalf("%+v, %v", res.Repositories, err)
			}
		}
	})
	b.Run("all-records-missing", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			if err := r.ForgetRepositoryRecords(ctx); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			res, err := r.Reconcile(ctx)
			if err != nil || len(res.Created) != namespaces*perNamespace {
				b.Fatalf("%d created, %v", len(res.Created), err)
			}
		}
	})
}

// With the metadata quorum lost, a manifest PUT into a new repository is
// refused with 503 and Retry-After (before anything is stored), not
// acknowledged and forgotten; once the quorum is back the retry gets 201
// and the repository record exists.
func TestManifestPutWithoutQuorum(t *testing.T) {
	r := registrytest.StartNew(t)
	j := join(t, r, "bbbbbbbbbbbb")
	const repo = "admin/during-outage"
	tok := r.Token(t, admin, adminPW, "repository:"+repo+":push,pull", "repository:admin/before-outage:push,pull")
	img, st := r.PushImage(t, tok, "admin/before-outage", "v1", []byte("outage layer"))
	if st != http.StatusCreated {
		t.Fatalf("push before the outage: %d", st)
	}
	for _, b := range [][]byte{[]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`), img.Layer} {
		if _, st := r.PushBlob(t, tok, repo, b); st != http.StatusCreated {
			t.Fatalf("blob push: %d", st)
		}
	}
	j.Stop() // one of two members: no quorum
	start := time.Now()
	st, h, body := putManifest(t, r, tok, repo, "v1", img.Manifest)
	assertRefused(t, "manifest PUT without quorum", st, h, body)
	t.Logf("refused without quorum in %v", time.Since(start).Round(time.Millisecond))

	j = j.Restart()
	r.WaitHealthy(30 * time.Second)
	if st, _, body := putManifest(t, r, tok, repo, "v1", img.Manifest); st != http.StatusCreated {
		t.Fatalf("retry once the quorum is back: %d %s", st, body)
	}
	if st := repoStatus(t, r, repo); st != http.StatusOK {
		t.Fatalf("repository record after the retried push: %d, want 200", st)
	}
}
