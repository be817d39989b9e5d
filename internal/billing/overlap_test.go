package billing_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/meter"
)

// addMeter puts one more meter on service point sp. Its id sorts after the
// meter createAccount made, so the first meter of the service point stays
// the one the account was created with.
func (e *env) addMeter(sp int64, u meter.Utility, interval time.Duration) string {
	e.t.Helper()
	id := fmt.Sprintf("M-%d-x%d", sp, e.seq.Add(1))
	e.exec(`insert into meters (id, service_point_id, utility, token_hash, interval_seconds) values ($1, $2, $3, '\x00', $4)`,
		id, sp, string(u), int(interval/time.Second))
	return id
}

// registerOf returns the bill's register of meter id.
func registerOf(t *testing.T, b billing.Bill, id string) billing.Register {
	t.Helper()
	for _, r := range b.Registers {
		if r.MeterID == id && r.AdjustsBillID == 0 {
			return r
		}
	}
	require.Failf(t, "no register", "meter %s is not on bill %d", id, b.ID)
	return billing.Register{}
}

// TestServicePointWithTwoMeters bills service points whose two meters report
// at the same time (two meters on one supply, or the old and the new meter
// of an exchange), on the same grid or on different ones, against bills
// computed by hand. Economy 7 is night 00–07 at 0.152 and day 07–24 at
// 0.3012 GBP/kWh, standing 0.5322 a day, VAT 5%; January 2025 in London has
// 31 days of 24 hours: per day 28 quarter hours (14 half hours) of night and
// 68 quarter hours (34 half hours) of day.
func TestServicePointWithTwoMeters(t *testing.T) {
	london := mustLoc(t, "Europe/London")
	la := mustLoc(t, "America/Los_Angeles")
	q, h := 15*time.Minute, 30*time.Minute
	jan1, feb1 := day(london, "2025-01-01"), day(london, "2025-02-01")

	cases := []struct {
		name string
		acc  accountSpec
		// second is the interval of the meter added to the first service point.
		second time.Duration
		data   func(e *env, m1, m2 string)
		asOf   time.Time
		check  func(t *testing.T, b billing.Bill, m1, m2 string)
	}{
		{
			name:   "same grid, time of use: summed per interval",
			acc:    accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "GB-E7-2024"}}},
			second: q,
			data: func(e *env, m1, m2 string) {
				e.fill(m1, meter.Electricity, jan1, feb1, q, 50, 0)
				e.fill(m2, meter.Electricity, jan1, feb1, q, 20, 0)
			},
			asOf: feb1.Add(time.Hour),
			check: func(t *testing.T, b billing.Bill, m1, m2 string) {
				// 70 Wh a quarter hour. Night 31 × 28 × 70 = 60.76 kWh × 0.152
				// = 9.23552 → 9.24; day 31 × 68 × 70 = 147.56 kWh × 0.3012 =
				// 44.445072 → 44.45; standing 31 × 0.5322 = 16.4982 → 16.50;
				// VAT 5% of 70.19 = 3.5095 → 3.51.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.5322", "16.50"},
					{"tou", "night", "60.76", "0.152", "9.24"},
					{"tou", "day", "147.56", "0.3012", "44.45"},
					{"tax", "VAT", "70.19", "0.05", "3.51"},
				}, "70.19", "3.51", "73.70")
				assert.Zero(t, b.MissingIntervals)
				assert.False(t, b.Estimated)
				assert.Equal(t, meter.Value(148800), registerOf(t, b, m1).Quantity)
				assert.Equal(t, meter.Value(59520), registerOf(t, b, m2).Quantity)
			},
		},
		{
			name:   "30-minute and 15-minute meters on one supply, time of use",
			acc:    accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "GB-E7-2024", interval: h}}},
			second: q,
			data: func(e *env, m1, m2 string) {
				e.fill(m1, meter.Electricity, jan1, feb1, h, 30, 0)
				e.fill(m2, meter.Electricity, jan1, feb1, q, 50, 0)
				// One night quarter hour of the 15-minute meter is an estimate.
				e.set(m2, meter.Electricity, day(london, "2025-01-10").Add(3*time.Hour+q), 50, 1)
			},
			asOf: feb1.Add(time.Hour),
			check: func(t *testing.T, b billing.Bill, m1, m2 string) {
				// Night per day 14 × 30 + 28 × 50 = 1820 Wh, × 31 = 56.42 kWh
				// × 0.152 = 8.57584 → 8.58; day 34 × 30 + 68 × 50 = 4420 Wh,
				// × 31 = 137.02 kWh × 0.3012 = 41.270424 → 41.27; standing
				// 16.50; VAT 5% of 66.35 = 3.3175 → 3.32.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.5322", "16.50"},
					{"tou", "night", "56.42", "0.152", "8.58"},
					{"tou", "day", "137.02", "0.3012", "41.27"},
					{"tax", "VAT", "66.35", "0.05", "3.32"},
				}, "66.35", "3.32", "69.67")
				assert.Zero(t, b.MissingIntervals)
				assert.True(t, b.Lines[1].Estimated, "the estimated quarter hour is in the night band")
				assert.False(t, b.Lines[2].Estimated, "no estimate reached the day band")
				assert.ElementsMatch(t, []string{m1, m2}, b.Lines[1].Meters)
				assert.Equal(t, meter.Value(193440), b.Lines[1].MeteredQuantity)
				assert.True(t, b.Lines[1].FirstInterval.Equal(jan1))
				assert.True(t, b.Lines[1].LastInterval.Equal(feb1.Add(-q)), "the last quarter hour of the finer meter")
				r1, r2 := registerOf(t, b, m1), registerOf(t, b, m2)
				assert.Equal(t, meter.Value(44640), r1.Quantity)
				assert.Equal(t, 1488, r1.Intervals)
				assert.Equal(t, 1488, r1.Expected)
				assert.Equal(t, meter.Value(148800), r2.Quantity)
				assert.Equal(t, 2976, r2.Intervals)
				assert.Equal(t, 2976, r2.Expected)
				assert.Equal(t, 1, r2.Estimated)
			},
		},
		{
			name:   "exchange from a 30-minute to a 15-minute meter, both reporting for half a day",
			acc:    accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "GB-E7-2024", interval: h}}},
			second: q,
			data: func(e *env, m1, m2 string) {
				// The old meter to noon on 16 January, the new one from
				// midnight: both count from 00:00 to 12:00 on the 16th.
				e.fill(m1, meter.Electricity, jan1, day(london, "2025-01-16").Add(12*time.Hour), h, 40, 0)
				e.fill(m2, meter.Electricity, day(london, "2025-01-16"), feb1, q, 25, 0)
			},
			asOf: feb1.Add(time.Hour),
			check: func(t *testing.T, b billing.Bill, m1, m2 string) {
				// Old: 15 days × 14 + 14 night half hours × 40 = 8960 Wh;
				// 15 × 34 + 10 day half hours × 40 = 20800 Wh.
				// New: 16 days × 28 × 25 = 11200 Wh night; 16 × 68 × 25 =
				// 27200 Wh day. Night 20.16 kWh × 0.152 = 3.06432 → 3.06; day
				// 48 kWh × 0.3012 = 14.4576 → 14.46; standing 16.50; VAT 5% of
				// 34.02 = 1.701 → 1.70.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.5322", "16.50"},
					{"tou", "night", "20.16", "0.152", "3.06"},
					{"tou", "day", "48", "0.3012", "14.46"},
					{"tax", "VAT", "34.02", "0.05", "1.70"},
				}, "34.02", "1.70", "35.72")
				// Every half hour of the month has a reading.
				assert.Zero(t, b.MissingIntervals)
				assert.False(t, b.Estimated)
				r1, r2 := registerOf(t, b, m1), registerOf(t, b, m2)
				assert.Equal(t, meter.Value(29760), r1.Quantity)
				assert.Equal(t, 744, r1.Intervals)
				assert.True(t, r1.LastInterval.Equal(day(london, "2025-01-16").Add(11*time.Hour+h)))
				assert.Equal(t, meter.Value(38400), r2.Quantity)
				assert.Equal(t, 1536, r2.Intervals)
				assert.True(t, r2.FirstInterval.Equal(day(london, "2025-01-16")))
			},
		},
		{
			name:   "exchange across grids with a day without readings",
			acc:    accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "GB-E7-2024", interval: h}}},
			second: q,
			data: func(e *env, m1, m2 string) {
				// The old meter 1–9 January, the new one from the 11th: the
				// 10th has no reading.
				e.fill(m1, meter.Electricity, jan1, day(london, "2025-01-10"), h, 40, 0)
				e.fill(m2, meter.Electricity, day(london, "2025-01-11"), feb1, q, 25, 0)
			},
			asOf: feb1.Add(time.Hour),
			check: func(t *testing.T, b billing.Bill, m1, m2 string) {
				// Night 9 × 14 × 40 + 21 × 28 × 25 = 5040 + 14700 = 19.74 kWh
				// × 0.152 = 3.00048 → 3.00; day 9 × 34 × 40 + 21 × 68 × 25 =
				// 12240 + 35700 = 47.94 kWh × 0.3012 = 14.439528 → 14.44;
				// standing 16.50; VAT 5% of 33.94 = 1.697 → 1.70.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.5322", "16.50"},
					{"tou", "night", "19.74", "0.152", "3.00"},
					{"tou", "day", "47.94", "0.3012", "14.44"},
					{"tax", "VAT", "33.94", "0.05", "1.70"},
				}, "33.94", "1.70", "35.64")
				// The 10th is 48 half hours on the service point's grid.
				assert.Equal(t, 48, b.MissingIntervals)
				assert.True(t, b.Estimated)
				assert.False(t, b.Lines[0].Estimated, "the standing charge does not depend on usage")
				assert.True(t, b.Lines[1].Estimated)
				assert.True(t, b.Lines[2].Estimated)
			},
		},
		{
			name:   "demand on 15-minute and 30-minute meters: the highest 30-minute average",
			acc:    accountSpec{currency: "USD", tz: "America/Los_Angeles", anchor: 5, points: []pointSpec{{utility: meter.Electricity, tariff: "DEMAND-1"}}},
			second: h,
			data: func(e *env, m1, m2 string) {
				e.fill(m1, meter.Electricity, day(la, "2025-01-05"), day(la, "2025-02-05"), q, 100, 0)
				e.fill(m2, meter.Electricity, day(la, "2025-01-05"), day(la, "2025-02-05"), h, 100, 0)
				e.set(m1, meter.Electricity, day(la, "2025-01-20").Add(18*time.Hour), 750, 0)
				// Higher than any other half hour of the second meter, but its
				// half hour (400 + 2 × 100 = 600 Wh) is not the peak.
				e.set(m2, meter.Electricity, day(la, "2025-01-25").Add(9*time.Hour), 400, 0)
			},
			asOf: day(la, "2025-02-05").Add(time.Minute),
			check: func(t *testing.T, b billing.Bill, m1, m2 string) {
				// Energy 2976 × 0.1 + 0.65 + 1488 × 0.1 + 0.3 = 447.35 kWh × 0.10
				// = 44.735 → 44.74. On the common 30-minute grid the half hour
				// at 18:00 on 20 January holds 750 + 100 + 100 = 950 Wh: 1.9 kW
				// × 5.00 = 9.50.
				requireBill(t, b, []wantLine{
					{"energy", "", "447.35", "0.1", "44.74"},
					{"demand", "", "1.9", "5", "9.50"},
				}, "54.24", "0.00", "54.24")
				assert.Contains(t, b.Lines[1].Description, "highest 30-minute average 1.900 kW (2025-01-20 18:00 PST)")
				assert.Zero(t, b.MissingIntervals)
			},
		},
		{
			name:   "same grid, flat rate",
			acc:    accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-E"}}},
			second: q,
			data: func(e *env, m1, m2 string) {
				e.fill(m1, meter.Electricity, jan1, feb1, q, 100, 0)
				e.fill(m2, meter.Electricity, jan1, feb1, q, 25, 0)
			},
			asOf: feb1.Add(time.Hour),
			check: func(t *testing.T, b billing.Bill, m1, m2 string) {
				// 2976 × 125 Wh = 372 kWh × 0.25 = 93.00; standing 15.50; VAT 5%
				// of 108.50 = 5.425 → 5.43.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.5", "15.50"},
					{"energy", "", "372", "0.25", "93.00"},
					{"tax", "VAT", "108.5", "0.05", "5.43"},
				}, "108.50", "5.43", "113.93")
				assert.Zero(t, b.MissingIntervals)
				assert.Equal(t, meter.Value(372000), b.Lines[1].MeteredQuantity)
			},
		},
		{
			name:   "15-minute and hourly meters on one supply, flat rate",
			acc:    accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-E"}}},
			second: time.Hour,
			data: func(e *env, m1, m2 string) {
				e.fill(m1, meter.Electricity, jan1, feb1, q, 100, 0)
				e.fill(m2, meter.Electricity, jan1, feb1, time.Hour, 200, 0)
			},
			asOf: feb1.Add(time.Hour),
			check: func(t *testing.T, b billing.Bill, m1, m2 string) {
				// 297.6 kWh + 744 × 0.2 = 148.8 kWh: 446.4 kWh × 0.25 = 111.60;
				// standing 15.50; VAT 5% of 127.10 = 6.355 → 6.36.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.5", "15.50"},
					{"energy", "", "446.4", "0.25", "111.60"},
					{"tax", "VAT", "127.1", "0.05", "6.36"},
				}, "127.10", "6.36", "133.46")
				assert.Zero(t, b.MissingIntervals)
				assert.False(t, b.Estimated)
			},
		},
		{
			name:   "exchange from a 15-minute to an hourly meter, flat rate",
			acc:    accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-E"}}},
			second: time.Hour,
			data: func(e *env, m1, m2 string) {
				e.fill(m1, meter.Electricity, jan1, day(london, "2025-01-16"), q, 100, 0)
				e.fill(m2, meter.Electricity, day(london, "2025-01-16"), feb1, time.Hour, 400, 0)
			},
			asOf: feb1.Add(time.Hour),
			check: func(t *testing.T, b billing.Bill, m1, m2 string) {
				// 15 × 96 × 0.1 = 144 kWh + 16 × 24 × 0.4 = 153.6 kWh: 297.6 kWh
				// × 0.25 = 74.40; standing 15.50; VAT 5% of 89.90 = 4.495 → 4.50.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.5", "15.50"},
					{"energy", "", "297.6", "0.25", "74.40"},
					{"tax", "VAT", "89.9", "0.05", "4.50"},
				}, "89.90", "4.50", "94.40")
				// Every hour of the month has a reading: nothing is missing and
				// nothing is an estimate.
				assert.Zero(t, b.MissingIntervals)
				assert.False(t, b.Estimated)
				assert.False(t, b.Lines[1].Estimated)
				assert.Equal(t, 1440, registerOf(t, b, m1).Intervals)
				assert.Equal(t, 384, registerOf(t, b, m2).Intervals)
			},
		},
		{
			name:   "exchange between a daily and a 15-minute meter with a day without readings, flat rate",
			acc:    accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-E"}}},
			second: 24 * time.Hour,
			data: func(e *env, m1, m2 string) {
				// The old meter, read once a day, 1–9 January; the new one
				// from the 11th.
				e.fill(m2, meter.Electricity, jan1, day(london, "2025-01-10"), 24*time.Hour, 2400, 0)
				e.fill(m1, meter.Electricity, day(london, "2025-01-11"), feb1, q, 100, 0)
			},
			asOf: feb1.Add(time.Hour),
			check: func(t *testing.T, b billing.Bill, m1, m2 string) {
				// 9 × 2.4 = 21.6 kWh + 21 × 96 × 0.1 = 201.6 kWh: 223.2 kWh ×
				// 0.25 = 55.80; standing 15.50; VAT 5% of 71.30 = 3.565 → 3.57.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.5", "15.50"},
					{"energy", "", "223.2", "0.25", "55.80"},
					{"tax", "VAT", "71.3", "0.05", "3.57"},
				}, "71.30", "3.57", "74.87")
				// On the daily grid only the 10th is missing.
				assert.Equal(t, 1, b.MissingIntervals)
				assert.True(t, b.Lines[1].Estimated)
				assert.Equal(t, 9, registerOf(t, b, m2).Intervals)
				assert.Equal(t, 2016, registerOf(t, b, m1).Intervals)
			},
		},
		{
			name:   "a daily meter exchanged before the period does not coarsen time of use",
			acc:    accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "GB-E7-2024"}}},
			second: 24 * time.Hour,
			data: func(e *env, m1, m2 string) {
				e.fill(m2, meter.Electricity, day(london, "2024-12-01"), jan1, 24*time.Hour, 2400, 0)
				e.fill(m1, meter.Electricity, jan1, feb1, q, 50, 0)
			},
			asOf: feb1.Add(time.Hour),
			check: func(t *testing.T, b billing.Bill, m1, m2 string) {
				// Night 31 × 28 × 50 = 43.4 kWh × 0.152 = 6.5968 → 6.60; day 31
				// × 68 × 50 = 105.4 kWh × 0.3012 = 31.74648 → 31.75; standing
				// 16.50; VAT 5% of 54.85 = 2.7425 → 2.74.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.5322", "16.50"},
					{"tou", "night", "43.4", "0.152", "6.60"},
					{"tou", "day", "105.4", "0.3012", "31.75"},
					{"tax", "VAT", "54.85", "0.05", "2.74"},
				}, "54.85", "2.74", "57.59")
				assert.Zero(t, b.MissingIntervals)
				assert.Zero(t, registerOf(t, b, m2).Intervals)
			},
		},
		// FLAT-V changes its prices on 16 January, so these are priced from
		// each meter's usage per local day rather than its total.
		{
			name:   "15-minute and hourly meters on one supply, summed per local day",
			acc:    accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-V"}}},
			second: time.Hour,
			data: func(e *env, m1, m2 string) {
				e.fill(m1, meter.Electricity, jan1, feb1, q, 100, 0)
				e.fill(m2, meter.Electricity, jan1, feb1, time.Hour, 200, 0)
			},
			asOf: feb1.Add(time.Hour),
			check: func(t *testing.T, b billing.Bill, m1, m2 string) {
				// 9.6 + 4.8 = 14.4 kWh a day. 1–15 January: 15 × 0.40 = 6.00,
				// 216 kWh × 0.20 = 43.20; 16–31: 16 × 0.50 = 8.00, 230.4 kWh
				// × 0.30 = 69.12; VAT 5% of 126.32 = 6.316 → 6.32.
				requireBill(t, b, []wantLine{
					{"standing", "", "15", "0.4", "6.00"},
					{"energy", "", "216", "0.2", "43.20"},
					{"standing", "", "16", "0.5", "8.00"},
					{"energy", "", "230.4", "0.3", "69.12"},
					{"tax", "VAT", "126.32", "0.05", "6.32"},
				}, "126.32", "6.32", "132.64")
				assert.Zero(t, b.MissingIntervals)
				assert.False(t, b.Estimated)
			},
		},
		{
			name:   "exchange from a 15-minute to an hourly meter, summed per local day",
			acc:    accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-V"}}},
			second: time.Hour,
			data: func(e *env, m1, m2 string) {
				e.fill(m1, meter.Electricity, jan1, day(london, "2025-01-16"), q, 100, 0)
				e.fill(m2, meter.Electricity, day(london, "2025-01-16"), feb1, time.Hour, 400, 0)
			},
			asOf: feb1.Add(time.Hour),
			check: func(t *testing.T, b billing.Bill, m1, m2 string) {
				// 1–15 January: 6.00 and 144 kWh × 0.20 = 28.80; 16–31: 8.00
				// and 153.6 kWh × 0.30 = 46.08; VAT 5% of 88.88 = 4.444 → 4.44.
				requireBill(t, b, []wantLine{
					{"standing", "", "15", "0.4", "6.00"},
					{"energy", "", "144", "0.2", "28.80"},
					{"standing", "", "16", "0.5", "8.00"},
					{"energy", "", "153.6", "0.3", "46.08"},
					{"tax", "VAT", "88.88", "0.05", "4.44"},
				}, "88.88", "4.44", "93.32")
				assert.Zero(t, b.MissingIntervals)
				assert.False(t, b.Estimated)
			},
		},
		{
			name:   "exchange between a daily and a 15-minute meter with a day without readings, summed per local day",
			acc:    accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-V"}}},
			second: 24 * time.Hour,
			data: func(e *env, m1, m2 string) {
				e.fill(m2, meter.Electricity, jan1, day(london, "2025-01-10"), 24*time.Hour, 2400, 0)
				e.fill(m1, meter.Electricity, day(london, "2025-01-11"), feb1, q, 100, 0)
			},
			asOf: feb1.Add(time.Hour),
			check: func(t *testing.T, b billing.Bill, m1, m2 string) {
				// 1–15 January: 6.00 and 9 × 2.4 + 5 × 9.6 = 69.6 kWh × 0.20 =
				// 13.92; 16–31: 8.00 and 16 × 9.6 = 153.6 kWh × 0.30 = 46.08;
				// VAT 5% of 74.00 = 3.70.
				requireBill(t, b, []wantLine{
					{"standing", "", "15", "0.4", "6.00"},
					{"energy", "", "69.6", "0.2", "13.92"},
					{"standing", "", "16", "0.5", "8.00"},
					{"energy", "", "153.6", "0.3", "46.08"},
					{"tax", "VAT", "74", "0.05", "3.70"},
				}, "74.00", "3.70", "77.70")
				assert.Equal(t, 1, b.MissingIntervals, "the 10th, on the daily grid")
				assert.True(t, b.Lines[1].Estimated)
				assert.True(t, b.Lines[3].Estimated)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, billing.Config{})
			for _, y := range []string{flatGBP, versionChange, demandUSD} {
				e.loadTariff(y)
			}
			e.loadTariffFile("economy7.yaml")
			c := e.createAccount(tc.acc)
			m1 := c.meters[0]
			m2 := e.addMeter(c.points[0], meter.Electricity, tc.second)
			tc.data(e, m1, m2)
			s := e.run(tc.asOf)
			require.Equal(t, "succeeded", s.Outcome, "%+v", s)
			require.Equal(t, 1, s.BillsIssued)
			bills := e.billsOf(c.account)
			require.Len(t, bills, 1)
			b := bills[0]
			require.Len(t, b.Registers, 2, "one register per meter")
			tc.check(t, b, m1, m2)
		})
	}
}

