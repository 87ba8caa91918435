package security_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtr-registry/dtr/registry/registrytest"
)

// The token flood's numbers, from issue 12 ("What must be true", point 1).
const (
	// floodRequests maximal anonymous token requests, each token used once.
	floodRequests = 1000
	// floodScopes is what each request asks for: more than any cap, as in
	// the review (19,000 scopes gave a 0.9 MB token).
	floodScopes = 20000
	// maxFloodGrowth: "the replica's RSS grows by at most 30 MiB".
	maxFloodGrowth = 30 << 20
	// maxFloodSettle is our reading of "returns near its idle size": within
	// 15 MiB of idle a few seconds after the flood. The tokens live 5 min
	// (+60 s leeway), longer than the harness may run, so this holds only if
	// the verified-token cache keeps little per token.
	maxFloodSettle = 15 << 20
	// maxTokenBytes is our reading of "a cap on token size".
	maxTokenBytes = 16 << 10
	// floodWorkers send the flood concurrently.
	floodWorkers = 8
	// floodBudget bounds the flood's time: a replica that cannot answer
	// 1,000 capped requests in a minute is itself a denial of service.
	floodBudget = 60 * time.Second
	// floodAbort stops the flood early once the replica holds this much more
	// than idle: it has broken by then, and the machine is shared.
	floodAbort = 4 * maxFloodGrowth
)

// scopeQuery is a token request's query with n scopes that grant nothing
// (repositories that do not exist).
func scopeQuery(n int) string {
	var b strings.Builder
	b.WriteString("service=dtr")
	for i := range n {
		fmt.Fprintf(&b, "&scope=repository%%3Ax%d%%2Fy%%3Apull", i)
	}
	return b.String()
}

// anonymousToken asks for a token with query q; it answers the status and
// the token.
func anonymousToken(c *http.Client, r *registrytest.Replica, q string) (int, string, error) {
	resp, err := c.Get(r.URL + "/auth/token?" + q)
	if err != nil {
		return 0, "", err
	}
	b := drain(resp)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, "", nil
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return resp.StatusCode, "", err
	}
	return resp.StatusCode, out.Token, nil
}

// tokenScopeFlood: anonymous maximal token requests must not grow the
// replica's memory, and tokens carry only what they grant.
func tokenScopeFlood(t *testing.T, p *report) {
	r := startReplica(t, nil)
	c := newClient(r, 2*time.Minute)

	// Scopes that grant nothing stay out of the token; one that grants
	// something stays in.
	apiMust(t, r, "POST", "/api/v0/repositories/admin", map[string]any{"name": "pub", "visibility": "public"}, 201)
	q := url.Values{"service": {"dtr"}, "scope": {"repository:admin/pub:pull,push", "repository:nobody/private:push", "foo:bar:baz", "repository:admin/pub:delete"}}
	st, tok, err := anonymousToken(c, r, q.Encode())
	if err != nil || st != http.StatusOK {
		t.Fatalf("anonymous token for a public repository: %d %v", st, err)
	}
	access, _, err := claims(tok)
	if err != nil {
		t.Fatalf("decoding the token: %v", err)
	}
	var kept []string
	for _, a := range access {
		kept = append(kept, a.Type+":"+a.Name+":"+strings.Join(a.Actions, ","))
	}
	p.check(slices.Equal(kept, []string{"repository:admin/pub:pull"}), "an anonymous token's access claim is %q, want only repository:admin/pub:pull", kept)

	// The most scopes the server accepts in one request: all of them, a
	// capped number, or (refused past a cap) the largest count it answers.
	accepted := floodScopes
	st, tok, err = anonymousToken(c, r, scopeQuery(floodScopes))
	if err != nil {
		t.Fatalf("a token request with %d scopes: %v", floodScopes, err)
	}
	if st != http.StatusOK {
		p.notef("%d scopes refused with %d", floodScopes, st)
		lo, hi := 0, floodScopes
		for hi-lo > 1 {
			mid := (lo + hi) / 2
			s, tk, err := anonymousToken(c, r, scopeQuery(mid))
			if err != nil {
				t.Fatalf("a token request with %d scopes: %v", mid, err)
			}
			if s == http.StatusOK {
				lo, tok = mid, tk
			} else {
				hi = mid
			}
		}
		accepted = lo
		if accepted == 0 {
			t.Fatalf("the server refuses even one scope")
		}
	}
	access, _, _ = claims(tok)
	p.notef("%d scopes accepted per request, token %d bytes with %d access entries", accepted, len(tok), len(access))
	p.check(len(tok) <= maxTokenBytes, "a token of %d bytes (cap %d)", len(tok), maxTokenBytes)
	p.check(len(access) == 0, "%d scopes that grant nothing are in the token", len(access))

	// The flood: 1,000 maximal requests, each token used once.
	query := scopeQuery(accepted)
	for range 3 { // warm the code paths before measuring idle
		if _, tk, _ := anonymousToken(c, r, query); tk != "" {
			useToken(c, r, tk)
		}
	}
	idle := rss()
	var (
		done, failed atomic.Int64
		peak         atomic.Int64
		wg           sync.WaitGroup
	)
	peak.Store(idle)
	ctx, cancel := context.WithTimeout(context.Background(), floodBudget)
	defer cancel()
	next := make(chan struct{})
	go func() {
		defer close(next)
		for range floodRequests {
			select {
			case next <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range floodWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				st, tk, err := anonymousToken(c, r, query)
				if err != nil || st != http.StatusOK {
					failed.Add(1)
					continue
				}
				useToken(c, r, tk)
				done.Add(1)
			}
		}()
	}
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			m := rss()
			if m > peak.Load() {
				peak.Store(m)
			}
			if m-idle > floodAbort {
				cancel()
			}
		}
	}()
	start := time.Now()
	wg.Wait()
	took := time.Since(start)
	cancel()
	<-sampled
	after := rss()
	peak.Store(max(peak.Load(), after))
	// A short wait: what the replica still holds then, it holds until the
	// tokens expire.
	time.Sleep(3 * time.Second)
	settled := rss()
	growth := peak.Load() - idle
	p.notef("RSS +%s after %d requests in %.1f s (%d failed), idle %s → peak %s, %s 3 s later",
		mib(growth), done.Load(), took.Seconds(), failed.Load(), mib(idle), mib(peak.Load()), mib(settled))
	p.check(done.Load()+failed.Load() >= floodRequests, "only %d of %d requests answered in %v", done.Load()+failed.Load(), floodRequests, floodBudget)
	p.check(growth <= maxFloodGrowth, "RSS grew by %s (limit %s)", mib(growth), mib(maxFloodGrowth))
	p.check(settled-idle <= maxFloodSettle, "RSS stayed %s above idle (limit %s)", mib(settled-idle), mib(maxFloodSettle))
}

// useToken sends a manifest GET with the token: the replica verifies (and
// may cache) it.
func useToken(c *http.Client, r *registrytest.Replica, tok string) {
	req, _ := http.NewRequest("GET", r.URL+"/v2/x0/y/manifests/x", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := c.Do(req); err == nil {
		drain(resp)
	}
}
