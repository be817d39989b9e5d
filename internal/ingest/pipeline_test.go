package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/journal"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/vee"
)

// flakySinks store what they are given, failing every write while down.
type flakySinks struct {
	down     atomic.Bool
	failures atomic.Int64
	mu       sync.Mutex
	readings map[string]map[int64]bool // meter → reading times written
	regions  map[string]map[string]int // meter → region → intervals written
	states   map[string][]byte
}

func newFlaky() *flakySinks {
	return &flakySinks{readings: map[string]map[int64]bool{}, regions: map[string]map[string]int{}, states: map[string][]byte{}}
}

var errDown = errors.New("connection refused")

func (f *flakySinks) WriteSeries(_ context.Context, b *Batch) error {
	if f.down.Load() {
		f.failures.Add(1)
		return errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range b.Readings {
		if f.readings[r.Meter] == nil {
			f.readings[r.Meter] = map[int64]bool{}
		}
		f.readings[r.Meter][r.Time.UnixMilli()] = true
	}
	for _, iv := range b.Intervals {
		if f.regions[iv.Meter] == nil {
			f.regions[iv.Meter] = map[string]int{}
		}
		f.regions[iv.Meter][iv.Region]++
	}
	return nil
}

func (f *flakySinks) intervalRegions(id string) map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for r, n := range f.regions[id] {
		out[r] = n
	}
	return out
}

func (f *flakySinks) WriteRegisters(context.Context, *Batch) error {
	if f.down.Load() {
		f.failures.Add(1)
		return errDown
	}
	return nil
}

func (f *flakySinks) SaveStates(_ context.Context, s []Snapshot) error {
	if f.down.Load() {
		f.failures.Add(1)
		return errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range s {
		f.states[x.Meter] = append([]byte(nil), x.State...)
	}
	return nil
}

func (f *flakySinks) LoadStates(context.Context, func(Snapshot) error) error { return nil }

func (f *flakySinks) count(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.readings[id])
}

func TestPipelineRetriesAStoreThatIsDown(t *testing.T) {
	j, err := journal.Open(journal.Options{Dir: t.TempDir(), NoSync: true})
	require.NoError(t, err)
	defer j.Close()
	sinks := newFlaky()
	p := NewPipeline(PipelineConfig{Workers: 2, FlushInterval: 10 * time.Millisecond, SnapshotInterval: 50 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}, j, sinks, sinks, nil)
	require.NoError(t, p.Start(context.Background()))

	t0 := time.Now().Add(-24 * time.Hour).Truncate(15 * time.Minute)
	appendN := func(from, to int) {
		for seq := from; seq <= to; seq++ {
			at := t0.Add(time.Duration(seq) * 15 * time.Minute)
			msg := meter.Message{Meter: "E-1", Seq: uint64(seq), Readings: []meter.Reading{{Channel: "1-0:1.8.0", Time: at, Value: meter.Value(seq * 100)}}}
			_, err := j.Append(context.Background(), AppendRecord(nil, at, device.Identity{ID: "E-1", Utility: meter.Electricity}, []meter.Message{msg}))
			require.NoError(t, err)
		}
	}
	appendN(1, 10)
	require.Eventually(t, func() bool { return sinks.count("E-1") == 10 }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return j.Checkpointed() == 10 }, 5*time.Second, 5*time.Millisecond)

	sinks.down.Store(true)
	appendN(11, 30)
	require.Eventually(t, func() bool { return sinks.failures.Load() > 3 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, uint64(10), j.Checkpointed(), "the checkpoint never passes what the stores have not confirmed")
	assert.Equal(t, uint64(20), p.Lag())

	sinks.down.Store(false)
	require.Eventually(t, func() bool { return sinks.count("E-1") == 30 && j.Checkpointed() == 30 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, p.Stop())
	assert.NotEmpty(t, sinks.states["E-1"], "the meter's state was saved")
}

// exceptionSinks records the VEE exceptions written per meter.
type exceptionSinks struct {
	*flakySinks
	rules map[string][]string
}

func (e *exceptionSinks) WriteRegisters(_ context.Context, b *Batch) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, x := range b.Exceptions {
		e.rules[x.Meter] = append(e.rules[x.Meter], string(x.Rule))
	}
	return nil
}

func (e *exceptionSinks) exceptions(id string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.rules[id]...)
}

