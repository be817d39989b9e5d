package alert_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/alert"
	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}
func (c *clock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

type lag struct{ n atomic.Uint64 }

func (l *lag) Lag() uint64 { return l.n.Load() }

// flaky is the development SMS sender failing the next fail sends, as a
// provider outage does.
type flaky struct {
	dev  *postgres.DevSMS
	fail atomic.Int32
}

func (f *flaky) Send(ctx context.Context, to, body string) (string, error) {
	if f.fail.Add(-1) >= 0 {
		return "", errors.New("provider unavailable")
	}
	return f.dev.Send(ctx, to, body)
}

type household struct {
	id, account int64
	phone       string
}

type env struct {
	t      *testing.T
	ctx    context.Context
	db     *postgres.DB
	store  *postgres.Alerts
	clock  *clock
	loc    *time.Location
	svc    *alert.Service
	lag    *lag
	sms    *flaky
	pgDown atomic.Bool
	a, b   household
}

func newEnv(t *testing.T, tune func(*alert.Config)) *env {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	loc, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	e := &env{t: t, ctx: ctx, db: db, store: &postgres.Alerts{DB: db}, loc: loc, lag: &lag{}, sms: &flaky{dev: &postgres.DevSMS{DB: db}},
		clock: &clock{t: time.Date(2026, 3, 10, 12, 0, 0, 0, loc)}} // a Tuesday
	for i, h := range []*household{&e.a, &e.b} {
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into households (name) values ($1) returning id`, fmt.Sprint("H", i)).Scan(&h.id))
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into accounts (household_id, number, currency, time_zone)
			values ($1, $2, 'GBP', 'Europe/London') returning id`, h.id, fmt.Sprint("A-", i)).Scan(&h.account))
		h.phone = fmt.Sprintf("+44740012340%d", i)
		_, err := (&postgres.Payments{DB: db}).AddPhone(ctx, h.id, h.phone, e.clock.Now())
		require.NoError(t, err)
	}
	cfg := alert.DefaultConfig()
	cfg.Now, cfg.Batch = e.clock.Now, 3
	if tune != nil {
		tune(&cfg)
	}
	e.svc, err = alert.New(alert.Deps{
		Store: e.store, Outbox: &postgres.Outbox{DB: db}, Sender: e.sms, Lag: e.lag,
		Probes: []alert.Probe{{Name: "postgres", Check: func(ctx context.Context) error {
			if e.pgDown.Load() {
				return errors.New("connection refused")
			}
			return db.Ping(ctx)
		}}},
	}, cfg)
	require.NoError(t, err)
	return e
}

func (e *env) exec(q string, args ...any) {
	e.t.Helper()
	_, err := e.db.Pool.Exec(e.ctx, q, args...)
	require.NoError(e.t, err)
}

// meter adds a meter to h's account.
func (e *env) meter(h household, id, utility string) {
	e.t.Helper()
	var premise, sp int64
	require.NoError(e.t, e.db.Pool.QueryRow(e.ctx, `insert into premises (account_id) values ($1) returning id`, h.account).Scan(&premise))
	require.NoError(e.t, e.db.Pool.QueryRow(e.ctx, `insert into service_points (premise_id, utility) values ($1, $2) returning id`, premise, utility).Scan(&sp))
	e.exec(`insert into meters (id, service_point_id, utility, token_hash) values ($1, $2, $3, '\x00')`, id, sp, utility)
}

func (e *env) seen(meterID string, at time.Time) {
	e.exec(`insert into meter_state (meter_id, state, updated_at) values ($1, '\x00', $2)
		on conflict (meter_id) do update set updated_at = excluded.updated_at`, meterID, at)
}

// usage writes 15-minute intervals of q thousandths each over [from, to).
func (e *env) usage(meterID, channel string, from, to time.Time, q func(time.Time) int64) {
	e.t.Helper()
	var starts []time.Time
	var qs []int64
	for t := from; t.Before(to); t = t.Add(15 * time.Minute) {
		starts, qs = append(starts, t), append(qs, q(t))
	}
	e.exec(`insert into interval_usage (meter_id, channel, start_at, quantity, quality)
		select $1, $2, s, q, 0 from unnest($3::timestamptz[], $4::bigint[]) u(s, q)
		on conflict (meter_id, channel, start_at) do update set quantity = excluded.quantity`, meterID, channel, starts, qs)
}

