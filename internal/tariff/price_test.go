package tariff

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
)

func TestPriceStandingCharge(t *testing.T) {
	london := mustLoad(t, "Europe/London")
	tokyo := mustLoad(t, "Asia/Tokyo")
	tariff := func(currency, standing string) Tariff {
		return mustParse(t, fmt.Sprintf(`
code: S
name: standing only
utility: electricity
currency: %s
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: %s
    flat_rate: 0.245
`, currency, standing))
	}
	cases := []struct {
		name   string
		tariff Tariff
		period Period
		want   []want
		total  string
	}{{
		// March has 31 local days, one of them 23 hours long:
		// 31 × 0.5322 = 16.4982 → 16.50.
		name:   "31 days including the spring-forward day",
		tariff: tariff("GBP", "0.5322"),
		period: days(london, "2024-03-01", "2024-04-01"),
		want:   []want{{KindStanding, "", "31", "0.5322", "16.50"}},
		total:  "16.50",
	}, {
		// The 25-hour day is one day: 1 × 0.5322 = 0.5322 → 0.53.
		name:   "the fall-back day is one day",
		tariff: tariff("GBP", "0.5322"),
		period: days(london, "2024-10-27", "2024-10-28"),
		want:   []want{{KindStanding, "", "1", "0.5322", "0.53"}},
		total:  "0.53",
	}, {
		// 1 × 0.125 = 0.125 → 0.13: half up (banker's rounding would give 0.12).
		name:   "half a penny rounds up",
		tariff: tariff("GBP", "0.125"),
		period: days(london, "2024-06-01", "2024-06-02"),
		want:   []want{{KindStanding, "", "1", "0.125", "0.13"}},
		total:  "0.13",
	}, {
		// Yen have no minor unit: 30 × 31.14 = 934.2 → 934.
		name:   "JPY rounds to whole yen",
		tariff: tariff("JPY", "31.14"),
		period: days(tokyo, "2024-06-01", "2024-07-01"),
		want:   []want{{KindStanding, "", "30", "31.14", "934"}},
		total:  "934",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, err := c.tariff.Price(Usage{Period: c.period, Location: c.period.Start.Location()})
			require.NoError(t, err)
			minor, _ := MinorUnits(ch.Currency)
			requireLines(t, ch, c.want, c.total, decimal.Zero.StringFixed(minor), c.total)
			assert.False(t, ch.Estimated)
		})
	}
}

func TestPriceFlat(t *testing.T) {
	london := mustLoad(t, "Europe/London")
	tariff := mustParse(t, `
code: FLAT
name: flat rate
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0.5322
    flat_rate: 0.2450
`)
	june := days(london, "2024-06-01", "2024-07-01")
	october := days(london, "2024-10-01", "2024-11-01")
	cases := []struct {
		name      string
		usage     Usage
		want      []want
		total     string
		estimated bool
	}{{
		// 720 hours × 0.417 kWh = 300.240 kWh.
		// Standing 30 × 0.5322 = 15.966 → 15.97; energy 300.240 × 0.245 = 73.5588 → 73.56.
		// Total 15.97 + 73.56 = 89.53.
		name:  "hourly, June",
		usage: Usage{Period: june, Location: london, Intervals: steady(june, time.Hour, 417)},
		want: []want{
			{KindStanding, "", "30", "0.5322", "15.97"},
			{KindEnergy, "", "300.24", "0.245", "73.56"},
		},
		total: "89.53",
	}, {
		// October has 31 days and 745 hours (the last Sunday has 25):
		// 2,980 quarter hours × 0.100 kWh = 298.000 kWh.
		// Standing 31 × 0.5322 = 16.4982 → 16.50; energy 298 × 0.245 = 73.01.
		// Total 16.50 + 73.01 = 89.51.
		name:  "15 minutes, October with the fall-back day",
		usage: Usage{Period: october, Location: london, Intervals: steady(october, 15*time.Minute, 100)},
		want: []want{
			{KindStanding, "", "31", "0.5322", "16.50"},
			{KindEnergy, "", "298", "0.245", "73.01"},
		},
		total: "89.51",
	}, {
		// As "hourly, June" with one interval estimated: same money, flagged.
		name: "an estimated interval flags the line and the charge",
		usage: func() Usage {
			ivs := steady(june, time.Hour, 417)
			ivs[100].Estimated = true
			return Usage{Period: june, Location: london, Intervals: ivs}
		}(),
		want: []want{
			{KindStanding, "", "30", "0.5322", "15.97"},
			{KindEnergy, "", "300.24", "0.245", "73.56"},
		},
		total:     "89.53",
		estimated: true,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, err := tariff.Price(c.usage)
			require.NoError(t, err)
			requireLines(t, ch, c.want, c.total, "0.00", c.total)
			assert.Equal(t, c.estimated, ch.Estimated)
			assert.Equal(t, c.estimated, ch.Lines[1].Estimated)
			assert.False(t, ch.Lines[0].Estimated, "standing charges do not depend on usage")
		})
	}
}

