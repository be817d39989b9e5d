package influx

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rollup measurements (docs/influxdb.md). Per meter and channel: usage_1h
// and usage_1d. Per utility, region and channel over the whole fleet:
// fleet_1h and fleet_1d, with the number of meters that reported. Windows
// are UTC hours and days; the 15-minute level is the interval grid itself
// (usage_15m).
const (
	MeasurementUsage1h = "usage_1h"
	MeasurementUsage1d = "usage_1d"
	MeasurementFleet1h = "fleet_1h"
	MeasurementFleet1d = "fleet_1d"
)

// UnknownRegion is the region tag of fleet rows that sum the meters without
// a region (no service point yet, or a premise without one). A tag value
// cannot be empty in line protocol, and an explicit value keeps these meters
// in every sum over regions, so that the regions of a utility always add up
// to its total. A premise region literally named "unknown" shares the row.
const UnknownRegion = "unknown"

// Rollups keeps the hourly and daily rollups current. The sink marks every
// hour it writes intervals into; a periodic pass recomputes the marked hours
// from usage_15m, then the days that contain them. Recomputing a whole window
// and writing it with the window's timestamp makes every pass idempotent, so
// an interval that changes later (an estimate replaced by a measurement)
// simply makes its window dirty again.
type Rollups struct {
	c   *Client
	log *slog.Logger
	// MaxWindows bounds the hours recomputed per pass (default 200), so a
	// replayed backlog is caught up over several passes.
	MaxWindows int

	mu    sync.Mutex
	hours map[int64]struct{}
	days  map[int64]struct{}
}

// NewRollups returns a rollup keeper. It starts with the last two days
// marked dirty, since marks made before a restart are not kept.
func NewRollups(c *Client, log *slog.Logger, now time.Time) *Rollups {
	r := &Rollups{c: c, log: log, MaxWindows: 200, hours: map[int64]struct{}{}, days: map[int64]struct{}{}}
	h := now.UTC().Truncate(time.Hour)
	for i := 0; i < 48; i++ {
		r.hours[h.Add(-time.Duration(i)*time.Hour).UnixMilli()] = struct{}{}
	}
	return r
}

// Touch marks the hour holding t.
func (r *Rollups) Touch(t time.Time) {
	h := t.UTC().Truncate(time.Hour).UnixMilli()
	r.mu.Lock()
	r.hours[h] = struct{}{}
	r.mu.Unlock()
}

// Dirty reports how many hours wait to be recomputed.
func (r *Rollups) Dirty() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.hours)
}

// Run recomputes dirty windows every interval until ctx ends.
func (r *Rollups) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("rollup pass failed; will retry", "err", err)
		}
	}
}

// RunOnce recomputes the dirty hours (oldest first, up to MaxWindows), then
// the days that hold them. A window that fails stays dirty.
func (r *Rollups) RunOnce(ctx context.Context) error {
	r.mu.Lock()
	hours := make([]int64, 0, len(r.hours))
	for h := range r.hours {
		hours = append(hours, h)
	}
	r.mu.Unlock()
	slices.Sort(hours)
	if len(hours) > r.MaxWindows {
		hours = hours[:r.MaxWindows]
	}
	for _, h := range hours {
		r.mu.Lock()
		delete(r.hours, h) // a Touch from now on marks it again
		r.mu.Unlock()
		start := time.UnixMilli(h).UTC()
		if err := r.window(ctx, start, time.Hour, MeasurementUsage1h, MeasurementFleet1h); err != nil {
			r.Touch(start)
			return err
		}
		r.mu.Lock()
		r.days[start.Truncate(24*time.Hour).UnixMilli()] = struct{}{}
		r.mu.Unlock()
	}
	r.mu.Lock()
	days := make([]int64, 0, len(r.days))
	for d := range r.days {
		days = append(days, d)
	}
	clear(r.days)
	r.mu.Unlock()
	slices.Sort(days)
	for i, d := range days {
		if err := r.window(ctx, time.UnixMilli(d).UTC(), 24*time.Hour, MeasurementUsage1d, MeasurementFleet1d); err != nil {
			r.mu.Lock()
			for _, left := range days[i:] {
				r.days[left] = struct{}{}
			}
			r.mu.Unlock()
			return err
		}
	}
	return nil
}

