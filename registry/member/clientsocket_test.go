package member

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The test binary doubles as the helper process of the client socket tests,
// chosen by these variables: dial the socket (run as another uid), or serve
// a member until killed (to leave a stale socket behind as kill -9 does).
const (
	dialHelperEnv  = "DTR_MEMBER_TEST_DIAL"
	serveHelperEnv = "DTR_MEMBER_TEST_SERVE"
)

// nobody is the uid and gid the other-user test connects as.
const nobody = 65534

func TestMain(m *testing.M) {
	if path := os.Getenv(dialHelperEnv); path != "" {
		conn, err := net.Dial("unix", path)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		conn.Close()
		fmt.Println("connected")
		os.Exit(0)
	}
	if cfgJSON := os.Getenv(serveHelperEnv); cfgJSON != "" {
		os.Exit(serveUntilKilled(cfgJSON))
	}
	os.Exit(m.Run())
}

// serveUntilKilled starts the member cfgJSON describes, says "ready" on
// stdout and serves until the process is killed.
func serveUntilKilled(cfgJSON string) int {
	var cfg Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	m, err := Start(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	<-m.Err()
	return 1
}

func TestClientSocketIsTheOnlyClientEndpoint(t *testing.T) {
	ctx := testContext(t)
	cfg := testConfig(t, "r1", "dtr-socket")
	before := listeningTCPPorts(t)
	m := start(t, ctx, cfg)

	wantMode(t, filepath.Dir(cfg.ClientSocket), os.ModeDir|0o700)
	wantMode(t, cfg.ClientSocket, os.ModeSocket|0o600)
	if fi, err := os.Lstat(cfg.ClientSocket); err == nil && int(fi.Sys().(*syscall.Stat_t).Uid) != os.Geteuid() {
		t.Errorf("client socket belongs to uid %d, want this process's %d", fi.Sys().(*syscall.Stat_t).Uid, os.Geteuid())
	}

	// etcd serves clients on the socket alone...
	for _, l := range m.etcd.Clients {
		if l.Addr().Network() != "unix" || l.Addr().String() != cfg.ClientSocket {
			t.Errorf("etcd serves clients on %s %s, want only unix %s", l.Addr().Network(), l.Addr(), cfg.ClientSocket)
		}
	}
	// ...and the member added no TCP listener but its peer port: no
	// 127.0.0.1:12379 or any other client port for a local process to dial.
	peer, err := url.Parse(cfg.PeerListen)
	if err != nil {
		t.Fatal(err)
	}
	var added []string
	for _, p := range listeningTCPPorts(t) {
		if !slices.Contains(before, p) {
			added = append(added, p)
		}
	}
	if want := []string{peer.Port()}; !slices.Equal(added, want) {
		t.Errorf("starting the member opened TCP listeners on ports %v, want only the peer port %v", added, want)
	}

	// The socket is what the member advertises, and it serves this uid.
	ms, err := m.Client().MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ms.Members[0].ClientURLs, []string{"unix://" + cfg.ClientSocket}; !slices.Equal(got, want) {
		t.Errorf("advertised client URLs = %v, want %v", got, want)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"unix://" + cfg.ClientSocket}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	put(t, ctx, m, "/dtr/socket-test", "ok")
	resp, err := cli.Get(ctx, "/dtr/socket-test")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "ok" {
		t.Fatalf("reading through the client socket = %v, %v; want the value written in-process", resp, err)
	}
}

func TestClientSocketRefusesOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a helper process as another uid")
	}
	ctx := testContext(t)
	cfg := testConfig(t, "r1", "dtr-socket-uid")
	start(t, ctx, cfg)
	helper := helperForOthers(t)
	dir := filepath.Dir(cfg.ClientSocket)
	t.Cleanup(func() {
		os.Chmod(dir, 0o700)
		os.Chmod(cfg.ClientSocket, 0o600)
	})

	// Each step loosens one layer; the kernel must refuse until both the
	// directory and the socket admit others. The last step proves the
	// helper really can connect when the modes allow it.
	steps := []struct {
		name              string
		dirMode, sockMode os.FileMode
		wantConnect       bool
	}{
		{"as the member leaves them", 0o700, 0o600, false},
		{"directory open, socket 0600", 0o711, 0o600, false},
		{"socket open, directory 0700", 0o700, 0o666, false},
		{"both open (control)", 0o711, 0o666, true},
	}
	for _, s := range steps {
		if err := os.Chmod(dir, s.dirMode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(cfg.ClientSocket, s.sockMode); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, helper)
		cmd.Env = []string{dialHelperEnv + "=" + cfg.ClientSocket}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		got := strings.TrimSpace(string(out))
		switch {
		case s.wantConnect && err != nil:
			t.Errorf("%s: uid %d could not connect (%v): %s", s.name, nobody, err, got)
		case !s.wantConnect && err == nil:
			t.Errorf("%s: uid %d connected to the client socket (dir %04o, socket %04o)", s.name, nobody, s.dirMode, s.sockMode)
		case !s.wantConnect && !strings.Contains(got, "permission denied"):
			t.Errorf("%s: uid %d failed to connect for another reason than permissions: %s", s.name, nobody, got)
		}
	}
}

