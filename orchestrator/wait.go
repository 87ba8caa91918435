package orchestrator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/contract"
)

// HTTPSClient trusts the cluster CA. It asks for contract.TLSServerName
// (SNI), a name in every CA-issued replica certificate, so a replica with an
// operator's certificate for clients still shows the installer its
// cluster-CA certificate.
func HTTPSClient(caPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: contract.TLSServerName},
	}}
}

// ReplicaURL is how the installer reaches a replica: its node's address and
// its published HTTPS port.
func ReplicaURL(nodeAddr string, httpsPort int) string {
	return "https://" + net.JoinHostPort(nodeAddr, strconv.Itoa(httpsPort))
}

// WaitLive polls a replica's /_live until its process serves.
func (o Objects) WaitLive(ctx context.Context, client *http.Client, url, service string, within time.Duration) error {
	return o.waitFor(ctx, client, url, "/_live", service, within, "no 200 from /_live", func(status int, _ answer) bool { return status == http.StatusOK })
}

// WaitHealthy polls a replica's /_ping until 200, watching its service's task
// so that a task Swarm rejects fails at once with Swarm's reason. A replica
// that keeps reporting that it cannot write to its storage fails the wait
// with a *StorageError within storageGrace instead of the whole timeout: that
// needs the operator, not time.
func (o Objects) WaitHealthy(ctx context.Context, client *http.Client, url, service string, within time.Duration) error {
	return o.waitFor(ctx, client, url, "/_ping", service, within, "no 200 from /_ping", func(status int, _ answer) bool { return status == http.StatusOK })
}

// StorageUnwritable is what a replica's /_ping says when its storage probe
// cannot write (the registry package's storageProbe; its test checks that
// the replica's message contains this, so the two cannot drift apart).
//
// Why install, join, restore and reconfigure catch an unwritable storage
// through the replica's /_ping rather than by checking a host path with a
// node job first: the probe is the real thing (the replica's uid, its mount,
// read-only binds, SELinux labels, root-squashing NFS, bucket policies)
// where a job could only predict it from mode bits, it covers every kind of
// storage and every command that starts a replica (all of them wait for
// /_ping already), it keeps watching after the install, and it costs no job.
// The price is a started replica to undo, which each command's plan does.
const StorageUnwritable = "cannot write to the registry storage"

// storageGrace is how long a replica may report an unwritable storage
// before the installer gives up: the replica retries the write every 2 s,
// so this is two failed writes, and an S3 hiccup clears within it.
var storageGrace = 5 * time.Second

// StorageError is a replica's report that it cannot write to its storage.
type StorageError struct {
	URL    string
	Report string // the replica's /_ping error
}

func (e *StorageError) Error() string {
	return fmt.Sprintf("replica at %s cannot write to its image storage: %s", e.URL, e.Report)
}

// StorageFix turns a *StorageError from waiting on replica c into one that
// names the fix for c's kind of storage; other errors pass unchanged.
func StorageFix(err error, c ReplicaConfig) error {
	var se *StorageError
	if !errors.As(err, &se) {
		return err
	}
	var fix string
	switch s := c.Storage; {
	case s.IsHostPath():
		fix = fmt.Sprintf("the host directory %[1]s on node %[2]s is not writable by uid 10001, the replica's user: run chown -R 10001:10001 %[1]s on node %[2]s, then run the command again", s.Volume, c.Node)
	case s.NFSURL != "":
		fix = fmt.Sprintf("the NFS export %s is not writable by uid 10001, the replica's user: chown -R 10001:10001 the exported directory on the NFS server (or map the export's squash user to 10001), then run the command again", s.NFSURL)
	case s.Volume != "":
		fix = fmt.Sprintf("volume %s on node %s is not writable by uid 10001, the replica's user: chown -R 10001:10001 its directory (docker volume inspect %s shows it) on that node, then run the command again", s.Volume, c.Node, s.Volume)
	default:
		fix = "give uid 10001, the replica's user, write access to the storage, then run the command again"
	}
	return fmt.Errorf("replica %s cannot write to its image storage (%s): %s", c.ID, se.Report, fix)
}

// WaitRestoreReady polls a new replica's /_live until it says it waits for
// a backup: an old replica still stopping on the same port is live too, but
// must never be sent the backup.
func (o Objects) WaitRestoreReady(ctx context.Context, client *http.Client, url, replicaID, service string, within time.Duration) error {
	return o.waitFor(ctx, client, url, "/_live", service, within, "not waiting for the backup (an old replica still stopping?)",
		func(_ int, a answer) bool { return a.Restore == "waiting" && a.Replica == replicaID })
}

