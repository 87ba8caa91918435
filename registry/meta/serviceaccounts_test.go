package meta_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
)

func TestSplitServiceAccount(t *testing.T) {
	for _, tc := range []struct {
		in        string
		org, name string
		ok        bool
	}{
		{"acme+ci", "acme", "ci", true},
		{"my-org+deploy.prod", "my-org", "deploy.prod", true},
		{"alice", "", "", false},
		{"acme+", "", "", false},
		{"+ci", "", "", false},
		{"Acme+ci", "", "", false},
		{"acme+ci+x", "", "", false},
	} {
		org, name, ok := meta.SplitServiceAccount(tc.in)
		if org != tc.org || name != tc.name || ok != tc.ok {
			t.Errorf("SplitServiceAccount(%q) = %q, %q, %v; want %q, %q, %v", tc.in, org, name, ok, tc.org, tc.name, tc.ok)
		}
	}
}

// TestServiceAccountStore: service accounts belong to an existing
// organization, have unique valid names, and their tokens list existing
// repositories of the organization with pull or pull+push; the actions a
// token gets stop when its repository is created again; deleting the
// service account or the organization deletes its tokens.
func TestServiceAccountStore(t *testing.T) {
	s := startStore(t)
	ctx := t.Context()
	if _, err := s.CreateAccount(ctx, meta.Account{Name: "acme", IsOrg: true}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAccount(ctx, meta.Account{Name: "alice"}, "alice-password"); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"app", "other"} {
		if _, err := s.CreateRepository(ctx, meta.Repository{Namespace: "acme", Name: r}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateRepository(ctx, meta.Repository{Namespace: "alice", Name: "own"}); err != nil {
		t.Fatal(err)
	}
	sa, err := s.CreateServiceAccount(ctx, meta.ServiceAccount{Org: "acme", Name: "ci"})
	if err != nil || sa.Username != "acme+ci" {
		t.Fatalf("create: %+v %v", sa, err)
	}
	for _, tc := range []struct {
		sa   meta.ServiceAccount
		want error
	}{
		{meta.ServiceAccount{Org: "acme", Name: "ci"}, meta.ErrExists},
		{meta.ServiceAccount{Org: "acme", Name: "C"}, meta.ErrInvalid},
		{meta.ServiceAccount{Org: "acme", Name: "a+b"}, meta.ErrInvalid},
		{meta.ServiceAccount{Org: "nosuch", Name: "ci"}, meta.ErrNotFound},
		{meta.ServiceAccount{Org: "alice", Name: "ci"}, meta.ErrInvalid}, // a user is no organization
	} {
		if _, err := s.CreateServiceAccount(ctx, tc.sa); !errors.Is(err, tc.want) {
			t.Errorf("create %+v: %v, want %v", tc.sa, err, tc.want)
		}
	}

	grant := func(repo string, acts ...string) []meta.TokenRepositoryAccess {
		return []meta.TokenRepositoryAccess{{Repository: repo, Actions: acts}}
	}
	for name, ra := range map[string][]meta.TokenRepositoryAccess{
		"none":         nil,
		"another ns":   grant("alice/own", "pull"),
		"missing":      grant("acme/nope", "pull"),
		"bad action":   grant("acme/app", "pull", "delete"),
		"push only":    grant("acme/app", "push"),
		"no actions":   grant("acme/app"),
		"bad name":     grant("acme", "pull"),
		"listed twice": append(grant("acme/app", "pull"), grant("acme/app", "push", "pull")...),
	} {
		if _, _, err := s.CreateServiceAccountToken(ctx, "acme", "ci", meta.APIToken{TokenLabel: "x", RepositoryAccess: ra}); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("token %s: %v, want ErrInvalid", name, err)
		}
	}
	if _, _, err := s.CreateServiceAccountToken(ctx, "acme", "nosuch", meta.APIToken{TokenLabel: "x", RepositoryAccess: grant("acme/app", "pull")}); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("token of a missing service account: %v", err)
	}
	if _, _, err := s.CreateAPIToken(ctx, meta.APIToken{TokenLabel: "x", Username: "acme+ci"}); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("a personal token for a service account: %v, want ErrInvalid", err)
	}
	tok, secret, err := s.CreateServiceAccountToken(ctx, "acme", "ci", meta.APIToken{TokenLabel: "deploy",
		RepositoryAccess: append(grant("acme/other", "pull"), grant("acme/app", "push", "pull")...)})
	if err != nil || secret == "" || tok.Username != "acme+ci" || tok.ReadOnly || len(tok.Repositories) != 2 {
		t.Fatalf("token: %+v %v", tok, err)
	}
	ro, _, err := s.CreateServiceAccountToken(ctx, "acme", "ci", meta.APIToken{TokenLabel: "ro", RepositoryAccess: grant("acme/app", "pull")})
	if err != nil || !ro.ReadOnly {
		t.Fatalf("pull-only token: %+v %v", ro, err)
	}
	actions := func(repo string) []string {
		t.Helper()
		stored, err := s.APIToken(ctx, tok.HashedToken)
		if err != nil {
			t.Fatal(err)
		}
		acts, err := s.ServiceAccountActions(ctx, &stored, repo)
		if err != nil {
			t.Fatal(err)
		}
		return acts
	}
	if got := actions("acme/app"); len(got) != 2 {
		t.Errorf("acme/app: %v, want pull and push", got)
	}
	if got := actions("acme/other"); len(got) != 1 || got[0] != "pull" {
		t.Errorf("acme/other: %v, want pull", got)
	}
	if got := actions("alice/own"); got != nil {
		t.Errorf("alice/own: %v, want nothing", got)
	}
	if err := s.DeleteRepository(ctx, "acme", "other"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	if _, err := s.CreateRepository(ctx, meta.Repository{Namespace: "acme", Name: "other"}); err != nil {
		t.Fatal(err)
	}
	if got := actions("acme/other"); got != nil {
		t.Errorf("a re-created acme/other: %v, want nothing", got)
	}

	// Deleting the service account deletes its tokens.
	if err := s.DeleteServiceAccount(ctx, "acme", "ci"); err != nil {
		t.Fatal(err)
	}
	if ts, _ := s.APITokens(ctx, "acme+ci"); len(ts) != 0 {
		t.Errorf("%d tokens left after deleting the service account", len(ts))
	}
	if err := s.DeleteServiceAccount(ctx, "acme", "ci"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("deleting again: %v", err)
	}

	// Deleting the organization deletes its service accounts and tokens.
	if _, err := s.CreateServiceAccount(ctx, meta.ServiceAccount{Org: "acme", Name: "build"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateServiceAccountToken(ctx, "acme", "build", meta.APIToken{TokenLabel: "b", RepositoryAccess: grant("acme/app", "pull")}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"app", "other"} {
		if err := s.DeleteRepository(ctx, "acme", r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if ts, _ := s.APITokens(ctx, "acme+build"); len(ts) != 0 {
		t.Errorf("%d tokens left after deleting the organization", len(ts))
	}
	if _, err := s.CreateAccount(ctx, meta.Account{Name: "acme", IsOrg: true}, ""); err != nil {
		t.Fatal(err)
	}
	if sas, err := s.ServiceAccounts(ctx, "acme"); err != nil || len(sas) != 0 {
		t.Errorf("a new organization of the name has service accounts: %+v %v", sas, err)
	}
}
