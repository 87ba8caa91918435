package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/singleflight"

	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/meta"
)

// Logins checks usernames and passwords for the token server and the admin
// API's Basic auth. A bcrypt comparison costs ~50 ms of CPU, so it is what
// an attacker floods: Logins runs at most a few at a time (the rest of the
// replica keeps its cores), throttles failed attempts per account and per
// source address, and costs the same for unknown users as for known ones,
// so that its timing does not tell which names exist (docs/security.md).
type Logins struct {
	Store *meta.Store
	Log   logrus.FieldLogger
	Now   func() time.Time
	// Hashers is how many password comparisons run at once; default half
	// the CPUs, at least one.
	Hashers int
	// Outcome, when set, hears of every Check's result (nil: succeeded),
	// for the replica's login metrics.
	Outcome func(error)
	// Identity, when set, is the cluster's identity source now (nil while
	// it is local): unknown users and the accounts it made sign in
	// through it (identity.go).
	Identity func() identity.Source

	once    sync.Once
	flights singleflight.Group
	slots   chan struct{}
	hash    *hashers
	waiting atomic.Int32
	key     []byte // HMAC key of the verified-credentials cache

	sources chan struct{} // identity source checks running at once

	mu        sync.Mutex
	byAccount failures
	byAddress failures
	verified  map[[32]byte]verifiedLogin
}

// Throttling: past FreeAccountFailures consecutive failures an account is
// locked for 1 s, doubling with each further failure up to
// MaxAccountLockout; a source address likewise past FreeAddressFailures, up
// to MaxAddressLockout (short: behind a load balancer that does not pass the
// client's address on, every client shares one). A success resets both.
const (
	FreeAccountFailures = 5
	MaxAccountLockout   = time.Minute
	FreeAddressFailures = 20
	MaxAddressLockout   = 10 * time.Second
)

// maxWaiting bounds the logins queued for a hasher; past it a login gets
// ErrBusy at once instead of holding a connection and its memory.
const maxWaiting = 64

// waitForHasher bounds how long a login waits for a hasher.
const waitForHasher = 5 * time.Second

// verifiedFor is how long a verified username and password skip bcrypt
// (while the account's password hash is unchanged): docker sends Basic
// credentials with every token request of a pull when it has no refresh
// token, and the installer with every admin API call.
const verifiedFor = 5 * time.Minute

// maxTracked bounds each of the failure and verified maps.
const maxTracked = 10000

// ErrBusy means too many logins wait for a password check.
var ErrBusy = errors.New("too many logins at once; try again in a few seconds")

// ThrottledError means the account or the client's address failed too
// often: the login is refused without checking the password.
type ThrottledError struct {
	RetryAfter time.Duration
	Reason     string // "account" or "address"
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed logins for this %s; try again in %s", e.Reason, e.RetryAfter.Round(time.Second))
}

type verifiedLogin struct {
	hash string // the password hash the credentials matched
	at   time.Time
}

type failure struct {
	count int
	until time.Time // locked until
	last  time.Time
}

type failures map[string]*failure

// dummyHash is compared against for unknown users, organizations and
// deactivated accounts, so they cost what a known user costs.
var dummyHash = func() []byte {
	h, err := bcrypt.GenerateFromPassword([]byte("dtr-dummy-password-for-timing"), bcrypt.DefaultCost)
	if err != nil {
		panic(err)
	}
	return h
}()

func (l *Logins) init() {
	l.once.Do(func() {
		n := l.Hashers
		if n <= 0 {
			n = max(1, runtime.GOMAXPROCS(0)/2)
		}
		l.slots = make(chan struct{}, n)
		l.hash = startHashers(n)
		l.key = make([]byte, 32)
		if _, err := rand.Read(l.key); err != nil {
			panic(err)
		}
		l.byAccount, l.byAddress = failures{}, failures{}
		l.verified = map[[32]byte]verifiedLogin{}
		l.sources = make(chan struct{}, maxSourceChecks)
	})
}

func (l *Logins) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Check returns the account whose name and password these are. remote is
// the client's address (http.Request.RemoteAddr). Errors: ErrBadCredentials,
// *ThrottledError, ErrBusy, an error wrapping identity.ErrUnavailable (the
// identity source cannot answer), or a metadata error (not the client's
// fault).
func (l *Logins) Check(ctx context.Context, remote, name, pw string) (acc *meta.Account, err error) {
	if l.Outcome != nil {
		defer func() { l.Outcome(err) }()
	}
	l.init()
	addr := clientKey(remote)
	if meta.IsAPITokenSecret(pw) {
		return l.checkAPIToken(ctx, name, addr, pw)
	}
	now := l.now()
	ck := l.credentialKey(name, pw)
	// Credentials verified in the last minutes pass even a locked account:
	// an attacker's failures must not lock out the owner's running
	// clients (the installer, CI jobs), and a hit proves the password.
	// Anything else that is throttled is refused before the account is
	// read: a flood's attempts cost no metadata read either.
	cached := l.verifiedHash(ck, now)
	if cached == "" {
		if err := l.throttled(name, addr, now); err != nil {
			return nil, err
		}
	}
	a, err := l.Store.Account(ctx, name)
	known := err == nil
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		return nil, err
	}
	// A service account's name (org+name) signs in with its tokens only:
	// never a password, never through the identity source.
	if src := l.source(); src != nil && !meta.IsServiceAccountName(name) && (!known || (!a.IsOrg && a.Source != "")) {
		// Local accounts with a password keep signing in locally whatever
		// the source: the break-glass administrators.
		return l.checkSource(ctx, src, remote, addr, name, pw, ck, cached, a, known, now)
	}
	usable := known && !a.IsOrg && a.IsActive && a.PasswordHash != ""
	if usable && cached == a.PasswordHash {
		l.succeeded(name)
		return &a, nil
	}
	if cached != "" {
		if err := l.throttled(name, addr, now); err != nil {
			return nil, err
		}
	}
	hash := dummyHash
	if usable {
		hash = []byte(a.PasswordHash)
	}
	// Concurrent logins with the same credentials against the same hash
	// share one comparison: a CI farm starting 128 jobs of one account
	// pays one bcrypt, not 128 in a queue.
	flight := l.flights.DoChan(string(ck[:])+string(hash), func() (any, error) {
		return l.compare(context.WithoutCancel(ctx), hash, pw, func() error { return l.throttled(name, addr, l.now()) })
	})
	var match bool
	select {
	case res := <-flight:
		if res.Err != nil {
			return nil, res.Err
		}
		match = res.Val.(bool)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if match && usable {
		l.succeeded(name)
		l.remember(ck, a.PasswordHash, now)
		return &a, nil
	}
	if t := l.failed(name, addr, l.now()); t != nil && l.Log != nil {
		l.Log.WithFields(logrus.Fields{"user": name, "remote": remote, "failures": t.count, "lockedFor": t.until.Sub(now).Round(time.Second).String()}).
			Warn("repeated failed logins: throttling")
	}
	return nil, ErrBadCredentials
}

