package meta

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/bcrypt"
)

// Account is a user or an organization; both own a namespace of repositories.
type Account struct {
	Name         string    `json:"name"`
	IsOrg        bool      `json:"isOrg"`
	IsAdmin      bool      `json:"isAdmin,omitempty"` // system administrator (users only)
	IsActive     bool      `json:"isActive"`
	FullName     string    `json:"fullName,omitempty"`
	PasswordHash string    `json:"passwordHash,omitempty"` // bcrypt; users only
	CreatedAt    time.Time `json:"createdAt"`
	// Epoch changes whenever the account's tokens must end: at creation (so
	// a new account with an old name never inherits tokens), password
	// change, deactivation and a change of the admin flag. Tokens carry the
	// epoch they were issued in (registry/auth.Accounts).
	Epoch string `json:"epoch,omitempty"`
	// Source is the identity source the account comes from (ucp, ldap),
	// empty for dtr's own accounts: its password is checked there, and a
	// sync changes only such accounts (identity.go).
	Source string `json:"source,omitempty"`
	// DeactivatedBySync marks a source account a sync deactivated (gone
	// from the directory, or disabled there): the source may activate it
	// again. One an administrator deactivated stays so until one
	// activates it.
	DeactivatedBySync bool `json:"deactivatedBySync,omitempty"`
	// APIToken is the token the caller signed in with, nil for a password
	// (set by the login check, never stored): it may narrow what they get.
	APIToken *APIToken `json:"-"`
}

// NewEpoch returns a fresh token epoch.
func NewEpoch() string { return randomHex(8) }

// Membership is a user's membership of an organization.
type Membership struct {
	User    string `json:"user"`
	IsAdmin bool   `json:"isAdmin"` // may manage the organization, its teams and repositories
}

// Team is a group of an organization's members that is granted access.
type Team struct {
	Org         string `json:"org"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// TeamMember is a user's membership of a team.
type TeamMember struct {
	User string `json:"user"`
}

// Namespace component grammar of Docker references: an account name must be
// usable as the first component of a repository name.
var accountName = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)

var teamName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,99}$`)

// ErrInvalid marks a value that does not follow the rules; the message says which.
var ErrInvalid = errors.New("invalid")

// MinPasswordLength is the shortest password dtr accepts.
const MinPasswordLength = 8

// ValidateAccountName checks an account name.
func ValidateAccountName(name string) error {
	if len(name) < 2 || len(name) > 255 || !accountName.MatchString(name) {
		return fmt.Errorf("%w account name %q: use 2-255 lowercase letters and digits, separated by single '.', '_', '__' or '-'", ErrInvalid, name)
	}
	return nil
}

// ValidateTeamName checks a team name.
func ValidateTeamName(name string) error {
	if !teamName.MatchString(name) {
		return fmt.Errorf("%w team name %q: use up to 100 letters, digits, '_', '.' or '-'", ErrInvalid, name)
	}
	return nil
}

