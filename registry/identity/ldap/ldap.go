// Package ldap is the LDAP/Active Directory identity source: a service
// account searches the directory, a user's password is checked by binding
// as the user's entry, and groups linked to teams give the teams' members
// (docs/identity.md).
package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	ldapv3 "github.com/go-ldap/ldap/v3"

	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/meta"
)

// DefaultTimeout bounds a connection, and each request on it.
const DefaultTimeout = 10 * time.Second

// pageSize is the size of a paged user search: Active Directory returns at
// most 1000 entries to a search without paging.
const pageSize = 500

// TeamLink is a team whose members are a group's (meta.TeamSync).
type TeamLink struct {
	Org, Team  string
	GroupDN    string
	MemberAttr string // member, uniqueMember (DNs) or memberUid (usernames); default member
}

// Config is what the source needs: the settings and the linked teams.
type Config struct {
	Settings meta.LDAPSettings
	Teams    []TeamLink
	Timeout  time.Duration // default DefaultTimeout
}

// Source is an LDAP directory as an identity source.
type Source struct {
	cfg    Config
	url    *url.URL
	tls    *tls.Config
	filter string // the user filter, in parentheses
}

var _ identity.Source = (*Source)(nil)

// New checks the settings and returns the source. It does not connect.
func New(cfg Config) (*Source, error) {
	st := cfg.Settings
	if err := (meta.IdentitySettings{Kind: meta.IdentityLDAP, LDAP: &st}).Validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(st.ServerURL)
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	s := &Source{cfg: cfg, url: u, filter: st.UserSearch.Filter}
	if s.filter == "" {
		s.filter = "(objectClass=*)"
	}
	if _, err := ldapv3.CompileFilter(s.filter); err != nil {
		return nil, fmt.Errorf("%w ldap.userSearch.filter %q: %v", meta.ErrInvalid, s.filter, err)
	}
	for field, dn := range map[string]string{"ldap.readerDN": st.ReaderDN, "ldap.userSearch.baseDN": st.UserSearch.BaseDN, "ldap.adminGroupDN": st.AdminGroupDN} {
		if dn == "" {
			continue
		}
		if _, err := ldapv3.ParseDN(dn); err != nil {
			return nil, fmt.Errorf("%w %s %q: %v", meta.ErrInvalid, field, dn, err)
		}
	}
	for _, t := range cfg.Teams {
		if _, err := ldapv3.ParseDN(t.GroupDN); err != nil {
			return nil, fmt.Errorf("%w groupDN %q of team %s/%s: %v", meta.ErrInvalid, t.GroupDN, t.Org, t.Team, err)
		}
	}
	s.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	if st.RootCerts != "" {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(st.RootCerts))
		s.tls.RootCAs = pool
	}
	return s, nil
}

// Kind is identity.KindLDAP.
func (s *Source) Kind() string { return identity.KindLDAP }

func (s *Source) server() string { return s.url.Scheme + "://" + s.url.Host }

// unavailable wraps a fault of the server or of the settings: never the
// user's, so it is not counted as a failed login.
func (s *Source) unavailable(what string, err error) error {
	return fmt.Errorf("%w: LDAP server %s: %s: %s", identity.ErrUnavailable, s.server(), what, explain(err))
}

// explain names the usual causes in the operator's words.
func explain(err error) string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var le *ldapv3.Error
	msg := err.Error()
	switch {
	case errors.As(err, &ua) || strings.Contains(msg, "certificate signed by unknown authority"):
		return "its TLS certificate is not signed by a CA in ldap.rootCerts (give the CA that signed the server's certificate): " + err.Error()
	case errors.As(err, &hn) || strings.Contains(msg, "certificate is valid for"):
		return "its TLS certificate does not name the host of ldap.serverURL: " + err.Error()
	case errors.As(err, &ci) || strings.Contains(msg, "x509: "):
		return "its TLS certificate is not valid: " + err.Error()
	case errors.As(err, &le) && le.ResultCode == ldapv3.ErrorNetwork:
		if le.Err != nil {
			return "cannot connect: " + explain(le.Err)
		}
		return "cannot connect: " + err.Error()
	}
	return err.Error()
}

// closer is a connection that stops closing with its context once closed.
type closer struct {
	*ldapv3.Conn
	stop func() bool
}

func (c *closer) Close() error {
	c.stop()
	return c.Conn.Close()
}

