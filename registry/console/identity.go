package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/dtr-registry/dtr/registry/meta"
)

// System → Identity: where users come from (docs/identity.md). Reading,
// saving and testing the settings, and starting a sync, are the admin
// API's calls; its secrets (the LDAP reader's and the UCP administrator's
// passwords) are write-only: the page says whether one is set, and a field
// left empty keeps it.

type identityPage struct {
	Kind     string
	Schedule string
	LDAP     meta.LDAPSettings
	UCP      meta.UCPSettings
	// LDAPPasswordSet and UCPPasswordSet: a password is stored.
	LDAPPasswordSet, UCPPasswordSet bool
	// SecretTyped: the form carried a new password that the page does not
	// show back; it must be typed again to be saved.
	SecretTyped bool
	TestUser    string
	Test        *identityTest
	Jobs        []syncJob
	Running     bool
	Cron        *meta.Cron
}

// identityTest is the admin API's answer to the test call.
type identityTest struct {
	OK           bool     `json:"ok"`
	Found        bool     `json:"found"`
	Message      string   `json:"message"`
	Username     string   `json:"username"`
	FullName     string   `json:"fullName"`
	IsAdmin      bool     `json:"isAdmin"`
	IsActive     bool     `json:"isActive"`
	Teams        []string `json:"teams"`
	LocalAccount bool     `json:"localAccount"`
}

// syncResult is what a finished sync recorded (its job's progress).
type syncResult struct {
	Users        int `json:"users"`
	Created      int `json:"created"`
	Updated      int `json:"updated"`
	Deactivated  int `json:"deactivated"`
	OrgsCreated  int `json:"orgsCreated"`
	TeamsCreated int `json:"teamsCreated"`
	Added        int `json:"membershipsAdded"`
	Removed      int `json:"membershipsRemoved"`
	Skipped      int `json:"skipped"`
}

type syncJob struct {
	meta.Job
	Outcome string
}

// outcome says what a sync did, in a line.
func outcome(j meta.Job) string {
	switch j.Status {
	case meta.JobWaiting:
		return "waiting for a replica"
	case meta.JobRunning:
		return "reading the directory"
	case meta.JobCanceled:
		return "canceled"
	}
	var res syncResult
	if len(j.Progress) > 0 && json.Unmarshal(j.Progress, &res) == nil && j.Status == meta.JobDone {
		s := fmt.Sprintf("%d users in the source: %d created, %d updated, %d deactivated; team memberships +%d −%d", res.Users, res.Created, res.Updated, res.Deactivated, res.Added, res.Removed)
		if res.OrgsCreated+res.TeamsCreated > 0 {
			s += fmt.Sprintf("; %d organizations and %d teams created", res.OrgsCreated, res.TeamsCreated)
		}
		if res.Skipped > 0 {
			s += fmt.Sprintf("; %d skipped (names of local accounts)", res.Skipped)
		}
		return s
	}
	if j.Error != "" {
		return j.Error
	}
	return j.Status
}

func (c *Console) systemIdentity(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := requireAdmin(s); err != nil {
		return err
	}
	var is meta.IdentitySettings
	if err := s.api("GET", "/meta/settings/identity", nil, &is); err != nil {
		return err
	}
	d := identityPage{Kind: is.Kind, Schedule: is.SyncSchedule}
	if d.Kind == "" {
		d.Kind = meta.IdentityLocal
	}
	if is.LDAP != nil {
		d.LDAP, d.LDAPPasswordSet = *is.LDAP, is.LDAP.ReaderPassword != ""
	}
	if is.UCP != nil {
		d.UCP, d.UCPPasswordSet = *is.UCP, is.UCP.Password != ""
	}
	return c.showIdentity(w, r, s, http.StatusOK, "", d)
}

// showIdentity adds the sync's schedule and recent jobs to d and renders
// the page. The secrets in d are never rendered.
func (c *Console) showIdentity(w http.ResponseWriter, r *http.Request, s *session, status int, problem string, d identityPage) error {
	var cr meta.Cron
	err := s.api("GET", "/crons/"+meta.IdentitySyncAction, nil, &cr)
	switch ue := asUserError(err); {
	case err == nil:
		d.Cron = &cr
	case ue.Status != http.StatusNotFound:
		return err
	}
	var jobs struct {
		Jobs []meta.Job `json:"jobs"`
	}
	if err := s.api("GET", "/jobs?action="+meta.IdentitySyncAction+"&limit=10", nil, &jobs); err != nil {
		return err
	}
	sort.SliceStable(jobs.Jobs, func(i, j int) bool { return jobs.Jobs[i].ScheduledAt.After(jobs.Jobs[j].ScheduledAt) })
	for _, j := range jobs.Jobs {
		if !j.Finished() {
			d.Running = true
		}
		d.Jobs = append(d.Jobs, syncJob{Job: j, Outcome: outcome(j)})
	}
	d.LDAP.ReaderPassword, d.UCP.Password = "", ""
	c.render(w, r, status, "identity", s, page{Title: "Identity", Section: "system", Error: problem, Data: d})
	return nil
}

