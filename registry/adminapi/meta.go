package adminapi

import (
	"context"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/member"
	"github.com/dtr-registry/dtr/registry/meta"
)

// settingsView hides the S3 secret key and the identity source's
// passwords, and shows defaults.
func settingsView(st meta.Settings) meta.Settings {
	sparse := st.SparseManifestsAllowed()
	st.AllowSparseManifests = &sparse
	if st.Storage.S3 != nil && st.Storage.S3.SecretKey != "" {
		s3 := *st.Storage.S3
		s3.SecretKey = "********"
		st.Storage.S3 = &s3
	}
	if st.Identity != nil {
		is := st.Identity.Masked()
		st.Identity = &is
	}
	return st
}

func (a *API) getSettings(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	st, _, err := a.cfg.Store.Settings(r.Context())
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, settingsView(st))
	return nil
}

// PatchSettingsRequest is the body of PATCH /api/v0/meta/settings; absent
// fields keep their values. A storage change applies on every replica.
type PatchSettingsRequest struct {
	ExternalURL        *string       `json:"externalURL,omitempty"`
	Storage            *meta.Storage `json:"storage,omitempty"`
	LogLevel           *string       `json:"logLevel,omitempty"`
	RefreshTokenMaxAge *string       `json:"refreshTokenMaxAge,omitempty"`
	// AllowSparseManifests: true or false (decode refuses anything else).
	AllowSparseManifests *bool `json:"allowSparseManifests,omitempty"`
}

func (a *API) patchSettings(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	var req PatchSettingsRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	st, err := a.cfg.Store.UpdateSettings(r.Context(), func(st *meta.Settings) error {
		if req.ExternalURL != nil {
			st.ExternalURL = *req.ExternalURL
		}
		if req.LogLevel != nil {
			switch *req.LogLevel {
			case "debug", "info", "warn", "error", "fatal":
			default:
				return errorf(http.StatusBadRequest, "INVALID", "logLevel %q: use debug, info, warn, error or fatal", *req.LogLevel)
			}
			st.LogLevel = *req.LogLevel
		}
		if req.RefreshTokenMaxAge != nil {
			if *req.RefreshTokenMaxAge != "" {
				if err := meta.ValidateRefreshTokenMaxAge(*req.RefreshTokenMaxAge); err != nil {
					return err
				}
			}
			st.RefreshTokenMaxAge = *req.RefreshTokenMaxAge
		}
		if req.AllowSparseManifests != nil {
			allow := *req.AllowSparseManifests
			st.AllowSparseManifests = &allow
		}
		if req.Storage != nil {
			next := *req.Storage
			// "********" keeps the stored secret key.
			if next.S3 != nil && next.S3.SecretKey == "********" && st.Storage.S3 != nil {
				next.S3.SecretKey = st.Storage.S3.SecretKey
			}
			st.Storage = next
		}
		return nil
	})
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, settingsView(st))
	return nil
}

// staleAfter: a replica that has not reported for this long is unhealthy.
// Healthy replicas report every 3 s (registry.Options.ReportInterval; on
// the 2 s health probes that is every 4 s in practice), so this is two
// missed reports: a stopped or cut-off replica shows within 9 s (5.8 s
// measured, TestOutageAnswers), and a report delayed by a slow write (up
// to the 1.5 s the replica allows it) or a second or two of clock skew
// between nodes does not flap a healthy one. A report is one small put per
// replica every 3-4 s, a load etcd does not notice.
const staleAfter = 9 * time.Second

