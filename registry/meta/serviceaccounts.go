package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ServiceAccount is an organization's account for pipelines (a robot
// account, docs/identity.md "Service accounts"). It signs in only with its
// access tokens, as "<org>+<name>": '+' is in no account or repository
// name, so that username is never a user's, an organization's or another
// organization's service account's, and never a namespace. It is kept
// under its organization (orgs/<org>/serviceAccounts/<name>), so deleting
// the organization deletes it in the same transaction; it is in no team
// and holds no grant: each of its tokens lists its repositories.
type ServiceAccount struct {
	Org         string    `json:"org"`
	Name        string    `json:"name"`
	Username    string    `json:"username"` // <org>+<name>: the docker login username
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	CreatedBy   string    `json:"createdBy,omitempty"`
}

// ServiceAccountSeparator joins an organization and a service account's
// name into the service account's username.
const ServiceAccountSeparator = "+"

// MaxServiceAccountsPerOrg bounds an organization's service accounts.
const MaxServiceAccountsPerOrg = 100

// MaxTokenRepositories bounds the repositories one service account token lists.
const MaxTokenRepositories = 100

// ServiceAccountUsername is the username of org's service account name.
func ServiceAccountUsername(org, name string) string {
	return org + ServiceAccountSeparator + name
}

// SplitServiceAccount splits a service account's username into its
// organization and name; ok is false for any other username.
func SplitServiceAccount(username string) (org, name string, ok bool) {
	org, name, ok = strings.Cut(username, ServiceAccountSeparator)
	if !ok || ValidateAccountName(org) != nil || ValidateAccountName(name) != nil {
		return "", "", false
	}
	return org, name, true
}

// IsServiceAccountName reports whether a username is shaped like a
// service account's: such a name never signs in with a password.
func IsServiceAccountName(username string) bool {
	return strings.Contains(username, ServiceAccountSeparator)
}

// IsServiceAccount reports whether the account signed in is an
// organization's service account.
func (a *Account) IsServiceAccount() bool { return IsServiceAccountName(a.Name) }

// TokenRepositoryAccess is one repository a service account's token may
// use, and how.
type TokenRepositoryAccess struct {
	Repository string   `json:"repository"` // <org>/<name>
	Actions    []string `json:"actions"`    // ["pull"] or ["pull","push"]
	// RepositoryCreatedAt names the repository granted: one deleted and
	// created again under the same name is another repository, and the
	// token does not reach it.
	RepositoryCreatedAt time.Time `json:"repositoryCreatedAt"`
}

// ValidateServiceAccountName checks a service account's name (the part
// after "<org>+").
func ValidateServiceAccountName(org, name string) error {
	if len(name) < 2 || len(name) > 100 || !accountName.MatchString(name) {
		return fmt.Errorf("%w service account name %q: use 2-100 lowercase letters and digits, separated by single '.', '_', '__' or '-'", ErrInvalid, name)
	}
	if len(ServiceAccountUsername(org, name)) > 255 {
		return fmt.Errorf("%w service account name %q: %s+%s is longer than 255 characters; choose a shorter name", ErrInvalid, name, org, name)
	}
	return nil
}

func serviceAccountKey(org, name string) string {
	return key("orgs", org, "serviceAccounts", name)
}

