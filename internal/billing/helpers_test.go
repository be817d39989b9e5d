package billing_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/tariff"
	"github.com/meterflow/meterflow/internal/testenv"
)

// env is a billing service over a fresh database with a settable clock.
type env struct {
	t     testing.TB
	ctx   context.Context
	db    *postgres.DB
	store *postgres.Billing
	svc   *billing.Service
	now   atomic.Pointer[time.Time]
	seq   atomic.Int64
}

func newEnv(t testing.TB, cfg billing.Config) *env {
	t.Helper()
	db := testenv.PostgresDB(t)
	e := &env{t: t, ctx: context.Background(), db: db, store: &postgres.Billing{DB: db}}
	svc, err := billing.New(e.store, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	require.NoError(t, err)
	svc.Now = func() time.Time { return *e.now.Load() }
	e.svc = svc
	e.setNow(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	return e
}

func (e *env) setNow(t time.Time) { e.now.Store(&t) }

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	_, err := e.db.Pool.Exec(e.ctx, sql, args...)
	require.NoError(e.t, err, sql)
}

// loadTariff loads a tariff file from internal/tariff/testdata or inline YAML.
func (e *env) loadTariff(yaml string) billing.StoredTariff {
	e.t.Helper()
	st, _, err := e.svc.LoadTariff(e.ctx, []byte(yaml))
	require.NoError(e.t, err)
	return st
}

func (e *env) loadTariffFile(name string) billing.StoredTariff {
	e.t.Helper()
	data, err := os.ReadFile("../tariff/testdata/" + name)
	require.NoError(e.t, err)
	return e.loadTariff(string(data))
}

// accountSpec describes an account to create.
type accountSpec struct {
	currency, tz string
	anchor       int
	billingFrom  string
	points       []pointSpec
}

type pointSpec struct {
	utility meter.Utility
	tariff  string
	// interval is the meter's grid (default 15 minutes).
	interval time.Duration
}

// created is what createAccount made.
type created struct {
	account int64
	points  []int64
	meters  []string
}

func (e *env) createAccount(a accountSpec) created {
	e.t.Helper()
	n := e.seq.Add(1)
	var c created
	var hh, premise int64
	require.NoError(e.t, e.db.Pool.QueryRow(e.ctx, `insert into households (name) values ($1) returning id`, fmt.Sprintf("Household %d", n)).Scan(&hh))
	if a.anchor == 0 {
		a.anchor = 1
	}
	var from *string
	if a.billingFrom != "" {
		from = &a.billingFrom
	}
	require.NoError(e.t, e.db.Pool.QueryRow(e.ctx, `insert into accounts (household_id, number, currency, time_zone, cycle_anchor_day, billing_from)
		values ($1, $2, $3, $4, $5, $6::date) returning id`, hh, fmt.Sprintf("ACC-%05d", n), a.currency, a.tz, a.anchor, from).Scan(&c.account))
	require.NoError(e.t, e.db.Pool.QueryRow(e.ctx, `insert into premises (account_id, address) values ($1, $2) returning id`,
		c.account, fmt.Sprintf("%d Meter Lane", n)).Scan(&premise))
	for i, p := range a.points {
		var sp int64
		require.NoError(e.t, e.db.Pool.QueryRow(e.ctx, `insert into service_points (premise_id, utility, tariff_code) values ($1, $2, $3) returning id`,
			premise, string(p.utility), p.tariff).Scan(&sp))
		iv := p.interval
		if iv == 0 {
			iv = 15 * time.Minute
		}
		id := fmt.Sprintf("M-%d-%d", n, i+1)
		e.exec(`insert into meters (id, service_point_id, utility, token_hash, interval_seconds) values ($1, $2, $3, '\x00', $4)`,
			id, sp, string(p.utility), int(iv/time.Second))
		c.points = append(c.points, sp)
		c.meters = append(c.meters, id)
	}
	return c
}

// fill writes interval usage for a meter: every step from start (inclusive)
// to end (exclusive), q thousandths each, with quality.
func (e *env) fill(meterID string, u meter.Utility, start, end time.Time, step time.Duration, q int64, quality int) {
	e.t.Helper()
	e.exec(`insert into interval_usage (meter_id, channel, start_at, quantity, quality)
		select $1, $2, g, $5, $6 from generate_series($3::timestamptz, $4::timestamptz - $7::interval, $7::interval) g
		on conflict (meter_id, channel, start_at) do update set quantity = excluded.quantity, quality = excluded.quality, updated_at = now()`,
		meterID, string(meter.PrimaryRegister(u)), start, end, q, quality, fmt.Sprintf("%d seconds", int(step/time.Second)))
}

// set writes one interval.
func (e *env) set(meterID string, u meter.Utility, at time.Time, q int64, quality int) {
	e.t.Helper()
	e.exec(`insert into interval_usage (meter_id, channel, start_at, quantity, quality) values ($1, $2, $3, $4, $5)
		on conflict (meter_id, channel, start_at) do update set quantity = excluded.quantity, quality = excluded.quality, updated_at = now()`,
		meterID, string(meter.PrimaryRegister(u)), at, q, quality)
}

func (e *env) run(asOf time.Time) billing.RunSummary {
	e.t.Helper()
	e.setNow(asOf)
	s, err := e.svc.RunBills(e.ctx, asOf, nil)
	require.NoError(e.t, err)
	return s
}

// billsOf returns the bills of an account in period order.
func (e *env) billsOf(account int64) []billing.Bill {
	e.t.Helper()
	rows, err := e.db.Pool.Query(e.ctx, `select id from bills where account_id = $1 order by period_start`, account)
	require.NoError(e.t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(e.t, err)
	var out []billing.Bill
	for _, id := range ids {
		b, err := e.svc.Bill(e.ctx, id)
		require.NoError(e.t, err)
		out = append(out, b)
	}
	return out
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.db.Pool.QueryRow(e.ctx, sql, args...).Scan(&n))
	return n
}

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	require.NoError(t, err)
	return l
}

func day(loc *time.Location, s string) time.Time {
	d, err := tariff.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d.Start(loc)
}

// wantLine is an expected bill line as printed.
type wantLine struct {
	kind   string
	name   string
	qty    string
	price  string
	amount string
}

// requireBill checks a bill's lines and totals against hand-computed
// values, and that each line is explainable.
func requireBill(t *testing.T, b billing.Bill, lines []wantLine, subtotal, tax, total string) {
	t.Helper()
	minor, ok := tariff.MinorUnits(b.Currency)
	require.True(t, ok)
	var got []wantLine
	for _, l := range b.Lines {
		if l.Kind != billing.KindAdjustment && l.Kind != billing.KindAdjustmentTax {
			require.True(t, l.Quantity.Mul(l.UnitPrice).Round(minor).Equal(l.Amount), "%s: %s × %s is not %s", l.Description, l.Quantity, l.UnitPrice, l.Amount)
			require.NotEmpty(t, l.TariffCode)
			require.NotZero(t, l.TariffRevision)
			require.False(t, l.TariffVersion.IsZero())
		}
		got = append(got, wantLine{string(l.Kind), l.Name, l.Quantity.String(), l.UnitPrice.String(), l.Amount.StringFixed(minor)})
	}
	require.Equal(t, lines, got)
	require.Equal(t, subtotal, b.Subtotal.StringFixed(minor), "subtotal")
	require.Equal(t, tax, b.Tax.StringFixed(minor), "tax")
	require.Equal(t, total, b.Total.StringFixed(minor), "total")
}
