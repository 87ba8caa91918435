package registry

// A storage that is full or failing. Distribution answers every write that
// fails for lack of space with 500 UNKNOWN and the driver's error as the
// detail, host path included. dtr classifies the error where it is still a
// Go error, in a storage driver middleware (Distribution's extension point
// for drivers), and answers from that classification at the HTTP edge of the
// App: 507 with Retry-After for a full storage, 503 with Retry-After for one
// that is read-only or gives I/O errors, and no host path in any 5xx body.

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/storage/driver"
	storagemiddleware "github.com/distribution/distribution/v3/registry/storage/driver/middleware"

	"github.com/dtr-registry/dtr/registry/internal/drivererr"
	"github.com/dtr-registry/dtr/registry/internal/httpjson"
)

// faultMiddleware is the name dtr's storage middleware registers under.
const faultMiddleware = "dtr-storage-faults"

func init() {
	if err := storagemiddleware.Register(faultMiddleware, func(_ context.Context, d driver.StorageDriver, opts map[string]any) (driver.StorageDriver, error) {
		key, _ := opts["key"].(string)
		return newFaultDriver(d, key), nil
	}); err != nil {
		panic(err)
	}
}

// storageFault is what a failed storage write means for the client.
type storageFault int32

const (
	faultNone    storageFault = iota
	faultRaced                // a directory vanished under the write: a deletion ran at the same time
	faultFailing              // read-only or I/O errors: an operator must repair it
	faultFull                 // no space or quota left: frees up when space does
)

// classifyStorageError reads the errno under a driver's error.
func classifyStorageError(err error) (storageFault, syscall.Errno) {
	errno := drivererr.Errno(err)
	switch errno {
	case 0:
		return faultNone, 0
	case syscall.ENOSPC, syscall.EDQUOT:
		return faultFull, errno
	case syscall.EROFS, syscall.EIO:
		return faultFailing, errno
	}
	return faultNone, errno
}

// storageFaultError is a driver error classified as a full or failing
// storage; it keeps the driver's error (with its path) for the logs.
type storageFaultError struct {
	fault storageFault
	errno syscall.Errno
	err   error
}

func (e *storageFaultError) Error() string { return e.err.Error() }
func (e *storageFaultError) Unwrap() error { return e.err }

// storageState is what the replica knows about one storage across its
// drivers: the App's (written by pushes) and the health probe's are two
// instances of the same storage, found by the same key.
type storageState struct {
	lastFull atomic.Int64 // UnixNano of the last write refused for lack of space
	// metadataLow, when set, reports that the metadata volume is nearly
	// full and this storage is on the same disk: blob writes then stop,
	// so that pushes cannot eat the space the metadata store needs
	// (metadatafull.go). Nil for a storage on a disk of its own.
	metadataLow atomic.Pointer[func() bool]
}

var storageStates sync.Map // storage key → *storageState

func stateFor(key string) *storageState {
	if key == "" {
		return &storageState{}
	}
	s, _ := storageStates.LoadOrStore(key, &storageState{})
	return s.(*storageState)
}

// fullSince reports whether a write was refused for lack of space after t.
func (s *storageState) fullSince(t time.Time) bool {
	n := s.lastFull.Load()
	return n != 0 && n > t.UnixNano()
}

// storageKey names a storage so that the App's driver and the probe's,
// built from the same settings, share their storageState.
func storageKey(name string, params configuration.Parameters) string {
	switch name {
	case "filesystem":
		root, _ := params["rootdirectory"].(string)
		return "filesystem:" + filepath.Clean(root)
	case "s3":
		str := func(k string) string { v, _ := params[k].(string); return v }
		return "s3:" + str("regionendpoint") + "/" + str("bucket") + "/" + str("rootdirectory")
	}
	return "" // inmemory: every driver is a storage of its own
}

// faultDriver classifies the errors of the writes a push makes: it records
// them in the request's faults (so the App's answer can be corrected) and in
// the storage's state (so the health probe writes at its next round instead
// of waiting up to storageWriteEvery).
type faultDriver struct {
	driver.StorageDriver
	state *storageState
}

func newFaultDriver(d driver.StorageDriver, key string) *faultDriver {
	return &faultDriver{StorageDriver: d, state: stateFor(key)}
}