func TestPriceTiered(t *testing.T) {
	london := mustLoad(t, "Europe/London")
	paris := mustLoad(t, "Europe/Paris")
	tariff := func(per, first, second string) Tariff {
		return mustParse(t, fmt.Sprintf(`
code: TIERS
name: inclining blocks
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0
    tiers:
      per: %s
      blocks:
        - {up_to: %s, rate: 0.10}
        - {up_to: %s, rate: 0.15}
        - {rate: 0.20}
`, per, first, second))
	}
	monthly := tariff("period", "100", "300")
	june := days(london, "2024-06-01", "2024-07-01")
	cases := []struct {
		name   string
		tariff Tariff
		period Period
		usage  meter.Value
		want   []want
		total  string
	}{{
		// 80 × 0.10 = 8.00.
		name: "inside the first block", tariff: monthly, period: june, usage: 80_000,
		want:  []want{{KindTier, "tier 1", "80", "0.1", "8.00"}},
		total: "8.00",
	}, {
		// 100 × 0.10 = 10.00; nothing reaches tier 2.
		name: "exactly at the first threshold", tariff: monthly, period: june, usage: 100_000,
		want:  []want{{KindTier, "tier 1", "100", "0.1", "10.00"}},
		total: "10.00",
	}, {
		// 100 × 0.10 = 10.00; (250.5 − 100) = 150.5 × 0.15 = 22.575 → 22.58.
		// Total 32.58.
		name: "across the first threshold", tariff: monthly, period: june, usage: 250_500,
		want: []want{
			{KindTier, "tier 1", "100", "0.1", "10.00"},
			{KindTier, "tier 2", "150.5", "0.15", "22.58"},
		},
		total: "32.58",
	}, {
		// 100 × 0.10 = 10.00; 200 × 0.15 = 30.00; 150 × 0.20 = 30.00. Total 70.00.
		name: "into the last block", tariff: monthly, period: june, usage: 450_000,
		want: []want{
			{KindTier, "tier 1", "100", "0.1", "10.00"},
			{KindTier, "tier 2", "200", "0.15", "30.00"},
			{KindTier, "tier 3", "150", "0.2", "30.00"},
		},
		total: "70.00",
	}, {
		// Daily thresholds 3 and 10 kWh over 30 days: 90 and 300 kWh.
		// 90 × 0.10 = 9.00; 210 × 0.15 = 31.50; 150 × 0.20 = 30.00. Total 70.50.
		name: "daily allowance", tariff: tariff("day", "3", "10"), period: june, usage: 450_000,
		want: []want{
			{KindTier, "tier 1", "90", "0.1", "9.00"},
			{KindTier, "tier 2", "210", "0.15", "31.50"},
			{KindTier, "tier 3", "150", "0.2", "30.00"},
		},
		total: "70.50",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, err := c.tariff.Price(Usage{Period: c.period, Location: london, Intervals: one(c.period, c.usage)})
			require.NoError(t, err)
			requireLines(t, ch, c.want, c.total, "0.00", c.total)
		})
	}

	t.Run("water with daily blocks, a per-unit levy and a minimum", func(t *testing.T) {
		// testdata/water-tiered.yaml, June 2025 (30 days), 14.200 m³.
		// Thresholds 0.15 and 0.40 m³ a day × 30 = 4.5 and 12 m³.
		// Standing 30 × 0.12 = 3.60
		// Tier 1 4.5 × 1.10 = 4.95
		// Tier 2 (12 − 4.5) = 7.5 × 1.85 = 13.875 → 13.88
		// Tier 3 (14.2 − 12) = 2.2 × 2.90 = 6.38
		// Charges 28.81 ≥ minimum 6.00: no minimum line.
		// Wastewater levy 14.2 × 0.75 = 10.65
		// Subtotal 3.60 + 4.95 + 13.88 + 6.38 + 10.65 = 39.46; no tax.
		tr := mustParseFile(t, "water-tiered.yaml")
		p := days(paris, "2025-06-01", "2025-07-01")
		ch, err := tr.Price(Usage{Period: p, Location: paris, Intervals: one(p, 14_200)})
		require.NoError(t, err)
		requireLines(t, ch, []want{
			{KindStanding, "", "30", "0.12", "3.60"},
			{KindTier, "tier 1", "4.5", "1.1", "4.95"},
			{KindTier, "tier 2", "7.5", "1.85", "13.88"},
			{KindTier, "tier 3", "2.2", "2.9", "6.38"},
			{KindLevy, "Wastewater levy", "14.2", "0.75", "10.65"},
		}, "39.46", "0.00", "39.46")
	})
}