// compare runs one bcrypt comparison on a hasher. still is asked again once
// a hasher is free: logins queued behind a flood's failures are throttled
// without spending one.
func (l *Logins) compare(ctx context.Context, hash []byte, pw string, still func() error) (bool, error) {
	if l.waiting.Add(1) > maxWaiting {
		l.waiting.Add(-1)
		return false, ErrBusy
	}
	ctx, cancel := context.WithTimeout(ctx, waitForHasher)
	defer cancel()
	select {
	case l.slots <- struct{}{}:
		l.waiting.Add(-1)
	case <-ctx.Done():
		l.waiting.Add(-1)
		return false, ErrBusy
	}
	defer func() { <-l.slots }()
	if err := still(); err != nil {
		return false, err
	}
	return l.hash.compare(hash, pw), nil
}

func (l *Logins) credentialKey(name, pw string) [32]byte {
	m := hmac.New(sha256.New, l.key)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write([]byte(pw))
	var k [32]byte
	copy(k[:], m.Sum(nil))
	return k
}

// verifiedHash is the password hash these credentials matched in the last
// verifiedFor, or "".
func (l *Logins) verifiedHash(k [32]byte, now time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v, ok := l.verified[k]; ok && now.Sub(v.at) < verifiedFor {
		return v.hash
	}
	return ""
}

func (l *Logins) remember(k [32]byte, hash string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.verified) >= maxTracked {
		for k, v := range l.verified {
			if now.Sub(v.at) >= verifiedFor {
				delete(l.verified, k)
			}
		}
		if len(l.verified) >= maxTracked {
			clear(l.verified)
		}
	}
	l.verified[k] = verifiedLogin{hash: hash, at: now}
}

func (l *Logins) throttled(name, addr string, now time.Time) error {
	name = accountKey(name)
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.byAccount[name]; f != nil && now.Before(f.until) {
		return &ThrottledError{RetryAfter: f.until.Sub(now), Reason: "account"}
	}
	if f := l.byAddress[addr]; f != nil && now.Before(f.until) {
		return &ThrottledError{RetryAfter: f.until.Sub(now), Reason: "address"}
	}
	return nil
}

// succeeded resets the account's failures. Not the address's: one valid
// account must not buy its holder unlimited guesses at the others.
func (l *Logins) succeeded(name string) {
	name = accountKey(name)
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.byAccount, name)
}

// accountKey is the throttling key of an account name: identity sources
// take names in any case (Alice signs in as alice), so one account's
// failures count together however its name is typed.
func accountKey(name string) string { return strings.ToLower(name) }

// clientKey is the throttling key of a client address: the IP, or its /64
// for IPv6, where one client holds a whole /64.
func clientKey(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() != nil {
		return host
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// failed counts a failure; it returns the account's record when this
// failure locked it, for the log.
func (l *Logins) failed(name, addr string, now time.Time) *failure {
	name = accountKey(name)
	l.mu.Lock()
	defer l.mu.Unlock()
	acc := l.byAccount.add(name, now, FreeAccountFailures, MaxAccountLockout)
	l.byAddress.add(addr, now, FreeAddressFailures, MaxAddressLockout)
	if acc.count > FreeAccountFailures {
		c := *acc
		return &c
	}
	return nil
}

func (fs failures) add(k string, now time.Time, free int, maxLock time.Duration) *failure {
	f := fs[k]
	if f == nil && len(fs) >= maxTracked {
		// Full: forget the unlocked first, oldest failures first in effect
		// (any unlocked one will do); a running lock is never dropped.
		for k, f := range fs {
			if !now.Before(f.until) && now.Sub(f.last) > time.Minute {
				delete(fs, k)
			}
		}
		if len(fs) >= maxTracked {
			for k, f := range fs {
				if !now.Before(f.until) {
					delete(fs, k)
				}
			}
		}
	}
	if f == nil {
		f = &failure{}
		if len(fs) < maxTracked {
			fs[k] = f
		}
	}
	if now.Sub(f.last) > 15*time.Minute {
		f.count = 0 // failures long ago do not add up
	}
	f.count++
	f.last = now
	if over := f.count - free; over > 0 {
		lock := time.Second << min(over-1, 16)
		f.until = now.Add(min(lock, maxLock))
	}
	return f
}
