package adminapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/meta"
)

// eventPageMax bounds pageSize of the events lists.
const eventPageMax = 1000

// EventsResponse is the answer of GET /api/v0/events (DTR's shape).
type EventsResponse struct {
	Events []meta.Event `json:"events"`
}

// listEvents answers GET /api/v0/events: the audit trail, newest first,
// for administrators.
func (a *API) listEvents(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	return a.writeEvents(w, r, "")
}

// listRepositoryEvents answers GET /api/v0/repositories/{ns}/{repo}/events
// for the repository's administrators; excludePull=true leaves pulls out.
func (a *API) listRepositoryEvents(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	ns, repo := r.PathValue("ns"), r.PathValue("repo")
	if _, err := a.repoAccess(r.Context(), me, ns, repo, meta.Admin); err != nil {
		return err
	}
	return a.writeEvents(w, r, ns+"/"+repo)
}

func (a *API) writeEvents(w http.ResponseWriter, r *http.Request, repo string) error {
	q := r.URL.Query()
	size, err := queryInt(r, "pageSize", 10)
	if err != nil {
		return err
	}
	if size == 0 || size > eventPageMax {
		return errorf(http.StatusBadRequest, "INVALID_PARAMETERS", "pageSize=%d: give 1 to %d", size, eventPageMax)
	}
	f := meta.EventFilter{Actor: q.Get("actorId"), Type: q.Get("eventType"), ObjectType: q.Get("objectType"), Repository: repo}
	for name, t := range map[string]*time.Time{"publishedBefore": &f.Before, "publishedAfter": &f.After} {
		if v := q.Get(name); v != "" {
			if *t, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return errorf(http.StatusBadRequest, "INVALID_PARAMETERS", "%s=%q: give a time as RFC 3339, e.g. 2026-01-02T15:04:05Z", name, v)
			}
		}
	}
	if v := q.Get("excludePull"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errorf(http.StatusBadRequest, "INVALID_PARAMETERS", "excludePull=%q: use true or false", v)
		}
		f.ExcludeGet = b
	}
	count := false
	if c := q.Get("count"); c != "" {
		if count, err = strconv.ParseBool(c); err != nil {
			return errorf(http.StatusBadRequest, "INVALID_PARAMETERS", "count=%q: use true or false", c)
		}
	}
	evs, next, err := a.cfg.Store.Events(r.Context(), f, q.Get("pageStart"), size)
	if err != nil {
		return err
	}
	if count {
		// Every event the filters match, not only this page's (DTR's).
		n, err := a.cfg.Store.CountEvents(r.Context(), f)
		if err != nil {
			return err
		}
		w.Header().Set("X-Resource-Count", strconv.Itoa(n))
	}
	if evs == nil {
		evs = []meta.Event{}
	}
	w.Header().Set("X-Next-Page-Start", next)
	httpjson.Write(w, http.StatusOK, EventsResponse{Events: evs})
	return nil
}
