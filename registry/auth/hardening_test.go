package auth

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/dtr-registry/dtr/pki"
	"github.com/dtr-registry/dtr/registry/meta"
)

func testSigner(t *testing.T) *Signer {
	t.Helper()
	ca, err := pki.NewCA("test token key")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(ca.CertPEM(), key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// bigAccess is the largest access a token can carry: MaxScopes scopes with
// the longest names.
func bigAccess(i int) []*token.ResourceActions {
	var out []*token.ResourceActions
	for j := range MaxScopes {
		name := fmt.Sprintf("ns%d/%s%d", i, strings.Repeat("x", 500), j)
		out = append(out, &token.ResourceActions{Type: "repository", Name: name, Actions: []string{"pull"}})
	}
	return out
}

// The verified-token cache is bounded by what it holds, and expired tokens
// leave it within sweepEvery (at d95c32b: 20,000 entries of any size, swept
// only when full).
func TestVerifierCacheBoundedInBytes(t *testing.T) {
	s := testSigner(t)
	now := time.Now()
	v := &Verifier{Keys: func() *Keyring { return &Keyring{Current: s} }, Now: func() time.Time { return now }}
	for i := range 1000 {
		raw, err := s.Issue("", "", bigAccess(i), now)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) > MaxTokenSize {
			t.Fatalf("a maximal token is %d bytes, over MaxTokenSize %d", len(raw), MaxTokenSize)
		}
		if _, err := v.Verify(raw); err != nil {
			t.Fatal(err)
		}
		if b := v.CachedBytes(); b > maxCachedBytes {
			t.Fatalf("cache holds %d bytes after %d tokens, over %d", b, i+1, maxCachedBytes)
		}
	}
	if v.CachedBytes() == 0 {
		t.Fatal("nothing cached")
	}
	// Distribution checks a token's times against the real clock, dtr's
	// cache against v.Now: a fresh token seen long after the others expired.
	raw, _ := s.Issue("", "", nil, time.Now())
	now = now.Add(TokenTTL + leeway + sweepEvery + time.Second)
	if _, err := v.Verify(raw); err != errExpired {
		t.Fatalf("verify at the later time: %v, want errExpired", err)
	}
	if b, one := v.CachedBytes(), claimsSize(&token.ClaimSet{JWTID: ".0123456789abcdef0123456789abcdef"}); b > one {
		t.Fatalf("expired tokens still cached: %d bytes, want at most one entry (%d)", b, one)
	}
}

// A token longer than MaxTokenSize is refused before it is parsed.
func TestVerifierRefusesOversizedTokens(t *testing.T) {
	s := testSigner(t)
	v := &Verifier{Keys: func() *Keyring { return &Keyring{Current: s} }}
	if _, err := v.Verify(strings.Repeat("a", MaxTokenSize+1)); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("oversized token: %v", err)
	}
}

