package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordSize is the payload size used throughout, about one meter message.
const recordSize = 200

// payload returns a recognisable recordSize-byte record for key.
func payload(key string) []byte {
	b := bytes.Repeat([]byte{'.'}, recordSize)
	copy(b, key)
	return b
}

func rec(i int) []byte { return payload(fmt.Sprintf("record-%06d", i)) }

// logBuffer collects log output so tests can assert on warnings.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// testSegmentBytes keeps tests from zero-filling 64 MiB segments.
const testSegmentBytes = 1 << 20

// open opens a journal in opts.Dir (a fresh temporary directory if empty)
// and closes it when the test ends.
func open(t testing.TB, opts Options) *Journal {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = testSegmentBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	j, err := Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func appendN(t testing.TB, j *Journal, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		off, err := j.Append(t.Context(), rec(i))
		require.NoError(t, err)
		require.Equal(t, uint64(i), off)
	}
}

type entry struct {
	off  uint64
	data []byte
}

// readN reads n records from offset from, copying each.
func readN(t testing.TB, j *Journal, from uint64, n int) []entry {
	t.Helper()
	r, err := j.Reader(from)
	require.NoError(t, err)
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out := make([]entry, 0, n)
	for range n {
		off, data, err := r.Next(ctx)
		require.NoError(t, err)
		out = append(out, entry{off, bytes.Clone(data)})
	}
	return out
}

// requireRecords checks that records first..last are readable in order with
// the contents rec gives them.
func requireRecords(t testing.TB, j *Journal, first, last int) {
	t.Helper()
	got := readN(t, j, uint64(first), last-first+1)
	for i, e := range got {
		require.Equal(t, uint64(first+i), e.off)
		require.Equal(t, rec(first+i), e.data, "offset %d", e.off)
	}
}

// requireNoMore checks that nothing is readable beyond head.
func requireNoMore(t testing.TB, j *Journal, from uint64) {
	t.Helper()
	r, err := j.Reader(from)
	require.NoError(t, err)
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	for {
		off, _, err := r.Next(ctx)
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			return
		}
		require.Less(t, off, from, "record beyond head")
	}
}

func segmentFiles(t testing.TB, dir string) []uint64 {
	t.Helper()
	bases, err := listSegments(dir)
	require.NoError(t, err)
	return bases
}

func lastSegment(t testing.TB, dir string) string {
	t.Helper()
	bases := segmentFiles(t, dir)
	require.NotEmpty(t, bases)
	return segmentPath(dir, bases[len(bases)-1])
}

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		errs []string
	}{
		{"defaults", Options{Dir: "x"}, nil},
		{"no dir", Options{}, []string{"Dir is required"}},
		{"negative sizes", Options{Dir: "x", SegmentBytes: -1, MaxBytes: -1, MaxRecordBytes: -1, MaxBatchDelay: -time.Second},
			[]string{"SegmentBytes", "MaxBytes", "MaxRecordBytes", "MaxBatchDelay"}},
		{"record too large for limit", Options{Dir: "x", MaxRecordBytes: 2 << 30}, []string{"MaxRecordBytes"}},
		{"budget below one record", Options{Dir: "x", MaxBytes: 100, MaxRecordBytes: 200}, []string{"cannot hold one record"}},
		{"budget holds one record", Options{Dir: "x", MaxBytes: 208, MaxRecordBytes: 200}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.opts.Validate()
			if c.errs == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range c.errs {
				assert.ErrorContains(t, err, want)
			}
		})
	}
}

func TestAppendAndReadBack(t *testing.T) {
	j := open(t, Options{})
	assert.Equal(t, uint64(0), j.Head())
	appendN(t, j, 1, 100)
	assert.Equal(t, uint64(100), j.Head())
	requireRecords(t, j, 1, 100)
	requireRecords(t, j, 37, 100)
	requireNoMore(t, j, 101)

	s := j.Stats()
	assert.Equal(t, 1, s.Segments)
	assert.Equal(t, int64(testSegmentBytes), s.DiskBytes, "preallocated")
	assert.Equal(t, int64(100*(headerSize+recordSize)), s.PendingBytes)
	assert.Equal(t, uint64(1), s.Oldest)
	assert.Equal(t, uint64(100), s.Records)
	assert.Equal(t, uint64(100), s.Commits, "sequential appends commit one by one")
}

