package meta

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPruningRuleMatching: every field and operator against tags of known
// names and ages; a policy prunes a tag only when all its rules match.
func TestPruningRuleMatching(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	tags := []TagInfo{
		{Name: "v1.0", UpdatedAt: now.Add(-72 * time.Hour)},
		{Name: "v1.1-rc", UpdatedAt: now.Add(-48 * time.Hour)},
		{Name: "dev-abc", UpdatedAt: now.Add(-30 * time.Hour)},
		{Name: "dev-xyz-rc", UpdatedAt: now.Add(-time.Hour)},
		{Name: "latest", UpdatedAt: now},
	}
	rule := func(field, op string, vals ...string) PruningRule {
		return PruningRule{Field: field, Operator: op, Values: vals}
	}
	tests := []struct {
		name  string
		rules []PruningRule
		want  []string // oldest first
	}{
		{"eq", []PruningRule{rule("tag", "eq", "latest")}, []string{"latest"}},
		{"eq any value", []PruningRule{rule("tag", "eq", "latest", "v1.0")}, []string{"v1.0", "latest"}},
		{"eq is exact", []PruningRule{rule("tag", "eq", "v1")}, nil},
		{"sw", []PruningRule{rule("tag", "sw", "dev-")}, []string{"dev-abc", "dev-xyz-rc"}},
		{"ew", []PruningRule{rule("tag", "ew", "-rc")}, []string{"v1.1-rc", "dev-xyz-rc"}},
		{"c", []PruningRule{rule("tag", "c", "1.")}, []string{"v1.0", "v1.1-rc"}},
		{"oo", []PruningRule{rule("tag", "oo", "v1.0", "dev-abc", "absent")}, []string{"v1.0", "dev-abc"}},
		{"noo", []PruningRule{rule("tag", "noo", "latest", "v1.0")}, []string{"v1.1-rc", "dev-abc", "dev-xyz-rc"}},
		{"matches", []PruningRule{rule("tag", "matches", `^v[0-9]+\.[0-9]+$`)}, []string{"v1.0"}},
		{"matches unanchored", []PruningRule{rule("tag", "matches", `rc`)}, []string{"v1.1-rc", "dev-xyz-rc"}},
		{"updated_at_duration bf", []PruningRule{rule("updated_at_duration", "bf", "36h")}, []string{"v1.0", "v1.1-rc"}},
		{"updated_at_duration af", []PruningRule{rule("updated_at_duration", "af", "36h")}, []string{"dev-abc", "dev-xyz-rc", "latest"}},
		{"updated_at duration", []PruningRule{rule("updated_at", "bf", "24h")}, []string{"v1.0", "v1.1-rc", "dev-abc"}},
		{"updated_at time bf", []PruningRule{rule("updated_at", "bf", "2026-05-30T12:00:00Z")}, []string{"v1.0"}},
		{"updated_at time af", []PruningRule{rule("updated_at", "af", "2026-05-31T12:00:00Z")}, []string{"dev-xyz-rc", "latest"}},
		{"all rules must match", []PruningRule{rule("tag", "sw", "dev-"), rule("updated_at_duration", "bf", "24h")}, []string{"dev-abc"}},
		{"no tag matches all", []PruningRule{rule("tag", "eq", "latest"), rule("updated_at_duration", "bf", "1h")}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SelectPrunable([]PruningPolicy{{ID: "p", Enabled: true, Rules: tc.rules}}, 0, tags, nil, now)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, g := range got {
				names = append(names, g.Name)
				if g.Reason != "p" {
					t.Errorf("%s pruned by %q, want policy p", g.Name, g.Reason)
				}
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("pruned %v, want %v", names, tc.want)
			}
		})
	}
}

