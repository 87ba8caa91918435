package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/contract"
)

// ReplicaAPI calls a replica's admin API as the admin.
type ReplicaAPI struct {
	URL      string
	User     string
	Password string
	Client   *http.Client
}

// call sends one admin API request; a body is always JSON and says so (the
// admin API refuses other content types on mutations, against cross-site
// requests), and no Origin header is sent.
func (a ReplicaAPI) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.URL+path, body)
	if err != nil {
		return err
	}
	req.SetBasicAuth(a.User, a.Password)
	req.Header.Set("Accept", "application/json")
	// Also on bodiless POSTs and DELETEs: harmless, and safe if the replica
	// ever checks every mutation.
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, a.URL+path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("the replica refused the credentials (401): check --ucp-username and --ucp-password, the registry admin's")
	}
	if resp.StatusCode >= 300 {
		if msg := apiMessage(bytes.NewReader(b)); msg != "" {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Status reads the cluster status.
func (a ReplicaAPI) Status(ctx context.Context) (contract.ClusterStatus, error) {
	var s contract.ClusterStatus
	err := a.call(ctx, http.MethodGet, "/api/v0/meta/cluster_status", nil, &s)
	return s, err
}

// AddReplica adds the new replica's member as a learner; the answer's
// InitialCluster is what the new replica starts with.
func (a ReplicaAPI) AddReplica(ctx context.Context, id, peerURL string) (contract.AddReplicaResponse, error) {
	var out contract.AddReplicaResponse
	err := a.call(ctx, http.MethodPost, "/api/v0/meta/replicas", contract.AddReplicaRequest{ReplicaID: id, PeerURL: peerURL}, &out)
	return out, err
}

// Promote makes the replica's learner a voting member, retrying until it has
// caught up or within passes.
func (a ReplicaAPI) Promote(ctx context.Context, id string, within time.Duration) error {
	var last error
	err := poll(ctx, within, time.Second, func() (bool, error) {
		last = a.call(ctx, http.MethodPost, "/api/v0/meta/replicas/"+id+"/promote", nil, nil)
		return last == nil, nil
	})
	if errors.Is(err, errTimedOut) {
		return last
	}
	return err
}

// Undrain lifts a replica's drain mark once it runs its new version.
func (a ReplicaAPI) Undrain(ctx context.Context, id string) error {
	return a.call(ctx, http.MethodDelete, "/api/v0/meta/replicas/"+id+"/drain", nil, nil)
}

// Drain makes a replica's /_ping fail so load balancers stop sending it
// requests before it is removed or restarted.
func (a ReplicaAPI) Drain(ctx context.Context, id string) error {
	return a.call(ctx, http.MethodPost, "/api/v0/meta/replicas/"+id+"/drain", nil, nil)
}

// RemoveReplica removes a replica's member from the cluster.
func (a ReplicaAPI) RemoveReplica(ctx context.Context, id string) error {
	return a.call(ctx, http.MethodDelete, "/api/v0/meta/replicas/"+id, nil, nil)
}

// PatchSettings changes cluster settings (PATCH /api/v0/meta/settings);
// the fields left nil stay as they are.
func (a ReplicaAPI) PatchSettings(ctx context.Context, settings contract.SettingsPatch) error {
	return a.call(ctx, http.MethodPatch, "/api/v0/meta/settings", settings, nil)
}

// RotateTokenKey makes the cluster sign tokens with a new key; tokens signed
// with the old one stay valid until they expire, so no client fails.
func (a ReplicaAPI) RotateTokenKey(ctx context.Context) (contract.TokenKeyRotation, error) {
	var out contract.TokenKeyRotation
	// An empty JSON object, not an empty body: the admin API takes mutations
	// only as application/json.
	err := a.call(ctx, http.MethodPost, "/api/v0/meta/token_key/rotate", struct{}{}, &out)
	if err == nil && out.KeyID == "" {
		err = fmt.Errorf("POST /api/v0/meta/token_key/rotate: the replica answered without a key ID; is it older than this installer?")
	}
	return out, err
}

// apiMessage is the first error message of an admin API error body.
func apiMessage(r io.Reader) string {
	var e contract.APIError
	_ = json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&e)
	if len(e.Errors) > 0 {
		return e.Errors[0].Message
	}
	return ""
}

// BackupRequest is what dtr backup asks the replica for.
type BackupRequest struct {
	IncludeImages bool
	// Progress, if set, is called now and then with the bytes written so
	// far and, once the image index passed, about how many there will be
	// (0 before).
	Progress func(written, expected int64)
}

// Backup streams a backup from the replica into w and verifies it as it
// passes, so an interrupted or damaged stream is an error and never a short
// file that looks complete. It returns the manifest and the bytes written.
func (a ReplicaAPI) Backup(ctx context.Context, w io.Writer, br BackupRequest) (backup.Manifest, int64, error) {
	path := "/api/v0/meta/backup"
	if br.IncludeImages {
		path += "?includeImages=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+path, nil)
	if err != nil {
		return backup.Manifest{}, 0, err
	}
	req.SetBasicAuth(a.User, a.Password)
	client := *a.Client
	client.Timeout = 0 // the stream takes as long as it takes; ctx bounds it
	if tr, ok := client.Transport.(*http.Transport); ok {
		// Fewer, larger reads: a backup with images is gigabytes.
		tr = tr.Clone()
		tr.ReadBufferSize = 1 << 20
		client.Transport = tr
	}
	resp, err := client.Do(req)
	if err != nil {
		return backup.Manifest{}, 0, fmt.Errorf("asking %s for a backup: %w", a.URL, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return backup.Manifest{}, 0, fmt.Errorf("the replica refused the credentials (401): check --ucp-username and --ucp-password, the registry admin's")
	case resp.StatusCode != http.StatusOK:
		return backup.Manifest{}, 0, fmt.Errorf("the replica refused the backup: %s: %s", resp.Status, apiMessage(resp.Body))
	}
	cw := &countingWriter{w: w}
	var onIndex func(*backup.ImageIndex)
	if br.Progress != nil {
		cw.progress = br.Progress
		onIndex = func(ix *backup.ImageIndex) {
			if br.IncludeImages {
				cw.expected = cw.n + ix.Summary(true).Bytes
			}
		}
	}
	m, err := backup.VerifyWith(io.TeeReader(resp.Body, cw), onIndex)
	if err == nil {
		_, err = io.Copy(cw, resp.Body) // the tar's trailing padding, if any
	}
	if err != nil {
		return m, cw.n, fmt.Errorf("the backup stream broke off or is damaged after %d bytes (%v): what was written is not a usable backup", cw.n, err)
	}
	return m, cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64

	progress func(written, expected int64)
	expected int64
	last     time.Time
}

// progressEvery is how often a long backup reports progress.
const progressEvery = 10 * time.Second

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if c.progress != nil {
		if now := time.Now(); c.last.IsZero() {
			c.last = now
		} else if now.Sub(c.last) >= progressEvery {
			c.last = now
			c.progress(c.n, c.expected)
		}
	}
	if err != nil {
		err = fmt.Errorf("writing the backup to stdout: %w", err)
	}
	return n, err
}

// StorageCheck asks the replica which referenced blobs the registry storage
// lacks (dtr backup --check-storage, and after a restore).
func (a ReplicaAPI) StorageCheck(ctx context.Context) (contract.StorageCheck, error) {
	var res contract.StorageCheck
	// It stats every referenced blob: minutes on a large S3 registry.
	client := *a.Client
	client.Timeout = 0
	a.Client = &client
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	err := a.call(ctx, http.MethodGet, contract.StorageCheckPath, nil, &res)
	return res, err
}

// ErrNoRepairInPlace marks a replica that cannot be repaired through its
// admin API: it does not answer (stopped, scaled to 0, crash-looping, or
// still starting), or is older than the endpoint. The installer restarts
// it with the token in its environment instead.
var ErrNoRepairInPlace = errors.New("the replica cannot be repaired in place")

// EmergencyRepair asks the replica to make its metadata member the only
// member of a new cluster, in place, once for token (POST
// /api/v0/meta/emergency_repair). It returns once the replica has accepted:
// it then restarts its member, and answers /_ping 503 until it is healthy
// again.
func (a ReplicaAPI) EmergencyRepair(ctx context.Context, token string) (contract.EmergencyRepairResponse, error) {
	const path = "/api/v0/meta/emergency_repair"
	var out contract.EmergencyRepairResponse
	b, _ := json.Marshal(contract.EmergencyRepairRequest{Token: token})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL+path, bytes.NewReader(b))
	if err != nil {
		return out, err
	}
	req.SetBasicAuth(a.User, a.Password)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.Client.Do(req)
	if err != nil {
		return out, fmt.Errorf("%w: POST %s: %v", ErrNoRepairInPlace, a.URL+path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusAccepted:
		if err := json.Unmarshal(body, &out); err != nil {
			return out, fmt.Errorf("POST %s: the replica's answer: %w", path, err)
		}
		return out, nil
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented, http.StatusServiceUnavailable:
		return out, fmt.Errorf("%w: POST %s: %s %s", ErrNoRepairInPlace, path, resp.Status, apiMessage(bytes.NewReader(body)))
	case http.StatusUnauthorized, http.StatusForbidden:
		// Without a quorum the replica checks its own copy of the
		// accounts, which may miss a password changed since; the Swarm
		// access the installer has is enough for a restart.
		return out, fmt.Errorf("%w: the replica refused the credentials (%s): check --ucp-username and --ucp-password, the registry admin's", ErrNoRepairInPlace, resp.Status)
	}
	if msg := apiMessage(bytes.NewReader(body)); msg != "" {
		return out, fmt.Errorf("POST %s: %s: %s", path, resp.Status, msg)
	}
	return out, fmt.Errorf("POST %s: %s", path, resp.Status)
}
