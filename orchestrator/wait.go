package orchestrator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
)

// ReplicaServerName is a name in every CA-issued replica certificate. The
// installer asks for it (SNI), so a replica with an operator's certificate
// for clients still shows the installer its cluster-CA certificate.
const ReplicaServerName = "dtr-replica"

// HTTPSClient trusts the cluster CA.
func HTTPSClient(caPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: ReplicaServerName},
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
// so that a task Swarm rejects fails at once with Swarm's reason.
func (o Objects) WaitHealthy(ctx context.Context, client *http.Client, url, service string, within time.Duration) error {
	return o.waitFor(ctx, client, url, "/_ping", service, within, "no 200 from /_ping", func(status int, _ answer) bool { return status == http.StatusOK })
}

// WaitRestoreReady polls a new replica's /_live until it says it waits for
// a backup: an old replica still stopping on the same port is live too, but
// must never be sent the backup.
func (o Objects) WaitRestoreReady(ctx context.Context, client *http.Client, url, replicaID, service string, within time.Duration) error {
	return o.waitFor(ctx, client, url, "/_live", service, within, "not waiting for the backup (an old replica still stopping?)",
		func(_ int, a answer) bool { return a.Restore == "waiting" && a.Replica == replicaID })
}

// answer is what /_ping and /_live say.
type answer struct {
	Healthy                 bool
	Error, Restore, Replica string
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
	deadline := time.Now().Add(within)
	last := "no answer yet"
	for {
		if service != "" {
			if err := o.taskFailure(ctx, service); err != nil {
				return err
			}
		}
		status, a, err := get(ctx, client, url+path)
		switch {
		case status != 0 && done(status, a):
			return nil
		case status != 0:
			last = fmt.Sprintf("%d %s", status, a.Error)
		default:
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica at %s: %s after %v (last: %s); see docker service logs %s", url, what, within, last, service)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
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
	deadline := time.Now().Add(within)
	for {
		s, _, err := o.C.Engine.ServiceInspectWithRaw(ctx, service, swarm.ServiceInspectOptions{})
		if err != nil {
			return err
		}
		if u := s.UpdateStatus; u != nil {
			switch u.State {
			case swarm.UpdateStateCompleted:
				return nil
			case swarm.UpdateStatePaused, swarm.UpdateStateRollbackStarted, swarm.UpdateStateRollbackPaused, swarm.UpdateStateRollbackCompleted:
				return fmt.Errorf("Swarm stopped updating %s (%s): %s", s.Spec.Name, u.State, u.Message)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the update of %s did not complete within %v", s.Spec.Name, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Health is a replica's /_ping answer.
type Health struct {
	Healthy bool
	Error   string
}

// Ping asks a replica's /_ping once.
func Ping(ctx context.Context, client *http.Client, url string) (Health, error) {
	status, a, err := get(ctx, client, url+"/_ping")
	if err != nil {
		return Health{}, fmt.Errorf("%d: %w", status, err)
	}
	return Health{Healthy: a.Healthy && status == http.StatusOK, Error: a.Error}, nil
}