// helperForOthers copies the test binary where another uid may run it: the
// go command builds it in a private directory.
func helperForOthers(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "dtr-member-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, "member.test")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStaleClientSocketAfterKill(t *testing.T) {
	ctx := testContext(t)
	cfg := testConfig(t, "r1", "dtr-socket-kill")
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), serveHelperEnv+"="+string(cfgJSON))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("helper said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("the helper member did not start: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the helper member did not start before the test timed out")
	}

	// SIGKILL: etcd has no chance to remove its socket.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	wantMode(t, cfg.ClientSocket, os.ModeSocket|0o600)
	if c, err := net.Dial("unix", cfg.ClientSocket); err == nil {
		c.Close()
		t.Fatal("the killed member's socket still answers")
	}

	m := start(t, ctx, cfg)
	wantMode(t, cfg.ClientSocket, os.ModeSocket|0o600)
	c, err := net.Dial("unix", cfg.ClientSocket)
	if err != nil {
		t.Fatalf("the restarted member does not serve its client socket: %v", err)
	}
	c.Close()
	put(t, ctx, m, "/dtr/after-kill", "ok")
}

func TestStartRefusesUnsafeClientSocket(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string) // what is at the socket's path before Start
		wantErr string
		keep    bool // what prepare left at path must still be there
	}{
		{"a live socket", func(t *testing.T, path string) {
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}, "another process serves", true},
		{"a regular file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "is not a socket", true},
		{"a directory others may enter", func(t *testing.T, path string) {
			if err := os.Chmod(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "chmod 0700", false},
		{"a symlinked directory", func(t *testing.T, path string) {
			dir := filepath.Dir(path)
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(t.TempDir(), dir); err != nil {
				t.Fatal(err)
			}
		}, "is not a directory", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, "r1", "dtr-socket-unsafe")
			tt.prepare(t, cfg.ClientSocket)
			m, err := Start(testContext(t), cfg)
			if err == nil {
				m.Close()
				t.Fatalf("Start succeeded, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Start = %v, want an error containing %q", err, tt.wantErr)
			}
			if _, err := os.Lstat(cfg.ClientSocket); tt.keep && err != nil {
				t.Fatalf("Start removed what was at the socket's path: %v", err)
			}
			if hasData(cfg.Dir) {
				t.Fatal("Start created member data despite refusing the socket")
			}
		})
	}
}

// wantMode checks path's type and permission bits, without following links.
func wantMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModeType | os.ModePerm); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}

// listeningTCPPorts lists the TCP ports this process listens on, sorted,
// from its socket file descriptors and the kernel's socket tables.
func listeningTCPPorts(t *testing.T) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("needs /proc to list this process's sockets: %v", err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var ports []string
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue // no IPv6 in this kernel
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st ... uid timeout inode; 0A is LISTEN.
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			p, err := strconv.ParseUint(hexPort, 16, 16)
			if err != nil {
				t.Fatalf("parsing %s: %q: %v", table, line, err)
			}
			ports = append(ports, strconv.FormatUint(p, 10))
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}
