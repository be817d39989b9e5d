package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// maxFreeBuf is the largest batch buffer the committer keeps for reuse; a
// bigger one (a burst of large records) is left to the garbage collector.
const maxFreeBuf = 4 << 20

// Journal is an append-only log of records with group commit.
//
// Concurrency: Append, AppendBatch, Checkpoint, Reader, Head, Checkpointed
// and Stats may be called from any number of goroutines at once. Appends
// are ordered by the offset they are given, which is decided when Append
// takes the record, not when it returns. One committer goroutine, started
// by Open and stopped by Close, owns the active segment file: it takes
// every record that has gathered since its last commit, writes them with
// one write and one sync, and then releases all of their Appends at once.
// Readers read the segment files themselves and never see a record before
// it is durable. Checkpoint calls are serialised among themselves.
//
// After a write or sync error the state of the file is unknown, so the
// journal refuses every later Append with that error; Close it and Open it
// again, which cuts whatever was torn.
type Journal struct {
	opts    Options
	log     *slog.Logger
	dir     *os.File // open directory, fsynced after creates and renames
	lock    *os.File
	granule int64 // see addMarkLocked

	head    atomic.Uint64                 // last durable offset
	ckpt    atomic.Uint64                 // last persisted checkpoint
	notify  atomic.Pointer[chan struct{}] // closed and replaced after every commit
	closing chan struct{}                 // closed by Close
	kick    chan struct{}                 // a batch has its first record
	exited  chan struct{}                 // the committer has returned
	records atomic.Uint64
	commits atomic.Uint64

	// Segment preallocation (see prealloc.go); off with NoSync.
	prealloc    bool
	spareReq    chan struct{}
	spareCh     chan spare
	spareExited chan struct{}
	spareBytes  atomic.Int64

	// Owned by the committer goroutine once Open has returned.
	active      *os.File
	activeBase  uint64
	activeSize  int64 // bytes of records in the active segment
	activeAlloc int64 // size of its file; zeros beyond activeSize
	spareWanted bool  // asked the preparer for a spare not yet taken

	ckptMu sync.Mutex // serialises Checkpoint and Close

	mu       sync.Mutex
	closed   bool
	failed   error // sticky write or fsync error
	next     uint64
	cur      *batch // records waiting for the committer
	freeBuf  []byte // a committed batch's buffer, for the next batch
	assigned int64  // running byte count including records in cur and in flight
	durable  int64  // running byte count of committed records
	ckptPos  int64  // running byte count at or below which everything is checkpointed
	marks    []mark
	segs     []segment // retained segments, oldest first; the last is active

	closeOnce sync.Once
	closeErr  error
}

// batch is the set of records one commit writes. Its Appends wait on done
// and then read err.
type batch struct {
	buf         []byte
	first, last uint64
	done        chan struct{}
	err         error
}

// mark says that everything up to byte end of the running byte count holds
// offsets up to last. Marks let Checkpoint turn an offset into a byte
// position for the budget without scanning segments.
type mark struct {
	last       uint64
	start, end int64
}

