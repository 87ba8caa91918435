// Package member runs the one embedded etcd member each dtr replica
// contributes to the replicas' shared metadata cluster.
//
// The cluster only ever grows by a learner that is added, started and then
// promoted, one at a time: a voting member that is added but never starts
// can wedge a small cluster, a learner cannot.
package member

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/logutil"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/client/pkg/v3/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const (
	defaultStartTimeout = 60 * time.Second
	defaultLogLevel     = "error"

	// quotaBackendBytes is etcd's current default, pinned so an etcd upgrade
	// cannot silently move the point where writes stop (NOSPACE alarm).
	quotaBackendBytes = 2 << 30

	// retryEvery paces retries of refused membership changes: a learner
	// catching up usually needs well under a second, and the leader's
	// 5 s unhealthy window gains nothing from finer polling.
	retryEvery = 200 * time.Millisecond

	// quorumProbeTimeout bounds the linearizable read Status uses to decide
	// whether a quorum answers; without quorum it would hang forever.
	quorumProbeTimeout = 1500 * time.Millisecond

	// forcedTickMs and forcedElectionMs pace the forced start of an
	// emergency repair, a cluster of one with no peer to disrupt.
	forcedTickMs     = 10
	forcedElectionMs = 100

	// quorumProbeKey is read (count only) to prove a quorum answers.
	quorumProbeKey = "/dtr/member/quorum-probe"
)

// A joining member asks its peers every joinRetryEvery for joinPeersWait:
// long enough for Swarm to name a new task in DNS (a health check interval
// or two), short enough that a real network or certificate problem still
// fails the container and shows in 'docker service ps'. Variables for tests.
var (
	joinRetryEvery = 500 * time.Millisecond
	joinPeersWait  = 15 * time.Second
)

// ErrRemoved marks a start or serve failure because the cluster has removed
// this member: its data dir can never rejoin and must be wiped.
var ErrRemoved = errors.New("member has been removed from the cluster")

// ErrAlreadyBootstrapped marks a start failure because the running cluster
// already knows a member with this name and peer URL, while this data dir
// is empty: the member must be removed and re-joined as a learner.
var ErrAlreadyBootstrapped = errors.New("member has already been bootstrapped")

// TLSFiles are the PEM files securing peer traffic with mutual TLS; all
// certificates come from the cluster CA so peers authenticate each other.
type TLSFiles struct{ CertFile, KeyFile, CAFile string }

// Config describes one member. The data dir decides identity: once
// Dir/member/wal exists, InitialCluster and Join are ignored by etcd and the
// member restarts as whatever it was.
type Config struct {
	Name            string        // the replica ID; the member's name
	Dir             string        // etcd data dir (Dir/member/wal …); absolute
	PeerListen      string        // URL to listen on for peers, e.g. "https://0.0.0.0:12380"
	PeerAdvertise   string        // URL peers reach this member at, e.g. "https://dtr-registry-<id>:12380"
	ClientSocket    string        // local clients' unix socket, made 0600 in a 0700 dir, e.g. ClientSocketIn("/var/lib/dtr")
	InitialCluster  string        // "name=peerURL,..."; empty means just this member
	Join            bool          // join an existing cluster as the learner AddLearner added
	ClusterToken    string        // InitialClusterToken; required unless Join
	ForceNewCluster bool          // prefer the ForceNewCluster function, which also clears it
	PeerTLS         *TLSFiles     // nil: plain http peers (tests on loopback only)
	LogLevel        string        // zap level, default "error"
	StartTimeout    time.Duration // default 60s
	// LowSpace is the free space on Dir's volume under which the member
	// raises its NOSPACE alarm and the cluster refuses writes (space.go);
	// SpaceReserve the size of the reserve file it keeps beside Dir for its
	// last writes. Zero means the defaults (128 MiB, 64 MiB); a negative
	// SpaceReserve keeps no reserve.
	LowSpace     int64
	SpaceReserve int64
}

