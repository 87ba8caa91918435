package meta

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Identity sources (docs/identity.md): where users, organizations and teams
// come from besides dtr's own accounts. The field names follow UCP/MKE's
// LDAP settings, which DTR's operators know.

// Identity source kinds (the same strings as registry/identity's).
const (
	IdentityLocal = "local"
	IdentityUCP   = "ucp"
	IdentityLDAP  = "ldap"
)

// IdentitySyncAction is the job action that reads the identity source's
// directory into the accounts, as DTR named it.
const IdentitySyncAction = "ldap_sync"

// DefaultIdentitySyncSchedule is the sync's schedule when none is set.
const DefaultIdentitySyncSchedule = "@hourly"

// SecretMask stands for a stored secret in answers; sent back, it keeps it.
const SecretMask = "********"

// IdentitySettings choose the identity source.
type IdentitySettings struct {
	Kind string `json:"kind"` // local, ucp or ldap
	// SyncSchedule is when the directory is read into the accounts, a cron
	// expression ("@hourly", "*/15 * * * *"); empty: hourly.
	SyncSchedule string        `json:"syncSchedule,omitempty"`
	LDAP         *LDAPSettings `json:"ldap,omitempty"`
	UCP          *UCPSettings  `json:"ucp,omitempty"`
}

// LDAPSettings reach an LDAP or Active Directory server.
type LDAPSettings struct {
	// ServerURL is ldap://host[:389] or ldaps://host[:636].
	ServerURL string `json:"serverURL"`
	// StartTLS upgrades an ldap:// connection to TLS before any bind.
	StartTLS bool `json:"startTLS,omitempty"`
	// RootCerts is the PEM of the CA(s) the server's certificate is checked
	// against; empty: the system's.
	RootCerts string `json:"rootCerts,omitempty"`
	// InsecurePlaintext allows ldap:// without StartTLS, which sends every
	// password in clear: for a server on the same host only.
	InsecurePlaintext bool `json:"insecurePlaintext,omitempty"`
	// ReaderDN and ReaderPassword are the service account that searches
	// the directory (the bind DN). The password is write-only.
	ReaderDN       string         `json:"readerDN"`
	ReaderPassword string         `json:"readerPassword,omitempty"`
	UserSearch     LDAPUserSearch `json:"userSearch"`
	// AdminGroupDN, when set, is a group whose members are dtr
	// administrators; AdminGroupMemberAttr names its members (default
	// member).
	AdminGroupDN         string `json:"adminGroupDN,omitempty"`
	AdminGroupMemberAttr string `json:"adminGroupMemberAttr,omitempty"`
}

// LDAPUserSearch finds users: entries under BaseDN that match Filter, named
// by UsernameAttr (uid for OpenLDAP, sAMAccountName for Active Directory).
type LDAPUserSearch struct {
	BaseDN       string `json:"baseDN"`
	Filter       string `json:"filter,omitempty"` // default (objectClass=*)
	UsernameAttr string `json:"usernameAttr"`
	FullNameAttr string `json:"fullNameAttr,omitempty"` // default cn
	// ScopeSubtree searches the whole subtree below BaseDN; false, only
	// its direct children.
	ScopeSubtree bool `json:"scopeSubtree,omitempty"`
}

// UCPSettings reach UCP/MKE, with an administrator who lists its users,
// organizations and teams. The password is write-only.
type UCPSettings struct {
	URL      string `json:"url"`
	CA       string `json:"ca,omitempty"` // PEM; empty: the system's CAs
	Username string `json:"username"`
	Password string `json:"password,omitempty"`
}

// IdentityKind is the configured kind, local when unset.
func (st Settings) IdentityKind() string {
	if st.Identity == nil || st.Identity.Kind == "" {
		return IdentityLocal
	}
	return st.Identity.Kind
}