func TestAppendBatch(t *testing.T) {
	j := open(t, Options{})
	appendN(t, j, 1, 3)
	first, err := j.AppendBatch(t.Context(), [][]byte{rec(4), rec(5), rec(6)})
	require.NoError(t, err)
	assert.Equal(t, uint64(4), first)
	assert.Equal(t, uint64(6), j.Head())
	appendN(t, j, 7, 1)
	requireRecords(t, j, 1, 7)

	first, err = j.AppendBatch(t.Context(), nil)
	require.NoError(t, err)
	assert.Zero(t, first)
}

func TestAppendRejectsBadRecords(t *testing.T) {
	j := open(t, Options{MaxRecordBytes: 300})
	_, err := j.Append(t.Context(), nil)
	require.ErrorIs(t, err, ErrEmpty)
	_, err = j.Append(t.Context(), make([]byte, 301))
	require.ErrorIs(t, err, ErrTooLarge)
	_, err = j.AppendBatch(t.Context(), [][]byte{rec(1), {}})
	require.ErrorIs(t, err, ErrEmpty)
	assert.Equal(t, uint64(0), j.Head(), "a rejected batch appends nothing")

	off, err := j.Append(t.Context(), make([]byte, 300))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), off)
}

func TestAppendWithEndedContext(t *testing.T) {
	j := open(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := j.Append(ctx, rec(1))
	require.ErrorIs(t, err, context.Canceled)
	_, err = j.AppendBatch(ctx, [][]byte{rec(1)})
	require.ErrorIs(t, err, context.Canceled)
	appendN(t, j, 1, 1) // nothing took an offset
}

func TestConcurrentAppenders(t *testing.T) {
	const workers, each = 64, 100
	j := open(t, Options{SegmentBytes: 64 << 10})
	var (
		mu   sync.Mutex
		sent = map[uint64][]byte{}
		wg   sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				data := payload(fmt.Sprintf("w%02d-%04d", w, i))
				off, err := j.Append(t.Context(), data)
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				_, dup := sent[off]
				sent[off] = data
				mu.Unlock()
				assert.False(t, dup, "offset %d given twice", off)
			}
		})
	}
	wg.Wait()

	n := workers * each
	require.Len(t, sent, n)
	require.Equal(t, uint64(n), j.Head())
	for i, e := range readN(t, j, 1, n) {
		require.Equal(t, uint64(i+1), e.off)
		require.Equal(t, sent[e.off], e.data, "offset %d", e.off)
	}
	s := j.Stats()
	assert.Greater(t, s.Segments, 1)
	assert.Less(t, s.Commits, s.Records, "concurrent appends share commits")
	t.Logf("%d records in %d commits (%.1f per fsync), %d segments", s.Records, s.Commits, float64(s.Records)/float64(s.Commits), s.Segments)
}

func TestMaxBatchDelayGathers(t *testing.T) {
	j := open(t, Options{MaxBatchDelay: 20 * time.Millisecond})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			_, err := j.Append(t.Context(), rec(i))
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	s := j.Stats()
	assert.Equal(t, uint64(16), s.Records)
	assert.LessOrEqual(t, s.Commits, uint64(4))
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 4 << 10}
	j := open(t, opts)
	appendN(t, j, 1, 300)
	require.NoError(t, j.Close())
	require.NoError(t, j.Close(), "Close twice")

	j = open(t, opts)
	assert.Equal(t, uint64(300), j.Head())
	assert.Greater(t, j.Stats().Segments, 10)
	requireRecords(t, j, 1, 300)
	appendN(t, j, 301, 20)
	require.NoError(t, j.Close())

	j = open(t, opts)
	requireRecords(t, j, 1, 320)
	requireNoMore(t, j, 321)
}

