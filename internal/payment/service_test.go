package payment_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/otp"
	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/payment/sandbox"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

const phone = "+447700900123"

// clock is a settable clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t         *testing.T
	ctx       context.Context
	db        *postgres.DB
	store     *postgres.Payments
	sms       *postgres.DevSMS
	gw        *sandbox.Gateway
	clock     *clock
	svc       *payment.Service
	household int64
	account   int64
	bill      int64
	methods   map[string]int64
}

// newEnv makes a household with an account, an issued bill of 96.68 GBP, a
// verified phone, and a payment method per sandbox card.
func newEnv(t *testing.T, gw payment.Gateway) *env {
	t.Helper()
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	e := &env{t: t, ctx: ctx, db: db, store: &postgres.Payments{DB: db}, sms: &postgres.DevSMS{DB: db},
		clock: &clock{t: time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)}, methods: map[string]int64{}}
	e.gw, _ = gw.(*sandbox.Gateway)
	db.Now = e.clock.Now
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into households (name) values ('Ada') returning id`).Scan(&e.household))
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into accounts (household_id, number, currency, time_zone)
		values ($1, 'A-1', 'GBP', 'Europe/London') returning id`, e.household).Scan(&e.account))
	e.bill = e.newBill("2025-02-01", "96.68")
	_, err := e.store.AddPhone(ctx, e.household, phone, e.clock.Now())
	require.NoError(t, err)
	for _, card := range []string{sandbox.CardSuccess, sandbox.CardDeclined, sandbox.CardInsufficientFunds, sandbox.CardTimeout, sandbox.CardRequiresAction} {
		tok, err := sandbox.Tokenize(card)
		require.NoError(t, err)
		id, err := e.store.AddPaymentMethod(ctx, postgres.PaymentMethod{HouseholdID: e.household, Gateway: "sandbox", Token: tok, Last4: card[12:]})
		require.NoError(t, err)
		e.methods[card] = id
	}
	issuer, err := otp.NewIssuer(otp.DefaultPolicy(), bytes.Repeat([]byte{42}, 32), "test", e.clock.Now)
	require.NoError(t, err)
	e.svc, err = payment.New(e.store, gw, e.sms, issuer, payment.DefaultConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)), e.clock.Now)
	require.NoError(t, err)
	return e
}

func (e *env) newBill(periodStart, total string) int64 {
	e.t.Helper()
	var id int64
	start, err := time.Parse(time.DateOnly, periodStart)
	require.NoError(e.t, err)
	end := start.AddDate(0, 1, 0)
	require.NoError(e.t, e.db.Pool.QueryRow(e.ctx, `insert into bills (account_id, household_id, period_start, period_end,
		period_start_at, period_end_at, time_zone, currency, subtotal, tax, total, issued_at, due_date)
		values ($1, $2, $3::date, $4::date, $3::date::timestamptz, $4::date::timestamptz, 'Europe/London', 'GBP', $5::numeric, 0,
		        $5::numeric, $4::date::timestamptz, $4::date + 14) returning id`,
		e.account, e.household, start.Format(time.DateOnly), end.Format(time.DateOnly), total).Scan(&id))
	return id
}

func (e *env) create(card, key string) payment.Payment {
	e.t.Helper()
	p, err := e.svc.Create(e.ctx, payment.NewPayment{HouseholdID: e.household, AccountID: e.account, BillID: e.bill,
		Kind: payment.KindBill, Amount: decimal.RequireFromString("96.68"), Currency: "GBP", Payee: "Meterflow Energy",
		PaymentMethodID: e.methods[card], IdempotencyKey: key})
	require.NoError(e.t, err)
	return p
}

var codeRE = regexp.MustCompile(`\b([0-9]{6})\b`)

// lastCode reads the latest code from the development inbox.
func (e *env) lastCode() string {
	e.t.Helper()
	msgs, err := e.sms.Inbox(e.ctx, phone, 1)
	require.NoError(e.t, err)
	require.NotEmpty(e.t, msgs)
	m := codeRE.FindStringSubmatch(msgs[0].Body)
	require.NotNil(e.t, m, msgs[0].Body)
	return m[1]
}

func (e *env) payment(id int64) payment.Payment {
	e.t.Helper()
	p, err := e.store.Payment(e.ctx, id)
	require.NoError(e.t, err)
	return p
}

