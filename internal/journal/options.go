package journal

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults applied by Open to zero-valued options.
const (
	DefaultSegmentBytes   = 64 << 20
	DefaultMaxRecordBytes = 1 << 20
)

// maxRecordLimit bounds MaxRecordBytes and any length read back from disk,
// so that a damaged length field can never make us allocate gigabytes.
const maxRecordLimit = 1 << 30

// Options configures a Journal. The zero value of every field except Dir
// means "use the default".
type Options struct {
	// Dir is the journal directory; it is created if missing. Required.
	Dir string
	// SegmentBytes is the size at which a new segment file is started, and
	// the size segments are preallocated to. Default 64 MiB.
	SegmentBytes int64
	// MaxBytes is the disk budget for records not yet checkpointed,
	// including those still being committed. Append returns ErrFull rather
	// than exceed it. 0 means unlimited. The files can take up to about
	// three segments more: the checkpointed part of the oldest segment
	// (deleted only once all of it is checkpointed), the preallocated rest
	// of the active one, and the one being prepared.
	MaxBytes int64
	// MaxRecordBytes is the largest payload Append accepts. Default 1 MiB.
	MaxRecordBytes int
	// MaxBatchDelay is how long the committer waits after the first record
	// of a batch arrives to gather more. Default 0: commit as soon as the
	// previous fsync has finished, which already batches everything that
	// arrived during it.
	MaxBatchDelay time.Duration
	// NoSync skips every fsync, and preallocation with it. Records then
	// survive a crash of the process (they are in the page cache) but not
	// of the machine. For tests and benchmarks only.
	NoSync bool
	// Logger receives recovery warnings and failures. Default: discard.
	Logger *slog.Logger
}

// withDefaults returns o with every zero-valued field set to its default.
// It is the only place defaults are decided.
func (o Options) withDefaults() Options {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate reports every problem with o (after defaults), joined.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("journal: Dir is required"))
	}
	if o.SegmentBytes < 0 {
		errs = append(errs, fmt.Errorf("journal: SegmentBytes %d is negative", o.SegmentBytes))
	}
	if o.MaxRecordBytes < 0 || o.MaxRecordBytes > maxRecordLimit {
		errs = append(errs, fmt.Errorf("journal: MaxRecordBytes %d is outside 1..%d", o.MaxRecordBytes, maxRecordLimit))
	}
	if o.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("journal: MaxBytes %d is negative", o.MaxBytes))
	} else if o.MaxBytes > 0 && o.MaxBytes < int64(headerSize+o.MaxRecordBytes) {
		errs = append(errs, fmt.Errorf("journal: MaxBytes %d cannot hold one record of MaxRecordBytes %d", o.MaxBytes, o.MaxRecordBytes))
	}
	if o.MaxBatchDelay < 0 {
		errs = append(errs, fmt.Errorf("journal: MaxBatchDelay %s is negative", o.MaxBatchDelay))
	}
	return errors.Join(errs...)
}
