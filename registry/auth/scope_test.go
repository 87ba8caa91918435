package auth

import (
	"reflect"
	"testing"
)

func TestParseScope(t *testing.T) {
	tests := []struct {
		in   string
		want Scope
		bad  bool
	}{
		{in: "repository:acme/app:push,pull", want: Scope{Type: "repository", Name: "acme/app", Actions: []string{"push", "pull"}}},
		{in: "repository(plugin):x:pull", want: Scope{Type: "repository", Class: "plugin", Name: "x", Actions: []string{"pull"}}},
		{in: "registry:catalog:*", want: Scope{Type: "registry", Name: "catalog", Actions: []string{"*"}}},
		{in: "repository:admin/charts/hello:push,pull", want: Scope{Type: "repository", Name: "admin/charts/hello", Actions: []string{"push", "pull"}}},
		{in: "repository:localhost:5000/app:pull", want: Scope{Type: "repository", Name: "localhost:5000/app", Actions: []string{"pull"}}},
		{in: "repository:app", bad: true},
		{in: "repository:app:", bad: true},
		{in: ":app:pull", bad: true},
		{in: "repository(x:app:pull", bad: true},
		{in: "repository::pull", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseScope(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseScope(%q) = %+v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseScope(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	if got, err := ParseScopes([]string{"repository:a/b:pull repository:c/d:push", "bogus"}); err != nil || len(got) != 2 {
		t.Errorf("ParseScopes: %+v", got)
	}
}

// FuzzParseScope: the token request parser never panics, and what it accepts
// renders back to a scope that parses the same.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"repository:acme/app:push,pull", "repository(plugin):x:pull", "registry:catalog:*", "a:b:c:d", "::", "x(y):z:", "repository:a/b:pull,,push"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := ParseScope(s)
		if err != nil {
			return
		}
		again, err := ParseScope(sc.String())
		if err != nil || !reflect.DeepEqual(sc, again) {
			t.Fatalf("ParseScope(%q) = %+v renders as %q, which parses as %+v, %v", s, sc, sc.String(), again, err)
		}
		_, _ = ParseScopes([]string{s, s + " " + s})
	})
}
