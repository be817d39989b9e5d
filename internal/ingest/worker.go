package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

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
type worker struct {
	p      *Pipeline
	id     int
	in     chan item
	states map[string]*meterState
	batch  Batch
	out    vee.Output

	// seen is the last offset taken from in; durable is the last offset
	// whose effects are all in the stores, states included.
	seen    uint64
	durable atomic.Uint64
	dirty   []string
	// oldest is when the earliest record in the pending batch was received.
	oldest time.Time
}

func newWorker(p *Pipeline, id int) *worker {
	w := &worker{p: p, id: id, in: make(chan item, 1024), states: make(map[string]*meterState)}
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
	for {
		select {
		case <-ctx.Done():
			return w.snapshot(wctx)
		case it := <-w.in:
			w.seen = it.offset
			if !it.tick {
				w.apply(it.rec)
			}
			if w.batch.len() >= w.p.cfg.BatchSize {
				if err := w.flush(wctx); err != nil {
					return err
				}
			}
		case <-flush.C:
			if err := w.flush(wctx); err != nil {
				return err
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

// flush writes the pending outputs, retrying each sink until it succeeds
// or ctx ends.
func (w *worker) flush(ctx context.Context) error {
	if w.batch.len() == 0 {
		w.oldest = time.Time{}
		return nil
	}
	start := time.Now()
	if err := w.retry(ctx, "influxdb", func(ctx context.Context) error { return w.p.series.WriteSeries(ctx, &w.batch) }); err != nil {
		return err
	}
	w.p.m.writeSeconds.WithLabelValues("influxdb").Observe(time.Since(start).Seconds())
	start = time.Now()
	if err := w.retry(ctx, "postgres", func(ctx context.Context) error { return w.p.regs.WriteRegisters(ctx, &w.batch) }); err != nil {
		return err
	}
	w.p.m.writeSeconds.WithLabelValues("postgres").Observe(time.Since(start).Seconds())
	w.p.m.batchRows.Observe(float64(w.batch.len()))
	if !w.oldest.IsZero() {
		w.p.lastDelay.Store(int64(time.Since(w.oldest)))
		w.oldest = time.Time{}
	}
	w.batch.reset()
	return nil
}

// snapshot flushes, then saves the states changed since the last snapshot;
// after it, everything up to the last offset this worker took is durable.
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
