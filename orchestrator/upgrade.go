package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/dtr-registry/dtr/contract"
)

// Version is a dtr version, major.minor.patch.
type Version struct{ Major, Minor, Patch int }

// ParseVersion reads "1.2.3" (a leading "v" and a "-suffix" are allowed).
func ParseVersion(s string) (Version, error) {
	core, _, _ := strings.Cut(strings.TrimPrefix(s, "v"), "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("version %q is not major.minor.patch", s)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return Version{}, fmt.Errorf("version %q is not major.minor.patch", s)
		}
		n[i] = v
	}
	return Version{n[0], n[1], n[2]}, nil
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less orders versions.
func (v Version) Less(w Version) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	return v.Patch < w.Patch
}

// CheckUpgrade applies DTR's rules to moving a replica from version from to
// version to: patch versions freely, one minor version at a time, never
// down, never across a major version. The error names the path to take.
func CheckUpgrade(from, to string) error {
	f, err := ParseVersion(from)
	if err != nil {
		return err
	}
	t, err := ParseVersion(to)
	if err != nil {
		return err
	}
	switch {
	case t.Less(f):
		return fmt.Errorf("it runs %s, newer than this dtr %s: downgrades are not supported; use the dtr image of version %s or later, or restore a backup taken before the upgrade", f, t, f)
	case t.Major != f.Major:
		return fmt.Errorf("it runs %s: upgrading across major versions (%d to %d) is not supported; install %s and restore a backup", f, f.Major, t.Major, t)
	case t.Minor > f.Minor+1:
		return fmt.Errorf("it runs %s: upgrades go one minor version at a time; upgrade to the latest %d.%d.x first, then to %s", f, f.Major, f.Minor+1, t)
	}
	return nil
}

// Upgrade is what a rolling upgrade needs.
type Upgrade struct {
	Replicas []Replica         // every replica of the cluster
	Addrs    map[string]string // node hostname → address
	// API returns the admin API to use while replica id restarts: another
	// replica's when there is one.
	API     func(id string) ReplicaAPI
	Client  *http.Client
	Version string // the version upgraded to (this dtr's)
	// Image, ImageID: the new replica image's reference and ID (services run
	// it by ID, so Swarm never pulls); JobImageID: this installer's image.
	Image, ImageID, JobImageID string
	// DrainWait is how long load balancers get to stop sending requests to a
	// drained replica before it restarts; Timeout bounds one replica's wait.
	DrainWait, Timeout time.Duration
}

