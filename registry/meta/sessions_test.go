package meta

import (
	"testing"
	"time"
)

// TestSessionExpired: a session ends at its absolute expiry whatever its
// activity, and IdleFor after it was last seen.
func TestSessionExpired(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s := Session{CreatedAt: t0, LastSeen: t0.Add(time.Hour), ExpiresAt: t0.Add(12 * time.Hour), IdleFor: 30 * time.Minute}
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{t0.Add(time.Hour + 29*time.Minute), ""},
		{t0.Add(time.Hour + 30*time.Minute), "idle too long"},
		{t0.Add(12 * time.Hour), "signed in too long ago"},
	} {
		ended, why := s.Expired(tc.at)
		if ended != (tc.want != "") || why != tc.want {
			t.Errorf("at %v: %v %q, want %q", tc.at.Sub(t0), ended, why, tc.want)
		}
	}
	busy := s
	busy.LastSeen = t0.Add(12*time.Hour - time.Minute)
	if ended, why := busy.Expired(t0.Add(12 * time.Hour)); !ended || why != "signed in too long ago" {
		t.Errorf("activity extended the absolute expiry: %v %q", ended, why)
	}
}
