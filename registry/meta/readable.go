package meta

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ReadableRepositories lists, by namespace and name, the repositories user
// may read: the ones for which AccessFor gives at least Read. AccessFor
// reads a few records per repository, which for a listing of 10,000
// repositories is seconds; this reads each kind of record once and applies
// the same rules (registry/console's tests compare the two on every kind of
// grant).
func (s *Store) ReadableRepositories(ctx context.Context, user *Account) ([]Repository, error) {
	all, err := s.allRepositories(ctx)
	if err != nil {
		return nil, err
	}
	return s.readable(ctx, all, user)
}

// RepositoryCache keeps every repository record, decoded, for listings:
// reading and decoding 10,000 records costs a few hundred milliseconds, more
// than a page may take. It reads them once, then follows a watch on them, so
// a change made through any replica reaches it within the watch's delay
// (milliseconds); if the watch ends (a lost leader, a compacted revision),
// the next listing reads everything again.
type RepositoryCache struct {
	s *Store
	w clientv3.Watcher

	mu       sync.Mutex
	byKey    map[string]Repository // nil: not read, or the watch ended
	sorted   []Repository          // byKey's values by namespace and name, when !unsorted
	unsorted bool
	gen      int // the current watch; an ended one's goroutine touches nothing after
}

// NewRepositoryCache returns an empty cache of s's repository records that
// watches them through w (the client s reads with).
func (s *Store) NewRepositoryCache(w clientv3.Watcher) *RepositoryCache {
	return &RepositoryCache{s: s, w: w}
}

// ReadableRepositories is Store.ReadableRepositories through the cache.
func (c *RepositoryCache) ReadableRepositories(ctx context.Context, user *Account) ([]Repository, error) {
	all, err := c.all(ctx)
	if err != nil {
		return nil, err
	}
	return c.s.readable(ctx, all, user)
}

// Warm reads the records now, so that the first listing does not wait for
// them.
func (c *RepositoryCache) Warm(ctx context.Context) error {
	_, err := c.all(ctx)
	return err
}

// all returns a copy of every repository record, by namespace and name.
func (c *RepositoryCache) all(ctx context.Context) ([]Repository, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil {
		resp, err := c.s.KV.Get(ctx, dir("repos"), readOpts(ctx, clientv3.WithPrefix())...)
		if err != nil {
			return nil, fmt.Errorf("listing repositories: %w", err)
		}
		byKey := make(map[string]Repository, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			if r, ok, err := decodeRepository(kv.Key, kv.Value); err != nil {
				return nil, err
			} else if ok {
				byKey[string(kv.Key)] = r
			}
		}
		c.byKey, c.unsorted = byKey, true
		c.gen++
		go c.follow(c.gen, resp.Header.Revision+1)
	}
	if c.unsorted {
		c.sorted = make([]Repository, 0, len(c.byKey))
		for _, r := range c.byKey {
			c.sorted = append(c.sorted, r)
		}
		sortRepositories(c.sorted)
		c.unsorted = false
	}
	return slices.Clone(c.sorted), nil
}

// follow applies the changes from revision rev on until the watch ends.
func (c *RepositoryCache) follow(gen int, rev int64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for resp := range c.w.Watch(clientv3.WithRequireLeader(ctx), dir("repos"), clientv3.WithPrefix(), clientv3.WithRev(rev)) {
		if resp.Err() != nil || resp.Canceled {
			break
		}
		c.mu.Lock()
		for _, ev := range resp.Events {
			k := string(ev.Kv.Key)
			if ev.Type == clientv3.EventTypeDelete {
				delete(c.byKey, k)
			} else if r, ok, err := decodeRepository(ev.Kv.Key, ev.Kv.Value); err == nil && ok {
				c.byKey[k] = r
			}
		}
		c.unsorted = true
		c.mu.Unlock()
	}
	c.mu.Lock()
	if c.gen == gen {
		c.byKey = nil // read everything again next time
	}
	c.mu.Unlock()
}

func decodeRepository(k, v []byte) (Repository, bool, error) {
	var r Repository
	if _, ok := keyParts(string(k), dir("repos"), 2); !ok {
		return r, false, nil
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, false, fmt.Errorf("decoding %s: %w", k, err)
	}
	return r, true, nil
}

