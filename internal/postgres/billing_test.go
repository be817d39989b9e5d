package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/tariff"
	"github.com/meterflow/meterflow/internal/testenv"
)

// TestBillingUsageModes reads one meter's register across the end of
// summer time in London (a 25-hour day) raw, by local day and in total.
func TestBillingUsageModes(t *testing.T) {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	store := &postgres.Billing{DB: db}
	_, err := db.Pool.Exec(ctx, `insert into meters (id, utility, token_hash) values ('E-1', 'electricity', '\x00')`)
	require.NoError(t, err)
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	from := tariff.Date{Year: 2025, Month: 10, Day: 25}.Start(london)
	to := tariff.Date{Year: 2025, Month: 10, Day: 28}.Start(london)
	// 10 Wh every 15 minutes; one estimate on the 26th.
	_, err = db.Pool.Exec(ctx, `insert into interval_usage (meter_id, channel, start_at, quantity, quality)
		select 'E-1', '1-0:1.8.0', g, 10, case when g = '2025-10-26 12:00+00' then 1 else 0 end
		  from generate_series($1::timestamptz, $2::timestamptz - interval '15 minutes', interval '15 minutes') g`, from, to)
	require.NoError(t, err)

	q := billing.UsageQuery{MeterID: "E-1", Channel: "1-0:1.8.0", From: from, To: to, TimeZone: "Europe/London"}
	raw, daily, total := q, q, q
	raw.Mode, daily.Mode, total.Mode = billing.Raw, billing.Daily, billing.Total
	other := total
	other.MeterID = "E-404"
	got, err := store.Usage(ctx, []billing.UsageQuery{raw, daily, total, other})
	require.NoError(t, err)
	require.Len(t, got, 4)

	assert.Len(t, got[0], 73*4, "24 + 25 + 24 hours of quarter hours")
	assert.True(t, got[0][0].Start.Equal(from))
	assert.Equal(t, meter.Value(10), got[0][0].Quantity)

	require.Len(t, got[1], 3)
	for i, want := range []struct {
		day       string
		n, est    int
		qty       meter.Value
		firstHour int
	}{{"2025-10-25", 96, 0, 960, 0}, {"2025-10-26", 100, 1, 1000, 0}, {"2025-10-27", 96, 0, 960, 0}} {
		r := got[1][i]
		assert.Equal(t, want.day, r.Day.String())
		assert.Equal(t, want.n, r.Intervals)
		assert.Equal(t, want.est, r.Estimated)
		assert.Equal(t, want.qty, r.Quantity)
		assert.Equal(t, want.day, r.First.In(london).Format(time.DateOnly))
	}
	require.Len(t, got[2], 1)
	assert.Equal(t, meter.Value(2920), got[2][0].Quantity)
	assert.Equal(t, 292, got[2][0].Intervals)
	assert.Equal(t, 1, got[2][0].Estimated)
	assert.Empty(t, got[3])
}

func TestBillingTariffRevisions(t *testing.T) {
	ctx := context.Background()
	store := &postgres.Billing{DB: testenv.PostgresDB(t)}
	tr, err := tariff.Parse([]byte(`
code: T
name: T
utility: water
currency: EUR
unit: m3
versions:
  - {effective_from: 2025-01-01, standing_charge_per_day: 0.10, flat_rate: 1.50}
`))
	require.NoError(t, err)
	def, err := billing.EncodeTariff(tr)
	require.NoError(t, err)
	st, created, err := store.SaveTariff(ctx, tr, def)
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, 1, st.Revision)
	_, created, err = store.SaveTariff(ctx, tr, def)
	require.NoError(t, err)
	assert.False(t, created, "an unchanged definition is not a new revision")

	all, err := store.Tariffs(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	assert.Equal(t, tr, all[0].Tariff, "the stored definition reads back exactly")
}

