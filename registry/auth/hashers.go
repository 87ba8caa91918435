package auth

import (
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/crypto/bcrypt"
)

// hashers run bcrypt comparisons on OS threads of their own at the lowest
// CPU priority (nice 19), each with a Go scheduler slot (P) added for it.
// A login flood then costs serving nothing it can measure: the kernel gives
// the hashers only the CPU that serving leaves, and serving keeps all the
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
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 19)
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