// dial connects, upgrades to TLS when asked, and binds as the service
// account.
func (s *Source) dial(ctx context.Context) (*closer, error) {
	timeout := s.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout <= 0 {
		return nil, s.unavailable("connecting", context.DeadlineExceeded)
	}
	d := &net.Dialer{Timeout: timeout}
	opts := []ldapv3.DialOpt{ldapv3.DialWithDialer(d)}
	if s.url.Scheme == "ldaps" {
		opts = append(opts, ldapv3.DialWithTLSConfig(s.tls.Clone()))
	}
	conn, err := ldapv3.DialURL(s.server(), opts...)
	if err != nil {
		return nil, s.unavailable("connecting", err)
	}
	conn.SetTimeout(timeout)
	// A cancelled request closes the connection: no call waits for the
	// server past it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c := &closer{Conn: conn, stop: stop}
	if s.cfg.Settings.StartTLS {
		if err := conn.StartTLS(s.tls.Clone()); err != nil {
			c.Close()
			return nil, s.unavailable("StartTLS", err)
		}
	}
	if err := conn.Bind(s.cfg.Settings.ReaderDN, s.cfg.Settings.ReaderPassword); err != nil {
		c.Close()
		if ldapv3.IsErrorWithCode(err, ldapv3.LDAPResultInvalidCredentials) {
			return nil, fmt.Errorf("%w: LDAP server %s refused the service account's bind: wrong ldap.readerDN or ldap.readerPassword (LDAP result 49, invalid credentials)", identity.ErrUnavailable, s.server())
		}
		return nil, s.unavailable("binding as the service account "+s.cfg.Settings.ReaderDN, err)
	}
	return c, nil
}

func (s *Source) attrs() (login, fullName string) {
	us := s.cfg.Settings.UserSearch
	fullName = us.FullNameAttr
	if fullName == "" {
		fullName = "cn"
	}
	return us.UsernameAttr, fullName
}

func (s *Source) scope() int {
	if s.cfg.Settings.UserSearch.ScopeSubtree {
		return ldapv3.ScopeWholeSubtree
	}
	return ldapv3.ScopeSingleLevel
}

// entryUser turns a user entry into a User; ok false for an entry whose
// name cannot be a dtr account name.
func (s *Source) entryUser(e *ldapv3.Entry) (identity.User, bool) {
	login, full := s.attrs()
	// Attribute names are case-insensitive (sAMAccountName, samaccountname).
	name := strings.ToLower(e.GetEqualFoldAttributeValue(login))
	if meta.ValidateAccountName(name) != nil {
		return identity.User{}, false
	}
	u := identity.User{Name: name, FullName: e.GetEqualFoldAttributeValue(full), Email: e.GetEqualFoldAttributeValue("mail"), IsActive: true}
	// Active Directory: bit 2 of userAccountControl is "account disabled".
	if v := e.GetEqualFoldAttributeValue("userAccountControl"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n&2 != 0 {
			u.IsActive = false
		}
	}
	return u, true
}

func (s *Source) userAttributes() []string {
	login, full := s.attrs()
	return []string{login, full, "mail", "userAccountControl"}
}

// Authenticate finds the user's entry with the service account and binds
// as it with the password. The name must be a valid dtr account name, so a
// filter's special characters never reach the directory (and are escaped
// all the same); an empty password is refused, since the server would take
// it as an unauthenticated bind that always succeeds.
func (s *Source) Authenticate(ctx context.Context, name, password string) (identity.User, error) {
	name = strings.ToLower(name)
	if password == "" || meta.ValidateAccountName(name) != nil {
		return identity.User{}, identity.ErrBadCredentials
	}
	conn, err := s.dial(ctx)
	if err != nil {
		return identity.User{}, err
	}
	defer conn.Close()
	login, _ := s.attrs()
	filter := "(&" + s.filter + "(" + login + "=" + ldapv3.EscapeFilter(name) + "))"
	res, err := conn.Search(ldapv3.NewSearchRequest(s.cfg.Settings.UserSearch.BaseDN, s.scope(), ldapv3.NeverDerefAliases,
		2, int(s.cfg.Timeout/time.Second), false, filter, s.userAttributes(), nil))
	if err != nil && !ldapv3.IsErrorWithCode(err, ldapv3.LDAPResultSizeLimitExceeded) {
		return identity.User{}, s.unavailable("searching for the user under "+s.cfg.Settings.UserSearch.BaseDN, err)
	}
	if res == nil || len(res.Entries) == 0 {
		return identity.User{}, identity.ErrBadCredentials
	}
	if len(res.Entries) > 1 {
		return identity.User{}, fmt.Errorf("%w: %d entries under %s have %s=%s; make ldap.userSearch find one entry per user", identity.ErrBadCredentials, len(res.Entries), s.cfg.Settings.UserSearch.BaseDN, login, name)
	}
	e := res.Entries[0]
	u, ok := s.entryUser(e)
	if !ok || u.Name != name || !u.IsActive {
		return identity.User{}, identity.ErrBadCredentials
	}
	if err := conn.Bind(e.DN, password); err != nil {
		if ldapv3.IsErrorWithCode(err, ldapv3.LDAPResultInvalidCredentials) {
			return identity.User{}, identity.ErrBadCredentials
		}
		return identity.User{}, s.unavailable("binding as "+e.DN, err)
	}
	// Back to the service account to read the admin group.
	if s.cfg.Settings.AdminGroupDN != "" {
		if err := conn.Bind(s.cfg.Settings.ReaderDN, s.cfg.Settings.ReaderPassword); err != nil {
			return identity.User{}, s.unavailable("binding as the service account again", err)
		}
		members, err := s.groupMembers(conn, s.cfg.Settings.AdminGroupDN, s.cfg.Settings.AdminGroupMemberAttr)
		if err != nil {
			return identity.User{}, err
		}
		u.IsAdmin = members.has(e.DN, name)
	}
	return u, nil
}

