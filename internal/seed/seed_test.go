package seed_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/seed"
	"github.com/meterflow/meterflow/internal/tariff"
	"github.com/meterflow/meterflow/internal/testenv"
)

func TestSeed(t *testing.T) {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	opts := seed.Options{Accounts: 5, From: tariff.Date{Year: 2025, Month: 3, Day: 29}, To: tariff.Date{Year: 2025, Month: 4, Day: 1},
		Interval: time.Hour, Utilities: []meter.Utility{meter.Electricity, meter.Gas}}
	r, err := seed.Run(ctx, db, opts)
	require.NoError(t, err)
	// 29 and 31 March have 24 hours, 30 March 23.
	assert.Equal(t, int64(5*2*71), r.Intervals)
	assert.Equal(t, int64(1), r.FirstAccount)
	assert.Equal(t, int64(5), r.LastAccount)

	// Seeding again continues the ids.
	opts.Interval, opts.Utilities = 24*time.Hour, nil
	r, err = seed.Run(ctx, db, opts)
	require.NoError(t, err)
	assert.Equal(t, int64(6), r.FirstAccount)
	assert.Equal(t, int64(5*3*3), r.Intervals)

	var accounts, points, tariffs int
	require.NoError(t, db.Pool.QueryRow(ctx, `select (select count(*) from accounts), (select count(*) from service_points),
		(select count(distinct tariff_code) from service_points)`).Scan(&accounts, &points, &tariffs))
	assert.Equal(t, 10, accounts)
	assert.Equal(t, 25, points)
	assert.Equal(t, 4, tariffs, "flat and Economy 7 electricity, water, gas")
	// New accounts get the next ids from their sequences.
	var id int64
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into households (name) values ('x') returning id`).Scan(&id))
	assert.Equal(t, int64(11), id)

	require.Error(t, seed.Options{Accounts: 0, Interval: 7 * time.Minute}.Validate())
	assert.Len(t, seed.Tariffs(), 4)
}
