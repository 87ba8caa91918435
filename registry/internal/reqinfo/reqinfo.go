// Package reqinfo carries what a request's handlers learn about it (the
// authenticated user) back out to the access log, the metrics and the
// audit trail, which wrap the handlers and cannot see inside them.
package reqinfo

import (
	"context"
	"sync"
)

// Info is filled in by the handlers of one request.
type Info struct {
	mu    sync.Mutex
	user  string
	notes []Note
}

// Note is something a handler did that the request's path does not tell,
// for webhooks: a repository created or deleted.
type Note struct {
	Event string // a webhook type, e.g. REPO_CREATED
	Repo  string // namespace/name
}

type key struct{}

// With returns ctx carrying a new Info.
func With(ctx context.Context) (context.Context, *Info) {
	i := &Info{}
	return context.WithValue(ctx, key{}, i), i
}

// SetUser records the account the request authenticated as. A request
// without an Info (a handler run on its own, in a test) records nothing.
func SetUser(ctx context.Context, name string) {
	if i, ok := ctx.Value(key{}).(*Info); ok && name != "" {
		i.mu.Lock()
		i.user = name
		i.mu.Unlock()
	}
}

// User is the authenticated account, or "" for an anonymous request.
func (i *Info) User() string {
	if i == nil {
		return ""
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.user
}

// AddNote records that the request did something webhooks announce.
func AddNote(ctx context.Context, event, repo string) {
	if i, ok := ctx.Value(key{}).(*Info); ok {
		i.mu.Lock()
		i.notes = append(i.notes, Note{Event: event, Repo: repo})
		i.mu.Unlock()
	}
}

// Notes are the request's notes, in order.
func (i *Info) Notes() []Note {
	if i == nil {
		return nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]Note(nil), i.notes...)
}
