package registry

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver"
)

// TestVanished: the errors a write meets when a deletion removed its
// directory, as the drivers wrap them, are told from full or failing disks.
func TestVanished(t *testing.T) {
	nf := driver.PathNotFoundError{Path: "/docker/registry/v2/repositories/a/b/_layers/sha256/x/link.tmp", DriverName: "filesystem"}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nf, true},
		// the filesystem driver joins the write's error and its cleanup's
		{driver.Error{DriverName: "filesystem", Detail: errors.Join(nf, nf)}, true},
		{&os.LinkError{Op: "rename", Old: "a", New: "b", Err: syscall.ENOENT}, true},
		{driver.Error{DriverName: "filesystem", Detail: &os.PathError{Op: "open", Path: "p", Err: syscall.ENOENT}}, true},
		{fmt.Errorf("wrapped: %w", nf), true},
		{driver.Error{DriverName: "filesystem", Detail: &os.PathError{Op: "write", Path: "p", Err: syscall.ENOSPC}}, false},
		{syscall.EIO, false},
		{errors.New("other"), false},
		{nil, false},
	} {
		if got := vanished(c.err); got != c.want {
			t.Errorf("vanished(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestRacedWriteAnswers503: a push whose write found its directory gone is
// told to push again (503 with Retry-After), without a host path; a full
// storage still wins over it.
func TestRacedWriteAnswers503(t *testing.T) {
	for _, c := range []struct {
		faults []storageFault
		status int
		after  string
	}{
		{[]storageFault{faultRaced}, 503, "1"},
		{[]storageFault{faultRaced, faultFull}, 507, storageRetryAfter},
		{[]storageFault{faultFailing, faultRaced}, 503, storageRetryAfter},
	} {
		f := &requestFaults{}
		for _, x := range c.faults {
			f.note(x)
		}
		rec := httptest.NewRecorder()
		w := &appErrorWriter{ResponseWriter: rec, faults: f}
		w.WriteHeader(500)
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNKNOWN","detail":"Path not found: /var/lib/x"}]}`))
		w.finish()
		if rec.Code != c.status || rec.Header().Get("Retry-After") != c.after {
			t.Errorf("faults %v: %d Retry-After %q, want %d %q", c.faults, rec.Code, rec.Header().Get("Retry-After"), c.status, c.after)
		}
		if b := rec.Body.String(); len(b) == 0 || strings.Contains(b, "/var/lib") {
			t.Errorf("faults %v: body %q", c.faults, b)
		}
	}
	// A success after a raced write stands: nothing was lost.
	f := &requestFaults{}
	f.note(faultRaced)
	rec := httptest.NewRecorder()
	w := &appErrorWriter{ResponseWriter: rec, faults: f}
	w.WriteHeader(201)
	w.finish()
	if rec.Code != 201 {
		t.Errorf("a 201 after a raced write became %d", rec.Code)
	}
}
