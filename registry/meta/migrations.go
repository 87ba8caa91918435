package meta

import (
	"context"
	"encoding/json"
)

// Current is this build's schema: every migration from BaselineSchema to
// SchemaVersion. A new one is appended with the next version, and
// SchemaVersion raised with it.
var Current = Schema{
	{Version: 2, Name: "refresh-token-expiry", Run: fillRefreshTokenExpiry},
}

// fillRefreshTokenExpiry (schema 2) gives every refresh token stored
// without an expiry, as tokens were before refresh tokens expired, the one
// it already has in effect: its creation plus DefaultRefreshTokenMaxAge
// (RefreshToken.expired). Both copies of a token are filled in,
// tokens/<hash> and usertokens/<user>/<hash>. Once every cluster is at
// schema 2 or later, a zero ExpiresAt no longer needs a meaning.
// The record only gains a field, which versions before read too.
func fillRefreshTokenExpiry(ctx context.Context, m *Migrating) error {
	fill := func(_ string, v []byte) ([]byte, bool, error) {
		var rt RefreshToken
		var fields map[string]json.RawMessage
		if json.Unmarshal(v, &rt) != nil || json.Unmarshal(v, &fields) != nil {
			return nil, true, nil // damaged: IssueRefreshToken drops it
		}
		if !rt.ExpiresAt.IsZero() {
			return nil, true, nil
		}
		exp, err := json.Marshal(rt.CreatedAt.Add(DefaultRefreshTokenMaxAge).UTC())
		if err != nil {
			return nil, false, err
		}
		fields["expiresAt"] = exp // every other field as it was, known or not
		next, err := json.Marshal(fields)
		return next, false, err
	}
	for _, p := range []string{dir("tokens"), dir("usertokens")} {
		if err := m.Rewrite(ctx, p, fill); err != nil {
			return err
		}
	}
	return nil
}
