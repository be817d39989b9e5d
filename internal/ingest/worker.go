package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/vee"
)

type meterState struct {
	utility meter.Utility
	st      *vee.State
	dirty   bool
}

// worker owns the meters that hash to it: their validation state, their
// pending outputs, and their snapshots. Only its own goroutine touches them.
//
// Its store writes overlap with its work: when a batch is due, the worker
// hands it to both sinks at once (one goroutine each) and goes on
// validating into a second batch. At most one batch is in flight per
// worker, so at most one per sink: the next is handed over only once both
// sinks have confirmed the last, which keeps each sink's writes in journal
// order and bounds memory to two batches. A sink that is down holds its
// batch in retries; the worker fills the next batch meanwhile and then
// waits, which stops the dispatcher and leaves the backlog in the journal.
type worker struct {
	p      *Pipeline
	id     int
	in     chan item
	states map[string]*meterState
	batch  *Batch // being filled
	spare  *Batch // the other buffer, when no write has it
	out    vee.Output

	// flight is the batch being written, nil when none; flushDue says the
	// flush timer fired while it was, so the next batch goes when it ends.
	flight   *flight
	flushDue bool

	// seen is the last offset taken from in; durable is the last offset
	// whose effects are all in the stores, states included.
	seen    uint64
	durable atomic.Uint64
	dirty   []string
	// oldest is when the earliest record in the pending batch was received.
	oldest time.Time
}

// flight is one batch on its way to both sinks. done receives the first
// error of either sink (nil when both confirmed) once both have returned.
type flight struct {
	batch  *Batch
	oldest time.Time
	done   chan error
}

func newWorker(p *Pipeline, id int) *worker {
	w := &worker{p: p, id: id, in: make(chan item, 1024), states: make(map[string]*meterState), batch: new(Batch), spare: new(Batch)}
	w.durable.Store(p.src.Checkpointed())
	return w
}

func (w *worker) run(ctx context.Context) error {
	flush := time.NewTicker(w.p.cfg.FlushInterval)
	defer flush.Stop()
	snap := time.NewTicker(w.p.cfg.SnapshotInterval)
	defer snap.Stop()
	// Store writes run under wctx, which shutdown does not cancel at once:
	// a write under way when ctx ends completes, and the drain below
	// flushes and snapshots what was taken. Only DrainTimeout after ctx
	// ends is wctx cancelled, so shutdown never hangs on a store that is
	// down (the journal keeps the records; they replay at the next start).
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer wcancel()
	stopTimer := context.AfterFunc(ctx, func() { time.AfterFunc(w.p.cfg.DrainTimeout, wcancel) })
	defer stopTimer()
	// A write still under way when run returns with an error is cancelled
	// and waited for: nothing of this worker outlives run.
	defer func() {
		if w.flight != nil {
			wcancel()
			<-w.flight.done
			w.flight = nil
		}
	}()
	for {
		var written chan error
		if w.flight != nil {
			written = w.flight.done
		}
		select {
		case <-ctx.Done():
			return w.snapshot(wctx)
		case it := <-w.in:
			w.seen = it.offset
			if !it.tick {
				w.apply(it.rec)
			}
			if w.batch.len() >= w.p.cfg.BatchSize {
				// A full batch waits for the one in flight: memory stays
				// bounded and the dispatcher feels a slow store.
				if err := w.await(); err != nil {
					return err
				}
				w.send(wctx)
			}
		case err := <-written:
			if err := w.landed(err); err != nil {
				return err
			}
			if w.flushDue || w.batch.len() >= w.p.cfg.BatchSize {
				w.send(wctx)
			}
		case <-flush.C:
			if w.flight != nil {
				w.flushDue = true
			} else {
				w.send(wctx)
			}
		case <-snap.C:
			if err := w.snapshot(wctx); err != nil {
				return err
			}
		}
	}
}

func (w *worker) apply(rec Record) {
	if w.oldest.IsZero() || rec.Received.Before(w.oldest) {
		w.oldest = rec.Received
	}
	ms := w.states[rec.Meter]
	if ms == nil {
		ms = &meterState{utility: rec.Utility, st: vee.NewState(rec.Meter, rec.Utility)}
		w.states[rec.Meter] = ms
	}
	rules := w.p.rules.For(ms.utility, rec.Model)
	for _, msg := range rec.Messages {
		w.out.Reset()
		ms.st.Apply(rules, msg, rec.Received, &w.out)
		if w.out.Duplicate {
			w.p.m.duplicates.Inc()
			continue
		}
		for _, r := range w.out.Readings {
			w.batch.Readings = append(w.batch.Readings, Reading{Meter: rec.Meter, Utility: ms.utility, Seq: msg.Seq, Validated: r})
		}
		for _, iv := range w.out.Intervals {
			w.batch.Intervals = append(w.batch.Intervals, Interval{Meter: rec.Meter, Utility: ms.utility, Region: rec.Region, Interval: iv})
		}
		for _, e := range w.out.Exceptions {
			w.batch.Exceptions = append(w.batch.Exceptions, Exception{Meter: rec.Meter, Exception: e})
			w.p.m.exceptions.WithLabelValues(string(e.Rule)).Inc()
		}
	}
	if !ms.dirty {
		ms.dirty = true
		w.dirty = append(w.dirty, rec.Meter)
	}
}

