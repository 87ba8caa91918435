package registry

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dtr-registry/dtr/registry/meta"
)

// Webhook deliveries (docs/observability.md). An event is queued in the
// metadata store before the request that caused it is answered, one
// delivery per matching webhook; every replica delivers due deliveries,
// claiming each first, so a delivery outlives the replica that took the
// push. A push only ever waits for that one metadata write, never for an
// endpoint.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the
	// body, keyed with the webhook's secret.
	SignatureHeader = "X-Dtr-Signature-256"
	// DeliveryHeader is the delivery's ID: the same on every attempt.
	DeliveryHeader = "X-Dtr-Delivery"
	// EventHeader is the webhook type.
	EventHeader = "X-Dtr-Event"
	// DuplicateHeader is "true" on an attempt made after a replica was lost
	// while delivering: the receiver may have the event already.
	DuplicateHeader = "X-Dtr-Possible-Duplicate"
)

// perHookParallel bounds one webhook's attempts under way on a replica.
const perHookParallel = 2

// webhookDispatcher queues and delivers webhook events.
type webhookDispatcher struct {
	store   *meta.Store
	watch   func() *clientv3.Client
	log     *logrus.Entry
	replica string
	metrics *replicaMetrics
	now     func() time.Time

	hooks atomic.Pointer[[]meta.Webhook]
	wake  chan struct{}

	// Delivery tuning; tests shorten them.
	timeout     time.Duration // one attempt
	retryBase   time.Duration // first retry after this, doubling
	retryMax    time.Duration
	maxAttempts int
	poll        time.Duration
	parallel    int

	mu       sync.Mutex
	inflight map[string]bool // delivery IDs being attempted here
	perHook  map[string]int  // attempts under way here, by webhook
	healthy  *bool           // this replica's last health, for REPLICA_HEALTH
}

func newWebhookDispatcher(r *Replica) *webhookDispatcher {
	w := &webhookDispatcher{store: r.store, watch: r.member.Client, log: r.log.WithField("component", "webhooks"),
		replica: r.opts.ReplicaID, metrics: r.metrics, now: time.Now, wake: make(chan struct{}, 1),
		timeout: 10 * time.Second, retryBase: time.Second, retryMax: 5 * time.Minute, maxAttempts: 12,
		poll: time.Second, parallel: 8, inflight: map[string]bool{}, perHook: map[string]int{}}
	if r.opts.WebhookRetryBase > 0 {
		w.retryBase = r.opts.WebhookRetryBase
	}
	if r.opts.WebhookTimeout > 0 {
		w.timeout = r.opts.WebhookTimeout
	}
	empty := []meta.Webhook{}
	w.hooks.Store(&empty)
	return w
}

// payload is what an endpoint receives (DTR's shape).
type webhookPayload struct {
	Type      string         `json:"type"`
	CreatedAt time.Time      `json:"createdAt"`
	Contents  map[string]any `json:"contents"`
	Location  string         `json:"location,omitempty"`
}

// webhookEvent is one event before it is matched to webhooks.
type webhookEvent struct {
	typ     string
	repo    string // "" for cluster events
	payload webhookPayload
}

// request is accessLog's hook: it queues the request's webhook events. It
// runs before the client's answer is flushed, so an event is queued when
// the client hears of success.
func (w *webhookDispatcher) request(d requestDone) {
	evs := w.eventsOf(d)
	if len(evs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(d.r.Context()), 3*time.Second)
	defer cancel()
	w.queue(ctx, evs)
}

// eventsOf turns an answered request into webhook events.
func (w *webhookDispatcher) eventsOf(d requestDone) []webhookEvent {
	now := w.now().UTC()
	var evs []webhookEvent
	add := func(typ, repo string, contents map[string]any, location string) {
		ns, name, _ := strings.Cut(repo, "/")
		contents["namespace"], contents["repository"] = ns, name
		contents["author"] = d.user
		evs = append(evs, webhookEvent{typ: typ, repo: repo, payload: webhookPayload{Type: typ, CreatedAt: now, Contents: contents, Location: location}})
	}
	for _, n := range d.notes {
		if d.status >= 300 && n.Event == meta.WebhookRepoCreated && !strings.HasPrefix(d.path, "/v2/") {
			continue
		}
		event := "created"
		if n.Event == meta.WebhookRepoDeleted {
			event = "deleted"
		}
		add(n.Event, n.Repo, map[string]any{"event": event, "imageName": n.Repo}, "/repositories/"+n.Repo)
	}
	repo, ref, ok := route(d.path, "manifests")
	if !ok || d.status >= 300 {
		return evs
	}
	switch d.method {
	case http.MethodPut:
		dg := d.header.Get("Docker-Content-Digest")
		mt := d.r.Header.Get("Content-Type")
		add(meta.WebhookManifestPush, repo, map[string]any{"digest": dg, "mediaType": mt, "imageName": repo + "@" + dg, "pushedAt": now}, "/repositories/"+repo+"/manifests/"+dg)
		tags := d.r.URL.Query()["tag"]
		if !isDigest(ref) {
			tags = append([]string{ref}, tags...)
		}
		for _, tag := range tags {
			add(meta.WebhookTagPush, repo, map[string]any{"tag": tag, "digest": dg, "mediaType": mt, "imageName": repo + ":" + tag, "pushedAt": now}, "/repositories/"+repo+"/tags/"+tag)
		}
	case http.MethodDelete:
		if isDigest(ref) {
			add(meta.WebhookManifestDelete, repo, map[string]any{"digest": ref, "imageName": repo + "@" + ref, "deletedAt": now}, "/repositories/"+repo+"/manifests/"+ref)
		} else {
			add(meta.WebhookTagDelete, repo, map[string]any{"tag": ref, "imageName": repo + ":" + ref, "deletedAt": now}, "/repositories/"+repo+"/tags/"+ref)
		}
	}
	return evs
}