// HashPassword returns a bcrypt hash of a password that meets the rules.
func HashPassword(pw string) (string, error) {
	if len(pw) < MinPasswordLength {
		return "", fmt.Errorf("%w password: it needs at least %d characters", ErrInvalid, MinPasswordLength)
	}
	if len(pw) > 72 {
		return "", fmt.Errorf("%w password: bcrypt uses at most 72 bytes", ErrInvalid)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	return string(h), err
}

// CheckPassword reports whether pw matches the account's password.
func (a *Account) CheckPassword(pw string) bool {
	if a.IsOrg || a.PasswordHash == "" || !a.IsActive {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(a.PasswordHash), []byte(pw)) == nil
}

// CreateAccount adds a user or organization. password is ignored for orgs.
func (s *Store) CreateAccount(ctx context.Context, a Account, password string) (Account, error) {
	if err := ValidateAccountName(a.Name); err != nil {
		return Account{}, err
	}
	a.IsActive = true
	a.CreatedAt = time.Now().UTC()
	a.Epoch = NewEpoch()
	if a.IsOrg {
		a.IsAdmin, a.PasswordHash = false, ""
	} else {
		h, err := HashPassword(password)
		if err != nil {
			return Account{}, err
		}
		a.PasswordHash = h
	}
	if err := s.dropStaleReferences(ctx, a.Name); err != nil {
		return Account{}, err
	}
	if err := s.create(ctx, key("accounts", a.Name), a); err != nil {
		return Account{}, fmt.Errorf("account %s: %w", a.Name, err)
	}
	return a, nil
}

// Account returns one account.
func (s *Store) Account(ctx context.Context, name string) (Account, error) {
	var a Account
	_, err := s.get(ctx, key("accounts", name), &a)
	if err != nil {
		return a, fmt.Errorf("account %s: %w", name, err)
	}
	return a, nil
}

// Accounts lists every account.
func (s *Store) Accounts(ctx context.Context) ([]Account, error) {
	return list[Account](ctx, s, dir("accounts"))
}

// UpdateAccount changes an account with fn (retried on concurrent change). A
// change of password, active or admin flag starts a new token epoch.
func (s *Store) UpdateAccount(ctx context.Context, name string, fn func(*Account) error) (Account, error) {
	a, err := mutate(ctx, s, key("accounts", name), func(a *Account) error {
		before := *a
		if err := fn(a); err != nil {
			return err
		}
		if a.PasswordHash != before.PasswordHash || a.IsActive != before.IsActive || a.IsAdmin != before.IsAdmin {
			a.Epoch = NewEpoch()
		}
		return nil
	})
	if err != nil {
		return a, fmt.Errorf("account %s: %w", name, err)
	}
	return a, nil
}

// SetPassword changes a user's password and revokes the user's refresh tokens.
func (s *Store) SetPassword(ctx context.Context, name, password string) error {
	h, err := HashPassword(password)
	if err != nil {
		return err
	}
	if _, err := s.UpdateAccount(ctx, name, func(a *Account) error {
		if a.IsOrg {
			return fmt.Errorf("%w: %s is an organization, which has no password", ErrInvalid, name)
		}
		if a.Source != "" {
			return fmt.Errorf("%w: %s signs in through the %s identity source: change the password there", ErrInvalid, name, a.Source)
		}
		a.PasswordHash = h
		return nil
	}); err != nil {
		return err
	}
	return s.RevokeRefreshTokens(ctx, name)
}

// ErrHasRepositories refuses to delete an account whose namespace still
// holds repositories.
var ErrHasRepositories = errors.New("the account's namespace still holds repositories")

// maxDeleteOps keeps a deletion within etcd's default limit of 128
// operations per transaction.
const maxDeleteOps = 100

// DeleteAccount removes an account together with everything that names it:
// its memberships of every organization, its entries in every team, its user
// grants on every repository, and its own namespace's records (an
// organization's members, teams and namespace grants). The account record
// goes in the same transaction as the last of them, guarded so that a
// membership or grant added meanwhile makes it start over: a new account
// with the same name starts with nothing. (Only an account with more than
// about a hundred memberships and grants needs more than one transaction;
// the earlier ones remove only memberships and grants while the account
// still exists, so the name can never be taken over half-cleaned.)
//
// An account whose namespace holds repositories is refused with
// ErrHasRepositories naming them: deleting a repository removes its images
// from storage, which cannot be undone and may break everyone who pulls
// them, so it must be asked for repository by repository, and the
// repositories' content is never left behind for a new owner of the name.
// The account's refresh tokens are revoked.
func (s *Store) DeleteAccount(ctx context.Context, name string) error {
	for {
		done, err := s.deleteAccountOnce(ctx, name)
		if err != nil || done {
			if err == nil {
				err = s.RevokeRefreshTokens(ctx, name)
			}
			if err == nil {
				// Its service accounts went with it (serviceaccounts.go).
				err = s.DeleteOrgServiceAccountTokens(ctx, name)
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// deleteAccountOnce reads everything that names the account at one revision
// and deletes it; false means something changed meanwhile (or only a first
// batch was deleted) and the caller goes again.
func (s *Store) deleteAccountOnce(ctx context.Context, name string) (bool, error) {
	acc, err := s.KV.Get(ctx, key("accounts", name))
	if err != nil {
		return false, fmt.Errorf("deleting account %s: %w", name, err)
	}
	if len(acc.Kvs) == 0 {
		return false, fmt.Errorf("account %s: %w", name, ErrNotFound)
	}
	rev := acc.Header.Revision
	refs, err := s.accountReferences(ctx, name, rev)
	if err != nil {
		return false, err
	}
	if len(refs) > maxDeleteOps {
		ops := make([]clientv3.Op, 0, maxDeleteOps)
		for _, k := range refs[:maxDeleteOps] {
			ops = append(ops, clientv3.OpDelete(k))
		}
		if _, err := s.KV.Txn(ctx).Then(ops...).Commit(); err != nil {
			return false, fmt.Errorf("deleting account %s's memberships and grants: %w", name, err)
		}
		return false, nil
	}
	ops := []clientv3.Op{
		clientv3.OpDelete(key("accounts", name)),
		clientv3.OpDelete(dir("orgs", name), clientv3.WithPrefix()),
		clientv3.OpDelete(dir("access", name), clientv3.WithPrefix()),
		clientv3.OpDelete(dir("nsaccess", name), clientv3.WithPrefix()),
		teamSyncDeletes(name, ""),
	}
	for _, k := range refs {
		ops = append(ops, clientv3.OpDelete(k))
	}
	resp, err := s.KV.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(key("accounts", name)), "=", acc.Kvs[0].CreateRevision),
		clientv3.Compare(clientv3.CreateRevision(dir("repos", name)), "=", 0).WithPrefix(),
		clientv3.Compare(clientv3.ModRevision(dir("orgs")), "<", rev+1).WithPrefix(),
		clientv3.Compare(clientv3.ModRevision(dir("access")), "<", rev+1).WithPrefix(),
	).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("deleting account %s: %w", name, err)
	}
	if resp.Succeeded {
		return true, nil
	}
	repos, err := s.Repositories(ctx, name)
	if err != nil {
		return false, err
	}
	if len(repos) > 0 {
		names := make([]string, len(repos))
		for i, r := range repos {
			names[i] = r.FullName()
		}
		return false, fmt.Errorf("%w: %s owns %s; delete each repository first (DELETE /api/v0/repositories/<namespace>/<name>), which also removes its images", ErrHasRepositories, name, strings.Join(names, ", "))
	}
	return false, nil // the account or a membership changed meanwhile
}

// accountReferences lists, at revision rev, the keys in other namespaces
// that name user: orgs/<org>/members/<user>,
// orgs/<org>/teams/<team>/members/<user> and
// access/<namespace>/<repo>/users/<user>. Keys are compared component by
// component, escaped as key() escapes them, so "al" never matches "alice".
func (s *Store) accountReferences(ctx context.Context, user string, rev int64) ([]string, error) {
	esc := url.PathEscape(user)
	var out []string
	for _, p := range []string{dir("orgs"), dir("access")} {
		resp, err := s.KV.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithRev(rev))
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", p, err)
		}
		for _, kv := range resp.Kvs {
			parts := strings.Split(strings.TrimPrefix(string(kv.Key), p), "/")
			switch {
			case p == dir("orgs") && len(parts) == 3 && parts[1] == "members" && parts[2] == esc,
				p == dir("orgs") && len(parts) == 5 && parts[1] == "teams" && parts[3] == "members" && parts[4] == esc,
				p == dir("access") && len(parts) == 4 && parts[2] == "users" && parts[3] == esc:
				out = append(out, string(kv.Key))
			}
		}
	}
	return out, nil
}