// TestTornTailIsCut damages the end of the last segment the ways a crash
// can and checks that Open keeps exactly the intact records before it.
func TestTornTailIsCut(t *testing.T) {
	const frame = headerSize + recordSize
	cases := []struct {
		name     string
		damage   func(t *testing.T, path string)
		keep     int // records that survive
		cutBytes int // 0: nothing to cut, no warning
	}{
		{"cut inside payload", truncateBy(10), 9, frame - 10},
		{"cut inside header", truncateBy(frame - 3), 9, 3},
		{"garbage appended", appendBytes(bytes.Repeat([]byte{0xA5, 0x17, 0x00, 0x42}, 25)), 10, 100},
		{"length past end", appendBytes([]byte{0xE8, 0x03, 0, 0, 1, 2, 3, 4, 'x', 'y'}), 10, 10},
		{"whole record with wrong checksum", appendBytes(appendRecord(nil, rec(11))[:frame-1], 'X'), 10, frame},
		{"zeros after the records", appendBytes(make([]byte, 4096)), 10, 0},
		{"torn write into zeros", appendBytes(appendRecord(nil, rec(11))[:100], make([]byte, 4000)...), 10, 4100},
		{"garbage after zeros", appendBytes(make([]byte, 300), 'g', 'a', 'r', 'b'), 10, 304},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			// Without sync nothing is preallocated, so the file ends where
			// the records do and the damage lands right after them.
			j := open(t, Options{Dir: dir, NoSync: true})
			appendN(t, j, 1, 10)
			require.NoError(t, j.Close())

			c.damage(t, lastSegment(t, dir))

			var logs logBuffer
			j = open(t, Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if c.cutBytes > 0 {
				assert.Contains(t, logs.String(), fmt.Sprintf("cut_bytes=%d ", c.cutBytes))
			} else {
				assert.NotContains(t, logs.String(), "cut")
			}
			assert.Equal(t, uint64(c.keep), j.Head())
			requireRecords(t, j, 1, c.keep)
			appendN(t, j, c.keep+1, 5)
			requireRecords(t, j, 1, c.keep+5)
			require.NoError(t, j.Close())

			logs = logBuffer{}
			j = open(t, Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			assert.NotContains(t, logs.String(), "level=WARN")
			requireRecords(t, j, 1, c.keep+5)
			requireNoMore(t, j, uint64(c.keep+6))
		})
	}
}

func truncateBy(n int64) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.NoError(t, os.Truncate(path, fi.Size()-n))
	}
}

func appendBytes(b []byte, more ...byte) func(*testing.T, string) {
	b = append(bytes.Clone(b), more...)
	return func(t *testing.T, path string) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		require.NoError(t, err)
		_, err = f.Write(b)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
}

// flipByte corrupts one byte of a file in place.
func flipByte(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, at)
	require.NoError(t, err)
	b[0] ^= 0xFF
	_, err = f.WriteAt(b, at)
	require.NoError(t, err)
}

func TestCorruptionInLastSegmentCutsFromThere(t *testing.T) {
	const frame = headerSize + recordSize
	dir := t.TempDir()
	j := open(t, Options{Dir: dir})
	appendN(t, j, 1, 10)
	require.NoError(t, j.Close())

	// A payload byte of record 5: records 5..10 go, and the preallocated
	// zeros after them with the file.
	flipByte(t, lastSegment(t, dir), 4*frame+headerSize+50)

	var logs logBuffer
	j = open(t, Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	assert.Contains(t, logs.String(), fmt.Sprintf("cut_bytes=%d ", testSegmentBytes-4*frame))
	assert.Equal(t, uint64(4), j.Head())
	requireRecords(t, j, 1, 4)
	appendN(t, j, 5, 3)
	requireRecords(t, j, 1, 7)
	require.NoError(t, j.Close())

	fi, err := os.Stat(lastSegment(t, dir))
	require.NoError(t, err)
	assert.Equal(t, int64(testSegmentBytes), fi.Size(), "preallocated again")
	j = open(t, Options{Dir: dir})
	requireRecords(t, j, 1, 7)
	requireNoMore(t, j, 8)
}

func TestCorruptionBehindTheTailIsReported(t *testing.T) {
	const frame = headerSize + recordSize
	dir := t.TempDir()
	j := open(t, Options{Dir: dir, SegmentBytes: 5 * frame})
	appendN(t, j, 1, 12)
	require.NoError(t, j.Close())
	bases := segmentFiles(t, dir)
	require.Equal(t, []uint64{1, 6, 11}, bases)

	flipByte(t, segmentPath(dir, 6), 2*frame+headerSize) // record 8
	j = open(t, Options{Dir: dir})
	assert.Equal(t, uint64(12), j.Head(), "only the last segment is scanned on open")

	r, err := j.Reader(1)
	require.NoError(t, err)
	defer r.Close()
	for want := uint64(1); want < 8; want++ {
		off, _, err := r.Next(t.Context())
		require.NoError(t, err)
		require.Equal(t, want, off)
	}
	_, _, err = r.Next(t.Context())
	var ce *CorruptError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, uint64(8), ce.Offset)
	assert.Equal(t, segmentName(6), ce.Segment)
	assert.Equal(t, int64(2*frame), ce.Pos)
}

