package meta

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Event is one record of the audit trail (DTR's "events", its activity
// stream): who did what, from where, with what result. Replicas write one
// per change made through the admin API and per push, delete, and pull of
// a private repository.
type Event struct {
	ID          string    `json:"id"` // sorts by PublishedAt (NewEventID)
	PublishedAt time.Time `json:"publishedAt"`
	// Actor is the account, "" for an anonymous caller; ActorType is
	// "user" or "anonymous".
	Actor     string `json:"actor"`
	ActorType string `json:"actorType"`
	// Type is what happened: CREATE, UPDATE, DELETE or GET (DTR's).
	Type       string      `json:"type"`
	Repository string      `json:"repository,omitempty"` // namespace/name, for registry events
	Object     EventObject `json:"object"`
	Target     EventTarget `json:"target"`
	// Address is the client's address as the replica saw it.
	Address string `json:"address"`
	// Status is the HTTP status the caller got: the result.
	Status  int    `json:"status"`
	Success bool   `json:"success"`
	Replica string `json:"replica"`
}

// EventObject is what the event acted on.
type EventObject struct {
	ID      string `json:"id,omitempty"`      // a digest, for manifests and blobs
	Type    string `json:"type"`              // manifest, tag, blob, or the admin API's resource (accounts, repositories, meta…)
	Name    string `json:"name"`              // repo:tag, repo@digest, or the API path
	Content string `json:"content,omitempty"` // the media type, for manifests
}

// EventTarget is the request that made the change.
type EventTarget struct {
	Type string `json:"type"` // "registry" or "api"
	Name string `json:"name"` // method and path as the client sent them
}

// NewEventID returns an event ID that sorts by time: 16 hex digits of
// nanoseconds, then 8 random ones.
func NewEventID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%016x", now.UnixNano()) + "-" + hex.EncodeToString(b[:])
}

// maxEventOps bounds the puts of one transaction (etcd's default limit is 128).
const maxEventOps = 100

// PutEvents writes a batch of events.
func (s *Store) PutEvents(ctx context.Context, evs []Event) error {
	for len(evs) > 0 {
		n := min(len(evs), maxEventOps)
		ops := make([]clientv3.Op, 0, n)
		for _, e := range evs[:n] {
			if e.ID == "" || strings.Contains(e.ID, "/") {
				return fmt.Errorf("%w event id %q", ErrInvalid, e.ID)
			}
			op, err := putOp(key("events", e.ID), e)
			if err != nil {
				return err
			}
			ops = append(ops, op)
		}
		if _, err := s.KV.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("writing %d audit events: %w", n, err)
		}
		evs = evs[n:]
	}
	return nil
}

// EventFilter selects events: all conditions must hold; zero values match
// everything.
type EventFilter struct {
	Before, After time.Time // publishedBefore, publishedAfter (exclusive)
	Actor         string
	Type          string
	ObjectType    string
	Repository    string
	ExcludeGet    bool // leave pulls out
}

func (f EventFilter) match(e Event) bool {
	return (f.Before.IsZero() || e.PublishedAt.Before(f.Before)) &&
		(f.After.IsZero() || e.PublishedAt.After(f.After)) &&
		(f.Actor == "" || e.Actor == f.Actor) &&
		(f.Type == "" || e.Type == f.Type) &&
		(f.ObjectType == "" || e.Object.Type == f.ObjectType) &&
		(f.Repository == "" || e.Repository == f.Repository) &&
		!(f.ExcludeGet && e.Type == "GET")
}

// eventScanBatch is how many records one read of Events takes.
const eventScanBatch = 500

// Events returns up to limit events matching f, newest first, starting at
// the event with ID start ("" for the newest), and the ID the next page
// starts at ("" on the last page).
func (s *Store) Events(ctx context.Context, f EventFilter, start string, limit int) ([]Event, string, error) {
	lower, end := eventRange(f, start)
	var out []Event
	for {
		resp, err := s.KV.Get(ctx, lower, readOpts(ctx, clientv3.WithRange(end),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(eventScanBatch))...)
		if err != nil {
			return nil, "", fmt.Errorf("reading audit events: %w", err)
		}
		for _, kv := range resp.Kvs {
			var e Event
			if err := jsonUnmarshal(kv.Value, &e); err != nil {
				return nil, "", err
			}
			if !f.match(e) {
				continue
			}
			if len(out) == limit {
				return out, e.ID, nil
			}
			out = append(out, e)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, "", nil
		}
		end = string(resp.Kvs[len(resp.Kvs)-1].Key) // exclusive: the next batch is older
	}
}

