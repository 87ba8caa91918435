package meta

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Cluster is the identity and shared secrets every replica uses.
type Cluster struct {
	ID         string    `json:"id"`
	HTTPSecret string    `json:"httpSecret"` // Distribution's upload-state HMAC key: the same on every replica
	CreatedAt  time.Time `json:"createdAt"`
	Version    string    `json:"version"` // dtr version that created the cluster
}

// KeyPair is a PEM certificate and its PEM private key.
type KeyPair struct {
	CertPEM string `json:"certPEM"`
	KeyPEM  string `json:"keyPEM,omitempty"`
}

// Settings are the cluster-wide settings operators change.
type Settings struct {
	ExternalURL string  `json:"externalURL,omitempty"`
	Storage     Storage `json:"storage"`
	LogLevel    string  `json:"logLevel,omitempty"`
	// RefreshTokenMaxAge is how long a refresh token (what `docker login`
	// keeps instead of the password) lives, as a Go duration ("720h");
	// empty means DefaultRefreshTokenMaxAge.
	RefreshTokenMaxAge string `json:"refreshTokenMaxAge,omitempty"`
	// AllowSparseManifests lets a pushed manifest reference content the
	// repository does not hold: an image index whose platforms are not all
	// pushed, an image whose layers are not. Unset means allowed.
	AllowSparseManifests *bool `json:"allowSparseManifests,omitempty"`
	// Identity is where users come from besides dtr's own accounts
	// (identity.go); nil: local accounts only.
	Identity *IdentitySettings `json:"identity,omitempty"`
}

// SparseManifestsAllowed is AllowSparseManifests with its default.
func (st Settings) SparseManifestsAllowed() bool {
	return st.AllowSparseManifests == nil || *st.AllowSparseManifests
}

// DefaultRefreshTokenMaxAge: a month, after which docker asks for the
// password again.
const DefaultRefreshTokenMaxAge = 30 * 24 * time.Hour

// RefreshTokenLifetime is RefreshTokenMaxAge as a duration.
func (st Settings) RefreshTokenLifetime() time.Duration {
	if d, err := time.ParseDuration(st.RefreshTokenMaxAge); err == nil && d > 0 {
		return d
	}
	return DefaultRefreshTokenMaxAge
}

// ValidateRefreshTokenMaxAge checks a refreshTokenMaxAge setting.
func ValidateRefreshTokenMaxAge(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Minute || d > 365*24*time.Hour {
		return fmt.Errorf("%w refreshTokenMaxAge %q: give a duration between 1m and 8760h, such as 720h", ErrInvalid, v)
	}
	return nil
}

// Storage is where image blobs live.
type Storage struct {
	Type string `json:"type"` // "filesystem" or "s3"
	// Filesystem: the replica's own mount (a volume, a host path or NFS).
	S3 *S3 `json:"s3,omitempty"`
}

// S3 configures an S3 or S3-compatible bucket.
type S3 struct {
	Region         string `json:"region"`
	Bucket         string `json:"bucket"`
	RegionEndpoint string `json:"regionEndpoint,omitempty"`
	AccessKey      string `json:"accessKey,omitempty"`
	SecretKey      string `json:"secretKey,omitempty"`
	ForcePathStyle bool   `json:"forcePathStyle,omitempty"`
	RootDirectory  string `json:"rootDirectory,omitempty"`
	Secure         *bool  `json:"secure,omitempty"`
	SkipVerify     bool   `json:"skipVerify,omitempty"`
}

// Validate checks the storage settings.
func (st Storage) Validate() error {
	switch st.Type {
	case "filesystem":
		if st.S3 != nil {
			return fmt.Errorf("%w storage: s3 settings given with type filesystem", ErrInvalid)
		}
	case "s3":
		if st.S3 == nil || st.S3.Bucket == "" || st.S3.Region == "" {
			return fmt.Errorf("%w storage: s3 needs at least region and bucket", ErrInvalid)
		}
	default:
		return fmt.Errorf("%w storage type %q: use filesystem or s3", ErrInvalid, st.Type)
	}
	return nil
}