func TestPriceTOU(t *testing.T) {
	london := mustLoad(t, "Europe/London")
	la := mustLoad(t, "America/Los_Angeles")
	economy7 := mustParseFile(t, "economy7.yaml")
	etouc := mustParseFile(t, "etouc.yaml")
	weekends := mustParse(t, `
code: WE
name: weekends off-peak
utility: electricity
currency: USD
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0
    tou:
      bands:
        - {name: peak, from: 16, to: 21, days: weekdays, rate: 0.38}
        - {name: off-peak, from: 21, to: 16, days: weekdays, rate: 0.35}
        - {name: weekend, from: 0, to: 24, days: weekends, rate: 0.30}
`)
	cases := []struct {
		name      string
		tariff    Tariff
		loc       *time.Location
		day       string
		step      time.Duration
		intervals int
		want      []want
		sub, tax  string
		total     string
	}{{
		// 1 kWh an hour (0.250 kWh a quarter hour), night 00:00–07:00 BST.
		// Standing 1 × 0.5322 = 0.5322 → 0.53
		// Night 7 h × 1 kWh = 7 × 0.152 = 1.064 → 1.06
		// Day 17 h = 17 × 0.3012 = 5.1204 → 5.12
		// Subtotal 6.71; VAT 5% = 0.3355 → 0.34; total 7.05.
		name: "Economy 7 on an ordinary day", tariff: economy7, loc: london, day: "2024-06-12",
		step: 15 * time.Minute, intervals: 96,
		want: []want{
			{KindStanding, "", "1", "0.5322", "0.53"},
			{KindTOU, "night", "7", "0.152", "1.06"},
			{KindTOU, "day", "17", "0.3012", "5.12"},
			{KindTax, "VAT", "6.71", "0.05", "0.34"},
		},
		sub: "6.71", tax: "0.34", total: "7.05",
	}, {
		// 31 March 2024: clocks go from 01:00 GMT to 02:00 BST; the day has
		// 23 hours (92 quarter hours). Local 00:00–07:00 is 6 real hours:
		// 00:00–01:00 GMT and 02:00–07:00 BST.
		// Night 6 × 0.152 = 0.912 → 0.91; day 17 × 0.3012 = 5.1204 → 5.12;
		// standing 0.53. Subtotal 6.56; VAT 0.328 → 0.33; total 6.89.
		name: "Economy 7 on the spring-forward day (23 hours)", tariff: economy7, loc: london, day: "2024-03-31",
		step: 15 * time.Minute, intervals: 92,
		want: []want{
			{KindStanding, "", "1", "0.5322", "0.53"},
			{KindTOU, "night", "6", "0.152", "0.91"},
			{KindTOU, "day", "17", "0.3012", "5.12"},
			{KindTax, "VAT", "6.56", "0.05", "0.33"},
		},
		sub: "6.56", tax: "0.33", total: "6.89",
	}, {
		// 27 October 2024: 02:00 BST goes back to 01:00 GMT; 25 hours (100
		// quarter hours). Local 00:00–07:00 is 8 real hours: 00:00–02:00 BST
		// and 01:00–07:00 GMT, the 01:00 hour twice.
		// Night 8 × 0.152 = 1.216 → 1.22; day 5.12; standing 0.53.
		// Subtotal 6.87; VAT 0.3435 → 0.34; total 7.21.
		name: "Economy 7 on the fall-back day (25 hours)", tariff: economy7, loc: london, day: "2024-10-27",
		step: 15 * time.Minute, intervals: 100,
		want: []want{
			{KindStanding, "", "1", "0.5322", "0.53"},
			{KindTOU, "night", "8", "0.152", "1.22"},
			{KindTOU, "day", "17", "0.3012", "5.12"},
			{KindTax, "VAT", "6.87", "0.05", "0.34"},
		},
		sub: "6.87", tax: "0.34", total: "7.21",
	}, {
		// Summer (July) in Los Angeles, peak 16:00–21:00 PDT.
		// Peak 5 × 0.49 = 2.45; off-peak 19 × 0.39 = 7.41; standing 0.40.
		// Total 10.26, no tax.
		name: "E-TOU-C-like summer weekday", tariff: etouc, loc: la, day: "2024-07-10",
		step: 15 * time.Minute, intervals: 96,
		want: []want{
			{KindStanding, "", "1", "0.4", "0.40"},
			{KindTOU, "peak", "5", "0.49", "2.45"},
			{KindTOU, "off-peak", "19", "0.39", "7.41"},
		},
		sub: "10.26", tax: "0.00", total: "10.26",
	}, {
		// 10 March 2024: 02:00 PST becomes 03:00 PDT, 23 hours, winter prices.
		// Peak 16:00–21:00 is still 5 hours: 5 × 0.38 = 1.90.
		// Off-peak 18 × 0.35 = 6.30; standing 0.40. Total 8.60.
		name: "E-TOU-C-like on the US spring-forward day", tariff: etouc, loc: la, day: "2024-03-10",
		step: 15 * time.Minute, intervals: 92,
		want: []want{
			{KindStanding, "", "1", "0.4", "0.40"},
			{KindTOU, "peak", "5", "0.38", "1.90"},
			{KindTOU, "off-peak", "18", "0.35", "6.30"},
		},
		sub: "8.60", tax: "0.00", total: "8.60",
	}, {
		// The same day from hourly intervals: 23 of 1 kWh, same money.
		name: "E-TOU-C-like on the US spring-forward day, hourly", tariff: etouc, loc: la, day: "2024-03-10",
		step: time.Hour, intervals: 23,
		want: []want{
			{KindStanding, "", "1", "0.4", "0.40"},
			{KindTOU, "peak", "5", "0.38", "1.90"},
			{KindTOU, "off-peak", "18", "0.35", "6.30"},
		},
		sub: "8.60", tax: "0.00", total: "8.60",
	}, {
		// 3 November 2024: 02:00 PDT goes back to 01:00 PST, 25 hours.
		// Peak 5 × 0.38 = 1.90; off-peak 20 × 0.35 = 7.00; standing 0.40.
		// Total 9.30.
		name: "E-TOU-C-like on the US fall-back day", tariff: etouc, loc: la, day: "2024-11-03",
		step: 15 * time.Minute, intervals: 100,
		want: []want{
			{KindStanding, "", "1", "0.4", "0.40"},
			{KindTOU, "peak", "5", "0.38", "1.90"},
			{KindTOU, "off-peak", "20", "0.35", "7.00"},
		},
		sub: "9.30", tax: "0.00", total: "9.30",
	}, {
		// Saturday: the weekend band all day, 24 × 0.30 = 7.20.
		name: "weekend band", tariff: weekends, loc: la, day: "2024-07-13",
		step: 15 * time.Minute, intervals: 96,
		want: []want{{KindTOU, "weekend", "24", "0.3", "7.20"}},
		sub:  "7.20", tax: "0.00", total: "7.20",
	}, {
		// Friday: peak 5 × 0.38 = 1.90; off-peak 19 × 0.35 = 6.65. Total 8.55.
		name: "weekday bands", tariff: weekends, loc: la, day: "2024-07-12",
		step: 15 * time.Minute, intervals: 96,
		want: []want{
			{KindTOU, "peak", "5", "0.38", "1.90"},
			{KindTOU, "off-peak", "19", "0.35", "6.65"},
		},
		sub: "8.55", tax: "0.00", total: "8.55",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := date(c.day)
			p := Period{Start: d.Start(c.loc), End: d.AddDays(1).Start(c.loc)}
			perStep := meter.Value(1000 * c.step / time.Hour) // 1 kWh an hour
			ivs := steady(p, c.step, perStep)
			require.Len(t, ivs, c.intervals)
			ch, err := c.tariff.Price(Usage{Period: p, Location: c.loc, Intervals: ivs})
			require.NoError(t, err)
			requireLines(t, ch, c.want, c.sub, c.tax, c.total)
		})
	}
}

