package syncer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/meta"
)

// TestResult is what the settings test call answers: whether the source
// accepted the name and password, and what the user would get in dtr.
type TestResult struct {
	// OK: the source answered (whatever it said of the password).
	OK bool `json:"ok"`
	// Found: the source accepted the name and password.
	Found    bool     `json:"found"`
	Message  string   `json:"message"`
	Username string   `json:"username,omitempty"` // the dtr account name
	FullName string   `json:"fullName,omitempty"`
	IsAdmin  bool     `json:"isAdmin"`
	IsActive bool     `json:"isActive"`
	Teams    []string `json:"teams"` // org/team, of the synced teams
	// LocalAccount: a local account of that name exists; it keeps signing
	// in with its own password and the directory user cannot.
	LocalAccount bool `json:"localAccount,omitempty"`
}

// testTimeout bounds a test call.
const testTimeout = 30 * time.Second

// Test checks a name and password against the source the settings
// describe (which need not be saved yet) and reports what the user would
// get. An error is returned only for settings that are not valid.
func Test(ctx context.Context, store *meta.Store, st meta.IdentitySettings, links []meta.TeamSync, name, password string) (TestResult, error) {
	res := TestResult{Teams: []string{}}
	if st.Kind == meta.IdentityLocal || st.Kind == "" {
		return res, fmt.Errorf("%w identity kind local: there is no source to test; give kind ldap or ucp with its settings", meta.ErrInvalid)
	}
	src, err := NewSource(st, links)
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	u, err := src.Authenticate(ctx, name, password)
	switch {
	case errors.Is(err, identity.ErrBadCredentials):
		res.OK = true
		res.Message = fmt.Sprintf("the %s source refused %q with this password: a wrong password, or no user that the user search finds by that name", src.Kind(), name)
		if detail := strings.TrimPrefix(err.Error(), identity.ErrBadCredentials.Error()); detail != "" {
			res.Message += " (" + strings.TrimLeft(detail, ": ") + ")"
		}
		return res, nil
	case err != nil:
		res.Message = err.Error()
		return res, nil
	}
	res.OK, res.Found = true, true
	res.Username, res.FullName, res.IsAdmin, res.IsActive = u.Name, u.FullName, u.IsAdmin, u.IsActive
	if a, err := store.Account(ctx, u.Name); err == nil && (a.IsOrg || a.Source == "") {
		res.LocalAccount = true
	}
	dir, err := src.Directory(ctx)
	if err != nil {
		res.OK = false
		res.Message = "the password is right, but reading the directory failed: " + err.Error()
		return res, nil
	}
	for _, o := range dir.Orgs {
		for _, t := range o.Teams {
			if slices.Contains(t.Members, u.Name) {
				res.Teams = append(res.Teams, o.Name+"/"+t.Name)
			}
		}
	}
	slices.Sort(res.Teams)
	res.Message = fmt.Sprintf("%s signs in as %s", name, u.Name)
	if res.IsAdmin {
		res.Message += ", a dtr administrator"
	}
	if len(res.Teams) > 0 {
		res.Message += ", in teams " + strings.Join(res.Teams, ", ")
	}
	if res.LocalAccount {
		res.Message = fmt.Sprintf("the password is right, but %s is a local dtr account: it keeps signing in with its local password, and the directory user cannot sign in", u.Name)
	}
	return res, nil
}
