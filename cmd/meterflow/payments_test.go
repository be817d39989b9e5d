package main

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/payment/sandbox"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

// The running server turns a bill.issued event into an auto-payment that
// waits for the household's code, charges once it comes, sends a receipt,
// and posts the bill and the payment to a balanced ledger.
func TestServerAutoPaysAnIssuedBill(t *testing.T) {
	cfg := testConfig(t, testenv.InfluxURL(t), testenv.InfluxDB(t).Bucket)
	m := startMain(t, cfg)
	ctx := context.Background()
	db, store, inbox := m.DB, &postgres.Payments{DB: m.DB}, &postgres.DevSMS{DB: m.DB}
	const phone = "+447400123456"

	var hh, account, bill int64
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into households (name) values ('Ada') returning id`).Scan(&hh))
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into accounts (household_id, number, currency, time_zone)
		values ($1, 'A-1', 'GBP', 'Europe/London') returning id`, hh).Scan(&account))
	_, err := store.AddPhone(ctx, hh, phone, time.Now())
	require.NoError(t, err)
	tok, err := sandbox.Tokenize(sandbox.CardSuccess)
	require.NoError(t, err)
	method, err := store.AddPaymentMethod(ctx, postgres.PaymentMethod{HouseholdID: hh, Gateway: "sandbox", Token: tok, Last4: "4242"})
	require.NoError(t, err)

	code := func() string {
		msgs, err := inbox.Inbox(ctx, phone, 1)
		require.NoError(t, err)
		require.NotEmpty(t, msgs)
		c := regexp.MustCompile(`\b\d{6}\b`).FindString(msgs[0].Body)
		require.NotEmpty(t, c, msgs[0].Body)
		return c
	}
	rule, err := m.Setup.Enrol(ctx, payment.Rule{HouseholdID: hh, AccountID: account, Trigger: payment.TriggerBillIssued,
		MaxAmount: decimal.RequireFromString("200"), PaymentMethodID: method})
	require.NoError(t, err)
	_, err = m.Setup.ConfirmRule(ctx, hh, rule.ID, code())
	require.NoError(t, err)

	// Billing issues a bill and records its event in the same transaction.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.QueryRow(ctx, `insert into bills (account_id, household_id, period_start, period_end,
		period_start_at, period_end_at, time_zone, currency, subtotal, tax, total, issued_at, due_date)
		values ($1, $2, '2026-10-01', '2026-11-01', '2026-10-01T00:00:00+01', '2026-11-01T00:00:00Z', 'Europe/London', 'GBP',
		        80, 4, 84, now(), '2026-11-15') returning id`, account, hh).Scan(&bill))
	_, err = tx.Exec(ctx, `insert into outbox (event_key, kind, account_id, payload, occurred_at) values ($1, 'bill.issued', $2, $3, now())`,
		fmt.Sprintf("bill.issued:%d", bill), account,
		fmt.Sprintf(`{"bill_id": %d, "account_id": %d, "currency": "GBP", "total": "84.00"}`, bill, account))
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))

	var pay payment.Payment
	require.Eventually(t, func() bool {
		ps, err := store.ListPayments(ctx, hh, "otp_sent", 0, 10)
		require.NoError(t, err)
		if len(ps) == 1 {
			pay = ps[0]
		}
		return len(ps) == 1
	}, 10*time.Second, 50*time.Millisecond, "auto-pay creates the payment and sends its code")
	assert.Equal(t, bill, pay.BillID)
	assert.True(t, pay.Amount.Equal(decimal.RequireFromString("84")))

	got, err := m.Payments.Confirm(ctx, hh, pay.ID, code())
	require.NoError(t, err)
	assert.Equal(t, payment.Succeeded, got.State)
	msgs, err := inbox.Inbox(ctx, phone, 1)
	require.NoError(t, err)
	assert.Contains(t, msgs[0].Body, "receipt")

	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx, `select count(*) from ledger_entries where entry_key = $1`, fmt.Sprintf("bill:%d", bill)).Scan(&n))
		return n == 1
	}, 10*time.Second, 50*time.Millisecond, "the ledger consumer posts the bill")
	r, err := store.CheckLedger(ctx)
	require.NoError(t, err)
	assert.True(t, r.OK(), "%+v", r)
	var owed, revenue, tax string
	require.NoError(t, db.Pool.QueryRow(ctx, `select
		coalesce((select sum(amount) from ledger_postings where account = $1), 0)::text,
		(select sum(amount) from ledger_postings where account = 'revenue')::text,
		(select sum(amount) from ledger_postings where account = 'tax_payable')::text`,
		fmt.Sprintf("receivable:household:%d", hh)).Scan(&owed, &revenue, &tax))
	assert.Equal(t, "0", decimal.RequireFromString(owed).String(), "paid in full")
	assert.Equal(t, "-80", revenue)
	assert.Equal(t, "-4", tax)
	var status string
	require.NoError(t, db.Pool.QueryRow(ctx, `select status from bills where id = $1`, bill).Scan(&status))
	assert.Equal(t, "paid", status)
}
