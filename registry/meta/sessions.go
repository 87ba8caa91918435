package meta

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Session is a web console sign-in. It lives in the metadata store, not in
// a replica's memory, so that every replica behind a load balancer accepts
// it. Only the hash of the session's cookie value is a key; the value
// itself is never stored.
type Session struct {
	User string `json:"user"`
	// Epoch is the account's token epoch at sign-in: a password change,
	// deactivation or admin-flag change ends the session, as it ends tokens.
	Epoch string `json:"epoch"`
	// CSRF is the token every form and call that changes something must
	// carry (a synchronizer token, never in a cookie).
	CSRF      string    `json:"csrf"`
	CreatedAt time.Time `json:"createdAt"`
	LastSeen  time.Time `json:"lastSeen"`
	ExpiresAt time.Time `json:"expiresAt"` // absolute: no activity extends it
	// IdleFor ends the session that long after LastSeen (nanoseconds).
	IdleFor time.Duration `json:"idleFor"`
}

// Expired reports whether the session has ended at now, and why.
func (s Session) Expired(now time.Time) (bool, string) {
	switch {
	case !now.Before(s.ExpiresAt):
		return true, "signed in too long ago"
	case s.IdleFor > 0 && !now.Before(s.LastSeen.Add(s.IdleFor)):
		return true, "idle too long"
	}
	return false, ""
}

// ErrSessionEnded means a session does not exist (signed out, or removed
// after it expired).
var ErrSessionEnded = errors.New("session ended")

// CreateSession stores a new session under the hash of its cookie value.
func (s *Store) CreateSession(ctx context.Context, cookieValue string, sess Session) error {
	if err := s.create(ctx, key("sessions", tokenHash(cookieValue)), sess); err != nil {
		return fmt.Errorf("storing a console session: %w", err)
	}
	return nil
}

// Session reads the session of a cookie value, with its revision.
func (s *Store) Session(ctx context.Context, cookieValue string) (Session, int64, error) {
	var sess Session
	rev, err := s.get(ctx, key("sessions", tokenHash(cookieValue)), &sess)
	if errors.Is(err, ErrNotFound) {
		return sess, 0, ErrSessionEnded
	}
	return sess, rev, err
}

// TouchSession records activity: LastSeen becomes at. A conflict (another
// request of the same session touched it first) is not an error.
func (s *Store) TouchSession(ctx context.Context, cookieValue string, sess Session, rev int64, at time.Time) error {
	sess.LastSeen = at
	err := s.update(ctx, key("sessions", tokenHash(cookieValue)), rev, sess)
	if errors.Is(err, ErrConflict) {
		return nil
	}
	return err
}

// DeleteSession ends a session (sign out); an ended one is no error.
func (s *Store) DeleteSession(ctx context.Context, cookieValue string) error {
	_, err := s.del(ctx, key("sessions", tokenHash(cookieValue)), false)
	return err
}

// MaxSessionsPerUser bounds one account's console sessions: past it, a
// sign-in ends the account's oldest.
const MaxSessionsPerUser = 20

// PruneSessions removes the sessions that ended before now and, of user's
// sessions, the oldest beyond MaxSessionsPerUser-1 (room for the one being
// created); it returns how many it removed. Sign-in calls it, so that
// abandoned sessions do not grow the metadata.
func (s *Store) PruneSessions(ctx context.Context, user string, now time.Time) (int, error) {
	resp, err := s.KV.Get(ctx, dir("sessions"), clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("listing console sessions: %w", err)
	}
	type userSession struct {
		key     string
		created time.Time
	}
	var ops []clientv3.Op
	var mine []userSession
	for _, kv := range resp.Kvs {
		var sess Session
		if jsonUnmarshal(kv.Value, &sess) != nil {
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			continue
		}
		if ended, _ := sess.Expired(now); ended {
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		} else if sess.User == user {
			mine = append(mine, userSession{string(kv.Key), sess.CreatedAt})
		}
	}
	if extra := len(mine) - (MaxSessionsPerUser - 1); extra > 0 {
		sort.Slice(mine, func(i, j int) bool { return mine[i].created.Before(mine[j].created) })
		for _, m := range mine[:extra] {
			ops = append(ops, clientv3.OpDelete(m.key))
		}
	}
	n := len(ops)
	for len(ops) > 0 {
		k := min(len(ops), maxTxnDeletes)
		if _, err := s.KV.Txn(ctx).Then(ops[:k]...).Commit(); err != nil {
			return 0, fmt.Errorf("removing ended console sessions: %w", err)
		}
		ops = ops[k:]
	}
	return n, nil
}
