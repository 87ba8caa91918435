package auth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	distauth "github.com/distribution/distribution/v3/registry/auth"
	"github.com/distribution/distribution/v3/registry/auth/token"

	"github.com/dtr-registry/dtr/registry/internal/reqinfo"
)

// Verifier checks access tokens this cluster signed and remembers the ones
// it verified until they expire: a client sends the same token with every
// request of a push or pull, and an ECDSA verification per request cost a
// third of the manifest GET path (docs/benchmarks.md). Every use, cached or
// not, also checks the subject's account epoch, so revocation is immediate.
type Verifier struct {
	Keys     func() *Keyring
	Accounts *Accounts // nil: no revocation check (tests of the token format only)
	Now      func() time.Time

	mu        sync.Mutex
	cache     map[[32]byte]cached
	bytes     int
	lastSweep time.Time
}

type cached struct {
	claims *token.ClaimSet
	size   int
}

// maxCachedBytes bounds the verified-token cache by what its entries hold,
// not by their count: a token's claims grow with its scopes (capped by
// MaxScopes), and a cache bounded by count alone let 40 anonymous tokens
// with 19,000 scopes each take 140 MB.
const maxCachedBytes = 8 << 20

// sweepEvery is how often expired entries leave the cache.
const sweepEvery = 30 * time.Second

// leeway is Distribution's allowance for clock skew between replicas.
const leeway = 60 * time.Second

var errExpired = errors.New("token expired or not yet valid")

// ErrRevoked means the token's account was deleted or deactivated, or its
// password changed, after the token was issued.
var ErrRevoked = errors.New("token revoked: the account changed since it was issued")

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Verify returns the claims of a valid token.
func (v *Verifier) Verify(raw string) (*token.ClaimSet, error) {
	if len(raw) > MaxTokenSize {
		return nil, errors.New("token too large")
	}
	now := v.now()
	key := sha256.Sum256([]byte(raw))
	v.mu.Lock()
	e, ok := v.cache[key]
	v.mu.Unlock()
	c := e.claims
	if !ok {
		var err error
		if c, err = v.Keys().Verify(raw, now); err != nil {
			return nil, err
		}
		v.remember(key, c, now)
	}
	if now.Unix() > c.Expiration+int64(leeway.Seconds()) || now.Unix() < c.NotBefore-int64(leeway.Seconds()) {
		return nil, errExpired
	}
	if c.Subject != "" && v.Accounts != nil && !v.Accounts.Valid(c.Subject, c.JWTID) {
		return nil, ErrRevoked
	}
	return c, nil
}

// claimsSize estimates the memory one cached entry holds.
func claimsSize(c *token.ClaimSet) int {
	n := 256 + len(c.Subject) + len(c.JWTID)
	for _, ra := range c.Access {
		n += 64 + len(ra.Type) + len(ra.Class) + len(ra.Name)
		for _, a := range ra.Actions {
			n += 16 + len(a)
		}
	}
	return n
}

func (v *Verifier) remember(key [32]byte, c *token.ClaimSet, now time.Time) {
	size := claimsSize(c)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cache == nil {
		v.cache = map[[32]byte]cached{}
	}
	if now.Sub(v.lastSweep) > sweepEvery || v.bytes+size > maxCachedBytes {
		v.sweep(now)
	}
	if v.bytes+size > maxCachedBytes {
		// Full of live tokens: start over rather than grow; the ones in use
		// come back at one verification each.
		clear(v.cache)
		v.bytes = 0
	}
	if old, ok := v.cache[key]; ok {
		v.bytes -= old.size
	}
	v.cache[key] = cached{claims: c, size: size}
	v.bytes += size
}

// sweep drops expired entries; v.mu is held.
func (v *Verifier) sweep(now time.Time) {
	v.lastSweep = now
	for k, e := range v.cache {
		if now.Unix() > e.claims.Expiration+int64(leeway.Seconds()) {
			delete(v.cache, k)
			v.bytes -= e.size
		}
	}
}

// CachedBytes is the cache's estimated size, for tests and metrics.
func (v *Verifier) CachedBytes() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.bytes
}