func TestEmptyLastSegmentIsDropped(t *testing.T) {
	const frame = headerSize + recordSize
	dir := t.TempDir()
	j := open(t, Options{Dir: dir, NoSync: true})
	appendN(t, j, 1, 5)
	require.NoError(t, j.Close())
	// As if we died right after starting segment 6, and segment 1 had
	// lost its last record.
	require.NoError(t, os.WriteFile(segmentPath(dir, 6), nil, filePerm))
	truncateBy(frame)(t, segmentPath(dir, 1))

	j = open(t, Options{Dir: dir})
	assert.Equal(t, uint64(4), j.Head())
	assert.Equal(t, []uint64{1}, segmentFiles(t, dir))
	appendN(t, j, 5, 3)
	requireRecords(t, j, 1, 7)
}

func TestPreallocatedSegments(t *testing.T) {
	const frame = headerSize + recordSize
	const seg = 20*frame + 100 // 20 records and a bit
	dir := t.TempDir()
	var logs logBuffer
	opts := Options{Dir: dir, SegmentBytes: seg, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	size := func(base uint64) int64 {
		fi, err := os.Stat(segmentPath(dir, base))
		require.NoError(t, err)
		return fi.Size()
	}

	j := open(t, opts)
	assert.Equal(t, int64(seg), size(1), "the active segment is preallocated by Open")
	appendN(t, j, 1, 11)
	// Half full: the next segment is prepared in the background.
	require.Eventually(t, func() bool { return j.Stats().SpareBytes == seg }, 10*time.Second, time.Millisecond)
	appendN(t, j, 12, 14) // record 21 does not fit and rolls into the spare
	assert.Equal(t, []uint64{1, 21}, segmentFiles(t, dir))
	assert.Equal(t, int64(20*frame), size(1), "a full segment gives back the space it did not use")
	assert.Equal(t, int64(seg), size(21))
	s := j.Stats()
	assert.Equal(t, int64(20*frame+seg), s.DiskBytes)
	assert.Zero(t, s.SpareBytes)
	requireRecords(t, j, 1, 25)
	require.NoError(t, j.Close())
	spares, err := filepath.Glob(filepath.Join(dir, "spare-*"))
	require.NoError(t, err)
	assert.Empty(t, spares)

	// A clean reopen keeps the zeros and has nothing to say.
	j = open(t, opts)
	assert.Equal(t, uint64(25), j.Head())
	assert.Equal(t, int64(seg), size(21))
	require.NoError(t, j.Close())
	assert.NotContains(t, logs.String(), "level=WARN")

	// A torn write into the zeros is cut, and the segment preallocated
	// again.
	f, err := os.OpenFile(segmentPath(dir, 21), os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(appendRecord(nil, rec(26))[:100], 5*frame)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	j = open(t, opts)
	assert.Contains(t, logs.String(), fmt.Sprintf("cut_bytes=%d ", seg-5*frame))
	assert.Equal(t, int64(seg), size(21))
	appendN(t, j, 26, 3)
	requireRecords(t, j, 1, 28)
}

// TestReaderSkipsZeroTail reads across a segment that still has
// preallocated zeros after its records, as after a crash before the roll
// gave them back.
func TestReaderSkipsZeroTail(t *testing.T) {
	dir := t.TempDir()
	var seg1, seg4 []byte
	for i := 1; i <= 3; i++ {
		seg1 = appendRecord(seg1, rec(i))
	}
	seg1 = append(seg1, make([]byte, 500)...)
	for i := 4; i <= 5; i++ {
		seg4 = appendRecord(seg4, rec(i))
	}
	require.NoError(t, os.WriteFile(segmentPath(dir, 1), seg1, filePerm))
	require.NoError(t, os.WriteFile(segmentPath(dir, 4), seg4, filePerm))

	j := open(t, Options{Dir: dir})
	assert.Equal(t, uint64(5), j.Head())
	requireRecords(t, j, 1, 5)
	appendN(t, j, 6, 1)
	requireRecords(t, j, 2, 6)
}

func TestCheckpointTrimsAndSurvivesReopen(t *testing.T) {
	const frame = headerSize + recordSize
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 4 * frame}
	j := open(t, opts)
	appendN(t, j, 1, 20)
	require.Equal(t, []uint64{1, 5, 9, 13, 17}, segmentFiles(t, dir))

	require.NoError(t, j.Checkpoint(10))
	assert.Equal(t, uint64(10), j.Checkpointed())
	assert.Equal(t, []uint64{9, 13, 17}, segmentFiles(t, dir), "segments wholly at or below 10 are gone")
	s := j.Stats()
	assert.Equal(t, 3, s.Segments)
	assert.Equal(t, uint64(9), s.Oldest)
	assert.Equal(t, int64(12*frame), s.DiskBytes)
	assert.Equal(t, int64(10*frame), s.PendingBytes)

	require.NoError(t, j.Checkpoint(7), "a lower checkpoint is ignored")
	assert.Equal(t, uint64(10), j.Checkpointed())
	require.Error(t, j.Checkpoint(21), "beyond head")

	_, err := j.Reader(8)
	require.ErrorIs(t, err, ErrTrimmed)
	requireRecords(t, j, 9, 20) // the checkpointed part of segment 9 is still readable
	require.NoError(t, j.Close())

	j = open(t, opts)
	assert.Equal(t, uint64(10), j.Checkpointed())
	assert.Equal(t, uint64(20), j.Head())
	assert.Equal(t, int64(10*frame), j.Stats().PendingBytes, "budget after reopen counts only what is above the checkpoint")
	requireRecords(t, j, 11, 20)
	requireNoMore(t, j, 21)

	// Everything checkpointed: only the active segment stays.
	require.NoError(t, j.Checkpoint(20))
	assert.Equal(t, []uint64{17}, segmentFiles(t, dir))
	assert.Zero(t, j.Stats().PendingBytes)
	appendN(t, j, 21, 1)
	requireRecords(t, j, 21, 21)
}

func TestReaderFromCheckpointAfterReopen(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 2 << 10}
	j := open(t, opts)
	appendN(t, j, 1, 50)
	require.NoError(t, j.Checkpoint(33))
	require.NoError(t, j.Close())

	j = open(t, opts)
	r, err := j.Reader(j.Checkpointed() + 1)
	require.NoError(t, err)
	defer r.Close()
	for want := 34; want <= 50; want++ {
		off, data, err := r.Next(t.Context())
		require.NoError(t, err)
		require.Equal(t, uint64(want), off)
		require.Equal(t, rec(want), data)
	}
	// Then it follows new appends.
	appendN(t, j, 51, 1)
	off, data, err := r.Next(t.Context())
	require.NoError(t, err)
	assert.Equal(t, uint64(51), off)
	assert.Equal(t, rec(51), data)
}