// A late reading of one meter of a service point with meters on two grids
// is corrected on the next bill, against that meter's register only.
func TestLateReadOfOneOfTwoMetersOnDifferentGrids(t *testing.T) {
	e := newEnv(t, billing.Config{})
	e.loadTariffFile("economy7.yaml")
	london := mustLoc(t, "Europe/London")
	q, h := 15*time.Minute, 30*time.Minute
	c := e.createAccount(accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "GB-E7-2024", interval: h}}})
	m2 := c.meters[0] // 30 minutes
	m1 := e.addMeter(c.points[0], meter.Electricity, q)
	e.fill(m1, meter.Electricity, day(london, "2025-01-01"), day(london, "2025-03-01"), q, 50, 0)
	e.fill(m2, meter.Electricity, day(london, "2025-01-01"), day(london, "2025-02-01"), h, 30, 0)

	s := e.run(day(london, "2025-02-01").Add(time.Hour))
	require.Equal(t, "succeeded", s.Outcome, "%+v", s)
	jan := e.billsOf(c.account)[0]
	assert.Equal(t, "69.67", jan.Total.StringFixed(2), "as in TestServicePointWithTwoMeters")

	// The second meter's half hour at 20:00 on 15 January was 0.5 kWh more.
	e.set(m2, meter.Electricity, day(london, "2025-01-15").Add(20*time.Hour), 530, 0)
	e.fill(m2, meter.Electricity, day(london, "2025-02-01"), day(london, "2025-03-01"), h, 30, 0)
	s = e.run(day(london, "2025-03-01").Add(time.Hour))
	require.Equal(t, "succeeded", s.Outcome, "%+v", s)
	assert.Equal(t, 1, s.Adjustments)
	bills := e.billsOf(c.account)
	require.Len(t, bills, 2)
	feb := bills[1]
	// February: 28 days; night 28 × 1820 Wh = 50.96 kWh × 0.152 = 7.74592 →
	// 7.75; day 28 × 4420 Wh = 123.76 kWh × 0.3012 = 37.276512 → 37.28;
	// standing 28 × 0.5322 = 14.9016 → 14.90; VAT 5% of 59.93 = 2.9965 → 3.00.
	// January again: day 137.52 kWh × 0.3012 = 41.421024 → 41.42, 0.15 more;
	// VAT 5% of 66.50 = 3.325 → 3.33, 0.01 more.
	requireBill(t, feb, []wantLine{
		{"standing", "", "28", "0.5322", "14.90"},
		{"tou", "night", "50.96", "0.152", "7.75"},
		{"tou", "day", "123.76", "0.3012", "37.28"},
		{"tax", "VAT", "59.93", "0.05", "3.00"},
		{"adjustment", "", "1", "0.15", "0.15"},
		{"adjustment_tax", "", "1", "0.01", "0.01"},
	}, "60.08", "3.01", "63.09")
	var corrected []billing.Register
	for _, r := range feb.Registers {
		if r.AdjustsBillID != 0 {
			corrected = append(corrected, r)
		}
	}
	require.Len(t, corrected, 1, "only the second meter's quantity changed")
	assert.Equal(t, m2, corrected[0].MeterID)
	assert.Equal(t, jan.ID, corrected[0].AdjustsBillID)
	assert.Equal(t, meter.Value(44640+500), corrected[0].Quantity)
}