// Member is a running embedded etcd member and its in-process client.
type Member struct {
	cfg   Config
	etcd  *embed.Etcd
	cli   *clientv3.Client
	id    uint64
	watch *logWatch
	space *spaceGuard

	errc      chan error
	guarded   chan struct{}
	closing   chan struct{}
	forwarded chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Info is one member of the cluster as the local member sees it.
type Info struct {
	ID        uint64
	Name      string // empty for a learner that has not started yet
	PeerURLs  []string
	IsLearner bool
}

// Status is a health snapshot that never hangs, for status pages and checks.
type Status struct {
	ID, Leader uint64 // Leader 0: no leader known
	Revision   int64
	Members    []Info
	HasQuorum  bool    // a linearizable read succeeded within 1.5 s
	Err        string  // why HasQuorum is false, or what else failed
	Alarms     []Alarm // raised etcd alarms (NOSPACE: writes are refused)
}

// Validate checks cfg as Start would, before anything touches the disk or
// network, so a command can reject bad flags early.
func (c Config) Validate() error {
	_, err := c.normalized()
	return err
}

// normalized fills in defaults and validates.
func (c Config) normalized() (Config, error) {
	if c.StartTimeout == 0 {
		c.StartTimeout = defaultStartTimeout
	}
	if c.LogLevel == "" {
		c.LogLevel = defaultLogLevel
	}
	if c.LowSpace == 0 {
		c.LowSpace = DefaultLowSpace
	}
	if c.SpaceReserve == 0 {
		c.SpaceReserve = DefaultSpaceReserve
	}
	if c.LowSpace < 0 {
		return c, fmt.Errorf("etcd member config: LowSpace %d is negative", c.LowSpace)
	}
	if c.Name == "" {
		return c, errors.New("etcd member config: Name is empty; set it to the replica ID")
	}
	if strings.ContainsAny(c.Name, "=, \t\n") {
		return c, fmt.Errorf("etcd member config: Name %q must not contain '=', ',' or spaces (it goes into \"name=peerURL,...\")", c.Name)
	}
	if c.Dir == "" || !filepath.IsAbs(c.Dir) {
		return c, fmt.Errorf("etcd member config: Dir %q must be an absolute path (the member's identity lives there)", c.Dir)
	}
	if c.StartTimeout < 0 {
		return c, fmt.Errorf("etcd member config: StartTimeout %s is negative", c.StartTimeout)
	}
	if _, err := zapcore.ParseLevel(c.LogLevel); err != nil {
		return c, fmt.Errorf("etcd member config: LogLevel %q: use debug, info, warn or error: %w", c.LogLevel, err)
	}

	wantScheme := "http"
	if c.PeerTLS != nil {
		wantScheme = "https"
		for _, f := range []struct{ field, path string }{
			{"CertFile", c.PeerTLS.CertFile}, {"KeyFile", c.PeerTLS.KeyFile}, {"CAFile", c.PeerTLS.CAFile},
		} {
			if f.path == "" {
				return c, fmt.Errorf("etcd member config: PeerTLS.%s is empty; peer mTLS needs a cert, its key and the cluster CA", f.field)
			}
			if _, err := os.Stat(f.path); err != nil {
				return c, fmt.Errorf("etcd member config: PeerTLS.%s: %w", f.field, err)
			}
		}
	}
	for _, u := range []struct{ field, value string }{{"PeerListen", c.PeerListen}, {"PeerAdvertise", c.PeerAdvertise}} {
		pu, err := parseURL(u.field, u.value)
		if err != nil {
			return c, err
		}
		if pu.Scheme != wantScheme {
			if c.PeerTLS == nil {
				return c, fmt.Errorf("etcd member config: %s %q is %s but PeerTLS is nil; give the peer certificates or use http", u.field, u.value, pu.Scheme)
			}
			return c, fmt.Errorf("etcd member config: %s %q must be https when PeerTLS is set", u.field, u.value)
		}
	}
	if err := validateClientSocket(c.ClientSocket, c.Dir); err != nil {
		return c, err
	}

	if c.InitialCluster == "" {
		if c.Join {
			return c, errors.New("etcd member config: Join needs InitialCluster; use the one AddLearner returned")
		}
		c.InitialCluster = c.Name + "=" + c.PeerAdvertise
	}
	urls, err := types.NewURLsMap(c.InitialCluster)
	if err != nil {
		return c, fmt.Errorf("etcd member config: InitialCluster %q must be \"name=peerURL,...\": %w", c.InitialCluster, err)
	}
	self, ok := urls[c.Name]
	if !ok {
		return c, fmt.Errorf("etcd member config: InitialCluster %q does not list this member %q", c.InitialCluster, c.Name)
	}
	if !containsURL(self.StringSlice(), c.PeerAdvertise) {
		return c, fmt.Errorf("etcd member config: InitialCluster gives %s the peer URLs %v, but PeerAdvertise is %q", c.Name, self.StringSlice(), c.PeerAdvertise)
	}
	if c.Join && c.ForceNewCluster {
		return c, errors.New("etcd member config: Join and ForceNewCluster exclude each other: force only a surviving member's existing data")
	}
	if c.ClusterToken == "" && !c.Join {
		return c, errors.New("etcd member config: ClusterToken is empty; use a per-cluster value such as \"dtr-<cluster id>\" so unrelated clusters cannot mix")
	}
	return c, nil
}

func parseURL(field, s string) (*url.URL, error) {
	if s == "" {
		return nil, fmt.Errorf("etcd member config: %s is empty", field)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("etcd member config: %s %q: %w", field, s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("etcd member config: %s %q must be an http:// or https:// URL", field, s)
	}
	if u.Port() == "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("etcd member config: %s %q must be scheme://host:port with no path", field, s)
	}
	return u, nil
}

func containsURL(list []string, s string) bool {
	for _, v := range list {
		if strings.TrimSuffix(v, "/") == strings.TrimSuffix(s, "/") {
			return true
		}
	}
	return false
}

// hasData reports whether dir holds a member's WAL, which makes etcd
// ignore InitialCluster and ClusterState (embed/util.go).
func hasData(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "member", "wal"))
	return err == nil && fi.IsDir()
}