func TestPriceDemand(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	tariff := func(window int) Tariff {
		return mustParse(t, fmt.Sprintf(`
code: DEMAND
name: flat with demand charge
utility: electricity
currency: USD
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0
    flat_rate: 0.20
    demand: {rate_per_kw: 12.50, window_minutes: %d}
`, window))
	}
	// Monday 15 January 2024: 96 quarter hours of 0.250 kWh, except
	// 18:00–18:15 EST with 1.810 kWh. Energy 95 × 0.25 + 1.81 = 25.560 kWh
	// × 0.20 = 5.112 → 5.11 in every case.
	p := days(ny, "2024-01-15", "2024-01-16")
	ivs := steady(p, 15*time.Minute, 250)
	ivs[18*4].Quantity = 1810
	cases := []struct {
		name   string
		window int
		want   []want
		total  string
	}{{
		// 1.810 kWh in 15 minutes = 1.810 × 4 = 7.240 kW × 12.50 = 90.50.
		// Total 5.11 + 90.50 = 95.61.
		name: "15-minute window", window: 15,
		want: []want{
			{KindEnergy, "", "25.56", "0.2", "5.11"},
			{KindDemand, "", "7.24", "12.5", "90.50"},
		},
		total: "95.61",
	}, {
		// 18:00–18:30: 1.810 + 0.250 = 2.060 kWh × 2 = 4.120 kW × 12.50 = 51.50.
		// Total 56.61.
		name: "30-minute window", window: 30,
		want: []want{
			{KindEnergy, "", "25.56", "0.2", "5.11"},
			{KindDemand, "", "4.12", "12.5", "51.50"},
		},
		total: "56.61",
	}, {
		// 18:00–19:00: 1.810 + 3 × 0.250 = 2.560 kWh × 1 = 2.560 kW × 12.50 = 32.00.
		// Total 37.11.
		name: "60-minute window", window: 60,
		want: []want{
			{KindEnergy, "", "25.56", "0.2", "5.11"},
			{KindDemand, "", "2.56", "12.5", "32.00"},
		},
		total: "37.11",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, err := tariff(c.window).Price(Usage{Period: p, Location: ny, Intervals: ivs})
			require.NoError(t, err)
			requireLines(t, ch, c.want, c.total, "0.00", c.total)
			assert.Contains(t, ch.Lines[1].Description, "2024-01-15 18:00 EST")
		})
	}
}

func TestPriceTaxesAndLevies(t *testing.T) {
	london := mustLoad(t, "Europe/London")
	tokyo := mustLoad(t, "Asia/Tokyo")
	la := mustLoad(t, "America/Los_Angeles")
	cases := []struct {
		name     string
		yaml     string
		loc      *time.Location
		usage    meter.Value
		want     []want
		sub, tax string
		total    string
	}{{
		// June 2024, 30 days, 300 kWh.
		// Standing 30 × 0.50 = 15.00
		// Energy 300 × 0.245 = 73.50
		// Climate levy 300 × 0.00775 = 2.325 → 2.33
		// Meter levy 1 × 1.25 = 1.25
		// Subtotal 15.00 + 73.50 + 2.33 + 1.25 = 92.08
		// VAT 5% × 92.08 = 4.604 → 4.60 (on the rounded subtotal, rounded once)
		// Total 96.68
		name: "VAT on levies, per unit and per bill",
		yaml: `
code: GB
name: flat with levies
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0.50
    flat_rate: 0.245
    levies:
      - {name: Climate levy, per_unit: 0.00775}
      - {name: Meter levy, per_bill: 1.25}
    taxes:
      - {name: VAT, percent: 5}
`,
		loc: london, usage: 300_000,
		want: []want{
			{KindStanding, "", "30", "0.5", "15.00"},
			{KindEnergy, "", "300", "0.245", "73.50"},
			{KindLevy, "Climate levy", "300", "0.00775", "2.33"},
			{KindLevy, "Meter levy", "1", "1.25", "1.25"},
			{KindTax, "VAT", "92.08", "0.05", "4.60"},
		},
		sub: "92.08", tax: "4.60", total: "96.68",
	}, {
		// Standing 30 × 31.14 = 934.2 → 934; energy 300 × 29.80 = 8940.
		// Subtotal 9874; consumption tax 10% = 987.4 → 987; total 10861.
		name: "JPY with consumption tax",
		yaml: `
code: JP
name: yen
utility: electricity
currency: JPY
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 31.14
    flat_rate: 29.80
    taxes: [{name: Consumption tax, percent: 10}]
`,
		loc: tokyo, usage: 300_000,
		want: []want{
			{KindStanding, "", "30", "31.14", "934"},
			{KindEnergy, "", "300", "29.8", "8940"},
			{KindTax, "Consumption tax", "9874", "0.1", "987"},
		},
		sub: "9874", tax: "987", total: "10861",
	}, {
		// Two taxes on the same subtotal, not compounded.
		// Energy 100 × 0.30 = 30.00; state 2.5% = 0.75; city 7.5% = 2.25.
		// Total 30.00 + 3.00 = 33.00.
		name: "two taxes on the same subtotal",
		yaml: `
code: US
name: two taxes
utility: electricity
currency: USD
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0
    flat_rate: 0.30
    taxes:
      - {name: State tax, percent: 2.5}
      - {name: Utility users tax, percent: 7.5}
`,
		loc: la, usage: 100_000,
		want: []want{
			{KindEnergy, "", "100", "0.3", "30.00"},
			{KindTax, "State tax", "30", "0.025", "0.75"},
			{KindTax, "Utility users tax", "30", "0.075", "2.25"},
		},
		sub: "30.00", tax: "3.00", total: "33.00",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := days(c.loc, "2024-06-01", "2024-07-01")
			ch, err := mustParse(t, c.yaml).Price(Usage{Period: p, Location: c.loc, Intervals: one(p, c.usage)})
			require.NoError(t, err)
			requireLines(t, ch, c.want, c.sub, c.tax, c.total)
		})
	}
}