// Open opens the journal in opts.Dir, creating it if needed, and recovers
// it: a torn or corrupt tail of the last segment is cut (and logged as a
// warning with the number of bytes cut), leftover segments at or below the
// checkpoint are deleted, and the committer is started. With sync on, Open
// also preallocates the active segment unless it already is, which writes
// up to SegmentBytes of zeros (a fraction of a second for 64 MiB) the first
// time and after a cut.
func Open(opts Options) (*Journal, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, dirPerm); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	j := &Journal{
		opts:    opts,
		log:     opts.Logger,
		lock:    lock,
		closing: make(chan struct{}),
		kick:    make(chan struct{}, 1),
		exited:  make(chan struct{}),
		cur:     &batch{done: make(chan struct{})},

		prealloc:    !opts.NoSync,
		spareReq:    make(chan struct{}, 1),
		spareCh:     make(chan spare),
		spareExited: make(chan struct{}),
	}
	j.granule = opts.SegmentBytes / 64
	if opts.MaxBytes > 0 {
		j.granule = min(j.granule, opts.MaxBytes/256)
	}
	if err := j.recover(); err != nil {
		j.closeFiles()
		return nil, err
	}
	if j.prealloc && j.activeAlloc < opts.SegmentBytes {
		if err := zeroFill(j.active, j.activeAlloc, opts.SegmentBytes, nil); err != nil {
			j.closeFiles()
			return nil, fmt.Errorf("journal: preallocate %s: %w", segmentName(j.activeBase), err)
		}
		j.activeAlloc = opts.SegmentBytes
		j.segs[len(j.segs)-1].alloc = j.activeAlloc
	}
	ch := make(chan struct{})
	j.notify.Store(&ch)
	go j.run()
	if j.prealloc {
		go j.prepare()
	} else {
		close(j.spareExited)
	}
	return j, nil
}

// recover rebuilds the in-memory state from the directory.
func (j *Journal) recover() error {
	dir := j.opts.Dir
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.dir = d
	if err := os.Remove(filepath.Join(dir, checkpointTmp)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: remove stale checkpoint: %w", err)
	}
	if err := removeSpares(dir); err != nil {
		return err
	}
	ckpt, err := readCheckpoint(dir)
	if errors.Is(err, errBadCheckpoint) {
		// Replaying from the oldest segment is safe: the stores' writes
		// are idempotent.
		j.log.Warn("journal checkpoint unreadable, replaying from the oldest segment", "dir", dir)
		ckpt = 0
	} else if err != nil {
		return err
	}

	bases, err := listSegments(dir)
	if err != nil {
		return err
	}
	var (
		count     uint64
		end       int64
		alloc     int64
		tailMarks []mark // of the last segment, positions relative to it
	)
	for len(bases) > 0 {
		base := bases[len(bases)-1]
		j.active, count, end, alloc, tailMarks, err = j.recoverSegment(base)
		if err != nil {
			return err
		}
		if count > 0 || len(bases) == 1 {
			break
		}
		// An empty last segment (created just before a crash) says nothing
		// the one before it doesn't; continue in that one instead, so its
		// own tail is checked too.
		j.active.Close()
		j.active = nil
		if err := os.Remove(segmentPath(dir, base)); err != nil {
			return fmt.Errorf("journal: remove empty segment: %w", err)
		}
		bases = bases[:len(bases)-1]
	}
	if len(bases) == 0 {
		base := ckpt + 1
		f, err := os.OpenFile(segmentPath(dir, base), os.O_RDWR|os.O_CREATE|os.O_EXCL, filePerm)
		if err != nil {
			return fmt.Errorf("journal: create segment: %w", err)
		}
		j.active = f
		if err := j.syncDir(); err != nil {
			return err
		}
		bases = []uint64{base}
	}
	last := bases[len(bases)-1]
	head := last + count - 1

	var pos int64
	j.segs = make([]segment, len(bases))
	for i, base := range bases {
		size, fileSize := end, alloc
		if i < len(bases)-1 {
			fi, err := os.Stat(segmentPath(dir, base))
			if err != nil {
				return fmt.Errorf("journal: %w", err)
			}
			size, fileSize = fi.Size(), fi.Size()
		}
		j.segs[i] = segment{base: base, start: pos, size: size, alloc: fileSize}
		pos += size
	}
	// Segments are deleted only once wholly checkpointed, so everything
	// before the oldest one was confirmed even if the checkpoint file was
	// lost.
	if first := bases[0] - 1; ckpt < first {
		ckpt = first
	}
	if ckpt > head {
		// Only possible when records that were checkpointed did not reach
		// the disk (NoSync and a machine crash, or a damaged disk). Their
		// offsets will be given to new records, which must not be skipped.
		j.log.Warn("journal checkpoint is beyond the recovered log; lowering it", "checkpoint", ckpt, "head", head)
		ckpt = head
	}

	// The last segment was scanned, so its marks are as fine as those of
	// new commits. Older segments get one mark each, except that the one
	// holding the checkpoint is split at it, so that the budget after a
	// restart counts only what is above the checkpoint.
	for i, s := range j.segs {
		if i == len(j.segs)-1 {
			for _, m := range tailMarks {
				j.marks = append(j.marks, mark{last: m.last, start: s.start + m.start, end: s.start + m.end})
			}
			break
		}
		lastOff := j.segs[i+1].base - 1
		if s.size == 0 || lastOff < s.base {
			continue
		}
		if s.base <= ckpt && ckpt < lastOff {
			at, err := j.positionAfter(s.base, ckpt)
			if err != nil {
				return err
			}
			j.marks = append(j.marks, mark{last: ckpt, start: s.start, end: s.start + at})
			j.marks = append(j.marks, mark{last: lastOff, start: s.start + at, end: s.start + s.size})
			continue
		}
		j.marks = append(j.marks, mark{last: lastOff, start: s.start, end: s.start + s.size})
	}

	j.head.Store(head)
	j.ckpt.Store(ckpt)
	j.next = head + 1
	j.durable, j.assigned = pos, pos
	j.activeBase, j.activeSize, j.activeAlloc = last, end, alloc
	j.popMarksLocked(ckpt)
	j.removeSegments(j.trimLocked(ckpt))
	j.log.Info("journal opened", "dir", dir, "head", head, "checkpoint", ckpt, "segments", len(j.segs))
	return nil
}

