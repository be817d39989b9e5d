package tariff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDate(t *testing.T) {
	cases := []struct {
		name string
		loc  string
		day  string
		want string // RFC 3339
	}{
		{"ordinary midnight", "Europe/London", "2024-06-12", "2024-06-12T00:00:00+01:00"},
		{"spring-forward day starts at midnight", "Europe/London", "2024-03-31", "2024-03-31T00:00:00Z"},
		{"fall-back day", "America/Los_Angeles", "2024-11-03", "2024-11-03T00:00:00-07:00"},
		// Cuba moves its clocks at midnight: 10 March 2024 starts at 01:00 CDT.
		{"midnight that does not exist", "America/Havana", "2024-03-10", "2024-03-10T01:00:00-04:00"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := date(c.day).Start(mustLoad(t, c.loc))
			assert.Equal(t, c.want, got.Format(time.RFC3339))
		})
	}
	assert.Equal(t, 31, date("2024-03-01").DaysUntil(date("2024-04-01")))
	assert.Equal(t, date("2024-03-01"), date("2024-02-28").AddDays(2), "2024 is a leap year")
	assert.True(t, date("2024-01-31").Before(date("2024-02-01")))
	_, err := ParseDate("2024-13-01")
	require.Error(t, err)
}

func TestPriceOnDayWithoutMidnight(t *testing.T) {
	// 10 March 2024 in Havana has 23 hours, from 01:00 CDT; it is still one
	// day of standing charge.
	havana := mustLoad(t, "America/Havana")
	tr := mustParse(t, `
code: CU
name: test
utility: electricity
currency: USD
unit: kWh
versions:
  - effective_from: 2024-01-01
    standing_charge_per_day: 1
    flat_rate: 0.1
`)
	p := days(havana, "2024-03-10", "2024-03-11")
	require.Equal(t, 23*time.Hour, p.End.Sub(p.Start))
	ch, err := tr.Price(Usage{Period: p, Location: havana, Intervals: steady(p, time.Hour, 1000)})
	require.NoError(t, err)
	// Standing 1 × 1.00; energy 23 × 0.10 = 2.30. Total 3.30.
	requireLines(t, ch, []want{
		{KindStanding, "", "1", "1", "1.00"},
		{KindEnergy, "", "23", "0.1", "2.30"},
	}, "3.30", "0.00", "3.30")
}