// eventRange is the key range [lower, end) that holds the events f's time
// bounds admit, from start ("" for the newest) down.
func eventRange(f EventFilter, start string) (lower, end string) {
	p := dir("events")
	end = clientv3.GetPrefixRangeEnd(p) // exclusive upper bound
	if start != "" {
		end = key("events", start) + "\x00"
	}
	if !f.Before.IsZero() {
		if b := p + fmt.Sprintf("%016x", f.Before.UnixNano()); b < end {
			end = b
		}
	}
	lower = p
	if !f.After.IsZero() {
		lower = p + fmt.Sprintf("%016x", f.After.UnixNano())
	}
	return lower, end
}

// CountEvents counts the events f matches (DTR's X-Resource-Count). With
// time bounds alone the store counts the keys; any other condition reads
// the records, at most the retention's 50,000, a batch at a time.
func (s *Store) CountEvents(ctx context.Context, f EventFilter) (int, error) {
	lower, end := eventRange(f, "")
	byKey := f.Actor == "" && f.Type == "" && f.ObjectType == "" && f.Repository == "" && !f.ExcludeGet &&
		(f.After.IsZero() || f.After.UnixNano() > 0) && (f.Before.IsZero() || f.Before.UnixNano() > 0)
	if byKey {
		if !f.After.IsZero() {
			// Past every ID of f.After's nanosecond ("<16 hex>-…"): the
			// bound is exclusive.
			lower += "."
		}
		if lower >= end {
			return 0, nil
		}
		resp, err := s.KV.Get(ctx, lower, readOpts(ctx, clientv3.WithRange(end), clientv3.WithCountOnly())...)
		if err != nil {
			return 0, fmt.Errorf("counting audit events: %w", err)
		}
		return int(resp.Count), nil
	}
	n := 0
	for {
		resp, err := s.KV.Get(ctx, lower, readOpts(ctx, clientv3.WithRange(end),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(eventScanBatch))...)
		if err != nil {
			return 0, fmt.Errorf("counting audit events: %w", err)
		}
		for _, kv := range resp.Kvs {
			var e Event
			if err := jsonUnmarshal(kv.Value, &e); err != nil {
				return 0, err
			}
			if f.match(e) {
				n++
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return n, nil
		}
		end = string(resp.Kvs[len(resp.Kvs)-1].Key)
	}
}

// TrimEvents applies the audit trail's retention: it deletes events
// published before now-maxAge (0: no age limit) and the oldest beyond keep
// (0: no count limit), and returns how many it deleted.
func (s *Store) TrimEvents(ctx context.Context, now time.Time, maxAge time.Duration, keep int) (int64, error) {
	p := dir("events")
	var deleted int64
	if maxAge > 0 {
		cut := p + fmt.Sprintf("%016x", now.Add(-maxAge).UnixNano())
		resp, err := s.KV.Delete(ctx, p, clientv3.WithRange(cut))
		if err != nil {
			return 0, fmt.Errorf("trimming audit events by age: %w", err)
		}
		deleted += resp.Deleted
	}
	if keep > 0 {
		resp, err := s.KV.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return deleted, fmt.Errorf("counting audit events: %w", err)
		}
		if over := resp.Count - int64(keep); over > 0 {
			old, err := s.KV.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
				clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(over))
			if err != nil {
				return deleted, fmt.Errorf("finding the oldest audit events: %w", err)
			}
			if n := len(old.Kvs); n > 0 {
				last := string(old.Kvs[n-1].Key)
				resp, err := s.KV.Delete(ctx, p, clientv3.WithRange(last+"\x00"))
				if err != nil {
					return deleted, fmt.Errorf("trimming audit events by count: %w", err)
				}
				deleted += resp.Deleted
			}
		}
	}
	return deleted, nil
}