// groupMembers are a group's members: DNs (member, uniqueMember) and
// usernames (memberUid).
type groupMembers struct {
	dns   []*ldapv3.DN
	names map[string]bool
}

func (g groupMembers) has(dn, name string) bool {
	if g.names[name] {
		return true
	}
	d, err := ldapv3.ParseDN(dn)
	if err != nil {
		return false
	}
	for _, m := range g.dns {
		if m.EqualFold(d) {
			return true
		}
	}
	return false
}

// groupMembers reads a group entry's member attribute. A group that does
// not exist has no members: a link to a deleted group empties its team
// rather than keep who was in it.
func (s *Source) groupMembers(conn *closer, groupDN, attr string) (groupMembers, error) {
	if attr == "" {
		attr = "member"
	}
	g := groupMembers{names: map[string]bool{}}
	res, err := conn.Search(ldapv3.NewSearchRequest(groupDN, ldapv3.ScopeBaseObject, ldapv3.NeverDerefAliases,
		1, int(s.cfg.Timeout/time.Second), false, "(objectClass=*)", []string{attr}, nil))
	if ldapv3.IsErrorWithCode(err, ldapv3.LDAPResultNoSuchObject) {
		return g, nil
	}
	if err != nil {
		return g, s.unavailable("reading group "+groupDN, err)
	}
	for _, e := range res.Entries {
		for _, v := range e.GetEqualFoldAttributeValues(attr) {
			if d, err := ldapv3.ParseDN(v); err == nil && strings.Contains(v, "=") {
				g.dns = append(g.dns, d)
			} else {
				g.names[strings.ToLower(v)] = true
			}
		}
	}
	return g, nil
}

// Directory lists the users the search finds, the administrators, and the
// members of every linked team's group. Linked teams appear as their
// organizations' teams; organization membership itself is not listed
// (Org.Members nil): LDAP has no organizations.
func (s *Source) Directory(ctx context.Context) (identity.Directory, error) {
	conn, err := s.dial(ctx)
	if err != nil {
		return identity.Directory{}, err
	}
	defer conn.Close()
	login, _ := s.attrs()
	filter := "(&" + s.filter + "(" + login + "=*))"
	res, err := conn.SearchWithPaging(ldapv3.NewSearchRequest(s.cfg.Settings.UserSearch.BaseDN, s.scope(), ldapv3.NeverDerefAliases,
		0, 0, false, filter, s.userAttributes(), nil), pageSize)
	if err != nil {
		return identity.Directory{}, s.unavailable("searching users under "+s.cfg.Settings.UserSearch.BaseDN, err)
	}
	type found struct {
		dn   string
		user identity.User
	}
	var users []found
	seen := map[string]bool{}
	for _, e := range res.Entries {
		u, ok := s.entryUser(e)
		if !ok || seen[u.Name] {
			continue // not a usable account name, or twice: never guessed
		}
		seen[u.Name] = true
		users = append(users, found{e.DN, u})
	}
	if s.cfg.Settings.AdminGroupDN != "" {
		admins, err := s.groupMembers(conn, s.cfg.Settings.AdminGroupDN, s.cfg.Settings.AdminGroupMemberAttr)
		if err != nil {
			return identity.Directory{}, err
		}
		for i := range users {
			users[i].user.IsAdmin = admins.has(users[i].dn, users[i].user.Name)
		}
	}
	d := identity.Directory{Users: make([]identity.User, len(users))}
	for i, f := range users {
		d.Users[i] = f.user
	}
	orgs := map[string]int{}
	for _, t := range s.cfg.Teams {
		g, err := s.groupMembers(conn, t.GroupDN, t.MemberAttr)
		if err != nil {
			return identity.Directory{}, err
		}
		team := identity.Team{Name: t.Team, Members: []string{}}
		for _, f := range users {
			if f.user.IsActive && g.has(f.dn, f.user.Name) {
				team.Members = append(team.Members, f.user.Name)
			}
		}
		i, ok := orgs[t.Org]
		if !ok {
			i = len(d.Orgs)
			orgs[t.Org] = i
			d.Orgs = append(d.Orgs, identity.Org{Name: t.Org})
		}
		d.Orgs[i].Teams = append(d.Orgs[i].Teams, team)
	}
	return d, nil
}