// A meter's model, carried in its journal records, selects its VEE rules:
// the same wrap of the register is a rollover on a five-digit model and a
// meter reset on the default six-digit register.
func TestPipelineRulesByModel(t *testing.T) {
	rules, err := vee.ParseRuleSet([]byte(`
models:
  EM-5D:
    utility: electricity
    registers:
      1-0:1.8.0: {modulus: 100000, max_per_hour: 24}
`))
	require.NoError(t, err)
	j, err := journal.Open(journal.Options{Dir: t.TempDir(), NoSync: true})
	require.NoError(t, err)
	defer j.Close()
	sinks := &exceptionSinks{flakySinks: newFlaky(), rules: map[string][]string{}}
	p := NewPipeline(PipelineConfig{Workers: 2, FlushInterval: 10 * time.Millisecond, SnapshotInterval: 50 * time.Millisecond, Rules: rules}, j, sinks, sinks, nil)
	require.NoError(t, p.Start(context.Background()))
	defer p.Stop()

	t0 := time.Now().Add(-time.Hour).Truncate(15 * time.Minute)
	for _, m := range []struct{ id, model string }{{"E-A", "EM-5D"}, {"E-B", ""}} {
		for i, v := range []meter.Value{99_999_900, 100} {
			at := t0.Add(time.Duration(i) * 15 * time.Minute)
			msg := meter.Message{Meter: m.id, Seq: uint64(i + 1), Readings: []meter.Reading{{Channel: "1-0:1.8.0", Time: at, Value: v}}}
			_, err := j.Append(context.Background(), AppendRecord(nil, at, device.Identity{ID: m.id, Utility: meter.Electricity, Model: m.model}, []meter.Message{msg}))
			require.NoError(t, err)
		}
	}
	require.Eventually(t, func() bool { return sinks.count("E-A") == 2 && sinks.count("E-B") == 2 && j.Checkpointed() == 4 },
		5*time.Second, 5*time.Millisecond)
	assert.Equal(t, []string{"rollover"}, sinks.exceptions("E-A"))
	assert.Equal(t, []string{"meter_reset"}, sinks.exceptions("E-B"))
}

// The region a record carries reaches the series sink with each interval,
// record by record: a meter whose premise changed region between two
// connections has its later intervals under the new one.
func TestPipelineCarriesRegion(t *testing.T) {
	j, err := journal.Open(journal.Options{Dir: t.TempDir(), NoSync: true})
	require.NoError(t, err)
	defer j.Close()
	sinks := newFlaky()
	p := NewPipeline(PipelineConfig{Workers: 2, FlushInterval: 10 * time.Millisecond, SnapshotInterval: 50 * time.Millisecond}, j, sinks, sinks, nil)
	require.NoError(t, p.Start(context.Background()))
	defer p.Stop()

	t0 := time.Now().Add(-2 * time.Hour).Truncate(15 * time.Minute)
	seqs := map[string]int{}
	for _, m := range []struct{ id, region string }{{"E-N", "north"}, {"E-N", "north"}, {"E-N", "north"}, {"E-N", "south"}, {"E-X", ""}, {"E-X", ""}} {
		seqs[m.id]++
		i := seqs[m.id]
		at := t0.Add(time.Duration(i) * 15 * time.Minute)
		msg := meter.Message{Meter: m.id, Seq: uint64(i), Readings: []meter.Reading{{Channel: "1-0:1.8.0", Time: at, Value: meter.Value(1000 * i)}}}
		_, err := j.Append(context.Background(), AppendRecord(nil, at, device.Identity{ID: m.id, Utility: meter.Electricity, Region: m.region}, []meter.Message{msg}))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return j.Checkpointed() == 6 }, 5*time.Second, 5*time.Millisecond)
	// The first read of a meter opens its register; each later one closes an interval.
	assert.Equal(t, map[string]int{"north": 2, "south": 1}, sinks.intervalRegions("E-N"))
	assert.Equal(t, map[string]int{"": 1}, sinks.intervalRegions("E-X"))
}

// slowSinks hold each series write until released, to stop the pipeline
// while a write is under way.
type slowSinks struct {
	*flakySinks
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *slowSinks) WriteSeries(ctx context.Context, b *Batch) error {
	s.once.Do(func() { close(s.started) })
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.flakySinks.WriteSeries(ctx, b)
}

