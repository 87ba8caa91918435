package registrytest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/meta"
)

// S3Server is a versitygw process serving S3 from a directory (POSIX backend,
// metadata in sidecar files: ext4's xattr size limit breaks large multipart
// uploads in xattr mode).
type S3Server struct {
	Endpoint string // http://127.0.0.1:<port>
	Bucket   string
	Access   string
	Secret   string
	bin      string
	dir      string
	port     int
	cmd      *exec.Cmd
	t        testing.TB
}

// VersityGW returns the versitygw binary, or skips the test saying how to get it.
func VersityGW(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("DTR_VERSITYGW"); p != "" {
		return p
	}
	p, err := exec.LookPath("versitygw")
	if err != nil {
		t.Skip("versitygw is not installed: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 (.ci/run does)")
	}
	return p
}

// StartS3 starts versitygw with one bucket until the test ends.
func StartS3(t testing.TB) *S3Server {
	t.Helper()
	s := &S3Server{bin: VersityGW(t), dir: t.TempDir(), port: FreePort(t), Bucket: "dtr", Access: "dtr-test", Secret: "dtr-test-secret-key", t: t}
	s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", s.port)
	for _, d := range []string{"data/" + s.Bucket, "meta"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start (re)starts the server and waits until it answers.
func (s *S3Server) Start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, "-q", "--port", fmt.Sprintf("127.0.0.1:%d", s.port), "posix",
		"--sidecar", filepath.Join(s.dir, "meta"), filepath.Join(s.dir, "data"))
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.Access, "ROOT_SECRET_KEY="+s.Secret)
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting versitygw: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(s.Endpoint); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("versitygw did not answer on %s", s.Endpoint)
}

// Stop stops the server; safe twice.
func (s *S3Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// ObjectDir is the directory that holds the bucket's objects, one file per
// key: tests read the storage's layout there as on a filesystem.
func (s *S3Server) ObjectDir() string { return filepath.Join(s.dir, "data", s.Bucket) }

// Storage is the replica storage setting for this server.
func (s *S3Server) Storage() meta.Storage {
	secure := false
	return meta.Storage{Type: "s3", S3: &meta.S3{
		Region: "us-east-1", Bucket: s.Bucket, RegionEndpoint: s.Endpoint,
		AccessKey: s.Access, SecretKey: s.Secret, ForcePathStyle: true, Secure: &secure,
	}}
}