func (e *env) billStatus(id int64) string {
	var s string
	require.NoError(e.t, e.db.Pool.QueryRow(e.ctx, `select status from bills where id = $1`, id).Scan(&s))
	return s
}

// checkLedger asserts that every entry and the whole ledger balance.
func (e *env) checkLedger(entries int) {
	e.t.Helper()
	r, err := e.store.CheckLedger(e.ctx)
	require.NoError(e.t, err)
	assert.True(e.t, r.OK(), "ledger: %+v", r)
	assert.Equal(e.t, entries, r.Entries)
	assert.GreaterOrEqual(e.t, r.Postings, 2*entries)
}

func wrongCode(code string) string {
	if code == "000000" {
		return "111111"
	}
	return "000000"
}

func TestHappyPath(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	p := e.create(sandbox.CardSuccess, "autopay:bill:1")
	assert.Equal(t, payment.Created, p.State)

	again := e.create(sandbox.CardSuccess, "autopay:bill:1")
	assert.Equal(t, p.ID, again.ID, "creating with the same key returns the first payment")

	require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
	assert.Equal(t, payment.OTPSent, e.payment(p.ID).State)
	code := e.lastCode()

	msgs, err := e.store.SMSMessages(e.ctx, e.household, 10)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.NotContains(t, msgs[0].Body, code, "the stored message masks the code")
	assert.Equal(t, "sent", msgs[0].Status)
	assert.Regexp(t, `^dev-`, msgs[0].ProviderID)
	var macs int
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select count(*) from otp_codes where payment_id = $1 and length(mac) = 32`, p.ID).Scan(&macs))
	assert.Equal(t, 1, macs)

	got, err := e.svc.Confirm(e.ctx, e.household, p.ID, code)
	require.NoError(t, err)
	assert.Equal(t, payment.Succeeded, got.State)
	assert.Equal(t, 1, got.Attempts)
	assert.NotEmpty(t, got.GatewayChargeID)
	assert.False(t, got.ConfirmedAt.IsZero() || got.ChargingAt.IsZero() || got.SettledAt.IsZero())
	assert.Equal(t, "paid", e.billStatus(e.bill))
	require.Len(t, e.gw.Charges(), 1)
	assert.Equal(t, "autopay:bill:1", e.gw.Charges()[0].Key)
	assert.True(t, e.gw.Charges()[0].Amount.Equal(decimal.RequireFromString("96.68")))
	e.checkLedger(1)

	// The household's receivable is credited with the whole amount; the
	// gateway will pay out the amount less its fee (1.5% + 0.20 in the
	// sandbox: 1.45 + 0.20), which is booked as an expense.
	postings := map[string]string{}
	rows, err := e.db.Pool.Query(e.ctx, `select account, amount::text from ledger_postings`)
	require.NoError(t, err)
	for rows.Next() {
		var a, v string
		require.NoError(t, rows.Scan(&a, &v))
		postings[a] = v
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, map[string]string{"gateway_clearing": "95.03", "fees:gateway": "1.65",
		"receivable:household:" + itoa(e.household): "-96.68"}, postings)
	assert.Equal(t, "1.65", e.payment(p.ID).Fee.String())

	_, err = e.svc.Confirm(e.ctx, e.household, p.ID, code)
	assert.True(t, apperr.Is(err, apperr.Conflict), "replay: %v", err)
	assert.Len(t, e.gw.Charges(), 1)
}

func itoa(n int64) string { return decimal.NewFromInt(n).String() }

func TestDeclinesFail(t *testing.T) {
	cases := []struct {
		card, reason string
	}{
		{sandbox.CardDeclined, "declined: card_declined"},
		{sandbox.CardInsufficientFunds, "declined: insufficient_funds"},
		{sandbox.CardRequiresAction, "requires_action"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			e := newEnv(t, &sandbox.Gateway{})
			p := e.create(tc.card, "k-"+tc.card)
			require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
			got, err := e.svc.Confirm(e.ctx, e.household, p.ID, e.lastCode())
			require.NoError(t, err)
			assert.Equal(t, payment.Failed, got.State)
			assert.Equal(t, tc.reason, got.FailureReason)
			assert.Equal(t, "issued", e.billStatus(e.bill))
			e.checkLedger(0)
			msgs, err := e.sms.Inbox(e.ctx, phone, 1)
			require.NoError(t, err)
			assert.Contains(t, msgs[0].Body, "did not go through")

			// The bill may be paid by a new payment.
			p2 := e.create(sandbox.CardSuccess, "k2-"+tc.card)
			require.NoError(t, e.svc.SendCode(e.ctx, p2.ID))
			got, err = e.svc.Confirm(e.ctx, e.household, p2.ID, e.lastCode())
			require.NoError(t, err)
			assert.Equal(t, payment.Succeeded, got.State)
			e.checkLedger(1)
		})
	}
}

func TestOneLivePaymentPerBill(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	e.create(sandbox.CardSuccess, "first")
	_, err := e.svc.Create(e.ctx, payment.NewPayment{HouseholdID: e.household, AccountID: e.account, BillID: e.bill,
		Kind: payment.KindBill, Amount: decimal.RequireFromString("96.68"), Currency: "GBP", Payee: "Meterflow Energy",
		PaymentMethodID: e.methods[sandbox.CardSuccess], IdempotencyKey: "second"})
	assert.True(t, apperr.Is(err, apperr.Conflict), "%v", err)

	_, err = e.svc.Create(e.ctx, payment.NewPayment{HouseholdID: e.household, AccountID: e.account, BillID: e.bill,
		Kind: payment.KindBill, Amount: decimal.RequireFromString("1.00"), Currency: "GBP", Payee: "Meterflow Energy",
		PaymentMethodID: e.methods[sandbox.CardSuccess], IdempotencyKey: "first"})
	assert.True(t, apperr.Is(err, apperr.Conflict), "a key reused for another payment: %v", err)
}

func TestWrongExpiredAndCrossPaymentCodes(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	p1 := e.create(sandbox.CardSuccess, "p1")
	require.NoError(t, e.svc.SendCode(e.ctx, p1.ID))
	code1 := e.lastCode()

	e.bill = e.newBill("2025-01-01", "50.00")
	p2, err := e.svc.Create(e.ctx, payment.NewPayment{HouseholdID: e.household, AccountID: e.account, BillID: e.bill,
		Kind: payment.KindBill, Amount: decimal.RequireFromString("50.00"), Currency: "GBP", Payee: "Meterflow Energy",
		PaymentMethodID: e.methods[sandbox.CardSuccess], IdempotencyKey: "p2"})
	require.NoError(t, err)
	require.NoError(t, e.svc.SendCode(e.ctx, p2.ID))
	code2 := e.lastCode()

	if code1 != code2 {
		_, err = e.svc.Confirm(e.ctx, e.household, p2.ID, code1)
		require.ErrorIs(t, err, otp.ErrWrong, "p1's code does not confirm p2")
	}
	_, err = e.svc.Confirm(e.ctx, e.household, p1.ID, wrongCode(code1))
	require.ErrorIs(t, err, otp.ErrWrong)
	_, err = e.svc.Confirm(e.ctx, e.household+1000, p1.ID, code1)
	require.True(t, apperr.Is(err, apperr.NotFound), "another household's payment: %v", err)

	e.clock.Advance(5 * time.Minute)
	_, err = e.svc.Confirm(e.ctx, e.household, p1.ID, code1)
	require.ErrorIs(t, err, otp.ErrExpired)

	// A resend gives a fresh code that works.
	require.NoError(t, e.svc.SendCode(e.ctx, p1.ID))
	got, err := e.svc.Confirm(e.ctx, e.household, p1.ID, e.lastCode())
	require.NoError(t, err)
	assert.Equal(t, payment.Succeeded, got.State)
	assert.Len(t, e.gw.Charges(), 1)
	assert.Equal(t, payment.OTPSent, e.payment(p2.ID).State)
}

func TestBruteForceLocksHousehold(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	failures := 0
	var last payment.Payment
	for i := range 3 {
		e.bill = e.newBill(time.Date(2024, time.Month(1+i), 1, 0, 0, 0, 0, time.UTC).Format(time.DateOnly), "10.00")
		p, err := e.svc.Create(e.ctx, payment.NewPayment{HouseholdID: e.household, AccountID: e.account, BillID: e.bill,
			Kind: payment.KindBill, Amount: decimal.RequireFromString("10.00"), Currency: "GBP", Payee: "Meterflow Energy",
			PaymentMethodID: e.methods[sandbox.CardSuccess], IdempotencyKey: "bf-" + itoa(int64(i))})
		require.NoError(t, err)
		last = p
		err = e.svc.SendCode(e.ctx, p.ID)
		if i == 2 {
			require.ErrorIs(t, err, otp.ErrLocked, "no code is sent while locked")
			break
		}
		require.NoError(t, err)
		code := e.lastCode()
		for {
			_, err := e.svc.Confirm(e.ctx, e.household, p.ID, wrongCode(code))
			if !errors.Is(err, otp.ErrWrong) {
				break
			}
			failures++
		}
		if i == 0 {
			_, err = e.svc.Confirm(e.ctx, e.household, p.ID, code)
			require.ErrorIs(t, err, otp.ErrExhausted, "the right code is refused once checks are spent")
		}
	}
	assert.Equal(t, 10, failures)
	var locked bool
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select locked_at is not null from otp_failures where household_id = $1`, e.household).Scan(&locked))
	assert.True(t, locked)

	// The lock lasts for the UTC day.
	e.clock.Advance(15 * time.Hour)
	require.NoError(t, e.svc.SendCode(e.ctx, last.ID))
	got, err := e.svc.Confirm(e.ctx, e.household, last.ID, e.lastCode())
	require.NoError(t, err)
	assert.Equal(t, payment.Succeeded, got.State)
	assert.Empty(t, e.gw.Charges()[1:])
}