func (e *env) event(key, kind string, account int64, payload string) {
	e.exec(`insert into outbox (event_key, kind, account_id, payload, occurred_at) values ($1, $2, $3, $4, $5)`,
		key, kind, account, payload, e.clock.Now())
}

func (e *env) alerts(h household) []alert.Alert {
	e.t.Helper()
	as, err := e.store.Inbox(e.ctx, h.id, 0, 100)
	require.NoError(e.t, err)
	return as
}

func (e *env) keys(h household) []string {
	var out []string
	for _, a := range e.alerts(h) {
		out = append(out, a.Key)
	}
	return out
}

// devInbox returns the bodies the development SMS sender delivered to h.
func (e *env) devInbox(h household) []string {
	e.t.Helper()
	ms, err := (&postgres.DevSMS{DB: e.db}).Inbox(e.ctx, h.phone, 100)
	require.NoError(e.t, err)
	var out []string
	for _, m := range ms {
		out = append(out, m.Body)
	}
	return out
}

func (e *env) evaluate() alert.Stats {
	e.t.Helper()
	st, err := e.svc.Evaluate(e.ctx)
	require.NoError(e.t, err)
	return st
}

func (e *env) send() alert.SendStats {
	e.t.Helper()
	st, err := e.svc.SendDue(e.ctx)
	require.NoError(e.t, err)
	return st
}

