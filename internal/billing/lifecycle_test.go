package billing_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestBillRunIsIdempotent(t *testing.T) {
	e := newEnv(t, billing.Config{})
	e.loadTariff(flatGBP)
	london := mustLoc(t, "Europe/London")
	var accounts []created
	for range 3 {
		c := e.createAccount(accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-E", interval: 24 * time.Hour}}})
		e.fill(c.meters[0], meter.Electricity, day(london, "2025-01-01"), day(london, "2025-02-01"), 24*time.Hour, 9600, 0)
		accounts = append(accounts, c)
	}
	// An account with no service point has nothing to bill.
	empty := e.createAccount(accountSpec{currency: "GBP", tz: "Europe/London"})

	first := e.run(day(london, "2025-02-03"))
	assert.Equal(t, 3, first.BillsIssued)
	assert.Equal(t, 1, first.NothingToBill)
	assert.Equal(t, 4, first.Accounts)

	for _, asOf := range []time.Time{day(london, "2025-02-03"), day(london, "2025-02-20")} {
		again := e.run(asOf)
		assert.Zero(t, again.BillsIssued, "running again issues nothing")
		assert.Equal(t, 3, again.AlreadyBilled)
		assert.Equal(t, "succeeded", again.Outcome)
	}
	assert.Equal(t, 3, e.count(`select count(*) from bills`))
	assert.Equal(t, 3, e.count(`select count(*) from outbox where kind = 'bill.issued'`))
	assert.Empty(t, e.billsOf(empty.account))
	for _, c := range accounts {
		bills := e.billsOf(c.account)
		require.Len(t, bills, 1)
		assert.Equal(t, "2025-01-01", bills[0].PeriodStart.String())
		// 31 × 9.6 kWh on a daily grid.
		assert.Equal(t, meter.Value(297600), bills[0].Registers[0].Quantity)
		assert.Equal(t, 31, bills[0].Registers[0].Expected)
	}
	assert.Equal(t, 3, e.count(`select count(*) from bill_runs where outcome = 'succeeded' and finished_at is not null`))
}

// TestConcurrentBillRuns starts bill runs in parallel, as two processes
// would, each with its own connection pool and several workers.
func TestConcurrentBillRuns(t *testing.T) {
	url := testenv.Postgres(t)
	london := mustLoc(t, "Europe/London")
	var svcs []*billing.Service
	var e *env
	for i := range 3 {
		db, err := postgres.Open(context.Background(), postgres.Config{URL: url, MaxConns: 4})
		require.NoError(t, err)
		t.Cleanup(db.Close)
		svc, err := billing.New(&postgres.Billing{DB: db}, billing.Config{Workers: 2, BatchSize: 3}, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		now := day(london, "2025-02-02")
		svc.Now = func() time.Time { return now }
		svcs = append(svcs, svc)
		if i == 0 {
			e = &env{t: t, ctx: context.Background(), db: db, store: &postgres.Billing{DB: db}, svc: svc}
			e.setNow(now)
		}
	}
	e.loadTariff(flatGBP)
	const n = 20
	for range n {
		c := e.createAccount(accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-E", interval: 24 * time.Hour}}})
		e.fill(c.meters[0], meter.Electricity, day(london, "2025-01-01"), day(london, "2025-02-01"), 24*time.Hour, 9600, 0)
	}

	for round := range 2 {
		var wg sync.WaitGroup
		sums := make([]billing.RunSummary, len(svcs))
		start := make(chan struct{})
		for i, svc := range svcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				s, err := svc.RunBills(context.Background(), day(london, "2025-02-02"), nil)
				assert.NoError(t, err)
				sums[i] = s
			}()
		}
		close(start)
		wg.Wait()
		issued := 0
		for _, s := range sums {
			issued += s.BillsIssued
			assert.Equal(t, n, s.BillsIssued+s.AlreadyBilled, "every account is either issued or found billed: %+v", s)
		}
		if round == 0 {
			assert.Equal(t, n, issued, "together the runs issue each bill once")
		} else {
			assert.Zero(t, issued)
		}
	}
	assert.Equal(t, n, e.count(`select count(*) from bills`))
	assert.Zero(t, e.count(`select count(*) from (select account_id from bills group by account_id, period_start having count(*) > 1) d`))
	assert.Equal(t, n, e.count(`select count(*) from outbox where kind = 'bill.issued'`))
	assert.Equal(t, 3*n, e.count(`select count(*) from bill_lines`), "no line of a skipped bill is written")
}

// TestLateDataBecomesAnAdjustment bills a month with a gap and an estimate,
// then receives the real values: the issued bill stays as it was and the
// next bill carries the correction, once.
func TestLateDataBecomesAnAdjustment(t *testing.T) {
	e := newEnv(t, billing.Config{})
	e.loadTariff(flatGBP)
	london := mustLoc(t, "Europe/London")
	q := 15 * time.Minute
	c := e.createAccount(accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-E"}}})
	m := c.meters[0]
	e.fill(m, meter.Electricity, day(london, "2025-01-01"), day(london, "2025-02-01"), q, 100, 0)
	e.exec(`delete from interval_usage where meter_id = $1 and start_at >= $2 and start_at < $3`, m, day(london, "2025-01-10"), day(london, "2025-01-10").Add(time.Hour))
	e.set(m, meter.Electricity, day(london, "2025-01-11"), 100, int(meter.Estimated))

	e.run(day(london, "2025-02-01").Add(6 * time.Hour))
	bills := e.billsOf(c.account)
	require.Len(t, bills, 1)
	jan := bills[0]
	// 297.6 − 0.4 missing = 297.2 kWh × 0.25 = 74.30; VAT 5% of 89.80 = 4.49.
	requireBill(t, jan, []wantLine{
		{"standing", "", "31", "0.5", "15.50"},
		{"energy", "", "297.2", "0.25", "74.30"},
		{"tax", "VAT", "89.8", "0.05", "4.49"},
	}, "89.80", "4.49", "94.29")
	assert.True(t, jan.Estimated)
	assert.Equal(t, 4, jan.MissingIntervals)
	assert.False(t, jan.Lines[0].Estimated, "the standing charge does not depend on readings")
	assert.True(t, jan.Lines[1].Estimated)
	assert.True(t, jan.Lines[2].Estimated)
	assert.Equal(t, 1, jan.Registers[0].Estimated)
	assert.Equal(t, 4, jan.Registers[0].Missing())

	// The gap arrives, and the estimate is replaced by a measured 300 Wh:
	// January is now 297.8 kWh.
	e.fill(m, meter.Electricity, day(london, "2025-01-10"), day(london, "2025-01-10").Add(time.Hour), q, 100, 0)
	e.set(m, meter.Electricity, day(london, "2025-01-11"), 300, int(meter.Measured))
	e.fill(m, meter.Electricity, day(london, "2025-02-01"), day(london, "2025-03-01"), q, 100, 0)

	s := e.run(day(london, "2025-03-01").Add(6 * time.Hour))
	assert.Equal(t, 1, s.Adjustments)
	bills = e.billsOf(c.account)
	require.Len(t, bills, 2)
	feb := bills[1]
	// February: 28 × 0.50 = 14.00; 268.8 × 0.25 = 67.20; VAT 4.06.
	// January repriced: 15.50 + 297.8 × 0.25 = 74.45 → 89.95, VAT 4.4975 → 4.50:
	// +0.15 and +0.01 on what was billed.
	requireBill(t, feb, []wantLine{
		{"standing", "", "28", "0.5", "14.00"},
		{"energy", "", "268.8", "0.25", "67.20"},
		{"tax", "VAT", "81.2", "0.05", "4.06"},
		{"adjustment", "", "1", "0.15", "0.15"},
		{"adjustment_tax", "", "1", "0.01", "0.01"},
	}, "81.35", "4.07", "85.42")
	assert.Equal(t, jan.ID, feb.Lines[3].AdjustsBillID)
	assert.Contains(t, feb.Lines[3].Description, "297.200 kWh billed, 297.800 kWh metered now")
	var corr *billing.Register
	for i := range feb.Registers {
		if feb.Registers[i].AdjustsBillID == jan.ID {
			corr = &feb.Registers[i]
		}
	}
	require.NotNil(t, corr)
	assert.Equal(t, meter.Value(297800), corr.Quantity)

	// The January bill is as issued, now marked adjusted.
	again := e.billsOf(c.account)[0]
	assert.Equal(t, billing.Adjusted, again.Status)
	assert.Equal(t, jan.Lines, again.Lines)
	assert.True(t, jan.Total.Equal(again.Total))
	_, err := e.db.Pool.Exec(e.ctx, `update bill_lines set amount = 0 where bill_id = $1`, jan.ID)
	require.Error(t, err, "issued lines are immutable")
	_, err = e.db.Pool.Exec(e.ctx, `update bills set total = 0, subtotal = 0, tax = 0 where id = $1`, jan.ID)
	require.Error(t, err, "issued totals are immutable")

	// March: nothing changed in January or February, so no correction.
	e.fill(m, meter.Electricity, day(london, "2025-03-01"), day(london, "2025-04-01"), q, 100, 0)
	s = e.run(day(london, "2025-04-01").Add(6 * time.Hour))
	assert.Zero(t, s.Adjustments)
	bills = e.billsOf(c.account)
	require.Len(t, bills, 3)
	for _, l := range bills[2].Lines {
		assert.NotEqual(t, billing.KindAdjustment, l.Kind)
	}
	assert.False(t, bills[2].Estimated)
}

// TestThresholdsEmitOncePerPeriod runs accruals twice and checks each
// threshold crossed is one outbox event, then crosses one more.
func TestThresholdsEmitOncePerPeriod(t *testing.T) {
	e := newEnv(t, billing.Config{})
	e.loadTariff(flatGBP)
	london := mustLoc(t, "Europe/London")
	q := 15 * time.Minute
	c := e.createAccount(accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-E"}}})
	e.exec(`insert into budgets (account_id, scope, amount) values ($1, 'account', 100), ($1, 'electricity', 60)`, c.account)
	e.exec(`insert into account_thresholds (account_id, accrued_above, balance_below) values ($1, 50, 50)`, c.account)
	e.exec(`insert into prepaid_balances (account_id, balance) values ($1, 100)`, c.account)
	now := day(london, "2025-01-20").Add(12 * time.Hour)
	e.fill(c.meters[0], meter.Electricity, day(london, "2025-01-01"), now, q, 100, 0)
	e.setNow(now)

	for range 2 {
		_, err := e.svc.UpdateAccruals(e.ctx)
		require.NoError(t, err)
	}
	// 1–20 January so far: 20 × 0.50 = 10.00; 19.5 days × 9.6 = 187.2 kWh × 0.25 = 46.80;
	// VAT 2.84: 59.64. Last 7 full days: 3.50 + 16.80 + 1.02 = 21.32, so
	// projected 59.64 + 11 × 21.32 / 7 = 93.14.
	var amount, projected string
	var qty int64
	var through time.Time
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select amount::text, projected::text, quantity, through from accruals where account_id = $1 and utility = 'electricity'`,
		c.account).Scan(&amount, &projected, &qty, &through))
	assert.Equal(t, "59.64", amount)
	assert.Equal(t, "93.14", projected)
	assert.Equal(t, int64(187200), qty)
	assert.Equal(t, "2025-01-21", through.Format(time.DateOnly))

	keys := func() []string {
		rows, err := e.db.Pool.Query(e.ctx, `select event_key from outbox order by event_key`)
		require.NoError(t, err)
		defer rows.Close()
		var ks []string
		for rows.Next() {
			var k string
			require.NoError(t, rows.Scan(&k))
			ks = append(ks, k)
		}
		return ks
	}
	k := func(format string, args ...any) string {
		return fmt.Sprintf(format, append([]any{c.account}, args...)...)
	}
	want := []string{
		k("accrued.above:%d:50.00:2025-01-01"),
		k("balance.below:%d:50.00:2025-01-01"),
		k("budget.crossed:%d:account:50:2025-01-01"),
		k("budget.crossed:%d:electricity:50:2025-01-01"),
		k("budget.crossed:%d:electricity:80:2025-01-01"),
	}
	assert.Equal(t, want, keys())

	// A day later the electricity budget of 60 is spent: one new event.
	now = now.Add(24 * time.Hour)
	e.fill(c.meters[0], meter.Electricity, day(london, "2025-01-20").Add(12*time.Hour), now, q, 100, 0)
	e.setNow(now)
	for range 2 {
		_, err := e.svc.UpdateAccruals(e.ctx)
		require.NoError(t, err)
	}
	want = append(want, k("budget.crossed:%d:electricity:100:2025-01-01"))
	assert.ElementsMatch(t, want, keys())
	assert.Equal(t, 4, e.count(`select count(*) from accrual_runs where finished_at is not null`))

	// The next cycle starts the budgets again.
	now = day(london, "2025-02-01").Add(time.Hour)
	e.setNow(now)
	_, err := e.svc.UpdateAccruals(e.ctx)
	require.NoError(t, err)
	var cycle time.Time
	require.NoError(t, e.db.Pool.QueryRow(e.ctx, `select cycle_start from accruals where account_id = $1`, c.account).Scan(&cycle))
	assert.Equal(t, "2025-02-01", cycle.Format(time.DateOnly))
}

// TestRenderBillGolden renders a consolidated bill with three utilities,
// an estimate, a missing interval and a correction.
func TestRenderBillGolden(t *testing.T) {
	e := newEnv(t, billing.Config{})
	e.loadTariffFile("economy7.yaml")
	e.loadTariffFile("gas-kwh.json")
	e.loadTariff(`
code: WATER-GB
name: Metered water
utility: water
currency: GBP
unit: m3
versions:
  - effective_from: 2024-04-01
    standing_charge_per_day: 0.1
    tiers:
      blocks:
        - {up_to: 5, rate: 1.5}
        - {rate: 2.25}
`)
	london := mustLoc(t, "Europe/London")
	c := e.createAccount(accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{
		{utility: meter.Electricity, tariff: "GB-E7-2024"},
		{utility: meter.Gas, tariff: "GB-GAS-2024", interval: time.Hour},
		{utility: meter.Water, tariff: "WATER-GB", interval: 24 * time.Hour},
	}})
	for _, month := range []struct{ from, to string }{{"2025-01-01", "2025-02-01"}, {"2025-02-01", "2025-03-01"}} {
		e.fill(c.meters[0], meter.Electricity, day(london, month.from), day(london, month.to), 15*time.Minute, 80, 0)
		e.fill(c.meters[1], meter.Gas, day(london, month.from), day(london, month.to), time.Hour, 120, 0)
		e.fill(c.meters[2], meter.Water, day(london, month.from), day(london, month.to), 24*time.Hour, 210, 0)
	}
	e.set(c.meters[0], meter.Electricity, day(london, "2025-01-15").Add(18*time.Hour), 80, int(meter.Estimated))
	e.exec(`delete from interval_usage where meter_id = $1 and start_at = $2`, c.meters[2], day(london, "2025-01-20"))
	e.run(day(london, "2025-02-01").Add(7 * time.Hour))
	// January's missing water day arrives.
	e.set(c.meters[2], meter.Water, day(london, "2025-01-20"), 400, 0)
	e.run(day(london, "2025-03-01").Add(7 * time.Hour))

	for i, name := range []string{"bill-january.golden.html", "bill-february.golden.html"} {
		b := e.billsOf(c.account)[i]
		var buf bytes.Buffer
		require.NoError(t, billing.RenderBill(&buf, b))
		path := "testdata/" + name
		if *update {
			require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
		}
		want, err := os.ReadFile(path)
		require.NoError(t, err, "run with -update to create it")
		assert.Equal(t, string(want), buf.String(), "%s differs; run go test -run TestRenderBillGolden -update and review the diff", path)
	}
}

func TestLoadTariffRefusesABadFile(t *testing.T) {
	e := newEnv(t, billing.Config{})
	_, _, err := e.svc.LoadTariff(e.ctx, []byte(`
code: BAD
name: Bad
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2025-01-01
    standing_charge_per_day: 0.5
    tou:
      bands:
        - {name: night, from: 0, to: 7, rate: 0.15}
        - {name: day, from: 7, to: 25, rate: 0.30}
`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "versions[0].tou.bands[1].to")
	assert.Zero(t, e.count(`select count(*) from tariffs`))

	// Loading the same file twice keeps one revision; a change adds one.
	st, created, err := e.svc.LoadTariff(e.ctx, []byte(flatGBP))
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, 1, st.Revision)
	_, created, err = e.svc.LoadTariff(e.ctx, []byte(flatGBP))
	require.NoError(t, err)
	assert.False(t, created)
	st, created, err = e.svc.LoadTariff(e.ctx, []byte(strings.Replace(flatGBP, "0.25", "0.26", 1)))
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, 2, st.Revision)
}

// TestBillRunFailsAnAccountAlone: an account that cannot be priced is
// counted and logged; the others are billed.
func TestBillRunFailsAnAccountAlone(t *testing.T) {
	e := newEnv(t, billing.Config{})
	e.loadTariff(flatGBP)
	e.loadTariffFile("economy7.yaml")
	london := mustLoc(t, "Europe/London")
	good := e.createAccount(accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-E", interval: 24 * time.Hour}}})
	e.fill(good.meters[0], meter.Electricity, day(london, "2025-01-01"), day(london, "2025-02-01"), 24*time.Hour, 1000, 0)
	// Time of use cannot be priced from daily reads.
	bad := e.createAccount(accountSpec{currency: "GBP", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "GB-E7-2024", interval: 24 * time.Hour}}})
	e.fill(bad.meters[0], meter.Electricity, day(london, "2025-01-01"), day(london, "2025-02-01"), 24*time.Hour, 1000, 0)
	// A tariff in another currency.
	eur := e.createAccount(accountSpec{currency: "EUR", tz: "Europe/London", points: []pointSpec{{utility: meter.Electricity, tariff: "FLAT-E"}}})

	s := e.run(day(london, "2025-02-01"))
	assert.Equal(t, "partial", s.Outcome)
	assert.Equal(t, 1, s.BillsIssued)
	assert.Equal(t, 2, s.Failed)
	assert.ElementsMatch(t, []int64{bad.account, eur.account}, s.FailedAccounts)
	assert.Len(t, e.billsOf(good.account), 1)
}