// positionAfter returns the byte position in segment base just after
// record offset.
func (j *Journal) positionAfter(base, offset uint64) (int64, error) {
	f, err := os.Open(segmentPath(j.opts.Dir, base))
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	_, end, err := scanRecords(f, fi.Size(), offset-base+1, nil)
	if err != nil {
		return 0, fmt.Errorf("journal: scan %s: %w", segmentName(base), err)
	}
	return end, nil
}

// recoverSegment opens a segment for appending after cutting any torn or
// corrupt tail. It returns the number of intact records, their end, the
// file size after the cut, and marks for the records with positions
// relative to the segment. Zeros after the records are the unused part of
// a preallocated segment and are kept; anything else there is cut.
func (j *Journal) recoverSegment(base uint64) (*os.File, uint64, int64, int64, []mark, error) {
	f, err := os.OpenFile(segmentPath(j.opts.Dir, base), os.O_RDWR, 0)
	if err != nil {
		return nil, 0, 0, 0, nil, fmt.Errorf("journal: %w", err)
	}
	count, end, alloc, marks, err := j.cutTail(f, base)
	if err != nil {
		f.Close()
		return nil, 0, 0, 0, nil, err
	}
	return f, count, end, alloc, marks, nil
}

// cutTail scans the segment open in f, cuts anything after its intact
// records unless it is all zeros, and returns what recoverSegment does.
func (j *Journal) cutTail(f *os.File, base uint64) (count uint64, end, alloc int64, marks []mark, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, 0, nil, fmt.Errorf("journal: %w", err)
	}
	var prev int64
	off := base
	count, end, err = scanRecords(f, fi.Size(), math.MaxUint64, func(end int64) {
		marks = appendMark(marks, j.granule, off, prev, end)
		prev = end
		off++
	})
	if err != nil {
		return 0, 0, 0, nil, fmt.Errorf("journal: scan %s: %w", segmentName(base), err)
	}
	alloc = fi.Size()
	if end == alloc {
		return count, end, alloc, marks, nil
	}
	clean, err := isZero(f, end, alloc)
	if err != nil {
		return 0, 0, 0, nil, fmt.Errorf("journal: scan %s: %w", segmentName(base), err)
	}
	if clean {
		return count, end, alloc, marks, nil
	}
	if err := f.Truncate(end); err != nil {
		return 0, 0, 0, nil, fmt.Errorf("journal: cut tail of %s: %w", segmentName(base), err)
	}
	if !j.opts.NoSync {
		if err := f.Sync(); err != nil {
			return 0, 0, 0, nil, fmt.Errorf("journal: sync %s: %w", segmentName(base), err)
		}
	}
	j.log.Warn("journal cut a torn or corrupt tail",
		"segment", segmentName(base), "cut_bytes", alloc-end, "kept_bytes", end, "kept_records", count)
	return count, end, end, marks, nil
}

