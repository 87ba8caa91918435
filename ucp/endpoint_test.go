package ucp

import (
	"errors"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in      string
		want    Endpoint
		wantErr string
	}{
		{in: "unix:///var/run/docker.sock", want: Endpoint{SchemeSocket, "/var/run/docker.sock"}},
		{in: "tcp://manager:2376", want: Endpoint{SchemeEngine, "manager:2376"}},
		{in: "tcp://10.0.0.1", want: Endpoint{SchemeEngine, "10.0.0.1:2376"}},
		{in: "https://ucp.example.com", want: Endpoint{SchemeUCP, "ucp.example.com:443"}},
		{in: "ucp.example.com:8443", want: Endpoint{SchemeUCP, "ucp.example.com:8443"}},
		{in: "ucp.example.com", want: Endpoint{SchemeUCP, "ucp.example.com:443"}},
		{in: "https://[::1]:9443/", want: Endpoint{SchemeUCP, "[::1]:9443"}},
		{in: "", wantErr: "it is empty"},
		{in: "http://ucp.example.com", wantErr: "https only"},
		{in: "ftp://x", wantErr: `unknown scheme "ftp"`},
		{in: "https://ucp.example.com/login", wantErr: "remove the path"},
		{in: "https://ucp.example.com:70000", wantErr: "not between 1 and 65535"},
		{in: "unix://", wantErr: "absolute path"},
		{in: "tcp://:2376", wantErr: "no host"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseURL(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrBadURL) {
					t.Fatalf("ParseURL(%q) = %v, %v; want an ErrBadURL containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseURL(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestEndpointNeedsLogin(t *testing.T) {
	for in, want := range map[string]bool{"unix:///s.sock": false, "tcp://m:2376": false, "https://u": true} {
		ep, err := ParseURL(in)
		if err != nil || ep.NeedsLogin() != want {
			t.Errorf("%s: NeedsLogin = %v (err %v), want %v", in, ep.NeedsLogin(), err, want)
		}
	}
}
