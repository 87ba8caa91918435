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
)

// Verifier checks access tokens this cluster signed and remembers the ones
// it verified until they expire: a client sends the same token with every
// request of a push or pull, and an ECDSA verification per request cost a
// third of the manifest GET path (docs/benchmarks.md).
type Verifier struct {
	Signer func() *Signer
	Now    func() time.Time

	mu    sync.Mutex
	cache map[[32]byte]*token.ClaimSet
}

// maxCached bounds the cache; past it, expired entries go, then all.
const maxCached = 20000

// leeway is Distribution's allowance for clock skew between replicas.
const leeway = 60 * time.Second

var errExpired = errors.New("token expired or not yet valid")

// Verify returns the claims of a valid token.
func (v *Verifier) Verify(raw string) (*token.ClaimSet, error) {
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	key := sha256.Sum256([]byte(raw))
	v.mu.Lock()
	c, ok := v.cache[key]
	v.mu.Unlock()
	if !ok {
		s := v.Signer()
		if s == nil {
			return nil, errors.New("token key not loaded")
		}
		var err error
		if c, err = s.Verify(raw); err != nil {
			return nil, err
		}
		v.remember(key, c, now)
	}
	if now.Unix() > c.Expiration+int64(leeway.Seconds()) || now.Unix() < c.NotBefore-int64(leeway.Seconds()) {
		return nil, errExpired
	}
	return c, nil
}

func (v *Verifier) remember(key [32]byte, c *token.ClaimSet, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cache == nil {
		v.cache = map[[32]byte]*token.ClaimSet{}
	}
	if len(v.cache) >= maxCached {
		for k, old := range v.cache {
			if now.Unix() > old.Expiration+int64(leeway.Seconds()) {
				delete(v.cache, k)
			}
		}
		if len(v.cache) >= maxCached {
			clear(v.cache)
		}
	}
	v.cache[key] = c
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
	path     string
}

func newController(options map[string]any) (distauth.AccessController, error) {
	v, ok := options["verifier"].(*Verifier)
	if !ok || v == nil {
		return nil, errors.New("dtr access controller: option verifier missing")
	}
	return &accessController{verifier: v, path: "/auth/token"}, nil
}

// Authorized implements distauth.AccessController.
func (ac *accessController) Authorized(r *http.Request, items ...distauth.Access) (*distauth.Grant, error) {
	ch := &Challenge{Path: ac.path, Access: items}
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
	return &distauth.Grant{User: distauth.UserInfo{Name: c.Subject}, Resources: res}, nil
}

// Challenge is a 401's WWW-Authenticate: the realm is the token endpoint on
// the host the client used (a replica or the load balancer).
type Challenge struct {
	Path   string
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
	scheme := "https"
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		scheme = p
	}
	v := fmt.Sprintf("Bearer realm=%q,service=%q", scheme+"://"+r.Host+c.Path, Service)
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
