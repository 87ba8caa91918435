// Package auth is the replica's token server (/auth/token): it checks
// credentials and refresh tokens, turns requested scopes into the actions the
// account may take, and signs the JWTs Distribution verifies.
package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Scope is one requested access: type[(class)]:name:actions.
type Scope struct {
	Type    string
	Class   string
	Name    string
	Actions []string
}

// String renders the scope as in a request.
func (s Scope) String() string {
	t := s.Type
	if s.Class != "" {
		t += "(" + s.Class + ")"
	}
	return t + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

// ParseScope parses one scope. The name may contain ':' (a port), so the
// type ends at the first ':' and the actions start after the last one.
func ParseScope(s string) (Scope, error) {
	first := strings.IndexByte(s, ':')
	last := strings.LastIndexByte(s, ':')
	if first <= 0 || last == first || last == len(s)-1 {
		return Scope{}, fmt.Errorf("malformed scope %q: want type:name:actions", s)
	}
	sc := Scope{Type: s[:first], Name: s[first+1 : last]}
	if i := strings.IndexByte(sc.Type, '('); i >= 0 {
		if !strings.HasSuffix(sc.Type, ")") || i == 0 {
			return Scope{}, fmt.Errorf("malformed scope type %q", sc.Type)
		}
		sc.Class = sc.Type[i+1 : len(sc.Type)-1]
		sc.Type = sc.Type[:i]
	}
	if sc.Name == "" || strings.ContainsAny(sc.Type, "() ") {
		return Scope{}, fmt.Errorf("malformed scope %q", s)
	}
	for _, a := range strings.Split(s[last+1:], ",") {
		if a = strings.TrimSpace(a); a != "" {
			sc.Actions = append(sc.Actions, a)
		}
	}
	if len(sc.Actions) == 0 {
		return Scope{}, fmt.Errorf("scope %q names no action", s)
	}
	return sc, nil
}

// MaxScopes bounds the scopes of one token request. Clients ask for one to
// three (a push that mounts from another repository); an anonymous request
// with 19,000 scopes once made a 0.9 MB token.
const MaxScopes = 32

// MaxTokenSize bounds a signed token; the verifier refuses larger ones
// without parsing them.
const MaxTokenSize = 32 << 10

// maxScopeName bounds a scope's resource name: a repository name of at most
// 255 characters (meta.MaxRepositoryName, nested or not), with ample room
// for a registry host.
const maxScopeName = 600

// ErrTooManyScopes refuses a request for more than MaxScopes scopes.
var ErrTooManyScopes = fmt.Errorf("too many scopes: a token request may name at most %d", MaxScopes)

// ParseScopes parses the scope parameters of a request: repeated (GET) or
// space-separated (POST). Malformed scopes are skipped, as Docker's own token
// servers do: a client gets fewer actions, never an error. Scopes of one
// resource are merged. More than MaxScopes is an error.
func ParseScopes(params []string) ([]Scope, error) {
	var out []Scope
	n := 0
	for _, p := range params {
		for _, f := range strings.Fields(p) {
			if n++; n > MaxScopes {
				return nil, ErrTooManyScopes
			}
			sc, err := ParseScope(f)
			if err != nil || len(sc.Name) > maxScopeName {
				continue
			}
			out = mergeScope(out, sc)
		}
	}
	return out, nil
}

func mergeScope(scopes []Scope, sc Scope) []Scope {
	for i := range scopes {
		if scopes[i].Type == sc.Type && scopes[i].Class == sc.Class && scopes[i].Name == sc.Name {
			for _, a := range sc.Actions {
				if !slices.Contains(scopes[i].Actions, a) {
					scopes[i].Actions = append(scopes[i].Actions, a)
				}
			}
			return scopes
		}
	}
	return append(scopes, sc)
}
