package tariff

import (
	"os"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
)

// mustParse parses a tariff written in a test.
func mustParse(t testing.TB, yaml string) Tariff {
	t.Helper()
	tr, err := Parse([]byte(yaml))
	require.NoError(t, err)
	return tr
}

func mustParseFile(t testing.TB, name string) Tariff {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return mustParse(t, string(data))
}

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

func date(s string) Date {
	d, err := ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

// days is the period of local days [from, to) in loc.
func days(loc *time.Location, from, to string) Period {
	return Period{Start: date(from).Start(loc), End: date(to).Start(loc)}
}

// steady fills a period with intervals of dur, each of q Values.
func steady(p Period, dur time.Duration, q meter.Value) []Interval {
	var out []Interval
	for t := p.Start; t.Before(p.End); t = t.Add(dur) {
		out = append(out, Interval{Start: t, Duration: dur, Quantity: q})
	}
	return out
}

// one is a single hourly interval at the start of the period holding all
// its usage: enough for tariffs that do not look at the time of day.
func one(p Period, q meter.Value) []Interval {
	return []Interval{{Start: p.Start, Duration: time.Hour, Quantity: q}}
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// want is an expected line, amounts as written on a bill.
type want struct {
	kind   LineKind
	name   string
	qty    string
	price  string
	amount string
}

// requireLines checks the lines of c, that each is explainable (quantity ×
// unit price rounds to the amount) and that the totals add up.
func requireLines(t *testing.T, c Charge, lines []want, subtotal, tax, total string) {
	t.Helper()
	minor, ok := MinorUnits(c.Currency)
	require.True(t, ok)
	var got []want
	sub, tx := decimal.Zero, decimal.Zero
	for _, l := range c.Lines {
		require.True(t, l.Quantity.Mul(l.UnitPrice).Round(minor).Equal(l.Amount),
			"%s: %s × %s is not %s", l.Description, l.Quantity, l.UnitPrice, l.Amount)
		require.NotEmpty(t, l.Description)
		require.False(t, l.TariffVersion.IsZero())
		got = append(got, want{l.Kind, l.Name, l.Quantity.String(), l.UnitPrice.String(), l.Amount.StringFixed(minor)})
		if l.Kind == KindTax {
			tx = tx.Add(l.Amount)
		} else {
			sub = sub.Add(l.Amount)
		}
	}
	require.Equal(t, lines, got, "lines of\n%s", c)
	require.Equal(t, subtotal, c.Subtotal.StringFixed(minor), "subtotal")
	require.Equal(t, tax, c.Tax.StringFixed(minor), "tax")
	require.Equal(t, total, c.Total.StringFixed(minor), "total")
	require.True(t, sub.Equal(c.Subtotal))
	require.True(t, tx.Equal(c.Tax))
	require.True(t, c.Subtotal.Add(c.Tax).Equal(c.Total))
}