// Schedule is SyncSchedule with its default.
func (is IdentitySettings) Schedule() string {
	if is.SyncSchedule == "" {
		return DefaultIdentitySyncSchedule
	}
	return is.SyncSchedule
}

// Masked is the settings as an answer shows them: secrets as SecretMask.
func (is IdentitySettings) Masked() IdentitySettings {
	if is.LDAP != nil {
		l := *is.LDAP
		if l.ReaderPassword != "" {
			l.ReaderPassword = SecretMask
		}
		is.LDAP = &l
	}
	if is.UCP != nil {
		u := *is.UCP
		if u.Password != "" {
			u.Password = SecretMask
		}
		is.UCP = &u
	}
	return is
}

// KeepSecrets fills secrets left empty or sent as SecretMask from old, so
// that an operator changes the other settings without typing them again.
func (is *IdentitySettings) KeepSecrets(old *IdentitySettings) {
	if is.LDAP != nil && (is.LDAP.ReaderPassword == "" || is.LDAP.ReaderPassword == SecretMask) {
		is.LDAP.ReaderPassword = ""
		if old != nil && old.LDAP != nil {
			is.LDAP.ReaderPassword = old.LDAP.ReaderPassword
		}
	}
	if is.UCP != nil && (is.UCP.Password == "" || is.UCP.Password == SecretMask) {
		is.UCP.Password = ""
		if old != nil && old.UCP != nil {
			is.UCP.Password = old.UCP.Password
		}
	}
}

// Validate checks what can be checked without the source; the source's own
// constructor checks DNs and filters.
func (is IdentitySettings) Validate() error {
	switch is.Kind {
	case IdentityLocal, "":
		return nil
	case IdentityLDAP:
		if is.LDAP == nil {
			return fmt.Errorf("%w identity: kind ldap needs the ldap settings (serverURL, readerDN, readerPassword, userSearch)", ErrInvalid)
		}
		return is.LDAP.validate()
	case IdentityUCP:
		if is.UCP == nil {
			return fmt.Errorf("%w identity: kind ucp needs the ucp settings (url, username, password)", ErrInvalid)
		}
		return is.UCP.validate()
	}
	return fmt.Errorf("%w identity kind %q: use local, ucp or ldap", ErrInvalid, is.Kind)
}

func checkPEM(field, p string) error {
	if p == "" {
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(p)) {
		return fmt.Errorf("%w %s: no PEM certificate found; give the CA certificate(s) as PEM (-----BEGIN CERTIFICATE-----)", ErrInvalid, field)
	}
	for rest := []byte(p); ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil
		}
		if b.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				return fmt.Errorf("%w %s: %v", ErrInvalid, field, err)
			}
		}
	}
}

func (l LDAPSettings) validate() error {
	u, err := url.Parse(l.ServerURL)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("%w ldap.serverURL %q: give ldaps://host[:636] or ldap://host[:389]", ErrInvalid, l.ServerURL)
	}
	if u.Scheme == "ldaps" && l.StartTLS {
		return fmt.Errorf("%w ldap.startTLS: an ldaps:// server speaks TLS already; use startTLS only with ldap://", ErrInvalid)
	}
	if u.Scheme == "ldap" && !l.StartTLS && !l.InsecurePlaintext {
		return fmt.Errorf("%w ldap.serverURL %q: ldap:// without startTLS sends passwords in clear; set startTLS: true, use ldaps://, or set insecurePlaintext: true for a server on this host", ErrInvalid, l.ServerURL)
	}
	if err := checkPEM("ldap.rootCerts", l.RootCerts); err != nil {
		return err
	}
	if strings.TrimSpace(l.ReaderDN) == "" {
		return fmt.Errorf("%w ldap.readerDN: give the DN of the service account that searches the directory", ErrInvalid)
	}
	if l.ReaderPassword == "" {
		return fmt.Errorf("%w ldap.readerPassword: give the service account's password (an anonymous bind is refused)", ErrInvalid)
	}
	if strings.TrimSpace(l.UserSearch.BaseDN) == "" {
		return fmt.Errorf("%w ldap.userSearch.baseDN: give the DN under which users are found, such as ou=people,dc=example,dc=org", ErrInvalid)
	}
	if !attrName(l.UserSearch.UsernameAttr) {
		return fmt.Errorf("%w ldap.userSearch.usernameAttr %q: give the attribute users sign in with, uid (OpenLDAP) or sAMAccountName (Active Directory)", ErrInvalid, l.UserSearch.UsernameAttr)
	}
	for field, v := range map[string]string{"ldap.userSearch.fullNameAttr": l.UserSearch.FullNameAttr, "ldap.adminGroupMemberAttr": l.AdminGroupMemberAttr} {
		if v != "" && !attrName(v) {
			return fmt.Errorf("%w %s %q: give an attribute name such as cn or member", ErrInvalid, field, v)
		}
	}
	if f := l.UserSearch.Filter; f != "" && (!strings.HasPrefix(f, "(") || !strings.HasSuffix(f, ")")) {
		return fmt.Errorf("%w ldap.userSearch.filter %q: give an LDAP filter in parentheses, such as (objectClass=inetOrgPerson)", ErrInvalid, f)
	}
	return nil
}

