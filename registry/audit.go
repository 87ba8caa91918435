package registry

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dtr-registry/dtr/registry/meta"
)

// The audit trail's retention (docs/observability.md): records older than
// auditMaxAge go, and the oldest beyond auditKeep. At ~500 bytes a record,
// auditKeep bounds the trail to ~25 MB of the metadata store.
const (
	auditMaxAge = 30 * 24 * time.Hour
	auditKeep   = 50000
)

// auditQueue bounds the records waiting for the metadata store. A request
// never waits for its record: when the store is slow and the queue full,
// the record is dropped (counted in dtr_audit_records_total) and only the
// log has it.
const auditQueue = 4096

// auditor turns answered requests into audit records (meta.Event): each is
// logged as JSON at once and written to the metadata store in batches, off
// the request's path.
type auditor struct {
	store   *meta.Store
	log     *logrus.Entry
	replica string
	metrics *replicaMetrics
	queue   chan auditItem
	now     func() time.Time
	// writesRefused says why the metadata store takes no writes now
	// (metadatafull.go), or "": records then go to the log only.
	writesRefused func() string

	mu         sync.Mutex
	visibility map[string]visibilityEntry // repository → private?, for pulls
}

// auditItem is a record waiting to be written; pullOf, when set, names the
// repository of a pull, recorded only if it is private.
type auditItem struct {
	ev     meta.Event
	pullOf string
}

type visibilityEntry struct {
	private bool
	at      time.Time
}

// visibilityFor is how long a repository's visibility is remembered for
// pulls: a pull burst of a thousand costs one read.
const visibilityFor = 10 * time.Second

func newAuditor(r *Replica) *auditor {
	return &auditor{store: r.store, log: r.log, replica: r.opts.ReplicaID, metrics: r.metrics,
		queue: make(chan auditItem, auditQueue), now: time.Now, visibility: map[string]visibilityEntry{},
		writesRefused: r.metadataWritesRefused}
}

// request is accessLog's hook: it records the request if it is audited.
func (a *auditor) request(d requestDone) {
	item, ok := a.classify(d)
	if !ok {
		return
	}
	if item.pullOf != "" {
		// Logged once its repository is known to be private (run).
		a.enqueue(item)
		return
	}
	a.logEvent(item.ev)
	a.enqueue(item)
}

func (a *auditor) enqueue(item auditItem) {
	select {
	case a.queue <- item:
	default:
		if a.metrics != nil {
			a.metrics.auditRecords.WithLabelValues("dropped").Inc()
		}
	}
}

// logEvent writes the record to the replica's log as JSON: nested in a
// JSON log line (--log-format json), a JSON string in a text one.
func (a *auditor) logEvent(ev meta.Event) {
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	var v any = string(b)
	if _, ok := a.log.Logger.Formatter.(*logrus.JSONFormatter); ok {
		v = json.RawMessage(b)
	}
	a.log.WithField("audit", v).Info("audit")
}

// classify decides whether a request is audited and builds its record:
// admin API changes (and backup downloads), and registry pushes, deletes
// and pulls. The registry's 401s are the token dance every client does
// before it authenticates, not attempts.
func (a *auditor) classify(d requestDone) (auditItem, bool) {
	ev := meta.Event{
		PublishedAt: a.now().UTC(), Actor: d.user, ActorType: "user",
		Address: clientAddress(d.r.RemoteAddr), Status: d.status, Success: d.status < 400,
		Replica: a.replica, Target: meta.EventTarget{Name: d.method + " " + d.path},
	}
	if d.status == 0 {
		ev.Status, ev.Success = http.StatusOK, true
	}
	if d.user == "" {
		ev.ActorType = "anonymous"
	} else if meta.IsServiceAccountName(d.user) {
		ev.ActorType = "serviceAccount" // <org>+<name>, docs/identity.md
	}
	ev.ID = meta.NewEventID(ev.PublishedAt)
	if rest, ok := strings.CutPrefix(d.path, "/api/v0/"); ok {
		ev.Target.Type = "api"
		switch d.method {
		case http.MethodPost:
			ev.Type = "CREATE"
		case http.MethodPut, http.MethodPatch:
			ev.Type = "UPDATE"
		case http.MethodDelete:
			ev.Type = "DELETE"
		case http.MethodGet:
			if d.path != "/api/v0/meta/backup" {
				return auditItem{}, false
			}
			ev.Type = "GET"
		default:
			return auditItem{}, false
		}
		seg, _, _ := strings.Cut(rest, "/")
		ev.Object = meta.EventObject{Type: strings.TrimPrefix(routeOf(d.path), "api_"), Name: d.path}
		if ev.Object.Type == "other" {
			ev.Object.Type = "api"
		}
		if (seg == "repositories") && strings.Count(rest, "/") >= 2 {
			parts := strings.SplitN(rest, "/", 4)
			ev.Repository = parts[1] + "/" + parts[2]
		}
		return auditItem{ev: ev}, true
	}
	if !strings.HasPrefix(d.path, "/v2/") || d.status == http.StatusUnauthorized {
		return auditItem{}, false
	}
	ev.Target.Type = "registry"
	if repo, ref, ok := route(d.path, "manifests"); ok {
		ev.Repository = repo
		ev.Object = meta.EventObject{Type: "tag", Name: repo + ":" + ref}
		if isDigest(ref) {
			ev.Object = meta.EventObject{Type: "manifest", ID: ref, Name: repo + "@" + ref}
		}
		if dg := d.header.Get("Docker-Content-Digest"); dg != "" && ev.Object.ID == "" && ev.Success {
			ev.Object.ID = dg
		}
		switch d.method {
		case http.MethodPut:
			ev.Type = "CREATE"
			ev.Object.Content = d.r.Header.Get("Content-Type")
			return auditItem{ev: ev}, true
		case http.MethodDelete:
			ev.Type = "DELETE"
			return auditItem{ev: ev}, true
		case http.MethodGet:
			if d.status >= 500 {
				return auditItem{}, false
			}
			ev.Type = "GET"
			ev.Object.Content = d.header.Get("Content-Type")
			return auditItem{ev: ev, pullOf: repo}, true
		}
		return auditItem{}, false
	}
	if repo, ref, ok := route(d.path, "blobs"); ok && d.method == http.MethodDelete {
		ev.Repository = repo
		ev.Type = "DELETE"
		ev.Object = meta.EventObject{Type: "blob", ID: ref, Name: repo + "@" + ref}
		return auditItem{ev: ev}, true
	}
	return auditItem{}, false
}

