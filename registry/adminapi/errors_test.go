package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/dtr-registry/dtr/registry/auth"
	"github.com/dtr-registry/dtr/registry/meta"
)

// TestOutageErrors: an unavailable metadata store is a 503 with Retry-After
// (never a 500, never "wrong password"), and so is a throttled login's 429,
// with its own wait.
func TestOutageErrors(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     int
		retryAfter string
	}{
		{"no leader", fmt.Errorf("account admin: %w", rpctypes.ErrNoLeader), 503, "5"},
		{"read timed out", fmt.Errorf("reading k: %w", rpctypes.ErrTimeout), 503, "5"},
		{"call timeout", fmt.Errorf("reading k: %w", context.DeadlineExceeded), 503, "5"},
		{"login during outage", loginError(fmt.Errorf("account admin: %w", rpctypes.ErrTimeout), errUnauthenticated), 503, "5"},
		{"throttled", loginError(&auth.ThrottledError{RetryAfter: 2500 * time.Millisecond, Reason: "account"}, errUnauthenticated), 429, "3"},
		{"hashers busy", loginError(auth.ErrBusy, errUnauthenticated), 503, "5"},
		{"wrong password", loginError(auth.ErrBadCredentials, errUnauthenticated), 401, ""},
		{"not found", fmt.Errorf("x: %w", meta.ErrNotFound), 404, ""},
		{"broken", errors.New("decoding: bad json"), 500, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			writeError(w, classify(tc.err))
			if w.Code != tc.status || w.Header().Get("Retry-After") != tc.retryAfter {
				t.Errorf("%v: %d Retry-After %q, want %d %q", tc.err, w.Code, w.Header().Get("Retry-After"), tc.status, tc.retryAfter)
			}
			if tc.status == http.StatusServiceUnavailable && tc.name != "hashers busy" && !strings.Contains(w.Body.String(), "quorum") {
				t.Errorf("%v: %s, want the lost quorum named", tc.err, w.Body)
			}
		})
	}
}
