package tariff

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func TestParseTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*.*")
	require.NoError(t, err)
	var n int
	for _, f := range files {
		if strings.HasSuffix(f, ".golden") {
			continue
		}
		n++
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			tr, err := Parse(data)
			require.NoError(t, err)
			require.NoError(t, tr.Validate())
		})
	}
	assert.GreaterOrEqual(t, n, 5)
}

func TestParseEconomy7(t *testing.T) {
	tr := mustParseFile(t, "economy7.yaml")
	night, day := dec("0.1520"), dec("0.3012")
	want := Tariff{
		Code:     "GB-E7-2024",
		Name:     "Economy 7 (fixed, 2024)",
		Utility:  meter.Electricity,
		Currency: "GBP",
		Unit:     KWh,
		Versions: []Version{{
			EffectiveFrom:        Date{2024, time.January, 1},
			StandingChargePerDay: dec("0.5322"),
			TOU: &TOU{Bands: []Band{
				{Name: "night", From: 0, To: 7, Days: AllDays, Rate: night},
				{Name: "day", From: 7, To: 24, Days: AllDays, Rate: day},
			}},
			Taxes: []Tax{{Name: "VAT", Percent: dec("5")}},
		}},
	}
	require.JSONEq(t, canon(t, want), canon(t, tr))
	// Rates are exact decimals read from the text, not float64.
	assert.True(t, tr.Versions[0].TOU.Bands[0].Rate.Equal(night))
	v, ok := tr.VersionAt(date("2024-06-01"))
	require.True(t, ok)
	assert.Equal(t, date("2024-01-01"), v.EffectiveFrom)
	_, ok = tr.VersionAt(date("2023-12-31"))
	assert.False(t, ok)
}

func TestParseYAMLAndJSONAgree(t *testing.T) {
	y := mustParse(t, `
code: G
name: gas
utility: gas
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-04-01
    standing_charge_per_day: 0.2982
    flat_rate: 0.0621
    taxes: [{name: VAT, percent: 5}]
`)
	j := mustParse(t, `{"code":"G","name":"gas","utility":"gas","currency":"GBP","unit":"kWh",
"versions":[{"effective_from":"2024-04-01","standing_charge_per_day":"0.2982","flat_rate":0.0621,
"taxes":[{"name":"VAT","percent":5}]}]}`)
	assert.JSONEq(t, canon(t, y), canon(t, j))
}

