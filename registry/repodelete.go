package registry

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/dtr-registry/dtr/registry/meta"
)

// repositoriesRoot is where Distribution keeps each repository's tags
// (_manifests/tags), manifest links (_manifests/revisions), layer links
// (_layers) and uploads (_uploads), under <namespace>/<name>. Blob data lives
// apart, under /docker/registry/v2/blobs, shared by every repository.
const repositoriesRoot = "/docker/registry/v2/repositories"

// repositoryDirs are what Distribution keeps of one repository in its
// directory; anything else there is a nested repository's directory.
var repositoryDirs = []string{"_manifests", "_layers", "_uploads"}

// deleteRepositoryContent removes repo's tags, manifest links, layer links
// and uploads from storage, so that no replica (they share the storage)
// serves the old manifests or layers through this name any more. Blob data
// stays for garbage collection. A repository with nothing in storage is
// success, so a deletion can be repeated.
//
// repo must be a dtr repository name (meta.SplitRepository): that refuses
// "..", empty and absolute components, and deleting "acme/app" never
// touches "acme/app2" (drivers delete a path and its children, not a
// prefix). A nested repository such as "acme/app/sub" lives inside
// acme/app's directory and is a repository of its own, so only acme/app's
// own directories go: _manifests first (its tags and manifests), in one
// driver call, then its layer links and uploads.
func (r *Replica) deleteRepositoryContent(ctx context.Context, repo string) error {
	r.manifests.forget(repo)
	defer r.manifests.forget(repo)
	ns, name, err := meta.SplitRepository(repo)
	if err != nil {
		return err
	}
	for _, d := range repositoryDirs {
		if err := r.deleteStoragePath(ctx, path.Join(repositoriesRoot, ns, name, d)); err != nil {
			return err
		}
	}
	return nil
}

// deleteNamespaceContent removes every repository under namespace from
// storage, the way deleteRepositoryContent removes one.
func (r *Replica) deleteNamespaceContent(ctx context.Context, namespace string) error {
	if err := meta.ValidateAccountName(namespace); err != nil {
		return err
	}
	defer r.manifests.forgetAll()
	return r.deleteStoragePath(ctx, path.Join(repositoriesRoot, namespace))
}

func (r *Replica) deleteStoragePath(ctx context.Context, p string) error {
	b := r.driver.Load()
	if b == nil {
		return errors.New("the registry storage is not configured yet")
	}
	err := b.d.Delete(ctx, p)
	var nf driver.PathNotFoundError
	if err != nil && !errors.As(err, &nf) {
		return fmt.Errorf("deleting %s from %s storage: %w", p, b.d.Name(), err)
	}
	return nil
}
