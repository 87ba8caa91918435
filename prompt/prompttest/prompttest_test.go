package prompttest

import (
	"testing"

	"github.com/dtr-registry/dtr/prompt"
)

var _ prompt.Prompter = (*Script)(nil)

func TestScript(t *testing.T) {
	s := &Script{Answers: []string{"", "pw", "yes", ""}}
	if a, err := s.Input("name", "def"); a != "def" || err != nil {
		t.Errorf("empty answer: %q %v, want the default", a, err)
	}
	if a, err := s.Password("password"); a != "pw" || err != nil {
		t.Errorf("password: %q %v", a, err)
	}
	if ok, err := s.Confirm("sure", false); !ok || err != nil {
		t.Errorf("yes: %v %v", ok, err)
	}
	if ok, err := s.Confirm("really", true); !ok || err != nil {
		t.Errorf("empty answer to a confirm: %v %v, want the default", ok, err)
	}
	if _, err := s.Input("more", ""); err == nil {
		t.Error("a prompt beyond the script answered")
	}
	want := []Question{{"input", "name", "def"}, {"password", "password", ""}, {"confirm", "sure", ""}, {"confirm", "really", ""}, {"input", "more", ""}}
	if len(s.Asked) != len(want) {
		t.Fatalf("asked %+v", s.Asked)
	}
	for i := range want {
		if s.Asked[i] != want[i] {
			t.Errorf("question %d = %+v, want %+v", i, s.Asked[i], want[i])
		}
	}
}