// dropStaleReferences removes memberships and grants that name an account
// that does not exist: versions before account deletion cleaned up left
// them, and a new account of that name must not inherit them.
func (s *Store) dropStaleReferences(ctx context.Context, name string) error {
	resp, err := s.KV.Get(ctx, key("accounts", name), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("account %s: %w", name, err)
	}
	if resp.Count > 0 {
		return nil // exists: create will say so
	}
	refs, err := s.accountReferences(ctx, name, resp.Header.Revision)
	if err != nil {
		return err
	}
	for len(refs) > 0 {
		n := min(len(refs), 100)
		ops := make([]clientv3.Op, 0, n)
		for _, k := range refs[:n] {
			ops = append(ops, clientv3.OpDelete(k))
		}
		t, err := s.KV.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key("accounts", name)), "=", 0)).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("removing stale grants of %s: %w", name, err)
		}
		if !t.Succeeded {
			return nil // created meanwhile: create will say so
		}
		refs = refs[n:]
	}
	return nil
}

func (s *Store) org(ctx context.Context, name string) (Account, error) {
	a, err := s.Account(ctx, name)
	if err != nil {
		return a, err
	}
	if !a.IsOrg {
		return a, fmt.Errorf("%w: %s is a user, not an organization", ErrInvalid, name)
	}
	return a, nil
}

func (s *Store) user(ctx context.Context, name string) (Account, error) {
	a, err := s.Account(ctx, name)
	if err != nil {
		return a, err
	}
	if a.IsOrg {
		return a, fmt.Errorf("%w: %s is an organization, not a user", ErrInvalid, name)
	}
	return a, nil
}

// SetOrgMember adds or updates a user's membership of an organization.
func (s *Store) SetOrgMember(ctx context.Context, org, user string, isAdmin bool) error {
	if _, err := s.org(ctx, org); err != nil {
		return err
	}
	if _, err := s.user(ctx, user); err != nil {
		return err
	}
	return s.putWhileExists(ctx, key("orgs", org, "members", user), Membership{User: user, IsAdmin: isAdmin}, key("accounts", org), key("accounts", user))
}