func (d *faultDriver) note(ctx context.Context, err error) error {
	fault, errno := classifyStorageError(err)
	if fault == faultNone {
		return err
	}
	if fault == faultFull {
		d.state.lastFull.Store(time.Now().UnixNano())
	}
	if f, ok := ctx.Value(requestFaultsKey{}).(*requestFaults); ok {
		f.note(fault)
	}
	return &storageFaultError{fault: fault, errno: errno, err: err}
}

// PutContent writes links, manifests and upload state.
func (d *faultDriver) PutContent(ctx context.Context, path string, content []byte) error {
	return d.noteRace(ctx, d.note(ctx, d.StorageDriver.PutContent(ctx, path, content)))
}

// noteRace records a write that found its directory gone: garbage
// collection or a repository deletion removed it between the driver's
// mkdir and its write. Distribution answers 500 "Path not found"; the
// client should push again, and is told so (503, Retry-After).
func (d *faultDriver) noteRace(ctx context.Context, err error) error {
	if err == nil || !vanished(err) {
		return err
	}
	if f, ok := ctx.Value(requestFaultsKey{}).(*requestFaults); ok {
		f.note(faultRaced)
	}
	return err
}

// vanished: the driver found no such path as it wrote (drivererr.NotFound).
func vanished(err error) bool { return drivererr.NotFound(err) }

// Writer opens blob uploads; its writes are classified too.
func (d *faultDriver) Writer(ctx context.Context, path string, append bool) (driver.FileWriter, error) {
	fw, err := d.StorageDriver.Writer(ctx, path, append)
	if err != nil {
		return nil, d.note(ctx, err)
	}
	w := &faultWriter{FileWriter: fw, ctx: ctx, d: d}
	if f, ok := ctx.Value(requestFaultsKey{}).(*requestFaults); ok {
		f.opened(w)
	}
	return w, nil
}

// Move commits uploads (a copy on drivers without rename).
func (d *faultDriver) Move(ctx context.Context, src, dst string) error {
	return d.noteRace(ctx, d.note(ctx, d.StorageDriver.Move(ctx, src, dst)))
}

type faultWriter struct {
	driver.FileWriter
	ctx  context.Context // the request that opened it
	d    *faultDriver
	done atomic.Bool // closed, committed or cancelled: its file is released
}

func (w *faultWriter) Write(p []byte) (int, error) {
	if low := w.d.state.metadataLow.Load(); low != nil && (*low)() {
		return 0, w.d.note(w.ctx, &os.PathError{Op: "write", Path: "blob", Err: syscall.ENOSPC})
	}
	n, err := w.FileWriter.Write(p)
	return n, w.d.note(w.ctx, err)
}

// Close closes the upload's file.
func (w *faultWriter) Close() error {
	err := w.FileWriter.Close()
	if err == nil {
		w.done.Store(true)
	}
	return w.d.note(w.ctx, err)
}

func (w *faultWriter) Cancel(ctx context.Context) error {
	w.done.Store(true)
	return w.FileWriter.Cancel(ctx)
}

func (w *faultWriter) Commit(ctx context.Context) error {
	err := w.FileWriter.Commit(ctx)
	if err == nil {
		w.done.Store(true)
	}
	return w.d.note(ctx, err)
}

// requestFaults is the worst storage fault one request met, and the upload
// files it opened.
type requestFaults struct {
	worst atomic.Int32

	mu      sync.Mutex
	writers []*faultWriter
}

func (f *requestFaults) opened(w *faultWriter) {
	f.mu.Lock()
	f.writers = append(f.writers, w)
	f.mu.Unlock()
}