// clientAddress is the host of a request's remote address.
func clientAddress(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// private reports whether a pull's repository is private. A repository
// without a record (a pull that failed with 404) counts as private: the
// attempt on a name that may exist is what an auditor asks about.
func (a *auditor) private(ctx context.Context, repo string) bool {
	now := a.now()
	a.mu.Lock()
	e, ok := a.visibility[repo]
	a.mu.Unlock()
	if ok && now.Sub(e.at) < visibilityFor {
		return e.private
	}
	priv := true
	if ns, name, err := meta.SplitRepository(repo); err == nil {
		if rec, err := a.store.Repository(ctx, ns, name); err == nil {
			priv = rec.Visibility != meta.Public
		}
	}
	a.mu.Lock()
	if len(a.visibility) > 10000 {
		clear(a.visibility)
	}
	a.visibility[repo] = visibilityEntry{private: priv, at: now}
	a.mu.Unlock()
	return priv
}

// run writes queued records in batches and applies the retention every
// few minutes, until ctx ends.
func (a *auditor) run(ctx context.Context) {
	trim := time.NewTicker(5 * time.Minute)
	defer trim.Stop()
	a.trim(ctx)
	for {
		var batch []meta.Event
		select {
		case <-ctx.Done():
			return
		case <-trim.C:
			a.trim(ctx)
			continue
		case it := <-a.queue:
			batch = a.accept(ctx, batch, it)
		}
		// Whatever else is queued goes in the same write.
	more:
		for len(batch) < 500 {
			select {
			case it := <-a.queue:
				batch = a.accept(ctx, batch, it)
			default:
				break more
			}
		}
		a.write(ctx, batch)
	}
}

func (a *auditor) accept(ctx context.Context, batch []meta.Event, it auditItem) []meta.Event {
	if it.pullOf != "" {
		if !a.private(ctx, it.pullOf) {
			return batch
		}
		a.logEvent(it.ev)
	}
	return append(batch, it.ev)
}

// write stores a batch, retrying briefly: a leader election takes seconds.
func (a *auditor) write(ctx context.Context, batch []meta.Event) {
	if len(batch) == 0 {
		return
	}
	if reason := a.writesRefused(); reason != "" {
		if a.metrics != nil {
			a.metrics.auditRecords.WithLabelValues("failed").Add(float64(len(batch)))
		}
		return
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(attempt) * time.Second):
			}
		}
		wctx, cancel := context.WithTimeout(ctx, meta.CallTimeout)
		err = a.store.PutEvents(wctx, batch)
		cancel()
		if err == nil {
			if a.metrics != nil {
				a.metrics.auditRecords.WithLabelValues("written").Add(float64(len(batch)))
			}
			return
		}
	}
	if a.metrics != nil {
		a.metrics.auditRecords.WithLabelValues("failed").Add(float64(len(batch)))
	}
	a.log.WithError(err).WithField("records", len(batch)).Warn("audit records not stored in the metadata store; the log has them")
}

func (a *auditor) trim(ctx context.Context) {
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if n, err := a.store.TrimEvents(tctx, a.now(), auditMaxAge, auditKeep); err != nil {
		a.log.WithError(err).Debug("trimming the audit trail")
	} else if n > 0 {
		a.log.WithField("deleted", n).Debug("audit trail trimmed")
	}
}