// OrgMember returns a user's membership of an organization.
func (s *Store) OrgMember(ctx context.Context, org, user string) (Membership, error) {
	var m Membership
	_, err := s.get(ctx, key("orgs", org, "members", user), &m)
	return m, err
}

// OrgMembers lists an organization's members.
func (s *Store) OrgMembers(ctx context.Context, org string) ([]Membership, error) {
	return list[Membership](ctx, s, dir("orgs", org, "members"))
}

// RemoveOrgMember removes a user from an organization and all its teams.
func (s *Store) RemoveOrgMember(ctx context.Context, org, user string) error {
	teams, err := s.Teams(ctx, org)
	if err != nil {
		return err
	}
	ops := []clientv3.Op{clientv3.OpDelete(key("orgs", org, "members", user))}
	for _, t := range teams {
		ops = append(ops, clientv3.OpDelete(key("orgs", org, "teams", t.Name, "members", user)))
	}
	resp, err := s.KV.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return err
	}
	if resp.Responses[0].GetResponseDeleteRange().Deleted == 0 {
		return fmt.Errorf("member %s of %s: %w", user, org, ErrNotFound)
	}
	return nil
}

// CreateTeam adds a team to an organization.
func (s *Store) CreateTeam(ctx context.Context, t Team) (Team, error) {
	if err := ValidateTeamName(t.Name); err != nil {
		return t, err
	}
	if _, err := s.org(ctx, t.Org); err != nil {
		return t, err
	}
	if err := s.create(ctx, key("orgs", t.Org, "teams", t.Name), t); err != nil {
		return t, fmt.Errorf("team %s/%s: %w", t.Org, t.Name, err)
	}
	return t, nil
}

// Team returns one team.
func (s *Store) Team(ctx context.Context, org, name string) (Team, error) {
	var t Team
	_, err := s.get(ctx, key("orgs", org, "teams", name), &t)
	if err != nil {
		return t, fmt.Errorf("team %s/%s: %w", org, name, err)
	}
	return t, nil
}

// Teams lists an organization's teams.
func (s *Store) Teams(ctx context.Context, org string) ([]Team, error) {
	return list[Team](ctx, s, dir("orgs", org, "teams"))
}

// DeleteTeam removes a team, its members and its grants.
func (s *Store) DeleteTeam(ctx context.Context, org, name string) error {
	repos, err := s.Repositories(ctx, org)
	if err != nil {
		return err
	}
	ops := []clientv3.Op{
		clientv3.OpDelete(key("orgs", org, "teams", name)),
		clientv3.OpDelete(dir("orgs", org, "teams", name), clientv3.WithPrefix()),
		clientv3.OpDelete(key("nsaccess", org, name)),
		teamSyncDeletes(org, name),
	}
	for _, r := range repos {
		ops = append(ops, clientv3.OpDelete(key("access", org, r.Name, "teams", name)))
	}
	resp, err := s.KV.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return err
	}
	if resp.Responses[0].GetResponseDeleteRange().Deleted == 0 {
		return fmt.Errorf("team %s/%s: %w", org, name, ErrNotFound)
	}
	return nil
}

// AddTeamMember adds an organization member to a team.
func (s *Store) AddTeamMember(ctx context.Context, org, team, user string) error {
	if _, err := s.Team(ctx, org, team); err != nil {
		return err
	}
	if _, err := s.OrgMember(ctx, org, user); err != nil {
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		// Adding to a team makes the user an organization member, as in DTR.
		if err := s.SetOrgMember(ctx, org, user, false); err != nil {
			return err
		}
	}
	return s.putWhileExists(ctx, key("orgs", org, "teams", team, "members", user), TeamMember{User: user}, key("orgs", org, "teams", team), key("accounts", user))
}

// TeamMembers lists a team's members.
func (s *Store) TeamMembers(ctx context.Context, org, team string) ([]TeamMember, error) {
	return list[TeamMember](ctx, s, dir("orgs", org, "teams", team, "members"))
}

// RemoveTeamMember removes a user from a team.
func (s *Store) RemoveTeamMember(ctx context.Context, org, team, user string) error {
	found, err := s.del(ctx, key("orgs", org, "teams", team, "members", user), false)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("member %s of team %s/%s: %w", user, org, team, ErrNotFound)
	}
	return nil
}

// InTeam reports whether user is a member of org's team.
func (s *Store) InTeam(ctx context.Context, org, team, user string) (bool, error) {
	var m TeamMember
	_, err := s.get(ctx, key("orgs", org, "teams", team, "members", user), &m)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
