package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/journal"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/protocol"
)

// Appender is the durable journal the front writes to (journal.Journal).
type Appender interface {
	Append(ctx context.Context, data []byte) (uint64, error)
}

// Rejected is a payload refused for good: it is malformed or breaks the
// protocol, and nothing of it is stored.
type Rejected struct {
	Reason string
	Err    error
}

func (e *Rejected) Error() string        { return fmt.Sprintf("rejected (%s): %v", e.Reason, e.Err) }
func (e *Rejected) Unwrap() error        { return e.Err }
func (e *Rejected) RejectReason() string { return e.Reason }

// Busy is returned while the journal is over its disk budget: the payload
// is not acknowledged and the meter keeps it.
type Busy struct{ Err error }

func (e *Busy) Error() string { return "ingest busy: " + e.Err.Error() }
func (e *Busy) Unwrap() error { return e.Err }
func (e *Busy) Busy() bool    { return true }

// FrontConfig tunes the front.
type FrontConfig struct {
	// MaxPayloadBytes bounds one payload (default 64 KiB).
	MaxPayloadBytes int
	// FullWait is how long a payload waits for journal space before the
	// meter is told to come back later (default 5 s).
	FullWait time.Duration
	// Backlog reports the journal bytes the stores have not yet confirmed
	// and the journal's budget. When set, the front slows meters down
	// before the budget is reached: above SlowFrom of the budget each
	// payload is held before it is taken, from nothing up to MaxDelay at
	// the budget. The broker reads a meter's next packet only after the
	// hook returns, so the hold is TCP backpressure on that meter: under
	// overload readings arrive more slowly instead of piling up in the
	// journal while latency to the stores grows without bound.
	Backlog func() (pending, budget int64)
	// SlowFrom is the fraction of the budget where slowing starts
	// (default 0.25).
	SlowFrom float64
	// MaxDelay is the hold at the budget (default 200 ms).
	MaxDelay time.Duration
	// sleep waits; tests replace it.
	sleep func(context.Context, time.Duration)
}

// Front is the edge of the pipeline the broker calls for every payload: it
// decodes and validates the payload against the protocol, then appends it to
// the journal and returns once it is durable.
type Front struct {
	cfg     FrontConfig
	dec     protocol.Decoder
	journal Appender
	m       *frontMetrics
	pool    sync.Pool
	// byUtility counts accepted readings per utility; the map is built
	// once and only its counters change, so readers need no lock.
	byUtility map[meter.Utility]*atomic.Uint64
	// hold is the current hold per payload in nanoseconds, recomputed from
	// Backlog at most every holdEvery.
	hold      atomic.Int64
	holdAt    atomic.Int64
	holdTotal prometheus.Counter
}

const holdEvery = 50 * time.Millisecond

type frontMetrics struct {
	messages prometheus.Counter
	readings prometheus.Counter
	payloads prometheus.Counter
}

type scratch struct {
	msgs []meter.Message
	buf  []byte
}