// PlanUpgrade upgrades the replicas one at a time: each is drained, its
// service runs the new image, and it is healthy (its metadata member caught
// up: /_ping needs a linearizable read) before the next. A replica that does
// not turn healthy on the new image is put back on its old one, and the
// upgrade stops there; the replicas before it stay upgraded, and running the
// command again resumes with the rest. See docs/ha.md ("Upgrade").
func (o Objects) PlanUpgrade(in *Upgrade) *Plan {
	p := &Plan{Title: fmt.Sprintf("Upgrade %d replica(s) to %s, one at a time", len(in.Replicas), in.Version), Forward: true}
	for _, r := range in.Replicas {
		url := ReplicaURL(in.Addrs[r.Node], r.HTTPSPort)
		spec := func(State) (swarm.ServiceSpec, error) { return upgradedSpec(r, in) }
		desc := fmt.Sprintf("upgrade replica %s on node %s from %s to %s: drain it, run %s (%s), wait until it answers healthy at %s/_ping",
			r.ID, r.Node, r.Version, in.Version, in.Image, shortID(in.ImageID), url)
		if upgraded(r, in) {
			desc = fmt.Sprintf("replica %s on node %s runs %s already: make sure it is not draining and answers healthy at %s/_ping", r.ID, r.Node, in.Version, url)
			spec = nil
		}
		p.Add(Step{Description: desc, Service: spec, Apply: func(ctx context.Context, _ *State) error {
			return o.upgradeReplica(ctx, in, r, url)
		}})
	}
	return p
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

// upgraded reports whether r's service runs the new image already (an
// earlier run upgraded it).
func upgraded(r Replica, in *Upgrade) bool {
	cs := r.Spec.TaskTemplate.ContainerSpec
	return r.Version == in.Version && cs != nil && cs.Image == in.ImageID
}

// upgradedSpec is r's service with the new image and version, everything
// else as r has it: its configuration read back from its service (Config,
// the inverse of ServiceSpec) and written again by this version.
func upgradedSpec(r Replica, in *Upgrade) (swarm.ServiceSpec, error) {
	c, err := r.Config()
	if err != nil {
		return swarm.ServiceSpec{}, err
	}
	c.Image, c.ImageID, c.Version, c.JobImageID = in.Image, in.ImageID, in.Version, in.JobImageID
	return ServiceSpec(c, r.ObjectIDs()), nil
}

// upgradeReplica is one replica's step.
func (o Objects) upgradeReplica(ctx context.Context, in *Upgrade, r Replica, url string) error {
	name := contract.ServiceName(r.ID)
	api := in.API(r.ID)
	if upgraded(r, in) {
		if err := undrain(ctx, api, r.ID, in.Timeout); err != nil {
			return err
		}
		return o.WaitHealthy(ctx, in.Client, url, name, in.Timeout)
	}
	spec, err := upgradedSpec(r, in)
	if err != nil {
		return err
	}
	// Load balancers see /_ping fail and stop sending requests first.
	if err := api.Drain(ctx, r.ID); err != nil {
		o.warnf("Could not mark replica %s as draining (%v): load balancers learn it is restarting only when it stops", r.ID, err)
	} else {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(in.DrainWait):
		}
	}
	if _, err := o.C.Engine.ServiceUpdate(ctx, r.ServiceID, r.Meta, spec, swarm.ServiceUpdateOptions{}); err != nil {
		_ = undrain(context.WithoutCancel(ctx), api, r.ID, in.Timeout)
		return fmt.Errorf("updating service %s to %s: %w; it still runs %s", name, in.Version, err, r.Version)
	}
	err = o.WaitUpdated(ctx, r.ServiceID, in.Timeout)
	if err == nil {
		// The new task carries the drain mark over (it is in the metadata):
		// lift it, then the replica's /_ping turns 200 once it serves.
		err = undrain(ctx, api, r.ID, in.Timeout)
	}
	if err == nil {
		err = o.WaitHealthy(ctx, in.Client, url, name, in.Timeout)
	}
	if err == nil {
		return nil
	}
	// Back to the old image: the cluster keeps serving with this replica as
	// it was, and the operator sees why the new one did not come up.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.Timeout+time.Minute)
	defer cancel()
	if rerr := o.rollBack(rctx, in, r, url, api); rerr != nil {
		return fmt.Errorf("replica %s did not turn healthy on %s (%w), and putting it back on %s failed too: %v; run dtr upgrade again once the cause is fixed", r.ID, in.Version, err, r.Version, rerr)
	}
	return fmt.Errorf("replica %s did not turn healthy on %s (%w); it was put back on %s and serves again; fix the cause and run dtr upgrade again", r.ID, in.Version, err, r.Version)
}

// rollBack puts r's service back to the spec it had before the upgrade.
func (o Objects) rollBack(ctx context.Context, in *Upgrade, r Replica, url string, api ReplicaAPI) error {
	s, _, err := o.C.Engine.ServiceInspectWithRaw(ctx, r.ServiceID, swarm.ServiceInspectOptions{})
	if err != nil {
		return err
	}
	if _, err := o.C.Engine.ServiceUpdate(ctx, r.ServiceID, s.Version, r.Spec, swarm.ServiceUpdateOptions{}); err != nil {
		return err
	}
	if err := o.WaitUpdated(ctx, r.ServiceID, in.Timeout); err != nil {
		return err
	}
	if err := undrain(ctx, api, r.ID, in.Timeout); err != nil {
		return err
	}
	return o.WaitHealthy(ctx, in.Client, url, contract.ServiceName(r.ID), in.Timeout)
}

// undrain lifts a replica's drain mark, retrying while the admin API does
// not answer (a single replica is restarting).
func undrain(ctx context.Context, api ReplicaAPI, id string, within time.Duration) error {
	var last error
	err := poll(ctx, within, 500*time.Millisecond, func() (bool, error) {
		last = api.Undrain(ctx, id)
		return last == nil, nil
	})
	if errors.Is(err, errTimedOut) {
		return fmt.Errorf("lifting the drain mark of replica %s: %w", id, last)
	}
	return err
}
