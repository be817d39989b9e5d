package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

// A bill is overdue from the day after its due date in its own time zone,
// once, with one event; a paid bill never is.
func TestMarkOverdue(t *testing.T) {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	store := &postgres.Billing{DB: db}
	var hh int64
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into households (name) values ('Ada') returning id`).Scan(&hh))
	bill := func(number, tz, due, status string) int64 {
		var acc, id int64
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into accounts (household_id, number, currency, time_zone)
			values ($1, $2, 'GBP', $3) returning id`, hh, number, tz).Scan(&acc))
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into bills (account_id, household_id, period_start, period_end,
			period_start_at, period_end_at, time_zone, currency, subtotal, tax, total, status, issued_at, due_date)
			values ($1, $2, '2026-01-01', '2026-02-01', '2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', $3, 'GBP', 10, 2, 12, $4,
			        '2026-02-01T00:00:00Z', $5) returning id`, acc, hh, tz, status, due).Scan(&id))
		return id
	}
	london := bill("L", "Europe/London", "2026-02-15", "issued")
	auckland := bill("A", "Pacific/Auckland", "2026-02-15", "issued")
	paid := bill("P", "Europe/London", "2026-02-01", "paid")

	status := func(id int64) string {
		var s string
		require.NoError(t, db.Pool.QueryRow(ctx, `select status from bills where id = $1`, id).Scan(&s))
		return s
	}
	// 2026-02-15 12:00 UTC is the 16th in Auckland, still the 15th in London.
	n, err := store.MarkOverdue(ctx, time.Date(2026, 2, 15, 12, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, "overdue", status(auckland))
	assert.Equal(t, "issued", status(london))

	n, err = store.MarkOverdue(ctx, time.Date(2026, 2, 16, 0, 30, 0, 0, time.UTC))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, "overdue", status(london))
	assert.Equal(t, "paid", status(paid))

	n, err = store.MarkOverdue(ctx, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	assert.Zero(t, n, "marked once")
	var events int
	var total string
	require.NoError(t, db.Pool.QueryRow(ctx, `select count(*), min(payload->>'total') from outbox where kind = 'bill.overdue'`).Scan(&events, &total))
	assert.Equal(t, 2, events)
	assert.Equal(t, "12", total)
}
