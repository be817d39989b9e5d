package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/payment/sandbox"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/sms/smstest"
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

// The server with the real adapters: SMS through a Twilio-style API (an
// emulator that checks every request) with signed delivery reports back to
// the server, and charges through Stripe's API (stripe-mock, which answers
// every PaymentIntent with a failed attempt).
func TestServerWithTwilioAndStripe(t *testing.T) {
	tw := smstest.NewTwilioServer(t)
	sm := testenv.StartStripeMock(t)
	cfg := testConfig(t, testenv.InfluxURL(t), testenv.InfluxDB(t).Bucket)
	cfg.HTTPAddr = "127.0.0.1:" + freePort(t)
	cfg.Payments.SMS, cfg.Payments.Gateway = "twilio", "stripe"
	cfg.Payments.TwilioAccountSID, cfg.Payments.TwilioAuthToken, cfg.Payments.TwilioFrom = tw.AccountSID, tw.AuthToken, "+15005550006"
	cfg.Payments.TwilioBaseURL = tw.URL
	cfg.Payments.TwilioCallback = "http://" + cfg.HTTPAddr + smsCallbackPath
	cfg.Payments.StripeKey, cfg.Payments.StripeBackend = "sk_test_meterflow", sm.URL
	m := startMain(t, cfg)
	ctx := context.Background()
	db, store := m.DB, &postgres.Payments{DB: m.DB}
	const phone = "+447400765432"
	code := func() string {
		msgs, err := tw.Messages(ctx, phone)
		require.NoError(t, err)
		require.NotEmpty(t, msgs)
		c := regexp.MustCompile(`\b\d{6}\b`).FindString(msgs[len(msgs)-1].Body)
		require.NotEmpty(t, c)
		return c
	}

	var hh, account, bill int64
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into households (name) values ('Ada') returning id`).Scan(&hh))
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into accounts (household_id, number, currency, time_zone)
		values ($1, 'A-1', 'GBP', 'Europe/London') returning id`, hh).Scan(&account))
	ph, err := m.Setup.AddPhone(ctx, hh, "07400 765432")
	require.NoError(t, err)
	_, err = m.Setup.VerifyPhone(ctx, hh, ph.ID, code())
	require.NoError(t, err)
	method, err := m.Setup.AddMethod(ctx, hh, "pm_card_visa")
	require.NoError(t, err, "the gateway is asked what the token is")
	assert.Len(t, method.Last4, 4)
	rule, err := m.Setup.Enrol(ctx, payment.Rule{HouseholdID: hh, AccountID: account, Trigger: payment.TriggerBillIssued,
		MaxAmount: decimal.RequireFromString("200"), PaymentMethodID: method.ID})
	require.NoError(t, err)
	_, err = m.Setup.ConfirmRule(ctx, hh, rule.ID, code())
	require.NoError(t, err)

	require.NoError(t, db.Pool.QueryRow(ctx, `insert into bills (account_id, household_id, period_start, period_end,
		period_start_at, period_end_at, time_zone, currency, subtotal, tax, total, issued_at, due_date)
		values ($1, $2, '2026-10-01', '2026-11-01', '2026-10-01T00:00:00+01', '2026-11-01T00:00:00Z', 'Europe/London', 'GBP',
		        50, 2.5, 52.5, now(), '2026-11-15') returning id`, account, hh).Scan(&bill))
	_, err = db.Pool.Exec(ctx, `insert into outbox (event_key, kind, account_id, payload, occurred_at) values ($1, 'bill.issued', $2, $3, now())`,
		fmt.Sprintf("bill.issued:%d", bill), account, fmt.Sprintf(`{"bill_id": %d, "account_id": %d, "currency": "GBP", "total": "52.50"}`, bill, account))
	require.NoError(t, err)
	var pay payment.Payment
	require.Eventually(t, func() bool {
		ps, err := store.ListPayments(ctx, hh, "otp_sent", 0, 10)
		require.NoError(t, err)
		if len(ps) == 1 {
			pay = ps[0]
		}
		return len(ps) == 1
	}, 10*time.Second, 50*time.Millisecond)
	got, err := m.Payments.Confirm(ctx, hh, pay.ID, code())
	require.NoError(t, err)
	assert.Equal(t, payment.Failed, got.State, "stripe-mock's PaymentIntent fixture is a failed attempt")
	assert.Equal(t, "stripe", got.Gateway)
	assert.NotEmpty(t, got.GatewayChargeID, "the PaymentIntent's id")
	assert.Contains(t, got.FailureReason, "requires_payment_method")

	// Every message went through the provider and is recorded with its id;
	// a signed delivery report updates it, a forged one is refused.
	accepted := tw.Accepted()
	require.GreaterOrEqual(t, len(accepted), 4, "phone code, rule code, payment code, failure notice")
	for _, a := range accepted {
		var status string
		require.NoError(t, db.Pool.QueryRow(ctx, `select status from sms_messages where provider = 'twilio' and provider_id = $1`, a.SID).Scan(&status))
		assert.Equal(t, "sent", status)
		assert.Equal(t, cfg.Payments.TwilioCallback, a.StatusCallback)
	}
	sid := accepted[len(accepted)-1].SID
	st, err := tw.Report(ctx, sid, "delivered", "")
	require.NoError(t, err)
	assert.Equal(t, http.StatusNoContent, st)
	var status string
	require.NoError(t, db.Pool.QueryRow(ctx, `select status from sms_messages where provider_id = $1`, sid).Scan(&status))
	assert.Equal(t, "delivered", status)

	resp, err := http.PostForm(cfg.Payments.TwilioCallback, url.Values{"MessageSid": {sid}, "MessageStatus": {"failed"}})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "an unsigned report is refused")
	require.NoError(t, db.Pool.QueryRow(ctx, `select status from sms_messages where provider_id = $1`, sid).Scan(&status))
	assert.Equal(t, "delivered", status)
}
