package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"

	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/registry/console"
	"github.com/dtr-registry/dtr/registry/meta"
)

// consoleHandler is the web console at "/" (registry/console), calling the
// admin API api in process on its users' behalf.
func (r *Replica) consoleHandler(api http.Handler) http.Handler {
	c, err := console.New(console.Config{
		Store:         r.store,
		Watcher:       r.member.Client(),
		Logins:        r.logins,
		API:           api,
		IssueAPIToken: r.issueConsoleToken,
		APICalled: func(req *http.Request, status int, user string) {
			// The audit trail records the console's changes as API calls.
			r.audit.request(requestDone{r: req, method: req.Method, path: req.URL.Path, status: status, user: user, header: http.Header{}})
		},
		Tags:        r.consoleTags,
		DeleteTag:   r.consoleDeleteTag,
		TestStorage: r.testStorage,
		ReplicaID:   r.opts.ReplicaID,
		Version:     images.Version,
		Log:         r.log,
	})
	if err != nil {
		// The templates are embedded: this is a build that was never tested.
		r.log.WithError(err).Error("the web console cannot start")
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "the web console of this build is broken; the admin API (/api/v0/) and registry API (/v2/) work", http.StatusInternalServerError)
		})
	}
	return c
}

// issueConsoleToken signs a token for the admin API's scope, as /auth/token
// would for the account: the console's calls to the API carry it.
func (r *Replica) issueConsoleToken(acc meta.Account) (string, error) {
	keys := r.keys.Load()
	if keys == nil || keys.Current == nil {
		return "", errors.New("token key not loaded")
	}
	return keys.Current.Issue(acc.Name, acc.Epoch, []*token.ResourceActions{{Type: "api", Name: "v0", Actions: []string{"*"}}}, time.Now())
}

// consoleTagDetails bounds the tags whose manifests one page reads.
const consoleTagDetails = 100

// consoleTags lists a repository's tags, newest first, with the size,
// platforms and referrers of the newest consoleTagDetails.
func (r *Replica) consoleTags(ctx context.Context, repo string) ([]console.Tag, error) {
	drv := r.storageDriver()
	if drv == nil {
		return nil, errors.New("the registry storage is not configured yet")
	}
	infos, err := listTags(ctx, drv, repo)
	if err != nil {
		return nil, err
	}
	tags := make([]console.Tag, len(infos))
	for i, t := range infos {
		tags[i] = console.Tag{Name: t.Name, Digest: t.Digest, PushedAt: t.UpdatedAt}
	}
	console.SortTags(tags)
	for i := range tags[:min(len(tags), consoleTagDetails)] {
		t := &tags[i]
		r.describeManifest(ctx, drv, t)
		if refs, err := r.store.Referrers(ctx, repo, t.Digest); err == nil {
			for _, d := range refs {
				t.Referrers = append(t.Referrers, console.Referrer{Digest: d.Digest, ArtifactType: d.ArtifactType})
			}
		}
	}
	return tags, nil
}

// manifestJSON is the part of an OCI or Docker manifest or index the
// console shows.
type manifestJSON struct {
	MediaType string `json:"mediaType"`
	Config    struct {
		Digest string `json:"digest"`
		Size   int64  `json:"size"`
	} `json:"config"`
	Layers []struct {
		Size int64 `json:"size"`
	} `json:"layers"`
	Manifests []struct {
		Digest   string `json:"digest"`
		Platform *struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Variant      string `json:"variant"`
		} `json:"platform"`
	} `json:"manifests"`
}

func blobData(ctx context.Context, drv driver.StorageDriver, d string) ([]byte, error) {
	alg, h, ok := strings.Cut(d, ":")
	if !ok || alg != "sha256" || len(h) < 2 {
		return nil, fmt.Errorf("digest %s: only sha256 content is read", d)
	}
	return drv.GetContent(ctx, path.Join("/docker/registry/v2/blobs", alg, h[:2], h, "data"))
}

// describeManifest fills in a tag's media type, size and platforms from
// its manifest; what cannot be read stays empty (the page shows "—").
func (r *Replica) describeManifest(ctx context.Context, drv driver.StorageDriver, t *console.Tag) {
	b, err := blobData(ctx, drv, t.Digest)
	var m manifestJSON
	if err != nil || json.Unmarshal(b, &m) != nil {
		return
	}
	t.MediaType = m.MediaType
	if len(m.Manifests) == 0 {
		t.Size = imageSize(m)
		if cb, err := blobData(ctx, drv, m.Config.Digest); err == nil {
			var cfg struct{ OS, Architecture, Variant string }
			if json.Unmarshal(cb, &cfg) == nil && cfg.OS != "" {
				t.Platforms = []string{platform(cfg.OS, cfg.Architecture, cfg.Variant)}
			}
		}
		return
	}
	for i, child := range m.Manifests {
		if child.Platform != nil && child.Platform.OS != "unknown" {
			t.Platforms = append(t.Platforms, platform(child.Platform.OS, child.Platform.Architecture, child.Platform.Variant))
		}
		if i < 16 {
			if cb, err := blobData(ctx, drv, child.Digest); err == nil {
				var cm manifestJSON
				if json.Unmarshal(cb, &cm) == nil {
					t.Size += imageSize(cm)
				}
			}
		}
	}
}

func imageSize(m manifestJSON) int64 {
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

func platform(os, arch, variant string) string {
	p := os + "/" + arch
	if variant != "" {
		p += "/" + variant
	}
	return p
}

// consoleDeleteTag removes one tag (the console checked the caller's access).
func (r *Replica) consoleDeleteTag(ctx context.Context, repo, tag string) error {
	drv := r.storageDriver()
	if drv == nil {
		return errors.New("the registry storage is not configured yet")
	}
	return r.deleteTag(ctx, drv, repo, tag)
}

// testStorage proves storage settings before they are saved: it opens the
// driver, writes an object, reads it back and removes it.
func (r *Replica) testStorage(ctx context.Context, st meta.Storage) error {
	if err := st.Validate(); err != nil {
		return err
	}
	name, params, err := storageParams(st, r.opts.StorageRoot)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	drv, err := factory.Create(ctx, name, params)
	if err != nil {
		return fmt.Errorf("opening the storage: %w", err)
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	p := "/dtr-storage-test/" + hex.EncodeToString(nonce)
	want := []byte("dtr storage test " + hex.EncodeToString(nonce))
	if err := drv.PutContent(ctx, p, want); err != nil {
		return fmt.Errorf("writing a test object: %w", err)
	}
	defer func() { _ = drv.Delete(context.WithoutCancel(ctx), p) }()
	got, err := drv.GetContent(ctx, p)
	if err != nil {
		return fmt.Errorf("reading the test object back: %w", err)
	}
	if !bytes.Equal(got, want) {
		return errors.New("the test object read back differs from what was written")
	}
	return nil
}
