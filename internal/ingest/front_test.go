package ingest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/journal"
	"github.com/meterflow/meterflow/internal/meter"
)

func TestRecordRoundTrip(t *testing.T) {
	at := time.UnixMilli(1763769600123).UTC()
	msgs := []meter.Message{
		{Meter: "E-1", Seq: 7, Readings: []meter.Reading{{Channel: "1-0:1.8.0", Time: at, Value: 12345678}, {Channel: "1-0:32.7.0", Time: at, Value: -5}}},
		{Meter: "E-1", Seq: 8, Readings: []meter.Reading{{Channel: "1-0:1.8.0", Time: at.Add(time.Minute), Value: 12345999}}},
	}
	rec, err := DecodeRecord(AppendRecord(nil, at, "E-1", meter.Electricity, "EM-5D", msgs))
	require.NoError(t, err)
	assert.Equal(t, "E-1", rec.Meter)
	assert.Equal(t, meter.Electricity, rec.Utility)
	assert.Equal(t, "EM-5D", rec.Model)
	assert.True(t, rec.Received.Equal(at))
	assert.Equal(t, msgs, rec.Messages)
}

// Records written before models were recorded (version 1) still replay.
func TestRecordVersion1(t *testing.T) {
	at := time.UnixMilli(1763769600123).UTC()
	msgs := []meter.Message{{Meter: "W-1", Seq: 3, Readings: []meter.Reading{{Channel: "8-0:1.0.0", Time: at, Value: 42}}}}
	v2 := AppendRecord(nil, at, "W-1", meter.Water, "", msgs)
	// Version 1 is version 2 without the model's length byte.
	v1 := append([]byte{1}, v2[1:1+6+1+3+1]...)
	v1 = append(v1, v2[1+6+1+3+1+1:]...)
	rec, err := DecodeRecord(v1)
	require.NoError(t, err)
	assert.Equal(t, "W-1", rec.Meter)
	assert.Equal(t, meter.Water, rec.Utility)
	assert.Empty(t, rec.Model)
	assert.Equal(t, msgs, rec.Messages)
}

func FuzzDecodeRecord(f *testing.F) {
	at := time.UnixMilli(1763769600123)
	f.Add(AppendRecord(nil, at, "E-1", meter.Gas, "G4", []meter.Message{{Meter: "E-1", Seq: 1, Readings: []meter.Reading{{Channel: "7-0:3.0.0", Time: at, Value: 1}}}}))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := DecodeRecord(data) // must never panic
		if err != nil {
			return
		}
		again, err := DecodeRecord(AppendRecord(nil, rec.Received, rec.Meter, rec.Utility, rec.Model, rec.Messages))
		require.NoError(t, err)
		require.Equal(t, len(rec.Messages), len(again.Messages))
	})
}

func TestFrontRejectsAndBacksOff(t *testing.T) {
	j, err := journal.Open(journal.Options{Dir: t.TempDir(), NoSync: true, MaxBytes: 4096, MaxRecordBytes: 1024, SegmentBytes: 1 << 20})
	require.NoError(t, err)
	defer j.Close()
	f := NewFront(FrontConfig{FullWait: 50 * time.Millisecond}, j, nil)
	id := device.Identity{ID: "E-1", Utility: meter.Electricity}
	now := time.Now()

	err = f.Ingest(context.Background(), id, []byte(`{"v":1`), now)
	var rej *Rejected
	require.ErrorAs(t, err, &rej)
	assert.Equal(t, "malformed_json", rej.RejectReason())
	assert.Zero(t, j.Head(), "a refused payload is not journaled")

	// Fill the journal's budget: the front then reports busy, and nothing
	// it refused is in the journal.
	var busy *Busy
	for seq := uint64(1); ; seq++ {
		err = f.Ingest(context.Background(), id, payload("E-1", seq, now.Truncate(time.Second), meter.Value(seq)), now)
		if err != nil {
			break
		}
		require.Less(t, seq, uint64(1000), "the budget must fill")
	}
	require.True(t, errors.As(err, &busy) && busy.Busy(), "got %v", err)
	head := j.Head()

	// Once the stores confirm, space frees and readings are taken again.
	require.NoError(t, j.Checkpoint(head))
	require.NoError(t, f.Ingest(context.Background(), id, payload("E-1", 5000, now.Truncate(time.Second), 1), now))
	assert.Equal(t, head+1, j.Head())
}

// The front holds payloads back in proportion to how far the stores lag
// behind the journal, from a quarter of the budget up to MaxDelay at the
// budget, and not at all while they keep up.
func TestFrontBackpressure(t *testing.T) {
	j, err := journal.Open(journal.Options{Dir: t.TempDir(), NoSync: true})
	require.NoError(t, err)
	defer j.Close()
	var pending int64
	var held []time.Duration
	f := NewFront(FrontConfig{
		Backlog:  func() (int64, int64) { return pending, 1000 },
		MaxDelay: 100 * time.Millisecond,
		sleep:    func(_ context.Context, d time.Duration) { held = append(held, d) },
	}, j, nil)
	id := device.Identity{ID: "E-1", Utility: meter.Electricity}
	at := time.Unix(1763769600, 0)
	for i, c := range []struct {
		pending int64
		hold    time.Duration
	}{{0, 0}, {250, 0}, {400, 20 * time.Millisecond}, {625, 50 * time.Millisecond}, {1000, 100 * time.Millisecond}, {5000, 100 * time.Millisecond}, {10, 0}} {
		pending, held = c.pending, nil
		// Each case a little later than the last, past the recompute interval.
		now := at.Add(time.Duration(i) * time.Second)
		require.NoError(t, f.Ingest(context.Background(), id, payload("E-1", uint64(i+1), now.Truncate(time.Second), meter.Value(i+1)), now))
		if c.hold == 0 {
			assert.Empty(t, held, "pending %d", c.pending)
		} else {
			require.Len(t, held, 1, "pending %d", c.pending)
			assert.InDelta(t, float64(c.hold), float64(held[0]), float64(time.Millisecond), "pending %d", c.pending)
		}
	}
}
