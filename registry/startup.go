package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/member"
	"github.com/dtr-registry/dtr/registry/meta"
)

// Start brings the replica up, one phase after another
// (docs/architecture.md §4):
//
//	prepareCA     the data directories, the cluster CA, the peer certificate
//	awaitRestore  with Restore and no metadata yet: receive the backup
//	startMember   the metadata member; a restarted one waits for a quorum
//	loadCluster   loadRestored, bootstrapNew or the existing records; then
//	              the token keys, the settings and the registry App
//	prepareServe  the HTTPS certificate, health checks, accounts, background work
//
// Serve then listens. The phases that wait (awaitRestore, and startMember
// on a restart) answer on the replica's ports through the interim listener
// meanwhile.
func Start(ctx context.Context, o Options) (*Replica, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	r := &Replica{opts: o, log: o.Log.WithField("replica", o.ReplicaID), disk: onDisk{dataDir: o.DataDir, caDir: o.CADir}, repairc: make(chan struct{})}
	r.accounts = &auth.Accounts{}
	r.verify = &auth.Verifier{Keys: r.keys.Load, Accounts: r.accounts}
	r.metrics = newReplicaMetrics(r)
	tok, err := loadMetricsToken(o.MetricsTokenFile)
	if err != nil {
		return nil, err
	}
	r.metricsToken = tok
	if o.OTLPEndpoint != "" {
		if r.stopTracing, err = startTracing(ctx, o.OTLPEndpoint, o.ReplicaID); err != nil {
			return nil, err
		}
	}
	s := &startup{r: r}
	phases := []struct {
		name string
		run  func(context.Context) error
	}{
		{"prepare CA", s.prepareCA},
		{"await restore", s.awaitRestore},
		{"start member", s.startMember},
		{"load cluster", s.loadCluster},
		{"prepare serve", s.prepareServe},
	}
	for _, p := range phases {
		began := time.Now()
		err := p.run(ctx)
		r.log.WithField("phase", p.name).WithField("took", time.Since(began).Round(time.Millisecond)).Debug("start-up phase done")
		if err != nil {
			s.interim.stop()
			if r.member != nil {
				r.member.Close()
			}
			return nil, err
		}
	}
	r.log.WithField("cluster", r.cluster.ID).Info("replica started")
	return r, nil
}

// startup is what the start-up phases hand on to each other.
type startup struct {
	r *Replica
	// newCluster: no metadata and not joining, so this replica founds a
	// cluster unless it restores one.
	newCluster bool
	hosts      []string // names and addresses the replica's certificates carry
	peerTLS    *member.TLSFiles
	interim    *interim // answers on the replica's ports while a phase waits; nil otherwise
}

