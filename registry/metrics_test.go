package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

const testMetricsToken = "metrics-only-token-0123456789abcdef"

// startMetricsReplica starts a replica with the unauthenticated metrics
// port and a metrics token.
func startMetricsReplica(t *testing.T) (*registrytest.Replica, string, *logtest.Hook) {
	t.Helper()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "metrics-token")
	if err := os.WriteFile(tokFile, []byte(testMetricsToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := registrytest.Options(t, filepath.Join(dir, "data"))
	o.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t))
	o.MetricsTokenFile = tokFile
	o.LogLevel = "info"
	o.Log.SetLevel(logrus.InfoLevel)
	hook := logtest.NewLocal(o.Log)
	return registrytest.Start(t, o), o.MetricsAddr, hook
}

func scrape(t *testing.T, c *http.Client, url string, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsAccess: /metrics on the HTTPS port answers an administrator or
// the metrics token and nobody else; the metrics port answers anyone; the
// exposition names the series docs/observability.md lists.
func TestMetricsAccess(t *testing.T) {
	r, addr, logs := startMetricsReplica(t)
	if st := r.API(t, registrytest.AdminUser, registrytest.AdminPassword, "POST", "/api/v0/accounts", map[string]any{"name": "alice", "password": "alice-password"}, nil); st != 201 {
		t.Fatalf("creating alice: %d", st)
	}
	basic := func(u, p string) map[string]string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(u, p)
		return map[string]string{"Authorization": req.Header.Get("Authorization")}
	}
	adminTok := r.Token(t, registrytest.AdminUser, registrytest.AdminPassword, "api:v0:*")
	aliceTok := r.Token(t, "alice", "alice-password", "api:v0:*")
	for _, c := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"anonymous", nil, 401},
		{"admin basic", basic(registrytest.AdminUser, registrytest.AdminPassword), 200},
		{"admin wrong password", basic(registrytest.AdminUser, "nope"), 401},
		{"non-admin basic", basic("alice", "alice-password"), 401},
		{"admin API token of an admin", map[string]string{"Authorization": "Bearer " + adminTok}, 200},
		{"admin API token of a non-admin", map[string]string{"Authorization": "Bearer " + aliceTok}, 401},
		{"metrics token", map[string]string{"Authorization": "Bearer " + testMetricsToken}, 200},
		{"wrong metrics token", map[string]string{"Authorization": "Bearer " + testMetricsToken + "x"}, 401},
	} {
		if st, body := scrape(t, r.Client, r.URL+"/metrics", c.header); st != c.want {
			t.Errorf("%s: %d, want %d: %.200s", c.name, st, c.want, body)
		}
	}
	push := r.Token(t, registrytest.AdminUser, registrytest.AdminPassword, "repository:admin/counted:push,pull")
	if _, st := r.PushImage(t, push, "admin/counted", "v1", []byte("counted layer")); st != 201 {
		t.Fatalf("push: %d", st)
	}
	// Past auth.FreeAccountFailures, alice's wrong passwords are throttled.
	for i := 0; i < 7; i++ {
		scrape(t, r.Client, r.URL+"/metrics", basic("alice", "wrong"))
	}
	st, body := scrape(t, http.DefaultClient, "http://"+addr+"/metrics", nil)
	if st != 200 {
		t.Fatalf("metrics port: %d", st)
	}
	for _, want := range []string{
		`dtr_http_requests_total{code="201",method="POST",route="api_accounts"} 1`,
		`dtr_http_request_duration_seconds_bucket{method="GET",route="metrics"`,
		`dtr_auth_logins_total{result="failed"} 7`,    // admin once, alice 6 times (the 6th locks her for 1 s)
		`dtr_auth_logins_total{result="throttled"} 1`, // alice's 7th, within that second
		`dtr_replica_healthy{replica="aaaaaaaaaaaa"} 1`,
		`dtr_metadata_request_duration_seconds_count{op="txn"}`,
		`dtr_storage_operations_total{op="Writer"}`,
		`dtr_http_request_bytes_total{route="v2_blob_upload"}`,
		`dtr_http_requests_total{code="201",method="PUT",route="v2_manifest"} 1`,
		`etcd_server_is_leader 1`,
		`etcd_server_proposals_committed_total`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
			for _, l := range strings.Split(body, "\n") {
				if strings.HasPrefix(l, strings.SplitN(want, "{", 2)[0]) {
					t.Log(l)
				}
			}
		}
	}
	// The access log names the authenticated user, and only then.
	var named, anonymous bool
	for _, e := range logs.AllEntries() {
		if e.Message != "request" {
			continue
		}
		switch {
		case e.Data["path"] == "/v2/admin/counted/manifests/v1" && e.Data["method"] == "PUT":
			named = e.Data["user"] == registrytest.AdminUser
		case e.Data["path"] == "/api/v0/accounts" && e.Data["method"] == "POST":
			if e.Data["user"] != registrytest.AdminUser {
				t.Errorf("admin API call logged as user %v", e.Data["user"])
			}
		case e.Data["path"] == "/metrics" && e.Data["status"] == 401:
			anonymous = anonymous || e.Data["user"] == nil
		}
	}
	if !named || !anonymous {
		t.Errorf("access log: manifest PUT named admin %v, refused scrape without user %v", named, anonymous)
	}
}