// IssueBills writes a batch straight into bills; when a bill of the batch
// was issued before (another run got there first) the batch goes in through
// the conflict-skipping path instead: the others are issued with their
// lines, registers and events, the one issued before is left as it was.
func TestIssueBillsSkipsBillsIssuedBefore(t *testing.T) {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	store := &postgres.Billing{DB: db}
	var hh int64
	require.NoError(t, db.Pool.QueryRow(ctx, `insert into households (name) values ('Ada') returning id`).Scan(&hh))
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	jan, feb, mar := tariff.Date{Year: 2025, Month: 1, Day: 1}, tariff.Date{Year: 2025, Month: 2, Day: 1}, tariff.Date{Year: 2025, Month: 3, Day: 1}
	bill := func(account int64, from, to tariff.Date, total string) *billing.Bill {
		amount := decimal.RequireFromString(total)
		return &billing.Bill{AccountID: account, HouseholdID: hh, PeriodStart: from, PeriodEnd: to,
			StartAt: from.Start(london), EndAt: to.Start(london), TimeZone: "Europe/London", Currency: "GBP",
			Subtotal: amount, Tax: decimal.Zero, Total: amount, Status: billing.Issued, IssuedAt: to.Start(london), DueDate: to.AddDays(14),
			Lines: []billing.Line{{No: 1, Kind: "standing", Description: "Standing charge", Quantity: decimal.NewFromInt(28),
				Unit: "day", UnitPrice: decimal.RequireFromString("0.50"), Amount: amount}},
			Registers: []billing.Register{{MeterID: "E-1", Channel: "1-0:1.8.0", ServicePointID: 1, Start: from.Start(london), End: to.Start(london), Quantity: 1000, Intervals: 28, Expected: 28}},
		}
	}
	var accounts []int64
	for _, n := range []string{"A-1", "A-2"} {
		var id int64
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into accounts (household_id, number, currency, time_zone) values ($1, $2, 'GBP', 'Europe/London') returning id`, hh, n).Scan(&id))
		accounts = append(accounts, id)
	}
	issue := func(bs ...*billing.Bill) []int64 {
		ids, err := store.NextBillIDs(ctx, len(bs))
		require.NoError(t, err)
		events := make([]billing.Event, len(bs))
		for i, b := range bs {
			b.ID = ids[i]
			events[i] = billing.Event{Key: fmt.Sprintf("bill.issued:%d", b.ID), Kind: "bill.issued", AccountID: b.AccountID, OccurredAt: b.IssuedAt, BillID: b.ID, Payload: map[string]any{}}
		}
		issued, err := store.IssueBills(ctx, bs, events)
		require.NoError(t, err)
		return issued
	}

	first := bill(accounts[0], jan, feb, "15.50")
	assert.Equal(t, []int64{first.ID}, issue(first), "a batch with nothing issued before goes in whole")

	again := bill(accounts[0], jan, feb, "99.00") // the same account and period
	next := bill(accounts[0], feb, mar, "14.00")
	other := bill(accounts[1], jan, feb, "16.00")
	issued := issue(again, next, other)
	assert.ElementsMatch(t, []int64{next.ID, other.ID}, issued)

	count := func(sql string, args ...any) int {
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx, sql, args...).Scan(&n))
		return n
	}
	assert.Equal(t, 3, count(`select count(*) from bills`))
	assert.Equal(t, 1, count(`select count(*) from bills where account_id = $1 and period_start = '2025-01-01' and total = 15.50`, accounts[0]), "the bill issued first stays")
	assert.Zero(t, count(`select count(*) from bill_lines where bill_id = $1`, again.ID), "no lines of a skipped bill")
	assert.Zero(t, count(`select count(*) from bill_registers where bill_id = $1`, again.ID))
	assert.Zero(t, count(`select count(*) from outbox where event_key = $1`, fmt.Sprintf("bill.issued:%d", again.ID)))
	assert.Equal(t, 3, count(`select count(*) from bill_lines`))
	assert.Equal(t, 3, count(`select count(*) from bill_registers`))
	assert.Equal(t, 3, count(`select count(*) from outbox where kind = 'bill.issued'`))
}