// Allows reports whether the claims grant action on a resource.
func Allows(c *token.ClaimSet, typ, name, action string) bool {
	for _, ra := range c.Access {
		if ra.Type == typ && ra.Name == name && (slices.Contains(ra.Actions, action) || slices.Contains(ra.Actions, "*")) {
			return true
		}
	}
	return false
}

// ControllerName is the Distribution access controller dtr registers.
const ControllerName = "dtr"

func init() {
	if err := distauth.Register(ControllerName, newController); err != nil {
		panic(err)
	}
}

// accessController is Distribution's token check with dtr's Verifier.
type accessController struct {
	verifier *Verifier
	realm    func(*http.Request) string
}

// TokenPath is the token server's path on every replica.
const TokenPath = "/auth/token"

func newController(options map[string]any) (distauth.AccessController, error) {
	v, ok := options["verifier"].(*Verifier)
	if !ok || v == nil {
		return nil, errors.New("dtr access controller: option verifier missing")
	}
	realm, ok := options["realm"].(func(*http.Request) string)
	if !ok || realm == nil {
		return nil, errors.New("dtr access controller: option realm missing")
	}
	return &accessController{verifier: v, realm: realm}, nil
}

// Authorized implements distauth.AccessController.
func (ac *accessController) Authorized(r *http.Request, items ...distauth.Access) (*distauth.Grant, error) {
	ch := &Challenge{Realm: ac.realm(r), Access: items}
	prefix, raw, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || raw == "" || !strings.EqualFold(prefix, "bearer") {
		return nil, ch
	}
	c, err := ac.verifier.Verify(raw)
	if err != nil {
		ch.Err = "invalid_token"
		return nil, ch
	}
	for _, a := range items {
		if !Allows(c, a.Type, a.Name, a.Action) {
			ch.Err = "insufficient_scope"
			return nil, ch
		}
	}
	var res []distauth.Resource
	for _, ra := range c.Access {
		res = append(res, distauth.Resource{Type: ra.Type, Class: ra.Class, Name: ra.Name})
	}
	reqinfo.SetUser(r.Context(), c.Subject) // for the access log and the audit trail
	return &distauth.Grant{User: distauth.UserInfo{Name: c.Subject}, Resources: res}, nil
}

// Challenge is a 401's WWW-Authenticate. The realm is the token endpoint at
// the registry's configured external URL, never one built from the request's
// Host or X-Forwarded-Proto: those are the client's to choose, and a realm
// they pick would send the user's password where they say.
type Challenge struct {
	Realm  string // e.g. https://dtr.example.com/auth/token
	Access []distauth.Access
	Err    string // "", "invalid_token" or "insufficient_scope"
}

func (c *Challenge) Error() string {
	if c.Err == "" {
		return "authorization token required"
	}
	return c.Err
}

// SetHeaders implements distauth.Challenge.
func (c *Challenge) SetHeaders(r *http.Request, w http.ResponseWriter) {
	v := fmt.Sprintf("Bearer realm=%q,service=%q", c.Realm, Service)
	if s := scopeParam(c.Access); s != "" {
		v += fmt.Sprintf(",scope=%q", s)
	}
	if c.Err != "" {
		v += fmt.Sprintf(",error=%q", c.Err)
	}
	w.Header().Add("WWW-Authenticate", v)
}

// scopeParam renders requested access as scopes, one per resource, actions
// in request order.
func scopeParam(items []distauth.Access) string {
	var order []distauth.Resource
	actions := map[distauth.Resource][]string{}
	for _, a := range items {
		if _, seen := actions[a.Resource]; !seen {
			order = append(order, a.Resource)
		}
		if !slices.Contains(actions[a.Resource], a.Action) {
			actions[a.Resource] = append(actions[a.Resource], a.Action)
		}
	}
	scopes := make([]string, 0, len(order))
	for _, res := range order {
		scopes = append(scopes, res.Type+":"+res.Name+":"+strings.Join(actions[res], ","))
	}
	return strings.Join(scopes, " ")
}
