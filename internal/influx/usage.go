package influx

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/meterflow/meterflow/internal/portal"
)

var _ portal.UsageSource = (*Client)(nil)

// usageMeasurement maps a step to the measurement that holds it.
var usageMeasurement = map[portal.Step]string{
	portal.Step15m: MeasurementUsage,
	portal.Step1h:  MeasurementUsage1h,
	portal.Step1d:  MeasurementUsage1d,
}

// Usage reads the consumption of meters over [from, to) at one step, from
// the interval grid or its rollups, ordered by time within each series.
func (c *Client) Usage(ctx context.Context, meters []string, utility string, from, to time.Time, step portal.Step) ([]portal.UsagePoint, error) {
	m, ok := usageMeasurement[step]
	if !ok {
		return nil, fmt.Errorf("usage: unknown step %q", step)
	}
	if len(meters) == 0 {
		return nil, nil
	}
	set := make([]string, len(meters))
	for i, id := range meters {
		set[i] = strconv.Quote(id)
	}
	pred := fmt.Sprintf(`r._measurement == %q and r._field == "quantity" and contains(value: r.meter, set: [%s])`, m, strings.Join(set, ", "))
	if utility != "" {
		pred += fmt.Sprintf(` and r.utility == %q`, utility)
	}
	// Stop one millisecond short: InfluxDB 1.8 includes a point at the stop
	// time (see Rollups.window).
	q := fmt.Sprintf(`from(bucket: %q)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => %s)
  |> keep(columns: ["_time", "_value", "meter", "utility", "channel"])`,
		c.cfg.Bucket, from.UTC().Format(time.RFC3339Nano), to.Add(-time.Millisecond).UTC().Format(time.RFC3339Nano), pred)
	res, err := c.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("usage query: %w", err)
	}
	defer res.Close()
	var out []portal.UsagePoint
	for res.Next() {
		rec := res.Record()
		v, ok := rec.Value().(float64)
		if !ok {
			continue
		}
		p := portal.UsagePoint{Time: rec.Time().UTC(), Quantity: v}
		p.Meter, _ = rec.ValueByKey("meter").(string)
		p.Utility, _ = rec.ValueByKey("utility").(string)
		p.Channel, _ = rec.ValueByKey("channel").(string)
		out = append(out, p)
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("usage read: %w", err)
	}
	return out, nil
}

// fleetMeasurement maps a step to the fleet rollup that holds it; the
// fleet has no 15-minute level of its own.
var fleetMeasurement = map[portal.Step]string{
	portal.Step1h: MeasurementFleet1h,
	portal.Step1d: MeasurementFleet1d,
}

// FleetPoint is the consumption of one utility's channel in one region over
// one step, and how many meters reported it.
type FleetPoint struct {
	Time     time.Time `json:"time"`
	Utility  string    `json:"utility"`
	Region   string    `json:"region"`
	Channel  string    `json:"channel"`
	Quantity float64   `json:"quantity"`
	Meters   int64     `json:"meters"`
}

// FleetFilter narrows a fleet query; empty fields match everything.
type FleetFilter struct {
	Utility string
	// Region selects one region; UnknownRegion selects the meters without
	// one.
	Region  string
	Channel string
}

// FleetUsage reads the fleet rollups over [from, to) at step 1h or 1d,
// ordered by time within each utility, region and channel. Summing the
// points of one utility and channel over every region gives its total.
// Fleet rows written before rollups had regions (no region tag) are left
// out, so that windows recomputed since are not counted twice.
func (c *Client) FleetUsage(ctx context.Context, f FleetFilter, from, to time.Time, step portal.Step) ([]FleetPoint, error) {
	m, ok := fleetMeasurement[step]
	if !ok {
		return nil, fmt.Errorf("fleet usage: step %q is not 1h or 1d", step)
	}
	pred := fmt.Sprintf(`r._measurement == %q and exists r.region`, m)
	for _, t := range []struct{ tag, v string }{{"utility", f.Utility}, {"region", f.Region}, {"channel", f.Channel}} {
		if t.v != "" {
			pred += fmt.Sprintf(` and r.%s == %q`, t.tag, t.v)
		}
	}
	// Stop one millisecond short (see Rollups.window).
	q := fmt.Sprintf(`from(bucket: %q)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => %s)
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> keep(columns: ["_time", "utility", "region", "channel", "quantity", "meters"])`,
		c.cfg.Bucket, from.UTC().Format(time.RFC3339Nano), to.Add(-time.Millisecond).UTC().Format(time.RFC3339Nano), pred)
	res, err := c.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("fleet usage query: %w", err)
	}
	defer res.Close()
	var out []FleetPoint
	for res.Next() {
		rec := res.Record()
		p := FleetPoint{Time: rec.Time().UTC()}
		p.Utility, _ = rec.ValueByKey("utility").(string)
		p.Region, _ = rec.ValueByKey("region").(string)
		p.Channel, _ = rec.ValueByKey("channel").(string)
		p.Quantity, _ = rec.ValueByKey("quantity").(float64)
		p.Meters, _ = rec.ValueByKey("meters").(int64)
		out = append(out, p)
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("fleet usage read: %w", err)
	}
	return out, nil
}