// Append writes data as one record and returns its offset once the record
// is durable (written and synced, unless NoSync). data is copied before
// Append blocks, so the caller may reuse it as soon as Append returns.
//
// Append returns ErrEmpty or ErrTooLarge for a record that can never be
// stored, ErrFull when the record would take the bytes not yet
// checkpointed past MaxBytes, ErrClosed after Close, and the journal's
// write error once it has failed; in all of these cases nothing was
// appended. If ctx ends while Append waits for the commit, Append returns
// ctx.Err() and the record may or may not become durable: it has an offset
// and a reader will see it if its commit succeeds.
func (j *Journal) Append(ctx context.Context, data []byte) (uint64, error) {
	if err := j.checkRecord(data); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	size := int64(headerSize + len(data))
	j.mu.Lock()
	if err := j.admitLocked(size); err != nil {
		j.mu.Unlock()
		return 0, err
	}
	b := j.cur
	first := len(b.buf) == 0
	off := j.next
	j.next++
	if first {
		b.first = off
	}
	b.last = off
	b.buf = appendRecord(b.buf, data)
	j.assigned += size
	j.mu.Unlock()
	if first {
		j.signal()
	}
	if err := j.await(ctx, b); err != nil {
		return 0, err
	}
	return off, nil
}

// AppendBatch appends records with consecutive offsets in one commit and
// returns the offset of the first. It is all or nothing for the checks
// Append makes (size, budget, state), and the records become durable
// together; but if the process dies before AppendBatch returns, a prefix of
// them may survive. An empty batch returns 0 and nil.
func (j *Journal) AppendBatch(ctx context.Context, records [][]byte) (uint64, error) {
	if len(records) == 0 {
		return 0, nil
	}
	var size int64
	for _, r := range records {
		if err := j.checkRecord(r); err != nil {
			return 0, err
		}
		size += int64(headerSize + len(r))
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	j.mu.Lock()
	if err := j.admitLocked(size); err != nil {
		j.mu.Unlock()
		return 0, err
	}
	b := j.cur
	first := len(b.buf) == 0
	off := j.next
	j.next += uint64(len(records))
	if first {
		b.first = off
	}
	b.last = j.next - 1
	for _, r := range records {
		b.buf = appendRecord(b.buf, r)
	}
	j.assigned += size
	j.mu.Unlock()
	if first {
		j.signal()
	}
	if err := j.await(ctx, b); err != nil {
		return 0, err
	}
	return off, nil
}

func (j *Journal) checkRecord(data []byte) error {
	if len(data) == 0 {
		return ErrEmpty
	}
	if len(data) > j.opts.MaxRecordBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), j.opts.MaxRecordBytes)
	}
	return nil
}

// admitLocked decides whether size more bytes may be queued.
func (j *Journal) admitLocked(size int64) error {
	if j.closed {
		return ErrClosed
	}
	if j.failed != nil {
		return j.failed
	}
	if j.opts.MaxBytes > 0 && j.assigned-j.ckptPos+size > j.opts.MaxBytes {
		return ErrFull
	}
	return nil
}

// signal wakes the committer. Only the first record of a batch signals:
// the committer takes the whole batch when it wakes, so later records of
// the same batch ride along.
func (j *Journal) signal() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

func (j *Journal) await(ctx context.Context, b *batch) error {
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		select {
		case <-b.done: // committed meanwhile: report the truth
			return b.err
		default:
			return ctx.Err()
		}
	}
}

