package alert

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/outbox"
)

func london(t *testing.T) *time.Location {
	l, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	return l
}

func TestQuietUntil(t *testing.T) {
	loc := london(t)
	night := &QuietHours{Start: "22:00", End: "07:00"}
	day := &QuietHours{Start: "12:00", End: "14:00"}
	at := func(d, h, m int) time.Time { return time.Date(2026, 3, d, h, m, 0, 0, loc) }
	for _, tc := range []struct {
		name string
		now  time.Time
		q    *QuietHours
		want time.Time
	}{
		{"no quiet hours", at(10, 23, 0), nil, at(10, 23, 0)},
		{"before an overnight window", at(10, 21, 59), night, at(10, 21, 59)},
		{"in an overnight window, evening", at(10, 23, 0), night, at(11, 7, 0)},
		{"in an overnight window, morning", at(11, 6, 30), night, at(11, 7, 0)},
		{"at the end of the window", at(11, 7, 0), night, at(11, 7, 0)},
		{"in a daytime window", at(10, 13, 0), day, at(10, 14, 0)},
		{"after a daytime window", at(10, 14, 0), day, at(10, 14, 0)},
		// 29 March 2026: clocks go forward at 01:00 GMT; 07:00 BST is 06:00 UTC.
		{"over the spring change", at(28, 23, 30), night, time.Date(2026, 3, 29, 6, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := QuietUntil(tc.now, loc, tc.q)
			assert.True(t, tc.want.Equal(got), "want %s, got %s", tc.want, got)
		})
	}
}

func TestMedian(t *testing.T) {
	assert.Equal(t, int64(0), Median(nil))
	assert.Equal(t, int64(5), Median([]int64{9, 5, 1}))
	assert.Equal(t, int64(6), Median([]int64{10, 2, 5, 7})) // (5+7)/2
	assert.Equal(t, int64(10), Median([]int64{10, 10, 11, 9}))
}

func TestAbnormal(t *testing.T) {
	m := Meter{Owner: Owner{AccountID: 7, HouseholdID: 3}, ID: "E-1", Utility: "electricity"}
	cfg := AbnormalConfig{Factor: decimal.NewFromInt(2), MinExcess: map[string]int64{"electricity": 5000}, MinWeeks: 3}
	all := []bool{true, true, true, true}
	for _, tc := range []struct {
		name     string
		today    int64
		baseline []int64
		present  []bool
		fires    bool
	}{
		// median of 10, 12, 8, 11 kWh is (10+11)/2 = 10.5 kWh; twice that is 21.
		{"normal day", 12_000, []int64{10_000, 12_000, 8_000, 11_000}, all, false},
		{"just under twice the median", 20_999, []int64{10_000, 12_000, 8_000, 11_000}, all, false},
		{"twice the median", 21_000, []int64{10_000, 12_000, 8_000, 11_000}, all, true},
		{"twice a tiny median, under the minimum excess", 2_000, []int64{1_000, 1_000, 1_000, 1_000}, all, false},
		{"too few weeks of baseline", 50_000, []int64{10_000, 0, 0, 11_000}, []bool{true, false, false, true}, false},
		{"three weeks are enough", 50_000, []int64{10_000, 0, 9_000, 11_000}, []bool{true, false, true, true}, true},
		{"a zero baseline with data counts", 6_000, []int64{0, 0, 0, 0}, all, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := Abnormal(Usage{Meter: m, Day: "2026-03-10", Today: tc.today, Baseline: tc.baseline, Present: tc.present}, cfg)
			assert.Equal(t, tc.fires, ok)
			if ok {
				assert.Equal(t, "abnormal_usage:7:E-1:2026-03-10", d.Key)
				assert.Equal(t, int64(3), d.HouseholdID)
			}
		})
	}
}

func TestLeakAndNightWindow(t *testing.T) {
	loc := london(t)
	m := Meter{Owner: Owner{AccountID: 7, HouseholdID: 3}, ID: "W-1", Utility: "water", IntervalSeconds: 900}

	day, starts := NightWindow(time.Date(2026, 3, 10, 9, 0, 0, 0, loc), loc, 1, 5, 15*time.Minute)
	assert.Equal(t, "2026-03-10", day)
	require.Len(t, starts, 16)
	assert.True(t, starts[0].Equal(time.Date(2026, 3, 10, 1, 0, 0, 0, loc)))
	day, _ = NightWindow(time.Date(2026, 3, 10, 4, 59, 0, 0, loc), loc, 1, 5, 15*time.Minute)
	assert.Equal(t, "2026-03-09", day, "before 05:00 the last complete night is the previous one")
	_, spring := NightWindow(time.Date(2026, 3, 29, 9, 0, 0, 0, loc), loc, 1, 5, 15*time.Minute)
	assert.Len(t, spring, 12, "the spring-forward night has three hours from 01:00 to 05:00")

	flow := func(f func(i int) int64) map[int64]int64 {
		q := map[int64]int64{}
		for i, s := range starts {
			if v := f(i); v >= 0 {
				q[s.Unix()] = v
			}
		}
		return q
	}
	for _, tc := range []struct {
		name    string
		utility string
		q       map[int64]int64
		fires   bool
	}{
		{"flow all night", "water", flow(func(int) int64 { return 3 }), true},
		{"gas all night", "gas", flow(func(int) int64 { return 40 }), true},
		{"one quiet interval", "water", flow(func(i int) int64 { return map[bool]int64{true: 0, false: 3}[i == 9] }), false},
		{"one missing interval", "water", flow(func(i int) int64 { return map[bool]int64{true: -1, false: 3}[i == 0] }), false},
		{"electricity never leaks", "electricity", flow(func(int) int64 { return 3 }), false},
		{"no data", "water", map[int64]int64{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mm := m
			mm.Utility = tc.utility
			d, ok := Leak(Night{Meter: mm, Day: "2026-03-10", Starts: starts, Quantities: tc.q})
			assert.Equal(t, tc.fires, ok)
			if ok {
				assert.Equal(t, "leak:7:W-1:2026-03-10", d.Key)
			}
		})
	}
}