func TestPriceMinimumCharge(t *testing.T) {
	london := mustLoad(t, "Europe/London")
	tr := mustParse(t, `
code: MIN
name: minimum charge
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0.10
    flat_rate: 0.25
    minimum_charge: 10.00
    levies: [{name: Meter levy, per_bill: 1.00}]
    taxes: [{name: VAT, percent: 5}]
`)
	p := days(london, "2024-06-01", "2024-07-01")
	cases := []struct {
		name  string
		usage []Interval
		want  []want
		sub   string
		tax   string
		total string
	}{{
		// Standing 30 × 0.10 = 3.00; energy 10 × 0.25 = 2.50; charges 5.50.
		// Minimum 10.00 − 5.50 = 4.50. Levy 1.00 on top: subtotal 11.00.
		// VAT 5% = 0.55; total 11.55.
		name:  "below the minimum",
		usage: one(p, 10_000),
		want: []want{
			{KindStanding, "", "30", "0.1", "3.00"},
			{KindEnergy, "", "10", "0.25", "2.50"},
			{KindMinimum, "", "1", "4.5", "4.50"},
			{KindLevy, "Meter levy", "1", "1", "1.00"},
			{KindTax, "VAT", "11", "0.05", "0.55"},
		},
		sub: "11.00", tax: "0.55", total: "11.55",
	}, {
		// Standing 3.00; energy 40 × 0.25 = 10.00; charges 13.00 ≥ 10.00.
		// Levy 1.00: subtotal 14.00; VAT 0.70; total 14.70.
		name:  "above the minimum",
		usage: one(p, 40_000),
		want: []want{
			{KindStanding, "", "30", "0.1", "3.00"},
			{KindEnergy, "", "40", "0.25", "10.00"},
			{KindLevy, "Meter levy", "1", "1", "1.00"},
			{KindTax, "VAT", "14", "0.05", "0.70"},
		},
		sub: "14.00", tax: "0.70", total: "14.70",
	}, {
		// No usage: standing 3.00; minimum 7.00; levy 1.00; subtotal 11.00.
		name: "no usage",
		want: []want{
			{KindStanding, "", "30", "0.1", "3.00"},
			{KindMinimum, "", "1", "7", "7.00"},
			{KindLevy, "Meter levy", "1", "1", "1.00"},
			{KindTax, "VAT", "11", "0.05", "0.55"},
		},
		sub: "11.00", tax: "0.55", total: "11.55",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, err := tr.Price(Usage{Period: p, Location: london, Intervals: c.usage})
			require.NoError(t, err)
			requireLines(t, ch, c.want, c.sub, c.tax, c.total)
		})
	}
}

