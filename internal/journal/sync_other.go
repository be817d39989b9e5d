//go:build !linux

package journal

import "os"

// syncData makes f's data durable; without fdatasync that is a full fsync.
func syncData(f *os.File) error { return f.Sync() }
