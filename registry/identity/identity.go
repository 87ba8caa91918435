// Package identity is where dtr's users, organizations and teams come from
// when they are not dtr's own: UCP/MKE or an LDAP/AD directory. A Source
// checks a password and lists the directory; the registry keeps what a sync
// found in its metadata store, so every replica authorizes from the same
// accounts whatever the source (docs/architecture.md, "Identity").
package identity

import (
	"context"
	"errors"
)

// Kinds of identity source, as stored in the settings and given at install.
const (
	KindLocal = "local" // dtr's own accounts only (the default)
	KindUCP   = "ucp"   // UCP/MKE: users, organizations and teams
	KindLDAP  = "ldap"  // an LDAP/AD directory: users, and groups synced into teams
)

// ErrBadCredentials is a wrong name or password, or a user the source does
// not know or has disabled: the login is refused like a local one.
var ErrBadCredentials = errors.New("identity: wrong name or password")

// ErrUnavailable wraps a source that cannot be reached or answers in a way
// dtr does not understand; a login is then refused as a server-side fault
// (not counted as the user's failure) and the message names the source.
var ErrUnavailable = errors.New("identity source unavailable")

// User is a person as a source knows them. Name is already the dtr account
// name (lowercased, checked against meta.ValidateAccountName).
type User struct {
	Name     string `json:"name"`
	FullName string `json:"fullName,omitempty"`
	Email    string `json:"email,omitempty"`
	IsAdmin  bool   `json:"isAdmin,omitempty"` // a system administrator in the source
	IsActive bool   `json:"isActive"`
}

// Team is a group of users inside an organization.
type Team struct {
	Name    string   `json:"name"`
	Members []string `json:"members"` // user names
}

// Org is an organization, its members (admins marked) and its teams.
type Org struct {
	Name    string          `json:"name"`
	Members map[string]bool `json:"members"` // user name → organization admin
	Teams   []Team          `json:"teams"`
}

// Directory is everything a sync found.
type Directory struct {
	Users []User `json:"users"`
	Orgs  []Org  `json:"orgs"`
}

// Source is one identity source.
type Source interface {
	// Kind is KindUCP or KindLDAP.
	Kind() string
	// Authenticate checks a password and returns who it belongs to:
	// ErrBadCredentials for a wrong one, an error wrapping ErrUnavailable
	// when the source cannot answer.
	Authenticate(ctx context.Context, name, password string) (User, error)
	// Directory lists the users, organizations and teams to keep in dtr.
	Directory(ctx context.Context) (Directory, error)
}