func TestParseErrors(t *testing.T) {
	// base is a valid tariff; each case replaces part of it.
	const base = `
code: X
name: test
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0.5
    flat_rate: 0.2
`
	const twoVersionsTOU = `
code: X
name: test
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 0.5
    flat_rate: 0.2
  - effective_from: 2024-06-01
    standing_charge_per_day: 0.5
    tou:
      bands:
        - {name: night, from: 0, to: 7, rate: 0.15}
        - {name: day, from: 7, to: 23, rate: 0.30}
        - {name: late, from: 25, to: 24, rate: 0.30}
`
	cases := []struct {
		name string
		in   string
		want []string // each must appear, on its own line of the joined error
	}{
		{"hour out of range", twoVersionsTOU, []string{
			"versions[1].tou.bands[2].from: hour 25 out of range 0..23",
			// The bad band is left out of the coverage check, so 23:00 is a gap.
			"versions[1].tou.bands: no band covers 23:00-24:00 on any day",
		}},
		{"overlapping bands", strings.Replace(base, "flat_rate: 0.2", `tou:
      bands:
        - {name: night, from: 0, to: 7, rate: 0.15}
        - {name: day, from: 6, to: 24, rate: 0.30}`, 1), []string{
			"versions[0].tou.bands[1]: overlaps bands[0] on weekdays 06:00-07:00",
			"versions[0].tou.bands[1]: overlaps bands[0] on weekends 06:00-07:00",
		}},
		{"hours not covered", strings.Replace(base, "flat_rate: 0.2", `tou:
      bands:
        - {name: night, from: 0, to: 7, rate: 0.15}
        - {name: day, from: 8, to: 20, days: weekdays, rate: 0.30}
        - {name: day, from: 7, to: 24, days: weekends, rate: 0.30}`, 1), []string{
			"versions[0].tou.bands: no band covers 07:00-08:00, 20:00-24:00 on weekdays",
		}},
		{"same band name, different rates", strings.Replace(base, "flat_rate: 0.2", `tou:
      bands:
        - {name: off-peak, from: 0, to: 16, rate: 0.15}
        - {name: peak, from: 16, to: 21, rate: 0.40}
        - {name: off-peak, from: 21, to: 24, rate: 0.16}`, 1), []string{
			`versions[0].tou.bands[2].rate: band "off-peak" costs 0.16 here but 0.15 in bands[0]: bands sharing a name share a rate`,
		}},
		{"seasons missing months and overlapping", strings.Replace(base, "flat_rate: 0.2", `tou:
      seasons:
        - name: summer
          from_month: 6
          to_month: 9
          bands: [{name: all, from: 0, to: 24, rate: 0.2}]
        - name: winter
          from_month: 9
          to_month: 3
          bands: [{name: all, from: 0, to: 24, rate: 0.3}]`, 1), []string{
			"versions[0].tou.seasons[1]: September is already in seasons[0]",
			"versions[0].tou.seasons: no season covers April, May",
		}},
		{"non-increasing tier thresholds", strings.Replace(base, "flat_rate: 0.2", `tiers:
      blocks:
        - {up_to: 300, rate: 0.10}
        - {up_to: 100, rate: 0.15}
        - {rate: 0.20}`, 1), []string{
			"versions[0].tiers.blocks[1].up_to: threshold 100 is not above the previous block's 300: thresholds must increase",
		}},
		{"last tier with a threshold", strings.Replace(base, "flat_rate: 0.2", `tiers:
      blocks: [{up_to: 100, rate: 0.1}, {up_to: 200, rate: 0.2}]`, 1), []string{
			"versions[0].tiers.blocks[1].up_to: the last block prices the rest of the usage and has no up_to",
		}},
		{"negative price", strings.Replace(base, "flat_rate: 0.2", "flat_rate: -0.2", 1), []string{
			"versions[0].flat_rate: negative price -0.2",
		}},
		{"too many decimals", strings.Replace(base, "flat_rate: 0.2", "flat_rate: 0.1234567", 1), []string{
			"versions[0].flat_rate: 0.1234567 has more than 6 decimals",
		}},
		{"lower-case currency", strings.Replace(base, "GBP", "gbp", 1), []string{
			`currency: "gbp" is not an ISO 4217 code (three upper-case letters, such as GBP)`,
		}},
		{"unsupported currency", strings.Replace(base, "GBP", "XYZ", 1), []string{
			`currency: "XYZ" is not a supported currency`,
		}},
		{"versions out of order", base + `
  - effective_from: 2023-06-01
    standing_charge_per_day: 0.5
    flat_rate: 0.2
`, []string{
			"versions[1].effective_from: 2023-06-01 is not after versions[0].effective_from 2024-01-01: versions must be in date order",
		}},
		{"unknown fields", strings.Replace(base, "flat_rate: 0.2", "flat_rat: 0.2\n    colour: blue", 1), []string{
			"versions[0].flat_rat: unknown field",
			"versions[0].colour: unknown field",
		}},
		{"duplicate field", base + "code: Y\n", []string{"code: duplicate field"}},
		{"missing required fields", `{"code": "X", "versions": [{"flat_rate": 1}]}`, []string{
			"name: required", "utility: required", "currency: required", "unit: required",
			"versions[0].effective_from: required", "versions[0].standing_charge_per_day: required",
		}},
		{"not a number", strings.Replace(base, "flat_rate: 0.2", "flat_rate: cheap", 1), []string{
			`versions[0].flat_rate: "cheap" is not a decimal number`,
		}},
		{"infinity", strings.Replace(base, "flat_rate: 0.2", "flat_rate: .inf", 1), []string{
			`versions[0].flat_rate: ".inf" is not a decimal number`,
		}},
		{"bad date", strings.Replace(base, "2024-01-01", "2024-02-30", 1), []string{
			`versions[0].effective_from: date "2024-02-30" is not YYYY-MM-DD`,
		}},
		{"wrong shape", strings.Replace(base, "flat_rate: 0.2", "flat_rate: [0.2]", 1), []string{
			"versions[0].flat_rate: want a value, found a list",
		}},
		{"no energy component", strings.Replace(base, "    flat_rate: 0.2\n", "", 1), []string{
			"versions[0]: exactly one of flat_rate, tiers and tou must be set (found none)",
		}},
		{"two energy components", strings.Replace(base, "flat_rate: 0.2", `flat_rate: 0.2
    tiers: {blocks: [{rate: 0.1}]}`, 1), []string{
			"versions[0]: exactly one of flat_rate, tiers and tou must be set (found flat_rate, tiers)",
		}},
		{"demand on gas", strings.NewReplacer("utility: electricity", "utility: gas",
			"flat_rate: 0.2", "flat_rate: 0.2\n    demand: {rate_per_kw: 3, window_minutes: 20}").Replace(base), []string{
			"versions[0].demand: a demand charge applies to electricity only",
			"versions[0].demand.window_minutes: 20 is not 15, 30 or 60",
		}},
		{"water per kWh", strings.Replace(base, "utility: electricity", "utility: water", 1), []string{
			"unit: water is priced per m3, not kWh",
		}},
		{"levy with both bases", strings.Replace(base, "flat_rate: 0.2", `flat_rate: 0.2
    levies: [{name: L, per_unit: 0.1, per_bill: 1}, {name: M}]`, 1), []string{
			"versions[0].levies[0]: set per_unit or per_bill, not both",
			"versions[0].levies[1]: per_unit or per_bill is required",
		}},
		{"tax out of range", strings.Replace(base, "flat_rate: 0.2", `flat_rate: 0.2
    taxes: [{name: VAT, percent: 120}, {name: VAT, percent: 5}]`, 1), []string{
			"versions[0].taxes[0].percent: 120 out of range 0..100",
			`versions[0].taxes[1].name: "VAT" is already taxes[0]`,
		}},
		{"YAML alias", strings.Replace(base, "flat_rate: 0.2", "standing: &s 1\n    flat_rate: *s", 1), []string{
			"versions[0].standing: unknown field",
			"versions[0].flat_rate: YAML aliases are not supported",
		}},
		{"empty", "", []string{"empty file"}},
		{"not a mapping", "- 1\n- 2\n", []string{"want a mapping, found a list"}},
		{"two documents", base + "---\n" + base, []string{"more than one YAML document"}},
		{"syntax error", "code: [", []string{"yaml: line 1: did not find expected node content"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.in))
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalid)
			lines := strings.Split(err.Error(), "\n")
			for _, w := range c.want {
				assert.Contains(t, lines, w)
			}
			var fe *FieldError
			assert.True(t, errors.As(err, &fe))
		})
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	rate := dec("0.2")
	tr := Tariff{
		Code: "C", Name: "in code", Utility: meter.Electricity, Currency: "USD", Unit: KWh,
		Versions: []Version{{EffectiveFrom: date("2024-01-01"), FlatRate: &rate}},
	}
	require.NoError(t, tr.Validate())
	tr.Versions[0].Tiers = &Tiers{Blocks: []Block{{Rate: rate}}}
	tr.Versions = append(tr.Versions, Version{EffectiveFrom: Date{2024, 2, 30}, FlatRate: &rate})
	err := tr.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "versions[0]: exactly one of flat_rate, tiers and tou must be set (found flat_rate, tiers)")
	assert.Contains(t, err.Error(), "versions[1].effective_from: 2024-02-30 is not a calendar date")
}