// answer is what /_ping and /_live say: /_live adds whether the replica
// waits for a backup, and which replica it is.
type answer struct {
	contract.Health
	Restore, Replica string
}

// get asks url+path once.
func get(ctx context.Context, client *http.Client, url string) (int, answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, answer{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, answer{}, err
	}
	defer resp.Body.Close()
	var a answer
	err = json.NewDecoder(resp.Body).Decode(&a)
	return resp.StatusCode, a, err
}

// waitFor polls url+path until done says so, failing at once when Swarm
// rejects the service's task.
func (o Objects) waitFor(ctx context.Context, client *http.Client, url, path, service string, within time.Duration, what string, done func(int, answer) bool) error {
	last := "no answer yet"
	var unwritableSince time.Time
	err := poll(ctx, within, 500*time.Millisecond, func() (bool, error) {
		if service != "" {
			if err := o.taskFailure(ctx, service); err != nil {
				return false, err
			}
		}
		status, a, err := get(ctx, client, url+path)
		switch {
		case status != 0 && done(status, a):
			return true, nil
		case status != 0:
			last = fmt.Sprintf("%d %s", status, a.Error)
			if path == "/_ping" && strings.Contains(a.Error, StorageUnwritable) {
				if unwritableSince.IsZero() {
					unwritableSince = time.Now()
				}
				if time.Since(unwritableSince) >= storageGrace {
					return false, &StorageError{URL: url, Report: a.Error}
				}
				return false, nil
			}
			unwritableSince = time.Time{}
		default:
			last = err.Error()
		}
		return false, nil
	})
	if errors.Is(err, errTimedOut) {
		return fmt.Errorf("replica at %s: %s after %v (last: %s); see docker service logs %s", url, what, within, last, service)
	}
	return err
}

// taskFailure returns Swarm's reason when the service's latest task failed
// or was rejected (a port in use, a missing image, a bad mount).
func (o Objects) taskFailure(ctx context.Context, service string) error {
	tasks, err := o.C.Engine.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", service))})
	if err != nil || len(tasks) == 0 {
		return nil
	}
	latest := tasks[0]
	for _, t := range tasks {
		if t.Meta.CreatedAt.After(latest.Meta.CreatedAt) {
			latest = t
		}
	}
	switch latest.Status.State {
	case swarm.TaskStateRejected:
		return fmt.Errorf("Swarm rejected the task of %s: %s", service, latest.Status.Err)
	case swarm.TaskStateFailed:
		if len(tasks) >= 3 {
			return fmt.Errorf("the task of %s keeps failing: %s (docker service logs %s)", service, latest.Status.Err, service)
		}
	}
	return nil
}

// WaitUpdated waits until Swarm reports a service update completed.
func (o Objects) WaitUpdated(ctx context.Context, service string, within time.Duration) error {
	name := service
	err := poll(ctx, within, 500*time.Millisecond, func() (bool, error) {
		s, _, err := o.C.Engine.ServiceInspectWithRaw(ctx, service, swarm.ServiceInspectOptions{})
		if err != nil {
			return false, err
		}
		name = s.Spec.Name
		if u := s.UpdateStatus; u != nil {
			switch u.State {
			case swarm.UpdateStateCompleted:
				return true, nil
			case swarm.UpdateStatePaused, swarm.UpdateStateRollbackStarted, swarm.UpdateStateRollbackPaused, swarm.UpdateStateRollbackCompleted:
				return false, fmt.Errorf("Swarm stopped updating %s (%s): %s", s.Spec.Name, u.State, u.Message)
			}
		}
		return false, nil
	})
	if errors.Is(err, errTimedOut) {
		return fmt.Errorf("the update of %s did not complete within %v", name, within)
	}
	return err
}

// Ping asks a replica's /_ping once; Healthy only with a 200.
func Ping(ctx context.Context, client *http.Client, url string) (contract.Health, error) {
	status, a, err := get(ctx, client, url+"/_ping")
	if err != nil {
		return contract.Health{}, fmt.Errorf("%d: %w", status, err)
	}
	h := a.Health
	h.Healthy = h.Healthy && status == http.StatusOK
	return h, nil
}
