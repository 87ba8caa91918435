// Package slapdtest runs a real OpenLDAP server (Debian's slapd) for tests:
// its own configuration and mdb database in a temporary directory, on
// loopback ports, with ldap:// (StartTLS) and ldaps:// served with a
// certificate of a test CA. Tests skip where slapd is not installed.
package slapdtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	ldapv3 "github.com/go-ldap/ldap/v3"

	"github.com/dtr-registry/dtr/pki"
)

// The directory every server starts with.
const (
	Suffix      = "dc=example,dc=org"
	AdminDN     = "cn=admin," + Suffix
	People      = "ou=people," + Suffix
	Groups      = "ou=groups," + Suffix
	ReaderDN    = "cn=reader," + Suffix
	ReaderPW    = "reader-secret-pw"
	slapdBinary = "/usr/sbin/slapd"
)

// Server is a running slapd.
type Server struct {
	t         testing.TB
	dir       string
	URL       string // ldap://127.0.0.1:port (StartTLS offered)
	LDAPSURL  string // ldaps://127.0.0.1:port
	CAPEM     []byte // the CA that signed the server's certificate
	adminPW   string
	cmd       *exec.Cmd
	stderrLog string
}

// Path is where slapd is looked for; tests skip without it.
func Path() (string, bool) {
	if p, err := exec.LookPath("slapd"); err == nil {
		return p, true
	}
	if _, err := os.Stat(slapdBinary); err == nil {
		return slapdBinary, true
	}
	return "", false
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var schemas = []string{"core", "cosine", "inetorgperson", "nis", "msuser"}

// Start runs slapd until the test ends, with the suffix, ou=people,
// ou=groups and the service account ReaderDN.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, ok := Path()
	if !ok {
		t.Skip("slapd is not installed (apt-get install slapd ldap-utils): the LDAP tests need a real OpenLDAP server")
	}
	dir := t.TempDir()
	ca, err := pki.NewCA("dtr test LDAP CA")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue("127.0.0.1", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"ca.pem": ca.CertPEM(), "cert.pem": kp.CertPEM, "key.pem": kp.KeyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, dir: dir, CAPEM: ca.CertPEM(), adminPW: "admin-secret-pw"}
	var conf strings.Builder
	for _, sc := range schemas {
		fmt.Fprintf(&conf, "include /etc/ldap/schema/%s.schema\n", sc)
	}
	fmt.Fprintf(&conf, `pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile %[1]s/ca.pem
TLSCertificateFile %[1]s/cert.pem
TLSCertificateKeyFile %[1]s/key.pem
database mdb
maxsize 67108864
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
`, dir, Suffix, AdminDN, s.adminPW)
	if err := os.WriteFile(filepath.Join(dir, "slapd.conf"), []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	port, tlsPort := freePort(t), freePort(t)
	s.URL = "ldap://127.0.0.1:" + strconv.Itoa(port)
	s.LDAPSURL = "ldaps://127.0.0.1:" + strconv.Itoa(tlsPort)
	s.stderrLog = filepath.Join(dir, "slapd.log")
	logf, err := os.Create(s.stderrLog)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// -d keeps slapd in the foreground, so the test owns the process.
	s.cmd = exec.Command(bin, "-f", filepath.Join(dir, "slapd.conf"), "-h", s.URL+"/ "+s.LDAPSURL+"/", "-d", "0")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting slapd: %v", err)
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_, _ = s.cmd.Process.Wait()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := ldapv3.DialURL(s.URL)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(s.stderrLog)
			t.Fatalf("slapd did not answer on %s: %v\n%s", s.URL, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Add("dcObject", Suffix, map[string][]string{"objectClass": {"top", "dcObject", "organization"}, "o": {"Example"}, "dc": {"example"}})
	s.Add("ou", People, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"people"}})
	s.Add("ou", Groups, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"groups"}})
	s.Add("reader", ReaderDN, map[string][]string{"objectClass": {"person"}, "cn": {"reader"}, "sn": {"reader"}, "userPassword": {ReaderPW}})
	return s
}

// Admin is a connection bound as the directory's root.
func (s *Server) Admin() *ldapv3.Conn {
	s.t.Helper()
	c, err := ldapv3.DialURL(s.URL)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := c.Bind(AdminDN, s.adminPW); err != nil {
		c.Close()
		s.t.Fatal(err)
	}
	return c
}

// Add adds an entry (what names it for the failure message).
func (s *Server) Add(what, dn string, attrs map[string][]string) {
	s.t.Helper()
	c := s.Admin()
	defer c.Close()
	req := ldapv3.NewAddRequest(dn, nil)
	for k, v := range attrs {
		req.Attribute(k, v)
	}
	if err := c.Add(req); err != nil {
		s.t.Fatalf("adding %s %s: %v", what, dn, err)
	}
}

// UserDN is the DN of a user added by AddUser.
func UserDN(uid string) string { return "uid=" + uid + "," + People }

// GroupDN is the DN of a group added by AddGroup.
func GroupDN(cn string) string { return "cn=" + cn + "," + Groups }

// AddUser adds an inetOrgPerson with a password.
func (s *Server) AddUser(uid, fullName, password string) {
	s.Add("user", UserDN(uid), map[string][]string{
		"objectClass": {"inetOrgPerson"}, "uid": {uid}, "cn": {fullName}, "sn": {uid},
		"mail": {uid + "@example.org"}, "userPassword": {password},
	})
}

// AddGroup adds a groupOfNames of users (by uid).
func (s *Server) AddGroup(cn string, uids ...string) {
	dns := make([]string, len(uids))
	for i, u := range uids {
		dns[i] = UserDN(u)
	}
	if len(dns) == 0 {
		dns = []string{ReaderDN} // groupOfNames needs a member
	}
	s.Add("group", GroupDN(cn), map[string][]string{"objectClass": {"groupOfNames"}, "cn": {cn}, "member": dns})
}

// RemoveMember takes a user out of a group.
func (s *Server) RemoveMember(group, uid string) {
	s.t.Helper()
	c := s.Admin()
	defer c.Close()
	req := ldapv3.NewModifyRequest(GroupDN(group), nil)
	req.Delete("member", []string{UserDN(uid)})
	if err := c.Modify(req); err != nil {
		s.t.Fatalf("removing %s from group %s: %v", uid, group, err)
	}
}

// Delete removes an entry.
func (s *Server) Delete(dn string) {
	s.t.Helper()
	c := s.Admin()
	defer c.Close()
	if err := c.Del(ldapv3.NewDelRequest(dn, nil)); err != nil {
		s.t.Fatalf("deleting %s: %v", dn, err)
	}
}

// Stop kills slapd: the directory becomes unreachable.
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	_, _ = s.cmd.Process.Wait()
}