// prepareCA creates the data directories, installs or creates the cluster
// CA and issues the metadata member's peer certificate.
func (s *startup) prepareCA(context.Context) error {
	r, o := s.r, s.r.opts
	for _, d := range []string{o.DataDir, filepath.Join(o.DataDir, "tls")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	if o.CACertFile != "" || o.CAKeyFile != "" {
		if err := installCA(o.CACertFile, o.CAKeyFile, o.CADir); err != nil {
			return err
		}
	}
	// Before anything below writes to the data volume: on a nearly full
	// one the member's reserve goes first (docs/reliability.md).
	if released, err := member.PrepareSpace(member.Config{Dir: r.disk.etcdDir(), LowSpace: o.MetadataLowSpace, SpaceReserve: o.MetadataSpaceReserve}); err != nil {
		return err
	} else if released {
		r.log.Warn("the metadata volume is nearly full: released the space reserve so that the replica can start; pushes are refused until space is freed")
	}
	s.newCluster = !o.Join && !r.disk.hasMemberData()
	ca, err := loadOrCreateCA(o.CADir, s.newCluster)
	if err != nil {
		return err
	}
	r.ca = ca
	// TLSServerName is the name the installer asks for (SNI): see serverTLS.
	s.hosts = append([]string{contract.ServiceName(o.ReplicaID), contract.TLSServerName, "localhost", "127.0.0.1"}, o.Hostnames...)
	s.hosts = append(s.hosts, localAddresses()...)
	if pu, err := url.Parse(o.PeerAdvertise); err == nil {
		s.hosts = append(s.hosts, pu.Hostname())
	}
	if !o.InsecurePeers {
		cert, key, err := issueFiles(ca, filepath.Join(o.DataDir, "tls"), "peer", s.hosts)
		if err != nil {
			return err
		}
		s.peerTLS = &member.TLSFiles{CertFile: cert, KeyFile: key, CAFile: filepath.Join(o.CADir, caCertFile)}
	}
	return nil
}

// awaitRestore, on a replica started to restore a backup that has no
// metadata and no received backup yet, serves the restore phase until dtr
// restore has sent a backup that verifies (see restore.go).
func (s *startup) awaitRestore(ctx context.Context) error {
	r := s.r
	if !r.opts.Restore || r.disk.hasMemberData() {
		return nil
	}
	if _, err := r.disk.receivedBackup(); !errors.Is(err, errNoRestore) {
		return err // nil: received before a restart, loadRestored takes it
	}
	phase, received, err := r.restorePhase(s.hosts)
	if err != nil {
		return err
	}
	if err := s.serveInterim(phase); err != nil {
		return err
	}
	defer s.stopInterim()
	r.log.Info("waiting for 'dtr restore' to send the backup")
	select {
	case <-received:
		return nil
	case err := <-s.interim.errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startMember starts the metadata member. A restarted member serves only
// once a quorum answers, which may be long after a node outage: the
// interim listener answers meanwhile, and the log says every 30 s that it
// still waits.
func (s *startup) startMember(ctx context.Context) error {
	r, o := s.r, s.r.opts
	cfg := member.Config{
		Name: o.ReplicaID, Dir: r.disk.etcdDir(),
		PeerListen: o.PeerListen, PeerAdvertise: o.PeerAdvertise, ClientSocket: o.ClientSocket,
		InitialCluster: o.InitialCluster, Join: o.Join,
		ClusterToken: "dtr-" + o.ReplicaID, LogLevel: "error",
		LowSpace: o.MetadataLowSpace, SpaceReserve: o.MetadataSpaceReserve,
		PeerTLS: s.peerTLS,
	}
	if o.LogLevel == "debug" || o.LogLevel == "trace" {
		cfg.LogLevel = "info" // etcd's peer connections and elections, for debugging a cluster
	}
	r.log.Info("starting the metadata member")
	if r.disk.hasMemberData() {
		cfg.StartTimeout = restartTimeout
		phase, err := r.quorumPhase(s.hosts)
		if err == nil {
			err = s.serveInterim(phase)
		}
		if err != nil {
			// It still starts, and fails in Serve if the ports stay taken.
			r.log.WithError(err).Warn("not answering on the replica's ports until the metadata member starts")
		}
		defer s.stopInterim()
		done := make(chan struct{})
		defer close(done)
		go r.logQuorumWait(done)
	}
	m, err := s.forceOrStart(ctx, cfg)
	if err != nil {
		return err
	}
	r.member = m
	r.store = meta.New(timedKV{KV: m.Client(), m: r.metrics})
	r.logins = &auth.Logins{Store: r.store, Log: r.log, Outcome: r.metrics.login, Identity: r.identitySource}
	return nil
}

// forceOrStart starts the metadata member, or forces a new single-member
// cluster from its data when an emergency repair's token is new to it.
func (s *startup) forceOrStart(ctx context.Context, cfg member.Config) (*member.Member, error) {
	r := s.r
	tok := r.opts.ForceNewCluster
	if tok == "" || !r.disk.hasMemberData() || r.disk.forcedWith(tok) {
		return member.Start(ctx, cfg)
	}
	r.log.Warn("emergency repair: restarting the metadata member as the only member of a new cluster, keeping its data")
	m, err := member.ForceNewCluster(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := r.disk.markForced(tok); err != nil {
		m.Close()
		return nil, err
	}
	r.forced = true
	return m, nil
}

// restartTimeout bounds how long a restarted replica waits for a quorum
// before it exits (and Swarm starts it again, re-reading its settings).
const restartTimeout = 10 * time.Minute

// loadCluster gives the replica its cluster: a received backup's
// (loadRestored), a new one (bootstrapNew) or the one its metadata holds;
// then the token keys, the settings and the registry App for its storage.
func (s *startup) loadCluster(ctx context.Context) error {
	r := s.r
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := r.store.Cluster(cctx)
	spool, rerr := r.disk.receivedBackup()
	switch {
	case errors.Is(err, meta.ErrNotFound) && rerr == nil:
		c, err = s.loadRestored(cctx, spool)
	case errors.Is(err, meta.ErrNotFound) && s.newCluster:
		c, err = s.bootstrapNew(cctx)
	case err != nil:
		err = fmt.Errorf("reading the cluster's identity: %w", err)
	}
	if err != nil {
		return err
	}
	r.cluster = c
	if err := r.checkSchema(cctx); err != nil {
		return err
	}
	if err := r.loadKeyring(cctx); err != nil {
		return err
	}
	st, _, err := r.store.Settings(cctx)
	if err != nil {
		return fmt.Errorf("reading the settings: %w", err)
	}
	r.externalURL.Store(&st.ExternalURL)
	r.sparseRefused.Store(!st.SparseManifestsAllowed())
	r.applyIdentity(st)
	if err := r.applyStorage(ctx, st); err != nil {
		return err
	}
	if spool, err := r.disk.receivedBackup(); err == nil {
		if err := s.finishRestore(ctx, spool); err != nil {
			return err
		}
	} else if !errors.Is(err, errNoRestore) {
		return err
	}
	if r.forced {
		// The other replicas are gone for good: forget their health.
		if err := r.store.KeepReplicaReports(ctx, []string{r.opts.ReplicaID}); err != nil {
			r.log.WithError(err).Warn("forgetting the removed replicas' health reports")
		}
	}
	return nil
}

// loadRestored loads a received backup's records, or those of one whose
// load was cut short (the cluster record is written last).
func (s *startup) loadRestored(ctx context.Context, spool string) (meta.Cluster, error) {
	r := s.r
	c, err := r.loadBackup(ctx, spool)
	if err != nil {
		return c, err
	}
	// The spool stays until finishRestore wrote its images.
	return c, r.disk.markFounded(c.ID)
}

// bootstrapNew founds a cluster: its CA and token key, settings and first
// admin. A replica that founded one before and lost its metadata refuses:
// founding another would split the registry in two.
func (s *startup) bootstrapNew(ctx context.Context) (meta.Cluster, error) {
	r, o := s.r, s.r.opts
	if id, ok := r.disk.founded(); ok {
		return meta.Cluster{}, fmt.Errorf("replica %s founded cluster %s, but its metadata volume is empty: it will not start a second cluster. Restore from a backup, or destroy this replica and join a new one", o.ReplicaID, id)
	}
	if o.AdminUsername == "" || o.AdminPassword == "" {
		return meta.Cluster{}, errors.New("a new cluster needs its first admin: --admin-username and --admin-password-file")
	}
	tokCert, tokKey, err := newTokenKey()
	if err != nil {
		return meta.Cluster{}, err
	}
	caKey, err := r.ca.KeyPEM()
	if err != nil {
		return meta.Cluster{}, err
	}
	c, err := r.store.Bootstrap(ctx, meta.Bootstrap{
		Version:       images.Version,
		CA:            meta.KeyPair{CertPEM: string(r.ca.CertPEM()), KeyPEM: string(caKey)},
		TokenKey:      meta.KeyPair{CertPEM: string(tokCert), KeyPEM: string(tokKey)},
		Settings:      meta.Settings{ExternalURL: o.ExternalURL, Storage: o.Storage, LogLevel: o.LogLevel},
		AdminUsername: o.AdminUsername,
		AdminPassword: o.AdminPassword,
		Replica:       o.ReplicaID,
		Schema:        r.schema().Version(),
	})
	if err != nil {
		return meta.Cluster{}, fmt.Errorf("bootstrapping the cluster: %w", err)
	}
	if err := r.disk.markFounded(c.ID); err != nil {
		return c, err
	}
	r.log.WithField("admin", o.AdminUsername).Info("bootstrapped a new cluster")
	return c, nil
}

// prepareServe issues the HTTPS certificate (for the external URL too),
// starts the health checks, loads the accounts and starts the background
// work; Serve then only listens.
func (s *startup) prepareServe(ctx context.Context) error {
	r, o := s.r, s.r.opts
	hosts := s.hosts
	if o.TLSCertFile == "" {
		st, _, _ := r.store.Settings(ctx)
		if u, err := url.Parse(st.ExternalURL); err == nil && u.Hostname() != "" {
			hosts = append(hosts, u.Hostname())
		}
	}
	r.ownNames = map[string]bool{}
	for _, h := range hosts {
		r.ownNames[strings.ToLower(h)] = true
	}
	certFile, keyFile, err := issueFiles(r.ca, filepath.Join(o.DataDir, "tls"), "server", hosts)
	if err != nil {
		return err
	}
	// With an operator's certificate, it comes first (clients asking for the
	// external name get it); the cluster-CA one answers the installer and peers.
	var files [][2]string
	if o.TLSCertFile != "" {
		files = append(files, [2]string{o.TLSCertFile, o.TLSKeyFile})
	}
	files = append(files, [2]string{certFile, keyFile})
	if r.tls, err = serverTLS(files...); err != nil {
		return err
	}

	r.health = newHealthChecker(o.HealthInterval, 1500*time.Millisecond,
		check{"metadata", func(ctx context.Context) error {
			// Within the check's own 1.5 s, so that a lost quorum is named as
			// such rather than as a slow check.
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if st := r.member.Status(ctx); !st.HasQuorum {
				if strings.HasPrefix(st.Err, "no quorum") {
					return errors.New(st.Err)
				}
				return fmt.Errorf("no quorum: %s", st.Err)
			}
			return nil
		}},
		check{"storage", storageProbe(func() driver.StorageDriver {
			if b := r.driver.Load(); b != nil {
				return b.d
			}
			return nil
		})},
		check{"drain", func(ctx context.Context) error {
			if d, err := r.store.Draining(ctx, o.ReplicaID); err == nil && d {
				return errors.New("draining: this replica is being removed or upgraded")
			}
			return nil
		}},
		check{"metadata-space", r.metadataSpaceCheck},
		check{"schema", r.schemaProbe},
		check{"auth", func(context.Context) error {
			if r.keys.Load() == nil {
				return errors.New("token signing key not loaded")
			}
			return nil
		}},
	)
	r.health.onResult = r.reportHealth()
	accountsRev, err := r.loadAccounts(ctx)
	if err != nil {
		return err
	}
	var metricsLn net.Listener
	if o.MetricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", o.MetricsAddr); err != nil {
			return fmt.Errorf("metrics address %s: %w (check --metrics-addr)", o.MetricsAddr, err)
		}
	}
	r.audit = newAuditor(r)
	r.webhooks = newWebhookDispatcher(r)
	report := r.health.onResult
	r.health.onResult = func(ctx context.Context, h Health) { report(ctx, h); r.webhooks.health(h) }
	tokensRev, err := r.loadAPITokens(ctx)
	if err != nil {
		return err
	}
	r.handler = r.routes()
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	r.done.Add(4)
	go func() { defer r.done.Done(); r.health.run(bg) }()
	go func() { defer r.done.Done(); r.watchSettings(bg) }()
	go func() { defer r.done.Done(); r.watchAccounts(bg, accountsRev) }()
	r.done.Add(1)
	go func() { defer r.done.Done(); r.watchAPITokens(bg, tokensRev) }()
	go func() { defer r.done.Done(); r.watchTokenKeys(bg) }()
	r.done.Add(1) // storage and metadata reconciliation: reconcile.go
	go func() { defer r.done.Done(); r.reconcileLoop(bg) }()
	r.done.Add(1) // leftovers of interrupted uploads: leftovers.go
	go func() { defer r.done.Done(); r.leftoversLoop(bg) }()
	r.done.Add(1) // metadata schema migrations: schema.go
	go func() { defer r.done.Done(); r.migrateLoop(bg) }()
	r.done.Add(1) // garbage collection jobs and crons: gc.go
	go func() { defer r.done.Done(); r.gcRunner().Run(bg) }()
	r.done.Add(1) // identity source syncs: identity.go
	go func() { defer r.done.Done(); r.identitySyncer().Run(bg) }()
	r.done.Add(1) // webhook deliveries: webhooks.go
	go func() { defer r.done.Done(); r.webhooks.run(bg) }()
	r.done.Add(1) // the audit trail's writer and retention: audit.go
	go func() { defer r.done.Done(); r.audit.run(bg) }()
	if metricsLn != nil { // metrics.go
		r.done.Add(1)
		go func() { defer r.done.Done(); r.serveMetricsPort(bg, metricsLn) }()
	}
	return nil
}

// serveInterim shows phase on the interim listener, which it opens on the
// replica's ports the first time.
func (s *startup) serveInterim(p *interimPhase) error {
	if s.interim != nil {
		s.interim.show(p)
		return nil
	}
	l, err := s.r.listenInterim(p)
	if err != nil {
		return err
	}
	s.interim = l
	return nil
}

// stopInterim frees the replica's ports when a waiting phase ends.
func (s *startup) stopInterim() {
	s.interim.stop()
	s.interim = nil
}

// onDisk is what start-up reads and leaves on the replica's volumes: the
// metadata member's data; in the CA volume, which outlives a lost metadata
// volume, the marker of a founded cluster; in the data volume, the token of
// the last forced new cluster and the spool of a received backup.
type onDisk struct{ dataDir, caDir string }

// Marker files.
const (
	bootstrapMarker = "founded-cluster"    // in caDir: the ID of the cluster this replica founded
	forcedMarker    = "forced-new-cluster" // in dataDir: the token of the last forced new cluster
)

// errNoRestore: no received backup waits to be loaded.
var errNoRestore = errors.New("no backup to restore")

func (d onDisk) etcdDir() string { return filepath.Join(d.dataDir, "etcd") }

// hasMemberData reports whether the metadata member has started here before.
func (d onDisk) hasMemberData() bool {
	_, err := os.Stat(filepath.Join(d.etcdDir(), "member", "wal"))
	return err == nil
}

// founded returns the cluster this replica founded (or restored), if any.
func (d onDisk) founded() (string, bool) {
	b, err := os.ReadFile(filepath.Join(d.caDir, bootstrapMarker))
	return strings.TrimSpace(string(b)), err == nil
}

func (d onDisk) markFounded(clusterID string) error {
	return writeFileAtomic(filepath.Join(d.caDir, bootstrapMarker), []byte(clusterID+"\n"), 0o644)
}

// forcedWith reports whether this replica has forced a new cluster with
// token: the token makes an emergency repair happen once, however often the
// container restarts. The marker keeps the last forcedKept tokens, one a
// line: a repair in place leaves an earlier repair's token in the service's
// environment, which must not force again on the next restart.
func (d onDisk) forcedWith(token string) bool {
	for _, t := range d.forcedTokens() {
		if t == token {
			return true
		}
	}
	return false
}

func (d onDisk) forcedTokens() []string {
	b, err := os.ReadFile(filepath.Join(d.dataDir, forcedMarker))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// forcedKept bounds the marker: more repairs of one replica than this,
// with the oldest token still in the environment, do not happen.
const forcedKept = 32

func (d onDisk) markForced(token string) error {
	toks := append(d.forcedTokens(), token)
	if len(toks) > forcedKept {
		toks = toks[len(toks)-forcedKept:]
	}
	return writeFileAtomic(filepath.Join(d.dataDir, forcedMarker), []byte(strings.Join(toks, "\n")+"\n"), 0o600)
}

// restoreSpool is where a received, verified backup waits until its
// records are loaded and its images written (then it is deleted: the
// metadata holds the same secrets); uploads in progress are
// receiving-*.tar beside it.
func (d onDisk) restoreSpool() string { return filepath.Join(d.dataDir, "restore", "backup.tar") }

// receivedBackup returns the spooled backup's path if one waits, else
// errNoRestore.
func (d onDisk) receivedBackup() (string, error) {
	p := d.restoreSpool()
	if _, err := os.Stat(p); err != nil {
		if os.IsNotExist(err) {
			return "", errNoRestore
		}
		return "", err
	}
	return p, nil
}
