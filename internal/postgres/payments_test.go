package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

func TestLedgerRefusesUnbalancedEntries(t *testing.T) {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	store := &postgres.Payments{DB: db}
	post := func(amounts ...string) error {
		return db.InTx(ctx, func(tx pgx.Tx) error {
			var id int64
			if err := tx.QueryRow(ctx, `insert into ledger_entries (entry_key, posted_at) values ($1, now()) returning id`,
				time.Now().String()).Scan(&id); err != nil {
				return err
			}
			for i, a := range amounts {
				if _, err := tx.Exec(ctx, `insert into ledger_postings (entry_id, line_no, account, amount, currency)
					values ($1, $2, 'gateway_clearing', $3::numeric, 'GBP')`, id, i+1, a); err != nil {
					return err
				}
			}
			return nil
		})
	}
	require.NoError(t, post("10.00", "-4.00", "-6.00"))
	assert.ErrorContains(t, post("10.00", "-9.99"), "does not balance")
	assert.ErrorContains(t, post(), "does not balance", "an entry without postings")
	assert.ErrorContains(t, post("10.00"), "does not balance")

	_, err := db.Pool.Exec(ctx, `update ledger_postings set amount = 11`)
	assert.ErrorContains(t, err, "immutable")
	_, err = db.Pool.Exec(ctx, `delete from ledger_entries`)
	assert.ErrorContains(t, err, "immutable")

	r, err := store.CheckLedger(ctx)
	require.NoError(t, err)
	assert.True(t, r.OK())
	assert.Equal(t, 1, r.Entries)
	assert.Equal(t, 3, r.Postings)
	assert.True(t, r.Totals["GBP"].Equal(decimal.Zero))
}

func TestPaymentMethodsRefuseCardNumbers(t *testing.T) {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	store := &postgres.Payments{DB: db}
	var hh int64
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into households (name) values ('Ada') returning id`).Scan(&hh))
	for _, pan := range []string{"4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242"} {
		_, err := store.AddPaymentMethod(ctx, postgres.PaymentMethod{HouseholdID: hh, Gateway: "sandbox", Token: pan})
		assert.Error(t, err, pan)
	}
	_, err := store.AddPaymentMethod(ctx, postgres.PaymentMethod{HouseholdID: hh, Gateway: "sandbox", Token: "tok_sandbox_424242_4242", Last4: "4242"})
	assert.NoError(t, err)
	_, err = store.AddPhone(ctx, hh, "07700 900123", time.Time{})
	assert.Error(t, err, "phones are stored in E.164")
}
