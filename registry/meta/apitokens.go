package meta

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// APIToken is a named access token of a user, DTR's api_tokens: it works
// as the user's password for docker login and the admin API, and can be
// narrowed to pulls and to chosen repositories. Only its hash is stored;
// the secret is shown once, when it is created.
type APIToken struct {
	HashedToken string     `json:"hashedToken"` // hex sha256 of the secret: the token's ID
	TokenLabel  string     `json:"tokenLabel"`
	Username    string     `json:"username"`
	IsActive    bool       `json:"isActive"`
	LastUsed    *time.Time `json:"lastUsed"`
	CreatedAt   time.Time  `json:"createdAt"`
	GeneratedBy string     `json:"generatedBy"` // the account that created it (an admin may create one for a user)
	CreatorUA   string     `json:"creatorUa"`
	// Extensions to DTR's record.
	ExpiresAt    *time.Time `json:"expiresAt,omitempty"`
	ReadOnly     bool       `json:"readOnly,omitempty"`     // pulls only, and no admin API changes
	Repositories []string   `json:"repositories,omitempty"` // only these repositories; none: every one the user may use
	// RepositoryAccess is what a service account's token may do, repository
	// by repository (serviceaccounts.go); empty for a user's token.
	RepositoryAccess []TokenRepositoryAccess `json:"repositoryAccess,omitempty"`
}

// APITokenPrefix starts every token's secret, so that a login can tell a
// token from a password without a bcrypt comparison, and secret scanners
// can find leaked ones.
const APITokenPrefix = "dtr_"

// MaxAPITokensPerUser bounds a user's tokens.
const MaxAPITokensPerUser = 100

// apiTokenLastUsedEvery bounds how often a token's lastUsed is written:
// docker sends the token with every pull's token request.
const apiTokenLastUsedEvery = time.Minute

// HashAPIToken is the ID of a token's secret.
func HashAPIToken(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// IsAPITokenSecret reports whether a password is shaped like a token.
func IsAPITokenSecret(pw string) bool {
	return strings.HasPrefix(pw, APITokenPrefix) && len(pw) == len(APITokenPrefix)+43
}

// APITokenPrefixDir is where tokens live, for the replicas' watch.
func APITokenPrefixDir() string { return dir("api_tokens") }

// APITokenIDOf is the hashed token of a key under APITokenPrefixDir.
func APITokenIDOf(k string) (string, bool) {
	p, ok := keyParts(k, dir("api_tokens"), 1)
	if !ok {
		return "", false
	}
	return p[0], true
}

// Usable reports whether the token may be used at t.
func (t *APIToken) Usable(at time.Time) bool {
	return t.IsActive && (t.ExpiresAt == nil || at.Before(*t.ExpiresAt))
}

// CreateAPIToken stores a new token for t.Username and returns it with its
// secret, which is never stored.
func (s *Store) CreateAPIToken(ctx context.Context, t APIToken) (APIToken, string, error) {
	if IsServiceAccountName(t.Username) || len(t.RepositoryAccess) > 0 {
		return APIToken{}, "", fmt.Errorf("%w: %s is a service account: create its tokens with POST /api/v0/accounts/{org}/serviceAccounts/{name}/tokens", ErrInvalid, t.Username)
	}
	// The account must exist and be a user when the token is written.
	return s.createAPIToken(ctx, t, key("accounts", t.Username))
}

// createAPIToken stores a checked token while the key of its account
// (guard) exists.
func (s *Store) createAPIToken(ctx context.Context, t APIToken, guard string) (APIToken, string, error) {
	if strings.TrimSpace(t.TokenLabel) == "" || len(t.TokenLabel) > 100 {
		return APIToken{}, "", fmt.Errorf("%w token label %q: give a name of 1 to 100 characters, such as \"ci\"", ErrInvalid, t.TokenLabel)
	}
	for _, r := range t.Repositories {
		if _, _, err := SplitRepository(r); err != nil {
			return APIToken{}, "", fmt.Errorf("%w repository %q of the token: %v", ErrInvalid, r, err)
		}
	}
	if t.ExpiresAt != nil && !t.ExpiresAt.After(time.Now()) {
		return APIToken{}, "", fmt.Errorf("%w expiresAt %s is in the past", ErrInvalid, t.ExpiresAt.Format(time.RFC3339))
	}
	mine, err := s.APITokens(ctx, t.Username)
	if err != nil {
		return APIToken{}, "", err
	}
	if len(mine) >= MaxAPITokensPerUser {
		return APIToken{}, "", fmt.Errorf("%w: %s has %d tokens, the most a user may have; delete unused ones", ErrInvalid, t.Username, len(mine))
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return APIToken{}, "", err
	}
	secret := APITokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	t.HashedToken = HashAPIToken(secret)
	t.IsActive = true
	t.LastUsed = nil
	t.CreatedAt = time.Now().UTC().Truncate(time.Second)
	slices.Sort(t.Repositories)
	t.Repositories = slices.Compact(t.Repositories)
	b, err := json.Marshal(t)
	if err != nil {
		return APIToken{}, "", err
	}
	resp, err := s.KV.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(guard), ">", 0)).
		Then(clientv3.OpPut(key("api_tokens", t.HashedToken), string(b))).
		Commit()
	if err != nil {
		return APIToken{}, "", err
	}
	if !resp.Succeeded {
		return APIToken{}, "", fmt.Errorf("account %s: %w", t.Username, ErrNotFound)
	}
	return t, secret, nil
}

