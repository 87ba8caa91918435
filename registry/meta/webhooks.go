package meta

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Webhook types (DTR's names; GC_COMPLETED and REPLICA_HEALTH are dtr's).
const (
	WebhookTagPush        = "TAG_PUSH"
	WebhookTagDelete      = "TAG_DELETE"
	WebhookManifestPush   = "MANIFEST_PUSH"
	WebhookManifestDelete = "MANIFEST_DELETE"
	WebhookRepoCreated    = "REPO_CREATED"
	WebhookRepoDeleted    = "REPO_DELETED"
	WebhookGCCompleted    = "GC_COMPLETED"
	WebhookReplicaHealth  = "REPLICA_HEALTH"
)

// WebhookTypes are the types a webhook may have.
var WebhookTypes = []string{WebhookTagPush, WebhookTagDelete, WebhookManifestPush, WebhookManifestDelete,
	WebhookRepoCreated, WebhookRepoDeleted, WebhookGCCompleted, WebhookReplicaHealth}

// ClusterWebhookType reports whether events of type t concern the cluster,
// not a repository: only webhooks without a key receive them.
func ClusterWebhookType(t string) bool { return t == WebhookGCCompleted || t == WebhookReplicaHealth }

// Webhook is a subscription: events of Type under Key ("namespace/repo",
// "namespace", or "" for all) are POSTed to Endpoint, signed with Secret.
type Webhook struct {
	ID               string     `json:"id"`
	Type             string     `json:"type"`
	Key              string     `json:"key"`
	Endpoint         string     `json:"endpoint"`
	AuthorID         string     `json:"authorID"`
	CreatedAt        time.Time  `json:"createdAt"`
	LastSuccessfulAt *time.Time `json:"lastSuccessfulAt"`
	Inactive         bool       `json:"inactive"`
	// TLSCert is PEM CA certificates the endpoint's certificate must chain
	// to, instead of the system's.
	TLSCert             string `json:"tlsCert,omitempty"`
	SkipTLSVerification bool   `json:"skipTLSVerification"`
	// Secret keys the HMAC-SHA256 signature of every delivery. The API
	// shows it once, when the webhook is created.
	Secret string `json:"secret,omitempty"`
}

// Matches reports whether an event of type t about repository repo
// ("namespace/name", "" for cluster events) goes to w.
func (w Webhook) Matches(t, repo string) bool {
	if w.Inactive || w.Type != t {
		return false
	}
	switch {
	case w.Key == "":
		return true
	case repo == "":
		return false
	case w.Key == repo:
		return true
	}
	return strings.HasPrefix(repo, w.Key+"/") && !strings.Contains(w.Key, "/")
}

// NewWebhookID returns a webhook ID: 64 hex digits, as DTR's.
func NewWebhookID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// CreateWebhook writes a new webhook.
func (s *Store) CreateWebhook(ctx context.Context, w Webhook) error {
	if w.ID == "" || strings.Contains(w.ID, "/") {
		return fmt.Errorf("%w webhook id %q", ErrInvalid, w.ID)
	}
	if !slices.Contains(WebhookTypes, w.Type) {
		return fmt.Errorf("%w webhook type %q: use one of %s", ErrInvalid, w.Type, strings.Join(WebhookTypes, ", "))
	}
	if err := s.create(ctx, key("webhooks", w.ID), w); err != nil {
		return fmt.Errorf("webhook %s: %w", w.ID, err)
	}
	return nil
}

// Webhook returns one webhook.
func (s *Store) Webhook(ctx context.Context, id string) (Webhook, error) {
	var w Webhook
	if _, err := s.get(ctx, key("webhooks", id), &w); err != nil {
		return w, fmt.Errorf("webhook %s: %w", id, err)
	}
	return w, nil
}

// Webhooks lists every webhook, oldest first.
func (s *Store) Webhooks(ctx context.Context) ([]Webhook, error) {
	ws, err := list[Webhook](ctx, s, dir("webhooks"))
	if err != nil {
		return nil, err
	}
	sort.SliceStable(ws, func(a, b int) bool { return ws[a].CreatedAt.Before(ws[b].CreatedAt) })
	return ws, nil
}

// WebhooksPrefix is watched by replicas to keep their webhook list current.
func WebhooksPrefix() string { return dir("webhooks") }

