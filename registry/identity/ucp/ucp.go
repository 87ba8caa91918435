// Package ucp is the UCP/MKE identity source: a password is checked through
// UCP's POST /auth/login and GET /id/, and the directory (users, organizations,
// their members and teams) is read from UCP's eNZi accounts API under
// /enzi/v0/ with a UCP administrator's session, as Docker Trusted Registry did.
//
// UCP account names become dtr account names lowercased; a name that is still
// not a valid dtr account name (meta.ValidateAccountName), or that two UCP
// accounts share once lowercased, is left out of the directory and refused at
// login, with a message that says so.
package ucp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/meta"
)

// Bounds on what one directory read may hold and cost. A UCP larger than this
// is refused with an error rather than read partially.
const (
	// MaxDirectoryEntries bounds users + organizations + teams + memberships
	// (organization and team) in one Directory.
	MaxDirectoryEntries = 200_000
	// RequestTimeout bounds one HTTP exchange with UCP.
	RequestTimeout = 30 * time.Second
	// DirectoryTimeout bounds a whole Directory read.
	DirectoryTimeout = 10 * time.Minute
	pageSize         = 100     // items asked for per eNZi page
	maxBody          = 8 << 20 // bytes read from one answer
)

// ErrInvalidName marks a UCP account whose name cannot be a dtr account name;
// Authenticate's error for it also matches identity.ErrBadCredentials.
var ErrInvalidName = errors.New("UCP account name not usable in dtr")

// ErrSyncAccount marks the configured UCP administrator being refused or not
// being an administrator; it also matches identity.ErrUnavailable.
var ErrSyncAccount = errors.New("UCP sync account refused")

// Config is how to reach UCP/MKE.
type Config struct {
	// URL is https://<ucp>[:port]: the address users sign in to UCP at.
	URL string
	// CAPEM is UCP's CA (as served at https://<ucp>/ca); empty trusts the
	// system's CAs. Certificates are always verified.
	CAPEM []byte
	// Username and Password are a UCP administrator's, used to read the
	// directory. Never logged.
	Username, Password string
	// Log receives what a directory read left out (nil: discarded).
	Log logrus.FieldLogger
}

// Source is a UCP/MKE identity source; it is safe for concurrent use.
type Source struct {
	base     string // https://host[:port][/prefix], no trailing slash
	client   *http.Client
	username string
	password string
	log      logrus.FieldLogger

	mu      sync.Mutex
	token   string   // the administrator's session, reused until UCP refuses it
	skipped []string // what the last Directory left out, and why
	// ambiguous are dtr names several mixed-case UCP accounts map to, as the
	// last Directory found: nobody signs in with them.
	ambiguous map[string]bool
}

var _ identity.Source = (*Source)(nil)

// New checks cfg and builds the source; it does not contact UCP.
func New(cfg Config) (*Source, error) {
	u, err := url.Parse(strings.TrimSpace(cfg.URL))
	switch {
	case cfg.URL == "":
		return nil, errors.New("UCP identity source: the UCP URL is missing: give https://<ucp-host>")
	case err != nil:
		return nil, fmt.Errorf("UCP identity source: UCP URL %q: %v: give https://<ucp-host>", cfg.URL, err)
	case u.Scheme != "https":
		return nil, fmt.Errorf("UCP identity source: UCP URL %q: use https://<ucp-host> (passwords are sent to it)", cfg.URL)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("UCP identity source: UCP URL %q has no host: give https://<ucp-host>", cfg.URL)
	case u.User != nil:
		return nil, fmt.Errorf("UCP identity source: UCP URL must not hold credentials: give the administrator as the username and password settings")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("UCP identity source: UCP URL %q: remove the query or fragment", cfg.URL)
	}
	if cfg.Username == "" || cfg.Password == "" {
		return nil, errors.New("UCP identity source: the UCP administrator's username and password are missing: dtr reads UCP's users, organizations and teams with them")
	}
	var roots *x509.CertPool
	if len(bytes.TrimSpace(cfg.CAPEM)) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(cfg.CAPEM) {
			return nil, fmt.Errorf("UCP identity source: the UCP CA holds no PEM certificate: give the content of %s/ca", strings.TrimSuffix(u.String(), "/"))
		}
	}
	log := cfg.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: RequestTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}
	return &Source{
		base: strings.TrimSuffix(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"),
		client: &http.Client{
			Transport: transport,
			Timeout:   RequestTimeout,
			// A redirect is not UCP's API answering: never carry a session
			// or a password elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		username: cfg.Username,
		password: cfg.Password,
		log:      log,
	}, nil
}

// Kind is identity.KindUCP.
func (s *Source) Kind() string { return identity.KindUCP }

// URL is the UCP address the source uses.
func (s *Source) URL() string { return s.base }

// Check signs the administrator in afresh and makes sure they are a UCP
// administrator: the settings' "test" call. Errors are Directory's.
func (s *Source) Check(ctx context.Context) error {
	_, err := s.adminToken(ctx, true)
	return err
}

// Skipped lists what the last Directory left out, and why.
func (s *Source) Skipped() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.skipped...)
}

