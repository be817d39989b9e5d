package outbox_test

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

	"github.com/meterflow/meterflow/internal/outbox"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t       *testing.T
	ctx     context.Context
	db      *postgres.DB
	store   *postgres.Outbox
	clock   *clock
	account int64
}

func newEnv(t *testing.T) *env {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	e := &env{t: t, ctx: ctx, db: db, store: &postgres.Outbox{DB: db}, clock: &clock{t: time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)}}
	var hh int64
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into households (name) values ('Ada') returning id`).Scan(&hh))
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into accounts (household_id, number, currency, time_zone)
		values ($1, 'A-1', 'GBP', 'Europe/London') returning id`, hh).Scan(&e.account))
	return e
}

// event writes an outbox event the way producers do.
func (e *env) event(key, kind string) {
	_, err := e.db.Pool.Exec(e.ctx, `insert into outbox (event_key, kind, account_id, payload, occurred_at)
		values ($1, $2, $3, $4, $5)`, key, kind, e.account, fmt.Sprintf(`{"key": %q}`, key), e.clock.Now())
	require.NoError(e.t, err)
}

func (e *env) consumer(name string, h outbox.Handler) *outbox.Consumer {
	c, err := outbox.New(e.store, outbox.Config{Name: name, Batch: 3, Lease: time.Minute, Backoff: 10 * time.Second, MaxAttempts: 3, Now: e.clock.Now}, h)
	require.NoError(e.t, err)
	return c
}

// recorder counts deliveries per event key.
type recorder struct {
	mu   sync.Mutex
	seen map[string]int
	fail func(outbox.Event) error
}

func (r *recorder) handle(_ context.Context, ev outbox.Event) error {
	if r.fail != nil {
		if err := r.fail(ev); err != nil {
			return err
		}
	}
	var p struct{ Key string }
	if err := ev.Decode(&p); err != nil {
		return err
	}
	if p.Key != ev.Key {
		return fmt.Errorf("payload key %q, event key %q", p.Key, ev.Key)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]int{}
	}
	r.seen[ev.Key]++
	return nil
}

func TestEachConsumerGetsEveryEventOfItsKindsOnce(t *testing.T) {
	e := newEnv(t)
	for i := range 7 {
		e.event(fmt.Sprintf("bill.issued:%d", i), "bill.issued")
	}
	e.event("budget.crossed:1:50", "budget.crossed")

	var pay, alerts recorder
	st, err := e.consumer("autopay", pay.handle).RunOnce(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, 7, st.Handled, "auto-pay takes only bill, accrued and balance events")
	st, err = e.consumer("alerts", alerts.handle).RunOnce(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, 8, st.Handled, "alerts take every kind")
	assert.Len(t, pay.seen, 7)
	assert.Len(t, alerts.seen, 8)
	for k, n := range alerts.seen {
		assert.Equal(t, 1, n, k)
	}

	// Nothing is delivered twice.
	st, err = e.consumer("autopay", pay.handle).RunOnce(e.ctx)
	require.NoError(t, err)
	assert.Zero(t, st.Handled)
	pending, dead, err := e.store.Backlog(e.ctx)
	require.NoError(t, err)
	assert.Zero(t, pending["autopay"]+pending["alerts"]+dead["autopay"]+dead["alerts"])
}

