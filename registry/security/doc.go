// Package security holds the attack harness of `make security` (issue 12):
// its tests start real replicas in the test process and try, as an anonymous
// client, a user or a local attacker would, each weakness the security review
// found. Every probe prints one line, held or broke, with what it measured.
// The package has no code of its own; see attack_test.go.
package security
