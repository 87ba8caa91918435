package member

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/dtr-registry/dtr/internal/units"
)

// The metadata volume's free space is guarded (docs/reliability.md, "The
// metadata volume is full"). etcd treats a failed write to its WAL or
// database as fatal and exits the process, pulls included, so the member
// must never reach a full disk while it serves:
//
//   - below LowSpace free, the guard raises etcd's NOSPACE alarm for this
//     member. Every member then refuses puts (reads, deletes and compaction
//     go on), so the cluster stops growing this member's WAL and database
//     while the operator frees space; the replica refuses writes with 507.
//   - a reserve file of SpaceReserve bytes sits beside the data. When free
//     space falls under what etcd needs to allocate its next WAL segment
//     (releaseBelow; something else filled the disk), the guard deletes it,
//     and the member's next segment, raft's hard state and the database's
//     commits find room. etcd's WAL preallocation stops for good after one
//     failure, and the next segment cut is then fatal, so the reserve goes
//     before free space is under a segment, not after.
//   - once free space is back above LowSpace with room for a new reserve,
//     the guard recreates the reserve and lowers the alarm: writes resume
//     with no restart.
//
// Start takes the same reserve when the disk is full, so that a replica
// restarted on a full disk still starts and serves pulls.
const (
	// DefaultLowSpace and DefaultSpaceReserve are Config's defaults, from
	// etcd's WAL: it preallocates 64 MB segments, and whenever one fills (and
	// at every start) it allocates the next one whole. A member under
	// LowSpace can still take one cut; the reserve holds what a start needs
	// (measured: a start on a full tmpfs failed with a 64 MiB reserve).
	DefaultLowSpace     = 128 << 20
	DefaultSpaceReserve = 128 << 20
	spaceCheckEvery     = 250 * time.Millisecond

	// minStartSpace is the least free space Start accepts, and releaseBelow
	// where the reserve is released: the WAL segment etcd allocates as it
	// opens its log or cuts a segment, and a few pages for its database.
	minStartSpace = walSegment + 4<<20
	releaseBelow  = minStartSpace
	walSegment    = 64 * 1000 * 1000 // go.etcd.io/etcd/server/v3/storage/wal.SegmentSizeBytes

	// reserveFile is the reserve's name in the replica's data directory
	// (the parent of the member's Dir, so etcd never sees a stray file).
	reserveFile = "metadata-space-reserve"

	// alarmDisarmBelow: the guard lowers its member's NOSPACE alarm only
	// while the database is under this share of the quota, so that an alarm
	// etcd raised because the database reached its quota is left for the
	// operator's compaction (etcd raises it again on the next put anyway).
	alarmDisarmBelow = 0.9

	// defragBelow: a database at its quota is defragmented once less than
	// this share of it is in use, so that the alarm can be lowered.
	defragBelow = 0.7
)

// SpaceState is what the guard last saw of the metadata volume.
type SpaceState struct {
	Dir      string // the member's data directory
	Free     int64  // bytes available to the replica, the reserve not counted
	Low      bool   // under LowSpace: the member's NOSPACE alarm is raised or being raised
	Released bool   // the reserve was deleted to keep the member writing
	Err      string // the guard could not read the volume or raise the alarm
}

// spaceGuard watches the volume under a member's Dir.
type spaceGuard struct {
	dir, reserve  string
	low, size     int64
	lg            *zap.Logger
	statfs        func(string) (int64, error)
	mu            sync.Mutex
	state         SpaceState
	raisedAlarmAt time.Time
	defraggedAt   time.Time

	// For SpaceLow: when the volume was last read and whether it was under
	// the low mark then.
	readAt  atomic.Int64
	readLow atomic.Bool
}

func newSpaceGuard(cfg Config, lg *zap.Logger) *spaceGuard {
	return &spaceGuard{
		dir:     cfg.Dir,
		reserve: filepath.Join(filepath.Dir(cfg.Dir), reserveFile),
		low:     cfg.LowSpace,
		size:    cfg.SpaceReserve,
		lg:      lg,
		statfs:  availableBytes,
	}
}

