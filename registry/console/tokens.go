package console

import (
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
)

// Access tokens: the signed-in user's own (the admin API's /api_tokens,
// docs/security.md). The secret of a new token is in the answer to the
// form's POST only: never in a redirect, a flash or any later page.

type tokensPage struct {
	Tokens  []tokenRow
	Created *newToken // just created: its secret is shown this once
	Login   string    // the docker login line for Created
	Form    tokenForm
}

// newToken is the admin API's answer to creating a token: the record and
// its secret.
type newToken struct {
	meta.APIToken
	Token string `json:"token"`
}

// createToken is the body of POST /api/v0/api_tokens.
type createToken struct {
	TokenLabel string     `json:"tokenLabel"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
	ReadOnly   bool       `json:"readOnly,omitempty"`
}

// tokenRow is a token as the list shows it.
type tokenRow struct {
	ID, Name, GeneratedBy string
	ReadOnly, Active      bool
	Expired               bool
	Created               time.Time
	Expires, LastUsed     time.Time // zero: never
}

// tokenForm is the create form, as sent.
type tokenForm struct {
	Name, Expires string
	ReadOnly      bool
}

// tokensOwnOnly refuses a session whose account acts through a token: a
// token must not see or mint others (the console refuses token sign-in,
// this keeps it so).
func tokensOwnOnly(s *session) error {
	if s.acc.APIToken != nil {
		return errorPage(http.StatusForbidden, "Access tokens are managed after signing in with your password, not with an access token.")
	}
	return nil
}

func (c *Console) accessTokens(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showTokens(w, r, s, http.StatusOK, "", tokensPage{Form: tokenForm{ReadOnly: true}})
}

func (c *Console) showTokens(w http.ResponseWriter, r *http.Request, s *session, status int, problem string, d tokensPage) error {
	if err := tokensOwnOnly(s); err != nil {
		return err
	}
	// The caller's own tokens only: an administrator's ?username= is the
	// API's, not this page's.
	var ts []meta.APIToken
	if err := s.api("GET", "/api_tokens?username="+url.QueryEscape(s.acc.Name)+"&pageSize="+strconv.Itoa(meta.MaxAPITokensPerUser), nil, &ts); err != nil {
		return err
	}
	now := c.cfg.Now()
	d.Tokens = d.Tokens[:0]
	for _, t := range ts {
		if t.Username != s.acc.Name {
			continue
		}
		row := tokenRow{ID: t.HashedToken, Name: t.TokenLabel, GeneratedBy: t.GeneratedBy, ReadOnly: t.ReadOnly, Active: t.IsActive, Created: t.CreatedAt}
		if t.ExpiresAt != nil {
			row.Expires, row.Expired = *t.ExpiresAt, !t.ExpiresAt.After(now)
		}
		if t.LastUsed != nil {
			row.LastUsed = *t.LastUsed
		}
		d.Tokens = append(d.Tokens, row)
	}
	sort.SliceStable(d.Tokens, func(i, j int) bool { return d.Tokens[i].Created.After(d.Tokens[j].Created) })
	c.render(w, r, status, "tokens", s, page{Title: "Access tokens", Section: "tokens", Error: problem, Data: d})
	return nil
}

// expiryDate reads the form's optional expiry: a date (YYYY-MM-DD) after
// today; the token works through that day, UTC (until 23:59:59).
func expiryDate(v string, now time.Time) (*time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	d, err := time.Parse("2006-01-02", v)
	if err != nil {
		return nil, errorPage(http.StatusBadRequest, "Expires "+strconv.Quote(v)+" is not a date; give one as YYYY-MM-DD, or leave it empty for a token that does not expire.")
	}
	end := d.Add(24*time.Hour - time.Second)
	if !end.After(now) {
		return nil, errorPage(http.StatusBadRequest, "Expires "+v+" is in the past; give a later date, or leave it empty for a token that does not expire.")
	}
	return &end, nil
}

func (c *Console) accessTokensAction(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := tokensOwnOnly(s); err != nil {
		return err
	}
	f := r.PostForm
	switch f.Get("action") {
	case "create":
		tf := tokenForm{Name: strings.TrimSpace(f.Get("name")), Expires: strings.TrimSpace(f.Get("expires")), ReadOnly: f.Get("scope") != "read-write"}
		if tf.Name == "" {
			return c.showTokens(w, r, s, http.StatusBadRequest, "Give the token a name that says where it is used, such as \"ci-pipeline\" or \"laptop\".", tokensPage{Form: tf})
		}
		exp, err := expiryDate(tf.Expires, c.cfg.Now())
		if err != nil {
			return c.showTokens(w, r, s, http.StatusBadRequest, err.Error(), tokensPage{Form: tf})
		}
		var nt newToken
		req := createToken{TokenLabel: tf.Name, ExpiresAt: exp, ReadOnly: tf.ReadOnly}
		if err := s.api("POST", "/api_tokens?username="+url.QueryEscape(s.acc.Name), req, &nt); err != nil {
			ue := asUserError(err)
			return c.showTokens(w, r, s, ue.Status, ue.Message, tokensPage{Form: tf})
		}
		// The answer to this POST is the only page with the secret.
		d := tokensPage{Created: &nt, Form: tokenForm{ReadOnly: true},
			Login: "docker login -u " + s.acc.Name + " --password-stdin " + c.pullHost(r)}
		return c.showTokens(w, r, s, http.StatusCreated, "", d)
	case "revoke":
		id := f.Get("token")
		if !validTokenID(id) {
			return errorPage(http.StatusBadRequest, "Token "+strconv.Quote(id)+" is not a token's ID; reload the page and use its buttons.")
		}
		// Only the session's own: an administrator's API call would revoke
		// anyone's, which this page does not offer.
		var t meta.APIToken
		if err := s.api("GET", "/api_tokens/"+id, nil, &t); err != nil || t.Username != s.acc.Name {
			if ue := asUserError(err); err != nil && ue.Status != http.StatusNotFound {
				return err
			}
			return errorPage(http.StatusNotFound, "You have no access token "+id[:12]+"; it may have been revoked already.")
		}
		if f.Get("confirmed") != "yes" {
			return c.confirm(w, r, s, confirmPage{Action: "/account/tokens", Button: "Revoke token", Back: "/account/tokens",
				Warning: "Revoke access token " + strconv.Quote(t.TokenLabel) + "? docker login and API calls with it stop working at once, on every replica."})
		}
		if err := s.api("DELETE", "/api_tokens/"+id, nil, nil); err != nil {
			ue := asUserError(err)
			return c.showTokens(w, r, s, ue.Status, ue.Message, tokensPage{Form: tokenForm{ReadOnly: true}})
		}
		return done(w, r, "/account/tokens", "token-revoked")
	}
	return errorPage(http.StatusBadRequest, "Unknown action "+strconv.Quote(f.Get("action"))+".")
}

// validTokenID: a token's ID is the hex SHA-256 of its secret.
func validTokenID(id string) bool {
	return len(id) == 64 && validWebhookID(id)
}
