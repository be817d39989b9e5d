package billing

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/tariff"
)

func date(s string) tariff.Date {
	d, err := tariff.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestCycleAt(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	auckland, err := time.LoadLocation("Pacific/Auckland")
	require.NoError(t, err)
	cases := []struct {
		name       string
		at         time.Time
		loc        *time.Location
		anchor     int
		start, end string
	}{
		{"first of the month", time.Date(2025, 1, 15, 12, 0, 0, 0, time.UTC), london, 1, "2025-01-01", "2025-02-01"},
		{"on the anchor day", date("2025-03-10").Start(london), london, 10, "2025-03-10", "2025-04-10"},
		{"just before the anchor", date("2025-03-10").Start(london).Add(-time.Nanosecond), london, 10, "2025-02-10", "2025-03-10"},
		{"across the year", time.Date(2025, 1, 3, 0, 0, 0, 0, time.UTC), london, 15, "2024-12-15", "2025-01-15"},
		{"local day, not UTC", time.Date(2025, 1, 31, 12, 0, 0, 0, time.UTC), auckland, 1, "2025-02-01", "2025-03-01"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := CycleAt(c.at, c.loc, c.anchor)
			assert.Equal(t, c.start, got.Start.String())
			assert.Equal(t, c.end, got.End.String())
		})
	}
	c := CycleAt(time.Date(2025, 3, 15, 0, 0, 0, 0, time.UTC), london, 1)
	assert.Equal(t, 31, c.Days())
	p := c.Period(london)
	assert.Equal(t, 743*time.Hour, p.End.Sub(p.Start), "March in London has a 23-hour day")
	assert.Equal(t, "2025-04-01", c.Next().Start.String())
	assert.Equal(t, "2025-02-01", c.Prev().Start.String())
}

func TestDuePeriods(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	asOf := date("2025-04-03").Start(london)
	type p struct{ from, to string }
	cases := []struct {
		name string
		acc  Account
		want []p
	}{
		{"never billed: the last cycle that ended", Account{AnchorDay: 1}, []p{{"2025-03-01", "2025-04-01"}}},
		{"billed through March", Account{AnchorDay: 1, LastBilledEnd: date("2025-04-01")}, nil},
		{"missed runs catch up", Account{AnchorDay: 1, LastBilledEnd: date("2025-02-01")}, []p{{"2025-02-01", "2025-03-01"}, {"2025-03-01", "2025-04-01"}}},
		{"moved in mid-cycle", Account{AnchorDay: 1, BillingFrom: date("2025-03-12")}, []p{{"2025-03-12", "2025-04-01"}}},
		{"moved in this cycle", Account{AnchorDay: 1, BillingFrom: date("2025-04-02")}, nil},
		{"anchor after as-of day", Account{AnchorDay: 5}, []p{{"2025-02-05", "2025-03-05"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []p
			for _, x := range duePeriods(c.acc, london, asOf, 12) {
				got = append(got, p{x.From.String(), x.To.String()})
				assert.False(t, x.From.Before(x.Cycle.Start))
				assert.Equal(t, x.To, x.Cycle.End)
			}
			assert.Equal(t, c.want, got)
		})
	}
	capped := duePeriods(Account{AnchorDay: 1, LastBilledEnd: date("2024-01-01")}, london, asOf, 3)
	assert.Len(t, capped, 3, "a run bills at most MaxCatchUp periods per account")
}

func TestServicePointSegments(t *testing.T) {
	sp := ServicePoint{TariffCode: "C", Assignments: []Assignment{
		{date("2024-06-01"), "A"}, {date("2025-01-11"), "B"}, {date("2025-01-20"), "B"}, {date("2025-03-01"), "C"},
	}}
	got := sp.segments(date("2025-01-01"), date("2025-02-01"))
	assert.Equal(t, []segment{{date("2025-01-01"), date("2025-01-11"), "A"}, {date("2025-01-11"), date("2025-02-01"), "B"}}, got)
	got = (ServicePoint{Assignments: []Assignment{{date("2025-01-15"), "A"}}}).segments(date("2025-01-01"), date("2025-02-01"))
	assert.Equal(t, []segment{{date("2025-01-01"), date("2025-01-15"), ""}, {date("2025-01-15"), date("2025-02-01"), "A"}}, got)
	got = (ServicePoint{TariffCode: "X"}).segments(date("2025-01-01"), date("2025-02-01"))
	assert.Equal(t, []segment{{date("2025-01-01"), date("2025-02-01"), "X"}}, got)
}

// TestEncodeTariffRoundTrip stores every example tariff the way the store
// does and reads it back.
func TestEncodeTariffRoundTrip(t *testing.T) {
	files, err := filepath.Glob("../tariff/testdata/*.*")
	require.NoError(t, err)
	n := 0
	for _, f := range files {
		if filepath.Ext(f) != ".yaml" && filepath.Ext(f) != ".json" {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			want, err := tariff.Parse(data)
			require.NoError(t, err)
			enc, err := EncodeTariff(want)
			require.NoError(t, err)
			got, err := tariff.Parse(enc)
			require.NoError(t, err, "%s", enc)
			assert.Equal(t, want, got)
		})
		n++
	}
	assert.GreaterOrEqual(t, n, 4)
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, Config{}.Validate())
	err := Config{DueDays: -1, Workers: 100, ForecastDays: 40}.Validate()
	require.Error(t, err)
	for _, s := range []string{"due days", "workers", "forecast days"} {
		assert.Contains(t, err.Error(), s)
	}
}
