package meta

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Tag pruning (docs/gc.md, "Tag pruning"): a repository's policies each
// hold rules; a tag that every rule of an enabled policy matches is
// deleted, and a repository's tag limit deletes its oldest tags beyond the
// limit. The names and fields are DTR's, so that its users' scripts and
// Terraform keep working.

// TagPruningAction is the job action that applies the policies and tag
// limits. Its parameters: "repository" (namespace/name; absent: every
// repository with a policy or a limit) and "keep" (comma-separated tags
// never pruned by this run: the tags a push just wrote).
const TagPruningAction = "tag_pruning"

// PruningRule is one condition on a tag: Field Operator Values.
type PruningRule struct {
	Field    string   `json:"field"`
	Operator string   `json:"operator"`
	Values   []string `json:"values"`
}

// PruningPolicy is a repository's pruning policy.
type PruningPolicy struct {
	ID           string        `json:"id"`
	Repository   string        `json:"repository"` // namespace/name
	Enabled      bool          `json:"enabled"`
	Rules        []PruningRule `json:"rules"`
	LastPrunedAt time.Time     `json:"lastPrunedAt"`
}

// TagInfo is a tag as pruning judges it: UpdatedAt is when the tag was last
// pushed (the modification time of its current link in storage).
type TagInfo struct {
	Name      string    `json:"name"`
	Digest    string    `json:"digest"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// PrunedTag is a tag to prune and why: a policy's ID, or TagLimitReason.
type PrunedTag struct {
	TagInfo
	Reason string `json:"reason"`
}

// TagLimitReason is the Reason of a tag pruned by the repository's tagLimit.
const TagLimitReason = "tagLimit"

// Limits of a policy: enough for any real rule set, small enough that an
// evaluation over thousands of tags stays cheap.
const (
	MaxPruningPolicies = 50  // per repository
	MaxPruningRules    = 20  // per policy
	MaxPruningValues   = 50  // per rule
	MaxPruningValue    = 256 // characters of one value (a regexp included)
)

// scanningFields are DTR's rule fields that need image scanning.
var scanningFields = map[string]bool{
	"license.name": true, "component.name": true,
	"vulnerability_all": true, "vulnerability_critical": true, "vulnerability_major": true, "vulnerability_minor": true,
}

// tagMatcher is a compiled rule.
type tagMatcher func(t TagInfo, now time.Time) bool

// compileRule checks a rule and returns its matcher; the error says how to
// write it.
func compileRule(r PruningRule) (tagMatcher, error) {
	if scanningFields[r.Field] {
		return nil, fmt.Errorf("rule field %q needs image scanning, which is not part of this registry: prune by tag, updated_at or updated_at_duration", r.Field)
	}
	if len(r.Values) == 0 {
		return nil, fmt.Errorf("rule %s %s: give at least one value", r.Field, r.Operator)
	}
	if len(r.Values) > MaxPruningValues {
		return nil, fmt.Errorf("rule %s %s: %d values; give at most %d", r.Field, r.Operator, len(r.Values), MaxPruningValues)
	}
	for _, v := range r.Values {
		if len(v) > MaxPruningValue {
			return nil, fmt.Errorf("rule %s %s: a value of %d characters; give at most %d", r.Field, r.Operator, len(v), MaxPruningValue)
		}
	}
	switch r.Field {
	case "tag":
		return compileTagRule(r)
	case "updated_at", "updated_at_duration":
		return compileTimeRule(r)
	}
	return nil, fmt.Errorf("rule field %q: use tag, updated_at or updated_at_duration", r.Field)
}

func compileTagRule(r PruningRule) (tagMatcher, error) {
	vals := r.Values
	anyOf := func(f func(name, v string) bool) tagMatcher {
		return func(t TagInfo, _ time.Time) bool {
			for _, v := range vals {
				if f(t.Name, v) {
					return true
				}
			}
			return false
		}
	}
	switch r.Operator {
	case "eq", "oo":
		return anyOf(func(n, v string) bool { return n == v }), nil
	case "noo":
		in := anyOf(func(n, v string) bool { return n == v })
		return func(t TagInfo, now time.Time) bool { return !in(t, now) }, nil
	case "sw":
		return anyOf(strings.HasPrefix), nil
	case "ew":
		return anyOf(strings.HasSuffix), nil
	case "c":
		return anyOf(strings.Contains), nil
	case "matches":
		// Go's regexps run in linear time, so a bounded pattern cannot
		// stall an evaluation.
		res := make([]*regexp.Regexp, len(vals))
		for i, v := range vals {
			re, err := regexp.Compile(v)
			if err != nil {
				return nil, fmt.Errorf("rule tag matches %q: not a Go regular expression: %v", v, err)
			}
			res[i] = re
		}
		return func(t TagInfo, _ time.Time) bool {
			for _, re := range res {
				if re.MatchString(t.Name) {
					return true
				}
			}
			return false
		}, nil
	}
	return nil, fmt.Errorf("rule tag %q: use eq, sw, ew, c, oo, noo or matches", r.Operator)
}

// compileTimeRule: updated_at takes an RFC 3339 time, or a Go duration
// meaning that long before the evaluation; updated_at_duration takes a Go
// duration. bf matches tags pushed before that moment, af after it.
func compileTimeRule(r PruningRule) (tagMatcher, error) {
	if r.Operator != "bf" && r.Operator != "af" {
		return nil, fmt.Errorf("rule %s %q: use bf (before) or af (after)", r.Field, r.Operator)
	}
	if len(r.Values) != 1 {
		return nil, fmt.Errorf("rule %s %s: give exactly one value", r.Field, r.Operator)
	}
	v := r.Values[0]
	var at func(now time.Time) time.Time
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		at = func(now time.Time) time.Time { return now.Add(-d) }
	} else if t, terr := time.Parse(time.RFC3339, v); terr == nil && r.Field == "updated_at" {
		at = func(time.Time) time.Time { return t }
	} else if r.Field == "updated_at" {
		return nil, fmt.Errorf("rule updated_at %s %q: give a Go duration such as \"720h\" (30 days ago) or an RFC 3339 time such as \"2024-01-02T15:04:05Z\"", r.Operator, v)
	} else {
		return nil, fmt.Errorf("rule updated_at_duration %s %q: give a Go duration of 0 or more, such as \"720h\" for 30 days", r.Operator, v)
	}
	before := r.Operator == "bf"
	return func(t TagInfo, now time.Time) bool {
		if before {
			return t.UpdatedAt.Before(at(now))
		}
		return t.UpdatedAt.After(at(now))
	}, nil
}

// compilePolicy returns a policy's matcher: every rule must match.
func compilePolicy(rules []PruningRule) (tagMatcher, error) {
	if len(rules) == 0 {
		return nil, errors.New("a policy needs at least one rule: without one it would prune every tag")
	}
	if len(rules) > MaxPruningRules {
		return nil, fmt.Errorf("%d rules; give at most %d", len(rules), MaxPruningRules)
	}
	ms := make([]tagMatcher, len(rules))
	for i, r := range rules {
		m, err := compileRule(r)
		if err != nil {
			return nil, err
		}
		ms[i] = m
	}
	return func(t TagInfo, now time.Time) bool {
		for _, m := range ms {
			if !m(t, now) {
				return false
			}
		}
		return true
	}, nil
}

// ValidatePruningRules checks a policy's rules; the error says how to fix
// them.
func ValidatePruningRules(rules []PruningRule) error {
	_, err := compilePolicy(rules)
	return err
}

// SelectPrunable returns the tags that enabled policies and tagLimit prune,
// oldest first. A tag in keep is never pruned and counts as one of the
// newest for the limit: the tag a push just wrote must survive it. Tags a
// policy prunes do not count against the limit.
func SelectPrunable(policies []PruningPolicy, tagLimit int, tags []TagInfo, keep map[string]bool, now time.Time) ([]PrunedTag, error) {
	type compiled struct {
		id string
		m  tagMatcher
	}
	var cs []compiled
	for _, p := range policies {
		if !p.Enabled {
			continue
		}
		m, err := compilePolicy(p.Rules)
		if err != nil {
			return nil, fmt.Errorf("pruning policy %s: %w", p.ID, err)
		}
		cs = append(cs, compiled{p.ID, m})
	}
	var out []PrunedTag
	var left []TagInfo
	for _, t := range tags {
		reason := ""
		if !keep[t.Name] {
			for _, c := range cs {
				if c.m(t, now) {
					reason = c.id
					break
				}
			}
		}
		if reason != "" {
			out = append(out, PrunedTag{TagInfo: t, Reason: reason})
		} else {
			left = append(left, t)
		}
	}
	if tagLimit > 0 && len(left) > tagLimit {
		sort.SliceStable(left, func(a, b int) bool {
			ka, kb := keep[left[a].Name], keep[left[b].Name]
			if ka != kb {
				return ka
			}
			if !left[a].UpdatedAt.Equal(left[b].UpdatedAt) {
				return left[a].UpdatedAt.After(left[b].UpdatedAt)
			}
			return left[a].Name > left[b].Name
		})
		for _, t := range left[tagLimit:] {
			if !keep[t.Name] {
				out = append(out, PrunedTag{TagInfo: t, Reason: TagLimitReason})
			}
		}
	}
	sort.SliceStable(out, func(a, b int) bool {
		if !out[a].UpdatedAt.Equal(out[b].UpdatedAt) {
			return out[a].UpdatedAt.Before(out[b].UpdatedAt)
		}
		return out[a].Name < out[b].Name
	})
	return out, nil
}

// checkTagLimit is the rule a repository record's tagLimit follows.
func checkTagLimit(r Repository) error {
	switch {
	case r.TagLimit < 0:
		return fmt.Errorf("%w tagLimit %d: give 0 (no limit) or more", ErrInvalid, r.TagLimit)
	case r.TagLimit > 0 && r.ImmutableTags:
		return fmt.Errorf("%w tagLimit %d with immutable tags: a limit deletes tags, so set immutableTags to false first (or tagLimit to 0)", ErrInvalid, r.TagLimit)
	}
	return nil
}

// ParsePruningParameters checks a tag_pruning job's parameters.
func ParsePruningParameters(p map[string]string) (repo string, keep map[string]bool, err error) {
	keep = map[string]bool{}
	for k, v := range p {
		switch k {
		case "repository":
			if _, _, err := SplitRepository(v); err != nil {
				return "", nil, fmt.Errorf("parameter repository: %w", err)
			}
			repo = v
		case "keep":
			for _, t := range strings.Split(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					keep[t] = true
				}
			}
		default:
			return "", nil, fmt.Errorf("unknown parameter %q: tag pruning takes repository and keep", k)
		}
	}
	return repo, keep, nil
}

// NewPruningJob is a waiting tag_pruning job for repo ("" for every
// repository) that never prunes the tags of keep.
func NewPruningJob(repo string, keep []string, now time.Time) Job {
	now = now.UTC()
	params := map[string]string{}
	if repo != "" {
		params["repository"] = repo
	}
	if len(keep) > 0 {
		params["keep"] = strings.Join(keep, ",")
	}
	return Job{ID: NewJobID(now), Status: JobWaiting, ScheduledAt: now, LastUpdated: now, Action: TagPruningAction, Parameters: params}
}

// CreatePruningPolicy adds a policy to an existing repository; it sets the
// policy's ID and repository.
func (s *Store) CreatePruningPolicy(ctx context.Context, namespace, name string, p PruningPolicy) (PruningPolicy, error) {
	if err := ValidatePruningRules(p.Rules); err != nil {
		return p, fmt.Errorf("%w pruning policy: %v", ErrInvalid, err)
	}
	existing, err := s.PruningPolicies(ctx, namespace, name)
	if err != nil {
		return p, err
	}
	if len(existing) >= MaxPruningPolicies {
		return p, fmt.Errorf("%w repository %s/%s has %d pruning policies already: combine or delete some", ErrInvalid, namespace, name, len(existing))
	}
	p.ID = NewJobID(time.Now())
	p.Repository = namespace + "/" + name
	p.LastPrunedAt = time.Time{}
	// Only while the repository exists: a policy must not wait for the
	// next holder of the name.
	if err := s.putWhileExists(ctx, key("pruning", namespace, name, p.ID), p, key("repos", namespace, name)); err != nil {
		return p, fmt.Errorf("repository %s/%s: %w", namespace, name, err)
	}
	return p, nil
}

// PruningPolicies lists a repository's policies, oldest first.
func (s *Store) PruningPolicies(ctx context.Context, namespace, name string) ([]PruningPolicy, error) {
	return list[PruningPolicy](ctx, s, dir("pruning", namespace, name))
}

// AllPruningPolicies lists every repository's policies.
func (s *Store) AllPruningPolicies(ctx context.Context) ([]PruningPolicy, error) {
	resp, err := s.KV.Get(ctx, dir("pruning"), readOpts(ctx, clientv3.WithPrefix())...)
	if err != nil {
		return nil, fmt.Errorf("listing pruning policies: %w", err)
	}
	out := make([]PruningPolicy, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var p PruningPolicy
		if err := jsonUnmarshal(kv.Value, &p); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// PruningPolicy returns one policy.
func (s *Store) PruningPolicy(ctx context.Context, namespace, name, id string) (PruningPolicy, error) {
	var p PruningPolicy
	if _, err := s.get(ctx, key("pruning", namespace, name, id), &p); err != nil {
		return p, fmt.Errorf("pruning policy %s of %s/%s: %w", id, namespace, name, err)
	}
	return p, nil
}

// UpdatePruningPolicy changes a policy with fn; its rules must stay valid.
func (s *Store) UpdatePruningPolicy(ctx context.Context, namespace, name, id string, fn func(*PruningPolicy) error) (PruningPolicy, error) {
	p, err := mutate(ctx, s, key("pruning", namespace, name, id), func(p *PruningPolicy) error {
		if err := fn(p); err != nil {
			return err
		}
		if err := ValidatePruningRules(p.Rules); err != nil {
			return fmt.Errorf("%w pruning policy: %v", ErrInvalid, err)
		}
		return nil
	})
	if err != nil {
		return p, fmt.Errorf("pruning policy %s of %s/%s: %w", id, namespace, name, err)
	}
	return p, nil
}

// DeletePruningPolicy removes a policy.
func (s *Store) DeletePruningPolicy(ctx context.Context, namespace, name, id string) error {
	found, err := s.del(ctx, key("pruning", namespace, name, id), false)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("pruning policy %s of %s/%s: %w", id, namespace, name, ErrNotFound)
	}
	return nil
}

// MarkPruned sets lastPrunedAt of the policies that pruned a tag; a policy
// deleted meanwhile is skipped.
func (s *Store) MarkPruned(ctx context.Context, namespace, name string, ids []string, at time.Time) error {
	for _, id := range ids {
		_, err := mutate(ctx, s, key("pruning", namespace, name, id), func(p *PruningPolicy) error {
			p.LastPrunedAt = at.UTC()
			return nil
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("recording when pruning policy %s of %s/%s pruned: %w", id, namespace, name, err)
		}
	}
	return nil
}

// CreateCronIfAbsent writes c (with a new ID) unless its action has a cron
// already, which it leaves alone; it reports whether it wrote.
func (s *Store) CreateCronIfAbsent(ctx context.Context, c Cron) (bool, error) {
	c.ID = NewJobID(time.Now())
	err := s.create(ctx, key("crons", c.Action), c)
	if errors.Is(err, ErrExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cron %s: %w", c.Action, err)
	}
	return true, nil
}
