package ucp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/ucp"
	"github.com/dtr-registry/dtr/ucp/ucptest"
)

// These tests use the REAL local engine: over its unix socket, over mutual
// TLS (tcp://), and through the UCP stand-in (https:// with a login).

const socket = "unix:///var/run/docker.sock"

func engineTest(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("engine test: skipped with -short")
	}
	ucptest.EnsureSwarm(t)
}

func testLog(t *testing.T) (*logrus.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetLevel(logrus.DebugLevel)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return l, &buf
}

func connectAndListNodes(t *testing.T, o ucp.Options) *ucp.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := ucp.Connect(ctx, o)
	if err != nil {
		t.Fatalf("Connect(%s): %v", o.URL, err)
	}
	t.Cleanup(func() { c.Close() })
	nodes, err := c.Nodes(ctx)
	if err != nil {
		t.Fatalf("Nodes: %v", err)
	}
	if len(nodes) == 0 || nodes[0].Hostname == "" || nodes[0].Role != "manager" || !nodes[0].Ready() {
		t.Fatalf("nodes = %+v; want at least one ready manager with a hostname", nodes)
	}
	if c.Manager.NodeID == "" || c.Manager.APIVersion == "" {
		t.Fatalf("manager info not recorded: %+v", c.Manager)
	}
	t.Logf("%s: %d node(s), first %s at %s, engine %s, API %s", o.URL, len(nodes), nodes[0].Hostname, nodes[0].Addr, c.Manager.EngineVersion, c.Manager.APIVersion)
	return c
}

func TestSocketNotInSwarm(t *testing.T) {
	if testing.Short() {
		t.Skip("engine test: skipped with -short")
	}
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := c.Info(context.Background())
	if err != nil {
		t.Skipf("no engine: %v", err)
	}
	if info.Swarm.LocalNodeState == "active" {
		t.Skip("the local engine is in a swarm already; the fake engine covers the not-a-manager case (TestCheckManager)")
	}
	_, err = ucp.Connect(context.Background(), ucp.Options{URL: socket})
	if !errors.Is(err, ucp.ErrNotManager) || !strings.Contains(err.Error(), "docker swarm init") {
		t.Fatalf("Connect to an engine outside a swarm = %v; want ErrNotManager naming `docker swarm init`", err)
	}
}

func TestSocket(t *testing.T) {
	engineTest(t)
	l, _ := testLog(t)
	connectAndListNodes(t, ucp.Options{URL: socket, Log: l})
}

func TestSocketMissing(t *testing.T) {
	_, err := ucp.Connect(context.Background(), ucp.Options{URL: "unix:///nonexistent/docker.sock"})
	if !errors.Is(err, ucp.ErrControlPlane) || !strings.Contains(err.Error(), "-v /var/run/docker.sock:/var/run/docker.sock") {
		t.Fatalf("Connect to a missing socket = %v; want the mount hint", err)
	}
}

func TestEngineMutualTLS(t *testing.T) {
	engineTest(t)
	srv, err := ucptest.StartEngine("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l, _ := testLog(t)
	t.Run("client bundle", func(t *testing.T) {
		connectAndListNodes(t, ucp.Options{URL: srv.URL, CertPath: srv.BundleDir, Log: l})
	})
	t.Run("no TLS material", func(t *testing.T) {
		_, err := ucp.Connect(context.Background(), ucp.Options{URL: srv.URL, Log: l})
		if !errors.Is(err, ucp.ErrControlPlane) || !strings.Contains(err.Error(), "DOCKER_CERT_PATH") {
			t.Fatalf("got %v; want an error naming DOCKER_CERT_PATH", err)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		_, err := ucp.Connect(context.Background(), ucp.Options{URL: srv.URL, CA: string(srv.CAPEM), Log: l, Timeout: 10 * time.Second})
		if !errors.Is(err, ucp.ErrControlPlane) {
			t.Fatalf("got %v; want a control-plane error (the server demands a client certificate)", err)
		}
	})
}

func TestUCPStandIn(t *testing.T) {
	engineTest(t)
	srv, err := ucptest.Start(ucptest.Options{Username: "admin", Password: "s3cret-Passw0rd"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	t.Run("login with the CA", func(t *testing.T) {
		l, buf := testLog(t)
		connectAndListNodes(t, ucp.Options{URL: srv.URL, Username: "admin", Password: "s3cret-Passw0rd", CA: string(srv.CAPEM), Log: l})
		for _, line := range []string{"Validating UCP cert", "Connecting to UCP", "health checking ucp"} {
			if !strings.Contains(buf.String(), line) {
				t.Errorf("log lacks %q:\n%s", line, buf)
			}
		}
		if strings.Contains(buf.String(), "s3cret-Passw0rd") {
			t.Errorf("the password appears in the log")
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		l, _ := testLog(t)
		_, err := ucp.Connect(context.Background(), ucp.Options{URL: srv.URL, Username: "admin", Password: "wrong", CA: string(srv.CAPEM), Log: l})
		if !errors.Is(err, ucp.ErrAuthentication) || !strings.Contains(err.Error(), "Failed to authenticate. Status code: 401") {
			t.Fatalf("got %v; want ErrAuthentication with status 401", err)
		}
	})
	t.Run("unknown CA", func(t *testing.T) {
		l, _ := testLog(t)
		_, err := ucp.Connect(context.Background(), ucp.Options{URL: srv.URL, Username: "admin", Password: "s3cret-Passw0rd", Log: l})
		want := `use it by appending --ucp-ca "$(cat ca.pem)" to this command`
		if !errors.Is(err, ucp.ErrControlPlane) || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v; want DTR's --ucp-ca hint", err)
		}
	})
	t.Run("insecure TLS pins the served CA", func(t *testing.T) {
		l, buf := testLog(t)
		connectAndListNodes(t, ucp.Options{URL: srv.URL, Username: "admin", Password: "s3cret-Passw0rd", Insecure: true, Log: l})
		if !strings.Contains(buf.String(), "pinned the CA served by UCP") {
			t.Errorf("log does not say the CA was pinned:\n%s", buf)
		}
	})
	t.Run("engine call without a token", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test
		resp, err := hc.Get(srv.URL + "/v1.41/nodes")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET /nodes without a token: %s, want 401", resp.Status)
		}
	})
}
