package journal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Segments are preallocated: written full of zeros and synced before
// records go into them. Overwriting blocks that are already allocated and
// written changes no metadata that fdatasync must flush, so a commit costs
// a data write and a cache flush instead of a filesystem journal commit as
// well, which on ext4 is about half the latency and far steadier when
// other processes write to the same filesystem. A zero length field marks
// the end of the records in a segment, which is why records may not be
// empty.

var zeros [1 << 20]byte

var errStopped = errors.New("journal: closing")

// spare is a zero-filled segment-sized file waiting for the next roll.
type spare struct {
	f    *os.File
	path string
}

const sparePrefix, spareSuffix = "spare-", ".tmp"

// zeroFill writes zeros to f over [from, to) and makes them durable. It
// gives up with errStopped when stop is closed.
func zeroFill(f *os.File, from, to int64, stop <-chan struct{}) error {
	for pos := from; pos < to; {
		select {
		case <-stop:
			return errStopped
		default:
		}
		n := min(int64(len(zeros)), to-pos)
		if _, err := f.WriteAt(zeros[:n], pos); err != nil {
			return err
		}
		pos += n
	}
	return syncData(f)
}

// isZero reports whether f holds only zeros over [from, to).
func isZero(f *os.File, from, to int64) (bool, error) {
	buf := make([]byte, min(int64(len(zeros)), to-from))
	for pos := from; pos < to; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), to-pos)], pos)
		if !bytes.Equal(buf[:n], zeros[:n]) {
			return false, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		if n == 0 {
			return true, nil // the file is shorter than to
		}
		pos += int64(n)
	}
	return true, nil
}

// prepare makes a spare segment each time the committer asks for one
// (when the active segment is half full), and hands it over when the
// committer rolls. It runs only with sync on.
func (j *Journal) prepare() {
	defer close(j.spareExited)
	for n := 0; ; n++ {
		select {
		case <-j.spareReq:
		case <-j.closing:
			return
		}
		s, err := j.makeSpare(n)
		if errors.Is(err, errStopped) {
			return
		}
		if err != nil {
			j.log.Warn("journal could not prepare a segment; the next one will not be preallocated", "err", err)
			continue
		}
		j.spareBytes.Store(j.opts.SegmentBytes)
		select {
		case j.spareCh <- s:
		case <-j.closing:
			s.f.Close()
			os.Remove(s.path)
			j.spareBytes.Store(0)
			return
		}
	}
}

// makeSpare creates spare number n. Each spare has its own name, so that
// making the next one never touches a file the committer is renaming.
func (j *Journal) makeSpare(n int) (spare, error) {
	path := filepath.Join(j.opts.Dir, fmt.Sprintf("%s%d%s", sparePrefix, n, spareSuffix))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return spare{}, err
	}
	if err := zeroFill(f, 0, j.opts.SegmentBytes, j.closing); err != nil {
		f.Close()
		os.Remove(path)
		return spare{}, err
	}
	return spare{f: f, path: path}, nil
}

// removeSpares deletes spares left by an earlier process.
func removeSpares(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	for _, e := range entries {
		if name := e.Name(); strings.HasPrefix(name, sparePrefix) && strings.HasSuffix(name, spareSuffix) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("journal: remove stale spare: %w", err)
			}
		}
	}
	return nil
}