// attrName: an LDAP attribute description (RFC 4512 descr or numeric OID).
func attrName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.'))
		if !ok {
			return false
		}
	}
	return true
}

func (u UCPSettings) validate() error {
	p, err := url.Parse(u.URL)
	if err != nil || p.Scheme != "https" || p.Host == "" {
		return fmt.Errorf("%w ucp.url %q: give UCP/MKE's address, https://ucp.example.org", ErrInvalid, u.URL)
	}
	if err := checkPEM("ucp.ca", u.CA); err != nil {
		return err
	}
	if u.Username == "" || u.Password == "" {
		return fmt.Errorf("%w ucp.username and ucp.password: give a UCP administrator, who lists UCP's users, organizations and teams", ErrInvalid)
	}
	return nil
}

// TeamSync links a team to a directory group, as UCP's team
// "memberSyncConfig": each sync sets the team's source-backed members to
// the group's.
type TeamSync struct {
	Org        string `json:"org"`
	Team       string `json:"team"`
	EnableSync bool   `json:"enableSync"`
	GroupDN    string `json:"groupDN"`
	// GroupMemberAttr names the group's members: member or uniqueMember
	// (DNs), memberUid (usernames). Default member.
	GroupMemberAttr string    `json:"groupMemberAttr,omitempty"`
	UpdatedAt       time.Time `json:"updatedAt,omitzero"`
}

// Validate checks a team's sync settings.
func (ts TeamSync) Validate() error {
	if !ts.EnableSync {
		return nil
	}
	if strings.TrimSpace(ts.GroupDN) == "" || !strings.Contains(ts.GroupDN, "=") {
		return fmt.Errorf("%w groupDN %q: give the DN of the LDAP group, such as cn=devs,ou=groups,dc=example,dc=org", ErrInvalid, ts.GroupDN)
	}
	if ts.GroupMemberAttr != "" && !attrName(ts.GroupMemberAttr) {
		return fmt.Errorf("%w groupMemberAttr %q: use member, uniqueMember or memberUid", ErrInvalid, ts.GroupMemberAttr)
	}
	return nil
}

// PutTeamSync stores a team's sync settings, while the team exists.
func (s *Store) PutTeamSync(ctx context.Context, ts TeamSync) (TeamSync, error) {
	if err := ts.Validate(); err != nil {
		return ts, err
	}
	if _, err := s.Team(ctx, ts.Org, ts.Team); err != nil {
		return ts, err
	}
	ts.UpdatedAt = time.Now().UTC()
	return ts, s.putWhileExists(ctx, key("teamsync", ts.Org, ts.Team), ts, key("orgs", ts.Org, "teams", ts.Team))
}