// Authenticate signs name in to UCP and reads who the session belongs to.
func (s *Source) Authenticate(ctx context.Context, name, password string) (identity.User, error) {
	if name == "" || password == "" || len(name) > 255 || len(password) > 1024 {
		return identity.User{}, identity.ErrBadCredentials
	}
	tok, err := s.login(ctx, name, password)
	if err != nil {
		return identity.User{}, err
	}
	var me account
	switch code, err := s.get(ctx, tok, "/id/", nil, &me); {
	case err != nil:
		return identity.User{}, err
	case code == http.StatusUnauthorized:
		// Deactivated or deleted between the two calls.
		return identity.User{}, identity.ErrBadCredentials
	case code != http.StatusOK:
		return identity.User{}, s.unexpected("GET /id/", code)
	case me.Name == "" || me.IsOrg:
		return identity.User{}, s.unavailable("GET /id/ did not describe a user")
	case !me.IsActive:
		return identity.User{}, identity.ErrBadCredentials
	}
	dtrName, err := accountName(me.Name)
	if err != nil {
		return identity.User{}, &kindError{kinds: []error{ErrInvalidName, identity.ErrBadCredentials},
			msg: fmt.Sprintf("UCP user %q cannot sign in to dtr: %v; rename the account in UCP", me.Name, err)}
	}
	if dtrName != me.Name {
		s.mu.Lock()
		clash := s.ambiguous[dtrName]
		s.mu.Unlock()
		if clash {
			return identity.User{}, &kindError{kinds: []error{ErrInvalidName, identity.ErrBadCredentials},
				msg: fmt.Sprintf("UCP user %q cannot sign in to dtr: other UCP accounts have the same dtr name %q; rename all but one in UCP", me.Name, dtrName)}
		}
		// "Alice" becomes "alice": refuse it if UCP also has an "alice",
		// whose grants Alice would otherwise receive.
		var other account
		code, err := s.adminGet(ctx, "/enzi/v0/accounts/"+url.PathEscape(dtrName), nil, &other)
		switch {
		case err != nil:
			return identity.User{}, err
		case code == http.StatusOK && other.Name != me.Name:
			return identity.User{}, &kindError{kinds: []error{ErrInvalidName, identity.ErrBadCredentials},
				msg: fmt.Sprintf("UCP user %q cannot sign in to dtr: UCP account %q has the same dtr name %q; rename one of them in UCP", me.Name, other.Name, dtrName)}
		case code != http.StatusOK && code != http.StatusNotFound:
			return identity.User{}, s.unexpected("GET /enzi/v0/accounts/{name}", code)
		}
	}
	return identity.User{Name: dtrName, FullName: me.FullName, IsAdmin: me.IsAdmin, IsActive: true}, nil
}