// A graceful stop lets a store write under way finish, then flushes and
// snapshots what was taken: the checkpoint covers every record, so nothing
// needs replaying at the next start.
func TestPipelineStopDrainsAWriteUnderWay(t *testing.T) {
	j, err := journal.Open(journal.Options{Dir: t.TempDir(), NoSync: true})
	require.NoError(t, err)
	defer j.Close()
	sinks := &slowSinks{flakySinks: newFlaky(), started: make(chan struct{}), release: make(chan struct{})}
	p := NewPipeline(PipelineConfig{Workers: 1, FlushInterval: 10 * time.Millisecond, SnapshotInterval: time.Hour, DrainTimeout: 10 * time.Second}, j, sinks, sinks, nil)
	require.NoError(t, p.Start(context.Background()))

	t0 := time.Now().Add(-time.Hour).Truncate(15 * time.Minute)
	for seq := 1; seq <= 5; seq++ {
		at := t0.Add(time.Duration(seq) * time.Minute)
		msg := meter.Message{Meter: "E-1", Seq: uint64(seq), Readings: []meter.Reading{{Channel: "1-0:1.8.0", Time: at, Value: meter.Value(seq * 10)}}}
		_, err := j.Append(context.Background(), AppendRecord(nil, at, device.Identity{ID: "E-1", Utility: meter.Electricity}, []meter.Message{msg}))
		require.NoError(t, err)
	}
	<-sinks.started
	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned while a write was under way: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(sinks.release)
	require.NoError(t, <-stopped)
	assert.Equal(t, 5, sinks.count("E-1"), "every taken reading was written")
	assert.Equal(t, uint64(5), j.Checkpointed(), "the checkpoint covers everything: nothing to replay")
	assert.NotEmpty(t, sinks.states["E-1"], "states were saved in the drain")
}

// confirmingSinks record, per sink, the (meter, seq) of every reading in a
// batch the sink confirmed (returned nil for), in the order confirmed. Each
// sink can be down on its own; state snapshots always succeed, so only the
// batch writes hold the checkpoint back.
type confirmingSinks struct {
	seriesDown, regsDown atomic.Bool
	failures             atomic.Int64
	mu                   sync.Mutex
	confirmed            map[string]map[string][]uint64 // sink → meter → seqs in confirmation order
	inFlight             map[string]int                 // sink → writes under way
	overlapped           atomic.Bool                    // both sinks were writing at once
}

func newConfirming() *confirmingSinks {
	return &confirmingSinks{
		confirmed: map[string]map[string][]uint64{"series": {}, "registers": {}},
		inFlight:  map[string]int{},
	}
}

