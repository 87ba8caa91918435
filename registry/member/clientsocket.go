package member

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// MaxClientSocketPath is the longest unix socket path Linux binds: sun_path
// holds 108 bytes, the terminating NUL included.
const MaxClientSocketPath = 107

// ClientSocketIn is where a replica whose data lives in dataDir keeps its
// client socket: a directory of its own, so that it can be private (0700).
func ClientSocketIn(dataDir string) string {
	return filepath.Join(dataDir, "etcd-client", "etcd.sock")
}

// validateClientSocket checks the client socket's path before anything
// touches the disk.
//
// The client endpoint is a unix socket, not TCP with mutual TLS: dtr itself
// talks to etcd in-process (Client), so the endpoint exists only because
// etcd must advertise a client URL (it is how a restarted member with a
// wiped dir is recognised as "already bootstrapped" instead of forking the
// cluster) and for an operator's etcdctl inside the container. A loopback
// port is open to every process in the network namespace, whatever its uid;
// a socket in a 0700 directory is open to this uid alone, enforced by the
// kernel, with no client certificate to issue, store or rotate.
func validateClientSocket(path, dataDir string) error {
	const field = "etcd member config: ClientSocket"
	example := ClientSocketIn("/var/lib/dtr")
	switch {
	case path == "":
		return fmt.Errorf("%s is empty; give a unix socket path in a directory only this replica's user may enter, e.g. %s", field, example)
	case strings.Contains(path, "://"):
		return fmt.Errorf("%s %q is a URL, but the metadata store serves clients only on a unix socket: "+
			"a TCP port, even on 127.0.0.1, has no TLS or auth and lets any local process read every secret; give a socket path such as %s",
			field, path, example)
	case !filepath.IsAbs(path) || filepath.Clean(path) != path:
		return fmt.Errorf("%s %q must be a clean absolute path, e.g. %s", field, path, example)
	case len(path) > MaxClientSocketPath:
		return fmt.Errorf("%s %q is %d bytes, but Linux binds unix socket paths of at most %d; choose a shorter path (or a shorter data dir)",
			field, path, len(path), MaxClientSocketPath)
	}
	if rel, err := filepath.Rel(dataDir, path); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("%s %q is inside Dir %s; put it outside: wiping Dir must not touch a running member's socket",
			field, path, dataDir)
	}
	return nil
}

// prepareClientSocket readies the socket's directory before etcd binds: it
// must be a real directory of this uid that nobody else may enter, because
// etcd creates the socket with the process umask (often 0755) and only
// secureClientSocket narrows it. It also clears a stale socket left by a
// member that was killed without Close (kill -9, OOM), and refuses a live one.
func prepareClientSocket(path string, lg *zap.Logger) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the client socket directory: %w", err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return err
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("checking the client socket: %w", err)
	case fi.Mode().Type() != os.ModeSocket:
		return fmt.Errorf("client socket %s exists and is not a socket (%s); move it away, etcd would delete it", path, fi.Mode().Type())
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("another process serves on the client socket %s (an earlier member of this replica that is still running?); stop it first", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the stale client socket: %w", err)
	}
	lg.Info("removed a stale client socket; the last member here stopped without closing it", zap.String("path", path))
	return nil
}

// checkPrivateDir refuses a directory that another uid may enter, or that
// is not this uid's own: it would admit others to the socket inside.
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("checking the client socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("client socket directory %s is not a directory (%s); give a path whose directory is a real one", dir, fi.Mode().Type())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("client socket directory %s belongs to uid %d, not to this process's uid %d; use a directory of this user's own", dir, st.Uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("client socket directory %s has mode %04o, which lets other users reach the metadata store; chmod 0700 %s, or use a directory of its own", dir, perm, dir)
	}
	return nil
}

// secureClientSocket narrows the socket etcd just bound to 0600 and checks
// that its directory is still private; see prepareClientSocket.
func secureClientSocket(path string) error {
	if err := checkPrivateDir(filepath.Dir(path)); err != nil {
		return err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("checking the client socket: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("client socket %s is not a socket after etcd bound it (%s)", path, fi.Mode().Type())
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("restricting the client socket to its owner: %w", err)
	}
	return nil
}
