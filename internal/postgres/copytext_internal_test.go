package postgres

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// appendUTC writes what the layout it replaces writes, whatever the zone,
// fraction and year.
func TestAppendUTC(t *testing.T) {
	auckland, err := time.LoadLocation("Pacific/Auckland")
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(3, 4))
	times := []time.Time{
		time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2025, 3, 30, 1, 0, 0, 500, time.UTC),          // below a microsecond: dropped
		time.Date(2025, 3, 30, 1, 0, 0, 120000000, auckland),    // trailing zeros trimmed
		time.Date(999, 12, 31, 23, 59, 59, 999999999, time.UTC), // truncated, not rounded
	}
	for range 5000 {
		times = append(times, time.Unix(r.Int64N(4_000_000_000), r.Int64N(1_000_000_000)).In(auckland))
	}
	for _, tm := range times {
		require.Equal(t, tm.UTC().Format("2006-01-02 15:04:05.999999Z07:00"), string(appendUTC(nil, tm)), tm.String())
	}
}