// Bootstrap is what the first replica of a new cluster writes.
type Bootstrap struct {
	Version       string
	CA            KeyPair
	TokenKey      KeyPair
	Settings      Settings
	AdminUsername string
	AdminPassword string
	// Replica founds the cluster at Schema (0: SchemaVersion), its build's.
	Replica string
	Schema  int
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Bootstrap writes a new cluster's identity, keys, settings and first admin
// in one transaction, unless the cluster already exists (then it returns the
// existing Cluster and changes nothing).
func (s *Store) Bootstrap(ctx context.Context, b Bootstrap) (Cluster, error) {
	if existing, err := s.Cluster(ctx); err == nil {
		return existing, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Cluster{}, err
	}
	if err := b.Settings.Storage.Validate(); err != nil {
		return Cluster{}, err
	}
	if err := ValidateAccountName(b.AdminUsername); err != nil {
		return Cluster{}, fmt.Errorf("admin username: %w", err)
	}
	hash, err := HashPassword(b.AdminPassword)
	if err != nil {
		return Cluster{}, fmt.Errorf("admin password: %w", err)
	}
	c := Cluster{ID: randomHex(16), HTTPSecret: randomHex(32), CreatedAt: time.Now().UTC(), Version: b.Version}
	admin := Account{Name: b.AdminUsername, IsAdmin: true, IsActive: true, PasswordHash: hash, CreatedAt: c.CreatedAt, Epoch: NewEpoch()}
	if b.Schema == 0 {
		b.Schema = SchemaVersion
	}
	schema := SchemaRecord{Version: b.Schema, MigratedAt: c.CreatedAt, By: b.Replica, DTRVersion: b.Version}
	var ops []clientv3.Op
	for k, v := range map[string]any{
		key("cluster"): c, key("ca"): b.CA, key("keys", "token"): b.TokenKey,
		key("settings"): b.Settings, key("accounts", admin.Name): admin, schemaKey: schema,
	} {
		op, err := putOp(k, v)
		if err != nil {
			return Cluster{}, err
		}
		ops = append(ops, op)
	}
	resp, err := s.KV.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key("cluster")), "=", 0)).Then(ops...).Commit()
	if err != nil {
		return Cluster{}, fmt.Errorf("bootstrapping the cluster: %w", err)
	}
	if !resp.Succeeded {
		return s.Cluster(ctx)
	}
	return c, nil
}

// Cluster returns the cluster's identity.
func (s *Store) Cluster(ctx context.Context) (Cluster, error) {
	var c Cluster
	_, err := s.get(ctx, key("cluster"), &c)
	return c, err
}

// CA returns the cluster CA.
func (s *Store) CA(ctx context.Context) (KeyPair, error) {
	var kp KeyPair
	_, err := s.get(ctx, key("ca"), &kp)
	return kp, err
}

// TokenKey returns the token-signing key and its certificate.
func (s *Store) TokenKey(ctx context.Context) (KeyPair, error) {
	var kp KeyPair
	_, err := s.get(ctx, key("keys", "token"), &kp)
	return kp, err
}

// Settings returns the cluster settings.
func (s *Store) Settings(ctx context.Context) (Settings, int64, error) {
	var st Settings
	rev, err := s.get(ctx, key("settings"), &st)
	return st, rev, err
}

// UpdateSettings changes the settings with fn.
func (s *Store) UpdateSettings(ctx context.Context, fn func(*Settings) error) (Settings, error) {
	return mutate(ctx, s, key("settings"), func(st *Settings) error {
		if err := fn(st); err != nil {
			return err
		}
		return st.Storage.Validate()
	})
}

// SettingsKey is watched by replicas to apply setting changes.
func SettingsKey() string { return key("settings") }

func putOp(k string, v any) (clientv3.Op, error) {
	b, err := jsonMarshal(v)
	if err != nil {
		return clientv3.Op{}, err
	}
	return clientv3.OpPut(k, string(b)), nil
}

// RefreshToken is a long-lived token `docker login` stores instead of the
// password. Only its hash is kept.
type RefreshToken struct {
	User      string    `json:"user"`
	ClientID  string    `json:"clientID,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt,omitempty"` // zero: issued before expiry existed, in a cluster below schema 2; counts from CreatedAt
	// Epoch is the account's token epoch at issue: a refresh token ends
	// with it, like access tokens, even if a revocation write was lost.
	Epoch string `json:"epoch,omitempty"`
}

// maxTxnDeletes bounds the deletes of one transaction (etcd allows 128
// operations per transaction; each token is two keys).
const maxTxnDeletes = 100

// MaxRefreshTokensPerUser bounds a user's refresh tokens: each docker login
// makes one, and a CI job that logs in on every run would otherwise grow
// the metadata without end. Past it the oldest goes.
const MaxRefreshTokensPerUser = 50

