package meta

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Visibility of a repository.
const (
	Public  = "public"
	Private = "private"
)

// Repository is a repository's record: namespace/name, who may see it and
// whether its tags may be overwritten. Name may hold '/' (a nested name,
// SplitRepository); its keys escape it, so it stays one key component.
type Repository struct {
	Namespace     string    `json:"namespace"`
	Name          string    `json:"name"`
	Visibility    string    `json:"visibility"`
	Description   string    `json:"shortDescription,omitempty"`
	ImmutableTags bool      `json:"immutableTags"`
	TagLimit      int       `json:"tagLimit"` // beyond it the oldest tags are pruned; 0: no limit
	CreatedAt     time.Time `json:"createdAt"`
	CreatedBy     string    `json:"createdBy,omitempty"`
}

// FullName is namespace/name.
func (r Repository) FullName() string { return r.Namespace + "/" + r.Name }

var repoName = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)

// MaxRepositoryName bounds a full repository name, namespace included. It
// is Distribution's own limit: it refuses longer names (NAME_INVALID).
const MaxRepositoryName = 255

// SplitRepository splits a full repository name into its namespace, the
// first component (a user or organization, whose permissions apply), and
// its name in that namespace: the rest, which may hold further components
// ("admin/charts/hello" is namespace admin, name charts/hello), as Harbor
// and GitLab allow. Every component follows Distribution's grammar and the
// whole is at most MaxRepositoryName characters; there is no other depth
// limit.
func SplitRepository(full string) (namespace, name string, err error) {
	ns, n, ok := strings.Cut(full, "/")
	switch {
	case len(full) > MaxRepositoryName:
		return "", "", fmt.Errorf("%w repository name %.60q… (%d characters): use at most %d characters, namespace included", ErrInvalid, full, len(full), MaxRepositoryName)
	case !ok || n == "":
		return "", "", fmt.Errorf("%w repository %q: use <namespace>/<name>, where the namespace is a user or organization and the name one or more components separated by '/'", ErrInvalid, full)
	case ValidateAccountName(ns) != nil:
		return "", "", fmt.Errorf("%w repository %q: its first component %q must be a user or organization name (2-255 lowercase letters and digits, separated by single '.', '_', '__' or '-')", ErrInvalid, full, ns)
	}
	for _, c := range strings.Split(n, "/") {
		if !repoName.MatchString(c) {
			return "", "", fmt.Errorf("%w repository %q: component %q must use lowercase letters and digits, separated by single '.', '_', '__' or '-' (no empty components)", ErrInvalid, full, c)
		}
	}
	return ns, n, nil
}

// CreateRepository adds a repository to an existing namespace.
func (s *Store) CreateRepository(ctx context.Context, r Repository) (Repository, error) {
	if ns, _, err := SplitRepository(r.Namespace + "/" + r.Name); err != nil {
		return r, err
	} else if ns != r.Namespace {
		return r, fmt.Errorf("%w namespace %q: a namespace is one user or organization name, without '/'", ErrInvalid, r.Namespace)
	}
	if r.Visibility == "" {
		r.Visibility = Private
	}
	if r.Visibility != Public && r.Visibility != Private {
		return r, fmt.Errorf("%w visibility %q: use public or private", ErrInvalid, r.Visibility)
	}
	if err := checkTagLimit(r); err != nil {
		return r, err
	}
	r.CreatedAt = time.Now().UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return r, err
	}
	// The namespace's account must exist in the same transaction: checked
	// before, an account deleted in between would leave a repository record
	// (and later its pushed images) for the next owner of the name.
	rk, ak := key("repos", r.Namespace, r.Name), key("accounts", r.Namespace)
	resp, err := s.KV.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(rk), "=", 0), clientv3.Compare(clientv3.CreateRevision(ak), ">", 0)).
		Then(clientv3.OpPut(rk, string(b))).
		Else(clientv3.OpGet(ak, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return r, fmt.Errorf("creating repository %s: %w", r.FullName(), err)
	}
	if !resp.Succeeded {
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return r, fmt.Errorf("namespace %s: account %s: %w", r.Namespace, r.Namespace, ErrNotFound)
		}
		return r, fmt.Errorf("repository %s: %w", r.FullName(), ErrExists)
	}
	return r, nil
}

// Repository returns one repository.
func (s *Store) Repository(ctx context.Context, namespace, name string) (Repository, error) {
	var r Repository
	_, err := s.get(ctx, key("repos", namespace, name), &r)
	if err != nil {
		return r, fmt.Errorf("repository %s/%s: %w", namespace, name, err)
	}
	return r, nil
}

// Repositories lists a namespace's repositories, or every repository when
// namespace is empty.
func (s *Store) Repositories(ctx context.Context, namespace string) ([]Repository, error) {
	if namespace != "" {
		return list[Repository](ctx, s, dir("repos", namespace))
	}
	resp, err := s.KV.Get(ctx, dir("repos"), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	var out []Repository
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		ns, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), dir("repos")), "/")
		if seen[ns] {
			continue
		}
		seen[ns] = true
		rs, err := list[Repository](ctx, s, Prefix+"repos/"+ns+"/")
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// UpdateRepository changes a repository with fn.
func (s *Store) UpdateRepository(ctx context.Context, namespace, name string, fn func(*Repository) error) (Repository, error) {
	r, err := mutate(ctx, s, key("repos", namespace, name), func(r *Repository) error {
		if err := fn(r); err != nil {
			return err
		}
		if r.Visibility != Public && r.Visibility != Private {
			return fmt.Errorf("%w visibility %q: use public or private", ErrInvalid, r.Visibility)
		}
		return checkTagLimit(*r)
	})
	if err != nil {
		return r, fmt.Errorf("repository %s/%s: %w", namespace, name, err)
	}
	return r, nil
}

// DeleteRepository removes a repository's record, grants, referrers index
// and pruning policies.
// Its tags, manifests and layer links in storage are the caller's to remove
// (the admin API does, before and after this); blob data shared with other
// repositories is left for garbage collection.
func (s *Store) DeleteRepository(ctx context.Context, namespace, name string) error {
	full := namespace + "/" + name
	resp, err := s.KV.Txn(ctx).Then(
		clientv3.OpDelete(key("repos", namespace, name)),
		clientv3.OpDelete(dir("access", namespace, name), clientv3.WithPrefix()),
		clientv3.OpDelete(dir("referrers", full), clientv3.WithPrefix()),
		clientv3.OpDelete(dir("referrer-of", full), clientv3.WithPrefix()),
		clientv3.OpDelete(dir("pruning", namespace, name), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return err
	}
	if resp.Responses[0].GetResponseDeleteRange().Deleted == 0 {
		return fmt.Errorf("repository %s: %w", full, ErrNotFound)
	}
	return nil
}

// RepositoryNames returns the full name (namespace/name) of every
// repository record, read keys-only in one range: the reconciler compares
// it with the storage's repositories without decoding 10,000 records.
func (s *Store) RepositoryNames(ctx context.Context) (map[string]bool, error) {
	resp, err := s.KV.Get(ctx, dir("repos"), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("listing repositories: %w", err)
	}
	out := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if parts, ok := keyParts(string(kv.Key), dir("repos"), 2); ok {
			out[parts[0]+"/"+parts[1]] = true
		}
	}
	return out, nil
}
