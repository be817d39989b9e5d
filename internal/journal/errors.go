package journal

import (
	"errors"
	"fmt"
)

// Errors returned by the journal. Callers tell them apart with errors.Is:
// ErrFull is a reason to refuse the message for now (the meter keeps it and
// retries), ErrEmpty and ErrTooLarge mean the message can never be stored,
// and any other error from Append, except the context's own, means the
// journal is broken and must be closed and reopened.
var (
	// ErrFull is returned by Append when the record would take the bytes not
	// yet checkpointed past Options.MaxBytes. Nothing was appended.
	ErrFull = errors.New("journal: full")
	// ErrClosed is returned by every operation after Close.
	ErrClosed = errors.New("journal: closed")
	// ErrEmpty is returned by Append for a zero-length record, which the
	// framing reserves for the end of the written part of a segment.
	ErrEmpty = errors.New("journal: empty record")
	// ErrTooLarge is returned by Append for a record longer than
	// Options.MaxRecordBytes.
	ErrTooLarge = errors.New("journal: record too large")
	// ErrTrimmed is returned when a reader asks for an offset whose segment
	// has already been deleted after a checkpoint.
	ErrTrimmed = errors.New("journal: offset trimmed")
	// ErrLocked is returned by Open when another process holds the journal
	// directory.
	ErrLocked = errors.New("journal: directory locked by another process")
)

// CorruptError reports a damaged record that was already durable: a
// checksum mismatch, an impossible length, or a segment that ends before
// the offsets say it should. Open repairs the tail of the log by itself;
// a CorruptError means damage behind it (a bad disk, or a file edited by
// hand).
type CorruptError struct {
	Segment string // file name of the segment
	Pos     int64  // byte position of the record in the segment
	Offset  uint64 // offset the record should have
	Reason  string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal: corrupt record %d in %s at byte %d: %s", e.Offset, e.Segment, e.Pos, e.Reason)
}
