package billing_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/meter"
)

const flatGBP = `
code: FLAT-E
name: Flat electricity
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0.50
    flat_rate: 0.25
    taxes: [{name: VAT, percent: 5}]
`

const versionChange = `
code: FLAT-V
name: Flat electricity with a price change on 16 January
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0.40
    flat_rate: 0.20
    taxes: [{name: VAT, percent: 5}]
  - effective_from: 2025-01-16
    standing_charge_per_day: 0.50
    flat_rate: 0.30
    taxes: [{name: VAT, percent: 5}]
`

const switchA = `
code: FLAT-A
name: Old supplier tariff
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0.40
    flat_rate: 0.20
`

const switchB = `
code: FLAT-B
name: New supplier tariff
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0.60
    flat_rate: 0.10
    levies: [{name: Meter fee, per_bill: 3.10}]
`

const demandUSD = `
code: DEMAND-1
name: Energy and demand
utility: electricity
currency: USD
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0
    flat_rate: 0.10
    demand: {rate_per_kw: 5.00, window_minutes: 15}
`

// TestBillRunTariffFeatures bills one account per tariff feature through
// the whole bill run, against bills computed by hand.
func TestBillRunTariffFeatures(t *testing.T) {
	london := mustLoc(t, "Europe/London")
	paris := mustLoc(t, "Europe/Paris")
	la := mustLoc(t, "America/Los_Angeles")
	q := 15 * time.Minute

	cases := []struct {
		name  string
		acc   accountSpec
		data  func(e *env, c created)
		asOf  time.Time
		check func(t *testing.T, e *env, c created, b billing.Bill)
	}{
		{
			name: "flat rate with VAT",
			acc:  accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-E"}}},
			data: func(e *env, c created) {
				// 31 days × 96 intervals × 100 Wh = 297.6 kWh.
				e.fill(c.meters[0], meter.Electricity, day(london, "2025-01-01"), day(london, "2025-02-01"), q, 100, 0)
			},
			asOf: day(london, "2025-02-01").Add(10 * time.Hour),
			check: func(t *testing.T, e *env, c created, b billing.Bill) {
				// standing 31 × 0.50 = 15.50; energy 297.6 × 0.25 = 74.40;
				// VAT 5% of 89.90 = 4.495 → 4.50.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.5", "15.50"},
					{"energy", "", "297.6", "0.25", "74.40"},
					{"tax", "VAT", "89.9", "0.05", "4.50"},
				}, "89.90", "4.50", "94.40")
				assert.Equal(t, "2025-02-15", b.DueDate.String(), "due 14 days after the local issue day")
				assert.False(t, b.Estimated)
				assert.Zero(t, b.MissingIntervals)
				require.Len(t, b.Registers, 1)
				r := b.Registers[0]
				assert.Equal(t, c.meters[0], r.MeterID)
				assert.Equal(t, meter.Value(297600), r.Quantity)
				assert.Equal(t, 2976, r.Intervals)
				assert.Equal(t, 2976, r.Expected)
				energy := b.Lines[1]
				assert.Equal(t, []string{c.meters[0]}, energy.Meters)
				assert.Equal(t, meter.Channel("1-0:1.8.0"), energy.Channel)
				assert.Equal(t, meter.Value(297600), energy.MeteredQuantity)
				assert.True(t, energy.FirstInterval.Equal(day(london, "2025-01-01")))
				assert.True(t, energy.LastInterval.Equal(day(london, "2025-02-01").Add(-q)))
				assert.Equal(t, "FLAT-E", energy.TariffCode)
				assert.Equal(t, 1, energy.TariffRevision)
				assert.Equal(t, "2024-01-01", energy.TariffVersion.String())
			},
		},
		{
			name: "inclining blocks per day, summed by local day",
			acc:  accountSpec{currency: "EUR", tz: "Europe/Paris", points: []pointSpec{{utility: meter.Water, tariff: "WATER-IB-2025"}}},
			data: func(e *env, c created) {
				// 3 litres every 15 minutes: 0.288 m3 a day, 8.928 m3 in 31 days.
				e.fill(c.meters[0], meter.Water, day(paris, "2025-01-01"), day(paris, "2025-02-01"), q, 3, 0)
			},
			asOf: day(paris, "2025-02-02"),
			check: func(t *testing.T, e *env, c created, b billing.Bill) {
				// Thresholds per day × 31: 4.65 and 12.4 m3.
				// tier 1: 4.65 × 1.10 = 5.115 → 5.12; tier 2: 4.278 × 1.85 = 7.9143 → 7.91;
				// levy 8.928 × 0.75 = 6.696 → 6.70; standing 31 × 0.12 = 3.72.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.12", "3.72"},
					{"tier", "tier 1", "4.65", "1.1", "5.12"},
					{"tier", "tier 2", "4.278", "1.85", "7.91"},
					{"levy", "Wastewater levy", "8.928", "0.75", "6.70"},
				}, "23.45", "0.00", "23.45")
			},
		},
		{
			name: "gas per kWh with the period's mean calorific value",
			acc:  accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Gas, tariff: "GB-GAS-2024"}}},
			data: func(e *env, c created) {
				// 10 litres every 15 minutes: 29.76 m3.
				e.fill(c.meters[0], meter.Gas, day(london, "2025-01-01"), day(london, "2025-02-01"), q, 10, 0)
				// 1–15 January published at 39.0; the rest missing → default 39.5.
				e.exec(`insert into calorific_values select d::date, 39.0 from generate_series('2025-01-01'::date, '2025-01-15'::date, '1 day') d`)
			},
			asOf: day(london, "2025-02-01").Add(time.Hour),
			check: func(t *testing.T, e *env, c created, b billing.Bill) {
				// CV (15 × 39.0 + 16 × 39.5) / 31 = 39.258065;
				// 29.76 × 1.02264 × 39.258065 ÷ 3.6 = 331.881 kWh × 0.0621 = 20.61;
				// standing 31 × 0.2982 = 9.2442 → 9.24; VAT 5% of 29.85 = 1.4925 → 1.49.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.2982", "9.24"},
					{"energy", "", "331.881", "0.0621", "20.61"},
					{"tax", "VAT", "29.85", "0.05", "1.49"},
				}, "29.85", "1.49", "31.34")
				assert.Contains(t, b.Lines[1].Description, "39.258065 MJ/m3")
			},
		},
		{
			name: "time of use across the start of summer time",
			acc:  accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "GB-E7-2024"}}},
			data: func(e *env, c created) {
				// 50 Wh every 15 minutes through March 2025; 30 March has 23 hours.
				e.fill(c.meters[0], meter.Electricity, day(london, "2025-03-01"), day(london, "2025-04-01"), q, 50, 0)
			},
			asOf: day(london, "2025-04-01").Add(8 * time.Hour),
			check: func(t *testing.T, e *env, c created, b billing.Bill) {
				// Night 00–07: 30 days × 28 intervals + 24 on 30 March (01–02 skipped)
				// = 864 × 50 Wh = 43.2 kWh; day 07–24: 31 × 68 = 2108 → 105.4 kWh.
				// standing 31 × 0.5322 = 16.4982 → 16.50; night 43.2 × 0.152 = 6.5664 → 6.57;
				// day 105.4 × 0.3012 = 31.74648 → 31.75; VAT 5% of 54.82 = 2.741 → 2.74.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.5322", "16.50"},
					{"tou", "night", "43.2", "0.152", "6.57"},
					{"tou", "day", "105.4", "0.3012", "31.75"},
					{"tax", "VAT", "54.82", "0.05", "2.74"},
				}, "54.82", "2.74", "57.56")
				require.Len(t, b.Registers, 1)
				assert.Equal(t, 2972, b.Registers[0].Expected, "a 23-hour day has 92 intervals")
				assert.Equal(t, 2972, b.Registers[0].Intervals)
				assert.Zero(t, b.MissingIntervals)
			},
		},
		{
			name: "tariff version change mid-cycle",
			acc:  accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-V"}}},
			data: func(e *env, c created) {
				e.fill(c.meters[0], meter.Electricity, day(london, "2025-01-01"), day(london, "2025-02-01"), q, 100, 0)
			},
			asOf: day(london, "2025-02-01"),
			check: func(t *testing.T, e *env, c created, b billing.Bill) {
				// 1–15 Jan: 15 × 0.40 = 6.00, 144 kWh × 0.20 = 28.80;
				// 16–31 Jan: 16 × 0.50 = 8.00, 153.6 kWh × 0.30 = 46.08;
				// one VAT line on 88.88: 4.444 → 4.44.
				requireBill(t, b, []wantLine{
					{"standing", "", "15", "0.4", "6.00"},
					{"energy", "", "144", "0.2", "28.80"},
					{"standing", "", "16", "0.5", "8.00"},
					{"energy", "", "153.6", "0.3", "46.08"},
					{"tax", "VAT", "88.88", "0.05", "4.44"},
				}, "88.88", "4.44", "93.32")
				assert.Equal(t, "2024-01-01", b.Lines[1].TariffVersion.String())
				assert.Equal(t, "2025-01-16", b.Lines[3].TariffVersion.String())
			},
		},
		{
			name: "switch of tariff mid-cycle",
			acc:  accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-B"}}},
			data: func(e *env, c created) {
				e.exec(`insert into service_point_tariffs (service_point_id, effective_from, tariff_code) values
					($1, '2024-06-01', 'FLAT-A'), ($1, '2025-01-11', 'FLAT-B')`, c.points[0])
				e.fill(c.meters[0], meter.Electricity, day(london, "2025-01-01"), day(london, "2025-02-01"), q, 100, 0)
			},
			asOf: day(london, "2025-02-01"),
			check: func(t *testing.T, e *env, c created, b billing.Bill) {
				// FLAT-A 1–10 Jan: 10 × 0.40 = 4.00, 96 kWh × 0.20 = 19.20;
				// FLAT-B 11–31 Jan: 21 × 0.60 = 12.60, 201.6 kWh × 0.10 = 20.16,
				// meter fee 3.10 × 21/31 = 2.10.
				requireBill(t, b, []wantLine{
					{"standing", "", "10", "0.4", "4.00"},
					{"energy", "", "96", "0.2", "19.20"},
					{"standing", "", "21", "0.6", "12.60"},
					{"energy", "", "201.6", "0.1", "20.16"},
					{"levy", "Meter fee", "1", "2.1", "2.10"},
				}, "58.06", "0.00", "58.06")
				assert.Equal(t, "FLAT-A", b.Lines[0].TariffCode)
				assert.Equal(t, "FLAT-B", b.Lines[2].TariffCode)
				assert.Equal(t, meter.Value(96000), b.Lines[1].MeteredQuantity)
				assert.Equal(t, meter.Value(201600), b.Lines[3].MeteredQuantity)
			},
		},
		{
			name: "register rollover inside the cycle",
			acc:  accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-E"}}},
			data: func(e *env, c created) {
				// The register went from 999999.950 to 000000.080 kWh in the
				// interval at 12:00 on 10 January: upstream wrote 130 Wh.
				e.fill(c.meters[0], meter.Electricity, day(london, "2025-01-01"), day(london, "2025-02-01"), q, 100, 0)
				e.set(c.meters[0], meter.Electricity, day(london, "2025-01-10").Add(12*time.Hour), 130, 0)
			},
			asOf: day(london, "2025-02-01"),
			check: func(t *testing.T, e *env, c created, b billing.Bill) {
				// 297.6 + 0.03 = 297.63 kWh × 0.25 = 74.4075 → 74.41; VAT 5% of 89.91 = 4.4955 → 4.50.
				requireBill(t, b, []wantLine{
					{"standing", "", "31", "0.5", "15.50"},
					{"energy", "", "297.63", "0.25", "74.41"},
					{"tax", "VAT", "89.91", "0.05", "4.50"},
				}, "89.91", "4.50", "94.41")
				assert.Equal(t, meter.Value(297630), b.Registers[0].Quantity)
			},
		},
		{
			name: "demand charge on the highest 15 minutes",
			acc:  accountSpec{currency: "USD", tz: "America/Los_Angeles", anchor: 5, points: []pointSpec{{utility: meter.Electricity, tariff: "DEMAND-1"}}},
			data: func(e *env, c created) {
				e.fill(c.meters[0], meter.Electricity, day(la, "2025-01-05"), day(la, "2025-02-05"), q, 100, 0)
				e.set(c.meters[0], meter.Electricity, day(la, "2025-01-20").Add(18*time.Hour), 750, 0)
			},
			asOf: day(la, "2025-02-05").Add(time.Minute),
			check: func(t *testing.T, e *env, c created, b billing.Bill) {
				// 2975 × 0.1 + 0.75 = 298.25 kWh × 0.10 = 29.825 → 29.83;
				// peak 0.75 kWh in 15 min = 3 kW × 5.00 = 15.00.
				requireBill(t, b, []wantLine{
					{"energy", "", "298.25", "0.1", "29.83"},
					{"demand", "", "3", "5", "15.00"},
				}, "44.83", "0.00", "44.83")
				assert.Equal(t, "2025-01-05", b.PeriodStart.String())
				assert.Equal(t, "2025-02-05", b.PeriodEnd.String())
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, billing.Config{})
			for _, y := range []string{flatGBP, versionChange, switchA, switchB, demandUSD} {
				e.loadTariff(y)
			}
			for _, f := range []string{"economy7.yaml", "water-tiered.yaml", "gas-kwh.json"} {
				e.loadTariffFile(f)
			}
			c := e.createAccount(tc.acc)
			tc.data(e, c)
			s := e.run(tc.asOf)
			require.Equal(t, "succeeded", s.Outcome, "%+v", s)
			require.Equal(t, 1, s.BillsIssued)
			bills := e.billsOf(c.account)
			require.Len(t, bills, 1)
			tc.check(t, e, c, bills[0])
		})
	}
}
