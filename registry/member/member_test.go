package member

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/pki"
)

// Every test runs real members on loopback; the budget covers the 5 s the
// leader refuses membership changes after each promotion.
const testTimeout = 45 * time.Second

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// freeURL returns a loopback URL on a port nobody listens on, and that no
// other test in this process has been given.
func freeURL(t *testing.T, scheme string) string {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portsMu.Lock()
		taken := ports[port]
		ports[port] = true
		portsMu.Unlock()
		if !taken {
			return fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
		}
	}
}

func testConfig(t *testing.T, name, token string) Config {
	t.Helper()
	peer := freeURL(t, "http")
	return Config{
		Name:          name,
		Dir:           filepath.Join(t.TempDir(), name),
		PeerListen:    peer,
		PeerAdvertise: peer,
		ClientSocket:  socketPath(t),
		ClusterToken:  token,
		StartTimeout:  20 * time.Second,
	}
}

// socketPath returns a client socket path in a fresh private directory
// under the system temp dir: t.TempDir's paths, named after the test, can
// pass the 107 bytes Linux allows a unix socket path.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dtr-member-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "etcd.sock")
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// start starts a member and closes it when the test ends.
func start(t *testing.T, ctx context.Context, cfg Config) *Member {
	t.Helper()
	m, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// join adds cfg as a learner through via, starts it and promotes it; it
// returns the config the member was started with.
func join(t *testing.T, ctx context.Context, via *Member, cfg Config) (*Member, Config) {
	t.Helper()
	id, initial, err := via.AddLearner(ctx, cfg.Name, cfg.PeerAdvertise)
	if err != nil {
		t.Fatalf("AddLearner(%s): %v", cfg.Name, err)
	}
	if !strings.Contains(initial, cfg.Name+"="+cfg.PeerAdvertise) {
		t.Fatalf("AddLearner(%s) initialCluster %q does not name the new member", cfg.Name, initial)
	}
	cfg.Join, cfg.InitialCluster = true, initial
	m := start(t, ctx, cfg)
	if m.ID() != id {
		t.Fatalf("joined member %s has ID %x, AddLearner returned %x", cfg.Name, m.ID(), id)
	}
	if err := via.Promote(ctx, id); err != nil {
		t.Fatalf("Promote(%s): %v", cfg.Name, err)
	}
	// Wait until the new member has applied its promotion itself: a leader
	// closed before that cannot hand leadership to it, and etcd then spends
	// its whole 7 s request timeout trying before it stops.
	eventually(t, 5*time.Second, cfg.Name+" sees itself as a voter", func() error {
		ms, err := m.Members(ctx)
		if err == nil && !isVoter(ms, id) {
			err = fmt.Errorf("members %+v", ms)
		}
		return err
	})
	return m, cfg
}

func isVoter(ms []Info, id uint64) bool {
	for _, i := range ms {
		if i.ID == id {
			return !i.IsLearner
		}
	}
	return false
}

// newCluster founds a cluster on the first config and joins the others one by one.
func newCluster(t *testing.T, ctx context.Context, cfgs ...Config) ([]*Member, []Config) {
	t.Helper()
	ms := []*Member{start(t, ctx, cfgs[0])}
	for i := 1; i < len(cfgs); i++ {
		m, c := join(t, ctx, ms[0], cfgs[i])
		ms, cfgs[i] = append(ms, m), c
	}
	return ms, cfgs
}

// eventually polls cond until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantVoters checks that m sees exactly n members, all voters.
func wantVoters(ctx context.Context, m *Member, n int) error {
	ms, err := m.Members(ctx)
	if err != nil {
		return err
	}
	voters := 0
	for _, i := range ms {
		if !i.IsLearner && i.Name != "" {
			voters++
		}
	}
	if len(ms) != n || voters != n {
		return fmt.Errorf("want %d voters, have %+v", n, ms)
	}
	return nil
}

func put(t *testing.T, ctx context.Context, m *Member, k, v string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := m.Client().Put(ctx, k, v); err != nil {
		t.Fatalf("Put(%s) on %s: %v", k, m.cfg.Name, err)
	}
}

func get(ctx context.Context, m *Member, k string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := m.Client().Get(ctx, k)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("key %s not found on %s", k, m.cfg.Name)
	}
	return string(resp.Kvs[0].Value), nil
}