// embedConfig translates a normalized Config into etcd's.
func (c Config) embedConfig(lg *zap.Logger) *embed.Config {
	must := func(s string) url.URL { u, _ := url.Parse(s); return *u } // validated in normalized
	ec := embed.NewConfig()
	ec.Name = c.Name
	ec.Dir = c.Dir
	ec.ListenPeerUrls = []url.URL{must(c.PeerListen)}
	ec.AdvertisePeerUrls = []url.URL{must(c.PeerAdvertise)}
	// etcd binds "unix://" + Host + Path; the empty Host keeps Path whole.
	sock := url.URL{Scheme: "unix", Path: c.ClientSocket}
	ec.ListenClientUrls = []url.URL{sock}
	ec.AdvertiseClientUrls = []url.URL{sock}
	ec.InitialCluster = c.InitialCluster
	ec.InitialClusterToken = c.ClusterToken
	ec.ClusterState = embed.ClusterStateFlagNew
	if c.Join {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	ec.ForceNewCluster = c.ForceNewCluster
	if c.ForceNewCluster {
		// The forced start elects its lone member, then ForceNewCluster
		// closes it at once: etcd's election timeout (1-2 s, for
		// clusters with peers) would be most of an emergency repair.
		ec.TickMs, ec.ElectionMs = forcedTickMs, forcedElectionMs
	}
	if c.PeerTLS != nil {
		ec.PeerTLSInfo = transport.TLSInfo{
			CertFile:       c.PeerTLS.CertFile,
			KeyFile:        c.PeerTLS.KeyFile,
			TrustedCAFile:  c.PeerTLS.CAFile,
			ClientCertAuth: true, // a peer without a cluster-CA cert must not join raft
		}
	}
	// Keep an hour of history for watchers that reconnect, and no more.
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "1h"
	ec.QuotaBackendBytes = quotaBackendBytes
	// These are etcd's defaults; set here because dtr's safety relies on
	// them: reconfiguration that would break quorum is refused, a
	// partitioned member cannot disrupt the leader, one learner at a time.
	ec.StrictReconfigCheck = true
	ec.PreVote = true
	ec.MaxLearners = 1
	// dtr uses the in-process client; the JSON gateway is surface nobody uses.
	ec.EnableGRPCGateway = false
	ec.Logger = "zap"
	ec.LogLevel = c.LogLevel
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	return ec
}

// Start starts the member described by cfg and waits until it serves.
// A fresh dir with Join=false founds a cluster from InitialCluster; a fresh
// dir with Join=true joins as the learner AddLearner added; a dir with data
// restarts the member it holds.
func Start(ctx context.Context, cfg Config) (*Member, error) {
	cfg, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	restart := hasData(cfg.Dir)
	watch := &logWatch{}
	lg, err := newLogger(cfg.LogLevel, watch)
	if err != nil {
		return nil, err
	}
	lg = lg.With(zap.String("dtr-member", cfg.Name))
	if err := prepareClientSocket(cfg.ClientSocket, lg); err != nil {
		return nil, fmt.Errorf("etcd member %s: %w", cfg.Name, err)
	}
	space := newSpaceGuard(cfg, lg)
	if err := space.prepareStart(); err != nil {
		return nil, fmt.Errorf("etcd member %s: %w", cfg.Name, err)
	}

	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()

	// StartEtcd does not take a context and, when joining, can spend many
	// seconds asking unreachable peers; run it aside so ctx and StartTimeout
	// still bound Start. A late result is closed as soon as it arrives.
	type started struct {
		e   *embed.Etcd
		err error
	}
	ch := make(chan started, 1)
	startEtcd := func() {
		go func() {
			e, err := embed.StartEtcd(cfg.embedConfig(lg))
			ch <- started{e, err}
		}()
	}
	abandon := func() {
		go func() {
			if r := <-ch; r.e != nil {
				r.e.Close()
			}
		}()
	}

	startEtcd()
	unreachableUntil := time.Now().Add(joinPeersWait)
	var e *embed.Etcd
	for e == nil {
		select {
		case r := <-ch:
			if r.err == nil {
				if err := secureClientSocket(cfg.ClientSocket); err != nil {
					r.e.Close()
					return nil, fmt.Errorf("etcd member %s: %w", cfg.Name, err)
				}
				e = r.e
				continue
			}
			if !cfg.Join || restart || !peersUnreachable(r.err) || time.Now().After(unreachableUntil) {
				return nil, startError(cfg, restart, r.err, watch)
			}
			// A joiner's peers may not resolve yet: Swarm names a task in
			// DNS only once it is healthy, seconds after it serves. Asking
			// again costs less than a container restart.
			lg.Info("the cluster's peers do not answer yet; asking again", zap.Error(r.err))
			select {
			case <-time.After(joinRetryEvery):
				startEtcd()
			case <-timer.C:
				return nil, startError(cfg, restart, r.err, watch)
			case <-ctx.Done():
				return nil, notReadyError(cfg, restart, ctx.Err())
			}
		case <-timer.C:
			abandon()
			return nil, notReadyError(cfg, restart, fmt.Errorf("not ready after %s", cfg.StartTimeout))
		case <-ctx.Done():
			abandon()
			return nil, notReadyError(cfg, restart, ctx.Err())
		}
	}

	select {
	case <-e.Server.ReadyNotify():
	case <-e.Server.StopNotify():
		e.Close()
		return nil, stoppedError(cfg, watch)
	case err := <-e.Err():
		e.Close()
		if err == nil {
			err = errors.New("a listener stopped during start")
		}
		return nil, startError(cfg, restart, err, watch)
	case <-timer.C:
		e.Close()
		if watch.removed() {
			return nil, stoppedError(cfg, watch)
		}
		return nil, notReadyError(cfg, restart, fmt.Errorf("not ready after %s", cfg.StartTimeout))
	case <-ctx.Done():
		// Stopping (SIGTERM): without quorum, etcd's Close can take longer
		// than Swarm's grace period; the WAL is synced, so do not wait long.
		closeWithin(e, 3*time.Second)
		return nil, notReadyError(cfg, restart, ctx.Err())
	}

	m := &Member{
		cfg:       cfg,
		etcd:      e,
		cli:       v3client.New(e.Server),
		id:        uint64(e.Server.MemberID()),
		watch:     watch,
		space:     space,
		errc:      make(chan error, 4),
		closing:   make(chan struct{}),
		forwarded: make(chan struct{}),
		guarded:   make(chan struct{}),
	}
	go m.forwardErrors()
	go m.guardSpace()
	return m, nil
}

// peersUnreachable reports whether a joining member failed only because no
// peer in its InitialCluster answered (etcd has no typed error for it).
func peersUnreachable(err error) bool {
	return strings.Contains(err.Error(), "could not retrieve cluster information")
}

// closeWithin closes e, giving up waiting after d.
func closeWithin(e *embed.Etcd, d time.Duration) {
	done := make(chan struct{})
	go func() { e.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// startError turns a failed start into what the operator must do.
func startError(cfg Config, restart bool, err error, watch *logWatch) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "has already been bootstrapped"):
		// etcd has no typed error for this; its message is the only signal.
		return fmt.Errorf("etcd member %s: %w (%v): the running cluster already has this member but %s holds no data; "+
			"remove the member on a healthy replica, wipe %s, then re-join it as a learner (AddLearner, then Start with Join)",
			cfg.Name, ErrAlreadyBootstrapped, err, cfg.Dir, cfg.Dir)
	case strings.Contains(msg, "permanently removed"):
		return removedError(cfg, msg)
	case watch.removed():
		return removedError(cfg, watch.removal())
	case strings.Contains(msg, "address already in use"):
		return fmt.Errorf("etcd member %s: %w: another process (or an earlier member in this process) holds %s; stop it first",
			cfg.Name, err, cfg.PeerListen)
	case cfg.Join && !restart:
		return fmt.Errorf("etcd member %s: joining via %s: %w: the member must first be added with AddLearner on a healthy member, "+
			"be started with exactly the InitialCluster it returned, and reach those peers (network, peer certificates from the cluster CA)",
			cfg.Name, cfg.InitialCluster, err)
	default:
		return fmt.Errorf("etcd member %s: starting on %s: %w", cfg.Name, cfg.Dir, err)
	}
}