// queue writes one delivery per matching webhook and event.
func (w *webhookDispatcher) queue(ctx context.Context, evs []webhookEvent) {
	hooks := *w.hooks.Load()
	if len(hooks) == 0 {
		return
	}
	now := w.now()
	var ds []meta.Delivery
	for _, ev := range evs {
		var body []byte
		for _, h := range hooks {
			if !h.Matches(ev.typ, ev.repo) {
				continue
			}
			if body == nil {
				b, err := json.Marshal(ev.payload)
				if err != nil {
					continue
				}
				body = b
			}
			ds = append(ds, meta.Delivery{ID: meta.NewDeliveryID(now), WebhookID: h.ID, Type: ev.typ, Payload: body, CreatedAt: now.UTC(), NextAt: now.UTC()})
		}
	}
	if len(ds) == 0 {
		return
	}
	if err := w.store.EnqueueDeliveries(ctx, ds); err != nil {
		w.log.WithError(err).WithField("deliveries", len(ds)).Error("webhook events not queued: the metadata store refused them")
		w.metrics.webhook("lost", len(ds))
		return
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// clusterEvent queues an event about the cluster (GC, replica health).
func (w *webhookDispatcher) clusterEvent(typ string, contents map[string]any) {
	if w == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.queue(ctx, []webhookEvent{{typ: typ, payload: webhookPayload{Type: typ, CreatedAt: w.now().UTC(), Contents: contents}}})
}

// health is the health checker's hook: a change of this replica's health
// is a REPLICA_HEALTH event.
func (w *webhookDispatcher) health(h Health) {
	w.mu.Lock()
	prev, now := w.healthy, h.Healthy
	w.healthy = &now
	w.mu.Unlock()
	if prev == nil || *prev == now {
		return // the first result (coming up is not news), or no change
	}
	go w.clusterEvent(meta.WebhookReplicaHealth, map[string]any{"replica": w.replica, "healthy": now, "error": h.Error})
}

// watchHooks keeps the webhook list current.
func (w *webhookDispatcher) watchHooks(ctx context.Context) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := w.watch().Watch(wctx, meta.WebhooksPrefix(), clientv3.WithPrefix())
		w.reload(ctx)
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			w.reload(ctx)
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (w *webhookDispatcher) reload(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, meta.CallTimeout)
	defer cancel()
	hs, err := w.store.Webhooks(rctx)
	if err != nil {
		w.log.WithError(err).Debug("reading the webhooks")
		return
	}
	w.hooks.Store(&hs)
}

// run delivers due deliveries until ctx ends.
func (w *webhookDispatcher) run(ctx context.Context) {
	go w.watchHooks(ctx)
	slots := make(chan struct{}, w.parallel)
	t := time.NewTicker(w.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.wake:
		}
		w.deliverDue(ctx, slots)
	}
}

func (w *webhookDispatcher) deliverDue(ctx context.Context, slots chan struct{}) {
	rctx, cancel := context.WithTimeout(ctx, meta.CallTimeout)
	ds, revs, err := w.store.DueDeliveries(rctx, w.now(), 4*w.parallel)
	cancel()
	if err != nil {
		w.log.WithError(err).Debug("reading the webhook queue")
		return
	}
	for i, d := range ds {
		w.mu.Lock()
		// At most perHookParallel attempts per webhook: a hanging endpoint
		// holds slots for the attempt timeout, and must not hold them all.
		busy := w.inflight[d.ID] || w.perHook[d.WebhookID] >= perHookParallel
		w.mu.Unlock()
		if busy {
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			return // every slot delivers: the rest wait for the next round
		}
		cctx, cancel := context.WithTimeout(ctx, meta.CallTimeout)
		claimed, rev, err := w.store.ClaimDelivery(cctx, d, revs[i], w.replica, w.now().Add(w.timeout+10*time.Second))
		cancel()
		if err != nil {
			<-slots
			continue
		}
		w.mu.Lock()
		w.inflight[d.ID] = true
		w.perHook[d.WebhookID]++
		w.mu.Unlock()
		go func() {
			defer func() {
				w.mu.Lock()
				delete(w.inflight, claimed.ID)
				if w.perHook[claimed.WebhookID]--; w.perHook[claimed.WebhookID] <= 0 {
					delete(w.perHook, claimed.WebhookID)
				}
				w.mu.Unlock()
				<-slots
				select { // a slot is free: look again without waiting for the poll
				case w.wake <- struct{}{}:
				default:
				}
			}()
			w.deliver(ctx, claimed, rev)
		}()
	}
}

