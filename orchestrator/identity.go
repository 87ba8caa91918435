package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Identity sources the installer sets (docs/identity.md). LDAP/AD is set
// through the admin API or the console: it needs more than flags can say.
const (
	IdentityLocal = "local"
	IdentityUCP   = "ucp"
)

// IdentitySource is the identity source install and reconfigure set
// through the admin API (PUT /api/v0/meta/settings/identity) once the
// replicas serve.
type IdentitySource struct {
	Kind string // IdentityLocal or IdentityUCP
	// UCPURL is https://<ucp>[:port]; UCPCA its CA in PEM (empty: the
	// system's CAs).
	UCPURL, UCPCA string
	// Username and Password are the UCP administrator dtr reads users,
	// organizations and teams as. The password is kept, write-only, in
	// dtr's metadata; it is never in a plan, a log or a service spec.
	Username, Password string
}

// Describe says what the source is, without the password.
func (s IdentitySource) Describe() string {
	if s.Kind != IdentityUCP {
		return "dtr's own accounts (identity source local)"
	}
	ca := "the system's CAs"
	if s.UCPCA != "" {
		ca = "the CA given with --ucp-ca"
	}
	return fmt.Sprintf("UCP at %s (users, organizations and teams, read as UCP administrator %s; its certificate checked against %s)", s.UCPURL, s.Username, ca)
}

// settings is the body of the PUT.
func (s IdentitySource) settings() map[string]any {
	if s.Kind != IdentityUCP {
		// The UCP and LDAP settings stay stored for later.
		return map[string]any{"kind": IdentityLocal}
	}
	return map[string]any{"kind": IdentityUCP, "ucp": map[string]any{
		"url": s.UCPURL, "ca": s.UCPCA, "username": s.Username, "password": s.Password,
	}}
}

// SetIdentity stores the identity source. A UCP source is tried first
// from the replica (the settings test call, with the UCP administrator's
// own sign-in): a replica that cannot reach UCP, a CA that does not match
// UCP's certificate or an account that is no UCP administrator fail here,
// with the replica's words, not at the first user's sign-in.
func (a ReplicaAPI) SetIdentity(ctx context.Context, s IdentitySource) error {
	if s.Kind == IdentityUCP {
		var res struct {
			OK      bool   `json:"ok"`
			Found   bool   `json:"found"`
			Message string `json:"message"`
		}
		in := map[string]any{"username": s.Username, "password": s.Password, "identity": s.settings()}
		if err := a.call(ctx, http.MethodPost, "/api/v0/meta/settings/identity/test", in, &res); err != nil {
			return fmt.Errorf("testing %s: %w", s.Describe(), err)
		}
		if !res.OK || !res.Found {
			return fmt.Errorf("the replica cannot use %s: %s; check --ucp-url, --ucp-ca and that --ucp-username is a UCP administrator", s.Describe(), res.Message)
		}
	}
	if err := a.call(ctx, http.MethodPut, "/api/v0/meta/settings/identity", s.settings(), nil); err != nil {
		return fmt.Errorf("setting the identity source to %s: %w", s.Describe(), err)
	}
	return nil
}

// Identity reads the stored identity settings as the admin API shows them
// (secrets masked): PUT back, they restore the settings and keep the stored
// secrets.
func (a ReplicaAPI) Identity(ctx context.Context) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := a.call(ctx, http.MethodGet, "/api/v0/meta/settings/identity", nil, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// RestoreIdentity puts back settings Identity read.
func (a ReplicaAPI) RestoreIdentity(ctx context.Context, saved json.RawMessage) error {
	return a.call(ctx, http.MethodPut, "/api/v0/meta/settings/identity", saved, nil)
}

// identityStep sets the identity source through the admin API of the
// replica at url, as the first admin; the client is built once the
// cluster CA is known.
func identityStep(replicaID, url, user, password string, s IdentitySource, client func(st State) *http.Client) Step {
	return Step{
		Description: fmt.Sprintf("use %s through the admin API of replica %s", s.Describe(), replicaID),
		Apply: func(ctx context.Context, st *State) error {
			api := ReplicaAPI{URL: url, User: user, Password: password, Client: client(*st)}
			return api.SetIdentity(ctx, s)
		},
	}
}
