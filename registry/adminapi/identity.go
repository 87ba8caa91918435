package adminapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/dtr-registry/dtr/registry/gc"
	"github.com/dtr-registry/dtr/registry/identity/syncer"
	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/meta"
)

// The identity source settings (docs/identity.md): GET and PUT
// /api/v0/meta/settings/identity, the test call, and a team's link to a
// directory group (memberSyncConfig, as UCP named it). Secrets are
// write-only: answers show them as meta.SecretMask, and a PUT that sends
// the mask or nothing keeps the stored one.

func identityView(st meta.Settings) meta.IdentitySettings {
	if st.Identity == nil {
		return meta.IdentitySettings{Kind: meta.IdentityLocal, SyncSchedule: meta.DefaultIdentitySyncSchedule}
	}
	v := st.Identity.Masked()
	v.SyncSchedule = v.Schedule()
	return v
}

func (a *API) getIdentitySettings(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	st, _, err := a.cfg.Store.Settings(r.Context())
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, identityView(st))
	return nil
}

// checkIdentity validates settings as the source would take them.
func checkIdentity(is meta.IdentitySettings, links []meta.TeamSync) error {
	if is.SyncSchedule != "" {
		s, err := gc.ParseSchedule(is.SyncSchedule)
		if err != nil {
			return errorf(http.StatusBadRequest, "INVALID", "syncSchedule: %v", err)
		}
		if s.Next(time.Now()).IsZero() {
			return errorf(http.StatusBadRequest, "INVALID", "syncSchedule %q never matches in the next five years", is.SyncSchedule)
		}
	}
	_, err := syncer.NewSource(is, links)
	return err
}

func (a *API) putIdentitySettings(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	var req meta.IdentitySettings
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if req.Kind == "" {
		return errorf(http.StatusBadRequest, "INVALID", "kind: give local, ucp or ldap")
	}
	ctx := r.Context()
	links, err := a.cfg.Store.TeamSyncs(ctx)
	if err != nil {
		return err
	}
	st, err := a.cfg.Store.UpdateSettings(ctx, func(st *meta.Settings) error {
		next := req
		next.KeepSecrets(st.Identity)
		if next.Kind == meta.IdentityLocal {
			// Keep the other kinds' settings for a later switch back.
			if st.Identity != nil {
				next.LDAP, next.UCP = st.Identity.LDAP, st.Identity.UCP
			}
		}
		if err := checkIdentity(next, links); err != nil {
			return err
		}
		st.Identity = &next
		return nil
	})
	if err != nil {
		return err
	}
	if err := a.scheduleIdentitySync(r, *st.Identity); err != nil {
		return err
	}
	if a.cfg.Log != nil {
		// The kind and schedule only: never the settings, which hold secrets.
		a.cfg.Log.WithFields(map[string]any{"user": me.Name, "kind": st.Identity.Kind, "schedule": st.Identity.Schedule()}).Info("identity source settings changed")
	}
	httpjson.Write(w, http.StatusOK, identityView(st))
	return nil
}

// scheduleIdentitySync sets the ldap_sync cron from the settings, or
// removes it for local accounts.
func (a *API) scheduleIdentitySync(r *http.Request, is meta.IdentitySettings) error {
	if is.Kind == meta.IdentityLocal {
		err := a.cfg.Store.DeleteCron(r.Context(), meta.IdentitySyncAction)
		if errors.Is(err, meta.ErrNotFound) {
			return nil
		}
		return err
	}
	s, err := gc.ParseSchedule(is.Schedule())
	if err != nil {
		return err
	}
	_, err = a.cfg.Store.PutCron(r.Context(), meta.Cron{Action: meta.IdentitySyncAction, Schedule: is.Schedule(), NextRun: s.Next(time.Now())})
	return err
}

// IdentityTestRequest is the body of POST
// /api/v0/meta/settings/identity/test: a user's name and password, and
// optionally settings to test before they are saved (secrets left empty or
// masked are the stored ones).
type IdentityTestRequest struct {
	Username string                 `json:"username"`
	Password string                 `json:"password"`
	Identity *meta.IdentitySettings `json:"identity,omitempty"`
}