// run is the committer: it takes the current batch, commits it, releases
// its Appends, and repeats. While it is writing and syncing, new Appends
// gather in the next batch, which is what makes the commits grow with the
// load. It returns when Close has been called and nothing is left.
func (j *Journal) run() {
	defer close(j.exited)
	var delay *time.Timer
	for {
		select {
		case <-j.kick:
		case <-j.closing:
		}
		if d := j.opts.MaxBatchDelay; d > 0 {
			if delay == nil {
				delay = time.NewTimer(d)
			} else {
				delay.Reset(d)
			}
			select {
			case <-delay.C:
			case <-j.closing:
				delay.Stop()
			}
		}
		j.mu.Lock()
		b := j.cur
		if len(b.buf) == 0 {
			stop := j.closed
			j.mu.Unlock()
			if stop {
				return
			}
			continue
		}
		j.cur = &batch{buf: j.freeBuf, done: make(chan struct{})}
		j.freeBuf = nil
		err := j.failed
		j.mu.Unlock()

		if err == nil {
			err = j.write(b)
		}
		j.finish(b, err)
	}
}

// write puts one batch on disk, starting a new segment first if the batch
// would take the active one past SegmentBytes.
func (j *Journal) write(b *batch) error {
	n := int64(len(b.buf))
	if j.activeSize > 0 && j.activeSize+n > j.opts.SegmentBytes {
		if err := j.roll(b.first); err != nil {
			return err
		}
	}
	if _, err := j.active.WriteAt(b.buf, j.activeSize); err != nil {
		return fmt.Errorf("journal: write %s: %w", segmentName(j.activeBase), err)
	}
	if !j.opts.NoSync {
		if err := syncData(j.active); err != nil {
			return fmt.Errorf("journal: sync %s: %w", segmentName(j.activeBase), err)
		}
	}
	j.activeSize += n
	j.activeAlloc = max(j.activeAlloc, j.activeSize)
	if j.prealloc && !j.spareWanted && j.activeSize >= j.opts.SegmentBytes/2 {
		j.spareWanted = true
		select {
		case j.spareReq <- struct{}{}:
		default:
		}
	}
	return nil
}

// roll starts segment base, from the spare if one is ready. The previous
// segment was synced by the commit that wrote its last record, so it is
// complete on disk before the new one exists.
func (j *Journal) roll(base uint64) error {
	path := segmentPath(j.opts.Dir, base)
	var (
		f     *os.File
		alloc int64
	)
	select {
	case s := <-j.spareCh:
		j.spareBytes.Store(0)
		if err := os.Rename(s.path, path); err != nil {
			s.f.Close()
			os.Remove(s.path)
			j.log.Warn("journal could not use a prepared segment", "err", err)
		} else {
			f, alloc = s.f, j.opts.SegmentBytes
		}
	default:
		if j.prealloc {
			j.log.Warn("journal segment not prepared in time; starting one that is not preallocated",
				"segment", segmentName(base))
		}
	}
	// Ask again when the new segment is half full. A spare still being
	// made for this roll will then serve the next one.
	j.spareWanted = false
	if f == nil {
		var err error
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, filePerm)
		if err != nil {
			return fmt.Errorf("journal: create segment: %w", err)
		}
	}
	if err := j.syncDir(); err != nil {
		f.Close()
		return err
	}
	old, oldBase := j.active, j.activeBase
	if j.activeAlloc > j.activeSize {
		// Give back the preallocated space the last batch did not fit in.
		// Not synced: if the cut is lost, readers skip zeros anyway.
		if err := old.Truncate(j.activeSize); err != nil {
			j.log.Warn("journal could not trim a full segment", "segment", segmentName(oldBase), "err", err)
		}
	}
	j.mu.Lock()
	j.segs[len(j.segs)-1].alloc = j.activeSize
	j.segs = append(j.segs, segment{base: base, start: j.durable, alloc: alloc})
	j.mu.Unlock()
	j.active, j.activeBase, j.activeSize, j.activeAlloc = f, base, 0, alloc
	if err := old.Close(); err != nil {
		// Its data is already durable; nothing is lost.
		j.log.Warn("journal could not close a full segment", "segment", segmentName(oldBase), "err", err)
	}
	return nil
}

