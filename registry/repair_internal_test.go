package registry

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The data volume remembers the tokens it forced with: an earlier repair's
// token left in the service's environment (a repair in place does not
// change it) never forces again, a marker from before the list (one token)
// still counts, and the list stays bounded.
func TestForcedMarkerKeepsTokens(t *testing.T) {
	d := onDisk{dataDir: t.TempDir()}
	if d.forcedWith("aaaaaaaa") {
		t.Fatal("forced with a token before any repair")
	}
	// As written by a replica before the marker became a list.
	if err := os.WriteFile(filepath.Join(d.dataDir, forcedMarker), []byte("aaaaaaaa\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.markForced("bbbbbbbb"); err != nil {
		t.Fatal(err)
	}
	for tok, want := range map[string]bool{"aaaaaaaa": true, "bbbbbbbb": true, "cccccccc": false, "": false, "aaaa": false} {
		if got := d.forcedWith(tok); got != want {
			t.Errorf("forcedWith(%q) = %v, want %v", tok, got, want)
		}
	}
	for i := range 40 {
		if err := d.markForced(fmt.Sprintf("token-%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(d.forcedTokens()); n != forcedKept {
		t.Errorf("%d tokens kept, want %d", n, forcedKept)
	}
	if !d.forcedWith("token-39") || d.forcedWith("token-07") || d.forcedWith("aaaaaaaa") {
		t.Errorf("the newest tokens must stay, the oldest go: %v", d.forcedTokens())
	}
}
