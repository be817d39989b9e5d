package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// readBufSize is a reader's initial buffer; it grows for larger records.
const readBufSize = 128 << 10

// Reader reads records in offset order from the segment files, replaying
// what is on disk and then following new commits, with one code path for
// both. It returns only durable records. A Reader is not safe for
// concurrent use; use one per goroutine. Any number of Readers may exist.
type Reader struct {
	j    *Journal
	from uint64 // records below from are skipped
	next uint64 // offset of the record at bufPos+off
	base uint64 // segment being read
	f    *os.File

	buf     []byte // file bytes [bufPos, bufPos+len(buf))
	bufPos  int64
	off     int    // position of record next in buf
	bufHead uint64 // Head when buf was read: records up to it are whole in the file
	eof     bool   // buf reached the end of the file when it was read
}

// Reader returns a reader whose first record is the one at offset from (1
// is the first offset; 0 is treated as 1). from may be beyond Head: Next
// then waits for it. Records below the oldest retained segment are gone,
// so a from below Stats().Oldest returns ErrTrimmed; Checkpointed()+1 is
// always available.
//
// Starting in the middle of a segment reads and skips the records in front
// of from in that segment, which costs up to one segment read from the
// page cache or disk.
func (j *Journal) Reader(from uint64) (*Reader, error) {
	from = max(from, 1)
	j.mu.Lock()
	closed := j.closed
	j.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	base, ok := j.segmentFor(from)
	if !ok {
		return nil, fmt.Errorf("%w: offset %d", ErrTrimmed, from)
	}
	f, err := os.Open(segmentPath(j.opts.Dir, base))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: offset %d", ErrTrimmed, from)
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &Reader{j: j, from: from, next: base, base: base, f: f, buf: make([]byte, 0, readBufSize)}, nil
}

// Next returns the next record, waiting until it is durable. It returns
// ctx.Err() if ctx ends while waiting, ErrClosed once the journal or the
// reader is closed, ErrTrimmed if a checkpoint deleted the segment the
// reader needs next, and a *CorruptError for a damaged record.
//
// data points into the reader's buffer: it is valid only until the next
// call to Next or Close. Copy it to keep it.
func (r *Reader) Next(ctx context.Context) (offset uint64, data []byte, err error) {
	for {
		if r.f == nil {
			return 0, nil, ErrClosed
		}
		if err := r.wait(ctx); err != nil {
			return 0, nil, err
		}
		offset, data, err := r.read()
		if err != nil {
			return 0, nil, err
		}
		if offset >= r.from {
			return offset, data, nil
		}
	}
}

// wait returns once record r.next is durable.
func (r *Reader) wait(ctx context.Context) error {
	j := r.j
	for {
		select {
		case <-j.closing:
			return ErrClosed
		default:
		}
		ch := j.notify.Load()
		if r.next <= j.head.Load() {
			return nil
		}
		select {
		case <-*ch:
		case <-j.closing:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// read returns record r.next, which must be durable.
func (r *Reader) read() (uint64, []byte, error) {
	for {
		if r.next > r.bufHead {
			// buf was read before this record was durable.
			if err := r.fill(headerSize); err != nil {
				return 0, nil, err
			}
			continue
		}
		avail := r.buf[r.off:]
		want := headerSize
		if len(avail) >= headerSize {
			n := binary.LittleEndian.Uint32(avail)
			if n == 0 {
				// The unused, zero-filled end of a preallocated segment:
				// a durable record beyond it is in the next segment.
				if err := r.nextSegment(); err != nil {
					return 0, nil, err
				}
				continue
			}
			if n > maxRecordLimit {
				return 0, nil, r.corrupt(fmt.Sprintf("impossible length %d", n))
			}
			want = headerSize + int(n)
			if len(avail) >= want {
				data := avail[headerSize:want]
				if crc32.Checksum(data, castagnoli) != binary.LittleEndian.Uint32(avail[4:]) {
					return 0, nil, r.corrupt("checksum mismatch")
				}
				off := r.next
				r.next++
				r.off += want
				return off, data, nil
			}
		}
		if !r.eof {
			if err := r.fill(want); err != nil {
				return 0, nil, err
			}
			continue
		}
		if len(avail) > 0 {
			return 0, nil, r.corrupt("segment ends inside a durable record")
		}
		// This segment is done; a durable record beyond it is in the next.
		if err := r.nextSegment(); err != nil {
			return 0, nil, err
		}
	}
}

// fill reads the file from the position of record r.next, at least want
// bytes unless the file ends first.
func (r *Reader) fill(want int) error {
	pos := r.bufPos + int64(r.off)
	if want > cap(r.buf) {
		// Only a durable header asks for this much, so the bytes must be
		// there; check before allocating on the word of a length field.
		fi, err := r.f.Stat()
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		if pos+int64(want) > fi.Size() {
			return r.corrupt("segment ends inside a durable record")
		}
		r.buf = make([]byte, 0, want)
	}
	// Load the head before reading: every record up to it is then whole
	// in what we read.
	r.bufHead = r.j.head.Load()
	n, err := r.f.ReadAt(r.buf[:cap(r.buf)], pos)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("journal: read %s: %w", segmentName(r.base), err)
	}
	r.buf, r.bufPos, r.off = r.buf[:n], pos, 0
	r.eof = n < cap(r.buf)
	return nil
}

func (r *Reader) nextSegment() error {
	base, ok := r.j.segmentFor(r.next)
	if !ok {
		return fmt.Errorf("%w: offset %d", ErrTrimmed, r.next)
	}
	if base != r.next || base == r.base {
		return r.corrupt(fmt.Sprintf("segment ends before offset %d", r.next))
	}
	f, err := os.Open(segmentPath(r.j.opts.Dir, base))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: offset %d", ErrTrimmed, r.next)
	}
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	r.f.Close()
	r.f, r.base = f, base
	r.buf, r.bufPos, r.off, r.bufHead, r.eof = r.buf[:0], 0, 0, 0, false
	return nil
}

func (r *Reader) corrupt(reason string) error {
	return &CorruptError{Segment: segmentName(r.base), Pos: r.bufPos + int64(r.off), Offset: r.next, Reason: reason}
}

// Close releases the reader's file. It does not affect the journal or
// other readers.
func (r *Reader) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
