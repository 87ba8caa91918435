package registry

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/distribution/distribution/v3/configuration"
	"golang.org/x/sys/unix"

	"github.com/dtr-registry/dtr/registry/internal/httpjson"
	"github.com/dtr-registry/dtr/registry/member"
)

// A full metadata volume (docs/reliability.md, "The metadata volume is
// full"): the member's space guard raises etcd's NOSPACE alarm, and with it
// raised every member refuses puts. The replica then answers what it can:
// pulls and reads as usual, pushes and changes with 507 and the reason, and
// /_ping names the reason as a WriteError (as for a full storage, the
// condition is cluster-wide: taking replicas out of a load balancer would
// lose every pull and gain nothing).

// metadataRetryAfter is the Retry-After of a write refused for a full
// metadata volume, in seconds: freeing space is an operator's task.
const metadataRetryAfter = "60"

// metadataWritesRefused says why the metadata store refuses writes now, or
// "" when it takes them. It reads only this member's state: no raft round
// trip, so every push may ask.
func (r *Replica) metadataWritesRefused() string {
	if r.member == nil {
		return ""
	}
	var full []string
	for _, a := range r.member.Alarms() {
		if a.Kind == "NOSPACE" {
			full = append(full, a.Member)
		}
	}
	sp := r.member.Space()
	switch {
	case sp.Low:
		return fmt.Sprintf("the metadata volume of replica %s is nearly full (%s free, writes stop under %s)",
			r.opts.ReplicaID, mib(sp.Free), mib(r.lowSpace()))
	case len(full) > 0:
		return fmt.Sprintf("the metadata store is full (etcd's NOSPACE alarm, raised by replica %s: its metadata volume or the database quota is full)",
			strings.Join(full, ", "))
	}
	return ""
}

func (r *Replica) lowSpace() int64 {
	if r.opts.MetadataLowSpace > 0 {
		return r.opts.MetadataLowSpace
	}
	return member.DefaultLowSpace
}

func mib(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }

// metadataSpaceCheck is the health check of the metadata volume: a
// writesRefusedError while writes are refused, so /_ping stays 200 for pulls
// and ?for=push answers 503.
func (r *Replica) metadataSpaceCheck(context.Context) error {
	if reason := r.metadataWritesRefused(); reason != "" {
		return &writesRefusedError{msg: reason + ": pushes and changes are refused with 507, pulls are served; free space on that volume or grow it, and writes resume by themselves"}
	}
	return nil
}

// spareMetadataDisk stops blob writes to a filesystem storage that shares
// the metadata volume's disk (the default install keeps both volumes on the
// node's Docker disk) while that disk is under the guard's low mark: a push
// would otherwise fill it past the metadata store's reserve.
func (r *Replica) spareMetadataDisk(root string) {
	state := stateFor(storageKey("filesystem", configuration.Parameters{"rootdirectory": root}))
	var a, b unix.Stat_t
	if unix.Stat(root, &a) != nil || unix.Stat(r.opts.DataDir, &b) != nil || a.Dev != b.Dev {
		state.metadataLow.Store(nil)
		return
	}
	low := func() bool { return r.member != nil && (r.member.Space().Low || r.member.SpaceLow()) }
	state.metadataLow.Store(&low)
}

// refuseFullMetadata answers 507 in the registry's error format.
func refuseFullMetadata(w http.ResponseWriter, reason string) {
	w.Header().Set("Retry-After", metadataRetryAfter)
	httpjson.Error(w, http.StatusInsufficientStorage, "UNAVAILABLE",
		reason+": pushes are refused until an administrator frees space; pulls are served")
}
