package journal

import (
	"bytes"
	"context"
	"math"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzScanRecords feeds intact records followed by an arbitrary tail to the
// recovery scanner: it must keep every intact record and never claim more
// than is there.
func FuzzScanRecords(f *testing.F) {
	f.Add([]byte("hello"), []byte("world"), []byte{})
	f.Add([]byte("a"), []byte("b"), []byte{0xE8, 0x03, 0, 0, 1, 2})
	f.Add([]byte("a"), []byte{}, []byte{1, 0, 0, 0, 0x55, 0xE2, 0x8C, 0x3A, 'z'})
	f.Add([]byte("x"), []byte("y"), make([]byte, 64))
	f.Fuzz(func(t *testing.T, a, b, tail []byte) {
		var seg []byte
		var n uint64
		for _, p := range [][]byte{a, b} {
			if len(p) > 0 {
				seg = appendRecord(seg, p)
				n++
			}
		}
		valid := int64(len(seg))
		seg = append(seg, tail...)
		count, end, err := scanRecords(bytes.NewReader(seg), int64(len(seg)), math.MaxUint64, nil)
		require.NoError(t, err)
		require.GreaterOrEqual(t, count, n)
		require.GreaterOrEqual(t, end, valid)
		require.LessOrEqual(t, end, int64(len(seg)))
		// What it kept scans back to itself.
		c2, e2, err := scanRecords(bytes.NewReader(seg[:end]), end, math.MaxUint64, nil)
		require.NoError(t, err)
		require.Equal(t, count, c2)
		require.Equal(t, end, e2)
	})
}

// FuzzOpenTornSegment writes records and an arbitrary tail as a segment
// file, opens it and reads it back: Open must cut the tail, readers must
// agree with it, and appending must go on from there.
func FuzzOpenTornSegment(f *testing.F) {
	f.Add(uint8(3), []byte{})
	f.Add(uint8(1), []byte{0xFF, 0xFF, 0xFF, 0xFF})
	f.Add(uint8(0), []byte{5, 0, 0, 0, 0, 0, 0, 0, 'a', 'b'})
	f.Fuzz(func(t *testing.T, n uint8, tail []byte) {
		n %= 16
		dir := t.TempDir()
		var seg []byte
		for i := range int(n) {
			seg = appendRecord(seg, rec(i+1))
		}
		seg = append(seg, tail...)
		require.NoError(t, os.WriteFile(segmentPath(dir, 1), seg, filePerm))

		j, err := Open(Options{Dir: dir, NoSync: true})
		require.NoError(t, err)
		defer j.Close()
		head := j.Head()
		require.GreaterOrEqual(t, head, uint64(n))
		got := readN(t, j, 1, int(head))
		for i := range int(n) {
			require.Equal(t, rec(i+1), got[i].data)
		}
		off, err := j.Append(context.Background(), rec(99))
		require.NoError(t, err)
		require.Equal(t, head+1, off)
		require.Equal(t, rec(99), readN(t, j, off, 1)[0].data)
	})
}
