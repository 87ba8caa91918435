package security_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

const (
	admin   = registrytest.AdminUser
	adminPW = registrytest.AdminPassword
)

// probe is one attack: it returns nil when the replica held, or what broke.
// It may also fail through t (a setup step that did not work): that counts
// as broke too, so one broken probe never hides the others.
type probe struct {
	name string
	run  func(t *testing.T, p *report)
}

// report collects what a probe measured and whether it held.
type report struct {
	mu     sync.Mutex
	notes  []string
	broken []string
}

// notef records a measurement for the probe's line.
func (p *report) notef(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
}

// brokef records what broke; the probe goes on measuring the rest.
func (p *report) brokef(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.broken = append(p.broken, fmt.Sprintf(format, args...))
}

// check records what broke unless ok.
func (p *report) check(ok bool, format string, args ...any) {
	if !ok {
		p.brokef(format, args...)
	}
}

// TestAttack runs every probe against replicas of its own and prints one
// line per probe, then the totals. `make security` runs it; `make test`
// runs it after the unit tests.
func TestAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("the attack harness takes minutes: make security")
	}
	probes := []probe{
		{"token-scope-flood", tokenScopeFlood},
		{"login-flood", loginFlood},
		{"timing", loginTiming},
		{"name-reuse-account", nameReuseAccount},
		{"name-reuse-org", nameReuseOrg},
		{"name-reuse-repo", nameReuseRepo},
		{"pull-token-on-admin-api", pullTokenOnAdminAPI},
		{"csrf", csrf},
		{"slow-body", slowBody},
		{"lax-json", laxJSON},
		{"unauthenticated-manifest-put", unauthenticatedManifestPut},
		{"revocation", revocation},
		{"hidden-repo-create", hiddenRepoCreate},
		{"account-visibility", accountVisibility},
		{"realm-and-redirect", realmAndRedirect},
		{"tls", tlsProbe},
		{"refresh-token-cap", refreshTokenCap},
		{"identity-local-takeover", identityLocalTakeover},
		{"identity-ldap-filter", identityLDAPFilter},
		{"identity-source-down", identitySourceDown},
		{"identity-deactivated-token", identityDeactivatedToken},
	}
	var held, broke int
	for _, pr := range probes {
		t.Run(pr.name, func(t *testing.T) {
			p := &report{}
			start := time.Now()
			finished := false
			// Deferred so that a probe whose setup failed (t.Fatal) still
			// prints its line.
			defer func() {
				p.mu.Lock()
				defer p.mu.Unlock()
				if !finished || t.Failed() {
					p.broken = append(p.broken, "the probe could not finish; see the test log above")
				}
				var line string
				if len(p.broken) == 0 {
					held++
					line = "held"
				} else {
					broke++
					line = "broke: " + strings.Join(p.broken, "; ")
				}
				if len(p.notes) > 0 {
					line += " (" + strings.Join(p.notes, ", ") + ")"
				}
				fmt.Printf("probe %s: %s [%.1f s]\n", pr.name, line, time.Since(start).Seconds())
				if len(p.broken) > 0 && finished {
					t.Errorf("%s broke: %s", pr.name, strings.Join(p.broken, "; "))
				}
			}()
			pr.run(t, p)
			finished = true
		})
	}
	fmt.Printf("security: %d held, %d broke\n", held, broke)
}

// startReplica starts a fresh single-replica cluster for one probe, after
// mutate (if any) adjusted its options.
func startReplica(t *testing.T, mutate func(*registry.Options)) *registrytest.Replica {
	t.Helper()
	o := registrytest.Options(t, filepath.Join(t.TempDir(), "data"))
	if mutate != nil {
		mutate(&o)
	}
	return registrytest.Start(t, o)
}

// newClient is an HTTPS client of its own (its own connections) that trusts
// r's CA and follows no redirect.
func newClient(r *registrytest.Replica, timeout time.Duration) *http.Client {
	return newClientFrom(r, timeout, "")
}

// newClientFrom is newClient connecting from source address from (a
// loopback address such as 127.0.1.7; "" for the default), so that the
// replica sees clients on different hosts.
func newClientFrom(r *registrytest.Replica, timeout time.Duration, from string) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.CACertPEM())
	d := &net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "dtr-replica"},
			DialContext:         d.DialContext,
			MaxIdleConnsPerHost: 64,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// apiMust calls the admin API as admin and fails the probe unless the
// status is want.
func apiMust(t *testing.T, r *registrytest.Replica, method, path string, in any, want int) {
	t.Helper()
	if got := r.API(t, admin, adminPW, method, path, in, nil); got != want {
		t.Fatalf("setup: %s %s: %d, want %d", method, path, got, want)
	}
}

// createUser creates a user account through the admin API.
func createUser(t *testing.T, r *registrytest.Replica, name, password string) {
	t.Helper()
	apiMust(t, r, "POST", "/api/v0/accounts", map[string]any{"name": name, "password": password}, 201)
}

// createOrg creates an organization through the admin API.
func createOrg(t *testing.T, r *registrytest.Replica, name string) {
	t.Helper()
	apiMust(t, r, "POST", "/api/v0/accounts", map[string]any{"name": name, "isOrg": true}, 201)
}

// pushImage pushes a one-layer image as admin and returns it.
func pushImage(t *testing.T, r *registrytest.Replica, user, password, repo, tag string) registrytest.Image {
	t.Helper()
	tok := r.Token(t, user, password, "repository:"+repo+":push,pull")
	img, st := r.PushImage(t, tok, repo, tag, []byte("layer of "+repo+":"+tag+" "+strconv.FormatInt(time.Now().UnixNano(), 10)))
	if st != http.StatusCreated {
		t.Fatalf("setup: pushing %s:%s as %s: %d", repo, tag, user, st)
	}
	return img
}

// manifestAccept is what a pull sends.
var manifestAccept = map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}

// pullStatus is the status of GET /v2/<repo>/manifests/<ref> with a token
// for user (anonymous when user is "").
func pullStatus(t *testing.T, r *registrytest.Replica, user, password, repo, ref string) int {
	t.Helper()
	tok := r.Token(t, user, password, "repository:"+repo+":pull")
	st, _, _ := r.Do(t, "GET", "/v2/"+repo+"/manifests/"+ref, tok, nil, manifestAccept)
	return st
}

// tokenAccess is one entry of a token's access claim.
type tokenAccess struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// claims decodes a JWT's payload (no verification: the harness reads what
// the server put in its own token).
func claims(raw string) (access []tokenAccess, jti string, err error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, "", fmt.Errorf("a JWT has 3 parts, this one %d", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, "", err
	}
	var c struct {
		Access []tokenAccess `json:"access"`
		JTI    string        `json:"jti"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, "", err
	}
	return c.Access, c.JTI, nil
}

// rss is this process's resident set size (the replica runs in it) after a
// full collection that returns freed memory to the system, so that it
// measures what the replica keeps, not garbage waiting for the collector.
func rss() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return rawRSS()
}

// rawRSS is VmRSS from /proc/self/status, in bytes.
func rawRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// mib renders bytes as MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// percentile is the p-th percentile (0..100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// ms renders a duration in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// lockedBuffer is a log sink that goroutines write while the probe reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// drain reads and closes a response body so its connection is reused.
func drain(resp *http.Response) []byte {
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return b
}

// poll calls fn every interval until it answers true or within has passed;
// it returns how long that took and whether fn answered true.
func poll(within, interval time.Duration, fn func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if fn() {
			return time.Since(start), true
		}
		if time.Since(start) > within {
			return time.Since(start), false
		}
		time.Sleep(interval)
	}
}