// TeamSyncOf returns a team's sync settings (disabled when none are stored).
func (s *Store) TeamSyncOf(ctx context.Context, org, team string) (TeamSync, error) {
	ts := TeamSync{Org: org, Team: team}
	if _, err := s.get(ctx, key("teamsync", org, team), &ts); err != nil && !errors.Is(err, ErrNotFound) {
		return ts, err
	}
	return ts, nil
}

// TeamSyncs lists every team's sync settings.
func (s *Store) TeamSyncs(ctx context.Context) ([]TeamSync, error) {
	resp, err := s.KV.Get(ctx, dir("teamsync"), readOpts(ctx, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))...)
	if err != nil {
		return nil, fmt.Errorf("listing the teams' sync settings: %w", err)
	}
	out := make([]TeamSync, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var ts TeamSync
		if err := json.Unmarshal(kv.Value, &ts); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
		}
		out = append(out, ts)
	}
	return out, nil
}

// DeleteTeamSync stops syncing a team (its members stay as they are).
func (s *Store) DeleteTeamSync(ctx context.Context, org, team string) error {
	_, err := s.KV.Delete(ctx, key("teamsync", org, team))
	return err
}

// teamSyncDeletes are the deletes that go with a team's or an
// organization's deletion: a new team of the same name starts unlinked.
func teamSyncDeletes(org, team string) clientv3.Op {
	if team == "" {
		return clientv3.OpDelete(dir("teamsync", org), clientv3.WithPrefix())
	}
	return clientv3.OpDelete(key("teamsync", org, team))
}

// ErrDeactivated refuses a source's sign-in to an account an administrator
// deactivated in dtr.
var ErrDeactivated = errors.New("account deactivated")

// UpsertSourceUser creates or updates the account of a user an identity
// source (kind) vouched for at sign-in: active, administrator as the
// source says, without a local password. A local account of that name is
// never taken over (ErrExists), and one an administrator deactivated
// stays so (ErrDeactivated).
func (s *Store) UpsertSourceUser(ctx context.Context, kind, name, fullName string, isAdmin bool) (Account, error) {
	if err := ValidateAccountName(name); err != nil {
		return Account{}, err
	}
	for {
		a, err := s.Account(ctx, name)
		switch {
		case errors.Is(err, ErrNotFound):
			if err := s.dropStaleReferences(ctx, name); err != nil {
				return Account{}, err
			}
			now := time.Now().UTC()
			a = Account{Name: name, IsAdmin: isAdmin, IsActive: true, FullName: fullName, CreatedAt: now, Epoch: NewEpoch(), Source: kind}
			err := s.create(ctx, key("accounts", name), a)
			if errors.Is(err, ErrExists) {
				continue
			}
			return a, err
		case err != nil:
			return a, err
		case a.IsOrg || a.Source == "":
			return a, fmt.Errorf("%w: %s is a local account of dtr, not one of the identity source", ErrExists, name)
		case !a.IsActive && !a.DeactivatedBySync:
			return a, fmt.Errorf("%w: an administrator deactivated %s", ErrDeactivated, name)
		}
		if a.IsActive && a.IsAdmin == isAdmin && a.Source == kind && (fullName == "" || a.FullName == fullName) {
			return a, nil
		}
		return s.UpdateAccount(ctx, name, func(a *Account) error {
			if a.IsOrg || a.Source == "" {
				return fmt.Errorf("%w: %s is a local account of dtr, not one of the identity source", ErrExists, name)
			}
			if !a.IsActive && !a.DeactivatedBySync {
				return fmt.Errorf("%w: an administrator deactivated %s", ErrDeactivated, name)
			}
			a.IsActive, a.IsAdmin, a.Source, a.DeactivatedBySync = true, isAdmin, kind, false
			if fullName != "" {
				a.FullName = fullName
			}
			return nil
		})
	}
}