// TestDocsExample keeps the example in docs/billing.md and testdata/full.yaml
// the same file, so the documented format always parses.
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/billing.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(doc), "## Tariff file format")
	require.True(t, ok, "docs/billing.md has no Tariff file format section")
	_, block, ok := strings.Cut(section, "```yaml\n")
	require.True(t, ok)
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	full, err := os.ReadFile("testdata/full.yaml")
	require.NoError(t, err)
	require.Equal(t, string(full), block, "docs/billing.md example differs from testdata/full.yaml")
	_, err = Parse([]byte(block))
	require.NoError(t, err)
}

// TestGoldenBill prices a month across the version change of
// testdata/full.yaml and compares the rendered bill with
// testdata/full.bill.golden (go test -run TestGoldenBill -update rewrites it).
func TestGoldenBill(t *testing.T) {
	la := mustLoad(t, "America/Los_Angeles")
	tr := mustParseFile(t, "full.yaml")
	p := days(la, "2025-09-16", "2025-10-16")
	ivs := steady(p, 15*time.Minute, 150)
	for i := range ivs {
		local := ivs[i].Start.In(la)
		if h := local.Hour(); h >= 17 && h < 20 {
			ivs[i].Quantity = 900 // 3.6 kW in the evening
		}
		if local.Day() == 20 && local.Hour() == 18 {
			ivs[i].Quantity = 1500 // a 6 kW hour on 20 September
			ivs[i].Estimated = true
		}
	}
	ch, err := tr.Price(Usage{Period: p, Location: la, Intervals: ivs})
	require.NoError(t, err)
	got := ch.String()
	const golden = "testdata/full.bill.golden"
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	assert.Equal(t, string(want), got)
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.*")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil && !strings.HasSuffix(name, ".golden") {
			f.Add(data)
		}
	}
	f.Add([]byte("code: [\n"))
	f.Add([]byte("{\"code\": 1e999999999}"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := Parse(data)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			return
		}
		require.NoError(t, tr.Validate())
		// Whatever parses can be priced without panicking.
		d := tr.Versions[len(tr.Versions)-1].EffectiveFrom
		p := Period{Start: d.Start(time.UTC), End: d.AddDays(2).Start(time.UTC)}
		u := Usage{Period: p, Location: time.UTC, CalorificValue: dec("39.5"),
			Intervals: []Interval{
				{Start: p.Start, Duration: 15 * time.Minute, Quantity: 1234},
				{Start: p.Start.Add(26 * time.Hour), Duration: 15 * time.Minute, Quantity: 99999, Estimated: true},
			}}
		c, err := tr.Price(u)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			return
		}
		// Every line is explainable and the totals add up.
		minor, _ := MinorUnits(c.Currency)
		sum := decimal.Zero
		for _, l := range c.Lines {
			require.True(t, l.Quantity.Mul(l.UnitPrice).Round(minor).Equal(l.Amount), "%+v", l)
			require.False(t, l.Amount.IsNegative(), "%+v", l)
			sum = sum.Add(l.Amount)
		}
		require.True(t, sum.Equal(c.Total))
		require.True(t, c.Subtotal.Add(c.Tax).Equal(c.Total))
	})
}

// canon renders a value as JSON, where decimals compare by value.
func canon(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