// send hands the pending batch to both sinks, each writing it on its own
// goroutine and retrying until it succeeds or ctx ends; the worker fills
// the spare batch meanwhile. There must be no batch in flight.
func (w *worker) send(ctx context.Context) {
	w.flushDue = false
	if w.batch.len() == 0 {
		w.oldest = time.Time{}
		return
	}
	f := &flight{batch: w.batch, oldest: w.oldest, done: make(chan error, 1)}
	w.flight = f
	w.batch, w.spare, w.oldest = w.spare, nil, time.Time{}
	// The group's context ends when either sink fails for good, so the
	// other stops retrying and the worker learns of it without waiting
	// for a store that is down.
	g, gctx := errgroup.WithContext(ctx)
	write := func(sink string, fn func(context.Context, *Batch) error) {
		g.Go(func() error {
			start := time.Now()
			if err := w.retry(gctx, sink, func(ctx context.Context) error { return fn(ctx, f.batch) }); err != nil {
				return err
			}
			w.p.m.writeSeconds.WithLabelValues(sink).Observe(time.Since(start).Seconds())
			return nil
		})
	}
	write("influxdb", w.p.series.WriteSeries)
	write("postgres", w.p.regs.WriteRegisters)
	go func() { f.done <- g.Wait() }()
}

// await waits for the batch in flight, if any, to be confirmed by both
// sinks.
func (w *worker) await() error {
	if w.flight == nil {
		return nil
	}
	return w.landed(<-w.flight.done)
}

// landed ends the flight whose result is err: its buffer becomes the spare.
func (w *worker) landed(err error) error {
	f := w.flight
	w.flight = nil
	if err != nil {
		return err
	}
	w.p.m.batchRows.Observe(float64(f.batch.len()))
	if !f.oldest.IsZero() {
		w.p.lastDelay.Store(int64(time.Since(f.oldest)))
	}
	f.batch.reset()
	w.spare = f.batch
	return nil
}

// flush writes the pending outputs and waits until both sinks have
// confirmed them and everything handed over before.
func (w *worker) flush(ctx context.Context) error {
	if err := w.await(); err != nil {
		return err
	}
	w.send(ctx)
	return w.await()
}

// snapshot flushes and waits for both sinks, then saves the states changed
// since the last snapshot; after it, everything up to the last offset this
// worker took is durable. States are saved only after the outputs of every
// record they reflect: a state saved first would make a replay take those
// records for duplicates and lose their outputs.
func (w *worker) snapshot(ctx context.Context) error {
	if err := w.flush(ctx); err != nil {
		return err
	}
	seen := w.seen
	if len(w.dirty) > 0 {
		snaps := make([]Snapshot, 0, len(w.dirty))
		for _, id := range w.dirty {
			ms := w.states[id]
			b, err := ms.st.MarshalBinary()
			if err != nil {
				return fmt.Errorf("encode state of meter %s: %w", id, err)
			}
			snaps = append(snaps, Snapshot{Meter: id, Utility: ms.utility, State: b})
		}
		if err := w.retry(ctx, "postgres", func(ctx context.Context) error { return w.p.regs.SaveStates(ctx, snaps) }); err != nil {
			return err
		}
		for _, id := range w.dirty {
			w.states[id].dirty = false
		}
		w.dirty = w.dirty[:0]
	}
	if seen > w.durable.Load() {
		w.durable.Store(seen)
	}
	return nil
}

// Permanent marks a sink error that retrying cannot fix and that must stop
// the pipeline (the journal keeps everything for after the fix).
type Permanent struct{ Err error }

func (e *Permanent) Error() string { return "permanent: " + e.Err.Error() }
func (e *Permanent) Unwrap() error { return e.Err }

// Unwritable marks data a store refuses for good (InfluxDB's 400 on a
// partial write): the rest was written, the bad rows are counted, logged and
// skipped, and the pipeline goes on.
type Unwritable struct{ Err error }

func (e *Unwritable) Error() string { return "unwritable: " + e.Err.Error() }
func (e *Unwritable) Unwrap() error { return e.Err }

func (w *worker) retry(ctx context.Context, sink string, fn func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := fn(wctx)
		cancel()
		if err == nil {
			if attempt > 1 {
				w.p.cfg.Logger.Info("sink recovered", "sink", sink, "worker", w.id, "attempts", attempt)
			}
			w.p.m.sinkUp.WithLabelValues(sink).Set(1)
			return nil
		}
		var perm *Permanent
		if errors.As(err, &perm) {
			return fmt.Errorf("%s: %w", sink, err)
		}
		var bad *Unwritable
		if errors.As(err, &bad) {
			w.p.m.unwritable.WithLabelValues(sink).Inc()
			w.p.cfg.Logger.Error("store refused part of a batch; skipped", "sink", sink, "worker", w.id, "err", err)
			return nil
		}
		w.p.m.sinkErrors.WithLabelValues(sink).Inc()
		w.p.m.sinkUp.WithLabelValues(sink).Set(0)
		if attempt == 1 || attempt%20 == 0 {
			w.p.cfg.Logger.Warn("sink write failed; retrying", "sink", sink, "worker", w.id, "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, w.p.cfg.MaxBackoff)
	}
}