// deliver makes one attempt of a claimed delivery and records its result.
func (w *webhookDispatcher) deliver(ctx context.Context, d meta.Delivery, rev int64) {
	hook, err := w.store.Webhook(ctx, d.WebhookID)
	if errors.Is(err, meta.ErrNotFound) {
		_ = w.store.DropDelivery(ctx, d.ID)
		return
	}
	if err != nil {
		return // the claim runs out; another round retries
	}
	start := w.now()
	code, sendErr := w.send(ctx, hook, d.ID, d.Type, d.Payload, d.MaybeDelivered)
	d.Attempts++
	entry := meta.DeliveryLogEntry{ID: d.ID, Type: d.Type, Attempts: d.Attempts, CreatedAt: d.CreatedAt,
		LastAttemptAt: start.UTC(), LastStatusCode: code, Replica: w.replica, MaybeDuplicate: d.MaybeDelivered}
	done := sendErr == nil
	switch {
	case done:
		at := w.now().UTC()
		entry.Status, entry.DeliveredAt = "delivered", &at
		w.metrics.webhook("delivered", 1)
	case d.Attempts >= w.maxAttempts:
		entry.Status, entry.LastError = "failed", sendErr.Error()
		done = true
		w.metrics.webhook("failed", 1)
		w.log.WithFields(logrus.Fields{"webhook": hook.ID, "delivery": d.ID, "attempts": d.Attempts}).WithError(sendErr).Warn("webhook delivery given up")
	default:
		entry.Status, entry.LastError = "retrying", sendErr.Error()
		d.LastError = sendErr.Error()
		d.NextAt = w.now().Add(w.backoff(d.Attempts)).UTC()
		d.ClaimedBy, d.ClaimedUntil = "", time.Time{}
		w.metrics.webhook("retried", 1)
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), meta.CallTimeout)
	defer cancel()
	if err := w.store.FinishDelivery(fctx, d, rev, done, entry); err != nil {
		w.log.WithError(err).WithField("delivery", d.ID).Warn("recording a webhook delivery")
	}
}

// backoff is the wait before attempt n+1: retryBase doubled per attempt,
// at most retryMax.
func (w *webhookDispatcher) backoff(n int) time.Duration {
	b := w.retryBase
	for i := 1; i < n && b < w.retryMax; i++ {
		b *= 2
	}
	return min(b, w.retryMax)
}

// Sign is the signature header's value for body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// send POSTs one payload; a 2xx answer is success.
func (w *webhookDispatcher) send(ctx context.Context, hook meta.Webhook, id, typ string, body []byte, maybeDup bool) (int, error) {
	client, err := webhookClient(hook, w.timeout)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.Endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "dtr-webhooks")
	req.Header.Set(EventHeader, typ)
	req.Header.Set(DeliveryHeader, id)
	req.Header.Set(SignatureHeader, Sign(hook.Secret, body))
	if maybeDup {
		req.Header.Set(DuplicateHeader, "true")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("POST %s: %w", hook.Endpoint, scrubURLError(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("POST %s: %s", hook.Endpoint, resp.Status)
	}
	return resp.StatusCode, nil
}

// scrubURLError drops the URL from a client error (the endpoint is named
// already, and it could carry credentials in its query).
func scrubURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// webhookClient is an HTTP client for one webhook: its CA, or no
// verification when the webhook says so; no redirects (a signed payload
// goes where it was configured to, only).
func webhookClient(hook meta.Webhook, timeout time.Duration) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: hook.SkipTLSVerification} //nolint:gosec // the webhook's own setting
	if hook.TLSCert != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(hook.TLSCert)) {
			return nil, errors.New("the webhook's tlsCert holds no PEM certificate")
		}
		tc.RootCAs = pool
	}
	return &http.Client{
		Timeout:       timeout,
		Transport:     &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// TestWebhook sends a sample event of hook's type to its endpoint once,
// for POST /api/v0/webhooks/test; it returns the endpoint's status.
func (w *webhookDispatcher) TestWebhook(ctx context.Context, hook meta.Webhook) (int, error) {
	contents := map[string]any{"namespace": "foo", "repository": "bar", "tag": "latest", "digest": "sha256:" + strings.Repeat("0", 64),
		"imageName": "foo/bar:latest", "author": "", "test": true}
	body, err := json.Marshal(webhookPayload{Type: hook.Type, CreatedAt: w.now().UTC(), Contents: contents, Location: "/repositories/foo/bar/tags/latest"})
	if err != nil {
		return 0, err
	}
	return w.send(ctx, hook, "test-"+meta.NewDeliveryID(w.now()), hook.Type, body, false)
}
