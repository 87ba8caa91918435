package registry

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/meta"
)

// Tag pruning (docs/gc.md, "Tag pruning"): tag_pruning jobs apply each
// repository's policies and tag limit; a push to a repository that has them
// queues one when it would prune something.

// tagState reads a tag's current link: the digest it names and when it was
// last pushed (Distribution rewrites the link on every push of the tag).
func tagState(ctx context.Context, drv driver.StorageDriver, repo, tag string) (meta.TagInfo, error) {
	link := tagCurrentLink(repo, tag)
	fi, err := drv.Stat(ctx, link)
	if err != nil {
		return meta.TagInfo{}, err
	}
	b, err := drv.GetContent(ctx, link)
	if err != nil {
		return meta.TagInfo{}, err
	}
	return meta.TagInfo{Name: tag, Digest: strings.TrimSpace(string(b)), UpdatedAt: fi.ModTime().UTC()}, nil
}

// listTags lists a repository's tags in storage, by name; a repository
// without tags has none.
func listTags(ctx context.Context, drv driver.StorageDriver, repo string) ([]meta.TagInfo, error) {
	entries, err := drv.List(ctx, path.Join(repositoriesRoot, repo, "_manifests/tags"))
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the tags of %s: %w", repo, err)
	}
	sort.Strings(entries)
	out := make([]meta.TagInfo, 0, len(entries))
	for _, e := range entries {
		t, err := tagState(ctx, drv, repo, path.Base(e))
		if isNotFound(err) {
			continue // deleted meanwhile, or a tag directory without a current link
		}
		if err != nil {
			return nil, fmt.Errorf("reading tag %s of %s: %w", path.Base(e), repo, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// deleteTag is untag, with the replica's cached manifests of repo
// forgotten before and after.
func (r *Replica) deleteTag(ctx context.Context, drv driver.StorageDriver, repo, tag string) error {
	r.manifests.forget(repo)
	defer r.manifests.forget(repo)
	return untag(ctx, drv, repo, tag)
}

// untag deletes a tag through Distribution's tag service, the code path of
// DELETE /v2/<name>/manifests/<tag>: the manifest stays, pullable by
// digest. A tag already gone is success.
func untag(ctx context.Context, drv driver.StorageDriver, repo, tag string) error {
	ns, err := storage.NewRegistry(ctx, drv, storage.EnableDelete)
	if err != nil {
		return err
	}
	named, err := reference.WithName(repo)
	if err != nil {
		return err
	}
	rp, err := ns.Repository(ctx, named)
	if err != nil {
		return err
	}
	err = rp.Tags(ctx).Untag(ctx, tag)
	var unknown distribution.ErrTagUnknown
	if isNotFound(err) || errors.As(err, &unknown) {
		return nil
	}
	return err
}

// listRepositoryTags is the admin API's view of a repository's tags (the
// dry run of a policy).
func (r *Replica) listRepositoryTags(ctx context.Context, repo string) ([]meta.TagInfo, error) {
	drv := r.storageDriver()
	if drv == nil {
		return nil, errors.New("the registry storage is not configured yet")
	}
	return listTags(ctx, drv, repo)
}

// pruneProgress is a tag_pruning job's progress.
type pruneProgress struct {
	Repositories int `json:"repositories"`
	TagsPruned   int `json:"tagsPruned"`
	Failed       int `json:"failed"`
}

// pruneTags is the work of a tag_pruning job (gc.Pruner): one repository,
// or every repository with an enabled policy or a tag limit.
func (r *Replica) pruneTags(ctx context.Context, params map[string]string, logf func(string, ...any)) (any, int, error) {
	var p pruneProgress
	repo, keep, err := meta.ParsePruningParameters(params)
	if err != nil {
		return p, 0, err
	}
	drv := r.storageDriver()
	if drv == nil {
		return p, 0, errors.New("the registry storage is not configured yet")
	}
	repos := []string{repo}
	if repo == "" {
		if repos, err = r.pruningRepositories(ctx); err != nil {
			return p, 0, err
		}
		logf("%d repositories have an enabled pruning policy or a tag limit", len(repos))
	}
	for _, rp := range repos {
		if ctx.Err() != nil {
			return p, p.TagsPruned, ctx.Err()
		}
		n, err := r.pruneRepository(ctx, drv, rp, keep, logf)
		p.Repositories++
		p.TagsPruned += n
		if err != nil {
			if ctx.Err() != nil {
				return p, p.TagsPruned, ctx.Err()
			}
			p.Failed++
			logf("error: repository %s: %v", rp, err)
		}
	}
	logf("pruned %d tags in %d repositories", p.TagsPruned, p.Repositories)
	if p.Failed > 0 {
		return p, p.TagsPruned, fmt.Errorf("%d repositories could not be pruned (the job's log names them); the next run retries them", p.Failed)
	}
	return p, p.TagsPruned, nil
}

// pruningRepositories are the repositories with an enabled policy or a tag
// limit, by name.
func (r *Replica) pruningRepositories(ctx context.Context) ([]string, error) {
	set := map[string]bool{}
	ps, err := r.store.AllPruningPolicies(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if p.Enabled {
			set[p.Repository] = true
		}
	}
	recs, err := r.store.Repositories(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, rec := range recs {
		if rec.TagLimit > 0 {
			set[rec.FullName()] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

func anyEnabled(ps []meta.PruningPolicy) bool {
	for _, p := range ps {
		if p.Enabled {
			return true
		}
	}
	return false
}

// pruneRepository applies one repository's policies and tag limit and
// returns how many tags it deleted. A tag pushed again between the listing
// and its deletion is kept: the push was not what the rules judged.
func (r *Replica) pruneRepository(ctx context.Context, drv driver.StorageDriver, repo string, keep map[string]bool, logf func(string, ...any)) (int, error) {
	ns, name, err := meta.SplitRepository(repo)
	if err != nil {
		return 0, err
	}
	rec, err := r.store.Repository(ctx, ns, name)
	if errors.Is(err, meta.ErrNotFound) {
		logf("repository %s: deleted; nothing to prune", repo)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	ps, err := r.store.PruningPolicies(ctx, ns, name)
	if err != nil {
		return 0, err
	}
	if rec.TagLimit == 0 && !anyEnabled(ps) {
		return 0, nil
	}
	tags, err := listTags(ctx, drv, repo)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	sel, err := meta.SelectPrunable(ps, rec.TagLimit, tags, keep, now)
	if err != nil {
		return 0, err
	}
	pruned := 0
	by := map[string]bool{}
	for _, t := range sel {
		if ctx.Err() != nil {
			break
		}
		cur, err := tagState(ctx, drv, repo, t.Name)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return pruned, fmt.Errorf("reading tag %s: %w", t.Name, err)
		}
		if cur.Digest != t.Digest || !cur.UpdatedAt.Equal(t.UpdatedAt) {
			logf("kept %s:%s: pushed again during the run", repo, t.Name)
			continue
		}
		if err := r.deleteTag(ctx, drv, repo, t.Name); err != nil {
			return pruned, fmt.Errorf("deleting tag %s: %w", t.Name, err)
		}
		why := "policy " + t.Reason
		if t.Reason == meta.TagLimitReason {
			why = fmt.Sprintf("tagLimit %d", rec.TagLimit)
		} else {
			by[t.Reason] = true
		}
		logf("pruned %s:%s (%s), last pushed %s, by %s", repo, t.Name, t.Digest, t.UpdatedAt.Format(time.RFC3339), why)
		r.log.WithFields(logrus.Fields{"repository": repo, "tag": t.Name, "digest": t.Digest, "by": why}).Info("tag pruned")
		pruned++
	}
	ids := make([]string, 0, len(by))
	for id := range by {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if err := r.store.MarkPruned(context.WithoutCancel(ctx), ns, name, ids, now); err != nil {
		return pruned, err
	}
	return pruned, ctx.Err()
}

// pushPruner queues tag pruning after pushes: at most one check per
// repository at a time, and one more if pushes came in during it, so a
// burst of pushes costs two checks, not one per push.
type pushPruner struct {
	r       *Replica
	mu      sync.Mutex
	pending map[string]*pushCheck
}

type pushCheck struct {
	again bool
	tags  []string // of the last push seen: the tags never pruned for it
}

func (r *Replica) newPushPruner() *pushPruner {
	return &pushPruner{r: r, pending: map[string]*pushCheck{}}
}

// pushed is called after a manifest PUT wrote tags to repo; it returns at
// once and never fails the push.
func (p *pushPruner) pushed(repo string, tags []string) {
	p.mu.Lock()
	if c, running := p.pending[repo]; running {
		c.again, c.tags = true, tags
		p.mu.Unlock()
		return
	}
	p.pending[repo] = &pushCheck{}
	p.mu.Unlock()
	go func() {
		for {
			p.check(repo, tags)
			p.mu.Lock()
			c := p.pending[repo]
			if !c.again {
				delete(p.pending, repo)
				p.mu.Unlock()
				return
			}
			c.again, tags = false, c.tags
			p.mu.Unlock()
		}
	}()
}

// check queues a tag_pruning job for repo when its policies or tag limit
// prune something now, keeping the tags just pushed.
func (p *pushPruner) check(repo string, tags []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := p.r.log.WithField("repository", repo)
	ns, name, err := meta.SplitRepository(repo)
	if err != nil {
		return
	}
	rec, err := p.r.store.Repository(ctx, ns, name)
	if err != nil {
		if !errors.Is(err, meta.ErrNotFound) {
			log.WithError(err).Warn("checking tag pruning after a push; the scheduled run applies it")
		}
		return
	}
	ps, err := p.r.store.PruningPolicies(ctx, ns, name)
	if err != nil {
		log.WithError(err).Warn("checking tag pruning after a push; the scheduled run applies it")
		return
	}
	if rec.TagLimit == 0 && !anyEnabled(ps) {
		return
	}
	drv := p.r.storageDriver()
	if drv == nil {
		return
	}
	list, err := listTags(ctx, drv, repo)
	if err != nil {
		log.WithError(err).Warn("checking tag pruning after a push; the scheduled run applies it")
		return
	}
	keep := map[string]bool{}
	for _, t := range tags {
		keep[t] = true
	}
	sel, err := meta.SelectPrunable(ps, rec.TagLimit, list, keep, time.Now())
	if err != nil || len(sel) == 0 {
		return
	}
	j := meta.NewPruningJob(repo, tags, time.Now())
	if err := p.r.store.CreateJob(ctx, j); err != nil {
		log.WithError(err).Warn("queueing tag pruning after a push; the scheduled run applies it")
		return
	}
	log.WithFields(logrus.Fields{"job": j.ID, "tags": len(sel)}).Info("tag pruning queued after a push")
}
