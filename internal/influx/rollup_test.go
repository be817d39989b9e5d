package influx_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/influx"
	"github.com/meterflow/meterflow/internal/ingest"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/portal"
	"github.com/meterflow/meterflow/internal/testenv"
	"github.com/meterflow/meterflow/internal/vee"
)

func openInflux(t *testing.T) *influx.Client {
	t.Helper()
	inf := testenv.InfluxDB(t)
	c, err := influx.Open(influx.Config{URL: inf.URL, Org: inf.Org, Bucket: inf.Bucket, Token: inf.Token})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// intervalsOf returns n 15-minute intervals of a meter from start, each
// with its own quantity (thousandths), under one region.
func intervalsOf(id string, u meter.Utility, region string, ch meter.Channel, start time.Time, n int, base meter.Value) []ingest.Interval {
	var out []ingest.Interval
	for i := range n {
		out = append(out, ingest.Interval{Meter: id, Utility: u, Region: region, Interval: vee.Interval{
			Channel: ch, Start: start.Add(time.Duration(i) * 15 * time.Minute), Quantity: base + meter.Value(i*37%11),
		}})
	}
	return out
}

type fleetKey struct {
	at                       time.Time
	utility, region, channel string
}

type fleetWant struct {
	quantity float64
	meters   map[string]bool
}

// Fleet rollups are per utility, region and channel; a meter without a
// region counts under "unknown"; the regions of a utility add up to its
// total in every window; per-meter rollups stay one row per meter even for
// a meter that changed region within the window.
func TestFleetRollupsByRegion(t *testing.T) {
	ctx := context.Background()
	c := openInflux(t)
	now := time.Now().UTC()
	h0 := now.Truncate(time.Hour).Add(-5 * time.Hour)
	imp, exp := meter.Channel("1-0:1.8.0"), meter.Channel("1-0:2.8.0")

	var ivs []ingest.Interval
	ivs = append(ivs, intervalsOf("E-N1", meter.Electricity, "north", imp, h0, 12, 250)...)
	ivs = append(ivs, intervalsOf("E-N1", meter.Electricity, "north", exp, h0, 4, 90)...)
	ivs = append(ivs, intervalsOf("E-N2", meter.Electricity, "north", imp, h0, 12, 410)...)
	ivs = append(ivs, intervalsOf("E-S1", meter.Electricity, "south", imp, h0, 12, 1333)...)
	ivs = append(ivs, intervalsOf("E-X", meter.Electricity, "", imp, h0, 12, 77)...)
	ivs = append(ivs, intervalsOf("W-N1", meter.Water, "north", "8-0:1.0.0", h0, 12, 5)...)
	// E-M moves from north to a region whose name needs escaping, mid-hour.
	ivs = append(ivs, intervalsOf("E-M", meter.Electricity, "north", imp, h0, 6, 600)...)
	ivs = append(ivs, intervalsOf("E-M", meter.Electricity, "south west, 2", imp, h0.Add(90*time.Minute), 6, 700)...)

	sink := influx.NewSink(c)
	sink.Rollups = influx.NewRollups(c, slog.New(slog.DiscardHandler), now)
	require.NoError(t, sink.WriteSeries(ctx, &ingest.Batch{Intervals: ivs}))
	require.NoError(t, sink.Rollups.RunOnce(ctx))

	// What the rollups must hold, from the intervals written.
	want := map[portal.Step]map[fleetKey]*fleetWant{portal.Step1h: {}, portal.Step1d: {}}
	meterHour := map[string]float64{} // meter|hour → quantity of 1-0:1.8.0
	for _, iv := range ivs {
		region := iv.Region
		if region == "" {
			region = influx.UnknownRegion
		}
		for step, span := range map[portal.Step]time.Duration{portal.Step1h: time.Hour, portal.Step1d: 24 * time.Hour} {
			k := fleetKey{iv.Start.Truncate(span), string(iv.Utility), region, string(iv.Channel)}
			w := want[step][k]
			if w == nil {
				w = &fleetWant{meters: map[string]bool{}}
				want[step][k] = w
			}
			w.quantity += iv.Quantity.Float()
			w.meters[iv.Meter] = true
		}
		if iv.Channel == imp {
			meterHour[fmt.Sprintf("%s|%d", iv.Meter, iv.Start.Truncate(time.Hour).Unix())] += iv.Quantity.Float()
		}
	}

	for _, step := range []portal.Step{portal.Step1h, portal.Step1d} {
		t.Run(string(step), func(t *testing.T) {
			pts, err := c.FleetUsage(ctx, influx.FleetFilter{}, h0.Add(-24*time.Hour), now.Add(time.Hour), step)
			require.NoError(t, err)
			got := map[fleetKey]influx.FleetPoint{}
			for _, p := range pts {
				got[fleetKey{p.Time, p.Utility, p.Region, p.Channel}] = p
			}
			require.Len(t, got, len(want[step]), "one row per window, utility, region and channel")
			for k, w := range want[step] {
				p, ok := got[k]
				require.True(t, ok, "missing fleet row %+v", k)
				assert.InDelta(t, w.quantity, p.Quantity, 1e-9, "%+v", k)
				assert.EqualValues(t, len(w.meters), p.Meters, "%+v", k)
			}

			// In every window the regions of a utility and channel add up to
			// the total of its usage_15m, read straight from InfluxDB.
			totals := map[fleetKey]float64{}
			for k, p := range got {
				totals[fleetKey{at: k.at, utility: k.utility, channel: k.channel}] += p.Quantity
			}
			span := time.Hour
			if step == portal.Step1d {
				span = 24 * time.Hour
			}
			for k, sum := range totals {
				assert.InDelta(t, rawTotal(t, c, k.utility, k.channel, k.at, span), sum, 1e-9, "%+v", k)
			}
		})
	}

	// The meter that moved counts in both regions' meters in the hour it
	// moved, with its quantity split between them...
	moved := h0.Add(time.Hour)
	pts, err := c.FleetUsage(ctx, influx.FleetFilter{Utility: "electricity", Channel: string(imp)}, moved, moved.Add(time.Hour), portal.Step1h)
	require.NoError(t, err)
	byRegion := map[string]int64{}
	for _, p := range pts {
		byRegion[p.Region] = p.Meters
	}
	assert.Equal(t, map[string]int64{"north": 3, "south": 1, "south west, 2": 1, influx.UnknownRegion: 1}, byRegion)
	// ...but its own hourly rollup is one row holding all of it.
	for _, h := range []time.Time{h0, moved, h0.Add(2 * time.Hour)} {
		got := meterRollup(t, c, influx.MeasurementUsage1h, "E-M", h)
		require.Len(t, got, 1, "one usage_1h row for E-M at %s", h)
		assert.InDelta(t, meterHour[fmt.Sprintf("E-M|%d", h.Unix())], got[0], 1e-9)
	}

	// Filters: one region, and the meters without one.
	for region, meters := range map[string][]string{"south": {"E-S1"}, influx.UnknownRegion: {"E-X"}} {
		pts, err := c.FleetUsage(ctx, influx.FleetFilter{Utility: "electricity", Region: region, Channel: string(imp)}, h0, h0.Add(3*time.Hour), portal.Step1h)
		require.NoError(t, err)
		require.Len(t, pts, 3, region)
		for _, p := range pts {
			assert.Equal(t, region, p.Region)
			assert.InDelta(t, meterHour[fmt.Sprintf("%s|%d", meters[0], p.Time.Unix())], p.Quantity, 1e-9)
		}
	}

	// Raw intervals carry the region tag only when there is one.
	assert.Equal(t, 12, countPoints(t, c, `r.meter == "E-S1" and r.region == "south"`))
	assert.Equal(t, 12, countPoints(t, c, `r.meter == "E-X" and not exists r.region`))
}

// A fleet row written before rollups had regions is not counted with the
// rows that replace it.
func TestFleetUsageSkipsRowsWithoutRegion(t *testing.T) {
	ctx := context.Background()
	c := openInflux(t)
	h := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	ts := h.UnixMilli()
	require.NoError(t, c.WriteLines(ctx, fmt.Sprintf("fleet_1h,channel=1-0:1.8.0,utility=electricity quantity=10,meters=2i %d\n"+
		"fleet_1h,channel=1-0:1.8.0,region=north,utility=electricity quantity=4,meters=1i %d\n"+
		"fleet_1h,channel=1-0:1.8.0,region=south,utility=electricity quantity=6,meters=1i %d", ts, ts, ts)))
	pts, err := c.FleetUsage(ctx, influx.FleetFilter{Utility: "electricity"}, h, h.Add(time.Hour), portal.Step1h)
	require.NoError(t, err)
	sum := 0.0
	for _, p := range pts {
		sum += p.Quantity
	}
	assert.Len(t, pts, 2)
	assert.InDelta(t, 10, sum, 1e-9)

	_, err = c.FleetUsage(ctx, influx.FleetFilter{}, h, h.Add(time.Hour), portal.Step15m)
	require.Error(t, err, "the fleet has no 15-minute rollup")
}

// rawTotal sums usage_15m of one utility and channel over [from, from+span).
func rawTotal(t *testing.T, c *influx.Client, utility, channel string, from time.Time, span time.Duration) float64 {
	t.Helper()
	q := fmt.Sprintf(`from(bucket: %q) |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == "usage_15m" and r._field == "quantity" and r.utility == %q and r.channel == %q)
  |> group() |> sum()`, c.Config().Bucket, from.Format(time.RFC3339Nano), from.Add(span-time.Millisecond).Format(time.RFC3339Nano), utility, channel)
	return sumQuery(t, c, q)
}

func meterRollup(t *testing.T, c *influx.Client, measurement, id string, at time.Time) []float64 {
	t.Helper()
	q := fmt.Sprintf(`from(bucket: %q) |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == %q and r._field == "quantity" and r.meter == %q and r.channel == "1-0:1.8.0")`,
		c.Config().Bucket, at.Format(time.RFC3339Nano), at.Add(time.Minute).Format(time.RFC3339Nano), measurement, id)
	res, err := c.Query(context.Background(), q)
	require.NoError(t, err)
	defer res.Close()
	var out []float64
	for res.Next() {
		if v, ok := res.Record().Value().(float64); ok {
			out = append(out, v)
		}
	}
	require.NoError(t, res.Err())
	return out
}

func countPoints(t *testing.T, c *influx.Client, pred string) int {
	t.Helper()
	q := fmt.Sprintf(`from(bucket: %q) |> range(start: -30d, stop: 1d)
  |> filter(fn: (r) => r._measurement == "usage_15m" and r._field == "quantity" and %s)
  |> group() |> count()`, c.Config().Bucket, pred)
	res, err := c.Query(context.Background(), q)
	require.NoError(t, err)
	defer res.Close()
	n := 0
	for res.Next() {
		if v, ok := res.Record().Value().(int64); ok {
			n += int(v)
		}
	}
	require.NoError(t, res.Err())
	return n
}

func sumQuery(t *testing.T, c *influx.Client, q string) float64 {
	t.Helper()
	res, err := c.Query(context.Background(), q)
	require.NoError(t, err)
	defer res.Close()
	sum := 0.0
	for res.Next() {
		if v, ok := res.Record().Value().(float64); ok {
			sum += v
		}
	}
	require.NoError(t, res.Err())
	return sum
}
