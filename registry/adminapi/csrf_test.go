package adminapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCrossSiteMutations: a mutation with a body must be application/json
// and must not come from a foreign Origin; requests that pass reach
// authentication (401 here, the test sends no credentials). Before, a
// text/plain POST from another site's page reached the handler.
func TestCrossSiteMutations(t *testing.T) {
	api := New(Config{})
	tests := []struct {
		name, method, origin, contentType, body string
		want                                    int
	}{
		{"text/plain POST", "POST", "", "text/plain", `{"name":"eve"}`, http.StatusUnsupportedMediaType},
		{"form POST", "POST", "", "application/x-www-form-urlencoded", `name=eve`, http.StatusUnsupportedMediaType},
		{"multipart POST", "POST", "", "multipart/form-data; boundary=x", `--x--`, http.StatusUnsupportedMediaType},
		{"POST without content type", "POST", "", "", `{"name":"eve"}`, http.StatusUnsupportedMediaType},
		{"PATCH text/plain", "PATCH", "", "text/plain", `{"isAdmin":true}`, http.StatusUnsupportedMediaType},
		{"foreign origin, JSON", "POST", "https://evil.example", "application/json", `{"name":"eve"}`, http.StatusForbidden},
		{"foreign origin, no body", "DELETE", "https://evil.example", "", "", http.StatusForbidden},
		{"foreign origin, text/plain", "POST", "https://evil.example", "text/plain", `{}`, http.StatusForbidden},
		{"opaque origin", "POST", "null", "application/json", `{}`, http.StatusForbidden},
		{"same host, other port", "POST", "https://dtr.example.com:8443", "application/json", `{}`, http.StatusForbidden},
		{"same host, other scheme's default port", "POST", "http://dtr.example.com", "application/json", `{}`, http.StatusForbidden},
		{"JSON without origin (curl)", "POST", "", "application/json", `{"name":"eve"}`, http.StatusUnauthorized},
		{"JSON with charset", "POST", "", "application/json; charset=utf-8", `{}`, http.StatusUnauthorized},
		{"same origin", "POST", "https://dtr.example.com", "application/json", `{}`, http.StatusUnauthorized},
		{"same origin, explicit port, other case", "POST", "https://DTR.example.com:443", "application/json", `{}`, http.StatusUnauthorized},
		{"empty PUT without content type", "PUT", "", "", "", http.StatusUnauthorized},
		{"GET from a foreign origin is not a mutation", "GET", "https://evil.example", "", "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := map[string]string{
				"GET": "/api/v0/accounts", "POST": "/api/v0/accounts", "PATCH": "/api/v0/accounts/alice",
				"DELETE": "/api/v0/accounts/alice", "PUT": "/api/v0/accounts/acme/members/alice",
			}[tt.method]
			req := httptest.NewRequest(tt.method, "https://dtr.example.com"+path, nil) // TLS set: an https URL
			if tt.body != "" {
				req = httptest.NewRequest(tt.method, "https://dtr.example.com"+path, strings.NewReader(tt.body))
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			rec := httptest.NewRecorder()
			api.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if tt.want == http.StatusUnsupportedMediaType && !strings.Contains(rec.Body.String(), "application/json") {
				t.Fatalf("the 415 does not name application/json: %s", rec.Body)
			}
		})
	}
}
