package billing_test

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/ingest"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/tariff"
	"github.com/meterflow/meterflow/internal/vee"
)

// A meter offline across the end of January is billed on an estimate; a
// late reading from inside the gap, arriving after the bill, re-splits the
// estimate (VEE), and the next bill carries the difference for January as
// an adjustment: the January bill itself is never rewritten.
func TestLateReadAcrossACycleBecomesAnAdjustment(t *testing.T) {
	e := newEnv(t, billing.Config{})
	e.loadTariff(flatGBP)
	london := mustLoc(t, "Europe/London")
	c := e.createAccount(accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-E"}}})
	m := c.meters[0]
	sink := &postgres.IngestSink{DB: e.db}
	rules := vee.DefaultRules(meter.Electricity)
	st := vee.NewState(m, meter.Electricity)
	var out vee.Output
	seq := uint64(0)
	apply := func(at, received time.Time, reg meter.Value) {
		t.Helper()
		seq++
		out.Reset()
		st.Apply(&rules, meter.Message{Meter: m, Seq: seq, Readings: []meter.Reading{{Channel: "1-0:1.8.0", Time: at, Value: reg}}}, received, &out)
		b := &ingest.Batch{}
		for _, iv := range out.Intervals {
			b.Intervals = append(b.Intervals, ingest.Interval{Meter: m, Utility: meter.Electricity, Interval: iv})
		}
		require.NoError(t, sink.WriteRegisters(e.ctx, b))
	}

	// January, 0.1 kWh every 15 minutes until 18:00 on the 31st; then
	// nothing until 06:00 on 1 February: 5.5 kWh in the gap.
	q := 15 * time.Minute
	reg := meter.Value(1_000_000)
	jan1, gapStart := day(london, "2025-01-01"), day(london, "2025-01-31").Add(18*time.Hour)
	for at := jan1; !at.After(gapStart); at = at.Add(q) {
		apply(at, at, reg)
		reg += 100
	}
	reg -= 100 // the register at 18:00
	atGapStart := reg
	gapEnd := day(london, "2025-02-01").Add(6 * time.Hour)
	reg += 5_500
	for at := gapEnd; at.Before(gapEnd.Add(4 * time.Hour)); at = at.Add(q) {
		apply(at, at, reg)
		reg += 100
	}

	e.run(day(london, "2025-02-01").Add(12 * time.Hour))
	bills := e.billsOf(c.account)
	require.Len(t, bills, 1)
	jan := bills[0]
	// 2,952 measured intervals of 0.1 kWh (to 17:45 on the 31st) = 295.2,
	// plus the linear estimate's share of the gap up to midnight (6 of 12
	// hours: 2.75 kWh) = 297.95 kWh.
	energy := jan.Lines[1]
	require.Equal(t, tariff.KindEnergy, energy.Kind)
	assert.Equal(t, "297.95", energy.Quantity.String())
	assert.True(t, jan.Estimated)

	// The meter's evening reading at 23:00 arrives late: 5 kWh of the gap's
	// 5.5 were used before it.
	late := day(london, "2025-01-31").Add(23 * time.Hour)
	apply(late, gapEnd.Add(5*time.Hour), atGapStart+5_000)
	require.NotEmpty(t, out.Intervals, "the late read re-split the gap")
	for _, iv := range out.Intervals {
		assert.NotZero(t, iv.Flags&vee.FlagRefined, "refined interval %v", iv)
	}

	e.fill(m, meter.Electricity, gapEnd.Add(4*time.Hour), day(london, "2025-03-01"), q, 100, 0)
	s := e.run(day(london, "2025-03-01").Add(6 * time.Hour))
	assert.Equal(t, 1, s.Adjustments)
	bills = e.billsOf(c.account)
	require.Len(t, bills, 2)
	var adj *billing.Line
	for i := range bills[1].Lines {
		if bills[1].Lines[i].Kind == billing.KindAdjustment {
			adj = &bills[1].Lines[i]
		}
	}
	require.NotNil(t, adj, "February carries January's correction")
	assert.Equal(t, jan.ID, adj.AdjustsBillID)
	// January now has the measured 5 kWh to 23:00 and the re-split rest:
	// the 23:00 interval holds the last of both sides, 23:15 to 24:00 a
	// share of 0.5 kWh over 7 hours. In all 295.2 + 5 + about 0.05 kWh,
	// about 2.30 kWh more than billed at 0.25: about 0.57.
	assert.True(t, adj.Amount.GreaterThan(decimal.RequireFromString("0.55")) && adj.Amount.LessThan(decimal.RequireFromString("0.60")),
		"more of the gap's usage fell in January: %s", adj.Amount)
	again := e.billsOf(c.account)[0]
	assert.Equal(t, billing.Adjusted, again.Status)
	assert.True(t, jan.Total.Equal(again.Total), "the January bill is as issued")
}