// TestPeriodicRules: each rule fires once for its period on data that
// calls for it, also when evaluated again, and not at all on normal data.
func TestPeriodicRules(t *testing.T) {
	day := func(e *env, d, h, m int) time.Time { return time.Date(2026, 3, d, h, m, 0, 0, e.loc) }
	for _, tc := range []struct {
		name string
		data func(e *env)
		want []string // keys for household A
	}{
		{"abnormal electricity usage", func(e *env) {
			e.meter(e.a, "E-A", "electricity")
			e.seen("E-A", e.clock.Now())
			// 0.25 kWh per quarter hour on the past four Tuesdays: 12 kWh by noon;
			// today 0.6 kWh per quarter hour: 28.8 kWh, above 2 × 12 and by more than 5.
			for w := 1; w <= 4; w++ {
				e.usage("E-A", "1-0:1.8.0", day(e, 10-7*w, 0, 0), day(e, 11-7*w, 0, 0), func(time.Time) int64 { return 250 })
			}
			e.usage("E-A", "1-0:1.8.0", day(e, 10, 0, 0), day(e, 10, 12, 0), func(time.Time) int64 { return 600 })
		}, []string{"abnormal_usage:%[1]d:E-A:2026-03-10"}},
		{"normal electricity usage", func(e *env) {
			e.meter(e.a, "E-A", "electricity")
			e.seen("E-A", e.clock.Now())
			for w := 1; w <= 4; w++ {
				e.usage("E-A", "1-0:1.8.0", day(e, 10-7*w, 0, 0), day(e, 11-7*w, 0, 0), func(time.Time) int64 { return 250 })
			}
			// 0.45 kWh a quarter: 21.6 kWh, under twice the baseline.
			e.usage("E-A", "1-0:1.8.0", day(e, 10, 0, 0), day(e, 10, 12, 0), func(time.Time) int64 { return 450 })
		}, nil},
		{"water flowing all night", func(e *env) {
			e.meter(e.a, "W-A", "water")
			e.seen("W-A", e.clock.Now())
			e.usage("W-A", "8-0:1.0.0", day(e, 10, 0, 0), day(e, 10, 12, 0), func(time.Time) int64 { return 2 })
		}, []string{"leak:%[1]d:W-A:2026-03-10"}},
		{"water quiet for a quarter hour at night", func(e *env) {
			e.meter(e.a, "W-A", "water")
			e.seen("W-A", e.clock.Now())
			e.usage("W-A", "8-0:1.0.0", day(e, 10, 0, 0), day(e, 10, 12, 0), func(t time.Time) int64 {
				if t.Equal(day(e, 10, 3, 15)) {
					return 0
				}
				return 2
			})
		}, nil},
		{"meter silent for 30 hours", func(e *env) {
			e.meter(e.a, "G-A", "gas")
			e.seen("G-A", e.clock.Now().Add(-30*time.Hour))
		}, []string{fmt.Sprintf("meter_silent:%%[1]d:G-A:%d", time.Date(2026, 3, 9, 6, 0, 0, 0, time.UTC).Unix())}},
		{"meter heard from two hours ago", func(e *env) {
			e.meter(e.a, "G-A", "gas")
			e.seen("G-A", e.clock.Now().Add(-2*time.Hour))
		}, nil},
		{"projection over budget", func(e *env) {
			e.exec(`insert into budgets (account_id, scope, amount) values ($1, 'account', 100), ($1, 'gas', 50)`, e.a.account)
			e.exec(`insert into accruals (account_id, utility, cycle_start, cycle_end, through, currency, quantity, amount, projected, updated_at)
				values ($1, 'electricity', '2026-03-01', '2026-04-01', '2026-03-10', 'GBP', 0, 30, 70, now()),
				       ($1, 'gas', '2026-03-01', '2026-04-01', '2026-03-10', 'GBP', 0, 20, 45, now())`, e.a.account)
			// account: 70 + 45 = 115 > 100; gas: 45 <= 50.
		}, []string{"projected_over:%[1]d:account:2026-03-01"}},
		{"projection within budget", func(e *env) {
			e.exec(`insert into budgets (account_id, scope, amount) values ($1, 'account', 120)`, e.a.account)
			e.exec(`insert into accruals (account_id, utility, cycle_start, cycle_end, through, currency, quantity, amount, projected, updated_at)
				values ($1, 'electricity', '2026-03-01', '2026-04-01', '2026-03-10', 'GBP', 0, 30, 120, now())`, e.a.account)
		}, nil},
		{"bill due in two days", func(e *env) {
			e.exec(`insert into bills (id, account_id, household_id, period_start, period_end, period_start_at, period_end_at, time_zone,
				currency, subtotal, tax, total, issued_at, due_date) values (501, $1, $2, '2026-02-01', '2026-03-01',
				'2026-02-01T00:00:00Z', '2026-03-01T00:00:00Z', 'Europe/London', 'GBP', 10, 2, 12, now(), '2026-03-12')`, e.a.account, e.a.id)
		}, []string{"bill_upcoming:%[1]d:501"}},
		{"bill due in ten days, and a paid one due tomorrow", func(e *env) {
			e.exec(`insert into bills (account_id, household_id, period_start, period_end, period_start_at, period_end_at, time_zone,
				currency, subtotal, tax, total, issued_at, due_date, status) values
				($1, $2, '2026-02-01', '2026-03-01', '2026-02-01T00:00:00Z', '2026-03-01T00:00:00Z', 'Europe/London', 'GBP', 10, 2, 12, now(), '2026-03-20', 'issued'),
				($1, $2, '2026-01-01', '2026-02-01', '2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', 'Europe/London', 'GBP', 10, 2, 12, now(), '2026-03-11', 'paid')`,
				e.a.account, e.a.id)
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			tc.data(e)
			st := e.evaluate()
			assert.Equal(t, len(tc.want), st.Alerts)
			var want []string
			for _, k := range tc.want {
				want = append(want, fmt.Sprintf(k, e.a.account))
			}
			assert.ElementsMatch(t, want, e.keys(e.a))
			st = e.evaluate()
			assert.Zero(t, st.Alerts, "a second evaluation records nothing")
			e.clock.Add(time.Hour)
			e.evaluate()
			assert.ElementsMatch(t, want, e.keys(e.a), "nor does a later one in the same period")
			assert.Empty(t, e.keys(e.b), "household B has no data and no alerts")
		})
	}
}