// Accruals price the cycle so far of a service point with meters on two
// grids as the bill run would.
func TestAccrualWithMetersOnTwoGrids(t *testing.T) {
	e := newEnv(t, billing.Config{})
	e.loadTariffFile("economy7.yaml")
	london := mustLoc(t, "Europe/London")
	q, h := 15*time.Minute, 30*time.Minute
	c := e.createAccount(accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "GB-E7-2024", interval: h}}})
	m2 := c.meters[0] // 30 minutes
	m1 := e.addMeter(c.points[0], meter.Electricity, q)
	now := day(london, "2025-01-10").Add(12 * time.Hour)
	e.fill(m1, meter.Electricity, day(london, "2025-01-01"), now, q, 50, 0)
	e.fill(m2, meter.Electricity, day(london, "2025-01-01"), now, h, 30, 0)
	e.setNow(now)
	sum, err := e.svc.UpdateAccruals(e.ctx)
	require.NoError(t, err)
	require.Zero(t, sum.Failed, "%+v", sum)

	// 1–10 January against the 31-day cycle: standing 10 × 0.5322 = 5.322 →
	// 5.32; night 10 × 1820 Wh = 18.2 kWh × 0.152 = 2.7664 → 2.77; day 9 ×
	// 4420 + (20 × 50 + 10 × 30) = 41.08 kWh × 0.3012 = 12.373296 → 12.37;
	// VAT 5% of 20.46 = 1.023 → 1.02: 21.48. The last 7 full days: 3.73 +
	// 1.94 + 9.32 + VAT 0.75 = 15.74, so projected 21.48 + 21 × 15.74 / 7 =
	// 68.70.
	var amount, projected string
	var qty int64
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select amount::text, projected::text, quantity from accruals where account_id = $1 and utility = 'electricity'`,
		c.account).Scan(&amount, &projected, &qty))
	assert.Equal(t, "21.48", amount)
	assert.Equal(t, "68.70", projected)
	assert.Equal(t, int64(59280), qty)
}

// A single meter on a grid coarser than the demand window is charged on
// the highest average its intervals show, as two meters merged onto that
// grid are.
func TestDemandOnAThirtyMinuteMeter(t *testing.T) {
	e := newEnv(t, billing.Config{})
	e.loadTariff(demandUSD)
	la := mustLoc(t, "America/Los_Angeles")
	h := 30 * time.Minute
	c := e.createAccount(accountSpec{currency: "USD", tz: "America/Los_Angeles", anchor: 5, points: []pointSpec{{utility: meter.Electricity, tariff: "DEMAND-1", interval: h}}})
	e.fill(c.meters[0], meter.Electricity, day(la, "2025-01-05"), day(la, "2025-02-05"), h, 100, 0)
	e.set(c.meters[0], meter.Electricity, day(la, "2025-01-20").Add(18*time.Hour), 900, 0)
	s := e.run(day(la, "2025-02-05").Add(time.Minute))
	require.Equal(t, "succeeded", s.Outcome, "%+v", s)
	bills := e.billsOf(c.account)
	require.Len(t, bills, 1)
	// 1488 × 0.1 + 0.8 = 149.6 kWh × 0.10 = 14.96; 0.9 kWh in 30 minutes =
	// 1.8 kW × 5.00 = 9.00.
	requireBill(t, bills[0], []wantLine{
		{"energy", "", "149.6", "0.1", "14.96"},
		{"demand", "", "1.8", "5", "9.00"},
	}, "23.96", "0.00", "23.96")
	assert.Contains(t, bills[0].Lines[1].Description, "highest 30-minute average 1.800 kW")
}

// In a half-hour time zone an hourly grid is not aligned with local days:
// its hours run from half past. The quarter hours at the start and the end
// of the period that fall in an hour sticking out of it are billed as
// metered, not moved out of the bill.
func TestHourlyGridInAHalfHourTimeZone(t *testing.T) {
	e := newEnv(t, billing.Config{})
	e.loadTariff(demandUSD)
	kolkata := mustLoc(t, "Asia/Kolkata")
	q := 15 * time.Minute
	c := e.createAccount(accountSpec{currency: "USD", tz: "Asia/Kolkata", anchor: 5, points: []pointSpec{{utility: meter.Electricity, tariff: "DEMAND-1"}}})
	m1 := c.meters[0]
	m2 := e.addMeter(c.points[0], meter.Electricity, time.Hour)
	e.fill(m1, meter.Electricity, day(kolkata, "2025-01-05"), day(kolkata, "2025-02-05"), q, 100, 0)
	// The hourly meter reports three hours on the grid of whole UTC hours:
	// 10:30, 11:30 and 12:30 local time.
	e.fill(m2, meter.Electricity, day(kolkata, "2025-01-20").Add(10*time.Hour+30*time.Minute), day(kolkata, "2025-01-20").Add(13*time.Hour+30*time.Minute), time.Hour, 1000, 0)
	s := e.run(day(kolkata, "2025-02-05").Add(time.Minute))
	require.Equal(t, "succeeded", s.Outcome, "%+v", s)
	bills := e.billsOf(c.account)
	require.Len(t, bills, 1)
	// 2976 × 0.1 + 3 × 1 = 300.6 kWh × 0.10 = 30.06; demand on the hourly
	// grid: 4 × 0.1 + 1 = 1.4 kWh in an hour = 1.4 kW × 5.00 = 7.00.
	requireBill(t, bills[0], []wantLine{
		{"energy", "", "300.6", "0.1", "30.06"},
		{"demand", "", "1.4", "5", "7.00"},
	}, "37.06", "0.00", "37.06")
	assert.Contains(t, bills[0].Lines[1].Description, "highest 60-minute average 1.400 kW (2025-01-20 10:30 IST)")
	assert.True(t, bills[0].Lines[0].FirstInterval.Equal(day(kolkata, "2025-01-05")))
	assert.Zero(t, bills[0].MissingIntervals)
}
