// Package prompttest answers a command's prompts from a script in tests,
// and records what the command asked.
package prompttest

import (
	"fmt"
	"strings"
)

// Question is one prompt a Script answered.
type Question struct {
	Kind    string // "input", "password" or "confirm"
	Message string
	Default string
}

// Script is a prompt.Prompter that answers from a list, in order, and
// records what it was asked; a prompt beyond the list is an error.
type Script struct {
	Answers []string
	Asked   []Question
}

func (s *Script) next(q Question) (string, error) {
	s.Asked = append(s.Asked, q)
	if len(s.Answers) == 0 {
		return "", fmt.Errorf("unexpected prompt %q", q.Message)
	}
	a := s.Answers[0]
	s.Answers = s.Answers[1:]
	return a, nil
}

// Input implements prompt.Prompter: an empty answer takes the default.
func (s *Script) Input(message, def string) (string, error) {
	a, err := s.next(Question{Kind: "input", Message: message, Default: def})
	if a == "" {
		a = def
	}
	return a, err
}

// Password implements prompt.Prompter.
func (s *Script) Password(message string) (string, error) {
	return s.next(Question{Kind: "password", Message: message})
}

// Confirm implements prompt.Prompter: "y" or "yes" is yes, an empty answer
// the default, anything else no.
func (s *Script) Confirm(message string, def bool) (bool, error) {
	a, err := s.next(Question{Kind: "confirm", Message: message})
	if err != nil {
		return false, err
	}
	switch strings.ToLower(a) {
	case "":
		return def, nil
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// Interactive implements prompt.Prompter.
func (s *Script) Interactive() bool { return true }