// TestEventAlerts: outbox events become one alert each, however often they
// are delivered.
func TestEventAlerts(t *testing.T) {
	e := newEnv(t, nil)
	acc := e.a.account
	e.event(fmt.Sprintf("budget.crossed:%d:account:80:2026-03-01", acc), "budget.crossed", acc,
		`{"scope":"account","percent":80,"budget":"100.00","accrued":"81.20","currency":"GBP","cycle_start":"2026-03-01","cycle_end":"2026-04-01"}`)
	e.event("bill.issued:77", "bill.issued", acc, `{"bill_id":77,"period_start":"2026-02-01","period_end":"2026-03-01","currency":"GBP","total":"12.00","due_date":"2026-03-15"}`)
	e.event("bill.overdue:77", "bill.overdue", acc, `{"bill_id":77,"period_start":"2026-02-01","period_end":"2026-03-01","currency":"GBP","total":"12.00","due_date":"2026-03-15"}`)
	e.event("payment.otp_sent:9", "payment.otp_sent", acc, `{"payment_id":9,"amount":"12.00","currency":"GBP","payee":"Meterflow Energy"}`)
	e.event("payment.failed:9", "payment.failed", acc, `{"payment_id":9,"amount":"12.00","currency":"GBP","payee":"Meterflow Energy"}`)
	e.event(fmt.Sprintf("accrued.above:%d:50.00:2026-03-01", acc), "accrued.above", acc, `{"threshold":"50.00"}`)
	st, err := e.svc.ConsumeEvents(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, 6, st.Handled)
	assert.ElementsMatch(t, []string{
		fmt.Sprintf("budget:%d:account:80:2026-03-01", acc), fmt.Sprintf("bill_issued:%d:77", acc), fmt.Sprintf("bill_overdue:%d:77", acc),
		fmt.Sprintf("payment_confirm:%d:9", acc), fmt.Sprintf("payment_failed:%d:9", acc),
	}, e.keys(e.a))

	// The same events delivered again (a crash before they were marked
	// done) change nothing.
	e.exec(`update outbox_deliveries set done_at = null where consumer = 'alerts'`)
	_, err = e.svc.ConsumeEvents(e.ctx)
	require.NoError(t, err)
	assert.Len(t, e.alerts(e.a), 5)

	// By default every one of these goes in-app and by SMS.
	got := e.send()
	assert.Equal(t, 10, got.Sent)
	assert.Len(t, e.devInbox(e.a), 5)
	assert.Empty(t, e.devInbox(e.b))
}