func removedError(cfg Config, cause string) error {
	return fmt.Errorf("etcd member %s: %w (%s): its data in %s can never rejoin; wipe %s and re-join it as a learner (AddLearner on a healthy member, then Start with Join)",
		cfg.Name, ErrRemoved, cause, cfg.Dir, cfg.Dir)
}

// stoppedError explains a server that stopped on its own before Close.
func stoppedError(cfg Config, watch *logWatch) error {
	if watch.removed() {
		return removedError(cfg, watch.removal())
	}
	if r := watch.reason(); r != "" {
		return fmt.Errorf("etcd member %s stopped unexpectedly: %s; see the etcd log for %s", cfg.Name, r, cfg.Dir)
	}
	return fmt.Errorf("etcd member %s stopped unexpectedly; see the etcd log (LogLevel warn) for %s", cfg.Name, cfg.Dir)
}

// notReadyError says what to check when the member did not become ready.
func notReadyError(cfg Config, restart bool, cause error) error {
	u, _ := types.NewURLsMap(cfg.InitialCluster) // validated in normalized
	switch {
	case !restart && !cfg.Join && len(u) == 1:
		return fmt.Errorf("etcd member %s: %w: a new single member should be ready within seconds; check that %s is writable and fast (etcd fsyncs its WAL) and the etcd log",
			cfg.Name, cause, cfg.Dir)
	case !restart && cfg.Join:
		return fmt.Errorf("etcd member %s: %w: a joining learner must reach the members in %s at their peer URLs "+
			"(network, firewall, peer certificates issued by the cluster CA with SANs for the peer host names) while they hold quorum",
			cfg.Name, cause, cfg.InitialCluster)
	case restart:
		return fmt.Errorf("etcd member %s: %w: it needs a quorum of its cluster; check that the other members are running and reachable at their peer URLs "+
			"(network, firewall, peer certificates issued by the cluster CA with SANs for the peer host names); "+
			"if they are lost for good, use ForceNewCluster on the most up-to-date surviving voter",
			cfg.Name, cause)
	default:
		return fmt.Errorf("etcd member %s: %w: a new multi-member cluster needs a quorum of %s started at once and reachable at their peer URLs",
			cfg.Name, cause, cfg.InitialCluster)
	}
}