// login is POST /auth/login; a refusal is identity.ErrBadCredentials.
func (s *Source) login(ctx context.Context, name, password string) (string, error) {
	body, _ := json.Marshal(map[string]string{"username": name, "password": password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/auth/login", bytes.NewReader(body))
	if err != nil {
		return "", s.unavailable(err.Error())
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	var out struct {
		Token string `json:"auth_token"`
	}
	code, err := s.do(req, &out)
	switch {
	case err != nil:
		return "", err
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return "", identity.ErrBadCredentials
	case code != http.StatusOK:
		return "", s.unexpected("POST /auth/login", code)
	case out.Token == "":
		return "", s.unavailable("POST /auth/login answered without an auth_token")
	}
	return out.Token, nil
}

// get is an authenticated GET of path; a 200 answer is decoded into out.
func (s *Source) get(ctx context.Context, token, path string, q url.Values, out any) (int, error) {
	u := s.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, s.unavailable(err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	return s.do(req, out)
}

// adminGet is get with the administrator's session, signing in again once
// when UCP no longer accepts it.
func (s *Source) adminGet(ctx context.Context, path string, q url.Values, out any) (int, error) {
	for attempt := 0; ; attempt++ {
		tok, err := s.adminToken(ctx, attempt > 0)
		if err != nil {
			return 0, err
		}
		code, err := s.get(ctx, tok, path, q, out)
		if err != nil || code != http.StatusUnauthorized || attempt > 0 {
			return code, err
		}
	}
}

// adminToken is the administrator's session, signed in when there is none or
// fresh is set; the account must be a UCP administrator to see every
// organization.
func (s *Source) adminToken(ctx context.Context, fresh bool) (string, error) {
	s.mu.Lock()
	tok := s.token
	s.mu.Unlock()
	if tok != "" && !fresh {
		return tok, nil
	}
	tok, err := s.login(ctx, s.username, s.password)
	if errors.Is(err, identity.ErrBadCredentials) {
		return "", &kindError{kinds: []error{ErrSyncAccount, identity.ErrUnavailable},
			msg: fmt.Sprintf("identity source unavailable: UCP at %s refused the administrator %q: check the UCP username and password in the identity settings", s.base, s.username)}
	}
	if err != nil {
		return "", err
	}
	var me account
	code, err := s.get(ctx, tok, "/id/", nil, &me)
	switch {
	case err != nil:
		return "", err
	case code != http.StatusOK:
		return "", s.unexpected("GET /id/", code)
	case !me.IsAdmin:
		return "", &kindError{kinds: []error{ErrSyncAccount, identity.ErrUnavailable},
			msg: fmt.Sprintf("identity source unavailable: UCP account %q at %s is not a UCP administrator: give an administrator in the identity settings, dtr needs one to read every organization and team", s.username, s.base)}
	}
	s.mu.Lock()
	s.token = tok
	s.mu.Unlock()
	return tok, nil
}

// do sends req and decodes a 200 answer into out; other answers return their
// status and no error. Transport and TLS failures wrap identity.ErrUnavailable.
func (s *Source) do(req *http.Request, out any) (int, error) {
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, s.transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
		return resp.StatusCode, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return 0, s.transportError(err)
	}
	if len(body) > maxBody {
		return 0, s.unavailable(fmt.Sprintf("%s %s answered more than %d bytes", req.Method, req.URL.Path, maxBody))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return 0, s.unavailable(fmt.Sprintf("%s %s did not answer UCP's JSON (%v): is %s a UCP/MKE?", req.Method, req.URL.Path, err, s.base))
	}
	return resp.StatusCode, nil
}

func (s *Source) transportError(err error) error {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		rec       tls.RecordHeaderError
		ne        net.Error
	)
	switch {
	case errors.As(err, &unknownCA) || errors.As(err, &verify) && errors.As(verify.Err, &unknownCA):
		return s.unavailable("TLS: its certificate is not signed by the configured UCP CA (" + innermost(err) + "): give UCP's CA, from " + s.base + "/ca")
	case errors.As(err, &hostname):
		return s.unavailable("TLS: its certificate is not valid for this address (" + innermost(err) + "): use the UCP URL its certificate names")
	case errors.As(err, &invalid):
		return s.unavailable("TLS: its certificate is not valid (" + innermost(err) + ")")
	case errors.As(err, &rec):
		return s.unavailable("TLS: it does not speak TLS at this address: check the port")
	case errors.As(err, &ne) && ne.Timeout():
		return s.unavailable("it did not answer in time (" + innermost(err) + ")")
	}
	return s.unavailable("cannot reach it: " + innermost(err))
}

// innermost drops url.Error's "Get \"…\":" prefix: the URL is named already.
func innermost(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

func (s *Source) unavailable(why string) error {
	return fmt.Errorf("%w: UCP at %s: %s", identity.ErrUnavailable, s.base, why)
}

func (s *Source) unexpected(call string, code int) error {
	return s.unavailable(fmt.Sprintf("%s answered %d %s", call, code, http.StatusText(code)))
}

// kindError is an error that matches several sentinels.
type kindError struct {
	kinds []error
	msg   string
}

func (e *kindError) Error() string { return e.msg }

func (e *kindError) Is(target error) bool {
	for _, k := range e.kinds {
		if k == target {
			return true
		}
	}
	return false
}

// accountName maps a UCP account name to a dtr account name.
func accountName(ucpName string) (string, error) {
	n := strings.ToLower(ucpName)
	if err := meta.ValidateAccountName(n); err != nil {
		return "", err
	}
	return n, nil
}
