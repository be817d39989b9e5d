package ingest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/journal"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/protocol"
)

// countingSinks discard what they are given, counting readings.
type countingSinks struct{ readings atomic.Int64 }

func (c *countingSinks) WriteSeries(_ context.Context, b *Batch) error {
	c.readings.Add(int64(len(b.Readings)))
	return nil
}
func (c *countingSinks) WriteRegisters(context.Context, *Batch) error           { return nil }
func (c *countingSinks) SaveStates(context.Context, []Snapshot) error           { return nil }
func (c *countingSinks) LoadStates(context.Context, func(Snapshot) error) error { return nil }

func payload(meterID string, seq uint64, at time.Time, reg meter.Value) []byte {
	return protocol.AppendCompact(nil, meter.Message{Meter: meterID, Seq: seq, Readings: []meter.Reading{
		{Channel: "1-0:1.8.0", Time: at, Value: reg},
		{Channel: "1-0:1.7.0", Time: at, Value: 420},
		{Channel: "1-0:32.7.0", Time: at, Value: 231_400},
		{Channel: "1-0:31.7.0", Time: at, Value: 1_830},
	}})
}

// BenchmarkFront measures the broker-side cost of one 4-channel message:
// decode, encode the journal record and a group-committed, fsynced append,
// from 64 concurrent meters.
func BenchmarkFront(b *testing.B) {
	j, err := journal.Open(journal.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	f := NewFront(FrontConfig{}, j, nil)
	now := time.Now().Truncate(time.Second)
	var n atomic.Uint64
	b.SetParallelism(32) // 64 publishers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := device.Identity{ID: fmt.Sprintf("M-%d", n.Add(1)), Utility: meter.Electricity}
		seq := uint64(0)
		for pb.Next() {
			seq++
			if err := f.Ingest(context.Background(), id, payload(id.ID, seq, now, meter.Value(seq)), now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)*4/b.Elapsed().Seconds(), "readings/s")
}

// BenchmarkPipeline measures the worker side: journal read, record decode,
// VEE and batching for 10,000 meters, with sinks that discard.
func BenchmarkPipeline(b *testing.B) {
	benchPipeline(b, &countingSinks{})
}

// latencySinks count readings like countingSinks, and take as long as a store
// would to confirm a write: a fixed round trip plus a time per row. They
// sleep rather than spin, as a worker waits for a store on another
// process, so the benchmark shows how much of the stores' latency the
// workers hide (writing both at once, filling the next batch meanwhile).
type latencySinks struct {
	countingSinks
	perCall, perRow time.Duration
}

func (l *latencySinks) wait(b *Batch) {
	time.Sleep(l.perCall + time.Duration(b.len())*l.perRow)
}

func (l *latencySinks) WriteSeries(ctx context.Context, b *Batch) error {
	l.wait(b)
	return l.countingSinks.WriteSeries(ctx, b)
}

func (l *latencySinks) WriteRegisters(_ context.Context, b *Batch) error {
	l.wait(b)
	return nil
}

// BenchmarkPipelineStoreLatency is BenchmarkPipeline with stores that take
// 2 ms plus 10 µs per row to confirm each write (a batch of 2,000 rows:
// 22 ms), about what InfluxDB and PostgreSQL take on a busy machine
// (docs/performance.md).
func BenchmarkPipelineStoreLatency(b *testing.B) {
	benchPipeline(b, &latencySinks{perCall: 2 * time.Millisecond, perRow: 10 * time.Microsecond})
}

type benchSinks interface {
	SeriesSink
	RegisterSink
	read() int64
}

func (c *countingSinks) read() int64 { return c.readings.Load() }

func benchPipeline(b *testing.B, sinks benchSinks) {
	j, err := journal.Open(journal.Options{Dir: b.TempDir(), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	const meters = 10000
	t0 := time.Now().Add(-365 * 24 * time.Hour).Truncate(15 * time.Minute)
	var buf []byte
	for i := 0; i < b.N; i++ {
		m := i % meters
		seq := uint64(i/meters + 1)
		at := t0.Add(time.Duration(seq) * 15 * time.Minute)
		msg := meter.Message{Meter: fmt.Sprintf("M-%05d", m), Seq: seq, Readings: []meter.Reading{
			{Channel: "1-0:1.8.0", Time: at, Value: meter.Value(seq * 130)},
			{Channel: "1-0:1.7.0", Time: at, Value: 420},
			{Channel: "1-0:32.7.0", Time: at, Value: 231_400},
			{Channel: "1-0:31.7.0", Time: at, Value: 1_830},
		}}
		buf = AppendRecord(buf[:0], at, device.Identity{ID: msg.Meter, Utility: meter.Electricity}, []meter.Message{msg})
		if _, err := j.Append(context.Background(), buf); err != nil {
			b.Fatal(err)
		}
	}
	p := NewPipeline(PipelineConfig{Workers: 2, SnapshotInterval: time.Hour}, j, sinks, sinks, nil)
	b.ResetTimer()
	if err := p.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	for sinks.read() < int64(b.N)*4 {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)*4/b.Elapsed().Seconds(), "readings/s")
	if err := p.Stop(); err != nil {
		b.Fatal(err)
	}
}