func TestPriceVersionChange(t *testing.T) {
	london := mustLoad(t, "Europe/London")
	tariff := func(vat2 string) Tariff {
		return mustParse(t, fmt.Sprintf(`
code: SPLIT
name: price change on 14 April
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0.50
    tiers:
      blocks: [{up_to: 100, rate: 0.10}, {rate: 0.20}]
    levies: [{name: Meter levy, per_bill: 3.00}]
    taxes: [{name: VAT, percent: 5}]
  - effective_from: 2024-04-14
    standing_charge_per_day: 0.60
    tiers:
      blocks: [{up_to: 100, rate: 0.12}, {rate: 0.25}]
    levies: [{name: Meter levy, per_bill: 3.00}]
    taxes: [{name: VAT, percent: %s}]
`, vat2))
	}
	// April 2024, 30 days: 13 under the first version (1–13), 17 under the
	// second (14–30). 5 kWh every day at noon: 65 kWh and 85 kWh.
	p := days(london, "2024-04-01", "2024-05-01")
	var ivs []Interval
	for d := date("2024-04-01"); d.Before(date("2024-05-01")); d = d.AddDays(1) {
		ivs = append(ivs, Interval{Start: d.Start(london).Add(12 * time.Hour), Duration: time.Hour, Quantity: 5000})
	}
	v1 := []want{
		// 13 × 0.50 = 6.50
		{KindStanding, "", "13", "0.5", "6.50"},
		// Threshold 100 × 13/30 = 43.333 kWh (43.3333… to the meter's 0.001).
		// 43.333 × 0.10 = 4.3333 → 4.33
		{KindTier, "tier 1", "43.333", "0.1", "4.33"},
		// 65 − 43.333 = 21.667 × 0.20 = 4.3334 → 4.33
		{KindTier, "tier 2", "21.667", "0.2", "4.33"},
		// 3.00 × 13/30 = 1.300000 per bill → 1.30
		{KindLevy, "Meter levy", "1", "1.3", "1.30"},
	}
	v2 := []want{
		// 17 × 0.60 = 10.20
		{KindStanding, "", "17", "0.6", "10.20"},
		// Threshold 100 × 17/30 = 56.667 kWh; 56.667 × 0.12 = 6.80004 → 6.80
		{KindTier, "tier 1", "56.667", "0.12", "6.80"},
		// 85 − 56.667 = 28.333 × 0.25 = 7.08325 → 7.08
		{KindTier, "tier 2", "28.333", "0.25", "7.08"},
		// 3.00 × 17/30 = 1.70
		{KindLevy, "Meter levy", "1", "1.7", "1.70"},
	}
	t.Run("same VAT in both versions", func(t *testing.T) {
		// Subtotal 6.50 + 4.33 + 4.33 + 1.30 + 10.20 + 6.80 + 7.08 + 1.70 = 42.24.
		// One VAT line: 5% × 42.24 = 2.112 → 2.11. Total 44.35.
		ch, err := tariff("5").Price(Usage{Period: p, Location: london, Intervals: ivs})
		require.NoError(t, err)
		lines := append(append(slices.Clone(v1), v2...), want{KindTax, "VAT", "42.24", "0.05", "2.11"})
		requireLines(t, ch, lines, "42.24", "2.11", "44.35")
		assert.Equal(t, date("2024-01-01"), ch.Lines[0].TariffVersion)
		assert.Equal(t, date("2024-04-14"), ch.Lines[4].TariffVersion)
		assert.Equal(t, 30, ch.Days)
	})
	t.Run("VAT rate changes with the version", func(t *testing.T) {
		// First part 6.50 + 4.33 + 4.33 + 1.30 = 16.46: 5% = 0.823 → 0.82.
		// Second part 10.20 + 6.80 + 7.08 + 1.70 = 25.78: 20% = 5.156 → 5.16.
		// Tax 5.98; total 42.24 + 5.98 = 48.22.
		ch, err := tariff("20").Price(Usage{Period: p, Location: london, Intervals: ivs})
		require.NoError(t, err)
		lines := append(append(slices.Clone(v1), v2...),
			want{KindTax, "VAT", "16.46", "0.05", "0.82"},
			want{KindTax, "VAT", "25.78", "0.2", "5.16"})
		requireLines(t, ch, lines, "42.24", "5.98", "48.22")
	})
	t.Run("a period inside one version is not split", func(t *testing.T) {
		// 1–13 April alone, as a whole period of 13 days: the threshold is the
		// full 100 kWh. Standing 6.50; 65 × 0.10 = 6.50; levy 3.00.
		// Subtotal 16.00; VAT 0.80; total 16.80.
		q := days(london, "2024-04-01", "2024-04-14")
		ch, err := tariff("5").Price(Usage{Period: q, Location: london, Intervals: ivs[:13]})
		require.NoError(t, err)
		requireLines(t, ch, []want{
			{KindStanding, "", "13", "0.5", "6.50"},
			{KindTier, "tier 1", "65", "0.1", "6.50"},
			{KindLevy, "Meter levy", "1", "3", "3.00"},
			{KindTax, "VAT", "16", "0.05", "0.80"},
		}, "16.00", "0.80", "16.80")
	})
}

func TestPriceGas(t *testing.T) {
	london := mustLoad(t, "Europe/London")
	perKWh := mustParseFile(t, "gas-kwh.json")
	perM3 := mustParse(t, `
code: GAS-M3
name: gas per cubic metre
utility: gas
currency: GBP
unit: m3
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0.2982
    flat_rate: 0.65
    taxes: [{name: VAT, percent: 5}]
`)
	p := days(london, "2024-06-01", "2024-07-01")
	cases := []struct {
		name     string
		tariff   Tariff
		m3       meter.Value
		cv       string
		want     []want
		sub, tax string
		total    string
	}{{
		// 100.000 m³ × 1.02264 = 102.264; × 39.5 MJ/m³ = 4039.428 MJ;
		// ÷ 3.6 = 1122.06333… → 1122.063 kWh.
		// Energy 1122.063 × 0.0621 = 69.6801123 → 69.68
		// Standing 30 × 0.2982 = 8.946 → 8.95
		// Subtotal 78.63; VAT 5% = 3.9315 → 3.93; total 82.56.
		name: "per kWh, calorific value 39.5", tariff: perKWh, m3: 100_000, cv: "39.5",
		want: []want{
			{KindStanding, "", "30", "0.2982", "8.95"},
			{KindEnergy, "", "1122.063", "0.0621", "69.68"},
			{KindTax, "VAT", "78.63", "0.05", "3.93"},
		},
		sub: "78.63", tax: "3.93", total: "82.56",
	}, {
		// 85.500 m³ × 1.02264 = 87.43572; × 39.2 = 3427.480224;
		// ÷ 3.6 = 952.07784 → 952.078 kWh × 0.0621 = 59.1240438 → 59.12.
		// Standing 8.95; subtotal 68.07; VAT 3.4035 → 3.40; total 71.47.
		name: "per kWh, calorific value 39.2", tariff: perKWh, m3: 85_500, cv: "39.2",
		want: []want{
			{KindStanding, "", "30", "0.2982", "8.95"},
			{KindEnergy, "", "952.078", "0.0621", "59.12"},
			{KindTax, "VAT", "68.07", "0.05", "3.40"},
		},
		sub: "68.07", tax: "3.40", total: "71.47",
	}, {
		// No conversion: 100 m³ × 0.65 = 65.00; standing 8.95; subtotal 73.95;
		// VAT 3.6975 → 3.70; total 77.65.
		name: "per m3 needs no calorific value", tariff: perM3, m3: 100_000,
		want: []want{
			{KindStanding, "", "30", "0.2982", "8.95"},
			{KindEnergy, "", "100", "0.65", "65.00"},
			{KindTax, "VAT", "73.95", "0.05", "3.70"},
		},
		sub: "73.95", tax: "3.70", total: "77.65",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := Usage{Period: p, Location: london, Intervals: one(p, c.m3)}
			if c.cv != "" {
				u.CalorificValue = dec(c.cv)
			}
			ch, err := c.tariff.Price(u)
			require.NoError(t, err)
			requireLines(t, ch, c.want, c.sub, c.tax, c.total)
		})
	}

	t.Run("GasToKWh", func(t *testing.T) {
		assert.Equal(t, "1122.063", GasToKWh(dec("100"), dec("39.5")).String())
		// 1 m³ × 1.02264 × 40 ÷ 3.6 = 11.3626666… → 11.363
		assert.Equal(t, "11.363", GasToKWh(dec("1"), dec("40")).String())
	})
}

