package meta

import (
	"context"
	"errors"
	"fmt"
)

// Level is an access level to a repository.
type Level int

// Access levels, each including the ones before it.
const (
	NoAccess  Level = iota
	Read            // pull
	ReadWrite       // pull, push
	Admin           // pull, push, delete, manage the repository
)

var levelNames = map[Level]string{NoAccess: "none", Read: "read-only", ReadWrite: "read-write", Admin: "admin"}

func (l Level) String() string { return levelNames[l] }

// ParseLevel reads "read-only" (or "read"), "read-write" or "admin".
func ParseLevel(s string) (Level, error) {
	switch s {
	case "read-only", "read":
		return Read, nil
	case "read-write":
		return ReadWrite, nil
	case "admin":
		return Admin, nil
	}
	return NoAccess, fmt.Errorf("%w access level %q: use read-only, read-write or admin", ErrInvalid, s)
}

// MarshalText writes the level's name.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads a level's name.
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// Grant is an access level given to a team or user.
type Grant struct {
	Team  string `json:"team,omitempty"`
	User  string `json:"user,omitempty"`
	Level Level  `json:"accessLevel"`
}

// SetTeamAccess grants an organization's team a level on one of its repositories.
func (s *Store) SetTeamAccess(ctx context.Context, org, repo, team string, l Level) error {
	if _, err := s.Repository(ctx, org, repo); err != nil {
		return err
	}
	if _, err := s.Team(ctx, org, team); err != nil {
		return err
	}
	return s.putWhileExists(ctx, key("access", org, repo, "teams", team), Grant{Team: team, Level: l}, key("repos", org, repo), key("orgs", org, "teams", team))
}

// SetUserAccess grants a user a level on a repository.
func (s *Store) SetUserAccess(ctx context.Context, namespace, repo, user string, l Level) error {
	if _, err := s.Repository(ctx, namespace, repo); err != nil {
		return err
	}
	if _, err := s.user(ctx, user); err != nil {
		return err
	}
	return s.putWhileExists(ctx, key("access", namespace, repo, "users", user), Grant{User: user, Level: l}, key("repos", namespace, repo), key("accounts", user))
}

// SetNamespaceTeamAccess grants a team a level on every repository of its
// organization, including ones created later (and so create-on-push for
// read-write and admin).
func (s *Store) SetNamespaceTeamAccess(ctx context.Context, org, team string, l Level) error {
	if _, err := s.Team(ctx, org, team); err != nil {
		return err
	}
	return s.putWhileExists(ctx, key("nsaccess", org, team), Grant{Team: team, Level: l}, key("orgs", org, "teams", team))
}

// RevokeTeamAccess, RevokeUserAccess and RevokeNamespaceTeamAccess remove grants.
func (s *Store) RevokeTeamAccess(ctx context.Context, org, repo, team string) error {
	return s.revoke(ctx, key("access", org, repo, "teams", team))
}

// RevokeUserAccess removes a user's grant on a repository.
func (s *Store) RevokeUserAccess(ctx context.Context, namespace, repo, user string) error {
	return s.revoke(ctx, key("access", namespace, repo, "users", user))
}

// RevokeNamespaceTeamAccess removes a team's grant on its organization's repositories.
func (s *Store) RevokeNamespaceTeamAccess(ctx context.Context, org, team string) error {
	return s.revoke(ctx, key("nsaccess", org, team))
}

func (s *Store) revoke(ctx context.Context, k string) error {
	found, err := s.del(ctx, k, false)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("grant: %w", ErrNotFound)
	}
	return nil
}

// TeamGrants lists the team grants on a repository.
func (s *Store) TeamGrants(ctx context.Context, namespace, repo string) ([]Grant, error) {
	return list[Grant](ctx, s, dir("access", namespace, repo, "teams"))
}

// UserGrants lists the user grants on a repository.
func (s *Store) UserGrants(ctx context.Context, namespace, repo string) ([]Grant, error) {
	return list[Grant](ctx, s, dir("access", namespace, repo, "users"))
}

// NamespaceTeamGrants lists the team grants on an organization's repositories.
func (s *Store) NamespaceTeamGrants(ctx context.Context, org string) ([]Grant, error) {
	return list[Grant](ctx, s, dir("nsaccess", org))
}

// Access is what a user may do with one repository.
type Access struct {
	Level  Level
	Exists bool // the repository has a record
	// CanCreate: the repository does not exist and the user may create it
	// by pushing to it.
	CanCreate bool
}

// AccessFor computes user's access to namespace/repo. user is nil for an
// anonymous client, who may pull public repositories only.
func (s *Store) AccessFor(ctx context.Context, user *Account, namespace, repo string) (Access, error) {
	r, err := s.Repository(ctx, namespace, repo)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Access{}, err
	}
	a := Access{Exists: exists}
	if exists && r.Visibility == Public {
		a.Level = Read
	}
	if user == nil || !user.IsActive {
		return a, nil
	}
	nsLevel, err := s.namespaceLevel(ctx, user, namespace)
	if err != nil {
		return Access{}, err
	}
	if !exists {
		if nsLevel >= ReadWrite {
			// Only an existing account's namespace can hold repositories.
			_, err := s.Account(ctx, namespace)
			a.CanCreate = err == nil
			if a.CanCreate {
				a.Level = nsLevel // what the creator will have once it exists
			}
		}
		return a, nil
	}
	// Namespace-wide access covers existing repositories too: whoever may
	// create in a namespace sees all of it, so a repository hidden from a
	// caller is always in a namespace where the caller may not create.
	a.Level = max(a.Level, nsLevel)
	if a.Level == Admin {
		return a, nil
	}
	var g Grant
	if _, err := s.get(ctx, key("access", namespace, repo, "users", user.Name), &g); err == nil {
		a.Level = max(a.Level, g.Level)
	} else if !errors.Is(err, ErrNotFound) {
		return Access{}, err
	}
	grants, err := s.TeamGrants(ctx, namespace, repo)
	if err != nil {
		return Access{}, err
	}
	for _, g := range grants {
		if g.Level <= a.Level {
			continue
		}
		in, err := s.InTeam(ctx, namespace, g.Team, user.Name)
		if err != nil {
			return Access{}, err
		}
		if in {
			a.Level = g.Level
		}
	}
	return a, nil
}

// namespaceLevel is the access a user has to every repository of a
// namespace: admin for system admins, the namespace's owner and organization
// admins; otherwise the best namespace-wide team grant.
func (s *Store) namespaceLevel(ctx context.Context, user *Account, namespace string) (Level, error) {
	if user.IsAdmin || user.Name == namespace {
		return Admin, nil
	}
	m, err := s.OrgMember(ctx, namespace, user.Name)
	if errors.Is(err, ErrNotFound) {
		return NoAccess, nil
	}
	if err != nil {
		return NoAccess, err
	}
	if m.IsAdmin {
		return Admin, nil
	}
	grants, err := s.NamespaceTeamGrants(ctx, namespace)
	if err != nil {
		return NoAccess, err
	}
	best := NoAccess
	for _, g := range grants {
		if g.Level <= best {
			continue
		}
		in, err := s.InTeam(ctx, namespace, g.Team, user.Name)
		if err != nil {
			return NoAccess, err
		}
		if in {
			best = g.Level
		}
	}
	return best, nil
}