// availableBytes is the space on dir's filesystem that an unprivileged
// process may still use (the replica runs as uid 10001, not root).
func availableBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// existingDir is dir or its nearest existing parent, for statfs before the
// member's directories exist.
func existingDir(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
			return dir
		}
		dir = filepath.Dir(dir)
	}
}

func (g *spaceGuard) hasReserve() bool {
	if g.size <= 0 {
		return false
	}
	fi, err := os.Stat(g.reserve)
	return err == nil && fi.Size() >= g.size
}

// prepareStart runs before etcd starts. It takes a reserve on a volume that
// has room for it, releases it on a volume that is nearly full, and refuses
// to start only when even that leaves too little, saying what to do.
func (g *spaceGuard) prepareStart() error {
	dir := existingDir(g.dir)
	free, err := g.statfs(dir)
	if err != nil {
		return nil // not a reason to refuse a start; the guard reports it
	}
	os.Remove(g.reserve + ".tmp") // a reserve cut short by a kill
	if free < releaseBelow && g.hasReserve() {
		if err := os.Remove(g.reserve); err == nil {
			g.lg.Warn("the metadata volume is nearly full: released the space reserve so that the member can start",
				zap.String("dir", dir), zap.Int64("free-bytes", free), zap.Int64("released-bytes", g.size))
			g.state.Released = true
			free, _ = g.statfs(dir)
		}
	}
	if free < minStartSpace {
		return fmt.Errorf("the metadata volume holding %s is full (%s free; the metadata store needs at least %s to start, and %s to accept writes): free space on it or grow the volume, then start the replica again",
			g.dir, units.HumanBytes(free), units.HumanBytes(minStartSpace), units.HumanBytes(g.low))
	}
	if !g.hasReserve() && free >= g.low+g.size && g.takeReserve() {
		g.state.Released = false
	}
	return nil
}

// PrepareSpace does for the volume under cfg.Dir what Start does first, for
// a caller that writes to that volume before Start (the replica issues its
// certificates there): it releases the reserve on a nearly full volume and
// says when even that leaves too little to start. It reports whether it
// released the reserve.
func PrepareSpace(cfg Config) (released bool, err error) {
	if cfg.LowSpace == 0 {
		cfg.LowSpace = DefaultLowSpace
	}
	if cfg.SpaceReserve == 0 {
		cfg.SpaceReserve = DefaultSpaceReserve
	}
	g := newSpaceGuard(cfg, zap.NewNop())
	err = g.prepareStart()
	return g.state.Released, err
}

// takeReserve creates the reserve file with its blocks allocated.
func (g *spaceGuard) takeReserve() bool {
	if g.size <= 0 {
		return true
	}
	if err := allocateFile(g.reserve, g.size); err != nil {
		g.lg.Warn("could not create the metadata space reserve", zap.String("file", g.reserve), zap.Error(err))
		return false
	}
	return true
}