func TestAccrue(t *testing.T) {
	london := mustLoad(t, "Europe/London")
	tr := mustParse(t, `
code: ACCRUE
name: blocks per period
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0.50
    tiers:
      blocks: [{up_to: 300, rate: 0.10}, {rate: 0.20}]
    levies: [{name: Meter levy, per_bill: 3.00}]
`)
	cycle := days(london, "2024-04-01", "2024-05-01")
	soFar := days(london, "2024-04-01", "2024-04-11")
	// 15 kWh a day for the first 10 days: 150 kWh.
	var ivs []Interval
	for d := date("2024-04-01"); d.Before(date("2024-04-11")); d = d.AddDays(1) {
		ivs = append(ivs, Interval{Start: d.Start(london).Add(8 * time.Hour), Duration: time.Hour, Quantity: 15_000})
	}
	u := Usage{Period: soFar, Location: london, Intervals: ivs}

	t.Run("pro-rata share of the cycle", func(t *testing.T) {
		// 10 of 30 days: threshold 300 × 10/30 = 100 kWh.
		// Standing 10 × 0.50 = 5.00; tier 1 100 × 0.10 = 10.00;
		// tier 2 50 × 0.20 = 10.00; levy 3.00 × 10/30 = 1.00. Total 26.00.
		ch, err := tr.Accrue(u, cycle)
		require.NoError(t, err)
		requireLines(t, ch, []want{
			{KindStanding, "", "10", "0.5", "5.00"},
			{KindTier, "tier 1", "100", "0.1", "10.00"},
			{KindTier, "tier 2", "50", "0.2", "10.00"},
			{KindLevy, "Meter levy", "1", "1", "1.00"},
		}, "26.00", "0.00", "26.00")
		assert.Equal(t, 10, ch.Days)
	})
	t.Run("Price treats the same days as a whole period", func(t *testing.T) {
		// Standing 5.00; 150 × 0.10 = 15.00; levy 3.00. Total 23.00.
		ch, err := tr.Price(u)
		require.NoError(t, err)
		requireLines(t, ch, []want{
			{KindStanding, "", "10", "0.5", "5.00"},
			{KindTier, "tier 1", "150", "0.1", "15.00"},
			{KindLevy, "Meter levy", "1", "3", "3.00"},
		}, "23.00", "0.00", "23.00")
	})
	t.Run("the whole cycle accrues to the bill", func(t *testing.T) {
		whole := Usage{Period: cycle, Location: london, Intervals: ivs}
		a, err := tr.Accrue(whole, cycle)
		require.NoError(t, err)
		b, err := tr.Price(whole)
		require.NoError(t, err)
		assert.Equal(t, b, a)
	})
	t.Run("outside the cycle", func(t *testing.T) {
		_, err := tr.Accrue(Usage{Period: days(london, "2024-03-31", "2024-04-11"), Location: london}, cycle)
		require.ErrorIs(t, err, ErrInvalid)
		assert.ErrorContains(t, err, "not inside the cycle")
	})
}