type meterKey struct{ meter, utility, channel string }

type fleetKey struct{ utility, region, channel string }

type fleetSum struct {
	quantity float64
	meters   int
}

// window sums usage_15m per meter, channel and region over
// [start, start+span) and writes the per-meter and fleet rollups stamped
// with start.
//
// Per-meter rows add a meter's regions together: a meter whose premise
// moved to another region has usage_15m points under both in the window,
// and its usage_1h must still be one row. Fleet rows keep them apart, so a
// meter that moved within a window counts in the meters of both regions,
// while its quantity is split between them and the sum over a utility's
// regions stays its total.
//
// The query stops one millisecond short of the window's end: Flux in
// InfluxDB 1.8 includes a point at exactly the stop time (2.x excludes it),
// and points are written with millisecond precision, so this is exact on both.
func (r *Rollups) window(ctx context.Context, start time.Time, span time.Duration, perMeter, fleet string) error {
	// Points without a region tag (meters without one, and everything
	// written before regions were recorded) have no region column; group
	// leaves it null for them, read below as "".
	q := fmt.Sprintf(`from(bucket: %q)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == %q and r._field == "quantity")
  |> group(columns: ["meter", "utility", "channel", "region"])
  |> sum()`, r.c.cfg.Bucket, start.Format(time.RFC3339Nano), start.Add(span-time.Millisecond).Format(time.RFC3339Nano), MeasurementUsage)
	res, err := r.c.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("rollup query %s: %w", start.Format(time.RFC3339), err)
	}
	defer res.Close()
	meters := map[meterKey]float64{}
	sums := map[fleetKey]*fleetSum{}
	for res.Next() {
		rec := res.Record()
		v, ok := rec.Value().(float64)
		if !ok {
			continue
		}
		m, _ := rec.ValueByKey("meter").(string)
		u, _ := rec.ValueByKey("utility").(string)
		ch, _ := rec.ValueByKey("channel").(string)
		region, _ := rec.ValueByKey("region").(string)
		if region == "" {
			region = UnknownRegion
		}
		meters[meterKey{m, u, ch}] += v
		// One row per meter, channel and region: each adds one meter.
		k := fleetKey{u, region, ch}
		s := sums[k]
		if s == nil {
			s = &fleetSum{}
			sums[k] = s
		}
		s.quantity += v
		s.meters++
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("rollup read %s: %w", start.Format(time.RFC3339), err)
	}
	var sb strings.Builder
	ts := strconv.FormatInt(start.UnixMilli(), 10)
	for k, v := range meters {
		sb.WriteString(perMeter)
		sb.WriteString(",channel=")
		writeEscaped(&sb, k.channel)
		sb.WriteString(",meter=")
		writeEscaped(&sb, k.meter)
		sb.WriteString(",utility=")
		writeEscaped(&sb, k.utility)
		sb.WriteString(" quantity=")
		sb.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
		sb.WriteByte(' ')
		sb.WriteString(ts)
		sb.WriteByte('\n')
	}
	for k, s := range sums {
		sb.WriteString(fleet)
		sb.WriteString(",channel=")
		writeEscaped(&sb, k.channel)
		sb.WriteString(",region=")
		writeEscaped(&sb, k.region)
		sb.WriteString(",utility=")
		writeEscaped(&sb, k.utility)
		sb.WriteString(" quantity=")
		sb.WriteString(strconv.FormatFloat(s.quantity, 'f', -1, 64))
		sb.WriteString(",meters=")
		sb.WriteString(strconv.Itoa(s.meters))
		sb.WriteString("i ")
		sb.WriteString(ts)
		sb.WriteByte('\n')
	}
	if sb.Len() == 0 {
		return nil
	}
	if err := r.c.WriteLines(ctx, sb.String()); err != nil {
		return fmt.Errorf("rollup write %s: %w", start.Format(time.RFC3339), err)
	}
	return nil
}
