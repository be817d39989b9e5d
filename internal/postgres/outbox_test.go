package postgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/testenv"
)

// Deliveries have no foreign keys (migration 010): the fan-out trigger makes
// them only from events being inserted and registered consumers, and the
// outbox and its consumers refuse the deletes that would leave a delivery
// pointing nowhere.
func TestOutboxDeliveriesIntegrity(t *testing.T) {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	var acc, ev int64
	require.NoError(t, db.Pool.QueryRow(ctx, `with h as (insert into households (name) values ('Ada') returning id)
		insert into accounts (household_id, number, currency, time_zone) select id, 'A-1', 'GBP', 'Europe/London' from h returning id`).Scan(&acc))
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into outbox (event_key, kind, account_id, payload, occurred_at)
		values ('bill.issued:1', 'bill.issued', $1, '{}', now()) returning id`, acc).Scan(&ev))

	var consumers []string
	rows, err := db.Pool.Query(ctx, `select consumer from outbox_deliveries where outbox_id = $1 order by consumer`, ev)
	require.NoError(t, err)
	for rows.Next() {
		var c string
		require.NoError(t, rows.Scan(&c))
		consumers = append(consumers, c)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []string{"alerts", "autopay", "ledger"}, consumers, "one delivery per interested consumer")

	_, err = db.Pool.Exec(ctx, `delete from outbox where id = $1`, ev)
	require.ErrorContains(t, err, "cannot be deleted")
	_, err = db.Pool.Exec(ctx, `delete from outbox_consumers where name = 'alerts'`)
	require.ErrorContains(t, err, "still has deliveries")
	_, err = db.Pool.Exec(ctx, `update outbox_consumers set name = 'alerts2' where name = 'alerts'`)
	require.ErrorContains(t, err, "still has deliveries")

	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `select count(*) from outbox_deliveries d
		where not exists (select 1 from outbox o where o.id = d.outbox_id)
		   or not exists (select 1 from outbox_consumers c where c.name = d.consumer)`).Scan(&n))
	assert.Zero(t, n, "no delivery points nowhere")

	// A consumer with no deliveries yet can still be removed.
	_, err = db.Pool.Exec(ctx, `insert into outbox_consumers (name, kinds) values ('unused', '{nothing.ever}')`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `delete from outbox_consumers where name = 'unused'`)
	require.NoError(t, err)
}