func wantValue(t *testing.T, ctx context.Context, m *Member, k, want string) {
	t.Helper()
	eventually(t, 5*time.Second, "reading "+k+" on "+m.cfg.Name, func() error {
		got, err := get(ctx, m, k)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s = %q, want %q", k, got, want)
		}
		return nil
	})
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	good := Config{
		Name: "r1", Dir: filepath.Join(dir, "etcd"), ClusterToken: "dtr-test",
		PeerListen: "http://127.0.0.1:12380", PeerAdvertise: "http://127.0.0.1:12380",
		ClientSocket: ClientSocketIn(dir),
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // "" means valid
	}{
		{"valid single member", func(*Config) {}, ""},
		{"valid joiner without token", func(c *Config) {
			c.Join, c.ClusterToken, c.InitialCluster = true, "", "r0=http://10.0.0.1:12380,r1=http://127.0.0.1:12380"
		}, ""},
		{"empty name", func(c *Config) { c.Name = "" }, "Name is empty"},
		{"name with separator", func(c *Config) { c.Name = "a=b" }, "must not contain"},
		{"relative dir", func(c *Config) { c.Dir = "etcd" }, "absolute path"},
		{"peer URL without port", func(c *Config) { c.PeerListen = "http://127.0.0.1" }, "scheme://host:port"},
		{"peer URL wrong scheme", func(c *Config) { c.PeerAdvertise = "unix://x:1" }, "http:// or https://"},
		{"https peers without TLS", func(c *Config) {
			c.PeerListen, c.PeerAdvertise = "https://127.0.0.1:12380", "https://127.0.0.1:12380"
		}, "PeerTLS is nil"},
		{"TLS files missing", func(c *Config) {
			c.PeerTLS = &TLSFiles{CertFile: filepath.Join(dir, "no.pem"), KeyFile: "k", CAFile: "ca"}
		}, "PeerTLS.CertFile"},
		{"no client socket", func(c *Config) { c.ClientSocket = "" }, "ClientSocket is empty"},
		{"client URL on loopback", func(c *Config) { c.ClientSocket = "http://127.0.0.1:12379" }, "only on a unix socket"},
		{"client URL on all addresses", func(c *Config) { c.ClientSocket = "http://0.0.0.0:12379" }, "only on a unix socket"},
		{"client URL with TLS", func(c *Config) { c.ClientSocket = "https://127.0.0.1:12379" }, "only on a unix socket"},
		{"client socket as a URL", func(c *Config) { c.ClientSocket = "unix:///run/etcd.sock" }, "is a URL"},
		{"client socket relative", func(c *Config) { c.ClientSocket = "etcd.sock" }, "clean absolute path"},
		{"client socket unclean", func(c *Config) { c.ClientSocket = "/run/../run/etcd.sock" }, "clean absolute path"},
		{"client socket too long", func(c *Config) { c.ClientSocket = "/" + strings.Repeat("s", MaxClientSocketPath) }, "at most 107"},
		{"client socket in the data dir", func(c *Config) { c.ClientSocket = filepath.Join(c.Dir, "etcd.sock") }, "inside Dir"},
		{"join without initial cluster", func(c *Config) { c.Join = true }, "use the one AddLearner returned"},
		{"initial cluster without self", func(c *Config) { c.InitialCluster = "r0=http://10.0.0.1:12380" }, "does not list this member"},
		{"initial cluster other URL", func(c *Config) { c.InitialCluster = "r1=http://10.0.0.1:12380" }, "but PeerAdvertise is"},
		{"join and force", func(c *Config) {
			c.Join, c.ForceNewCluster, c.InitialCluster = true, true, "r1=http://127.0.0.1:12380"
		}, "exclude each other"},
		{"no token", func(c *Config) { c.ClusterToken = "" }, "ClusterToken is empty"},
		{"bad log level", func(c *Config) { c.LogLevel = "loud" }, "LogLevel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mutate(&cfg)
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.wantErr)
			}
			if tt.wantErr != "" {
				// Start must refuse the same config before touching the disk.
				if _, err := Start(t.Context(), cfg); err == nil {
					t.Fatal("Start accepted an invalid config")
				}
				if _, err := os.Stat(cfg.Dir); !errors.Is(err, os.ErrNotExist) && filepath.IsAbs(cfg.Dir) {
					t.Fatalf("Start created %s for an invalid config", cfg.Dir)
				}
				if _, err := os.Stat(filepath.Dir(ClientSocketIn(dir))); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("Start created the client socket directory for an invalid config")
				}
			}
		})
	}
}

