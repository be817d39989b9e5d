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
}

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
	f := &Front{cfg: cfg, dec: protocol.Decoder{MaxBytes: cfg.MaxPayloadBytes}, journal: j, m: m, byUtility: map[meter.Utility]*atomic.Uint64{}}
	for _, u := range []meter.Utility{meter.Electricity, meter.Water, meter.Gas} {
		f.byUtility[u] = new(atomic.Uint64)
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
	s.buf = AppendRecord(s.buf[:0], received, id.ID, id.Utility, msgs)
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
