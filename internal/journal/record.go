package journal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

// headerSize is the framing in front of every payload: length and CRC-32C.
const headerSize = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecord appends data, framed, to dst.
func appendRecord(dst, data []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(data)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(data, castagnoli))
	return append(dst, data...)
}

// scanRecords reads framed records from r, which holds size bytes, and
// reports how many leading records (at most limit) are whole and intact and
// the byte position where the last of them ends. Scanning stops at the
// first record whose length is zero, runs past size, or whose checksum does
// not match; everything from there on is a torn or damaged tail. Only read
// errors are returned. If intact is not nil it is called with the end of
// each intact record.
func scanRecords(r io.Reader, size int64, limit uint64, intact func(end int64)) (count uint64, end int64, err error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var hdr [headerSize]byte
	var payload []byte
	for count < limit {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return count, end, eofIsTail(err)
		}
		n := int64(binary.LittleEndian.Uint32(hdr[:4]))
		if n == 0 || n > maxRecordLimit || end+headerSize+n > size {
			return count, end, nil
		}
		if int64(cap(payload)) < n {
			payload = make([]byte, n)
		}
		p := payload[:n]
		if _, err := io.ReadFull(br, p); err != nil {
			return count, end, eofIsTail(err)
		}
		if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
			return count, end, nil
		}
		count++
		end += headerSize + n
		if intact != nil {
			intact(end)
		}
	}
	return count, end, nil
}

// eofIsTail turns running out of bytes into the end of the scan.
func eofIsTail(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return err
}
