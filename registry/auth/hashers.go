package auth

import (
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/crypto/bcrypt"
)

// hashers run bcrypt comparisons on OS threads of their own under Linux's
// SCHED_IDLE policy (nice 19 where that is refused), each with a Go
// scheduler slot (P) added for it. A login flood then costs serving nothing
// it can measure: the kernel runs the hashers only on CPU that serving
// leaves, a waking request preempts them at once, and serving keeps all the
// Ps it had. Measured on 2 cores with 32 clients sending wrong passwords
// (make security, docs/security.md).
type hashers struct {
	jobs chan hashJob
}

type hashJob struct {
	hash, pw []byte
	done     chan bool
}

// extraProcs guards the GOMAXPROCS raise: once per process, however many
// replicas (tests) it runs. Setting GOMAXPROCS stops the runtime following
// a container CPU limit that changes later; replicas are deployed without
// one, and the value read at start already counts it.
var extraProcs sync.Once

func startHashers(n int) *hashers {
	h := &hashers{jobs: make(chan hashJob)}
	extraProcs.Do(func() { runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + n) })
	for range n {
		go h.work()
	}
	return h
}

func (h *hashers) work() {
	// The thread stays this goroutine's for good: its nice value must not
	// pass on to other goroutines, so it is never unlocked (the runtime
	// ends it with the goroutine, which lives as long as the process).
	runtime.LockOSThread()
	lowerPriority()
	for j := range h.jobs {
		j.done <- bcrypt.CompareHashAndPassword(j.hash, j.pw) == nil
	}
}

// compare runs one comparison on a hasher; the caller holds a slot.
func (h *hashers) compare(hash []byte, pw string) bool {
	done := make(chan bool, 1)
	h.jobs <- hashJob{hash: hash, pw: []byte(pw), done: done}
	return <-done
}

// schedIdle is Linux's SCHED_IDLE scheduling policy.
const schedIdle = 5

// lowerPriority puts the calling thread under SCHED_IDLE, which needs no
// privilege, or else at nice 19.
func lowerPriority() {
	var param [1]int32 // struct sched_param: priority 0
	_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETSCHEDULER, uintptr(syscall.Gettid()), schedIdle, uintptr(unsafe.Pointer(&param[0])))
	if errno != 0 {
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 19)
	}
}
