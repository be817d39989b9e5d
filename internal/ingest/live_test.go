package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/journal"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/protocol"
)

// The front counts the readings it accepts by utility, and only those.
func TestFrontCountsReadingsByUtility(t *testing.T) {
	j, err := journal.Open(journal.Options{Dir: t.TempDir(), NoSync: true})
	require.NoError(t, err)
	defer j.Close()
	f := NewFront(FrontConfig{}, j, nil)
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	assert.Equal(t, map[meter.Utility]uint64{meter.Electricity: 0, meter.Water: 0, meter.Gas: 0}, f.Readings())

	elec := device.Identity{ID: "E-1", Utility: meter.Electricity}
	for seq := uint64(1); seq <= 3; seq++ {
		require.NoError(t, f.Ingest(ctx, elec, payload("E-1", seq, now, meter.Value(seq)), now))
	}
	gas := device.Identity{ID: "G-1", Utility: meter.Gas}
	require.NoError(t, f.Ingest(ctx, gas, protocol.AppendCompact(nil, meter.Message{Meter: "G-1", Seq: 1, Readings: []meter.Reading{
		{Channel: "7-0:3.0.0", Time: now, Value: 5000}}}), now))
	err = f.Ingest(ctx, gas, []byte(`{"v":1`), now)
	require.Error(t, err)

	assert.Equal(t, map[meter.Utility]uint64{meter.Electricity: 12, meter.Water: 0, meter.Gas: 1}, f.Readings())
}

// StoreDelay is the time from the receipt of the oldest payload of the
// last written batch to its write: at least the age it had when it came.
func TestPipelineStoreDelay(t *testing.T) {
	j, err := journal.Open(journal.Options{Dir: t.TempDir(), NoSync: true})
	require.NoError(t, err)
	defer j.Close()
	sinks := newFlaky()
	p := NewPipeline(PipelineConfig{Workers: 1, FlushInterval: 10 * time.Millisecond, SnapshotInterval: 50 * time.Millisecond}, j, sinks, sinks, nil)
	require.NoError(t, p.Start(context.Background()))
	defer func() { require.NoError(t, p.Stop()) }()
	assert.Zero(t, p.StoreDelay(), "nothing written yet")

	received := time.Now().Add(-time.Hour)
	at := received.Truncate(15 * time.Minute)
	msg := meter.Message{Meter: "E-1", Seq: 1, Readings: []meter.Reading{{Channel: "1-0:1.8.0", Time: at, Value: 100}}}
	_, err = j.Append(context.Background(), AppendRecord(nil, received, "E-1", meter.Electricity, "", []meter.Message{msg}))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sinks.count("E-1") == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return p.StoreDelay() > 0 }, 5*time.Second, 5*time.Millisecond)
	assert.GreaterOrEqual(t, p.StoreDelay(), time.Hour, "the payload waited an hour before it came to the pipeline")
}
