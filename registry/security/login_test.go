package security_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/registrytest"
)

// The login flood's numbers, from issue 12 ("What must be true", point 4).
const (
	// loginClients send wrong passwords concurrently.
	loginClients = 32
	// loginFloodFor is how long they do (the review's flood ran ~10 s).
	loginFloodFor = 10 * time.Second
	// latencySamples of /_ping and of a manifest GET, idle and under flood.
	// With 100, p99 was the slowest sample or so, and idle p99 alone ranged
	// 0.6-1.6 ms between runs on sub-millisecond requests: 500 make p99 the
	// fifth slowest.
	latencySamples = 500
	// maxPingP99: "/_ping p99 ≤ 20 ms".
	maxPingP99 = 20 * time.Millisecond
	// maxManifestSlowdown: "a cached-token manifest GET p99 ≤ 2× its idle value".
	maxManifestSlowdown = 2
	// maxOtherLogin is our bound on "a correct login of another account
	// still succeeds" during the flood and after it: it may wait for a
	// password hasher, not for the flood to end.
	maxOtherLogin = 5 * time.Second
)

// The timing probe's numbers (point 4: "unknown users cost the same as known
// ones"); the issue names no tolerance, these are ours.
const (
	timingSamples   = 40
	timingTolerance = 0.25 // medians within 25% of each other…
	timingSlack     = 5 * time.Millisecond
)

// randomWord is a random hex string, to make each probe's secrets unique.
func randomWord() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// basicGet sends GET path with Basic credentials and answers the status.
func basicGet(c *http.Client, r *registrytest.Replica, path, user, password string) (int, error) {
	req, _ := http.NewRequest("GET", r.URL+path, nil)
	req.SetBasicAuth(user, password)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	drain(resp)
	return resp.StatusCode, nil
}

// loginFlood: wrong passwords from many clients must not starve serving,
// must not lock out other accounts and must not reach the logs.
func loginFlood(t *testing.T, p *report) {
	logs := &lockedBuffer{}
	r := startReplica(t, func(o *registry.Options) {
		l := logrus.New()
		l.SetOutput(logs)
		l.SetLevel(logrus.InfoLevel) // a replica's default level: what operators keep
		o.Log = l
	})
	// Distribution logs through logrus's standard logger.
	std := logrus.StandardLogger()
	prevOut := std.Out
	std.SetOutput(&teeWriter{logs, prevOut})
	t.Cleanup(func() { std.SetOutput(prevOut) })

	victimPW, otherPW, pullerPW := "Victim-"+randomWord(), "Other-"+randomWord(), "Puller-"+randomWord()
	createUser(t, r, "lf-victim", victimPW)
	createUser(t, r, "lf-other", otherPW)
	createUser(t, r, "lf-puller", pullerPW)
	pushImage(t, r, "lf-puller", pullerPW, "lf-puller/app", "v1")
	pullTok := r.Token(t, "lf-puller", pullerPW, "repository:lf-puller/app:pull")

	pingClient := &http.Client{Timeout: 30 * time.Second}
	getClient := newClient(r, 30*time.Second)
	ping := func() (time.Duration, error) {
		start := time.Now()
		resp, err := pingClient.Get(r.HTTP + "/_ping")
		if err != nil {
			return 0, err
		}
		drain(resp)
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("/_ping: %d", resp.StatusCode)
		}
		return time.Since(start), nil
	}
	manifest := func() (time.Duration, error) {
		req, _ := http.NewRequest("GET", r.URL+"/v2/lf-puller/app/manifests/v1", nil)
		req.Header.Set("Authorization", "Bearer "+pullTok)
		req.Header.Set("Accept", manifestAccept["Accept"])
		start := time.Now()
		resp, err := getClient.Do(req)
		if err != nil {
			return 0, err
		}
		drain(resp)
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("manifest GET: %d", resp.StatusCode)
		}
		return time.Since(start), nil
	}
	// sample takes latencySamples of each, spread over spread.
	sample := func(spread time.Duration) (pings, gets []time.Duration, err error) {
		gap := spread / latencySamples
		for range latencySamples {
			next := time.Now().Add(gap)
			d, err := ping()
			if err != nil {
				return nil, nil, err
			}
			pings = append(pings, d)
			if d, err = manifest(); err != nil {
				return nil, nil, err
			}
			gets = append(gets, d)
			time.Sleep(time.Until(next))
		}
		return pings, gets, nil
	}
	for range 5 { // warm connections
		_, _ = ping()
		_, _ = manifest()
	}
	idlePings, idleGets, err := sample(2 * time.Second)
	if err != nil {
		t.Fatalf("idle: %v", err)
	}

	// The flood: wrong passwords for an existing user, for unknown users
	// and on the admin API (admin's name), every one unique and marked,
	// each client from an address of its own (a botnet, which per-address
	// throttling alone does not stop).
	marker := "Wr0ng" + randomWord()
	ctx, cancel := context.WithTimeout(context.Background(), loginFloodFor)
	defer cancel()
	var sent, refused atomic.Int64
	var wg sync.WaitGroup
	for w := range loginClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClientFrom(r, 30*time.Second, fmt.Sprintf("127.0.1.%d", w+1))
			for i := 0; ctx.Err() == nil; i++ {
				pw := fmt.Sprintf("%s-%d-%d", marker, w, i)
				var st int
				var err error
				switch i % 3 {
				case 0:
					st, err = basicGet(c, r, "/auth/token?service=dtr", "lf-victim", pw)
				case 1:
					st, err = basicGet(c, r, "/auth/token?service=dtr", fmt.Sprintf("lf-ghost-%d-%d", w, i), pw)
				case 2:
					st, err = basicGet(c, r, "/api/v0/accounts", admin, pw)
				}
				if err == nil {
					sent.Add(1)
					if st != http.StatusOK {
						refused.Add(1)
					}
				}
			}
		}()
	}
	// A correct login of another account, from another address, halfway
	// through and after: it may wait, it must get in.
	otherClient := newClientFrom(r, 30*time.Second, "127.0.2.1")
	otherLogin := func() (time.Duration, int) {
		var st int
		took, _ := poll(maxOtherLogin, 250*time.Millisecond, func() bool {
			st, _ = basicGet(otherClient, r, "/auth/token?service=dtr", "lf-other", otherPW)
			return st == http.StatusOK
		})
		return took, st
	}
	type login struct {
		took time.Duration
		st   int
	}
	mid := make(chan login, 1)
	go func() {
		time.Sleep(loginFloodFor / 2)
		took, st := otherLogin()
		mid <- login{took, st}
	}()
	floodPings, floodGets, sampleErr := sample(loginFloodFor - 500*time.Millisecond)
	wg.Wait()
	during := <-mid
	afterTook, afterSt := otherLogin()
	if sampleErr != nil {
		p.brokef("under the flood: %v", sampleErr)
	}

	pingP99, getIdle, getP99 := percentile(floodPings, 99), percentile(idleGets, 99), percentile(floodGets, 99)
	p.notef("%d wrong logins from %d clients in %v, /_ping p99 %s (idle %s), manifest GET p99 %s (idle %s)",
		sent.Load(), loginClients, loginFloodFor, ms(pingP99), ms(percentile(idlePings, 99)), ms(getP99), ms(getIdle))
	p.notef("another account's login %d in %s during, %d in %s after", during.st, ms(during.took), afterSt, ms(afterTook))
	p.check(refused.Load() == sent.Load(), "%d wrong logins were accepted", sent.Load()-refused.Load())
	if sampleErr == nil {
		p.check(pingP99 <= maxPingP99, "/_ping p99 %s (limit %s)", ms(pingP99), ms(maxPingP99))
		p.check(getP99 <= maxManifestSlowdown*getIdle, "manifest GET p99 %s, more than %d× idle %s", ms(getP99), maxManifestSlowdown, ms(getIdle))
	}
	p.check(during.st == http.StatusOK, "another account's correct login during the flood: %d after %s", during.st, ms(during.took))
	p.check(afterSt == http.StatusOK, "another account's correct login after the flood: %d after %s", afterSt, ms(afterTook))

	// Logs: the refusals may show, the passwords never.
	text := logs.String()
	for _, secret := range []string{marker, victimPW, otherPW, pullerPW, adminPW} {
		p.check(!strings.Contains(text, secret), "a password is in the replica's log")
	}
	p.notef("%d log lines", strings.Count(text, "\n"))
}