// identityForm reads the settings the form describes. A password left
// empty is kept by the API; the other kind's settings are sent when the
// form has some, so that switching back and forth keeps them.
func identityForm(f url.Values) (meta.IdentitySettings, identityPage) {
	get := func(k string) string { return strings.TrimSpace(f.Get(k)) }
	d := identityPage{
		Kind:     get("kind"),
		Schedule: get("syncSchedule"),
		LDAP: meta.LDAPSettings{
			ServerURL: get("serverURL"), StartTLS: f.Get("startTLS") == "on", InsecurePlaintext: f.Get("insecurePlaintext") == "on",
			RootCerts: get("rootCerts"), ReaderDN: get("readerDN"), ReaderPassword: f.Get("readerPassword"),
			UserSearch: meta.LDAPUserSearch{BaseDN: get("baseDN"), Filter: get("filter"), UsernameAttr: get("usernameAttr"),
				FullNameAttr: get("fullNameAttr"), ScopeSubtree: f.Get("scopeSubtree") == "on"},
			AdminGroupDN: get("adminGroupDN"), AdminGroupMemberAttr: get("adminGroupMemberAttr"),
		},
		UCP:             meta.UCPSettings{URL: get("ucpURL"), CA: get("ucpCA"), Username: get("ucpUsername"), Password: f.Get("ucpPassword")},
		LDAPPasswordSet: f.Get("ldapPasswordSet") == "1",
		UCPPasswordSet:  f.Get("ucpPasswordSet") == "1",
		TestUser:        get("testUsername"),
	}
	d.SecretTyped = d.LDAP.ReaderPassword != "" || d.UCP.Password != ""
	is := meta.IdentitySettings{Kind: d.Kind, SyncSchedule: d.Schedule}
	ldap, ucp := d.LDAP, d.UCP
	if d.Kind == meta.IdentityLDAP || ldap != (meta.LDAPSettings{}) {
		is.LDAP = &ldap
	}
	if d.Kind == meta.IdentityUCP || ucp != (meta.UCPSettings{}) {
		is.UCP = &ucp
	}
	return is, d
}

func (c *Console) systemIdentityAction(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := requireAdmin(s); err != nil {
		return err
	}
	f := r.PostForm
	switch act := f.Get("action"); act {
	case "save", "test":
		is, d := identityForm(f)
		if d.Kind != meta.IdentityLocal && d.Kind != meta.IdentityLDAP && d.Kind != meta.IdentityUCP {
			return c.showIdentity(w, r, s, http.StatusBadRequest, "Choose where users come from: local accounts, UCP/MKE or LDAP/Active Directory.", d)
		}
		if act == "test" {
			return c.testIdentity(w, r, s, is, d)
		}
		if err := s.api("PUT", "/meta/settings/identity", is, nil); err != nil {
			ue := asUserError(err)
			return c.showIdentity(w, r, s, ue.Status, "Nothing was saved: "+ue.Message+".", d)
		}
		return done(w, r, "/system/identity", "identity-saved")
	case "sync":
		if err := s.api("POST", "/jobs", map[string]string{"action": meta.IdentitySyncAction}, nil); err != nil {
			return err
		}
		return done(w, r, "/system/identity", "sync-started")
	}
	return errorPage(http.StatusBadRequest, "Unknown action "+strconv.Quote(f.Get("action"))+".")
}

// testIdentity asks the source the form describes (not yet saved) about a
// user and shows what that user would get.
func (c *Console) testIdentity(w http.ResponseWriter, r *http.Request, s *session, is meta.IdentitySettings, d identityPage) error {
	user, pw := d.TestUser, r.PostForm.Get("testPassword")
	if user == "" || pw == "" {
		return c.showIdentity(w, r, s, http.StatusBadRequest, "To test, give the username and password of a user of the directory (Test these settings, below).", d)
	}
	var res identityTest
	req := map[string]any{"username": user, "password": pw, "identity": is}
	if err := s.api("POST", "/meta/settings/identity/test", req, &res); err != nil {
		ue := asUserError(err)
		return c.showIdentity(w, r, s, ue.Status, "The settings cannot be tested: "+ue.Message+".", d)
	}
	d.Test = &res
	return c.showIdentity(w, r, s, http.StatusOK, "", d)
}