func (rt RefreshToken) expired(now time.Time) bool {
	exp := rt.ExpiresAt
	if exp.IsZero() {
		exp = rt.CreatedAt.Add(DefaultRefreshTokenMaxAge)
	}
	return !now.Before(exp)
}

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// IssueRefreshToken creates and stores a refresh token for user that lives
// for lifetime, dropping the user's expired tokens and, past
// MaxRefreshTokensPerUser, the oldest. The write is conditional on the
// user's tokens being as read, so concurrent logins cannot pass the cap.
func (s *Store) IssueRefreshToken(ctx context.Context, user Account, clientID string, lifetime time.Duration) (string, error) {
	tok := "rt-" + randomHex(32)
	h := tokenHash(tok)
	now := time.Now().UTC()
	rt := RefreshToken{User: user.Name, ClientID: clientID, CreatedAt: now, ExpiresAt: now.Add(lifetime), Epoch: user.Epoch}
	a, err := putOp(key("tokens", h), rt)
	if err != nil {
		return "", err
	}
	b, err := putOp(key("usertokens", user.Name, h), rt)
	if err != nil {
		return "", err
	}
	prefix := dir("usertokens", user.Name)
	for {
		resp, err := s.KV.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			return "", fmt.Errorf("reading %s's refresh tokens: %w", user.Name, err)
		}
		var drop []clientv3.Op
		type held struct {
			hash string
			rt   RefreshToken
		}
		var live []held
		for _, kv := range resp.Kvs {
			var old RefreshToken
			oh := string(kv.Key)[len(prefix):]
			if json.Unmarshal(kv.Value, &old) != nil || old.expired(now) {
				drop = append(drop, clientv3.OpDelete(string(kv.Key)), clientv3.OpDelete(Prefix+"tokens/"+oh))
				continue
			}
			live = append(live, held{oh, old})
		}
		sort.Slice(live, func(i, j int) bool { return live[i].rt.CreatedAt.Before(live[j].rt.CreatedAt) })
		for len(live) >= MaxRefreshTokensPerUser {
			drop = append(drop, clientv3.OpDelete(prefix+live[0].hash), clientv3.OpDelete(Prefix+"tokens/"+live[0].hash))
			live = live[1:]
		}
		if len(drop) > maxTxnDeletes {
			// Many tokens to go (a user of a version without the cap):
			// delete a batch of them (safe on its own), then look again.
			if _, err := s.KV.Txn(ctx).Then(drop[:maxTxnDeletes]...).Commit(); err != nil {
				return "", fmt.Errorf("dropping old refresh tokens: %w", err)
			}
			continue
		}
		ops := append([]clientv3.Op{a, b}, drop...)
		t, err := s.KV.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(prefix), "<", resp.Header.Revision+1).WithPrefix()).
			Then(ops...).Commit()
		if err != nil {
			return "", fmt.Errorf("storing a refresh token: %w", err)
		}
		if t.Succeeded {
			return tok, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
	}
}

// LookupRefreshToken returns the record of a token that has not expired.
func (s *Store) LookupRefreshToken(ctx context.Context, tok string, now time.Time) (RefreshToken, error) {
	var rt RefreshToken
	if _, err := s.get(ctx, key("tokens", tokenHash(tok)), &rt); err != nil {
		return rt, err
	}
	if rt.expired(now) {
		return rt, fmt.Errorf("refresh token expired at %s: %w", rt.ExpiresAt.Format(time.RFC3339), ErrNotFound)
	}
	return rt, nil
}

// RefreshTokenCount is how many refresh tokens user holds.
func (s *Store) RefreshTokenCount(ctx context.Context, user string) (int64, error) {
	resp, err := s.KV.Get(ctx, dir("usertokens", user), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Count, nil
}

// RevokeRefreshTokens removes every refresh token of user, in batches that
// fit a transaction.
func (s *Store) RevokeRefreshTokens(ctx context.Context, user string) error {
	resp, err := s.KV.Get(ctx, dir("usertokens", user), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return err
	}
	var ops []clientv3.Op
	for _, kv := range resp.Kvs {
		h := string(kv.Key)[len(dir("usertokens", user)):]
		ops = append(ops, clientv3.OpDelete(string(kv.Key)), clientv3.OpDelete(Prefix+"tokens/"+h))
	}
	for len(ops) > 0 {
		n := min(len(ops), maxTxnDeletes)
		if _, err := s.KV.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}

// ReplicaReport is a replica's last health report.
type ReplicaReport struct {
	ID      string    `json:"id"`
	Healthy bool      `json:"healthy"`
	Error   string    `json:"error,omitempty"`
	Version string    `json:"version"`
	Schema  int       `json:"schema,omitempty"` // the metadata schema of its build (SchemaVersion); none before schema versions
	At      time.Time `json:"at"`
}

// ReportHealth records a replica's health.
func (s *Store) ReportHealth(ctx context.Context, r ReplicaReport) error {
	return s.put(ctx, key("replicas", r.ID), r)
}

// HealthReports lists every replica's last report.
func (s *Store) HealthReports(ctx context.Context) ([]ReplicaReport, error) {
	return list[ReplicaReport](ctx, s, dir("replicas"))
}

// DeleteHealthReport forgets a removed replica: its health report and its
// draining mark.
func (s *Store) DeleteHealthReport(ctx context.Context, id string) error {
	_, err := s.KV.Txn(ctx).Then(clientv3.OpDelete(key("replicas", id)), clientv3.OpDelete(key("draining", id))).Commit()
	return err
}

// Drain marks a replica as leaving or restarting (remove, upgrade): its
// /_ping fails from its next health probe on, so load balancers stop sending
// it requests before it stops.
func (s *Store) Drain(ctx context.Context, id string) error {
	return s.put(ctx, key("draining", id), map[string]any{"since": time.Now().UTC()})
}

// Undrain lifts a replica's drain mark: an upgraded replica serves again.
func (s *Store) Undrain(ctx context.Context, id string) error {
	_, err := s.KV.Delete(ctx, key("draining", id))
	return err
}

// Draining reports whether a replica is marked as leaving. A serializable
// read: the health probe asks it every interval, quorum or not.
func (s *Store) Draining(ctx context.Context, id string) (bool, error) {
	resp, err := s.KV.Get(ctx, key("draining", id), clientv3.WithSerializable(), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	return resp.Count > 0, nil
}
