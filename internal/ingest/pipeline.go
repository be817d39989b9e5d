package ingest

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meterflow/meterflow/internal/journal"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/vee"
)

// Batch is what one worker flushes at once. Both sinks are given the same
// batch at the same time, each on its own goroutine, so they must only read
// it; its slices are reused once both have returned, so they must not
// retain them either.
type Batch struct {
	Readings   []Reading
	Intervals  []Interval
	Exceptions []Exception
}

func (b *Batch) reset() {
	b.Readings, b.Intervals, b.Exceptions = b.Readings[:0], b.Intervals[:0], b.Exceptions[:0]
}

func (b *Batch) len() int { return len(b.Readings) + len(b.Intervals) + len(b.Exceptions) }

// Reading is one validated reading of one meter.
type Reading struct {
	Meter   string
	Utility meter.Utility
	Seq     uint64
	vee.Validated
}

// Interval is one interval of validated consumption of one meter.
type Interval struct {
	Meter   string
	Utility meter.Utility
	// Region is the region of the meter's premise as its journal record
	// has it ("" when unknown), for fleet rollups by region.
	Region string
	vee.Interval
}

// Exception is one firing of a validation rule.
type Exception struct {
	Meter string
	vee.Exception
}

// Snapshot is one meter's persisted validation state.
type Snapshot struct {
	Meter   string
	Utility meter.Utility
	State   []byte
}

// SeriesSink stores readings and intervals for dashboards (InfluxDB).
// Writes must be idempotent: the same batch may be written twice. WriteSeries
// is called by every worker, concurrently, and at the same time as
// WriteRegisters of the same batch.
type SeriesSink interface {
	WriteSeries(ctx context.Context, b *Batch) error
}

// RegisterSink stores billing intervals, exceptions and state snapshots
// (PostgreSQL). Writes must be idempotent. Its methods are called by every
// worker, concurrently; a worker calls SaveStates only once both sinks have
// confirmed every batch before it.
type RegisterSink interface {
	WriteRegisters(ctx context.Context, b *Batch) error
	SaveStates(ctx context.Context, states []Snapshot) error
	// LoadStates calls fn for every saved state.
	LoadStates(ctx context.Context, fn func(Snapshot) error) error
}

// Source is the journal as the pipeline reads it.
type Source interface {
	Reader(from uint64) (*journal.Reader, error)
	Checkpoint(offset uint64) error
	Checkpointed() uint64
	Head() uint64
}

// PipelineConfig tunes the pipeline.
type PipelineConfig struct {
	// Workers is the number of meter partitions (default 2).
	Workers int
	// BatchSize flushes a worker's outputs at this many rows (default 5,000).
	BatchSize int
	// FlushInterval flushes at least this often (default 250 ms).
	FlushInterval time.Duration
	// SnapshotInterval is how often changed states are saved and the
	// journal checkpoint advances (default 5 s).
	SnapshotInterval time.Duration
	// Rules gives the validation rules of each utility and meter model
	// (default vee.DefaultRuleSet).
	Rules *vee.RuleSet
	// Retry bounds a failing sink write's backoff (default 5 s).
	MaxBackoff time.Duration
	// DrainTimeout bounds the final flush at shutdown (default 15 s).
	DrainTimeout time.Duration
	Logger       *slog.Logger
}