func TestUnreadableCheckpointReplaysFromOldest(t *testing.T) {
	const frame = headerSize + recordSize
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 4 * frame}
	j := open(t, opts)
	appendN(t, j, 1, 12)
	require.NoError(t, j.Checkpoint(6))
	require.NoError(t, j.Close())
	require.NoError(t, os.WriteFile(filepath.Join(dir, checkpointFile), []byte("garbage"), filePerm))

	var logs logBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	j = open(t, opts)
	assert.Contains(t, logs.String(), "checkpoint unreadable")
	assert.Equal(t, uint64(4), j.Checkpointed(), "the deleted segments were checkpointed")
	requireRecords(t, j, 5, 12)
}

func TestErrFullUntilCheckpoint(t *testing.T) {
	const frame = headerSize + recordSize
	dir := t.TempDir()
	opts := Options{Dir: dir, MaxBytes: 5 * frame, MaxRecordBytes: recordSize}
	j := open(t, opts)
	appendN(t, j, 1, 5)
	_, err := j.Append(t.Context(), rec(6))
	require.ErrorIs(t, err, ErrFull)
	_, err = j.AppendBatch(t.Context(), [][]byte{rec(6)})
	require.ErrorIs(t, err, ErrFull)
	assert.Equal(t, uint64(5), j.Head())
	assert.Equal(t, int64(5*frame), j.Stats().PendingBytes)

	require.NoError(t, j.Checkpoint(2))
	first, err := j.AppendBatch(t.Context(), [][]byte{rec(6), rec(7)})
	require.NoError(t, err)
	assert.Equal(t, uint64(6), first)
	_, err = j.Append(t.Context(), rec(8))
	require.ErrorIs(t, err, ErrFull)
	require.NoError(t, j.Close())

	// The budget is the same after a restart.
	j = open(t, opts)
	_, err = j.Append(t.Context(), rec(8))
	require.ErrorIs(t, err, ErrFull)
	require.NoError(t, j.Checkpoint(3))
	appendN(t, j, 8, 1)
	requireRecords(t, j, 1, 8)
}