// teeWriter writes to the probe's log buffer and to the original output.
type teeWriter struct {
	buf  *lockedBuffer
	next interface{ Write([]byte) (int, error) }
}

func (w *teeWriter) Write(b []byte) (int, error) {
	_, _ = w.buf.Write(b)
	return w.next.Write(b)
}

// loginTiming: a wrong password costs the same for an unknown user as for
// an existing one, so timing does not tell which names exist.
func loginTiming(t *testing.T, p *report) {
	r := startReplica(t, nil)
	const users = timingSamples / 2 // two wrong passwords each: below any per-account throttle
	okPW := "Timing-" + randomWord()
	createUser(t, r, "tm-ok", okPW)
	for i := range users {
		createUser(t, r, fmt.Sprintf("tm-user-%d", i), "Timing-"+randomWord())
	}
	login := func(c *http.Client, user, pw string) (time.Duration, int) {
		start := time.Now()
		st, err := basicGet(c, r, "/auth/token?service=dtr", user, pw)
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		return time.Since(start), st
	}
	var known, unknown []time.Duration
	for i := range timingSamples {
		// Each pair from an address of its own (a success does not reset
		// an address's failures), on a warmed connection; alternate which
		// goes first. A throttled answer would time nothing: only 401s count.
		c := newClientFrom(r, 30*time.Second, fmt.Sprintf("127.0.3.%d", i+1))
		if _, st := login(c, "tm-ok", okPW); st != http.StatusOK {
			t.Fatalf("a correct login to warm the connection: %d", st)
		}
		sample := func(user string, into *[]time.Duration) {
			d, st := login(c, user, "wrong-"+randomWord())
			if st != http.StatusUnauthorized {
				t.Fatalf("a wrong password for %s: %d, want 401", user, st)
			}
			*into = append(*into, d)
		}
		if i%2 == 0 {
			sample(fmt.Sprintf("tm-user-%d", i%users), &known)
			sample(fmt.Sprintf("tm-ghost-%d", i), &unknown)
		} else {
			sample(fmt.Sprintf("tm-ghost-%d", i), &unknown)
			sample(fmt.Sprintf("tm-user-%d", i%users), &known)
		}
	}
	k, u := percentile(known, 50), percentile(unknown, 50)
	diff := k - u
	if diff < 0 {
		diff = -diff
	}
	p.notef("median wrong-password login %s for an existing user, %s for an unknown one", ms(k), ms(u))
	p.check(diff <= timingSlack || float64(diff) <= timingTolerance*float64(max(k, u)),
		"the medians differ by %s (limit %.0f%% or %s)", ms(diff), timingTolerance*100, ms(timingSlack))
}
