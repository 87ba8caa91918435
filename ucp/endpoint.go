// Package ucp connects the installer to the cluster's control plane: a Swarm
// manager's Engine API over its unix socket or mutual-TLS tcp, or UCP/MKE over
// https with a login. It turns --ucp-url and the credentials into one narrow
// client; the Docker client's types stay inside this package and orchestrator.
package ucp

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Scheme is how dtr reaches the control plane.
type Scheme string

const (
	// SchemeSocket is the local engine's unix socket (mounted into the installer).
	SchemeSocket Scheme = "unix"
	// SchemeEngine is a Swarm manager's Engine API over TLS (tcp://host:2376).
	SchemeEngine Scheme = "tcp"
	// SchemeUCP is UCP/MKE: https with a login and a bearer token.
	SchemeUCP Scheme = "https"
)

// Endpoint is a parsed --ucp-url.
type Endpoint struct {
	Scheme Scheme
	// Address is host:port for tcp and https, the socket path for unix.
	Address string
}

// String returns the endpoint as a URL.
func (e Endpoint) String() string {
	if e.Scheme == SchemeSocket {
		return "unix://" + e.Address
	}
	return string(e.Scheme) + "://" + e.Address
}

// Host is the host part of Address (empty for a socket).
func (e Endpoint) Host() string {
	h, _, err := net.SplitHostPort(e.Address)
	if err != nil {
		return e.Address
	}
	return h
}

// NeedsLogin reports whether reaching the control plane itself needs the
// UCP username and password (only UCP/MKE does).
func (e Endpoint) NeedsLogin() bool { return e.Scheme == SchemeUCP }

// ErrBadURL marks a --ucp-url that cannot be used.
var ErrBadURL = errors.New("invalid --ucp-url")

// ParseURL parses --ucp-url. A URL without a scheme is UCP/MKE over https, as
// with DTR ("ucp.example.com" or "ucp.example.com:8443").
func ParseURL(raw string) (Endpoint, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return Endpoint{}, fmt.Errorf("%w: it is empty", ErrBadURL)
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, fmt.Errorf("%w %q: %v", ErrBadURL, raw, err)
	}
	switch u.Scheme {
	case "unix":
		p := u.Path
		if u.Host != "" {
			p = "/" + u.Host + u.Path
		}
		if !strings.HasPrefix(p, "/") || p == "/" {
			return Endpoint{}, fmt.Errorf("%w %q: a socket needs an absolute path, e.g. unix:///var/run/docker.sock", ErrBadURL, raw)
		}
		return Endpoint{Scheme: SchemeSocket, Address: p}, nil
	case "tcp", "https":
		if u.Host == "" || u.Hostname() == "" {
			return Endpoint{}, fmt.Errorf("%w %q: it has no host", ErrBadURL, raw)
		}
		if u.Path != "" && u.Path != "/" {
			return Endpoint{}, fmt.Errorf("%w %q: remove the path %q; dtr needs only the scheme, host and port", ErrBadURL, raw, u.Path)
		}
		port := u.Port()
		if port == "" {
			port = "443"
			if u.Scheme == "tcp" {
				port = "2376"
			}
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return Endpoint{}, fmt.Errorf("%w %q: port %q is not between 1 and 65535", ErrBadURL, raw, port)
		}
		return Endpoint{Scheme: Scheme(u.Scheme), Address: net.JoinHostPort(u.Hostname(), port)}, nil
	case "http":
		return Endpoint{}, fmt.Errorf("%w %q: UCP/MKE is reached over https only; use https://%s", ErrBadURL, raw, u.Host)
	default:
		return Endpoint{}, fmt.Errorf("%w %q: unknown scheme %q; use unix:///var/run/docker.sock, tcp://<manager>:2376 or https://<ucp-host>", ErrBadURL, raw, u.Scheme)
	}
}