// finish publishes a commit to readers and releases the batch's Appends.
func (j *Journal) finish(b *batch, err error) {
	if err != nil {
		j.mu.Lock()
		first := j.failed == nil
		if first {
			j.failed = err
		}
		j.mu.Unlock()
		if first {
			j.log.Error("journal failed; appends are refused until it is reopened", "err", err)
		}
		b.err = err
		close(b.done)
		return
	}
	n := int64(len(b.buf))
	j.mu.Lock()
	j.durable += n
	j.segs[len(j.segs)-1].size = j.activeSize
	j.segs[len(j.segs)-1].alloc = j.activeAlloc
	j.addMarkLocked(b.last, j.durable-n, j.durable)
	if cap(b.buf) <= maxFreeBuf {
		j.freeBuf = b.buf[:0]
	}
	j.mu.Unlock()
	j.records.Add(b.last - b.first + 1)
	j.commits.Add(1)
	// Head before notify: a reader loads the channel before it checks
	// Head, so it either sees the new head or gets woken.
	j.head.Store(b.last)
	ch := make(chan struct{})
	close(*j.notify.Swap(&ch))
	close(b.done)
}

// addMarkLocked records that bytes [start, end) hold offsets up to last.
func (j *Journal) addMarkLocked(last uint64, start, end int64) {
	j.marks = appendMark(j.marks, j.granule, last, start, end)
}

// appendMark adds to marks that bytes [start, end) hold offsets up to last.
// It extends the previous mark while that spans at most granule bytes, so
// there are at most a few hundred marks per segment (or per MaxBytes)
// however small the commits. The cost is that PendingBytes, and hence the
// budget, may count up to about one granule of already checkpointed bytes.
func appendMark(marks []mark, granule int64, last uint64, start, end int64) []mark {
	if n := len(marks); n > 0 && end-marks[n-1].start <= granule {
		marks[n-1].last, marks[n-1].end = last, end
		return marks
	}
	return append(marks, mark{last: last, start: start, end: end})
}

// popMarksLocked drops the marks wholly at or below offset c and moves
// ckptPos to the end of the last of them.
func (j *Journal) popMarksLocked(c uint64) {
	i := 0
	for i < len(j.marks) && j.marks[i].last <= c {
		j.ckptPos = j.marks[i].end
		i++
	}
	if i > 0 {
		j.marks = append(j.marks[:0], j.marks[i:]...)
	}
}

// trimLocked removes from the retained list the segments whose records are
// all at or below c, never the active one, and returns them.
func (j *Journal) trimLocked(c uint64) []segment {
	n := 0
	for n+1 < len(j.segs) && j.segs[n+1].base-1 <= c {
		n++
	}
	if n == 0 {
		return nil
	}
	drop := append([]segment(nil), j.segs[:n]...)
	j.segs = append(j.segs[:0], j.segs[n:]...)
	return drop
}

// removeSegments deletes trimmed segment files. A file that cannot be
// removed is only wasted space: Open deletes it next time, since it is
// wholly below the persisted checkpoint.
func (j *Journal) removeSegments(segs []segment) {
	for _, s := range segs {
		if err := os.Remove(segmentPath(j.opts.Dir, s.base)); err != nil && !errors.Is(err, os.ErrNotExist) {
			j.log.Warn("journal could not remove a checkpointed segment", "segment", segmentName(s.base), "err", err)
		}
	}
}