func TestPriceUnsortedIntervals(t *testing.T) {
	london := mustLoad(t, "Europe/London")
	tr := mustParseFile(t, "economy7.yaml")
	p := days(london, "2024-10-26", "2024-10-29")
	ivs := steady(p, 15*time.Minute, 250)
	for i := range ivs {
		ivs[i].Quantity = meter.Value(100 + i%37)
	}
	want, err := tr.Price(Usage{Period: p, Location: london, Intervals: ivs})
	require.NoError(t, err)
	shuffled := slices.Clone(ivs)
	slices.Reverse(shuffled)
	shuffled[0], shuffled[len(shuffled)/2] = shuffled[len(shuffled)/2], shuffled[0]
	got, err := tr.Price(Usage{Period: p, Location: london, Intervals: shuffled})
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestPriceEstimatedTOU(t *testing.T) {
	london := mustLoad(t, "Europe/London")
	tr := mustParseFile(t, "economy7.yaml")
	p := days(london, "2024-06-12", "2024-06-13")
	ivs := steady(p, 15*time.Minute, 250)
	ivs[3].Estimated = true // 00:45, night
	ch, err := tr.Price(Usage{Period: p, Location: london, Intervals: ivs})
	require.NoError(t, err)
	require.True(t, ch.Estimated)
	est := map[string]bool{}
	for _, l := range ch.Lines {
		est[string(l.Kind)+"/"+l.Name] = l.Estimated
	}
	assert.Equal(t, map[string]bool{"standing/": false, "tou/night": true, "tou/day": false, "tax/VAT": true}, est)
}

func TestPriceUsageErrors(t *testing.T) {
	london := mustLoad(t, "Europe/London")
	kolkata := mustLoad(t, "Asia/Kolkata")
	economy7 := mustParseFile(t, "economy7.yaml")
	gas := mustParseFile(t, "gas-kwh.json")
	demand := mustParse(t, `
code: D
name: demand
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0
    flat_rate: 0.2
    demand: {rate_per_kw: 10}
`)
	day := days(london, "2024-06-12", "2024-06-13")
	at := func(hhmm string, dur time.Duration, q meter.Value) Interval {
		tm, err := time.ParseInLocation("2006-01-02 15:04", "2024-06-12 "+hhmm, london)
		require.NoError(t, err)
		return Interval{Start: tm, Duration: dur, Quantity: q}
	}
	cases := []struct {
		name   string
		tariff Tariff
		usage  Usage
		want   string
	}{
		{"no location", economy7, Usage{Period: day}, "usage.location: required"},
		{"period not at midnight", economy7, Usage{Period: Period{day.Start.Add(time.Hour), day.End}, Location: london},
			"usage.period.start: 2024-06-12T01:00:00+01:00 is not a local midnight in Europe/London"},
		{"empty period", economy7, Usage{Period: Period{day.Start, day.Start}, Location: london}, "usage.period: 0 days"},
		{"before the first version", economy7, Usage{Period: days(london, "2023-12-31", "2024-01-02"), Location: london},
			"no version of tariff GB-E7-2024 is in force on 2023-12-31 (the first starts 2024-01-01)"},
		{"interval outside the period", economy7,
			Usage{Period: day, Location: london, Intervals: []Interval{{Start: day.End, Duration: time.Hour, Quantity: 1}}},
			"usage.intervals[0]: 2024-06-13T00:00:00+01:00 is outside the period"},
		{"overlapping intervals", economy7,
			Usage{Period: day, Location: london, Intervals: []Interval{at("10:00", time.Hour, 1), at("10:30", 15*time.Minute, 1)}},
			"usage.intervals[1]: overlaps intervals[0]"},
		{"odd duration", economy7,
			Usage{Period: day, Location: london, Intervals: []Interval{at("10:00", 5*time.Minute, 1)}},
			"usage.intervals[0].duration: 5m0s is not 15m, 30m or 1h"},
		{"negative quantity", economy7,
			Usage{Period: day, Location: london, Intervals: []Interval{at("10:00", time.Hour, -1)}},
			"usage.intervals[0].quantity: -0.001 is out of range 0..1000000000.000"},
		{"intervals longer than the demand window", demand,
			Usage{Period: day, Location: london, Intervals: []Interval{at("10:00", time.Hour, 1)}},
			"usage.intervals[0].duration: 1h0m0s is longer than the 15-minute demand window"},
		{"gas per kWh without calorific value", gas, Usage{Period: day, Location: london},
			"usage.calorific_value: a gas tariff priced per kWh needs"},
		{"an hour across two bands in a half-hour time zone", economy7,
			Usage{Period: days(kolkata, "2024-06-12", "2024-06-13"), Location: kolkata, Intervals: []Interval{{
				Start: time.Date(2024, 6, 12, 1, 0, 0, 0, time.UTC), Duration: time.Hour, Quantity: 1, // 06:30–07:30 IST
			}}},
			"usage.intervals[0]: 2024-06-12T06:30:00+05:30 spans two time-of-use bands"},
		{"invalid tariff", Tariff{}, Usage{Period: day, Location: london}, "code: required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.tariff.Price(c.usage)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), c.want)
		})
	}

	t.Run("half-hour intervals in a half-hour time zone are fine", func(t *testing.T) {
		p := days(kolkata, "2024-06-12", "2024-06-13")
		ch, err := economy7.Price(Usage{Period: p, Location: kolkata, Intervals: steady(p, 30*time.Minute, 500)})
		require.NoError(t, err)
		// Night 7 × 0.152 = 1.064 → 1.06; day 17 × 0.3012 = 5.1204 → 5.12.
		assert.Equal(t, "1.06", ch.Lines[1].Amount.StringFixed(2))
		assert.Equal(t, "5.12", ch.Lines[2].Amount.StringFixed(2))
	})
}

func TestPriceDoesNotUseDivisionPrecision(t *testing.T) {
	// The package rounds explicitly; a caller changing the library's global
	// division precision must not change a bill.
	old := decimal.DivisionPrecision
	decimal.DivisionPrecision = 2
	defer func() { decimal.DivisionPrecision = old }()
	london := mustLoad(t, "Europe/London")
	ch, err := mustParseFile(t, "gas-kwh.json").Price(Usage{
		Period: days(london, "2024-06-01", "2024-07-01"), Location: london,
		Intervals:      one(days(london, "2024-06-01", "2024-07-01"), 100_000),
		CalorificValue: dec("39.5"),
	})
	require.NoError(t, err)
	assert.Equal(t, "1122.063", ch.Lines[1].Quantity.String())
}

// BenchmarkPriceMonthTOU prices a 31-day month of 15-minute intervals
// (2,976) on a time-of-use tariff with seasons, a demand charge, levies and
// tax.
func BenchmarkPriceMonthTOU(b *testing.B) {
	la := mustLoad(b, "America/Los_Angeles")
	tr := mustParseFile(b, "full.yaml")
	p := days(la, "2025-05-01", "2025-06-01")
	ivs := steady(p, 15*time.Minute, 250)
	for i := range ivs {
		ivs[i].Quantity = meter.Value(100 + (i*7919)%400)
	}
	if len(ivs) != 2976 {
		b.Fatalf("%d intervals", len(ivs))
	}
	u := Usage{Period: p, Location: la, Intervals: ivs}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.Price(u); err != nil {
			b.Fatal(err)
		}
	}
}