func (a *API) clusterStatus(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	ctx := r.Context()
	st := a.cfg.Cluster.Status(ctx)
	if !st.HasQuorum {
		// The cluster cannot answer; this member's copy of the reports
		// still shows who went silent when (the reports age from there).
		ctx = meta.LocalReads(ctx)
	}
	reports, err := a.cfg.Store.HealthReports(ctx)
	if err != nil && st.HasQuorum {
		return err
	}
	cs := contract.ClusterStatus{
		Replica:       a.cfg.ReplicaID,
		Members:       make([]contract.Member, 0, len(st.Members)),
		Leader:        st.Leader,
		Revision:      st.Revision,
		HasQuorum:     st.HasQuorum,
		ReplicaHealth: map[string]contract.ReplicaHealth{},
		CurrentIssues: []contract.Issue{},
		Alarms:        make([]contract.Alarm, 0, len(st.Alarms)),
	}
	issue := func(description string) {
		cs.CurrentIssues = append(cs.CurrentIssues, contract.Issue{Critical: true, Description: description})
	}
	staleWhy := ""
	for _, al := range st.Alarms {
		cs.Alarms = append(cs.Alarms, contract.Alarm{Replica: al.Member, Alarm: al.Kind})
		if al.Kind == "NOSPACE" {
			issue("the metadata store is full (NOSPACE alarm raised by replica " + al.Member +
				": its metadata volume is nearly full or the database reached its quota): pushes and changes are refused, pulls are served; free space on that replica's metadata volume")
			staleWhy = " (health reports cannot be written while the metadata store is full)"
		}
	}
	for _, rep := range reports {
		h := contract.ReplicaHealth{Healthy: rep.Healthy, Error: rep.Error, Version: rep.Version, At: rep.At}
		if time.Since(rep.At) > staleAfter {
			h.Stale, h.Healthy = true, false
			issue("Replica " + rep.ID + " reported health too long ago: " + rep.At.Format(time.RFC3339) + staleWhy)
		} else if !rep.Healthy {
			issue("Replica " + rep.ID + " is unhealthy: " + rep.Error)
		}
		cs.ReplicaHealth[rep.ID] = h
	}
	if !st.HasQuorum {
		issue("metadata has no quorum: " + st.Err)
	}
	for _, m := range st.Members {
		cs.Members = append(cs.Members, contract.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, IsLearner: m.IsLearner, IsLeader: m.ID == st.Leader})
	}
	cs.Schema = a.schemaStatus(ctx, st.Members, reports)
	if holder, err := a.cfg.Store.GCLockHolder(ctx); err == nil {
		cs.GCLockHolder = holder
	}
	httpjson.Write(w, http.StatusOK, cs)
	return nil
}

// backup streams the backup as a tar. Once bytes went out, a failure can no
// longer change the status: the connection is cut instead, so the client
// sees a broken stream and never a short tar that looks complete.
func (a *API) backup(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	if a.cfg.Backup == nil {
		return errorf(http.StatusNotImplemented, "NOT_IMPLEMENTED", "this replica cannot write backups")
	}
	include := false
	switch v := r.URL.Query().Get("includeImages"); v {
	case "", "false":
	case "true":
		include = true
	default:
		return errorf(http.StatusBadRequest, "INVALID_PARAMETER", "includeImages must be true or false, not %q", v)
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Cache-Control", "no-store")
	cw := &countingWriter{w: w}
	err := a.cfg.Backup(r.Context(), cw, include)
	if err == nil || cw.n == 0 {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithError(err).Error("backup cut short")
	}
	panic(http.ErrAbortHandler)
}

// storageCheck reports the referenced blobs the registry storage lacks,
// and the tags that lack them.
func (a *API) storageCheck(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	if a.cfg.CheckStorage == nil {
		return errorf(http.StatusServiceUnavailable, "STORAGE_UNAVAILABLE", "this replica has no registry storage configured; set it up and try again")
	}
	res, err := a.cfg.CheckStorage(r.Context())
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, res)
	return nil
}

// rotateTokenKey makes a new token-signing key current. Tokens signed with
// the old key keep working until they expire; no request fails.
func (a *API) rotateTokenKey(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	if r.ContentLength > 0 {
		var req struct{}
		if err := decode(r.Body, &req); err != nil {
			return err
		}
	}
	if a.cfg.RotateTokenKey == nil {
		return errorf(http.StatusNotImplemented, "NOT_IMPLEMENTED", "this replica cannot rotate the token key")
	}
	res, err := a.cfg.RotateTokenKey(r.Context())
	if err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithFields(map[string]any{"user": me.Name, "key": res.KeyID}).Info("token signing key rotated")
	}
	httpjson.Write(w, http.StatusOK, res)
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// schemaStatus is the metadata schema and what its migration waits for;
// nil when the schema record cannot be read.
func (a *API) schemaStatus(ctx context.Context, members []member.Info, reports []meta.ReplicaReport) *contract.SchemaStatus {
	rec, _, err := a.cfg.Store.Schema(ctx)
	if err != nil {
		return nil
	}
	s := &contract.SchemaStatus{Version: rec.Version, Target: rec.Version, MigratedAt: rec.MigratedAt}
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.Name
	}
	for _, rep := range reports {
		if slices.Contains(names, rep.ID) {
			s.Target = max(s.Target, rep.SchemaVersion())
		}
	}
	s.Pending = meta.SchemaPending(rec, s.Target, meta.SchemaBlockers(names, reports, s.Target, time.Now(), staleAfter))
	return s
}
