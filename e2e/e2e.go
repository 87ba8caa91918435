// Package e2e holds the tests that drive real Docker engines: the docker CLI
// against replica containers, the installer against a swarm, and the
// multi-node lab. They skip with one line where the machine lacks an engine
// or the images (make images builds them; CI does both).
package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/images"
)

// Docker runs the docker CLI and returns its combined output.
func Docker(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	if env != nil {
		cmd.Env = env
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// MustDocker is Docker that fails the test on error.
func MustDocker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := Docker(t, nil, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// RequireImages skips the test when the engine or this version's images are
// missing.
func RequireImages(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("engine test: skipped with -short")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker CLI on this machine")
	}
	if out, err := Docker(t, nil, "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("no Docker engine answers: %s", out)
	}
	for _, ref := range images.All() {
		if _, err := Docker(t, nil, "image", "inspect", ref); err != nil {
			t.Skipf("image %s is missing: run make images first", ref)
		}
	}
}