// forwardErrors reports serve errors, and a server that stops on its own
// (removed from the cluster, disk failure), on Err until Close.
func (m *Member) forwardErrors() {
	defer close(m.forwarded)
	send := func(err error) bool {
		select {
		case m.errc <- err:
			return true
		case <-m.closing:
			return false
		}
	}
	for {
		select {
		case err, ok := <-m.etcd.Err():
			if !ok {
				return
			}
			if err != nil && !send(fmt.Errorf("etcd member %s: serving: %w", m.cfg.Name, err)) {
				return
			}
		case <-m.etcd.Server.StopNotify():
			select {
			case <-m.closing:
			default:
				send(stoppedError(m.cfg, m.watch))
			}
			return
		case <-m.closing:
			return
		}
	}
}

// Client is the in-process client: it does not use the client socket, so
// the replica's metadata access does not depend on the socket's file.
func (m *Member) Client() *clientv3.Client { return m.cli }

// ID is this member's etcd member ID.
func (m *Member) ID() uint64 { return m.id }

// Leader is the leader this member knows, without a quorum read; 0 when it
// knows none (an election, or a lost quorum).
func (m *Member) Leader() uint64 { return uint64(m.etcd.Server.Leader()) }

// IsLearner reports whether this member is a learner (no vote).
func (m *Member) IsLearner() bool { return m.etcd.Server.IsLearner() }