// releaseBroken cancels the uploads a request left open after a storage
// fault. Distribution leaves an upload's file open when a write fails: its
// blob writer returns before closing the file when saving its hash state
// fails, and the filesystem writer returns before closing it when flushing
// its buffer fails. Each such file would stay open for the life of the
// process (a descriptor per failed push, and a disk that cannot be
// unmounted). Such an upload has lost bytes and cannot be resumed anyway:
// cancelling closes the file and frees its space.
func (f *requestFaults) releaseBroken(ctx context.Context) {
	if storageFault(f.worst.Load()) < faultFailing {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.writers {
		if !w.done.Load() {
			_ = w.Cancel(ctx)
		}
	}
}

type requestFaultsKey struct{}

func (f *requestFaults) note(fault storageFault) {
	for {
		cur := f.worst.Load()
		if int32(fault) <= cur || f.worst.CompareAndSwap(cur, int32(fault)) {
			return
		}
	}
}

// storageRetryAfter is the Retry-After of a push refused by a full or
// failing storage. Space comes back by an operator's hand, not in seconds;
// a client that retries sooner only adds load.
const storageRetryAfter = "30"

// hostPathRE matches an absolute filesystem path after a space, quote, colon,
// equals sign or parenthesis: what os.PathError and the drivers print. URLs
// ("https://h/p") do not match: their slashes follow a slash or a host.
var hostPathRE = regexp.MustCompile(`(^|[\s"'(=:])(/[A-Za-z0-9._@%+~,-]+)+/?`)

// scrubPaths replaces absolute paths with "<path>"; it keeps JSON valid
// because the paths it matches hold no quote or backslash.
func scrubPaths(b []byte) []byte { return hostPathRE.ReplaceAll(b, []byte("$1<path>")) }

// maxErrorBody bounds what is held of a 5xx body; Distribution's are a few
// hundred bytes.
const maxErrorBody = 64 << 10

// appErrorWriter holds back the App's 5xx answers, and its successes after a
// storage fault, so that answerStorageErrors can replace them; other answers
// pass straight through.
type appErrorWriter struct {
	http.ResponseWriter
	faults   *requestFaults
	status   int
	held     bool
	body     bytes.Buffer
	overflow bool
}

func (w *appErrorWriter) WriteHeader(code int) {
	if w.status != 0 {
		return // a second WriteHeader (after a 499) would only be logged as superfluous
	}
	w.status = code
	// A success after a storage fault is held too: Distribution ignores the
	// error of closing an upload's file (a chunk smaller than its buffer
	// fails only then) and answers 202 for bytes that were lost.
	if code >= 500 || code < 300 && storageFault(w.faults.worst.Load()) >= faultFailing {
		w.held = true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *appErrorWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.held {
		return w.ResponseWriter.Write(b)
	}
	if w.body.Len()+len(b) > maxErrorBody {
		w.overflow = true
	} else {
		w.body.Write(b)
	}
	return len(b), nil
}

// Flush keeps streaming pulls streaming.
func (w *appErrorWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok && !w.held {
		f.Flush()
	}
}

// finish writes the held answer: 507 or 503 when the request met a full or
// failing storage, otherwise the App's own status and body without paths.
// The App has logged its error, path included, for the operator.
func (w *appErrorWriter) finish() {
	if !w.held {
		return
	}
	w.Header().Del("Content-Length")
	if answerStorageFault(w.ResponseWriter, storageFault(w.faults.worst.Load())) {
		return
	}
	if w.overflow || w.body.Len() == 0 {
		httpjson.Error(w.ResponseWriter, w.status, "UNKNOWN", "internal error; the replica's log has the details")
		return
	}
	w.ResponseWriter.WriteHeader(w.status)
	_, _ = w.ResponseWriter.Write(scrubPaths(w.body.Bytes()))
}

// answerStorageFault answers a push that met a full (507) or failing (503)
// storage, and reports whether it did.
func answerStorageFault(w http.ResponseWriter, fault storageFault) bool {
	switch fault {
	case faultFull:
		w.Header().Set("Retry-After", storageRetryAfter)
		httpjson.Error(w, http.StatusInsufficientStorage, "UNAVAILABLE",
			"the registry storage is full: push again once an administrator has freed space; pulls are served")
		return true
	case faultRaced:
		w.Header().Set("Retry-After", "1")
		httpjson.Error(w, http.StatusServiceUnavailable, "UNAVAILABLE",
			"garbage collection or a repository deletion removed a directory this push was writing to; push again")
		return true
	case faultFailing:
		w.Header().Set("Retry-After", storageRetryAfter)
		httpjson.Error(w, http.StatusServiceUnavailable, "UNAVAILABLE",
			"the registry storage cannot be written to (read-only or failing); try again later; pulls are served")
		return true
	}
	return false
}

// answerStorageErrors runs one request through the App with its storage
// faults recorded, and corrects the App's 5xx answer (see appErrorWriter).
func answerStorageErrors(app http.Handler, w http.ResponseWriter, r *http.Request) {
	faults := &requestFaults{}
	ew := &appErrorWriter{ResponseWriter: w, faults: faults}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// Only writes meet storage faults: reads (every pull) skip the
		// request copy that carrying them takes.
		r = r.WithContext(context.WithValue(r.Context(), requestFaultsKey{}, faults))
	}
	app.ServeHTTP(ew, r)
	faults.releaseBroken(context.WithoutCancel(r.Context()))
	ew.finish()
}