func TestResendLimits(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	p := e.create(sandbox.CardSuccess, "resend")
	require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
	require.ErrorIs(t, e.svc.SendCode(e.ctx, p.ID), otp.ErrTooSoon)
	for range 4 {
		e.clock.Advance(time.Minute)
		require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
	}
	e.clock.Advance(time.Minute)
	require.ErrorIs(t, e.svc.SendCode(e.ctx, p.ID), otp.ErrTooMany)
	msgs, err := e.sms.Inbox(e.ctx, phone, 10)
	require.NoError(t, err)
	assert.Len(t, msgs, 5)
}

func TestExpireAndCancel(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	p := e.create(sandbox.CardSuccess, "expire")
	require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
	code := e.lastCode()

	n, err := e.svc.ExpireDue(e.ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	e.clock.Advance(48 * time.Hour)
	n, err = e.svc.ExpireDue(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, payment.Expired, e.payment(p.ID).State)
	msgs, err := e.sms.Inbox(e.ctx, phone, 1)
	require.NoError(t, err)
	assert.Contains(t, msgs[0].Body, "has expired")
	_, err = e.svc.Confirm(e.ctx, e.household, p.ID, code)
	assert.True(t, apperr.Is(err, apperr.Conflict), "%v", err)

	p2 := e.create(sandbox.CardSuccess, "cancel")
	got, err := e.svc.Cancel(e.ctx, e.household, p2.ID)
	require.NoError(t, err)
	assert.Equal(t, payment.Canceled, got.State)
	assert.True(t, apperr.Is(e.svc.SendCode(e.ctx, p2.ID), apperr.Conflict))
	_, err = e.svc.Cancel(e.ctx, e.household, p2.ID)
	assert.True(t, apperr.Is(err, apperr.Conflict))
	assert.Empty(t, e.gw.Charges())
}

func TestDatabaseRefusesIllegalTransitions(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	p := e.create(sandbox.CardSuccess, "illegal")
	for _, to := range []payment.State{payment.Charging, payment.Succeeded, payment.Confirmed} {
		_, err := e.db.Pool.Exec(e.ctx, `update payments set state = $2 where id = $1`, p.ID, string(to))
		assert.ErrorContains(t, err, "is not allowed", "created -> %s", to)
		assert.False(t, payment.CanMove(payment.Created, to))
	}
}

func TestTopUpCreditsPrepaid(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	p, err := e.svc.Create(e.ctx, payment.NewPayment{HouseholdID: e.household, AccountID: e.account, Kind: payment.KindTopUp,
		Amount: decimal.RequireFromString("20.00"), Currency: "GBP", Payee: "Meterflow Energy",
		PaymentMethodID: e.methods[sandbox.CardSuccess], IdempotencyKey: "topup"})
	require.NoError(t, err)
	require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
	got, err := e.svc.Confirm(e.ctx, e.household, p.ID, e.lastCode())
	require.NoError(t, err)
	assert.Equal(t, payment.Succeeded, got.State)
	var bal decimal.Decimal
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select balance::text from prepaid_balances where account_id = $1`, e.account).Scan(&bal))
	assert.True(t, bal.Equal(decimal.RequireFromString("20")), bal.String())
	e.checkLedger(1)
}
