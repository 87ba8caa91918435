package registry

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
)

// The realm and redirect base: the external URL when set; else the Host
// only when it names the replica; else the connection's local address.
// Never X-Forwarded-Proto (at d95c32b both followed the client's headers).
func TestPublicBase(t *testing.T) {
	r := &Replica{opts: Options{PublicHTTPSPort: 443}, ownNames: map[string]bool{"127.0.0.1": true, "dtr-replica": true}}
	local := &net.TCPAddr{IP: net.ParseIP("10.0.0.7"), Port: 8443}
	req := func(host string, https bool) *http.Request {
		rq, _ := http.NewRequestWithContext(context.WithValue(context.Background(), http.LocalAddrContextKey, net.Addr(local)), http.MethodGet, "/v2/", nil)
		rq.Host = host
		rq.Header.Set("X-Forwarded-Proto", "http")
		if https {
			rq.TLS = &tls.ConnectionState{}
		}
		return rq
	}
	tests := []struct {
		external string
		host     string
		https    bool
		want     string
	}{
		{"https://dtr.example.com", "evil.example", true, "https://dtr.example.com"},
		{"https://dtr.example.com:4443", "127.0.0.1:31443", true, "https://dtr.example.com:4443"},
		{"", "127.0.0.1:31443", true, "https://127.0.0.1:31443"},
		{"", "127.0.0.1:31080", false, "https://127.0.0.1"},
		{"", "evil.example", true, "https://10.0.0.7:8443"},
		{"", "127.0.0.1:bad", true, "https://10.0.0.7:8443"},
		{"", "evil.example", false, "https://10.0.0.7"},
	}
	for _, tt := range tests {
		ext := tt.external
		r.externalURL.Store(&ext)
		if got := r.publicBase(req(tt.host, tt.https)); got != tt.want {
			t.Errorf("external %q, Host %q, https %v: %s, want %s", tt.external, tt.host, tt.https, got, tt.want)
		}
	}
}
