// Package journal owns the durable local write-ahead journal between the
// embedded MQTT broker and the ingest workers.
//
// The broker's publish hook appends each meter message and acknowledges the
// meter (QoS 1 PUBACK) only after Append has returned nil, so an
// acknowledged message survives kill -9 and, with sync on, power loss. The
// ingest workers tail the journal with a Reader and, once the stores have
// confirmed a prefix, call Checkpoint so the journal can free disk space.
//
// We keep a small segment log of our own rather than use an embedded
// database or a generic WAL library because three properties are the whole
// point of this component and none of them is a default elsewhere:
//
//   - Group commit across concurrent publishers: every meter publishes on
//     its own goroutine, and one committer writes whatever has gathered with
//     one write and one sync, then releases all of those publishers at once.
//   - Recovery that cuts a torn or corrupt tail (logging how much) instead
//     of refusing to open: after a crash the broker must come back up and
//     keep taking data.
//   - Trimming driven by a checkpoint the stores confirm, not by age or
//     size, with a disk budget that pushes back on the meters (ErrFull)
//     rather than dropping data they have not been acknowledged for.
//
// # On disk
//
// A journal directory holds segment files named by the offset of their first
// record (00000000000000000001.seg), a checkpoint file, a LOCK file that
// keeps a second process out, and at times a spare-N.tmp being prepared as
// the next segment. A segment is a sequence of records:
//
//	+---------------+---------------------------+------------------+
//	| length uint32 | CRC-32C of payload uint32 | payload (length) |
//	+---------------+---------------------------+------------------+
//
// both integers little-endian, followed by zeros up to the end of the file.
// Offsets are not stored: record k of segment B has offset B+k. Offsets
// start at 1 and increase by one per record with no gaps. A new segment is
// started before a commit that would take the current one past
// Options.SegmentBytes, so a commit never spans two segments.
//
// # Preallocation
//
// With sync on, segments are written full of zeros and synced before
// records go into them (Open does it for the active segment, a background
// goroutine for the next one, starting when the active one is half full),
// and commits use fdatasync. Overwriting blocks that are already allocated
// changes no metadata the sync must flush, so a commit costs a data write
// and a cache flush without a filesystem journal commit: on ext4 about half
// the latency, and steady when other processes write to the same disk.
// This is why a zero length marks the end of the records and why empty
// records are refused. When a segment fills, the space it did not use is
// given back.
//
// # Recovery
//
// Open scans the last segment and cuts it at the first record that is
// incomplete, has an impossible length, or fails its checksum, unless
// everything from there on is zeros (the unused part of a preallocated
// segment). A last segment that holds no record is removed and the one
// before it is scanned the same way. Earlier segments were synced before
// the next one was created and are not rescanned; a Reader still verifies
// every checksum and reports damage there as a *CorruptError.
//
// The checkpoint file holds the highest offset the stores have confirmed.
// It is replaced atomically (temporary file, fsync, rename, fsync of the
// directory), and segments whose records are all at or below it are then
// deleted. Losing the checkpoint only makes the workers replay more; the
// stores' writes are idempotent.
package journal