// CreateServiceAccount adds a service account to an organization.
func (s *Store) CreateServiceAccount(ctx context.Context, sa ServiceAccount) (ServiceAccount, error) {
	if err := ValidateServiceAccountName(sa.Org, sa.Name); err != nil {
		return sa, err
	}
	if len(sa.Description) > 1000 {
		return sa, fmt.Errorf("%w description: use at most 1000 characters", ErrInvalid)
	}
	if _, err := s.org(ctx, sa.Org); err != nil {
		return sa, err
	}
	have, err := s.ServiceAccounts(ctx, sa.Org)
	if err != nil {
		return sa, err
	}
	if len(have) >= MaxServiceAccountsPerOrg {
		return sa, fmt.Errorf("%w: organization %s has %d service accounts, the most it may have; delete unused ones", ErrInvalid, sa.Org, len(have))
	}
	sa.Username = ServiceAccountUsername(sa.Org, sa.Name)
	sa.CreatedAt = time.Now().UTC()
	b, err := json.Marshal(sa)
	if err != nil {
		return sa, err
	}
	k := serviceAccountKey(sa.Org, sa.Name)
	// Written only while the organization exists, and never over another.
	resp, err := s.KV.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(key("accounts", sa.Org)), ">", 0),
		clientv3.Compare(clientv3.CreateRevision(k), "=", 0),
	).Then(clientv3.OpPut(k, string(b))).Commit()
	if err != nil {
		return sa, err
	}
	if !resp.Succeeded {
		if _, err := s.ServiceAccount(ctx, sa.Org, sa.Name); err == nil {
			return sa, fmt.Errorf("service account %s: %w", sa.Username, ErrExists)
		}
		return sa, fmt.Errorf("organization %s: %w", sa.Org, ErrNotFound)
	}
	// Tokens left by an older service account of the same name (a deletion
	// cut short) must not come back with this one.
	if err := s.DeleteUserAPITokens(ctx, sa.Username); err != nil {
		return sa, err
	}
	return sa, nil
}

// ServiceAccount returns one of an organization's service accounts.
func (s *Store) ServiceAccount(ctx context.Context, org, name string) (ServiceAccount, error) {
	var sa ServiceAccount
	if _, err := s.get(ctx, serviceAccountKey(org, name), &sa); err != nil {
		return sa, fmt.Errorf("service account %s: %w", ServiceAccountUsername(org, name), err)
	}
	return sa, nil
}

// ServiceAccounts lists an organization's service accounts.
func (s *Store) ServiceAccounts(ctx context.Context, org string) ([]ServiceAccount, error) {
	return list[ServiceAccount](ctx, s, dir("orgs", org, "serviceAccounts"))
}

// DeleteServiceAccount removes a service account with its tokens: no token
// of it signs in any more, and the registry tokens issued with them fail on
// every replica as the deletion arrives.
func (s *Store) DeleteServiceAccount(ctx context.Context, org, name string) error {
	user := ServiceAccountUsername(org, name)
	ts, err := s.APITokens(ctx, user)
	if err != nil {
		return err
	}
	// The account and the tokens it has go together (at most
	// MaxAPITokensPerUser+1 operations); a token created meanwhile goes
	// right after: none can be created once the account is gone.
	ops := []clientv3.Op{clientv3.OpDelete(serviceAccountKey(org, name))}
	for _, t := range ts {
		ops = append(ops, clientv3.OpDelete(key("api_tokens", t.HashedToken)))
	}
	resp, err := s.KV.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return err
	}
	if resp.Responses[0].GetResponseDeleteRange().Deleted == 0 {
		return fmt.Errorf("service account %s: %w", user, ErrNotFound)
	}
	return s.DeleteUserAPITokens(ctx, user)
}