// After a rotation the retired key still verifies the tokens it signed
// before it was retired, until they expire; without it in the ring they
// fail; it signs nothing; and a token of a lifetime dtr never issues fails
// whatever key signed it (a leaked key's forgeries end with the rotation).
func TestKeyringVerifiesRetiredKeys(t *testing.T) {
	old, next := testSigner(t), testSigner(t)
	now := time.Now()
	raw, err := old.Issue("alice", "e1", nil, now)
	if err != nil {
		t.Fatal(err)
	}
	retired, err := NewVerifyingKey(pemOf(old))
	if err != nil {
		t.Fatal(err)
	}
	ring := &Keyring{Current: next, Retired: []RetiredSigner{{Signer: retired, RetiredAt: now.Add(time.Second), ValidUntil: now.Add(7 * time.Minute)}}}
	if _, err := ring.Verify(raw, now); err != nil {
		t.Fatalf("a token of the retired key: %v", err)
	}
	if _, err := ring.Verify(raw, now.Add(8*time.Minute)); err == nil {
		t.Fatal("a retired key still verifies after its ValidUntil")
	}
	forged, _ := old.Issue("", "", nil, now.Add(3*time.Second))
	if _, err := ring.Verify(forged, now); err == nil || !strings.Contains(err.Error(), "after it was retired") {
		t.Fatalf("a token the retired key signed after its retirement: %v", err)
	}
	if _, err := (&Keyring{Current: next}).Verify(raw, now); err == nil {
		t.Fatal("a token of a key that left the ring still verifies")
	}
	if _, err := retired.Issue("alice", "", nil, now); err == nil {
		t.Fatal("a retired key signed a token")
	}
	if next.KeyID() == old.KeyID() {
		t.Fatal("two keys share a key ID")
	}
	// A year-long token, as a leaked key could sign: dtr never issues one.
	long, err := jwt.Signed(next.signer).Claims(token.ClaimSet{Issuer: Issuer, Audience: token.AudienceList{Service}, IssuedAt: now.Unix(), NotBefore: now.Unix() - 1, Expiration: now.Add(365 * 24 * time.Hour).Unix(), JWTID: ".x"}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Verify(long, now); err == nil || !strings.Contains(err.Error(), "lifetime") {
		t.Fatalf("a year-long token: %v", err)
	}
}

func pemOf(s *Signer) []byte {
	return []byte("-----BEGIN CERTIFICATE-----\n" + b64lines(s.cert.Raw) + "-----END CERTIFICATE-----\n")
}

// An account's tokens end with its epoch: a password change, deactivation,
// deletion, or a new account with the same name.
func TestAccountsRevoke(t *testing.T) {
	var a Accounts
	a.Replace([]meta.Account{{Name: "alice", IsActive: true, Epoch: "e1"}, {Name: "acme", IsOrg: true, IsActive: true, Epoch: "o1"}})
	tests := []struct {
		name  string
		do    func()
		sub   string
		jti   string
		valid bool
	}{
		{"current epoch", func() {}, "alice", "e1.nonce", true},
		{"other epoch", func() {}, "alice", "e0.nonce", false},
		{"no epoch", func() {}, "alice", "nonce", false},
		{"unknown account", func() {}, "bob", "e1.nonce", false},
		{"an organization holds no tokens", func() {}, "acme", "o1.nonce", false},
		{"password changed", func() { a.Set(meta.Account{Name: "alice", IsActive: true, Epoch: "e2"}) }, "alice", "e1.nonce", false},
		{"new epoch", func() {}, "alice", "e2.nonce", true},
		{"deactivated", func() { a.Set(meta.Account{Name: "alice", IsActive: false, Epoch: "e2"}) }, "alice", "e2.nonce", false},
		{"deleted", func() { a.Delete("alice") }, "alice", "e2.nonce", false},
		{"same name again", func() { a.Set(meta.Account{Name: "alice", IsActive: true, Epoch: "e9"}) }, "alice", "e2.nonce", false},
		{"legacy account, legacy token", func() { a.Set(meta.Account{Name: "old", IsActive: true}) }, "old", "0123abcd", true},
	}
	for _, tt := range tests {
		tt.do()
		if got := a.Valid(tt.sub, tt.jti); got != tt.valid {
			t.Errorf("%s: Valid(%q, %q) = %v, want %v", tt.name, tt.sub, tt.jti, got, tt.valid)
		}
	}
}

// The verifier checks the epoch on every use, cached or not.
func TestVerifierChecksEpochEveryTime(t *testing.T) {
	s := testSigner(t)
	accs := &Accounts{}
	accs.Set(meta.Account{Name: "alice", IsActive: true, Epoch: "e1"})
	v := &Verifier{Keys: func() *Keyring { return &Keyring{Current: s} }, Accounts: accs}
	raw, _ := s.Issue("alice", "e1", nil, time.Now())
	if _, err := v.Verify(raw); err != nil {
		t.Fatal(err)
	}
	accs.Set(meta.Account{Name: "alice", IsActive: true, Epoch: "e2"})
	if _, err := v.Verify(raw); err != ErrRevoked {
		t.Fatalf("cached token after the epoch changed: %v, want ErrRevoked", err)
	}
	anon, _ := s.Issue("", "", nil, time.Now())
	if _, err := v.Verify(anon); err != nil {
		t.Fatalf("anonymous token: %v", err)
	}
}

func TestParseScopesCap(t *testing.T) {
	var many []string
	for i := range MaxScopes + 1 {
		many = append(many, fmt.Sprintf("repository:a/b%d:pull", i))
	}
	if _, err := ParseScopes(many); err != ErrTooManyScopes {
		t.Fatalf("%d scopes: %v, want ErrTooManyScopes", len(many), err)
	}
	got, err := ParseScopes(many[:MaxScopes])
	if err != nil || len(got) != MaxScopes {
		t.Fatalf("%d scopes: %d, %v", MaxScopes, len(got), err)
	}
	got, _ = ParseScopes([]string{"repository:a/b:pull", "repository:a/b:push", "repository:a/" + strings.Repeat("x", maxScopeName) + ":pull"})
	if len(got) != 1 || strings.Join(got[0].Actions, ",") != "pull,push" {
		t.Fatalf("merged scopes: %+v", got)
	}
}

// Failures lock an account after FreeAccountFailures, for a time that
// doubles up to the maximum; failures long ago do not count.
func TestFailuresGrow(t *testing.T) {
	fs := failures{}
	now := time.Now()
	var f *failure
	for range FreeAccountFailures {
		f = fs.add("alice", now, FreeAccountFailures, MaxAccountLockout)
	}
	if !f.until.IsZero() {
		t.Fatalf("locked after %d failures", FreeAccountFailures)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	for _, w := range want {
		f = fs.add("alice", now, FreeAccountFailures, MaxAccountLockout)
		if got := f.until.Sub(now); got != w {
			t.Fatalf("lock %v, want %v", got, w)
		}
	}
	for range 20 {
		f = fs.add("alice", now, FreeAccountFailures, MaxAccountLockout)
	}
	if got := f.until.Sub(now); got != MaxAccountLockout {
		t.Fatalf("lock %v, want the maximum %v", got, MaxAccountLockout)
	}
	f = fs.add("alice", now.Add(16*time.Minute), FreeAccountFailures, MaxAccountLockout)
	if f.count != 1 {
		t.Fatalf("failures 16 minutes apart add up: %d", f.count)
	}
}

func b64lines(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 64 {
		out.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	out.WriteString(s + "\n")
	return out.String()
}
