package payment_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/outbox"
	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/payment/sandbox"
)

func (e *env) setup() *payment.Setup {
	return e.svc.NewSetup(e.store, "GB")
}

// codeFor reads the latest code sent to a number.
func (e *env) codeFor(to string) (string, string) {
	e.t.Helper()
	msgs, err := e.sms.Inbox(e.ctx, to, 1)
	require.NoError(e.t, err)
	require.NotEmpty(e.t, msgs)
	m := codeRE.FindStringSubmatch(msgs[0].Body)
	require.NotNil(e.t, m, msgs[0].Body)
	return m[1], msgs[0].Body
}

func (e *env) inboxLen(to string) int {
	msgs, err := e.sms.Inbox(e.ctx, to, 100)
	require.NoError(e.t, err)
	return len(msgs)
}

func (e *env) event(key, kind string, payload map[string]any) outbox.Event {
	b, err := json.Marshal(payload)
	require.NoError(e.t, err)
	return outbox.Event{ID: 1, Key: key, Kind: kind, AccountID: e.account, Payload: b, OccurredAt: e.clock.Now(), Attempt: 1}
}

func (e *env) enrol(st *payment.Setup, r payment.Rule) payment.Rule {
	e.t.Helper()
	r.HouseholdID, r.AccountID = e.household, e.account
	got, err := st.Enrol(e.ctx, r)
	require.NoError(e.t, err)
	code, _ := e.codeFor(phone)
	got, err = st.ConfirmRule(e.ctx, e.household, got.ID, code)
	require.NoError(e.t, err)
	require.True(e.t, got.Enabled)
	return got
}