// DeleteOrgServiceAccountTokens removes the tokens of every service account
// of org (a deleted organization, whose service accounts went with it).
func (s *Store) DeleteOrgServiceAccountTokens(ctx context.Context, org string) error {
	ts, err := s.APITokens(ctx, "")
	if err != nil {
		return err
	}
	for _, t := range ts {
		if o, _, ok := SplitServiceAccount(t.Username); !ok || o != org {
			continue
		}
		if err := s.DeleteAPIToken(ctx, t.HashedToken); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// CreateServiceAccountToken stores a new token of org's service account
// name that may use exactly the repositories of t.RepositoryAccess, and
// returns it with its secret. Each repository must exist and belong to
// org; its actions are pull, or pull and push.
func (s *Store) CreateServiceAccountToken(ctx context.Context, org, name string, t APIToken) (APIToken, string, error) {
	sa, err := s.ServiceAccount(ctx, org, name)
	if err != nil {
		return APIToken{}, "", err
	}
	if len(t.RepositoryAccess) == 0 {
		return APIToken{}, "", fmt.Errorf("%w: list the repositories the token may use, e.g. \"repositoryAccess\": [{\"repository\": \"%s/app\", \"actions\": [\"pull\"]}]", ErrInvalid, org)
	}
	if len(t.RepositoryAccess) > MaxTokenRepositories {
		return APIToken{}, "", fmt.Errorf("%w: a token lists at most %d repositories; create several tokens", ErrInvalid, MaxTokenRepositories)
	}
	out := make([]TokenRepositoryAccess, 0, len(t.RepositoryAccess))
	names := make([]string, 0, len(t.RepositoryAccess))
	readOnly := true
	for _, ra := range t.RepositoryAccess {
		ns, repo, err := SplitRepository(ra.Repository)
		if err != nil {
			return APIToken{}, "", err
		}
		if ns != org {
			return APIToken{}, "", fmt.Errorf("%w repository %s: a service account of %s may only be given repositories of %s", ErrInvalid, ra.Repository, org, org)
		}
		if slices.Contains(names, ra.Repository) {
			return APIToken{}, "", fmt.Errorf("%w: repository %s is listed twice", ErrInvalid, ra.Repository)
		}
		acts, err := tokenActions(ra.Actions)
		if err != nil {
			return APIToken{}, "", fmt.Errorf("repository %s: %w", ra.Repository, err)
		}
		if len(acts) == 2 {
			readOnly = false
		}
		r, err := s.Repository(ctx, ns, repo)
		if errors.Is(err, ErrNotFound) {
			return APIToken{}, "", fmt.Errorf("%w repository %s: it does not exist; create it first (a token reaches only existing repositories)", ErrInvalid, ra.Repository)
		}
		if err != nil {
			return APIToken{}, "", err
		}
		out = append(out, TokenRepositoryAccess{Repository: ra.Repository, Actions: acts, RepositoryCreatedAt: r.CreatedAt})
		names = append(names, ra.Repository)
	}
	slices.SortFunc(out, func(a, b TokenRepositoryAccess) int { return strings.Compare(a.Repository, b.Repository) })
	t.Username = sa.Username
	t.RepositoryAccess = out
	t.Repositories = names // the limits every token honours (narrow, checkTokenLimits)
	t.ReadOnly = readOnly
	return s.createAPIToken(ctx, t, serviceAccountKey(org, name))
}

// tokenActions checks a repository's actions: pull, or pull and push.
func tokenActions(acts []string) ([]string, error) {
	pull, push := false, false
	for _, a := range acts {
		switch a {
		case "pull":
			pull = true
		case "push":
			push = true
		default:
			return nil, fmt.Errorf("%w action %q: use [\"pull\"] or [\"pull\", \"push\"]", ErrInvalid, a)
		}
	}
	switch {
	case pull && push:
		return []string{"pull", "push"}, nil
	case pull:
		return []string{"pull"}, nil
	}
	return nil, fmt.Errorf("%w actions %q: use [\"pull\"] or [\"pull\", \"push\"]", ErrInvalid, acts)
}

// ServiceAccountActions is what a service account's token may do with a
// repository: the actions it lists for it, while the repository it was
// given still exists (not one created again under its name).
func (s *Store) ServiceAccountActions(ctx context.Context, t *APIToken, repo string) ([]string, error) {
	if t == nil {
		return nil, nil
	}
	i := slices.IndexFunc(t.RepositoryAccess, func(ra TokenRepositoryAccess) bool { return ra.Repository == repo })
	if i < 0 {
		return nil, nil
	}
	ns, name, err := SplitRepository(repo)
	if err != nil {
		return nil, nil
	}
	r, err := s.Repository(ctx, ns, name)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ra := t.RepositoryAccess[i]
	if !r.CreatedAt.Equal(ra.RepositoryCreatedAt) {
		return nil, nil
	}
	return slices.Clone(ra.Actions), nil
}
