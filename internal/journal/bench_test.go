package journal

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkAppendParallel measures durable appends (fsync on) of
// recordSize-byte records from many goroutines, as meters publishing
// concurrently would make them. The headline is goroutines=64.
func BenchmarkAppendParallel(b *testing.B) {
	for _, g := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			benchAppend(b, Options{}, g)
		})
	}
}

// BenchmarkAppendNoSync is the same load without fsync: the cost of the
// journal's own work (framing, batching, waking).
func BenchmarkAppendNoSync(b *testing.B) {
	benchAppend(b, Options{NoSync: true}, 64)
}

func benchAppend(b *testing.B, opts Options, goroutines int) {
	opts.Dir = b.TempDir()
	// Warnings (such as a roll that found no prepared segment) show up in
	// the benchmark output.
	opts.Logger = slog.New(slog.NewTextHandler(b.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	j, err := Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	data := payload("benchmark")
	ctx := context.Background()
	b.SetBytes(recordSize)
	b.ReportAllocs()
	var taken atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for taken.Add(1) <= int64(b.N) {
				if _, err := j.Append(ctx, data); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	s := j.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	b.ReportMetric(float64(s.Records)/float64(s.Commits), "records/commit")
}

// BenchmarkRead measures replay: a reader going through records already on
// disk (in the page cache), checksums included.
func BenchmarkRead(b *testing.B) {
	j, err := Open(Options{Dir: b.TempDir(), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	batch := make([][]byte, 0, 1000)
	for i := 0; i < b.N; i += len(batch) {
		batch = batch[:0]
		for k := i; k < b.N && len(batch) < cap(batch); k++ {
			batch = append(batch, payload("benchmark"))
		}
		if _, err := j.AppendBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	r, err := j.Reader(1)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.SetBytes(recordSize)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, _, err := r.Next(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