func TestReaderWaits(t *testing.T) {
	t.Run("wakes on append", func(t *testing.T) {
		j := open(t, Options{})
		r, err := j.Reader(1)
		require.NoError(t, err)
		defer r.Close()
		got := make(chan entry, 1)
		go func() {
			off, data, err := r.Next(t.Context())
			assert.NoError(t, err)
			got <- entry{off, bytes.Clone(data)}
		}()
		select {
		case <-got:
			t.Fatal("Next returned before anything was appended")
		case <-time.After(30 * time.Millisecond):
		}
		appendN(t, j, 1, 1)
		select {
		case e := <-got:
			assert.Equal(t, entry{1, rec(1)}, e)
		case <-time.After(5 * time.Second):
			t.Fatal("Next did not wake on append")
		}
	})
	t.Run("wakes on cancel", func(t *testing.T) {
		j := open(t, Options{})
		appendN(t, j, 1, 1)
		r, err := j.Reader(2)
		require.NoError(t, err)
		defer r.Close()
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() {
			_, _, err := r.Next(ctx)
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond)
		cancel()
		select {
		case err := <-errc:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(5 * time.Second):
			t.Fatal("Next did not wake on cancel")
		}
	})
	t.Run("wakes on close", func(t *testing.T) {
		j := open(t, Options{})
		r, err := j.Reader(1)
		require.NoError(t, err)
		defer r.Close()
		errc := make(chan error, 1)
		go func() {
			_, _, err := r.Next(t.Context())
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond)
		require.NoError(t, j.Close())
		select {
		case err := <-errc:
			require.ErrorIs(t, err, ErrClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("Next did not wake on Close")
		}
	})
}

// TestLiveTailingNeverPassesHead has a reader follow concurrent appenders
// across segment rolls; every record it gets must already be durable.
func TestLiveTailingNeverPassesHead(t *testing.T) {
	const workers, each = 8, 300
	j := open(t, Options{SegmentBytes: 8 << 10})
	r, err := j.Reader(1)
	require.NoError(t, err)
	defer r.Close()

	var (
		mu   sync.Mutex
		sent = map[uint64][]byte{}
		wg   sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				data := payload(fmt.Sprintf("w%d-%d", w, i))
				off, err := j.Append(t.Context(), data)
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				sent[off] = data
				mu.Unlock()
			}
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got := make([]entry, 0, workers*each)
	for len(got) < workers*each {
		off, data, err := r.Next(ctx)
		require.NoError(t, err)
		require.LessOrEqual(t, off, j.Head(), "reader returned a record that is not durable")
		require.Equal(t, uint64(len(got)+1), off)
		got = append(got, entry{off, bytes.Clone(data)})
	}
	wg.Wait()
	for _, e := range got {
		require.Equal(t, sent[e.off], e.data)
	}
}

func TestSeveralReaders(t *testing.T) {
	j := open(t, Options{SegmentBytes: 2 << 10})
	appendN(t, j, 1, 40)
	var wg sync.WaitGroup
	for from := range 5 {
		wg.Go(func() {
			got := readN(t, j, uint64(from*8+1), 40-from*8)
			assert.Equal(t, uint64(from*8+1), got[0].off)
			assert.Equal(t, uint64(40), got[len(got)-1].off)
		})
	}
	wg.Wait()
}

func TestLargeRecordsGrowTheReaderBuffer(t *testing.T) {
	j := open(t, Options{MaxRecordBytes: 1 << 20})
	big := bytes.Repeat([]byte("meterflow"), (600<<10)/9)
	for range 3 {
		_, err := j.Append(t.Context(), big)
		require.NoError(t, err)
	}
	for _, e := range readN(t, j, 1, 3) {
		require.Equal(t, big, e.data)
	}
}

func TestClose(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir})
	appendN(t, j, 1, 3)

	_, err := Open(Options{Dir: dir})
	require.ErrorIs(t, err, ErrLocked, "a second journal on the same directory")

	r, err := j.Reader(1)
	require.NoError(t, err)
	require.NoError(t, j.Close())
	require.NoError(t, j.Close())

	_, err = j.Append(t.Context(), rec(4))
	require.ErrorIs(t, err, ErrClosed)
	_, err = j.AppendBatch(t.Context(), [][]byte{rec(4)})
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, j.Checkpoint(1), ErrClosed)
	_, err = j.Reader(1)
	require.ErrorIs(t, err, ErrClosed)
	_, _, err = r.Next(t.Context())
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, r.Close())
	assert.Equal(t, uint64(3), j.Head())

	j = open(t, Options{Dir: dir})
	requireRecords(t, j, 1, 3)
}