// UpdateWebhook changes a webhook.
func (s *Store) UpdateWebhook(ctx context.Context, id string, fn func(*Webhook) error) (Webhook, error) {
	return mutate(ctx, s, key("webhooks", id), fn)
}

// DeleteWebhook deletes a webhook with its queued deliveries and its
// delivery log.
func (s *Store) DeleteWebhook(ctx context.Context, id string) error {
	resp, err := s.KV.Txn(ctx).Then(
		clientv3.OpDelete(key("webhooks", id)),
		clientv3.OpDelete(dir("webhook-log", id), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return fmt.Errorf("deleting webhook %s: %w", id, err)
	}
	if resp.Responses[0].GetResponseDeleteRange().Deleted == 0 {
		return fmt.Errorf("webhook %s: %w", id, ErrNotFound)
	}
	// Queued deliveries find their webhook gone and are dropped.
	return nil
}

// Delivery is one event queued for one webhook. It lives in the metadata
// store until delivered or given up, so any replica can deliver it.
type Delivery struct {
	ID        string          `json:"id"` // sorts by creation time
	WebhookID string          `json:"webhookID"`
	Type      string          `json:"type"`
	Payload   json.RawMessage `json:"payload"`
	CreatedAt time.Time       `json:"createdAt"`
	Attempts  int             `json:"attempts"`
	NextAt    time.Time       `json:"nextAt"`
	LastError string          `json:"lastError,omitempty"`
	// ClaimedBy and ClaimedUntil: the replica delivering it now. A claim
	// that ran out without a result (its replica was lost mid-delivery)
	// makes the next attempt a possible duplicate.
	ClaimedBy    string    `json:"claimedBy,omitempty"`
	ClaimedUntil time.Time `json:"claimedUntil,omitzero"`
	// MaybeDelivered is set when a claim ran out: the receiver may have
	// the event already.
	MaybeDelivered bool `json:"maybeDelivered,omitempty"`
}

// NewDeliveryID returns a delivery ID that sorts by time.
func NewDeliveryID(now time.Time) string { return NewEventID(now) }

// EnqueueDeliveries queues deliveries, in one transaction.
func (s *Store) EnqueueDeliveries(ctx context.Context, ds []Delivery) error {
	for len(ds) > 0 {
		n := min(len(ds), maxEventOps)
		ops := make([]clientv3.Op, 0, n)
		for _, d := range ds[:n] {
			op, err := putOp(key("webhook-queue", d.ID), d)
			if err != nil {
				return err
			}
			ops = append(ops, op)
		}
		if _, err := s.KV.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("queueing %d webhook deliveries: %w", n, err)
		}
		ds = ds[n:]
	}
	return nil
}

// deliveryScan bounds the queued deliveries one look reads.
const deliveryScan = 2000

// DueDeliveries returns up to limit queued deliveries that are due at now
// and not claimed, longest due first, with their revisions for
// ClaimDelivery.
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]Delivery, []int64, error) {
	// The oldest deliveryScan only: a backlog behind a dead endpoint must
	// not make every replica read all of it every second.
	resp, err := s.KV.Get(ctx, dir("webhook-queue"), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(deliveryScan))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the webhook queue: %w", err)
	}
	var ds []Delivery
	var revs []int64
	for _, kv := range resp.Kvs {
		var d Delivery
		if err := json.Unmarshal(kv.Value, &d); err != nil {
			return nil, nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
		}
		if d.NextAt.After(now) || now.Before(d.ClaimedUntil) {
			continue
		}
		ds, revs = append(ds, d), append(revs, kv.ModRevision)
	}
	// Longest due first: a delivery that just failed waits behind those
	// that have waited longer, so none starves.
	idx := make([]int, len(ds))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return ds[idx[a]].NextAt.Before(ds[idx[b]].NextAt) })
	if len(idx) > limit {
		idx = idx[:limit]
	}
	outD, outR := make([]Delivery, len(idx)), make([]int64, len(idx))
	for i, j := range idx {
		outD[i], outR[i] = ds[j], revs[j]
	}
	return outD, outR, nil
}

// ErrClaimed means another replica claimed a delivery first.
var ErrClaimed = errors.New("claimed by another replica")