// Checkpoint records that the stores have confirmed every record at or
// below offset. When it returns nil the checkpoint is on disk (temporary
// file, fsync, rename, fsync of the directory), the budget it frees is
// available to Append, and the segments wholly at or below it are deleted.
//
// A checkpoint never moves backwards: an offset at or below the current
// one returns nil at once without I/O, so calling Checkpoint often with an
// unchanged offset is free. An offset beyond Head is an error: the stores
// cannot have confirmed a record that is not yet durable.
func (j *Journal) Checkpoint(offset uint64) error {
	j.ckptMu.Lock()
	defer j.ckptMu.Unlock()
	j.mu.Lock()
	closed := j.closed
	j.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if offset <= j.ckpt.Load() {
		return nil
	}
	if h := j.head.Load(); offset > h {
		return fmt.Errorf("journal: checkpoint %d is beyond the last durable offset %d", offset, h)
	}
	if err := writeCheckpoint(j.dir, j.opts.Dir, offset, !j.opts.NoSync); err != nil {
		return fmt.Errorf("journal: persist checkpoint %d: %w", offset, err)
	}
	j.mu.Lock()
	j.ckpt.Store(offset)
	j.popMarksLocked(offset)
	drop := j.trimLocked(offset)
	j.mu.Unlock()
	j.removeSegments(drop)
	return nil
}

// Checkpointed returns the last persisted checkpoint (0 if none).
func (j *Journal) Checkpointed() uint64 { return j.ckpt.Load() }

// Head returns the offset of the last durable record (0 if none).
func (j *Journal) Head() uint64 { return j.head.Load() }

// Stats is a snapshot for metrics.
type Stats struct {
	Segments     int    // segment files on disk
	DiskBytes    int64  // size of those files, preallocated space included
	SpareBytes   int64  // a segment prepared for the next roll
	PendingBytes int64  // bytes above the checkpoint, queued ones included (what MaxBytes limits)
	Oldest       uint64 // offset of the first record on disk
	Head         uint64 // last durable offset
	Checkpoint   uint64 // last persisted checkpoint
	Records      uint64 // records committed since Open
	Commits      uint64 // commits (write and sync) since Open
}

// Stats returns a snapshot of the journal's size and progress.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	var disk int64
	for _, s := range j.segs {
		disk += s.alloc
	}
	return Stats{
		Segments:     len(j.segs),
		DiskBytes:    disk,
		SpareBytes:   j.spareBytes.Load(),
		PendingBytes: j.assigned - j.ckptPos,
		Oldest:       j.segs[0].base,
		Head:         j.head.Load(),
		Checkpoint:   j.ckpt.Load(),
		Records:      j.records.Load(),
		Commits:      j.commits.Load(),
	}
}

// segmentFor returns the base of the retained segment that holds (or will
// hold) offset, and false if that segment has been trimmed.
func (j *Journal) segmentFor(offset uint64) (uint64, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	i := sort.Search(len(j.segs), func(i int) bool { return j.segs[i].base > offset })
	if i == 0 {
		return 0, false
	}
	return j.segs[i-1].base, true
}

func (j *Journal) syncDir() error {
	if j.opts.NoSync {
		return nil
	}
	if err := j.dir.Sync(); err != nil {
		return fmt.Errorf("journal: sync directory: %w", err)
	}
	return nil
}

// Close stops taking appends, waits for the ones already taken to be
// committed (or failed) and for a running Checkpoint, fsyncs and closes the
// files and releases the directory. Readers then return ErrClosed. Calling
// Close again returns the first call's result.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		j.ckptMu.Lock()
		defer j.ckptMu.Unlock()
		j.mu.Lock()
		j.closed = true
		j.mu.Unlock()
		close(j.closing)
		<-j.exited
		<-j.spareExited
		var errs []error
		if err := j.active.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("journal: sync %s: %w", segmentName(j.activeBase), err))
		}
		errs = append(errs, j.closeFiles())
		j.closeErr = errors.Join(errs...)
	})
	return j.closeErr
}

func (j *Journal) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{j.active, j.dir, j.lock} {
		if f != nil {
			if err := f.Close(); err != nil {
				errs = append(errs, fmt.Errorf("journal: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}
