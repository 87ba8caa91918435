package meta

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// TestUnavailable: what etcd answers while it has no quorum is an outage
// (503, retry), whatever wraps it; what it answers to a wrong request, and
// dtr's own "no such record", are not.
func TestUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no leader", rpctypes.ErrNoLeader, true},
		{"read index timed out", fmt.Errorf("reading /dtr/accounts/admin: %w", rpctypes.ErrTimeout), true},
		{"leader failed", rpctypes.ErrTimeoutDueToLeaderFail, true},
		{"leader changed", rpctypes.ErrLeaderChanged, true},
		{"server stopped", rpctypes.ErrStopped, true},
		{"too many requests", rpctypes.ErrTooManyRequests, true},
		{"call timeout", fmt.Errorf("account admin: %w", context.DeadlineExceeded), true},
		{"gRPC status no leader", fmt.Errorf("writing k: %w", rpctypes.ErrGRPCNoLeader), true},
		{"proposal dropped", fmt.Errorf("writing k: %w", statusUnknown(proposalDropped)), true},
		{"not found", fmt.Errorf("account x: %w", ErrNotFound), false},
		{"conflict", ErrConflict, false},
		{"compacted", rpctypes.ErrCompacted, false},
		{"database full", rpctypes.ErrNoSpace, false},
		{"canceled by the client", context.Canceled, false},
		{"other", errors.New("decoding: bad json"), false},
		{"nil", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Unavailable(tc.err); got != tc.want {
				t.Errorf("Unavailable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// statusUnknown is how the in-process client passes on an error etcd's gRPC
// layer has no code for: its text only.
type statusUnknown string

func (s statusUnknown) Error() string { return string(s) }

// TestLocalReads: only a context made by LocalReads reads serializably.
func TestLocalReads(t *testing.T) {
	if n := len(readOpts(context.Background())); n != 0 {
		t.Errorf("a plain context adds %d read options, want none", n)
	}
	if n := len(readOpts(LocalReads(context.Background()))); n != 1 {
		t.Errorf("LocalReads adds %d read options, want 1 (serializable)", n)
	}
}
