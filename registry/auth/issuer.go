package auth

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// The JWT claims Distribution checks against its token configuration.
const (
	Issuer  = "dtr-token-issuer"
	Service = "dtr"
)

// TokenTTL is how long an access token lives. Distribution allows 60 s of
// clock skew between replicas on top of it.
const TokenTTL = 5 * time.Minute

// Signer signs access tokens with the cluster's token key.
type Signer struct {
	signer jose.Signer
	cert   *x509.Certificate
	pub    crypto.PublicKey
	kid    string
	alg    jose.SignatureAlgorithm
}

// NewSigner loads the token key pair (PEM). The key ID is the key's JWK
// thumbprint: the only form Distribution v3 matches for a certificate in its
// root bundle.
func NewSigner(certPEM, keyPEM []byte) (*Signer, error) {
	s, err := NewVerifyingKey(certPEM)
	if err != nil {
		return nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("token key: no PEM data")
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	if _, ok := key.(interface{ Public() crypto.PublicKey }); !ok {
		return nil, errors.New("token key: unsupported key type")
	}
	s.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: jose.JSONWebKey{Key: key, KeyID: s.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	return s, nil
}

// NewVerifyingKey loads a token key's certificate alone: it verifies the
// tokens the key signed, and signs nothing (a retired key).
func NewVerifyingKey(certPEM []byte) (*Signer, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil {
		return nil, errors.New("token certificate: no PEM data")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("token certificate: %w", err)
	}
	var alg jose.SignatureAlgorithm
	switch cert.PublicKeyAlgorithm {
	case x509.ECDSA:
		alg = jose.ES256
	case x509.RSA:
		alg = jose.RS256
	case x509.Ed25519:
		alg = jose.EdDSA
	default:
		return nil, fmt.Errorf("token key: unsupported algorithm %s", cert.PublicKeyAlgorithm)
	}
	return &Signer{cert: cert, pub: cert.PublicKey, kid: token.GetJWKThumbprint(cert.PublicKey), alg: alg}, nil
}

// KeyID is the key's JWK thumbprint, the "kid" of the tokens it signs.
func (s *Signer) KeyID() string { return s.kid }

// Issue signs an access token for subject (empty for anonymous) granting
// access. epoch is the account's token epoch (see Accounts): it is carried
// in the token ID, so that a password change, deactivation or deletion ends
// the token on every replica at once.
func (s *Signer) Issue(subject, epoch string, access []*token.ResourceActions, now time.Time) (string, error) {
	if s.signer == nil {
		return "", errors.New("a retired token key signs nothing")
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	jti := epoch + "." + hex.EncodeToString(nonce)
	if access == nil {
		access = []*token.ResourceActions{}
	}
	claims := token.ClaimSet{
		Issuer:     Issuer,
		Subject:    subject,
		Audience:   token.AudienceList{Service},
		Expiration: now.Add(TokenTTL).Unix(),
		NotBefore:  now.Add(-time.Second).Unix(),
		IssuedAt:   now.Unix(),
		JWTID:      jti,
		Access:     access,
	}
	return jwt.Signed(s.signer).Claims(claims).Serialize()
}

// Verify checks a token this key signed and returns its claims.
func (s *Signer) Verify(raw string) (*token.ClaimSet, error) {
	return s.verify(raw)
}

func (s *Signer) verify(raw string) (*token.ClaimSet, error) {
	t, err := token.NewToken(raw, []jose.SignatureAlgorithm{s.alg})
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.cert)
	c, err := t.Verify(token.VerifyOptions{
		TrustedIssuers:    []string{Issuer},
		AcceptedAudiences: []string{Service},
		Roots:             pool,
		TrustedKeys:       map[string]crypto.PublicKey{s.kid: s.pub},
	})
	if err != nil {
		return nil, err
	}
	// dtr signs tokens for TokenTTL; a longer one was not signed by a
	// replica (a leaked key signs what it likes: this bounds what it buys).
	if c.IssuedAt == 0 || c.Expiration-c.IssuedAt > int64(TokenTTL.Seconds()) {
		return nil, errors.New("token lifetime exceeds what dtr issues")
	}
	return c, nil
}

// Keyring is the cluster's token keys: the current one signs and verifies;
// each retired one verifies only tokens issued before it was retired, and
// only until its tokens have expired. Rotation therefore fails no request,
// and a leaked key is worthless minutes after it was rotated out
// (docs/security.md).
type Keyring struct {
	Current *Signer
	Retired []RetiredSigner
}

// RetiredSigner is a retired key with its dates.
type RetiredSigner struct {
	*Signer
	RetiredAt  time.Time
	ValidUntil time.Time
}

// Verify checks a token signed by a key of the ring, at time now.
func (k *Keyring) Verify(raw string, now time.Time) (*token.ClaimSet, error) {
	if k == nil || k.Current == nil {
		return nil, errors.New("token key not loaded")
	}
	c, err := k.Current.verify(raw)
	if err == nil {
		return c, nil
	}
	for _, r := range k.Retired {
		if !now.Before(r.ValidUntil) {
			continue
		}
		if rc, rerr := r.verify(raw); rerr == nil {
			if rc.IssuedAt > r.RetiredAt.Unix() {
				return nil, errors.New("token signed by a retired key after it was retired")
			}
			return rc, nil
		}
	}
	return nil, err
}