// TestQuietHoursAndPreferences: SMS waits for the end of quiet hours while
// the inbox and push do not; a channel turned off is not used.
func TestQuietHoursAndPreferences(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.svc.SetPreferences(e.ctx, e.a.id, alert.Preferences{
		Channels:   map[alert.Kind][]alert.Channel{alert.KindBillIssued: {alert.InApp}},
		QuietHours: &alert.QuietHours{Start: "22:00", End: "07:00"},
	})
	require.NoError(t, err)
	p, err := e.svc.Preferences(e.ctx, e.a.id)
	require.NoError(t, err)
	assert.Equal(t, "Europe/London", p.TimeZone)
	assert.Equal(t, []alert.Channel{alert.InApp}, p.Channels[alert.KindBillIssued])
	assert.Equal(t, []alert.Channel{alert.InApp, alert.SMS}, p.Channels[alert.KindLeak])

	sub := e.svc.Subscribe(e.a.id)
	defer sub.Cancel()
	e.clock.Set(time.Date(2026, 3, 10, 23, 0, 0, 0, e.loc))
	acc := e.a.account
	e.event("payment.failed:9", "payment.failed", acc, `{"payment_id":9,"amount":"12.00","currency":"GBP","payee":"Meterflow Energy"}`)
	e.event("bill.issued:77", "bill.issued", acc, `{"bill_id":77,"period_start":"2026-02-01","period_end":"2026-03-01","currency":"GBP","total":"12.00","due_date":"2026-03-15"}`)
	_, err = e.svc.ConsumeEvents(e.ctx)
	require.NoError(t, err)
	require.Len(t, e.alerts(e.a), 2, "both alerts are in the inbox at once")

	st := e.send()
	assert.Equal(t, 2, st.Sent, "in-app deliveries go at once")
	assert.Equal(t, alert.KindPaymentFailed, (<-sub.C).Kind, "pushed in the order decided")
	assert.Equal(t, alert.KindBillIssued, (<-sub.C).Kind)
	assert.Empty(t, e.devInbox(e.a), "no SMS during quiet hours")

	e.clock.Set(time.Date(2026, 3, 11, 6, 59, 0, 0, e.loc))
	assert.Zero(t, e.send().Sent)
	e.clock.Set(time.Date(2026, 3, 11, 7, 0, 0, 0, e.loc))
	assert.Equal(t, 1, e.send().Sent, "the payment SMS goes when quiet hours end")
	inbox := e.devInbox(e.a)
	require.Len(t, inbox, 1, "bill.issued has SMS turned off")
	assert.Contains(t, inbox[0], "Payment failed")
	var status, purpose string
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select status, purpose from sms_messages where household_id = $1`, e.a.id).Scan(&status, &purpose))
	assert.Equal(t, "sent", status)
	assert.Equal(t, "notice", purpose)
	assert.Zero(t, e.send().Sent, "nothing is sent twice")

	// SMS turned off after an alert was decided: the held SMS is skipped.
	e.clock.Set(time.Date(2026, 3, 11, 23, 0, 0, 0, e.loc))
	e.event("payment.failed:10", "payment.failed", acc, `{"payment_id":10,"amount":"5.00","currency":"GBP","payee":"Meterflow Energy"}`)
	_, err = e.svc.ConsumeEvents(e.ctx)
	require.NoError(t, err)
	_, err = e.svc.SetPreferences(e.ctx, e.a.id, alert.Preferences{Channels: map[alert.Kind][]alert.Channel{alert.KindPaymentFailed: {alert.InApp}}})
	require.NoError(t, err)
	e.clock.Set(time.Date(2026, 3, 12, 8, 0, 0, 0, e.loc))
	st = e.send()
	assert.Equal(t, 1, st.Skipped)
	assert.Len(t, e.devInbox(e.a), 1)

	// A kind with no channels at all is not recorded.
	_, err = e.svc.SetPreferences(e.ctx, e.a.id, alert.Preferences{Channels: map[alert.Kind][]alert.Channel{alert.KindPaymentFailed: {}}})
	require.NoError(t, err)
	e.event("payment.failed:11", "payment.failed", acc, `{"payment_id":11,"amount":"5.00","currency":"GBP","payee":"Meterflow Energy"}`)
	_, err = e.svc.ConsumeEvents(e.ctx)
	require.NoError(t, err)
	assert.Len(t, e.alerts(e.a), 3)
}

// TestCrashBetweenDecideAndSend: a sender that claims deliveries and dies
// neither loses nor repeats them.
func TestCrashBetweenDecideAndSend(t *testing.T) {
	e := newEnv(t, nil)
	acc := e.a.account
	e.event("payment.failed:9", "payment.failed", acc, `{"payment_id":9,"amount":"12.00","currency":"GBP","payee":"Meterflow Energy"}`)
	_, err := e.svc.ConsumeEvents(e.ctx)
	require.NoError(t, err)

	// A sender claims both deliveries and dies before sending.
	claimed, err := e.store.ClaimDeliveries(e.ctx, e.clock.Now(), time.Minute, 10)
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	assert.Zero(t, e.send().Sent, "leased deliveries are not taken by another sender")
	e.clock.Add(61 * time.Second)
	assert.Equal(t, 2, e.send().Sent, "after the lease the next sender sends them")
	assert.Zero(t, e.send().Sent)
	assert.Len(t, e.devInbox(e.a), 1, "exactly one SMS")

	// A sender that sent the SMS and recorded it, then died before marking
	// the delivery: the next one does not send it again.
	e.event("payment.failed:10", "payment.failed", acc, `{"payment_id":10,"amount":"5.00","currency":"GBP","payee":"Meterflow Energy"}`)
	_, err = e.svc.ConsumeEvents(e.ctx)
	require.NoError(t, err)
	claimed, err = e.store.ClaimDeliveries(e.ctx, e.clock.Now(), time.Minute, 10)
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	for _, d := range claimed {
		if d.Channel == alert.SMS {
			id, err := e.store.QueueSMS(e.ctx, d.Alert.ID, e.a.id, e.a.phone, "sent before the crash", "dev", e.clock.Now())
			require.NoError(t, err)
			pid, err := (&postgres.DevSMS{DB: e.db}).Send(e.ctx, e.a.phone, "sent before the crash")
			require.NoError(t, err)
			require.NoError(t, e.store.SMSResult(e.ctx, id, pid, nil, e.clock.Now()))
		}
	}
	e.clock.Add(61 * time.Second)
	assert.Equal(t, 2, e.send().Sent)
	assert.Len(t, e.devInbox(e.a), 2, "one SMS per alert")

	// The evaluator deciding twice records once.
	e.meter(e.a, "G-A", "gas")
	e.seen("G-A", e.clock.Now().Add(-30*time.Hour))
	assert.Equal(t, 1, e.evaluate().Alerts)
	assert.Zero(t, e.evaluate().Alerts)
	assert.Equal(t, 1, e.send().Sent, "meter_silent goes in-app only by default")
}

// TestSendFailures: a failing SMS is retried with backoff and given up
// after MaxAttempts; no phone means no SMS.
func TestSendFailures(t *testing.T) {
	e := newEnv(t, func(c *alert.Config) { c.MaxAttempts = 2; c.Backoff = time.Minute })
	e.sms.fail.Store(1)
	e.event("payment.failed:9", "payment.failed", e.a.account, `{"payment_id":9,"amount":"12.00","currency":"GBP","payee":"P"}`)
	_, err := e.svc.ConsumeEvents(e.ctx)
	require.NoError(t, err)
	st := e.send()
	assert.Equal(t, 1, st.Sent)
	assert.Equal(t, 1, st.Retried)
	assert.Zero(t, e.send().Sent, "not before the backoff")
	e.clock.Add(2 * time.Minute)
	assert.Equal(t, 1, e.send().Sent)
	assert.Len(t, e.devInbox(e.a), 1)
	var status string
	var attempts int
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select status, attempts from sms_messages where household_id = $1`, e.a.id).Scan(&status, &attempts))
	assert.Equal(t, "sent", status)
	assert.Equal(t, 2, attempts, "one message, sent on its second attempt")

	e.sms.fail.Store(5)
	e.event("payment.failed:10", "payment.failed", e.a.account, `{"payment_id":10,"amount":"12.00","currency":"GBP","payee":"P"}`)
	_, err = e.svc.ConsumeEvents(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, e.send().Retried)
	e.clock.Add(2 * time.Minute)
	assert.Equal(t, 1, e.send().Dead, "given up after MaxAttempts")
	e.clock.Add(time.Hour)
	assert.Zero(t, e.send(), "a dead delivery is not tried again")
	assert.Len(t, e.devInbox(e.a), 1)

	e.exec(`update household_phones set verified_at = null where household_id = $1`, e.b.id)
	e.event("payment.failed:11", "payment.failed", e.b.account, `{"payment_id":11,"amount":"12.00","currency":"GBP","payee":"P"}`)
	_, err = e.svc.ConsumeEvents(e.ctx)
	require.NoError(t, err)
	st = e.send()
	assert.Equal(t, 1, st.Sent)
	assert.Equal(t, 1, st.Skipped, "no verified phone")
}

