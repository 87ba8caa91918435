package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/docker/docker/client"

	"github.com/dtr-registry/dtr/ucp/ucptest"
)

// These tests run the real dtr binary, as an operator would.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dtr-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "dtr")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("building dtr: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cleanEnv is the environment without any variable dtr reads.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "UCP_") || strings.HasPrefix(kv, "DTR_") || strings.HasPrefix(kv, "MSR_") || strings.HasPrefix(kv, "DOCKER_CERT_PATH=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// TestNoTerminalFailsFast: with stdin closed, a missing value is an error
// naming the flag and its variable, at once, never a hang.
func TestNoTerminalFailsFast(t *testing.T) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "install", "--ucp-node", "x")
	cmd.Stdin = devnull
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("exit = %v, want status 2\n%s", err, stderr.String())
	}
	for _, w := range []string{"--ucp-url ($UCP_URL)", "--ucp-password ($UCP_PASSWORD)", "stdin is not a terminal"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
		}
	}
	if elapsed > 5*time.Second {
		t.Errorf("took %v; a missing value must fail at once", elapsed)
	}
	t.Logf("failed in %v with: %s", elapsed.Round(time.Millisecond), strings.TrimSpace(stderr.String()))
}

// terminal drives a program on a pseudo-terminal: it keeps what the program
// printed, answers survey's cursor-position queries and types answers.
type terminal struct {
	t    *testing.T
	ptmx *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (term *terminal) read() {
	defer close(term.done)
	buf := make([]byte, 4096)
	for {
		n, err := term.ptmx.Read(buf)
		if n > 0 {
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if bytes.Contains(buf[:n], []byte("\x1b[6n")) {
				_, _ = term.ptmx.Write([]byte("\x1b[1;1R"))
			}
		}
		if err != nil {
			return
		}
	}
}

func (term *terminal) output() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// answer waits for prompt to appear (after from) and types text + Enter.
func (term *terminal) answer(prompt, text string) {
	term.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(term.output(), prompt) {
		if time.Now().After(deadline) {
			term.t.Fatalf("prompt %q did not appear; screen:\n%q", prompt, term.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the reader switch the terminal mode
	if _, err := io.WriteString(term.ptmx, text+"\r"); err != nil {
		term.t.Fatal(err)
	}
}

// TestPromptsOnTerminal answers install's prompts on a pseudo-terminal,
// including the hidden password, against the UCP stand-in in front of the
// real local engine.
func TestPromptsOnTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("engine test: skipped with -short")
	}
	ucptest.EnsureSwarm(t)
	const password = "Pty-s3cret-pw"
	srv, err := ucptest.Start(ucptest.Options{Username: "admin", Password: password})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	node := localHostname(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// --dry-run: the prompts, the login and the cluster checks run, and the
	// plan is printed, but nothing is installed.
	cmd := exec.CommandContext(ctx, binary, "install", "--ucp-node", node, "--nocolor", "--dry-run", "--replica-http-port", "39080", "--replica-https-port", "39443")
	cmd.Env = cleanEnv("UCP_CA=" + string(srv.CAPEM))
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	term := &terminal{t: t, ptmx: ptmx, done: make(chan struct{})}
	go term.read()

	term.answer("ucp-url (The UCP URL including domain and port): ", srv.URL)
	term.answer("ucp-username (The UCP administrator username): ", "admin")
	term.answer("ucp-password: ", password)
	err = cmd.Wait()
	<-term.done
	screen := term.output()
	if err != nil {
		t.Fatalf("exit = %v, want 0; screen:\n%s", err, screen)
	}
	for _, w := range []string{"Validating UCP cert", "Connecting to UCP", "verifying [39080 39443] ports on " + node, "Install replica", "create service dtr-registry-"} {
		if !strings.Contains(screen, w) {
			t.Errorf("screen lacks %q:\n%s", w, screen)
		}
	}
	if strings.Contains(screen, password) {
		t.Errorf("the password was echoed:\n%s", screen)
	}
	t.Logf("screen:\n%s", screen)
	if srv.Logins() != 1 {
		t.Errorf("the stand-in saw %d logins, want 1", srv.Logins())
	}
}

func localHostname(t *testing.T) string {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.Name
}
