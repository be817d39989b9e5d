//go:build linux

package journal

import (
	"os"
	"syscall"
)

// syncData makes f's data durable together with the metadata needed to
// read it back (size, block allocation), but not its timestamps. On a
// preallocated segment that is a data write and a cache flush, with no
// filesystem journal commit, which is what makes commits cheap.
func syncData(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
		}
		return nil
	}
}