func TestRestartKeepsData(t *testing.T) {
	ctx := testContext(t)
	cfg := testConfig(t, "r1", "dtr-restart")

	m := start(t, ctx, cfg)
	put(t, ctx, m, "/dtr/repo/a", "1")
	wantValue(t, ctx, m, "/dtr/repo/a", "1")
	id := m.ID()
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, open := <-m.Err(); open {
		t.Fatal("Err channel still open after Close")
	}

	m = start(t, ctx, cfg)
	if m.ID() != id {
		t.Fatalf("restarted member ID %x, want %x (the data dir decides identity)", m.ID(), id)
	}
	wantValue(t, ctx, m, "/dtr/repo/a", "1")
	if err := wantVoters(ctx, m, 1); err != nil {
		t.Fatal(err)
	}
}

func TestJoinAsLearnersThenPromote(t *testing.T) {
	ctx := testContext(t)
	cfgs := []Config{testConfig(t, "r1", "dtr-join"), testConfig(t, "r2", "dtr-join"), testConfig(t, "r3", "dtr-join")}
	first := start(t, ctx, cfgs[0])

	members := []*Member{first}
	for i, cfg := range cfgs[1:] {
		m, _ := join(t, ctx, first, cfg)
		members = append(members, m)
		n := i + 2
		for _, mm := range members {
			eventually(t, 5*time.Second, fmt.Sprintf("%s sees %d voters", mm.cfg.Name, n), func() error {
				return wantVoters(ctx, mm, n)
			})
		}
	}

	put(t, ctx, first, "/dtr/tag/latest", "sha256:abc")
	for _, m := range members {
		wantValue(t, ctx, m, "/dtr/tag/latest", "sha256:abc")
		if st := m.Status(ctx); !st.HasQuorum || st.Leader == 0 || len(st.Members) != 3 {
			t.Errorf("Status on %s = %+v, want quorum, a leader and 3 members", m.cfg.Name, st)
		}
	}
}