// Err reports serve errors after Start, and the member stopping on its own
// (errors.Is(err, ErrRemoved) when the cluster removed it). It is closed by Close.
func (m *Member) Err() <-chan error { return m.errc }

// Close stops the client and the server. It is safe to call twice.
func (m *Member) Close() error {
	m.closeOnce.Do(func() {
		close(m.closing)
		// A context-based client always reports its own cancellation on Close.
		if err := m.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			m.closeErr = fmt.Errorf("etcd member %s: closing client: %w", m.cfg.Name, err)
		}
		<-m.guarded // its alarm calls go through the server
		m.etcd.Close()
		<-m.forwarded
		close(m.errc)
	})
	return m.closeErr
}

// isErr matches etcd server errors whether they arrive as rpctypes values
// or gRPC statuses; both carry the same description.
func isErr(err, target error) bool {
	return err != nil && (errors.Is(err, target) || rpctypes.ErrorDesc(err) == target.Error())
}

// retry calls op until it succeeds, fails with an error not in retryOn, or
// ctx ends. The last etcd error is kept so a timeout says why.
func retry(ctx context.Context, op func() error, retryOn ...error) error {
	t := time.NewTicker(retryEvery)
	defer t.Stop()
	for {
		err := op()
		if err == nil {
			return nil
		}
		retriable := false
		for _, r := range retryOn {
			if isErr(err, r) {
				retriable = true
				break
			}
		}
		if !retriable {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (still %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// AddLearner adds a non-voting member at peerURL and returns its ID and the
// InitialCluster the new member must start with (Join: true). The leader
// refuses membership changes for 5 s after a peer connects (ErrUnhealthy);
// that is retried until ctx ends. A learner already added at peerURL that
// never started is returned again, so a failed join can simply be retried.
func (m *Member) AddLearner(ctx context.Context, name, peerURL string) (uint64, string, error) {
	if name == "" || strings.ContainsAny(name, "=, ") {
		return 0, "", fmt.Errorf("adding etcd learner: name %q must be a non-empty replica ID without '=', ',' or spaces", name)
	}
	if _, err := parseURL("peer URL", peerURL); err != nil {
		return 0, "", fmt.Errorf("adding etcd learner %s: %w", name, err)
	}
	var resp *clientv3.MemberAddResponse
	err := retry(ctx, func() error {
		var err error
		resp, err = m.cli.MemberAddAsLearner(ctx, []string{peerURL})
		return err
	}, rpctypes.ErrUnhealthy)
	var id uint64
	var members []Info
	switch {
	case err == nil:
		id = resp.Member.ID
		for _, mm := range resp.Members {
			members = append(members, Info{ID: mm.ID, Name: mm.Name, PeerURLs: mm.PeerURLs, IsLearner: mm.IsLearner})
		}
	case isErr(err, rpctypes.ErrPeerURLExist), isErr(err, rpctypes.ErrMemberExist):
		// ErrMemberExist: the ID hashes the peer URL and the second it was
		// added, so a re-add within the same second collides on the ID.
		members, err = m.Members(context.WithoutCancel(ctx))
		if err != nil {
			return 0, "", fmt.Errorf("adding etcd learner %s: %s is taken: %w", name, peerURL, err)
		}
		for _, mm := range members {
			if containsURL(mm.PeerURLs, peerURL) && mm.IsLearner && mm.Name == "" {
				id = mm.ID // added before, never started: reuse it
			}
		}
		if id == 0 {
			return 0, "", fmt.Errorf("adding etcd learner %s: a started member already uses %s; remove it first if it is a stale copy of this replica (members: %s)",
				name, peerURL, m.describeMembers(ctx))
		}
	case isErr(err, rpctypes.ErrTooManyLearners):
		return 0, "", fmt.Errorf("adding etcd learner %s: %w: another replica is still joining as a learner; promote it or remove it first (members: %s)",
			name, err, m.describeMembers(ctx))
	default:
		return 0, "", fmt.Errorf("adding etcd learner %s at %s: %w", name, peerURL, err)
	}

	parts := make([]string, 0, len(members))
	for _, mm := range members {
		n := mm.Name
		if mm.ID == id {
			n = name // etcd only learns the name when the member starts
		}
		if n == "" {
			// Another member was added but never started; the joiner's
			// InitialCluster cannot name it and etcd would reject the join.
			return id, "", fmt.Errorf("added etcd learner %s (ID %x), but member %x at %v has never started; remove both, then add %s again",
				name, id, mm.ID, mm.PeerURLs, name)
		}
		for _, u := range mm.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	sort.Strings(parts)
	return id, strings.Join(parts, ","), nil
}

// Promote makes learner id a voter once it has caught up with the leader's
// log; until then (and in the 5 s after a peer connects) it retries.
func (m *Member) Promote(ctx context.Context, id uint64) error {
	err := retry(ctx, func() error {
		_, err := m.cli.MemberPromote(ctx, id)
		if isErr(err, rpctypes.ErrMemberNotLearner) {
			return nil // promoted already (an earlier answer was lost)
		}
		return err
	}, rpctypes.ErrMemberLearnerNotReady, rpctypes.ErrUnhealthy)
	if err != nil {
		return fmt.Errorf("promoting etcd learner %x: %w: the learner must be running and caught up with the leader (members: %s)",
			id, err, m.describeMembers(ctx))
	}
	return nil
}

// Remove removes member id. Like rm -f, a member that is already gone is
// success. A voter whose removal would break quorum is refused.
func (m *Member) Remove(ctx context.Context, id uint64) error {
	err := retry(ctx, func() error {
		_, err := m.cli.MemberRemove(ctx, id)
		return err
	}, rpctypes.ErrUnhealthy)
	switch {
	case err == nil, isErr(err, rpctypes.ErrMemberNotFound):
		return nil
	case isErr(err, rpctypes.ErrMemberNotEnoughStarted):
		return fmt.Errorf("removing etcd member %x: %w: removing it would leave too few running voters for quorum; start the stopped members first or use ForceNewCluster (members: %s)",
			id, err, m.describeMembers(ctx))
	default:
		return fmt.Errorf("removing etcd member %x: %w", id, err)
	}
}

// Members lists the cluster as this member knows it. The read is
// serializable (local), so it answers without quorum.
func (m *Member) Members(ctx context.Context) ([]Info, error) {
	ctx, cancel := boundedContext(ctx, 5*time.Second)
	defer cancel()
	resp, err := m.cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return nil, fmt.Errorf("listing etcd members on %s: %w", m.cfg.Name, err)
	}
	out := make([]Info, 0, len(resp.Members))
	for _, mm := range resp.Members {
		out = append(out, Info{ID: mm.ID, Name: mm.Name, PeerURLs: mm.PeerURLs, IsLearner: mm.IsLearner})
	}
	sortInfos(out)
	return out, nil
}

// describeMembers renders the member list for error messages.
func (m *Member) describeMembers(ctx context.Context) string {
	// Often called because ctx ended; the list is local, so detach from it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	ms, err := m.Members(ctx)
	if err != nil {
		return "unknown: " + err.Error()
	}
	parts := make([]string, 0, len(ms))
	for _, mm := range ms {
		role := "voter"
		if mm.IsLearner {
			role = "learner"
		}
		name := mm.Name
		if name == "" {
			name = "(not started)"
		}
		parts = append(parts, fmt.Sprintf("%s %x %s %v", name, mm.ID, role, mm.PeerURLs))
	}
	return strings.Join(parts, "; ")
}

func sortInfos(in []Info) {
	sort.Slice(in, func(i, j int) bool {
		if in[i].Name != in[j].Name {
			return in[i].Name < in[j].Name
		}
		return in[i].ID < in[j].ID
	})
}

// boundedContext adds a deadline d when ctx has none, so no call can hang
// on a cluster without quorum.
func boundedContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// Status reports this member's view without waiting on the cluster for more
// than 1.5 s: membership, leader and revision are local; HasQuorum is a
// linearizable read (learners cannot serve one, so it is false for them).
func (m *Member) Status(ctx context.Context) Status {
	s := m.etcd.Server
	st := Status{ID: m.id, Leader: uint64(s.Leader()), Revision: s.KV().Rev(), Alarms: m.Alarms()}
	for _, mm := range s.Cluster().Members() {
		st.Members = append(st.Members, Info{
			ID: uint64(mm.ID), Name: mm.Name, PeerURLs: append([]string(nil), mm.PeerURLs...), IsLearner: mm.IsLearner,
		})
	}
	sortInfos(st.Members)
	select {
	case <-m.closing:
		st.Err = "member is closed"
		return st
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, quorumProbeTimeout)
	defer cancel()
	if _, err := m.cli.Get(ctx, quorumProbeKey, clientv3.WithCountOnly()); err != nil {
		st.Err = fmt.Sprintf("no quorum: linearizable read failed: %v", err)
		return st
	}
	st.HasQuorum = true
	return st
}

// newLogger builds etcd's zap logger at level, teed into watch, which sees
// warnings regardless of level so Start can explain why etcd stopped.
func newLogger(level string, watch *logWatch) (*zap.Logger, error) {
	lcfg := logutil.DefaultZapLoggerConfig
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	lcfg.Level = zap.NewAtomicLevelAt(lvl)
	lg, err := lcfg.Build()
	if err != nil {
		return nil, fmt.Errorf("etcd logger: %w", err)
	}
	return lg.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		c = expectedCore{c}
		if watch != nil {
			c = zapcore.NewTee(c, watchCore{watch})
		}
		return c
	})), nil
}

// expectedCore hides etcd error logs (each with a stack trace) that are
// part of normal operation unless debug logging is on, so a replica's log
// does not show a failure on every join and every shutdown:
//   - the leader refusing to promote a learner that has not caught up yet,
//     which Promote retries by design;
//   - listeners reporting they were closed, which Close does on purpose.
type expectedCore struct{ zapcore.Core }

// expectedMessages are the log messages that may be expected; Write
// decides from their error field.
var expectedMessages = map[string]bool{
	"rejecting promote learner: learner is not ready": true,
	"setting up serving from embedded etcd failed.":   true,
}

func (c expectedCore) With(fields []zapcore.Field) zapcore.Core {
	return expectedCore{c.Core.With(fields)}
}

func (c expectedCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if expectedMessages[e.Message] && !c.Core.Enabled(zapcore.DebugLevel) {
		if c.Core.Enabled(e.Level) {
			return ce.AddCore(e, c) // Write filters on the error field
		}
		return ce
	}
	return c.Core.Check(e, ce)
}

func (c expectedCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	if e.Message == "rejecting promote learner: learner is not ready" {
		return nil
	}
	for _, f := range fields {
		if err, ok := f.Interface.(error); ok && f.Type == zapcore.ErrorType && closedOnPurpose(err) {
			return nil
		}
	}
	return c.Core.Write(e, fields)
}

// closedOnPurpose matches the errors etcd's listeners return after Close.
func closedOnPurpose(err error) bool {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return true
	}
	// cmux's ErrServerClosed is not exported through etcd; match its text.
	return err.Error() == "mux: server closed"
}

