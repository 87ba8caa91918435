package meta

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// PushWindow is how far apart a tag's time in storage (the modification
// time of its current link) and the audit event of the push that wrote it
// may be: the event is stamped when the manifest PUT is answered, a few
// milliseconds after the write, by the clock of the replica that took it,
// while S3 stamps the object with its own clock, in whole seconds.
const PushWindow = 2 * time.Minute

// TagPush names a tag whose last push LastPushes looks for: its current
// digest and its time in storage.
type TagPush struct {
	Name   string
	Digest string
	At     time.Time
}

// LastPushes finds, for the tags of repo ("namespace/name"), the audit
// event of the push that wrote each one's current digest: the newest
// successful manifest PUT of repo:tag with that digest within PushWindow of
// the tag's time. Events are keyed by time only, so it reads the windows
// around the tags' times (merged where they overlap) in one transaction,
// not the whole trail: its cost follows the events published around those
// pushes, not the size of the trail or the number of repositories. A tag
// whose event the trail no longer has (trimmed, dropped under load, or
// pushed before the trail existed) is missing from the answer.
func (s *Store) LastPushes(ctx context.Context, repo string, tags []TagPush) (map[string]Event, error) {
	type window struct{ lo, hi time.Time }
	var ws []window
	for _, t := range tags {
		if !t.At.IsZero() {
			ws = append(ws, window{t.At.Add(-PushWindow), t.At.Add(PushWindow)})
		}
	}
	out := map[string]Event{}
	if len(ws) == 0 {
		return out, nil
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].lo.Before(ws[j].lo) })
	merged := ws[:1]
	for _, w := range ws[1:] {
		last := &merged[len(merged)-1]
		if !w.lo.After(last.hi) {
			if w.hi.After(last.hi) {
				last.hi = w.hi
			}
			continue
		}
		merged = append(merged, w)
	}
	p := dir("events")
	at := func(t time.Time) string { return p + fmt.Sprintf("%016x", t.UnixNano()) }
	want := map[string]TagPush{}
	for _, t := range tags {
		want[repo+":"+t.Name] = t
	}
	// A cheap test before decoding: the trail holds every repository's
	// pulls and pushes, and only pushes of this repository's tags matter.
	needle, create := []byte(`"`+repo+":"), []byte(`"type":"CREATE"`)
	for len(merged) > 0 {
		n := min(len(merged), maxEventOps)
		ops := make([]clientv3.Op, 0, n)
		for _, w := range merged[:n] {
			ops = append(ops, clientv3.OpGet(at(w.lo), readOpts(ctx, clientv3.WithRange(at(w.hi.Add(time.Nanosecond))))...))
		}
		resp, err := s.KV.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("reading the audit events of %s's pushes: %w", repo, err)
		}
		for _, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().Kvs {
				if !bytes.Contains(kv.Value, needle) || !bytes.Contains(kv.Value, create) {
					continue
				}
				var e Event
				if err := jsonUnmarshal(kv.Value, &e); err != nil {
					return nil, err
				}
				t, ok := want[e.Object.Name]
				if !ok || !isTagPush(e, repo) || (e.Object.ID != "" && e.Object.ID != t.Digest) {
					continue
				}
				if d := e.PublishedAt.Sub(t.At); d < -PushWindow || d > PushWindow {
					continue
				}
				if prev, ok := out[t.Name]; !ok || e.PublishedAt.After(prev.PublishedAt) {
					out[t.Name] = e
				}
			}
		}
		merged = merged[n:]
	}
	return out, nil
}

// isTagPush reports whether e records a successful push of a tag of repo
// through the registry API.
func isTagPush(e Event, repo string) bool {
	return e.Type == "CREATE" && e.Success && e.Target.Type == "registry" && e.Object.Type == "tag" && e.Repository == repo
}