// TestStreamIsPerHousehold: a household's stream carries its own alerts
// and never another household's.
func TestStreamIsPerHousehold(t *testing.T) {
	e := newEnv(t, nil)
	a, b, ops := e.svc.Subscribe(e.a.id), e.svc.Subscribe(e.b.id), e.svc.Subscribe(0)
	e.event("payment.failed:9", "payment.failed", e.a.account, `{"payment_id":9,"amount":"12.00","currency":"GBP","payee":"P"}`)
	_, err := e.svc.ConsumeEvents(e.ctx)
	require.NoError(t, err)
	e.send()
	got := <-a.C
	assert.Equal(t, e.a.id, got.HouseholdID)
	assert.Equal(t, e.a.id, (<-ops.C).HouseholdID)
	select {
	case x := <-b.C:
		t.Fatalf("household B received household A's alert %d", x.ID)
	default:
	}
}

// TestAlarmLifecycle: alarms are raised, acknowledged and cleared with
// their history, for every alarm kind the evaluator keeps.
func TestAlarmLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	var op int64
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `insert into users (phone, password_hash, role) values ('+447400123499', '$argon2id$x', 'operator') returning id`).Scan(&op))
	e.meter(e.a, "E-A", "electricity")
	e.seen("E-A", e.clock.Now().Add(-7*time.Hour))

	st := e.evaluate()
	assert.Equal(t, 1, st.Raised)
	active, err := e.svc.Alarms(e.ctx, alert.AlarmActive, 0, 10)
	require.NoError(t, err)
	require.Len(t, active, 1)
	al := active[0]
	assert.Equal(t, alert.AlarmMeterOffline, al.Kind)
	assert.Equal(t, "E-A", al.Subject)
	assert.Zero(t, e.evaluate().Raised, "an open alarm is not raised again")

	e.clock.Add(time.Minute)
	al, err = e.svc.Acknowledge(e.ctx, al.ID, op, "truck on its way")
	require.NoError(t, err)
	assert.Equal(t, alert.AlarmAcknowledged, al.State)
	_, err = e.svc.Acknowledge(e.ctx, al.ID, op, "")
	assert.True(t, apperr.Is(err, apperr.Conflict), "only an active alarm is acknowledged: %v", err)
	_, err = e.svc.Acknowledge(e.ctx, 999999, op, "")
	assert.True(t, apperr.Is(err, apperr.NotFound))

	e.clock.Add(time.Minute)
	e.seen("E-A", e.clock.Now())
	st = e.evaluate()
	assert.Equal(t, 1, st.Cleared)
	al, err = e.svc.Alarm(e.ctx, al.ID)
	require.NoError(t, err)
	assert.Equal(t, alert.AlarmCleared, al.State)
	var states []alert.AlarmState
	for _, h := range al.History {
		states = append(states, h.State)
	}
	assert.Equal(t, []alert.AlarmState{alert.AlarmActive, alert.AlarmAcknowledged, alert.AlarmCleared}, states)
	assert.Equal(t, op, al.History[1].UserID)
	assert.Equal(t, "truck on its way", al.History[1].Note)

	// Offline again: a new alarm, the cleared one stays in the history.
	e.seen("E-A", e.clock.Now().Add(-7*time.Hour))
	assert.Equal(t, 1, e.evaluate().Raised)
	all, err := e.svc.Alarms(e.ctx, "", 0, 10)
	require.NoError(t, err)
	assert.Len(t, all, 2)
	_, err = e.svc.Alarms(e.ctx, "bogus", 0, 10)
	assert.True(t, apperr.Is(err, apperr.Invalid))

	t.Run("ingest lag", func(t *testing.T) {
		e.lag.n.Store(100_001)
		assert.Equal(t, 1, e.evaluate().Raised)
		e.lag.n.Store(10)
		assert.Equal(t, 1, e.evaluate().Cleared)
	})
	t.Run("store down, recorded once it is back", func(t *testing.T) {
		e.pgDown.Store(true)
		downAt := e.clock.Now()
		assert.Equal(t, 1, e.evaluate().Raised)
		e.clock.Add(5 * time.Minute)
		e.pgDown.Store(false)
		assert.Equal(t, 1, e.evaluate().Cleared)
		cleared, err := e.svc.Alarms(e.ctx, alert.AlarmCleared, 0, 10)
		require.NoError(t, err)
		require.NotEmpty(t, cleared)
		assert.Equal(t, alert.AlarmStoreDown, cleared[0].Kind)
		assert.True(t, cleared[0].RaisedAt.Equal(downAt))
	})
	t.Run("payment failure rate", func(t *testing.T) {
		var method int64
		require.NoError(t, e.db.Pool.QueryRow(e.ctx, `insert into payment_methods (household_id, gateway, token) values ($1, 'sandbox', 'tok_x') returning id`, e.a.id).Scan(&method))
		pay := func(n int, state string, settled time.Time) {
			for i := 0; i < n; i++ {
				e.exec(`insert into payments (household_id, account_id, kind, amount, currency, payee, payment_method_id, state,
					idempotency_key, confirm_by, created_at, updated_at, settled_at)
					values ($1, $2, 'topup', 5, 'GBP', 'P', $3, $4, $5, $6, $6, $6, $6)`,
					e.a.id, e.a.account, method, state, fmt.Sprint(state, settled.Unix(), i), settled)
			}
		}
		now := e.clock.Now()
		pay(8, "succeeded", now.Add(-30*time.Minute))
		pay(2, "failed", now.Add(-10*time.Minute))
		pay(5, "failed", now.Add(-2*time.Hour)) // outside the window
		assert.Zero(t, e.evaluate().Raised, "2 of 10 failed: 20 % is not above 25 %")
		pay(1, "failed", now.Add(-time.Minute))
		assert.Equal(t, 1, e.evaluate().Raised, "3 of 11 failed: 27 %")
		e.clock.Add(time.Hour)
		assert.Equal(t, 1, e.evaluate().Cleared, "the failures have left the window")
	})
	t.Run("vee exception rate", func(t *testing.T) {
		e.exec(`insert into vee_exceptions (meter_id, rule, count, last_at) values ('E-A', 'spike', 5, now())`)
		assert.Zero(t, e.evaluate().Raised, "the first pass only marks the count")
		e.clock.Add(time.Hour)
		e.exec(`update vee_exceptions set count = count + 30 where meter_id = 'E-A'`)
		st := e.evaluate()
		assert.Equal(t, 1, st.Raised, "30 an hour is above 12")
		e.clock.Add(30 * time.Minute)
		assert.Zero(t, e.evaluate().Cleared, "not measured again before a window has passed")
		e.clock.Add(30 * time.Minute)
		e.exec(`update vee_exceptions set count = count + 2 where meter_id = 'E-A'`)
		assert.Equal(t, 1, e.evaluate().Cleared)
	})
}
