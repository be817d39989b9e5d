//go:build unix

package fleet

import "syscall"

// RaiseFileLimit raises the soft limit of open files (RLIMIT_NOFILE) to
// the hard limit and returns the limit now in force. Every meter holds
// one socket, so a fleet of 100,000 meters needs at least that many
// descriptors. The Go runtime already raises the soft limit at start on
// Unix (since Go 1.19); doing it here as well makes the behaviour
// explicit and returns the limit, so that a run can warn when it is below
// the fleet size. The hard limit itself is the administrator's
// (ulimit -Hn, limits.conf, systemd LimitNOFILE) and is never exceeded.
func RaiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
	}
	return uint64(l.Cur), nil
}