func TestDayWindows(t *testing.T) {
	loc := london(t)
	// Tuesday 7 April 2026 10:30 BST; four weeks back crosses the spring change.
	day, today, past := DayWindows(time.Date(2026, 4, 7, 10, 30, 0, 0, loc), loc, 4)
	assert.Equal(t, "2026-04-07", day)
	assert.Equal(t, 10*time.Hour+30*time.Minute, today[1].Sub(today[0]))
	require.Len(t, past, 4)
	assert.True(t, past[3][0].Equal(time.Date(2026, 3, 10, 0, 0, 0, 0, loc)))
	assert.Equal(t, 10*time.Hour+30*time.Minute, past[3][1].Sub(past[3][0]), "same wall-clock stretch in GMT")
}

func TestBillUpcomingProjectedSilent(t *testing.T) {
	o := Owner{AccountID: 7, HouseholdID: 3}
	due := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
	b := DueBill{Owner: o, BillID: 42, DueDate: due, Total: "12.00", Currency: "GBP"}
	for _, tc := range []struct {
		today time.Time
		fires bool
	}{
		{due.AddDate(0, 0, -4), false},
		{due.AddDate(0, 0, -3), true},
		{due, true},
		{due.AddDate(0, 0, 1), false},
	} {
		d, ok := BillUpcoming(b, tc.today, 3)
		assert.Equal(t, tc.fires, ok, tc.today)
		if ok {
			assert.Equal(t, "bill_upcoming:7:42", d.Key)
		}
	}

	p := Projection{Owner: o, Scope: "water", Budget: decimal.NewFromInt(100), CycleStart: "2026-03-01", Currency: "GBP"}
	p.Projected = decimal.RequireFromString("100.00")
	_, ok := ProjectedOver(p)
	assert.False(t, ok, "exactly on budget is not over")
	p.Projected = decimal.RequireFromString("100.01")
	d, ok := ProjectedOver(p)
	assert.True(t, ok)
	assert.Equal(t, "projected_over:7:water:2026-03-01", d.Key)

	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	m := Meter{Owner: o, ID: "G-1", Utility: "gas"}
	_, ok = Silent(m, now, 24*time.Hour)
	assert.False(t, ok, "a meter that never reported is not silent")
	m.LastSeen = now.Add(-24 * time.Hour)
	_, ok = Silent(m, now, 24*time.Hour)
	assert.False(t, ok)
	m.LastSeen = now.Add(-25 * time.Hour)
	d, ok = Silent(m, now, 24*time.Hour)
	assert.True(t, ok)
	assert.Equal(t, "meter_silent:7:G-1:1773054000", d.Key) // 2026-03-09T11:00:00Z
}

func TestAlarmRules(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	ms := []Meter{
		{ID: "A", LastSeen: now.Add(-7 * time.Hour)},
		{ID: "B", LastSeen: now.Add(-time.Hour)},
		{ID: "C"}, // never reported
	}
	cs := OfflineMeters(ms, now, 6*time.Hour)
	require.Len(t, cs, 1)
	assert.Equal(t, "A", cs[0].Subject)

	cs = VEERate([]VEEDelta{{MeterID: "A", Delta: 12, Span: time.Hour}, {MeterID: "B", Delta: 26, Span: 2 * time.Hour}, {MeterID: "C", Delta: 5, Span: 0}}, 12)
	require.Len(t, cs, 1, "12 an hour is not above 12; 13 an hour is")
	assert.Equal(t, "B", cs[0].Subject)

	assert.Empty(t, IngestLag(100, 100))
	assert.Len(t, IngestLag(101, 100), 1)

	for _, tc := range []struct {
		ok, failed int
		fires      bool
	}{
		{0, 0, false}, {0, 9, false}, // too few to judge
		{8, 2, false}, // 20 %
		{7, 3, true},  // 30 %
	} {
		assert.Equal(t, tc.fires, len(PaymentFailures(tc.ok, tc.failed, 10, 0.25, time.Hour)) == 1, "%d ok, %d failed", tc.ok, tc.failed)
	}
}