func TestPhoneVerification(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	st := e.setup()
	p, err := st.AddPhone(e.ctx, e.household, "07400 123456")
	require.NoError(t, err)
	assert.Equal(t, "+447400123456", p.E164, "normalised to E.164")
	assert.False(t, p.Verified())
	code, body := e.codeFor("+447400123456")
	assert.Contains(t, body, "verify this number")

	_, err = st.AddPhone(e.ctx, e.household, "not a number")
	assert.True(t, apperr.Is(err, apperr.Invalid), "%v", err)

	_, err = st.VerifyPhone(e.ctx, e.household+1, p.ID, code)
	assert.True(t, apperr.Is(err, apperr.NotFound), "another household's phone: %v", err)
	_, err = st.VerifyPhone(e.ctx, e.household, p.ID, wrongCode(code))
	assert.Error(t, err)
	var attempts int
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select attempts from otp_codes where phone_id = $1`, p.ID).Scan(&attempts))
	assert.Equal(t, 1, attempts, "a wrong code counts")

	// Resend is refused within a minute, allowed after.
	assert.True(t, apperr.Is(st.SendPhoneCode(e.ctx, e.household, p.ID), apperr.RateLimited))
	e.clock.Advance(61 * time.Second)
	require.NoError(t, st.SendPhoneCode(e.ctx, e.household, p.ID))
	_, err = st.VerifyPhone(e.ctx, e.household, p.ID, code)
	assert.Error(t, err, "the first code is replaced by the resend")
	code, _ = e.codeFor("+447400123456")

	got, err := st.VerifyPhone(e.ctx, e.household, p.ID, code)
	require.NoError(t, err)
	assert.True(t, got.Verified())
	_, err = st.VerifyPhone(e.ctx, e.household, p.ID, code)
	assert.True(t, apperr.Is(err, apperr.Conflict), "replay: %v", err)

	phones, err := st.Phones(e.ctx, e.household)
	require.NoError(t, err)
	assert.Len(t, phones, 2)
}

func TestEnrolmentNeedsTheCodeForItsExactTerms(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	st := e.setup()
	r, err := st.Enrol(e.ctx, payment.Rule{HouseholdID: e.household, AccountID: e.account, Trigger: payment.TriggerBillIssued,
		MaxAmount: decimal.RequireFromString("150"), PaymentMethodID: e.methods[sandbox.CardSuccess]})
	require.NoError(t, err)
	assert.False(t, r.Enabled)
	assert.Equal(t, "GBP", r.Currency)
	code, body := e.codeFor(phone)
	assert.Contains(t, body, "pay each bill when it is issued")
	assert.Contains(t, body, "150.00 GBP")
	_, ok, err := e.store.ActiveRule(e.ctx, e.account, payment.TriggerBillIssued)
	require.NoError(t, err)
	assert.False(t, ok, "not in effect before confirmation")

	// Changing the terms drops the first code.
	e.clock.Advance(time.Minute)
	r2, err := st.Enrol(e.ctx, payment.Rule{HouseholdID: e.household, AccountID: e.account, Trigger: payment.TriggerBillIssued,
		MaxAmount: decimal.RequireFromString("900"), PaymentMethodID: e.methods[sandbox.CardSuccess]})
	require.NoError(t, err)
	_, err = st.ConfirmRule(e.ctx, e.household, r2.ID, code)
	assert.Error(t, err, "a code for other terms confirms nothing")
	code2, _ := e.codeFor(phone)
	_, err = st.ConfirmRule(e.ctx, e.household+1, r2.ID, code2)
	assert.True(t, apperr.Is(err, apperr.NotFound))
	// A payment's confirmation cannot use the rule's code.
	p := e.create(sandbox.CardSuccess, "manual:1")
	require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
	_, err = e.svc.Confirm(e.ctx, e.household, p.ID, code2)
	assert.Error(t, err)

	got, err := st.ConfirmRule(e.ctx, e.household, r2.ID, code2)
	require.NoError(t, err)
	assert.True(t, got.Enabled)
	assert.True(t, got.MaxAmount.Equal(decimal.RequireFromString("900")))

	// Paying the cost so far as well as each bill would pay twice.
	_, err = st.Enrol(e.ctx, payment.Rule{HouseholdID: e.household, AccountID: e.account, Trigger: payment.TriggerAccruedAbove,
		AccruedAbove: decimal.RequireFromString("50"), MaxAmount: decimal.RequireFromString("100"), PaymentMethodID: e.methods[sandbox.CardSuccess]})
	assert.True(t, apperr.Is(err, apperr.Invalid), "%v", err)

	// Bad terms name their field.
	_, err = st.Enrol(e.ctx, payment.Rule{HouseholdID: e.household, AccountID: e.account, Trigger: payment.TriggerBalanceBelow,
		MaxAmount: decimal.RequireFromString("10"), TopUpAmount: decimal.RequireFromString("-1"), PaymentMethodID: e.methods[sandbox.CardSuccess]})
	var ae *apperr.Error
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "topup_amount", ae.Field)

	off, err := st.DisableRule(e.ctx, e.household, r2.ID)
	require.NoError(t, err)
	assert.False(t, off.Enabled)
	_, ok, err = e.store.ActiveRule(e.ctx, e.account, payment.TriggerBillIssued)
	require.NoError(t, err)
	assert.False(t, ok)
}

func TestBillIssuedAutoPayOnceThenReceipt(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	st := e.setup()
	rule := e.enrol(st, payment.Rule{Trigger: payment.TriggerBillIssued, MaxAmount: decimal.RequireFromString("150"),
		PaymentMethodID: e.methods[sandbox.CardSuccess]})
	before := e.inboxLen(phone)

	ev := e.event(fmt.Sprintf("bill.issued:%d", e.bill), payment.EventBillIssued,
		map[string]any{"bill_id": e.bill, "account_id": e.account, "currency": "GBP", "total": "96.68"})
	require.NoError(t, st.HandleAutopayEvent(e.ctx, ev))
	require.NoError(t, st.HandleAutopayEvent(e.ctx, ev), "a redelivered event")
	var ids []int64
	rows, err := e.db.Pool.Query(e.ctx, `select id from payments where autopay_rule_id = $1`, rule.ID)
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.Len(t, ids, 1, "one payment per event")
	p := e.payment(ids[0])
	assert.Equal(t, payment.OTPSent, p.State)
	assert.Equal(t, fmt.Sprintf("autopay:%d:bill.issued:%d", rule.ID, e.bill), p.IdempotencyKey)
	assert.Equal(t, before+1, e.inboxLen(phone), "one code, not one per delivery")
	code, body := e.codeFor(phone)
	assert.Contains(t, body, "96.68 GBP")
	assert.Contains(t, body, "Meterflow Energy")
	assert.Contains(t, body, fmt.Sprintf("bill %d", e.bill))

	got, err := e.svc.Confirm(e.ctx, e.household, p.ID, code)
	require.NoError(t, err)
	assert.Equal(t, payment.Succeeded, got.State)
	_, receipt := e.lastInbox(phone)
	assert.Contains(t, receipt, "receipt")
	assert.Contains(t, receipt, "96.68 GBP")

	// Posting the bill and the payment leaves the household owing nothing.
	posted, err := e.store.PostBill(e.ctx, e.bill)
	require.NoError(t, err)
	assert.True(t, posted)
	posted, err = e.store.PostBill(e.ctx, e.bill)
	require.NoError(t, err)
	assert.False(t, posted, "a bill is posted once")
	r, err := e.store.CheckLedger(e.ctx)
	require.NoError(t, err)
	assert.True(t, r.OK())
	var owed decimal.Decimal
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select coalesce(sum(amount), 0)::text from ledger_postings where account = $1`,
		fmt.Sprintf("receivable:household:%d", e.household)).Scan(&owed))
	assert.True(t, owed.IsZero(), "receivable %s", owed)
}

