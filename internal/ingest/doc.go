// Package ingest owns the path of a reading from the broker to the stores.
//
//	broker hook ──▶ Front ──▶ journal ──▶ Pipeline.dispatch ──▶ worker[hash(meter) % N]
//	 (decode,       (durable,  (reads the   (one goroutine,      (per-meter VEE state,
//	  validate)      group      journal      in journal order)    batches of outputs)
//	                 commit)    files)                                 │
//	                                                   SeriesSink ◀────┤ raw readings, intervals
//	                                                   RegisterSink ◀──┘ billing intervals,
//	                                                                     exceptions, state snapshots
//
// Each worker owns a subset of meters by hash of meter id, so each meter's
// validation state lives in exactly one place. Outputs are written in
// batches (by count or time) with idempotent upserts, to both sinks at once
// while the worker fills its next batch; a worker has at most one batch in
// flight, and hands over the next only once both sinks have confirmed it.
// Every few seconds a worker waits for its writes, then writes snapshots of
// the states it changed; the journal checkpoint then advances to the lowest
// offset every worker has snapshotted, and segments below it are deleted.
//
// After a crash the pipeline reloads the snapshots and replays the journal
// from the checkpoint. Validation is deterministic, so replayed records
// either are recognised as duplicates (the snapshot already has them) or
// produce the very outputs written before the crash: nothing acknowledged is
// lost and nothing is counted twice. When a sink is down its worker retries
// with backoff, the journal absorbs the backlog up to its disk budget, and
// the broker stops acknowledging past it.
package ingest
