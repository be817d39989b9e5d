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