func TestPreferences(t *testing.T) {
	p := Preferences{Channels: map[Kind][]Channel{KindBudget: {InApp}}}
	require.NoError(t, p.Validate())
	assert.False(t, p.Uses(KindBudget, SMS))
	assert.True(t, p.Uses(KindLeak, SMS), "kinds not chosen take the defaults")
	assert.Error(t, Preferences{Channels: map[Kind][]Channel{"nope": {InApp}}}.Validate())
	assert.Error(t, Preferences{Channels: map[Kind][]Channel{KindLeak: {"email"}}}.Validate())
	assert.Error(t, Preferences{QuietHours: &QuietHours{Start: "22:00", End: "22:00"}}.Validate())
	assert.Error(t, Preferences{QuietHours: &QuietHours{Start: "25:00", End: "07:00"}}.Validate())
}

func TestHub(t *testing.T) {
	h := NewHub()
	a, b, all := h.Subscribe(1, 4), h.Subscribe(2, 4), h.Subscribe(0, 4)
	assert.Equal(t, 2, h.Publish(Alert{ID: 10, HouseholdID: 1}))
	got := <-a.C
	assert.Equal(t, int64(10), got.ID)
	assert.Equal(t, int64(10), (<-all.C).ID)
	select {
	case x := <-b.C:
		t.Fatalf("household 2 got household 1's alert %d", x.ID)
	default:
	}
	b.Cancel()
	_, open := <-b.C
	assert.False(t, open)
	h.Close()
	_, open = <-a.C
	assert.False(t, open)
}

// TestAlertAmountsHaveMinorUnits checks that every amount an alert shows,
// in its body and its data, is written with the currency's minor units,
// however the event or row it came from wrote it.
func TestAlertAmountsHaveMinorUnits(t *testing.T) {
	o := Owner{AccountID: 7, HouseholdID: 3}
	ev := func(kind, payload string) outbox.Event {
		return outbox.Event{Key: kind + ":1", Kind: kind, AccountID: 7, Payload: json.RawMessage(payload)}
	}
	for _, tc := range []struct {
		name  string
		event outbox.Event
		body  string
		data  map[string]any
	}{
		{"budget crossed", ev("budget.crossed", `{"scope":"account","percent":80,"budget":"120.5","accrued":"96.4","currency":"GBP","cycle_start":"2026-03-01"}`),
			"Your spending this cycle is GBP 96.40, 80% of your GBP 120.50 budget.", map[string]any{"budget": "120.50", "accrued": "96.40"}},
		{"bill issued", ev("bill.issued", `{"bill_id":5,"period_start":"2026-02-01","period_end":"2026-03-01","currency":"GBP","total":"42.1","due_date":"2026-03-15"}`),
			"Your bill for 2026-02-01 to 2026-03-01 is GBP 42.10, due 2026-03-15.", map[string]any{"total": "42.10"}},
		{"bill overdue", ev("bill.overdue", `{"bill_id":5,"period_start":"2026-02-01","period_end":"2026-03-01","currency":"GBP","total":"42","due_date":"2026-03-15"}`),
			"Your bill for 2026-02-01 to 2026-03-01 of GBP 42.00 was due on 2026-03-15 and is not paid yet. You can pay it in the portal.",
			map[string]any{"total": "42.00"}},
		{"payment", ev("payment.succeeded", `{"payment_id":9,"amount":"12.5","currency":"GBP","payee":"Meterflow Energy"}`),
			"Your payment of GBP 12.50 to Meterflow Energy went through.", map[string]any{"amount": "12.50"}},
		{"payment in yen", ev("payment.failed", `{"payment_id":9,"amount":"1200","currency":"JPY","payee":"Meterflow Energy"}`),
			"Your payment of JPY 1200 to Meterflow Energy did not go through.", map[string]any{"amount": "1200"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok, err := FromEvent(tc.event, o)
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, tc.body, d.Body)
			for k, v := range tc.data {
				assert.Equal(t, v, d.Data[k], k)
			}
		})
	}

	d, ok := ProjectedOver(Projection{Owner: o, Scope: "account", Budget: decimal.NewFromInt(100),
		Projected: decimal.RequireFromString("130.5"), Currency: "GBP", CycleStart: "2026-03-01"})
	require.True(t, ok)
	assert.Equal(t, "At this rate this cycle will cost about GBP 130.50, over your GBP 100.00 budget.", d.Body)
	assert.Equal(t, "100.00", d.Data["budget"])
	assert.Equal(t, "130.50", d.Data["projected"])

	d, ok = BillUpcoming(DueBill{Owner: o, BillID: 42, DueDate: time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC), Total: "12.5", Currency: "GBP"},
		time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC), 3)
	require.True(t, ok)
	assert.Equal(t, "Your bill of GBP 12.50 is due tomorrow (2026-03-15).", d.Body)
	assert.Equal(t, "12.50", d.Data["total"])
}