// TestCloseWaitsForAppends closes the journal under load: every Append
// that returned nil must be on disk afterwards, and every other one must
// have returned ErrClosed.
func TestCloseWaitsForAppends(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir})
	var (
		mu    sync.Mutex
		acked = map[uint64][]byte{}
		wg    sync.WaitGroup
	)
	for w := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				data := payload(fmt.Sprintf("w%d-%d", w, i))
				off, err := j.Append(t.Context(), data)
				if errors.Is(err, ErrClosed) {
					return
				}
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				acked[off] = data
				mu.Unlock()
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, j.Close())
	wg.Wait()
	require.NotEmpty(t, acked)

	j = open(t, Options{Dir: dir})
	head := j.Head()
	require.Len(t, acked, int(head), "an append that was taken was committed before Close returned")
	for _, e := range readN(t, j, 1, int(head)) {
		require.Equal(t, acked[e.off], e.data)
	}
}

func TestSegmentNames(t *testing.T) {
	assert.Equal(t, "00000000000000000001.seg", segmentName(1))
	for _, base := range []uint64{1, 12345, 1<<64 - 1} {
		got, ok := parseSegmentName(segmentName(base))
		require.True(t, ok)
		assert.Equal(t, base, got)
	}
	for _, bad := range []string{"1.seg", "00000000000000000000.seg", "0000000000000000000x.seg", "00000000000000000001.tmp", "LOCK"} {
		_, ok := parseSegmentName(bad)
		assert.False(t, ok, bad)
	}
}

func TestScanRecordsStopsAtLimit(t *testing.T) {
	var b []byte
	for i := range 5 {
		b = appendRecord(b, rec(i))
	}
	n, end, err := scanRecords(bytes.NewReader(b), int64(len(b)), 3, nil)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), n)
	assert.Equal(t, int64(3*(headerSize+recordSize)), end)
	assert.True(t, slices.Equal(b[:end], b[:3*(headerSize+recordSize)]))
}

// TestWriteFailureIsSticky breaks the active segment under the committer:
// the failing Append and every later one get the error, nothing after the
// failure is acknowledged, and reopening recovers what was durable.
func TestWriteFailureIsSticky(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir})
	appendN(t, j, 1, 3)

	require.NoError(t, j.active.Close()) // the next write fails
	_, err := j.Append(t.Context(), rec(4))
	require.Error(t, err)
	_, err2 := j.Append(t.Context(), rec(5))
	require.ErrorIs(t, err2, err, "the first error sticks")
	assert.Equal(t, uint64(3), j.Head())
	require.Error(t, j.Close(), "Close reports the broken segment")

	j = open(t, Options{Dir: dir})
	assert.Equal(t, uint64(3), j.Head())
	appendN(t, j, 4, 2)
	requireRecords(t, j, 1, 5)
}