// logWatch remembers why etcd stopped. etcd logs the reason ("the member has
// been permanently removed from the cluster") but exposes no error value.
type logWatch struct {
	mu         sync.Mutex
	last       string
	removedMsg string // the first message saying the member was removed
}

func (w *logWatch) record(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = msg
	if w.removedMsg == "" && strings.Contains(msg, "permanently removed") {
		w.removedMsg = msg
	}
}

func (w *logWatch) removed() bool { return w.removal() != "" }

func (w *logWatch) removal() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.removedMsg
}

func (w *logWatch) reason() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// watchCore is a zap core that feeds warnings with an error into a logWatch.
type watchCore struct{ w *logWatch }

func (c watchCore) Enabled(l zapcore.Level) bool      { return l >= zapcore.WarnLevel }
func (c watchCore) With([]zapcore.Field) zapcore.Core { return c }
func (c watchCore) Sync() error                       { return nil }

func (c watchCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c watchCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	for _, f := range fields {
		if err, ok := f.Interface.(error); ok && f.Type == zapcore.ErrorType {
			if e.Message == "server error" || strings.Contains(err.Error(), "permanently removed") {
				c.w.record(err.Error())
			}
		}
	}
	if strings.Contains(e.Message, "permanently removed") {
		c.w.record(e.Message)
	}
	return nil
}