// allocateFile makes path a file of size bytes whose blocks are allocated
// (fallocate; written zeros where the filesystem cannot), via a temporary
// name so that a crash leaves no short reserve behind.
func allocateFile(path string, size int64) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		err = writeZeros(f, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func writeZeros(f *os.File, size int64) error {
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := min(size, int64(len(buf)))
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

// SpaceLow reports whether the volume is under the low mark now, for the
// write paths that fill it (blob uploads to a storage on the same disk): a
// reading at most spaceFresh old, else a new statfs. The guard's 250 ms
// round alone could be outrun by fast uploads.
func (m *Member) SpaceLow() bool {
	g := m.space
	if time.Since(time.Unix(0, g.readAt.Load())) > spaceFresh {
		free, err := g.statfs(g.dir)
		if err != nil {
			return false
		}
		g.readLow.Store(free < g.low)
		g.readAt.Store(time.Now().UnixNano())
	}
	return g.readLow.Load()
}

// spaceFresh bounds how old a reading SpaceLow may answer from: a statfs is
// about a microsecond, a 32 KiB write a few.
const spaceFresh = 10 * time.Millisecond

// Space is the guard's last reading.
func (m *Member) Space() SpaceState {
	m.space.mu.Lock()
	defer m.space.mu.Unlock()
	return m.space.state
}

// guardSpace checks the volume every spaceCheckEvery until the member closes.
func (m *Member) guardSpace() {
	defer close(m.guarded)
	t := time.NewTicker(spaceCheckEvery)
	defer t.Stop()
	for {
		m.checkSpace()
		select {
		case <-m.closing:
			return
		case <-t.C:
		}
	}
}

// checkSpace is one round of the guard. Only the guard's goroutine (and
// Start, before it) changes the state; the lock covers its readers, and is
// not held across the alarm's raft round trip.
func (m *Member) checkSpace() {
	g := m.space
	st := g.state
	defer func() {
		g.mu.Lock()
		g.state = st
		g.mu.Unlock()
	}()
	free, err := g.statfs(g.dir)
	if err != nil {
		st.Err = "reading the metadata volume's free space: " + err.Error()
		return
	}
	st.Dir, st.Free, st.Err = g.dir, free, ""
	switch {
	case free < g.low:
		if !st.Low {
			g.lg.Warn("the metadata volume is nearly full: raising the NOSPACE alarm; the cluster refuses writes until space is freed",
				zap.String("dir", g.dir), zap.Int64("free-bytes", free), zap.Int64("low-bytes", g.low))
		}
		st.Low = true
		if free < releaseBelow && g.hasReserve() {
			if rerr := os.Remove(g.reserve); rerr == nil {
				st.Released = true
				g.lg.Warn("the metadata volume is almost out of space: released the space reserve for the member's last writes",
					zap.String("dir", g.dir), zap.Int64("free-bytes", free), zap.Int64("released-bytes", g.size))
			}
		}
		if !m.hasNoSpaceAlarm() && time.Since(g.raisedAlarmAt) > time.Second {
			if err := m.setNoSpaceAlarm(m.id, pb.AlarmRequest_ACTIVATE); err != nil {
				st.Err = "raising the NOSPACE alarm: " + err.Error()
			} else {
				g.raisedAlarmAt = time.Now()
			}
		}
	case st.Low || st.Released || m.hasNoSpaceAlarm():
		// Recover only with room for a new reserve and some more, so that a
		// volume hovering at the mark does not flap the alarm.
		need := g.low + g.low/2
		if !g.hasReserve() {
			need += g.size
		}
		if free < need {
			return
		}
		if !g.hasReserve() && g.takeReserve() {
			st.Released = false
			if free, err = g.statfs(g.dir); err != nil {
				return
			}
			st.Free = free
		}
		if m.hasNoSpaceAlarm() && !m.dbBelowQuota() {
			m.defragWhenCompacted(free)
		}
		if m.hasNoSpaceAlarm() {
			if !m.dbBelowQuota() {
				if st.Low {
					g.lg.Warn("the metadata volume has space again, but the NOSPACE alarm stays: the database is at its quota; delete data and let compaction run",
						zap.String("dir", g.dir), zap.Int64("free-bytes", free), zap.Int64("db-bytes", m.etcd.Server.Backend().Size()))
				}
				st.Low = false
				return
			}
			if err := m.setNoSpaceAlarm(m.id, pb.AlarmRequest_DEACTIVATE); err != nil {
				st.Err = "lowering the NOSPACE alarm: " + err.Error()
				return
			}
			g.lg.Warn("the metadata volume has space again: lowered the NOSPACE alarm; writes resume",
				zap.String("dir", g.dir), zap.Int64("free-bytes", free))
		}
		st.Low = false
	}
	m.lowerForeignAlarms()
}

// lowerForeignAlarms lowers, on the leader, the alarms of members that are
// no longer in the cluster (removed, or gone with an emergency repair or a
// restore): etcd keeps an alarm when its member goes, and nobody else would
// ever lower it, so writes would be refused for good.
func (m *Member) lowerForeignAlarms() {
	s := m.etcd.Server
	if uint64(s.Leader()) != m.id {
		return
	}
	in := map[uint64]bool{}
	for _, mm := range s.Cluster().Members() {
		in[uint64(mm.ID)] = true
	}
	for _, a := range s.Alarms() {
		if in[a.MemberID] {
			continue
		}
		if err := m.setNoSpaceAlarm(a.MemberID, pb.AlarmRequest_DEACTIVATE); err == nil {
			m.space.lg.Warn("lowered the alarm of a member that left the cluster",
				zap.String("alarm", a.Alarm.String()), zap.String("member", fmt.Sprintf("%x", a.MemberID)))
		}
	}
}

// hasNoSpaceAlarm reports whether this member's NOSPACE alarm is raised, as
// this member last applied it (no raft round trip).
func (m *Member) hasNoSpaceAlarm() bool {
	for _, a := range m.etcd.Server.Alarms() {
		if a.MemberID == m.id && a.Alarm == pb.AlarmType_NOSPACE {
			return true
		}
	}
	return false
}

func (m *Member) dbBelowQuota() bool {
	return float64(m.etcd.Server.Backend().Size()) < alarmDisarmBelow*quotaBackendBytes
}

// defragWhenCompacted returns the free pages of a database that reached
// its quota to the disk, once compaction (hourly) or deletions left less
// than defragBelow of the quota in use: etcd measures its quota by the
// file's size, which only a defragmentation shrinks. It needs room for a
// copy of the database, and blocks this member's writes while it runs,
// which the alarm refuses anyway.
func (m *Member) defragWhenCompacted(free int64) {
	be := m.etcd.Server.Backend()
	if float64(be.SizeInUse()) >= defragBelow*quotaBackendBytes || free < be.Size()+m.space.low {
		return
	}
	if time.Since(m.space.defraggedAt) < time.Minute {
		return
	}
	// One member at a time: a defragmentation holds the database's locks,
	// and every member whose database reached the quota raised its alarm.
	for _, a := range m.etcd.Server.Alarms() {
		if a.Alarm == pb.AlarmType_NOSPACE && a.MemberID < m.id {
			return
		}
	}
	m.space.defraggedAt = time.Now()
	before := be.Size()
	if err := m.etcd.Server.Defragment(); err != nil {
		m.space.lg.Warn("defragmenting the metadata database after its quota alarm", zap.Error(err))
		return
	}
	m.space.lg.Warn("the metadata database reached its quota and was compacted: defragmented it",
		zap.Int64("before-bytes", before), zap.Int64("after-bytes", be.Size()))
}

// setNoSpaceAlarm raises or lowers this member's NOSPACE alarm through raft,
// as etcd itself does when its database reaches the quota; it needs quorum.
func (m *Member) setNoSpaceAlarm(member uint64, action pb.AlarmRequest_AlarmAction) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go func() {
		select {
		case <-m.closing: // Close waits for the guard: do not hold it up
			cancel()
		case <-ctx.Done():
		}
	}()
	_, err := m.etcd.Server.Alarm(ctx, &pb.AlarmRequest{Action: action, MemberID: member, Alarm: pb.AlarmType_NOSPACE})
	return err
}

// Alarm is one raised etcd alarm, for status pages.
type Alarm struct {
	Member string // the member's name, or its ID in hex when unknown
	Kind   string // "NOSPACE" or "CORRUPT"
}

// Alarms lists the cluster's raised alarms as this member applied them.
func (m *Member) Alarms() []Alarm {
	var out []Alarm
	names := map[uint64]string{}
	for _, mm := range m.etcd.Server.Cluster().Members() {
		names[uint64(mm.ID)] = mm.Name
	}
	for _, a := range m.etcd.Server.Alarms() {
		name := names[a.MemberID]
		if name == "" {
			name = fmt.Sprintf("%x", a.MemberID)
		}
		out = append(out, Alarm{Member: name, Kind: a.Alarm.String()})
	}
	return out
}