// TestMetricsPrometheusScrape: a real Prometheus scrapes a replica (the
// open metrics port, and the HTTPS port with the metrics token); after 100
// manifest pulls, a query for them returns 100 from each.
func TestMetricsPrometheusScrape(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (Debian: apt-get install -y prometheus); this test starts a real one")
	}
	r, addr, _ := startMetricsReplica(t)
	tok := r.Token(t, registrytest.AdminUser, registrytest.AdminPassword, "repository:admin/scraped:push,pull")
	img, st := r.PushImage(t, tok, "admin/scraped", "v1", []byte("layer of the scraped image"))
	if st != 201 {
		t.Fatalf("push: %d", st)
	}

	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(ca, r.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokFile, []byte(testMetricsToken), 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: open
    static_configs: [{targets: [%q]}]
  - job_name: https
    scheme: https
    tls_config: {ca_file: %q, server_name: %q}
    authorization: {credentials_file: %q}
    static_configs: [{targets: [%q]}]
`, addr, ca, contract.TLSServerName, tokFile, r.Host)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	web := fmt.Sprintf("127.0.0.1:%d", registrytest.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"), "--web.listen-address="+web, "--log.level=warn")
	out, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus log:\n%s", b)
		}
	})

	pull := r.Token(t, registrytest.AdminUser, registrytest.AdminPassword, "repository:admin/scraped:pull")
	for i := 0; i < 100; i++ {
		st, _, body := r.Do(t, http.MethodGet, "/v2/admin/scraped/manifests/v1", pull, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
		if st != 200 || string(body) != string(img.Manifest) {
			t.Fatalf("pull %d: %d", i, st)
		}
	}

	query := func(job string) (float64, error) {
		q := fmt.Sprintf(`dtr_http_requests_total{job=%q,route="v2_manifest",method="GET",code="200"}`, job)
		resp, err := http.Get("http://" + web + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		var res struct {
			Status string
			Data   struct {
				Result []struct {
					Value []any
				}
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			return 0, err
		}
		if len(res.Data.Result) != 1 || len(res.Data.Result[0].Value) != 2 {
			return 0, fmt.Errorf("query %s: %d series", q, len(res.Data.Result))
		}
		s, _ := res.Data.Result[0].Value[1].(string)
		return strconv.ParseFloat(s, 64)
	}
	for _, job := range []string{"open", "https"} {
		deadline := time.Now().Add(60 * time.Second)
		var got float64
		var err error
		for time.Now().Before(deadline) {
			got, err = query(job)
			if err == nil && got >= 100 {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if got != 100 {
			t.Fatalf("job %s: manifest pulls = %v (err %v), want 100", job, got, err)
		}
		t.Logf("job %s: Prometheus counts %v manifest pulls", job, got)
	}
}