// APIToken returns one token by its hashed ID.
func (s *Store) APIToken(ctx context.Context, id string) (APIToken, error) {
	var t APIToken
	if _, err := s.get(ctx, key("api_tokens", id), &t); err != nil {
		if errors.Is(err, ErrNotFound) {
			return t, fmt.Errorf("api token: %w", ErrNotFound)
		}
		return t, err
	}
	return t, nil
}

// APITokens lists a user's tokens ("" lists everyone's), newest first.
func (s *Store) APITokens(ctx context.Context, user string) ([]APIToken, error) {
	resp, err := s.KV.Get(ctx, dir("api_tokens"), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := []APIToken{}
	for _, kv := range resp.Kvs {
		var t APIToken
		if json.Unmarshal(kv.Value, &t) != nil || (user != "" && t.Username != user) {
			continue
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b APIToken) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.HashedToken, b.HashedToken)
	})
	return out, nil
}

// UpdateAPIToken changes a token's label or active flag with fn, unless
// the token changed meanwhile (then it tries again).
func (s *Store) UpdateAPIToken(ctx context.Context, id string, fn func(*APIToken) error) (APIToken, error) {
	k := key("api_tokens", id)
	for {
		resp, err := s.KV.Get(ctx, k)
		if err != nil {
			return APIToken{}, err
		}
		if len(resp.Kvs) == 0 {
			return APIToken{}, fmt.Errorf("api token: %w", ErrNotFound)
		}
		var t APIToken
		if err := json.Unmarshal(resp.Kvs[0].Value, &t); err != nil {
			return APIToken{}, err
		}
		if err := fn(&t); err != nil {
			return APIToken{}, err
		}
		b, err := json.Marshal(t)
		if err != nil {
			return APIToken{}, err
		}
		tr, err := s.KV.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", resp.Kvs[0].ModRevision)).Then(clientv3.OpPut(k, string(b))).Commit()
		if err != nil {
			return APIToken{}, err
		}
		if tr.Succeeded {
			return t, nil
		}
	}
}

// DeleteAPIToken removes a token: it stops working on every replica.
func (s *Store) DeleteAPIToken(ctx context.Context, id string) error {
	resp, err := s.KV.Delete(ctx, key("api_tokens", id))
	if err != nil {
		return err
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("api token: %w", ErrNotFound)
	}
	return nil
}

// DeleteUserAPITokens removes every token of a user (a deleted account).
func (s *Store) DeleteUserAPITokens(ctx context.Context, user string) error {
	ts, err := s.APITokens(ctx, user)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if err := s.DeleteAPIToken(ctx, t.HashedToken); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// TouchAPIToken records a use of the token at, at most once a minute.
func (s *Store) TouchAPIToken(ctx context.Context, t APIToken, at time.Time) {
	if t.LastUsed != nil && at.Sub(*t.LastUsed) < apiTokenLastUsedEvery {
		return
	}
	_, _ = s.UpdateAPIToken(ctx, t.HashedToken, func(cur *APIToken) error {
		u := at.UTC().Truncate(time.Second)
		cur.LastUsed = &u
		return nil
	})
}