// sortRepositories orders repositories by namespace, then name.
func sortRepositories(rs []Repository) {
	slices.SortFunc(rs, func(a, b Repository) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// allRepositories reads every repository record, by namespace and name.
func (s *Store) allRepositories(ctx context.Context) ([]Repository, error) {
	resp, err := s.KV.Get(ctx, dir("repos"), readOpts(ctx, clientv3.WithPrefix())...)
	if err != nil {
		return nil, fmt.Errorf("listing repositories: %w", err)
	}
	all := make([]Repository, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if r, ok, err := decodeRepository(kv.Key, kv.Value); err != nil {
			return nil, err
		} else if ok {
			all = append(all, r)
		}
	}
	sortRepositories(all)
	return all, nil
}

// readable keeps the repositories of all that user may read; it may reuse
// all's array.
func (s *Store) readable(ctx context.Context, all []Repository, user *Account) ([]Repository, error) {
	if user != nil && user.IsActive && user.IsAdmin {
		return all, nil
	}
	if user == nil || !user.IsActive {
		return keepRepos(all, func(r Repository) bool { return r.Visibility == Public }), nil
	}
	// The grants are read now, not at the repositories' revision (which
	// the cache may hold for long): a grant on a repository not listed is
	// ignored, and a repository deleted since has no grants left.
	at := func(p string) (*clientv3.GetResponse, error) {
		return s.KV.Get(ctx, p, readOpts(ctx, clientv3.WithPrefix())...)
	}
	// The user's organization memberships and teams.
	orgs, err := at(dir("orgs"))
	if err != nil {
		return nil, fmt.Errorf("listing organizations: %w", err)
	}
	member := map[string]bool{}   // org → member
	orgAdmin := map[string]bool{} // org → admin of it
	inTeam := map[[2]string]bool{}
	for _, kv := range orgs.Kvs {
		if p, ok := keyParts(string(kv.Key), dir("orgs"), 3); ok && p[1] == "members" && p[2] == user.Name {
			var m Membership
			if err := json.Unmarshal(kv.Value, &m); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
			}
			member[p[0]] = true
			orgAdmin[p[0]] = m.IsAdmin
		} else if p, ok := keyParts(string(kv.Key), dir("orgs"), 5); ok && p[1] == "teams" && p[3] == "members" && p[4] == user.Name {
			inTeam[[2]string{p[0], p[2]}] = true
		}
	}
	// Namespace-wide team grants, for the organizations the user is in.
	nsLevel := map[string]Level{user.Name: Admin}
	for org := range member {
		if orgAdmin[org] {
			nsLevel[org] = Admin
		}
	}
	nsGrants, err := at(dir("nsaccess"))
	if err != nil {
		return nil, fmt.Errorf("listing namespace grants: %w", err)
	}
	for _, kv := range nsGrants.Kvs {
		p, ok := keyParts(string(kv.Key), dir("nsaccess"), 2)
		if !ok || !member[p[0]] || !inTeam[[2]string{p[0], p[1]}] {
			continue
		}
		var g Grant
		if err := json.Unmarshal(kv.Value, &g); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
		}
		nsLevel[p[0]] = max(nsLevel[p[0]], g.Level)
	}
	// Grants on single repositories, to the user or one of its teams.
	grants, err := at(dir("access"))
	if err != nil {
		return nil, fmt.Errorf("listing repository grants: %w", err)
	}
	granted := map[[2]string]bool{}
	for _, kv := range grants.Kvs {
		p, ok := keyParts(string(kv.Key), dir("access"), 4)
		if !ok {
			continue
		}
		if (p[2] == "users" && p[3] == user.Name) || (p[2] == "teams" && inTeam[[2]string{p[0], p[3]}]) {
			var g Grant
			if err := json.Unmarshal(kv.Value, &g); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
			}
			if g.Level >= Read {
				granted[[2]string{p[0], p[1]}] = true
			}
		}
	}
	return keepRepos(all, func(r Repository) bool {
		return r.Visibility == Public || nsLevel[r.Namespace] >= Read || granted[[2]string{r.Namespace, r.Name}]
	}), nil
}

func keepRepos(rs []Repository, keep func(Repository) bool) []Repository {
	out := rs[:0]
	for _, r := range rs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}
