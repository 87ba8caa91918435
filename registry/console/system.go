package console

import (
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry/meta"
)

// secretKept is what the admin API shows for a stored S3 secret key, and
// what, sent back, keeps it.
const secretKept = "********"

type generalPage struct {
	Settings meta.Settings
}

func (c *Console) systemGeneral(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := requireAdmin(s); err != nil {
		return err
	}
	var d generalPage
	if err := s.api("GET", "/meta/settings", nil, &d.Settings); err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "system", s, page{Title: "System", Section: "system", Data: d})
	return nil
}

func (c *Console) systemGeneralSave(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := requireAdmin(s); err != nil {
		return err
	}
	ext := strings.TrimSpace(r.PostForm.Get("externalURL"))
	req := map[string]any{"externalURL": ext}
	if lvl := r.PostForm.Get("logLevel"); lvl != "" {
		req["logLevel"] = lvl
	}
	if err := s.api("PATCH", "/meta/settings", req, nil); err != nil {
		return err
	}
	return done(w, r, "/system", "settings-saved")
}

type storagePage struct {
	Type    string
	S3      meta.S3
	Secure  bool
	Result  string // the test's outcome
	Success bool
}

func (c *Console) systemStorage(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := requireAdmin(s); err != nil {
		return err
	}
	var st meta.Settings
	if err := s.api("GET", "/meta/settings", nil, &st); err != nil {
		return err
	}
	d := storagePage{Type: st.Storage.Type, Secure: true}
	if st.Storage.S3 != nil {
		d.S3 = *st.Storage.S3
		d.Secure = st.Storage.S3.Secure == nil || *st.Storage.S3.Secure
	}
	c.render(w, r, http.StatusOK, "storage", s, page{Title: "Storage", Section: "system", Data: d})
	return nil
}