func TestRemove(t *testing.T) {
	ctx := testContext(t)
	ms, cfgs := newCluster(t, ctx, testConfig(t, "r1", "dtr-remove"), testConfig(t, "r2", "dtr-remove"), testConfig(t, "r3", "dtr-remove"))
	gone := ms[2]

	if err := ms[0].Remove(ctx, gone.ID()); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, m := range ms[:2] {
		eventually(t, 5*time.Second, m.cfg.Name+" sees 2 voters", func() error { return wantVoters(ctx, m, 2) })
	}
	if err := ms[1].Remove(ctx, gone.ID()); err != nil {
		t.Fatalf("second Remove = %v, want nil (already gone is success)", err)
	}

	// The removed member stops itself and says so on Err.
	select {
	case err := <-gone.Err():
		if !errors.Is(err, ErrRemoved) {
			t.Fatalf("removed member's Err = %v, want ErrRemoved", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("removed member did not report on Err within 10 s")
	}
	gone.Close()

	// Its old data dir can never come back: Start says to wipe and re-join.
	old := cfgs[2]
	old.StartTimeout = 10 * time.Second
	began := time.Now()
	_, err := Start(ctx, old)
	t.Logf("Start on the removed member's dir failed after %s: %v", time.Since(began).Round(time.Millisecond), err)
	if !errors.Is(err, ErrRemoved) || !strings.Contains(err.Error(), "wipe") {
		t.Fatalf("Start on a removed member's dir = %v, want ErrRemoved telling to wipe and re-join", err)
	}
}

func TestWipedFounderMustRejoin(t *testing.T) {
	ctx := testContext(t)
	ms, cfgs := newCluster(t, ctx, testConfig(t, "r1", "dtr-wiped"), testConfig(t, "r2", "dtr-wiped"))

	// r1 founded the cluster; with a wiped dir and the full member list it
	// would bootstrap again unless etcd (via r2) recognises it.
	ms[0].Close()
	if err := os.RemoveAll(cfgs[0].Dir); err != nil {
		t.Fatal(err)
	}
	again := cfgs[0]
	again.InitialCluster = cfgs[1].InitialCluster
	began := time.Now()
	_, err := Start(ctx, again)
	t.Logf("Start with a wiped founder dir failed after %s: %v", time.Since(began).Round(time.Millisecond), err)
	if !errors.Is(err, ErrAlreadyBootstrapped) || !strings.Contains(err.Error(), "re-join it as a learner") {
		t.Fatalf("Start with a wiped founder dir = %v, want ErrAlreadyBootstrapped telling to re-join as a learner", err)
	}
}

func TestForceNewCluster(t *testing.T) {
	ctx := testContext(t)

	if _, err := ForceNewCluster(ctx, testConfig(t, "empty", "dtr-force")); err == nil || !strings.Contains(err.Error(), "no member data") {
		t.Fatalf("ForceNewCluster on an empty dir = %v, want a refusal", err)
	}

	ms, cfgs := newCluster(t, ctx, testConfig(t, "r1", "dtr-force"), testConfig(t, "r2", "dtr-force"), testConfig(t, "r3", "dtr-force"))
	survivor := ms[0]
	put(t, ctx, survivor, "/dtr/keep", "yes")
	for _, m := range ms {
		wantValue(t, ctx, m, "/dtr/keep", "yes")
	}

	if _, err := ForceNewCluster(ctx, cfgs[0]); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("ForceNewCluster on a running member = %v, want a refusal", err)
	}

	ms[1].Close()
	ms[2].Close()
	lost := time.Now()
	eventually(t, 5*time.Second, "survivor reports no quorum", func() error {
		began := time.Now()
		st := survivor.Status(ctx)
		if took := time.Since(began); took > 3*time.Second {
			t.Fatalf("Status took %s without quorum, want < 3 s", took)
		}
		if st.HasQuorum {
			return fmt.Errorf("Status = %+v", st)
		}
		if st.Err == "" {
			t.Fatalf("Status without quorum has no Err: %+v", st)
		}
		return nil
	})
	t.Logf("survivor reported no quorum %s after losing it", time.Since(lost).Round(time.Millisecond))
	if took := time.Since(lost); took > 3500*time.Millisecond {
		t.Errorf("HasQuorum false only after %s, want about 2 s", took)
	}

	survivor.Close()
	began := time.Now()
	m, err := ForceNewCluster(ctx, cfgs[0])
	t.Logf("ForceNewCluster took %s", time.Since(began).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("ForceNewCluster: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	// The forced start's fast election pace must not outlive it: a leader
	// with a 100 ms election timeout would step down at every hiccup once
	// replicas join again.
	if ec := m.etcd.Config(); ec.ForceNewCluster || ec.ElectionMs == forcedElectionMs || ec.TickMs == forcedTickMs {
		t.Fatalf("the member ForceNewCluster returns runs forced or at the forced pace: ForceNewCluster=%v TickMs=%d ElectionMs=%d", ec.ForceNewCluster, ec.TickMs, ec.ElectionMs)
	}
	if err := wantVoters(ctx, m, 1); err != nil {
		t.Fatal(err)
	}
	wantValue(t, ctx, m, "/dtr/keep", "yes")
	put(t, ctx, m, "/dtr/after-force", "ok")
	eventually(t, 5*time.Second, "forced member has quorum", func() error {
		if st := m.Status(ctx); !st.HasQuorum || st.Leader != m.ID() {
			return fmt.Errorf("Status = %+v", st)
		}
		return nil
	})
}

// writeTLS issues a peer certificate from ca into dir and returns the files.
func writeTLS(t *testing.T, ca *pki.CA, dir, name string) *TLSFiles {
	t.Helper()
	kp, err := ca.Issue(name, []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &TLSFiles{
		CertFile: filepath.Join(dir, name+".crt"),
		KeyFile:  filepath.Join(dir, name+".key"),
		CAFile:   filepath.Join(dir, name+"-ca.crt"),
	}
	for path, data := range map[string][]byte{f.CertFile: kp.CertPEM, f.KeyFile: kp.KeyPEM, f.CAFile: ca.CertPEM()} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func TestPeerTLS(t *testing.T) {
	ctx := testContext(t)
	ca, err := pki.NewCA("dtr test cluster CA")
	if err != nil {
		t.Fatal(err)
	}
	rogueCA, err := pki.NewCA("someone else's CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tlsConfig := func(name string, ca *pki.CA) Config {
		cfg := testConfig(t, name, "dtr-tls")
		cfg.PeerListen = strings.Replace(cfg.PeerListen, "http://", "https://", 1)
		cfg.PeerAdvertise = cfg.PeerListen
		cfg.PeerTLS = writeTLS(t, ca, dir, name)
		return cfg
	}

	first := start(t, ctx, tlsConfig("r1", ca))

	// A peer whose certificate is not from the cluster CA cannot join.
	rogue := tlsConfig("rogue", rogueCA)
	rogueID, initial, err := first.AddLearner(ctx, rogue.Name, rogue.PeerAdvertise)
	if err != nil {
		t.Fatalf("AddLearner(rogue): %v", err)
	}
	// Only one learner at a time: the next add is refused while it exists.
	if _, _, err := first.AddLearner(ctx, "r2", "https://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "promote it or remove it first") {
		t.Fatalf("second AddLearner = %v, want a one-learner-at-a-time refusal", err)
	}
	rogue.Join, rogue.InitialCluster, rogue.StartTimeout = true, initial, 5*time.Second
	m, err := Start(ctx, rogue)
	t.Logf("rogue Start: %v", err)
	if err == nil {
		m.Close()
		t.Fatal("a member with a certificate from another CA joined")
	} else if !strings.Contains(err.Error(), "certificates") {
		t.Fatalf("rogue Start = %v, want a hint about peer certificates", err)
	}
	// Retrying the join reuses the learner that never started.
	againID, againInitial, err := first.AddLearner(ctx, rogue.Name, rogue.PeerAdvertise)
	if err != nil || againID != rogueID || againInitial != initial {
		t.Fatalf("AddLearner again = %x, %q, %v; want %x, %q (the same learner)", againID, againInitial, err, rogueID, initial)
	}
	// The learner that never started is harmless and can be removed.
	if err := first.Remove(ctx, rogueID); err != nil {
		t.Fatalf("Remove(rogue learner): %v", err)
	}

	second, _ := join(t, ctx, first, tlsConfig("r2", ca))
	for _, m := range []*Member{first, second} {
		eventually(t, 5*time.Second, m.cfg.Name+" sees 2 voters", func() error { return wantVoters(ctx, m, 2) })
	}
	put(t, ctx, first, "/dtr/tls", "mutual")
	wantValue(t, ctx, second, "/dtr/tls", "mutual")
	for _, i := range first.Status(ctx).Members {
		if !strings.HasPrefix(i.PeerURLs[0], "https://") {
			t.Errorf("member %s peer URL %v, want https", i.Name, i.PeerURLs)
		}
	}
}

// relay forwards connections on a new loopback port to target once open is
// closed; before that it refuses them, as a peer whose name does not resolve
// yet. It returns the relay's URL.
func relay(t *testing.T, target string, open <-chan struct{}) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case <-open:
			default:
				c.Close()
				continue
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", strings.TrimPrefix(target, "http://"))
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.Close() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return "http://" + l.Addr().String()
}

// A joiner that cannot reach its peers at first (Swarm names a new task in
// DNS only once it is healthy) keeps asking for joinPeersWait instead of
// failing at once; past that it fails with what to check.
func TestJoinWaitsForUnreachablePeers(t *testing.T) {
	ctx := testContext(t)
	open := make(chan struct{})
	c1 := testConfig(t, "r1", "dtr-late")
	c1.PeerAdvertise = relay(t, c1.PeerListen, open)
	first := start(t, ctx, c1)

	c2 := testConfig(t, "r2", "dtr-late")
	_, initial, err := first.AddLearner(ctx, c2.Name, c2.PeerAdvertise)
	if err != nil {
		t.Fatal(err)
	}
	c2.Join, c2.InitialCluster = true, initial
	time.AfterFunc(2*time.Second, func() { close(open) })
	began := time.Now()
	m := start(t, ctx, c2)
	t.Logf("joined %s after %s with its peer unreachable for the first 2 s", m.cfg.Name, time.Since(began).Round(time.Millisecond))

	defer func(w time.Duration) { joinPeersWait = w }(joinPeersWait)
	joinPeersWait = 2 * time.Second
	c3 := testConfig(t, "r3", "dtr-late")
	c3.Join, c3.InitialCluster = true, "r1=http://127.0.0.1:1,r3="+c3.PeerAdvertise
	began = time.Now()
	_, err = Start(ctx, c3)
	took := time.Since(began)
	t.Logf("a joiner whose peers never answer failed after %s: %v", took.Round(time.Millisecond), err)
	if err == nil || !strings.Contains(err.Error(), "reach those peers") {
		t.Fatalf("Start with unreachable peers = %v, want the error naming what to check", err)
	}
	if took < joinPeersWait || took > joinPeersWait+10*time.Second {
		t.Fatalf("Start with unreachable peers took %s, want about joinPeersWait (%s)", took, joinPeersWait)
	}
}