func TestFailedDeliveryIsRetriedAfterBackoffThenGivenUp(t *testing.T) {
	e := newEnv(t)
	e.event("bill.issued:1", "bill.issued")
	e.event("bill.issued:2", "bill.issued")
	r := recorder{fail: func(ev outbox.Event) error {
		if ev.Key == "bill.issued:1" && ev.Attempt < 2 {
			return errors.New("gateway down")
		}
		if ev.Key == "bill.issued:2" {
			return errors.New("always fails")
		}
		return nil
	}}
	c := e.consumer("autopay", r.handle)
	st, err := c.RunOnce(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, outbox.Stats{Retried: 2}, st)

	// Not due before the backoff.
	st, err = c.RunOnce(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, outbox.Stats{}, st)

	e.clock.Add(time.Minute)
	st, err = c.RunOnce(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, outbox.Stats{Handled: 1, Retried: 1}, st)
	assert.Equal(t, 1, r.seen["bill.issued:1"])

	e.clock.Add(time.Hour)
	st, err = c.RunOnce(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, outbox.Stats{Dead: 1}, st, "the third failure gives up")
	_, dead, err := e.store.Backlog(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, dead["autopay"])
	var lastErr string
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select last_error from outbox_deliveries d join outbox o on o.id = d.outbox_id
		where consumer = 'autopay' and event_key = 'bill.issued:2'`).Scan(&lastErr))
	assert.Equal(t, "always fails", lastErr)
}

func TestPermanentErrorGivesUpAtOnce(t *testing.T) {
	e := newEnv(t)
	e.event("bill.issued:1", "bill.issued")
	r := recorder{fail: func(outbox.Event) error { return outbox.Permanent(errors.New("no such bill")) }}
	st, err := e.consumer("autopay", r.handle).RunOnce(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, outbox.Stats{Dead: 1}, st)
}

// A consumer that dies after handling but before marking the delivery done
// gets the event again once its lease has run out, and not before.
func TestCrashBeforeDoneRedeliversAfterLease(t *testing.T) {
	e := newEnv(t)
	e.event("accrued.above:1", "accrued.above")
	claimed, err := e.store.Claim(e.ctx, "autopay", e.clock.Now(), time.Minute, 10)
	require.NoError(t, err)
	require.Len(t, claimed, 1)

	var r recorder
	c := e.consumer("autopay", r.handle)
	st, err := c.RunOnce(e.ctx)
	require.NoError(t, err)
	assert.Zero(t, st.Handled, "leased to the crashed process")

	e.clock.Add(61 * time.Second)
	st, err = c.RunOnce(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, st.Handled)
	assert.Equal(t, 1, r.seen["accrued.above:1"])
}

// Several processes of one consumer share the work: every event is handled
// by exactly one of them.
func TestConcurrentConsumersShareWithoutOverlap(t *testing.T) {
	e := newEnv(t)
	const n = 60
	for i := range n {
		e.event(fmt.Sprintf("bill.issued:%d", i), "bill.issued")
	}
	var r recorder
	var total atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			st, err := e.consumer("autopay", r.handle).RunOnce(e.ctx)
			assert.NoError(t, err)
			total.Add(int64(st.Handled))
		})
	}
	wg.Wait()
	assert.EqualValues(t, n, total.Load())
	assert.Len(t, r.seen, n)
	for k, v := range r.seen {
		assert.Equal(t, 1, v, k)
	}
}

// BenchmarkConsumer measures delivery of events to a consumer whose handler
// does nothing: the outbox's own cost per event (claim under a lease, mark
// done in batches), against real PostgreSQL.
func BenchmarkConsumer(b *testing.B) {
	ctx := context.Background()
	db := testenv.PostgresDB(b)
	store := &postgres.Outbox{DB: db}
	var hh, acc int64
	require.NoError(b, db.Pool.QueryRow(ctx, `insert into households (name) values ('Ada') returning id`).Scan(&hh))
	require.NoError(b, db.Pool.QueryRow(ctx, `insert into accounts (household_id, number, currency, time_zone)
		values ($1, 'A-1', 'GBP', 'Europe/London') returning id`, hh).Scan(&acc))
	_, err := db.Pool.Exec(ctx, `insert into outbox (event_key, kind, account_id, payload, occurred_at)
		select 'bill.issued:' || g, 'bill.issued', $1, '{}', now() from generate_series(1, $2) g`, acc, b.N)
	require.NoError(b, err)
	c, err := outbox.New(store, outbox.Config{Name: "ledger", Batch: 500}, func(context.Context, outbox.Event) error { return nil })
	require.NoError(b, err)
	b.ResetTimer()
	st, err := c.RunOnce(ctx)
	b.StopTimer()
	require.NoError(b, err)
	require.Equal(b, b.N, st.Handled)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
