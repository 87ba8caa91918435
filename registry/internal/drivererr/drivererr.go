// Package drivererr looks inside the errors of Distribution's storage
// drivers. driver.Error, which every driver's base wraps errors in, has no
// Unwrap, so errors.Is and errors.As stop at it; the filesystem driver also
// joins the errors of a write and of its cleanup.
package drivererr

import (
	"errors"
	"io/fs"
	"syscall"

	"github.com/distribution/distribution/v3/registry/storage/driver"
)

// Find returns the first error in err's chain, opening driver.Error, for
// which match is true.
func Find(err error, match func(error) bool) (error, bool) {
	for err != nil {
		if match(err) {
			return err, true
		}
		var de driver.Error
		if !errors.As(err, &de) {
			return nil, false
		}
		err = de.Detail
	}
	return nil, false
}

// Is is errors.Is through driver.Error.
func Is(err, target error) bool {
	_, ok := Find(err, func(e error) bool { return errors.Is(e, target) })
	return ok
}

// NotFound: the driver found no such path, however it said so (its
// PathNotFoundError, or an ENOENT from a rename or a write under a
// directory that went away).
func NotFound(err error) bool {
	_, ok := Find(err, func(e error) bool {
		var nf driver.PathNotFoundError
		return errors.As(e, &nf) || errors.Is(e, fs.ErrNotExist)
	})
	return ok
}

// Errno is the system error under err, 0 if there is none.
func Errno(err error) syscall.Errno {
	var errno syscall.Errno
	if _, ok := Find(err, func(e error) bool { return errors.As(e, &errno) }); ok {
		return errno
	}
	return 0
}