// NewFront returns a front writing to j.
func NewFront(cfg FrontConfig, j Appender, reg prometheus.Registerer) *Front {
	if cfg.MaxPayloadBytes == 0 {
		cfg.MaxPayloadBytes = protocol.DefaultMaxBytes
	}
	if cfg.FullWait == 0 {
		cfg.FullWait = 5 * time.Second
	}
	m := &frontMetrics{
		payloads: prometheus.NewCounter(prometheus.CounterOpts{Name: "mf_ingest_payloads_total", Help: "Reading payloads accepted into the journal."}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{Name: "mf_ingest_messages_total", Help: "Meter messages (one sequence number each) accepted."}),
		readings: prometheus.NewCounter(prometheus.CounterOpts{Name: "mf_ingest_readings_total", Help: "Readings (one channel value at one time) accepted."}),
	}
	if reg != nil {
		reg.MustRegister(m.payloads, m.messages, m.readings)
	}
	if cfg.SlowFrom <= 0 || cfg.SlowFrom >= 1 {
		cfg.SlowFrom = 0.25
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 200 * time.Millisecond
	}
	if cfg.sleep == nil {
		cfg.sleep = func(ctx context.Context, d time.Duration) {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
	}
	f := &Front{cfg: cfg, dec: protocol.Decoder{MaxBytes: cfg.MaxPayloadBytes}, journal: j, m: m, byUtility: map[meter.Utility]*atomic.Uint64{}}
	for _, u := range []meter.Utility{meter.Electricity, meter.Water, meter.Gas} {
		f.byUtility[u] = new(atomic.Uint64)
	}
	f.holdTotal = prometheus.NewCounter(prometheus.CounterOpts{Name: "mf_ingest_backpressure_seconds_total",
		Help: "Time payloads were held back because the stores lag behind the journal."})
	if reg != nil {
		reg.MustRegister(f.holdTotal, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mf_ingest_backpressure_hold_seconds",
			Help: "The hold each payload gets now (0 while the stores keep up)."}, func() float64 { return time.Duration(f.hold.Load()).Seconds() }))
	}
	f.pool.New = func() any { return &scratch{} }
	return f
}

// Ingest implements the broker's Ingester.
func (f *Front) Ingest(ctx context.Context, id device.Identity, payload []byte, received time.Time) error {
	s := f.pool.Get().(*scratch)
	defer f.pool.Put(s)
	msgs, err := f.dec.Decode(s.msgs[:0], id.ID, id.Utility, payload, received)
	if err != nil {
		return &Rejected{Reason: string(protocol.ReasonOf(err)), Err: err}
	}
	s.msgs = msgs[:0]
	if d := f.currentHold(received); d > 0 {
		f.cfg.sleep(ctx, d)
		f.holdTotal.Add(d.Seconds())
	}
	s.buf = AppendRecord(s.buf[:0], received, id.ID, id.Utility, id.Model, msgs)
	deadline := time.Now().Add(f.cfg.FullWait)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		_, err = f.journal.Append(ctx, s.buf)
		if !errors.Is(err, journal.ErrFull) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	switch {
	case errors.Is(err, journal.ErrFull):
		return &Busy{Err: err}
	case err != nil:
		return fmt.Errorf("journal append: %w", err)
	}
	n := 0
	for _, m := range msgs {
		n += len(m.Readings)
	}
	f.m.payloads.Inc()
	f.m.messages.Add(float64(len(msgs)))
	f.m.readings.Add(float64(n))
	if c := f.byUtility[id.Utility]; c != nil {
		c.Add(uint64(n))
	}
	return nil
}

// Readings returns how many readings of each utility the front accepted
// into the journal since it was built. It is safe to call concurrently with
// Ingest; the counts only grow.
func (f *Front) Readings() map[meter.Utility]uint64 {
	out := make(map[meter.Utility]uint64, len(f.byUtility))
	for u, c := range f.byUtility {
		out[u] = c.Load()
	}
	return out
}

// currentHold is how long to hold a payload now: zero below SlowFrom of the
// journal budget, rising linearly to MaxDelay at the budget.
func (f *Front) currentHold(now time.Time) time.Duration {
	if f.cfg.Backlog == nil {
		return 0
	}
	at := f.holdAt.Load()
	if now.UnixNano()-at < int64(holdEvery) && at != 0 {
		return time.Duration(f.hold.Load())
	}
	if !f.holdAt.CompareAndSwap(at, now.UnixNano()) {
		return time.Duration(f.hold.Load())
	}
	pending, budget := f.cfg.Backlog()
	var d time.Duration
	if budget > 0 {
		fill := float64(pending) / float64(budget)
		if fill > f.cfg.SlowFrom {
			d = time.Duration(min(1, (fill-f.cfg.SlowFrom)/(1-f.cfg.SlowFrom)) * float64(f.cfg.MaxDelay))
		}
	}
	f.hold.Store(int64(d))
	return d
}