// TestPruningRuleErrors: what a policy may not hold is refused with a
// message that says what to write; scanning fields say scanning is absent.
func TestPruningRuleErrors(t *testing.T) {
	rule := func(field, op string, vals ...string) []PruningRule {
		return []PruningRule{{Field: field, Operator: op, Values: vals}}
	}
	manyRules := make([]PruningRule, MaxPruningRules+1)
	for i := range manyRules {
		manyRules[i] = PruningRule{Field: "tag", Operator: "eq", Values: []string{"x"}}
	}
	tests := []struct {
		name  string
		rules []PruningRule
		want  string
	}{
		{"no rules", nil, "at least one rule"},
		{"too many rules", manyRules, "at most"},
		{"unknown field", rule("name", "eq", "x"), "use tag, updated_at or updated_at_duration"},
		{"vulnerability", rule("vulnerability_critical", "gte", "1"), "scanning, which is not part of this registry"},
		{"license", rule("license.name", "oo", "GPL"), "scanning"},
		{"component", rule("component.name", "noo", "openssl"), "scanning"},
		{"unknown tag operator", rule("tag", "gt", "x"), "use eq, sw, ew, c, oo, noo or matches"},
		{"no values", rule("tag", "eq"), "at least one value"},
		{"too many values", rule("tag", "oo", make([]string, MaxPruningValues+1)...), "at most"},
		{"value too long", rule("tag", "sw", strings.Repeat("a", MaxPruningValue+1)), "at most"},
		{"bad regexp", rule("tag", "matches", "(unclosed"), "not a Go regular expression"},
		{"time operator", rule("updated_at", "eq", "1h"), "use bf (before) or af (after)"},
		{"two time values", rule("updated_at_duration", "bf", "1h", "2h"), "exactly one value"},
		{"bad duration", rule("updated_at_duration", "bf", "7d"), "Go duration"},
		{"negative duration", rule("updated_at_duration", "af", "-1h"), "Go duration"},
		{"time for duration field", rule("updated_at_duration", "bf", "2026-01-01T00:00:00Z"), "Go duration"},
		{"bad time", rule("updated_at", "bf", "yesterday"), "RFC 3339"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidatePruningRules(tc.rules)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := ValidatePruningRules(rule("tag", "matches", strings.Repeat("a", MaxPruningValue))); err != nil {
		t.Errorf("a regexp of the longest length: %v", err)
	}
}

// TestSelectPrunableTagLimit: the limit keeps the newest tags, the tags in
// keep always (the ones just pushed, even if older by clock), disabled
// policies prune nothing, and tags a policy prunes leave room in the limit.
func TestSelectPrunableTagLimit(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	var tags []TagInfo
	for i, n := range []string{"a", "b", "c", "d", "e"} { // a oldest, e newest
		tags = append(tags, TagInfo{Name: n, Digest: "sha256:" + n, UpdatedAt: now.Add(time.Duration(i-5) * time.Hour)})
	}
	names := func(ps []PrunedTag) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name+"/"+p.Reason)
		}
		return out
	}
	check := func(name string, pols []PruningPolicy, limit int, keep map[string]bool, want ...string) {
		t.Helper()
		got, err := SelectPrunable(pols, limit, tags, keep, now)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(names(got), want) {
			t.Errorf("%s: pruned %v, want %v", name, names(got), want)
		}
	}
	check("no limit", nil, 0, nil)
	check("limit above count", nil, 9, nil)
	check("limit 2", nil, 2, nil, "a/tagLimit", "b/tagLimit", "c/tagLimit")
	check("limit keeps the pushed tag", nil, 2, map[string]bool{"a": true}, "b/tagLimit", "c/tagLimit", "d/tagLimit")
	eOnly := []PruningPolicy{{ID: "p1", Enabled: true, Rules: []PruningRule{{Field: "tag", Operator: "eq", Values: []string{"e"}}}}}
	check("policy then limit", eOnly, 2, nil, "a/tagLimit", "b/tagLimit", "e/p1")
	check("keep beats a policy", eOnly, 0, map[string]bool{"e": true})
	disabled := []PruningPolicy{{ID: "p2", Enabled: false, Rules: eOnly[0].Rules}}
	check("disabled policy", disabled, 0, nil)
	bad := []PruningPolicy{{ID: "p3", Enabled: true}}
	if _, err := SelectPrunable(bad, 0, tags, nil, now); err == nil {
		t.Error("an enabled policy without rules was applied")
	}
}

// TestPruningParametersAndTagLimit: a tag_pruning job's parameters and a
// repository's tagLimit are checked.
func TestPruningParametersAndTagLimit(t *testing.T) {
	repo, keep, err := ParsePruningParameters(map[string]string{"repository": "acme/charts/app", "keep": "v2, latest,"})
	if err != nil || repo != "acme/charts/app" || len(keep) != 2 || !keep["v2"] || !keep["latest"] {
		t.Fatalf("got %q %v %v", repo, keep, err)
	}
	for _, p := range []map[string]string{{"repository": "noslash"}, {"repository": "acme/../x"}, {"dryRun": "true"}} {
		if _, _, err := ParsePruningParameters(p); err == nil {
			t.Errorf("%v accepted", p)
		}
	}
	j := NewPruningJob("acme/app", []string{"v2"}, time.Now())
	if j.Action != TagPruningAction || j.Status != JobWaiting || j.Parameters["repository"] != "acme/app" || j.Parameters["keep"] != "v2" {
		t.Errorf("job %+v", j)
	}
	for _, r := range []Repository{{TagLimit: -1}, {TagLimit: 3, ImmutableTags: true}} {
		if err := checkTagLimit(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", r, err)
		}
	}
	for _, r := range []Repository{{TagLimit: 0, ImmutableTags: true}, {TagLimit: 3}} {
		if err := checkTagLimit(r); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
}
