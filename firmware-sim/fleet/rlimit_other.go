//go:build !unix

package fleet

import "errors"

// RaiseFileLimit is not supported on this platform.
func RaiseFileLimit() (uint64, error) {
	return 0, errors.New("raising the open file limit is not supported on this platform")
}
