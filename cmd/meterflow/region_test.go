package main

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/influx"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/portal"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

// premiseInRegion creates a household, account and premise in region with
// an electricity service point, and returns the service point.
func premiseInRegion(t *testing.T, pgURL string, n int, region string) int64 {
	t.Helper()
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: pgURL})
	require.NoError(t, err)
	defer db.Close()
	var hh, account, premise, sp int64
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into households (name) values ($1) returning id`, fmt.Sprintf("Household %d", n)).Scan(&hh))
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into accounts (household_id, number, currency, time_zone) values ($1, $2, 'EUR', 'UTC') returning id`,
		hh, fmt.Sprintf("ACC-R%d", n)).Scan(&account))
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into premises (account_id, region) values ($1, $2) returning id`, account, region).Scan(&premise))
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into service_points (premise_id, utility) values ($1, 'electricity') returning id`, premise).Scan(&sp))
	return sp
}

// Two meters in two regions, and one without a premise, publish over MQTT:
// the fleet rollups have a row per region (the meter without one under
// "unknown") holding each meter's consumption, and the regions add up to
// the utility's total.
func TestFleetRollupsByRegion(t *testing.T) {
	inf := testenv.InfluxDB(t)
	cfg := testConfig(t, inf.URL, inf.Bucket)
	north, south := premiseInRegion(t, cfg.Postgres.URL, 1, "north"), premiseInRegion(t, cfg.Postgres.URL, 2, "south")
	tokens := provision(t, cfg.Postgres.URL,
		device.Request{ID: "E-N", Utility: meter.Electricity, ServicePointID: &north},
		device.Request{ID: "E-S", Utility: meter.Electricity, ServicePointID: &south},
		device.Request{ID: "E-X", Utility: meter.Electricity})
	m := startMain(t, cfg)

	region := map[string]string{"E-N": "north", "E-S": "south", "E-X": influx.UnknownRegion}
	const n = 20
	for id := range region {
		sm := dialMeter(t, m.Broker.TCPAddr().String(), id, tokens[id])
		sm.startAgo(n + 2)
		if id == "E-S" {
			sm.reg += 5000 // a different register, so that mixed-up regions show
		}
		for range n {
			require.NoError(t, sm.publish(sm.message()))
		}
	}
	want := map[string]int64{}
	require.Eventually(t, func() bool {
		for id := range region {
			sum, k := pgUsage(t, cfg.Postgres.URL, id)
			if k < n-1 {
				return false
			}
			want[id] = sum
		}
		return true
	}, 30*time.Second, 100*time.Millisecond)
	require.Eventually(t, func() bool {
		got := influxSum(t, inf.URL, inf.Bucket, influx.MeasurementUsage, `r.channel == "1-0:1.8.0"`)
		return math.Abs(got-float64(want["E-N"]+want["E-S"]+want["E-X"])/1000) < 1e-6
	}, 30*time.Second, 100*time.Millisecond, "intervals in InfluxDB")
	require.NoError(t, m.Rollups.RunOnce(context.Background()))

	c, err := influx.Open(influx.Config{URL: inf.URL, Bucket: inf.Bucket})
	require.NoError(t, err)
	defer c.Close()
	now := time.Now()
	for _, step := range []portal.Step{portal.Step1h, portal.Step1d} {
		pts, err := c.FleetUsage(context.Background(), influx.FleetFilter{Utility: "electricity", Channel: "1-0:1.8.0"}, now.Add(-72*time.Hour), now.Add(time.Hour), step)
		require.NoError(t, err)
		byRegion := map[string]float64{}
		total := 0.0
		for _, p := range pts {
			byRegion[p.Region] += p.Quantity
			total += p.Quantity
			assert.EqualValues(t, 1, p.Meters, "one meter per region in %s at %s", p.Region, p.Time)
		}
		require.Len(t, byRegion, 3, step)
		for id, r := range region {
			assert.InDelta(t, float64(want[id])/1000, byRegion[r], 1e-6, "%s: %s", step, r)
		}
		utilityTotal := influxSum(t, inf.URL, inf.Bucket, influx.MeasurementUsage, `r.utility == "electricity" and r.channel == "1-0:1.8.0"`)
		assert.InDelta(t, utilityTotal, total, 1e-6, "%s: the regions add up to the utility's total", step)
	}
}