func (c *PipelineConfig) defaults() {
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 5000
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 250 * time.Millisecond
	}
	if c.SnapshotInterval <= 0 {
		c.SnapshotInterval = 5 * time.Second
	}
	if c.Rules == nil {
		c.Rules = vee.DefaultRuleSet()
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Pipeline reads the journal and runs the workers.
type Pipeline struct {
	cfg     PipelineConfig
	src     Source
	series  SeriesSink
	regs    RegisterSink
	m       *pipelineMetrics
	seed    maphash.Seed
	workers []*worker
	rules   *vee.RuleSet

	dispatched atomic.Uint64 // last offset handed to workers
	lastDelay  atomic.Int64  // nanoseconds from receipt to stored, of the last batch written
	cancel     context.CancelFunc
	done       chan error
}

// NewPipeline builds a pipeline; Run starts it.
func NewPipeline(cfg PipelineConfig, src Source, series SeriesSink, regs RegisterSink, reg prometheus.Registerer) *Pipeline {
	cfg.defaults()
	p := &Pipeline{cfg: cfg, src: src, series: series, regs: regs, seed: maphash.MakeSeed(), rules: cfg.Rules}
	p.m = newPipelineMetrics(reg, p)
	return p
}

type item struct {
	offset uint64
	rec    Record
	tick   bool
}

// Start loads the saved states and starts reading the journal from its
// checkpoint. The pipeline runs until Stop or until a sink fails fatally.
func (p *Pipeline) Start(ctx context.Context) error {
	if err := p.rules.Validate(); err != nil {
		return fmt.Errorf("validation rules: %w", err)
	}
	for i := 0; i < p.cfg.Workers; i++ {
		p.workers = append(p.workers, newWorker(p, i))
	}
	loaded := 0
	err := p.regs.LoadStates(ctx, func(s Snapshot) error {
		st := vee.NewState(s.Meter, s.Utility)
		if err := st.UnmarshalBinary(s.State); err != nil {
			return fmt.Errorf("state of meter %s: %w", s.Meter, err)
		}
		p.workerFor(s.Meter).states[s.Meter] = &meterState{utility: s.Utility, st: st}
		loaded++
		return nil
	})
	if err != nil {
		return fmt.Errorf("load meter states: %w", err)
	}
	from := p.src.Checkpointed() + 1
	p.dispatched.Store(from - 1)
	r, err := p.src.Reader(from)
	if err != nil {
		return fmt.Errorf("journal reader: %w", err)
	}
	p.cfg.Logger.Info("ingest pipeline starting", "states_loaded", loaded, "replay_from", from, "journal_head", p.src.Head(), "workers", p.cfg.Workers)
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan error, 1)
	var wg sync.WaitGroup
	errs := make(chan error, len(p.workers)+2)
	for _, w := range p.workers {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- w.run(ctx) }()
	}
	wg.Add(2)
	go func() { defer wg.Done(); errs <- p.dispatch(ctx, r) }()
	go func() { defer wg.Done(); errs <- p.checkpointLoop(ctx) }()
	go func() {
		var first error
		for range len(p.workers) + 2 {
			if err := <-errs; err != nil && !errors.Is(err, context.Canceled) && first == nil {
				first = err
				p.cfg.Logger.Error("ingest pipeline stopped", "err", err)
				p.cancel()
			}
		}
		wg.Wait()
		_ = r.Close()
		p.done <- first
	}()
	return nil
}

// Stop drains the workers (flushing and snapshotting what they hold),
// advances the checkpoint and returns.
func (p *Pipeline) Stop() error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	err := <-p.done
	if ck := p.safeOffset(); ck > p.src.Checkpointed() {
		if cerr := p.src.Checkpoint(ck); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

func (p *Pipeline) workerFor(meterID string) *worker {
	return p.workers[maphash.String(p.seed, meterID)%uint64(len(p.workers))]
}

// dispatch reads the journal in order and hands each record to the worker
// owning its meter. Every second it sends every worker a tick with the last
// dispatched offset, so that idle workers can vouch for it.
func (p *Pipeline) dispatch(ctx context.Context, r *journal.Reader) error {
	type next struct {
		off  uint64
		data []byte
		err  error
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		readCtx, cancel := context.WithTimeout(ctx, time.Second)
		off, data, err := r.Next(readCtx)
		cancel()
		switch {
		case err == nil:
			rec, derr := DecodeRecord(data)
			if derr != nil {
				// A record that passed its CRC but does not decode was
				// written by an incompatible release: count it and move on.
				p.m.badRecords.Inc()
				p.cfg.Logger.Error("undecodable journal record skipped", "offset", off, "err", derr)
				p.dispatched.Store(off)
				continue
			}
			w := p.workerFor(rec.Meter)
			select {
			case w.in <- item{offset: off, rec: rec}:
			case <-ctx.Done():
				return ctx.Err()
			}
			p.dispatched.Store(off)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
		default:
			return fmt.Errorf("read journal: %w", err)
		}
		select {
		case <-tick.C:
			off := p.dispatched.Load()
			for _, w := range p.workers {
				select {
				case w.in <- item{offset: off, tick: true}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		default:
		}
	}
}

// safeOffset is the highest offset that every worker has made durable.
func (p *Pipeline) safeOffset() uint64 {
	lowest := uint64(0)
	for i, w := range p.workers {
		d := w.durable.Load()
		if i == 0 || d < lowest {
			lowest = d
		}
	}
	return lowest
}

func (p *Pipeline) checkpointLoop(ctx context.Context) error {
	t := time.NewTicker(p.cfg.SnapshotInterval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if ck := p.safeOffset(); ck > p.src.Checkpointed() {
			if err := p.src.Checkpoint(ck); err != nil {
				return fmt.Errorf("journal checkpoint: %w", err)
			}
		}
	}
}

// StoreDelay is how long the most recently written batch took from the
// receipt of its oldest payload to being in both stores: the ingest lag a
// reading sees. It is zero until a batch has been written.
func (p *Pipeline) StoreDelay() time.Duration { return time.Duration(p.lastDelay.Load()) }

// Lag is how many journal records wait for the stores.
func (p *Pipeline) Lag() uint64 {
	h, c := p.src.Head(), p.src.Checkpointed()
	if h < c {
		return 0
	}
	return h - c
}