func (e *env) lastInbox(to string) (int64, string) {
	msgs, err := e.sms.Inbox(e.ctx, to, 1)
	require.NoError(e.t, err)
	require.NotEmpty(e.t, msgs)
	return msgs[0].ID, msgs[0].Body
}

func TestTopUpWithoutCodeOnlyWhereAllowed(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	st := e.setup()
	e.enrol(st, payment.Rule{Trigger: payment.TriggerBalanceBelow, BalanceBelow: decimal.RequireFromString("5"),
		TopUpAmount: decimal.RequireFromString("20"), OTPFreeBelow: decimal.RequireFromString("25"), MaxAmount: decimal.RequireFromString("30"),
		PaymentMethodID: e.methods[sandbox.CardSuccess]})
	var threshold string
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select balance_below::text from account_thresholds where account_id = $1`, e.account).Scan(&threshold))
	assert.Equal(t, "5", threshold, "billing watches the rule's threshold")

	require.NoError(t, st.HandleAutopayEvent(e.ctx, e.event("balance.below:1", payment.EventBalanceBelow,
		map[string]any{"account_id": e.account, "currency": "GBP"})))
	var state, balance string
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select state from payments where idempotency_key like 'autopay:%:balance.below:1'`).Scan(&state))
	assert.Equal(t, "succeeded", state, "charged without a code")
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select balance::text from prepaid_balances where account_id = $1`, e.account).Scan(&balance))
	assert.Equal(t, "20", balance)

	// A top-up above what the household allowed without a code needs one.
	e.clock.Advance(time.Hour)
	e.enrol(st, payment.Rule{Trigger: payment.TriggerBalanceBelow, BalanceBelow: decimal.RequireFromString("5"),
		TopUpAmount: decimal.RequireFromString("20"), OTPFreeBelow: decimal.RequireFromString("10"), MaxAmount: decimal.RequireFromString("30"),
		PaymentMethodID: e.methods[sandbox.CardSuccess]})
	require.NoError(t, st.HandleAutopayEvent(e.ctx, e.event("balance.below:2", payment.EventBalanceBelow,
		map[string]any{"account_id": e.account, "currency": "GBP"})))
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select state from payments where idempotency_key like 'autopay:%:balance.below:2'`).Scan(&state))
	assert.Equal(t, "otp_sent", state)
}

func TestNoRuleNoPayment(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	st := e.setup()
	require.NoError(t, st.HandleAutopayEvent(e.ctx, e.event("accrued.above:1", payment.EventAccruedAbove,
		map[string]any{"account_id": e.account, "currency": "GBP", "accrued": "60.00"})))
	var n int
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select count(*) from payments`).Scan(&n))
	assert.Zero(t, n)

	// A malformed event is given up, not retried.
	e.enrol(st, payment.Rule{Trigger: payment.TriggerAccruedAbove, AccruedAbove: decimal.RequireFromString("50"),
		MaxAmount: decimal.RequireFromString("100"), PaymentMethodID: e.methods[sandbox.CardSuccess]})
	err := st.HandleAutopayEvent(e.ctx, e.event("accrued.above:2", payment.EventAccruedAbove,
		map[string]any{"account_id": e.account, "currency": "GBP", "accrued": "sixty"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "accrued")
}