// storageForm reads the Storage page's form.
func storageForm(f map[string][]string) (meta.Storage, storagePage) {
	get := func(k string) string {
		if v := f[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	d := storagePage{Type: get("type"), Secure: get("secure") == "on", S3: meta.S3{
		Region: get("region"), Bucket: get("bucket"), RegionEndpoint: get("regionEndpoint"),
		AccessKey: get("accessKey"), SecretKey: get("secretKey"), ForcePathStyle: get("forcePathStyle") == "on",
		RootDirectory: get("rootDirectory"), SkipVerify: get("skipVerify") == "on",
	}}
	st := meta.Storage{Type: d.Type}
	if d.Type == "s3" {
		s3 := d.S3
		secure := d.Secure
		s3.Secure = &secure
		st.S3 = &s3
	}
	return st, d
}

// systemStorageSave tests the storage the form describes (write, read back,
// remove an object) and saves it only when that worked: a wrong bucket or
// key would otherwise break every push and pull on every replica.
func (c *Console) systemStorageSave(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := requireAdmin(s); err != nil {
		return err
	}
	st, d := storageForm(r.PostForm)
	if err := st.Validate(); err != nil {
		d.Result = strings.TrimPrefix(err.Error(), "invalid ")
		c.render(w, r, http.StatusBadRequest, "storage", s, page{Title: "Storage", Section: "system", Data: d})
		return nil
	}
	tested := st
	if st.S3 != nil && (st.S3.SecretKey == secretKept || st.S3.SecretKey == "") {
		// Test with the stored secret the form did not show. The caller
		// is a system administrator (checked above, and by the API that
		// gave the page), who may read the settings anyway.
		cur, _, err := c.cfg.Store.Settings(r.Context())
		if err != nil {
			return err
		}
		s3 := *st.S3
		if cur.Storage.S3 != nil {
			s3.SecretKey = cur.Storage.S3.SecretKey
		}
		tested.S3 = &s3
		st.S3.SecretKey = secretKept
	}
	if err := c.cfg.TestStorage(r.Context(), tested); err != nil {
		d.Result = "The test failed, so nothing was saved: " + err.Error() + ". Check the bucket, region, endpoint and keys, and that the replicas can reach the endpoint."
		c.render(w, r, http.StatusBadRequest, "storage", s, page{Title: "Storage", Section: "system", Data: d})
		return nil
	}
	if r.PostForm.Get("action") == "test" {
		d.Result, d.Success = "The test wrote, read back and removed an object: these settings work. Save them to switch the registry's storage.", true
		c.render(w, r, http.StatusOK, "storage", s, page{Title: "Storage", Section: "system", Data: d})
		return nil
	}
	if err := s.api("PATCH", "/meta/settings", map[string]any{"storage": st}, nil); err != nil {
		return err
	}
	return done(w, r, "/system/storage", "storage-saved")
}

type replicaRow struct {
	ID      string
	Health  contract.ReplicaHealth
	Member  *contract.Member
	Known   bool // has a health report
	Current bool // the replica that answered
}

type replicasPage struct {
	Status contract.ClusterStatus
	Rows   []replicaRow
	Quorum int // members needed
	Voters int
}

func (c *Console) systemReplicas(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := requireAdmin(s); err != nil {
		return err
	}
	var d replicasPage
	if err := s.api("GET", "/meta/cluster_status", nil, &d.Status); err != nil {
		return err
	}
	rows := map[string]*replicaRow{}
	for id, h := range d.Status.ReplicaHealth {
		rows[id] = &replicaRow{ID: id, Health: h, Known: true}
	}
	for i := range d.Status.Members {
		m := &d.Status.Members[i]
		if !m.IsLearner {
			d.Voters++
		}
		if m.Name == "" {
			continue
		}
		row := rows[m.Name]
		if row == nil {
			row = &replicaRow{ID: m.Name}
			rows[m.Name] = row
		}
		row.Member = m
	}
	for _, row := range rows {
		row.Current = row.ID == d.Status.Replica
		d.Rows = append(d.Rows, *row)
	}
	sort.Slice(d.Rows, func(i, j int) bool { return d.Rows[i].ID < d.Rows[j].ID })
	d.Quorum = d.Voters/2 + 1
	c.render(w, r, http.StatusOK, "replicas", s, page{Title: "Replicas", Section: "system", Data: d})
	return nil
}

// gcAction is the job action of online garbage collection (DTR's name).
const gcAction = "onlinegc"

type gcPage struct {
	Cron     *meta.Cron
	Jobs     []meta.Job
	Running  bool
	Schedule string
}

func (c *Console) systemGC(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showGC(w, r, s, http.StatusOK, "")
}

func (c *Console) showGC(w http.ResponseWriter, r *http.Request, s *session, status int, problem string) error {
	if err := requireAdmin(s); err != nil {
		return err
	}
	var d gcPage
	var cr meta.Cron
	err := s.api("GET", "/crons/"+gcAction, nil, &cr)
	var ae *apiError
	switch {
	case err == nil:
		d.Cron, d.Schedule = &cr, cr.Schedule
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
	default:
		return err
	}
	var jobs struct {
		Jobs []meta.Job `json:"jobs"`
	}
	if err := s.api("GET", "/jobs?action="+gcAction+"&limit=20", nil, &jobs); err != nil {
		return err
	}
	d.Jobs = jobs.Jobs
	sort.SliceStable(d.Jobs, func(i, j int) bool { return d.Jobs[i].ScheduledAt.After(d.Jobs[j].ScheduledAt) })
	for _, j := range d.Jobs {
		if !j.Finished() {
			d.Running = true
		}
	}
	if r.Method == http.MethodPost {
		d.Schedule = r.PostForm.Get("schedule")
	}
	c.render(w, r, status, "gc", s, page{Title: "Garbage collection", Section: "system", Error: problem, Data: d})
	return nil
}

func (c *Console) systemGCAction(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := requireAdmin(s); err != nil {
		return err
	}
	var err error
	flash := ""
	switch r.PostForm.Get("action") {
	case "schedule":
		err = s.api("POST", "/crons", map[string]string{"action": gcAction, "schedule": strings.TrimSpace(r.PostForm.Get("schedule"))}, nil)
		flash = "gc-scheduled"
	case "unschedule":
		err = s.api("DELETE", "/crons/"+gcAction, nil, nil)
		flash = "gc-unscheduled"
	case "run":
		err = s.api("POST", "/jobs", map[string]string{"action": gcAction}, nil)
		flash = "gc-started"
	default:
		return errorPage(http.StatusBadRequest, "Unknown action "+strconv.Quote(r.PostForm.Get("action"))+".")
	}
	if err != nil {
		ue := asUserError(err)
		return c.showGC(w, r, s, ue.Status, ue.Message)
	}
	return done(w, r, "/system/gc", flash)
}