func (a *API) testIdentitySettings(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	var req IdentityTestRequest
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	if req.Username == "" || req.Password == "" {
		return errorf(http.StatusBadRequest, "INVALID", "give the username and password of a user of the identity source")
	}
	ctx := r.Context()
	st, _, err := a.cfg.Store.Settings(ctx)
	if err != nil {
		return err
	}
	is := st.Identity
	if req.Identity != nil {
		next := *req.Identity
		next.KeepSecrets(st.Identity)
		is = &next
	}
	if is == nil {
		is = &meta.IdentitySettings{Kind: meta.IdentityLocal}
	}
	links, err := a.cfg.Store.TeamSyncs(ctx)
	if err != nil {
		return err
	}
	res, err := syncer.Test(ctx, a.cfg.Store, *is, links, req.Username, req.Password)
	if err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithFields(map[string]any{"user": me.Name, "tested": req.Username, "found": res.Found, "ok": res.OK}).Info("identity source settings tested")
	}
	httpjson.Write(w, http.StatusOK, res)
	return nil
}

// memberSyncConfig is a team's link to a directory group, as UCP's API
// shows it.
type memberSyncConfig struct {
	EnableSync      bool   `json:"enableSync"`
	GroupDN         string `json:"groupDN"`
	GroupMemberAttr string `json:"groupMemberAttr"`
}

func syncView(ts meta.TeamSync) memberSyncConfig {
	attr := ts.GroupMemberAttr
	if attr == "" {
		attr = "member"
	}
	return memberSyncConfig{EnableSync: ts.EnableSync, GroupDN: ts.GroupDN, GroupMemberAttr: attr}
}

func (a *API) getMemberSync(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	org, team := r.PathValue("org"), r.PathValue("team")
	if err := a.orgMember(r.Context(), me, org); err != nil {
		return err
	}
	if _, err := a.cfg.Store.Team(r.Context(), org, team); err != nil {
		return err
	}
	ts, err := a.cfg.Store.TeamSyncOf(r.Context(), org, team)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, syncView(ts))
	return nil
}

// putMemberSync links a team to a group; the next sync sets its members.
// Only a system administrator may: the link decides who is in the team.
func (a *API) putMemberSync(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	var req memberSyncConfig
	if err := decode(r.Body, &req); err != nil {
		return err
	}
	ts := meta.TeamSync{Org: r.PathValue("org"), Team: r.PathValue("team"), EnableSync: req.EnableSync, GroupDN: req.GroupDN, GroupMemberAttr: req.GroupMemberAttr}
	if ts.EnableSync {
		st, _, err := a.cfg.Store.Settings(r.Context())
		if err != nil {
			return err
		}
		if ldapOK := st.IdentityKind() == meta.IdentityLDAP; !ldapOK {
			return errorf(http.StatusBadRequest, "INVALID", "team %s/%s: syncing with an LDAP group needs the LDAP identity source (PUT /api/v0/meta/settings/identity with kind ldap)", ts.Org, ts.Team)
		}
	}
	ts, err := a.cfg.Store.PutTeamSync(r.Context(), ts)
	if err != nil {
		return err
	}
	if a.cfg.Log != nil {
		a.cfg.Log.WithFields(map[string]any{"user": me.Name, "team": ts.Org + "/" + ts.Team, "enableSync": ts.EnableSync, "groupDN": ts.GroupDN}).Info("team member sync set")
	}
	httpjson.Write(w, http.StatusOK, syncView(ts))
	return nil
}

func (a *API) deleteMemberSync(w http.ResponseWriter, r *http.Request, me *meta.Account) error {
	if err := requireAdmin(me); err != nil {
		return err
	}
	if err := a.cfg.Store.DeleteTeamSync(r.Context(), r.PathValue("org"), r.PathValue("team")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