// ClaimDelivery claims d (read at rev) for replica until until; it returns
// the delivery as claimed, and ErrClaimed if another replica was first.
func (s *Store) ClaimDelivery(ctx context.Context, d Delivery, rev int64, replica string, until time.Time) (Delivery, int64, error) {
	if d.ClaimedBy != "" {
		d.MaybeDelivered = true // its claim ran out: the replica was lost mid-delivery
	}
	d.ClaimedBy, d.ClaimedUntil = replica, until
	op, err := putOp(key("webhook-queue", d.ID), d)
	if err != nil {
		return d, 0, err
	}
	k := key("webhook-queue", d.ID)
	resp, err := s.KV.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(op).Commit()
	if err != nil {
		return d, 0, fmt.Errorf("claiming delivery %s: %w", d.ID, err)
	}
	if !resp.Succeeded {
		return d, 0, ErrClaimed
	}
	return d, resp.Header.Revision, nil
}

// DeliveryLogEntry is one delivery in a webhook's delivery log.
type DeliveryLogEntry struct {
	ID             string     `json:"id"`
	Type           string     `json:"type"`
	Status         string     `json:"status"` // delivered, retrying, failed
	Attempts       int        `json:"attempts"`
	CreatedAt      time.Time  `json:"createdAt"`
	LastAttemptAt  time.Time  `json:"lastAttemptAt"`
	DeliveredAt    *time.Time `json:"deliveredAt,omitempty"`
	LastStatusCode int        `json:"lastStatusCode,omitempty"`
	LastError      string     `json:"lastError,omitempty"`
	Replica        string     `json:"replica"`
	// MaybeDuplicate: an earlier attempt's replica was lost before it
	// recorded the result, so the receiver may have had the event before.
	MaybeDuplicate bool `json:"maybeDuplicate,omitempty"`
}

// DeliveryLogKeep bounds each webhook's delivery log.
const DeliveryLogKeep = 200

// FinishDelivery records an attempt of d (claimed at rev): done removes it
// from the queue, otherwise it is written back for its next attempt. Its
// log entry is written in the same transaction, and the webhook's
// lastSuccessfulAt on success. ErrClaimed: another replica took it over.
func (s *Store) FinishDelivery(ctx context.Context, d Delivery, rev int64, done bool, entry DeliveryLogEntry) error {
	k := key("webhook-queue", d.ID)
	logOp, err := putOp(key("webhook-log", d.WebhookID, d.ID), entry)
	if err != nil {
		return err
	}
	ops := []clientv3.Op{logOp}
	if done {
		ops = append(ops, clientv3.OpDelete(k))
	} else {
		op, err := putOp(k, d)
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	resp, err := s.KV.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("recording delivery %s: %w", d.ID, err)
	}
	if !resp.Succeeded {
		return ErrClaimed
	}
	if entry.DeliveredAt != nil {
		at := *entry.DeliveredAt
		_, err := s.UpdateWebhook(ctx, d.WebhookID, func(w *Webhook) error {
			if w.LastSuccessfulAt == nil || w.LastSuccessfulAt.Before(at) {
				w.LastSuccessfulAt = &at
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return s.trimDeliveryLog(ctx, d.WebhookID)
}

// DropDelivery removes a queued delivery whose webhook is gone.
func (s *Store) DropDelivery(ctx context.Context, id string) error {
	_, err := s.KV.Delete(ctx, key("webhook-queue", id))
	return err
}

func (s *Store) trimDeliveryLog(ctx context.Context, webhookID string) error {
	p := dir("webhook-log", webhookID)
	resp, err := s.KV.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count <= DeliveryLogKeep {
		return err
	}
	old, err := s.KV.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(resp.Count-DeliveryLogKeep))
	if err != nil || len(old.Kvs) == 0 {
		return err
	}
	_, err = s.KV.Delete(ctx, p, clientv3.WithRange(string(old.Kvs[len(old.Kvs)-1].Key)+"\x00"))
	return err
}

// DeliveryLog returns a webhook's delivery log, newest first.
func (s *Store) DeliveryLog(ctx context.Context, webhookID string) ([]DeliveryLogEntry, error) {
	es, err := list[DeliveryLogEntry](ctx, s, dir("webhook-log", webhookID))
	if err != nil {
		return nil, err
	}
	slices.Reverse(es)
	return es, nil
}