func (c *confirmingSinks) write(sink string, down *atomic.Bool, b *Batch) error {
	c.mu.Lock()
	c.inFlight[sink]++
	if c.inFlight["series"] > 0 && c.inFlight["registers"] > 0 {
		c.overlapped.Store(true)
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.inFlight[sink]--
		c.mu.Unlock()
	}()
	time.Sleep(time.Duration(len(b.Readings)%3) * time.Millisecond)
	if down.Load() {
		c.failures.Add(1)
		return errDown
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	last := map[string]uint64{}
	for _, r := range b.Readings {
		if r.Seq != last[r.Meter] { // a message's readings share its seq
			c.confirmed[sink][r.Meter] = append(c.confirmed[sink][r.Meter], r.Seq)
			last[r.Meter] = r.Seq
		}
	}
	return nil
}

func (c *confirmingSinks) WriteSeries(_ context.Context, b *Batch) error {
	return c.write("series", &c.seriesDown, b)
}

func (c *confirmingSinks) WriteRegisters(_ context.Context, b *Batch) error {
	return c.write("registers", &c.regsDown, b)
}

func (c *confirmingSinks) SaveStates(context.Context, []Snapshot) error           { return nil }
func (c *confirmingSinks) LoadStates(context.Context, func(Snapshot) error) error { return nil }

// has reports whether sink confirmed seq of meter.
func (c *confirmingSinks) has(sink, meterID string, seq uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.confirmed[sink][meterID] {
		if s == seq {
			return true
		}
	}
	return false
}

func (c *confirmingSinks) count(sink string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, seqs := range c.confirmed[sink] {
		n += len(seqs)
	}
	return n
}

// watchedJournal checks, at every checkpoint, that both sinks confirmed
// every record the checkpoint covers.
type watchedJournal struct {
	*journal.Journal
	sinks      *confirmingSinks
	mu         sync.Mutex
	records    map[uint64]meter.Message // offset → the one message of the record
	violations int
	first      []string // the first few violations
}

func (w *watchedJournal) Checkpoint(offset uint64) error {
	w.mu.Lock()
	for off := w.Journal.Checkpointed() + 1; off <= offset; off++ {
		msg := w.records[off]
		for _, sink := range []string{"series", "registers"} {
			if !w.sinks.has(sink, msg.Meter, msg.Seq) {
				if w.violations++; w.violations <= 3 {
					w.first = append(w.first, fmt.Sprintf("checkpoint %d covers offset %d (%s seq %d), which %s has not confirmed", offset, off, msg.Meter, msg.Seq, sink))
				}
			}
		}
	}
	w.mu.Unlock()
	return w.Journal.Checkpoint(offset)
}

// With one store down the other goes on taking batches, but the checkpoint
// never passes a record the store that is down has not confirmed; once it
// is back, it gets the backlog in order and the checkpoint catches up.
func TestCheckpointWaitsForBothSinks(t *testing.T) {
	for _, down := range []string{"series", "registers"} {
		t.Run(down+" down", func(t *testing.T) {
			j, err := journal.Open(journal.Options{Dir: t.TempDir(), NoSync: true})
			require.NoError(t, err)
			defer j.Close()
			sinks := newConfirming()
			src := &watchedJournal{Journal: j, sinks: sinks, records: map[uint64]meter.Message{}}
			p := NewPipeline(PipelineConfig{Workers: 2, BatchSize: 40, FlushInterval: 5 * time.Millisecond, SnapshotInterval: 20 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}, src, sinks, sinks, nil)
			require.NoError(t, p.Start(context.Background()))

			const meters = 8
			t0 := time.Now().Add(-48 * time.Hour).Truncate(15 * time.Minute)
			seq := 0
			appendRounds := func(rounds int) {
				for range rounds {
					seq++
					at := t0.Add(time.Duration(seq) * 15 * time.Minute)
					for m := range meters {
						id := fmt.Sprintf("E-%d", m)
						msg := meter.Message{Meter: id, Seq: uint64(seq), Readings: []meter.Reading{{Channel: "1-0:1.8.0", Time: at, Value: meter.Value(seq * 100)}}}
						src.mu.Lock() // before Append: the checkpoint may cover the record as soon as it is durable
						off, err := j.Append(context.Background(), AppendRecord(nil, at, device.Identity{ID: id, Utility: meter.Electricity}, []meter.Message{msg}))
						require.NoError(t, err)
						src.records[off] = msg
						src.mu.Unlock()
					}
				}
			}
			appendRounds(30)
			require.Eventually(t, func() bool { return j.Checkpointed() == j.Head() }, 5*time.Second, 5*time.Millisecond)
			before := j.Checkpointed()

			isDown := &sinks.seriesDown
			up := "registers"
			if down == "registers" {
				isDown, up = &sinks.regsDown, "series"
			}
			isDown.Store(true)
			appendRounds(60)
			require.Eventually(t, func() bool { return sinks.count(up) > 30*meters }, 5*time.Second, 5*time.Millisecond,
				"the store that is up takes the batch in flight")
			require.Eventually(t, func() bool { return sinks.failures.Load() > 5 }, 5*time.Second, 5*time.Millisecond)
			time.Sleep(100 * time.Millisecond) // several snapshot intervals
			assert.Equal(t, before, j.Checkpointed(), "the checkpoint never passes what %s has not confirmed", down)
			assert.Less(t, sinks.count(up), 90*meters, "a worker waits for both stores: the store that is up is not fed the whole backlog")

			isDown.Store(false)
			require.Eventually(t, func() bool { return j.Checkpointed() == j.Head() }, 10*time.Second, 5*time.Millisecond)
			require.NoError(t, p.Stop())

			src.mu.Lock()
			assert.Zero(t, src.violations, "checkpoints past unconfirmed records; the first: %v", src.first)
			src.mu.Unlock()
			for _, sink := range []string{"series", "registers"} {
				for m := range meters {
					id := fmt.Sprintf("E-%d", m)
					sinks.mu.Lock()
					got := append([]uint64(nil), sinks.confirmed[sink][id]...)
					sinks.mu.Unlock()
					want := make([]uint64, 90)
					for i := range want {
						want[i] = uint64(i + 1)
					}
					assert.Equal(t, want, got, "%s got every message of %s once, in order", sink, id)
				}
			}
			assert.True(t, sinks.overlapped.Load(), "the two stores were written at the same time")
		})
	}
}
