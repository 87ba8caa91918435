package meta

import (
	"errors"
	"strings"
	"testing"
)

// TestSplitRepository: the first component is the namespace, the rest the
// name, nested or not; what Distribution's grammar refuses, an invalid
// account name in front and names over 255 characters are ErrInvalid.
func TestSplitRepository(t *testing.T) {
	long := "admin/" + strings.Repeat("a/", 124) + "bc" // 256 characters
	tests := []struct {
		full, ns, name string
	}{
		{"admin/app", "admin", "app"},
		{"admin/charts/hello", "admin", "charts/hello"},
		{"acme/a/b/c", "acme", "a/b/c"},
		{"my-org/team.x/app__1", "my-org", "team.x/app__1"},
		{long[:255], "admin", long[6:255]},
		{"app", "", ""},
		{"admin/", "", ""},
		{"admin//app", "", ""},
		{"admin/app/", "", ""},
		{"/admin/app", "", ""},
		{"a/app", "", ""}, // account names have at least 2 characters
		{"Admin/app", "", ""},
		{"admin/Charts/hello", "", ""},
		{"admin/../app", "", ""},
		{"admin/./app", "", ""},
		{"admin/app-/x", "", ""},
		{long, "", ""},
	}
	for _, tc := range tests {
		ns, name, err := SplitRepository(tc.full)
		if tc.ns == "" {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("SplitRepository(%q) = %q, %q, %v; want ErrInvalid", tc.full, ns, name, err)
			}
			continue
		}
		if err != nil || ns != tc.ns || name != tc.name {
			t.Errorf("SplitRepository(%q) = %q, %q, %v; want %q, %q", tc.full, ns, name, err, tc.ns, tc.name)
		}
	}
	if _, _, err := SplitRepository(long); err == nil || !strings.Contains(err.Error(), "at most 255") {
		t.Errorf("a 256-character name: %v, want a message naming the limit", err)
	}
}

// TestNestedNameKeys: a nested name is one escaped key component, so the
// keys of admin/charts and admin/charts/hello never share a prefix that a
// listing or a prefix deletion of one would reach into the other.
func TestNestedNameKeys(t *testing.T) {
	parent, nested := key("repos", "admin", "charts"), key("repos", "admin", "charts/hello")
	if nested != Prefix+"repos/admin/charts%2Fhello" {
		t.Fatalf("nested repository key %q", nested)
	}
	if strings.HasPrefix(nested, parent+"/") {
		t.Errorf("%q is under %q", nested, parent)
	}
	if strings.HasPrefix(dir("access", "admin", "charts/hello"), dir("access", "admin", "charts")) {
		t.Errorf("the nested repository's grants are under its parent's")
	}
	if strings.HasPrefix(dir("referrers", "admin/charts/hello"), dir("referrers", "admin/charts")) {
		t.Errorf("the nested repository's referrers are under its parent's")
	}
	parts, ok := keyParts(nested, dir("repos"), 2)
	if !ok || parts[0] != "admin" || parts[1] != "charts/hello" {
		t.Errorf("keyParts(%q) = %q, %v", nested, parts, ok)
	}
	parts, ok = keyParts(key("referrer-of", "admin/charts/hello", "sha256:ab"), dir("referrer-of"), 2)
	if !ok || parts[0] != "admin/charts/hello" || parts[1] != "sha256:ab" {
		t.Errorf("referrer-of key parts %q, %v", parts, ok)
	}
}
