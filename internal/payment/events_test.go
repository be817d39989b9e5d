package payment_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/payment/sandbox"
)

// events returns the outbox event keys of payment id, in order, and checks
// each went to the alerts consumer and not to auto-pay.
func (e *env) events(id int64) []string {
	e.t.Helper()
	rows, err := e.db.Pool.Query(e.ctx, `select o.event_key,
			exists (select 1 from outbox_deliveries d where d.outbox_id = o.id and d.consumer = 'alerts'),
			exists (select 1 from outbox_deliveries d where d.outbox_id = o.id and d.consumer = 'autopay')
		from outbox o where o.kind like 'payment.%' and (o.payload->>'payment_id')::bigint = $1 order by o.id`, id)
	require.NoError(e.t, err)
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		var alerts, autopay bool
		require.NoError(e.t, rows.Scan(&k, &alerts, &autopay))
		assert.True(e.t, alerts, "%s goes to alerts", k)
		assert.False(e.t, autopay, "%s does not go to auto-pay", k)
		keys = append(keys, k)
	}
	require.NoError(e.t, rows.Err())
	return keys
}

func TestStateChangesWriteOutboxEvents(t *testing.T) {
	t.Run("confirmation needed, then succeeded", func(t *testing.T) {
		e := newEnv(t, &sandbox.Gateway{})
		p := e.create(sandbox.CardSuccess, "ev-ok")
		assert.Empty(t, e.events(p.ID), "created is not announced")
		require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
		e.clock.Advance(2 * time.Minute)
		require.NoError(t, e.svc.SendCode(e.ctx, p.ID), "a resend")
		assert.Equal(t, []string{fmt.Sprintf("payment.otp_sent:%d", p.ID)}, e.events(p.ID), "a resend is not a new event")
		_, err := e.svc.Confirm(e.ctx, e.household, p.ID, e.lastCode())
		require.NoError(t, err)
		assert.Equal(t, []string{fmt.Sprintf("payment.otp_sent:%d", p.ID), fmt.Sprintf("payment.succeeded:%d", p.ID)}, e.events(p.ID))
	})
	t.Run("failed", func(t *testing.T) {
		e := newEnv(t, &sandbox.Gateway{})
		p := e.create(sandbox.CardDeclined, "ev-fail")
		require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
		got, err := e.svc.Confirm(e.ctx, e.household, p.ID, e.lastCode())
		require.NoError(t, err)
		require.Equal(t, payment.Failed, got.State)
		assert.Equal(t, []string{fmt.Sprintf("payment.otp_sent:%d", p.ID), fmt.Sprintf("payment.failed:%d", p.ID)}, e.events(p.ID))
		var reason string
		require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select payload->>'failure_reason' from outbox where event_key = $1`,
			fmt.Sprintf("payment.failed:%d", p.ID)).Scan(&reason))
		assert.Equal(t, "declined: card_declined", reason)
	})
	t.Run("the amount is written with its minor units", func(t *testing.T) {
		e := newEnv(t, &sandbox.Gateway{})
		p, err := e.svc.Create(e.ctx, payment.NewPayment{HouseholdID: e.household, AccountID: e.account, BillID: e.bill,
			Kind: payment.KindBill, Amount: decimal.RequireFromString("96.6"), Currency: "GBP", Payee: "Meterflow Energy",
			PaymentMethodID: e.methods[sandbox.CardSuccess], IdempotencyKey: "ev-minor"})
		require.NoError(t, err)
		require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
		var amount string
		require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select payload->>'amount' from outbox where event_key = $1`,
			fmt.Sprintf("payment.otp_sent:%d", p.ID)).Scan(&amount))
		assert.Equal(t, "96.60", amount)
		msgs, err := e.sms.Inbox(e.ctx, phone, 1)
		require.NoError(t, err)
		require.NotEmpty(t, msgs)
		assert.Contains(t, msgs[0].Body, "to pay 96.60 GBP")
	})
	t.Run("expired and canceled", func(t *testing.T) {
		e := newEnv(t, &sandbox.Gateway{})
		p := e.create(sandbox.CardSuccess, "ev-expire")
		e.clock.Advance(48 * time.Hour)
		_, err := e.svc.ExpireDue(e.ctx)
		require.NoError(t, err)
		assert.Equal(t, []string{fmt.Sprintf("payment.expired:%d", p.ID)}, e.events(p.ID))
		p2 := e.create(sandbox.CardSuccess, "ev-cancel")
		_, err = e.svc.Cancel(e.ctx, e.household, p2.ID)
		require.NoError(t, err)
		assert.Empty(t, e.events(p2.ID), "the household's own cancel is not announced")
	})
}
