package alert

import (
	"fmt"
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/outbox"
	"github.com/meterflow/meterflow/internal/tariff"
)

// The rules below are pure: they take the data a condition depends on and
// return the alert (or alarm condition) it calls for, keyed by condition
// and period. The evaluator fetches the data and records what they return.

// Outbox event kinds the rules read (written by billing and payments).
const (
	eventBillIssued       = "bill.issued"
	eventBillOverdue      = "bill.overdue"
	eventBudgetCrossed    = "budget.crossed"
	eventPaymentOTPSent   = "payment.otp_sent"
	eventPaymentSucceeded = "payment.succeeded"
	eventPaymentFailed    = "payment.failed"
	eventPaymentExpired   = "payment.expired"
)

// Owner is who an account belongs to, and its local time.
type Owner struct {
	AccountID   int64
	HouseholdID int64
	TimeZone    string
}

type budgetPayload struct {
	Scope      string `json:"scope"`
	Percent    int    `json:"percent"`
	Budget     string `json:"budget"`
	Accrued    string `json:"accrued"`
	Currency   string `json:"currency"`
	CycleStart string `json:"cycle_start"`
	CycleEnd   string `json:"cycle_end"`
}

type billPayload struct {
	BillID      int64  `json:"bill_id"`
	PeriodStart string `json:"period_start"`
	PeriodEnd   string `json:"period_end"`
	Currency    string `json:"currency"`
	Total       string `json:"total"`
	DueDate     string `json:"due_date"`
}

type paymentPayload struct {
	PaymentID     int64  `json:"payment_id"`
	BillID        int64  `json:"bill_id"`
	Amount        string `json:"amount"`
	Currency      string `json:"currency"`
	Payee         string `json:"payee"`
	FailureReason string `json:"failure_reason"`
}

// money writes an amount read from an event or a row with the currency's
// minor units ("120.50"), however its producer wrote it; text that is not a
// decimal is left as it is.
func money(amount, currency string) string {
	d, err := decimal.NewFromString(amount)
	if err != nil {
		return amount
	}
	return tariff.FormatMoney(d, currency)
}

// FromEvent decides the alert an outbox event calls for. ok is false for
// kinds that alert nobody (accrued.above, balance.below: auto-pay acts on
// them, and the payment it makes alerts in turn). A payload that cannot be
// read is an error the caller should not retry.
func FromEvent(ev outbox.Event, o Owner) (d Decision, ok bool, err error) {
	d = Decision{HouseholdID: o.HouseholdID, AccountID: o.AccountID}
	switch ev.Kind {
	case eventBudgetCrossed:
		var p budgetPayload
		if err := ev.Decode(&p); err != nil {
			return d, false, err
		}
		if p.Scope == "" || p.Percent <= 0 || p.CycleStart == "" {
			return d, false, fmt.Errorf("event %s: budget payload lacks scope, percent or cycle", ev.Key)
		}
		p.Budget, p.Accrued = money(p.Budget, p.Currency), money(p.Accrued, p.Currency)
		what := "Your spending"
		if p.Scope != "account" {
			what = "Your " + p.Scope + " spending"
		}
		d.Kind, d.Key = KindBudget, fmt.Sprintf("%s:%d:%s:%d:%s", KindBudget, o.AccountID, p.Scope, p.Percent, p.CycleStart)
		d.Title = fmt.Sprintf("%d%% of your %s budget", p.Percent, scopeName(p.Scope))
		d.Body = fmt.Sprintf("%s this cycle is %s %s, %d%% of your %s %s budget.", what, p.Currency, p.Accrued, p.Percent, p.Currency, p.Budget)
		d.Data = map[string]any{"scope": p.Scope, "percent": p.Percent, "budget": p.Budget, "accrued": p.Accrued,
			"currency": p.Currency, "cycle_start": p.CycleStart, "cycle_end": p.CycleEnd}
	case eventBillIssued:
		var p billPayload
		if err := ev.Decode(&p); err != nil {
			return d, false, err
		}
		if p.BillID <= 0 {
			return d, false, fmt.Errorf("event %s: bill payload lacks bill_id", ev.Key)
		}
		p.Total = money(p.Total, p.Currency)
		d.Kind, d.Key = KindBillIssued, fmt.Sprintf("%s:%d:%d", KindBillIssued, o.AccountID, p.BillID)
		d.Title = "Your bill is ready"
		d.Body = fmt.Sprintf("Your bill for %s to %s is %s %s, due %s.", p.PeriodStart, p.PeriodEnd, p.Currency, p.Total, p.DueDate)
		d.Data = map[string]any{"bill_id": p.BillID, "total": p.Total, "currency": p.Currency, "due_date": p.DueDate}
	case eventBillOverdue:
		var p billPayload
		if err := ev.Decode(&p); err != nil {
			return d, false, err
		}
		if p.BillID <= 0 {
			return d, false, fmt.Errorf("event %s: bill payload lacks bill_id", ev.Key)
		}
		p.Total = money(p.Total, p.Currency)
		d.Kind, d.Key = KindBillOverdue, fmt.Sprintf("%s:%d:%d", KindBillOverdue, o.AccountID, p.BillID)
		d.Title = "Your bill is overdue"
		d.Body = fmt.Sprintf("Your bill for %s to %s of %s %s was due on %s and is not paid yet. You can pay it in the portal.",
			p.PeriodStart, p.PeriodEnd, p.Currency, p.Total, p.DueDate)
		d.Data = map[string]any{"bill_id": p.BillID, "total": p.Total, "currency": p.Currency, "due_date": p.DueDate}
	case eventPaymentOTPSent, eventPaymentSucceeded, eventPaymentFailed, eventPaymentExpired:
		var p paymentPayload
		if err := ev.Decode(&p); err != nil {
			return d, false, err
		}
		if p.PaymentID <= 0 {
			return d, false, fmt.Errorf("event %s: payment payload lacks payment_id", ev.Key)
		}
		p.Amount = money(p.Amount, p.Currency)
		amount := p.Currency + " " + p.Amount
		switch ev.Kind {
		case eventPaymentOTPSent:
			d.Kind, d.Title = KindPaymentConfirm, "A payment needs your confirmation"
			d.Body = fmt.Sprintf("Confirm the payment of %s to %s with the code we sent you.", amount, p.Payee)
		case eventPaymentSucceeded:
			d.Kind, d.Title = KindPaymentSucceeded, "Payment received"
			d.Body = fmt.Sprintf("Your payment of %s to %s went through.", amount, p.Payee)
		case eventPaymentFailed:
			d.Kind, d.Title = KindPaymentFailed, "Payment failed"
			d.Body = fmt.Sprintf("Your payment of %s to %s did not go through.", amount, p.Payee)
		case eventPaymentExpired:
			d.Kind, d.Title = KindPaymentFailed, "Payment not confirmed"
			d.Body = fmt.Sprintf("The payment of %s to %s was not confirmed in time and was not taken.", amount, p.Payee)
		}
		d.Key = fmt.Sprintf("%s:%d:%d", d.Kind, o.AccountID, p.PaymentID)
		d.Data = map[string]any{"payment_id": p.PaymentID, "amount": p.Amount, "currency": p.Currency, "event": ev.Kind}
		if p.BillID > 0 {
			d.Data["bill_id"] = p.BillID
		}
	default:
		return d, false, nil
	}
	return d, true, nil
}

func scopeName(scope string) string {
	if scope == "account" {
		return "monthly"
	}
	return scope
}

// Projection is a budget and the cycle's projected cost it applies to
// (all utilities for scope "account").
type Projection struct {
	Owner
	Scope      string
	Budget     decimal.Decimal
	Projected  decimal.Decimal
	Currency   string
	CycleStart string
}

// ProjectedOver fires once per budget and cycle when the projection at the
// end of the cycle is above the budget.
func ProjectedOver(p Projection) (Decision, bool) {
	if !p.Budget.IsPositive() || !p.Projected.GreaterThan(p.Budget) {
		return Decision{}, false
	}
	budget, projected := tariff.FormatMoney(p.Budget, p.Currency), tariff.FormatMoney(p.Projected, p.Currency)
	return Decision{
		Key: fmt.Sprintf("%s:%d:%s:%s", KindProjectedOver, p.AccountID, p.Scope, p.CycleStart), Kind: KindProjectedOver,
		HouseholdID: p.HouseholdID, AccountID: p.AccountID,
		Title: fmt.Sprintf("On course to exceed your %s budget", scopeName(p.Scope)),
		Body: fmt.Sprintf("At this rate this cycle will cost about %s %s, over your %s %s budget.",
			p.Currency, projected, p.Currency, budget),
		Data: map[string]any{"scope": p.Scope, "budget": budget, "projected": projected,
			"currency": p.Currency, "cycle_start": p.CycleStart},
	}, true
}

// DueBill is an unpaid bill and its due date (a local day).
type DueBill struct {
	Owner
	BillID   int64
	DueDate  time.Time // midnight UTC of the local due day
	Total    string
	Currency string
}

// BillUpcoming fires once per bill during the days days before its due
// date (today is the account's local day, as midnight UTC).
func BillUpcoming(b DueBill, today time.Time, days int) (Decision, bool) {
	if today.After(b.DueDate) || today.Before(b.DueDate.AddDate(0, 0, -days)) {
		return Decision{}, false
	}
	total := money(b.Total, b.Currency)
	n := int(b.DueDate.Sub(today).Hours() / 24)
	when := fmt.Sprintf("in %d days", n)
	switch n {
	case 0:
		when = "today"
	case 1:
		when = "tomorrow"
	}
	return Decision{
		Key: fmt.Sprintf("%s:%d:%d", KindBillUpcoming, b.AccountID, b.BillID), Kind: KindBillUpcoming,
		HouseholdID: b.HouseholdID, AccountID: b.AccountID,
		Title: "A bill is due " + when,
		Body:  fmt.Sprintf("Your bill of %s %s is due %s (%s).", b.Currency, total, when, b.DueDate.Format(time.DateOnly)),
		Data:  map[string]any{"bill_id": b.BillID, "due_date": b.DueDate.Format(time.DateOnly), "total": total, "currency": b.Currency},
	}, true
}

// Meter is a household's meter as the usage rules see it.
type Meter struct {
	Owner
	ID              string
	Utility         string
	IntervalSeconds int
	// LastSeen is when its ingest state was last saved (its last reading);
	// zero when it has never reported.
	LastSeen time.Time
}

// Usage is a meter's consumption (thousandths of its unit) from the start of
// today to now and over the same stretch of the same weekday in past weeks.
type Usage struct {
	Meter Meter
	Day   string // today, local
	Today int64
	// Baseline holds one sum per past week; a week without data is
	// reported in Present as false.
	Baseline []int64
	Present  []bool
}

// AbnormalConfig is the abnormal-usage threshold: today is abnormal when it
// is at least Factor times the baseline median and above it by at least
// MinExcess (thousandths of the unit, per utility), with at least MinWeeks
// weeks of baseline.
type AbnormalConfig struct {
	Factor    decimal.Decimal
	MinExcess map[string]int64
	MinWeeks  int
}

// Median is the median of xs (the mean of the middle two for an even
// count), rounded down.
func Median(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Abnormal fires once per meter and local day when today's usage so far is
// well above the household's own baseline: the median of the same part of
// the same weekday over the past weeks.
func Abnormal(u Usage, c AbnormalConfig) (Decision, bool) {
	var base []int64
	for i, v := range u.Baseline {
		if i < len(u.Present) && u.Present[i] {
			base = append(base, v)
		}
	}
	if len(base) < max(c.MinWeeks, 1) {
		return Decision{}, false
	}
	med := Median(base)
	limit := decimal.NewFromInt(med).Mul(c.Factor)
	if decimal.NewFromInt(u.Today).LessThan(limit) || u.Today-med < c.MinExcess[u.Meter.Utility] {
		return Decision{}, false
	}
	return Decision{
		Key: fmt.Sprintf("%s:%d:%s:%s", KindAbnormalUsage, u.Meter.AccountID, u.Meter.ID, u.Day), Kind: KindAbnormalUsage,
		HouseholdID: u.Meter.HouseholdID, AccountID: u.Meter.AccountID,
		Title: fmt.Sprintf("Unusually high %s use today", u.Meter.Utility),
		Body: fmt.Sprintf("Your %s use so far today is %s %s, against a usual %s %s by this time on a %s.",
			u.Meter.Utility, thousandths(u.Today), unit(u.Meter.Utility), thousandths(med), unit(u.Meter.Utility), weekday(u.Day)),
		Data: map[string]any{"meter_id": u.Meter.ID, "utility": u.Meter.Utility, "day": u.Day, "today": u.Today, "baseline_median": med},
	}, true
}

// Night is a meter's intervals over one local night window.
type Night struct {
	Meter Meter
	Day   string // the local day the night ends on
	// Starts are the interval starts the window should have; Quantities
	// the stored intervals by start (Unix seconds, so that the zone a time
	// was read in does not matter).
	Starts     []time.Time
	Quantities map[int64]int64
}

// Leak fires once per water or gas meter and night when every interval of
// the night window has consumption: flow that never stops through the
// small hours. A missing interval does not count as flow.
func Leak(n Night) (Decision, bool) {
	if n.Meter.Utility != "water" && n.Meter.Utility != "gas" || len(n.Starts) == 0 {
		return Decision{}, false
	}
	var total int64
	for _, s := range n.Starts {
		q, ok := n.Quantities[s.Unix()]
		if !ok || q <= 0 {
			return Decision{}, false
		}
		total += q
	}
	return Decision{
		Key: fmt.Sprintf("%s:%d:%s:%s", KindLeak, n.Meter.AccountID, n.Meter.ID, n.Day), Kind: KindLeak,
		HouseholdID: n.Meter.HouseholdID, AccountID: n.Meter.AccountID,
		Title: fmt.Sprintf("Possible %s leak", n.Meter.Utility),
		Body: fmt.Sprintf("Your %s meter recorded flow all night before %s (%s %s in total). Check for a running tap, toilet or leak.",
			n.Meter.Utility, n.Day, thousandths(total), unit(n.Meter.Utility)),
		Data: map[string]any{"meter_id": n.Meter.ID, "utility": n.Meter.Utility, "day": n.Day, "night_total": total, "intervals": len(n.Starts)},
	}, true
}

// Silent fires once per silence of a meter (keyed by its last reading) when
// it has not reported for longer than after.
func Silent(m Meter, now time.Time, after time.Duration) (Decision, bool) {
	if m.LastSeen.IsZero() || now.Sub(m.LastSeen) <= after {
		return Decision{}, false
	}
	hours := int(now.Sub(m.LastSeen).Hours())
	return Decision{
		Key: fmt.Sprintf("%s:%d:%s:%d", KindMeterSilent, m.AccountID, m.ID, m.LastSeen.Unix()), Kind: KindMeterSilent,
		HouseholdID: m.HouseholdID, AccountID: m.AccountID,
		Title: fmt.Sprintf("Your %s meter has gone quiet", m.Utility),
		Body:  fmt.Sprintf("We have not heard from your %s meter %s for %d hours.", m.Utility, m.ID, hours),
		Data:  map[string]any{"meter_id": m.ID, "utility": m.Utility, "last_seen": m.LastSeen},
	}, true
}

// --- time windows ---

// DayWindows returns the local day of now in loc, and the stretch from the
// start of that day to now, then the same stretch (same local wall-clock
// times) of the same weekday in each of the past weeks.
func DayWindows(now time.Time, loc *time.Location, weeks int) (day string, today [2]time.Time, past [][2]time.Time) {
	l := now.In(loc)
	y, m, d := l.Date()
	today = [2]time.Time{time.Date(y, m, d, 0, 0, 0, 0, loc), now}
	for w := 1; w <= weeks; w++ {
		past = append(past, [2]time.Time{
			time.Date(y, m, d-7*w, 0, 0, 0, 0, loc),
			time.Date(y, m, d-7*w, l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), loc),
		})
	}
	return l.Format(time.DateOnly), today, past
}

// NightWindow returns the most recent local night window [from:00, to:00)
// that has ended by now, the local day it ends on, and the interval starts
// it holds on a step grid. On a daylight-saving night the window is an hour
// shorter or longer, as the wall clock is.
func NightWindow(now time.Time, loc *time.Location, fromHour, toHour int, step time.Duration) (day string, starts []time.Time) {
	l := now.In(loc)
	y, m, d := l.Date()
	end := time.Date(y, m, d, toHour, 0, 0, 0, loc)
	if now.Before(end) {
		d--
		end = time.Date(y, m, d, toHour, 0, 0, 0, loc)
	}
	start := time.Date(y, m, d, fromHour, 0, 0, 0, loc)
	for t := start; t.Before(end); t = t.Add(step) {
		starts = append(starts, t)
	}
	return end.In(loc).Format(time.DateOnly), starts
}

// --- operator alarm rules ---

// OfflineMeters returns a meter_offline condition for every meter that
// reported once and has been silent for longer than after.
func OfflineMeters(ms []Meter, now time.Time, after time.Duration) []Condition {
	var out []Condition
	for _, m := range ms {
		if !m.LastSeen.IsZero() && now.Sub(m.LastSeen) > after {
			out = append(out, Condition{Kind: AlarmMeterOffline, Subject: m.ID,
				Message: fmt.Sprintf("meter %s (%s) last reported %s, %s ago", m.ID, m.Utility,
					m.LastSeen.UTC().Format(time.RFC3339), now.Sub(m.LastSeen).Truncate(time.Minute))})
		}
	}
	return out
}

// VEEDelta is how many VEE exceptions a meter raised over a span.
type VEEDelta struct {
	MeterID string
	Delta   int64
	Span    time.Duration
}

// VEERate returns a vee_rate condition for every meter whose exceptions per
// hour over its span are above perHour.
func VEERate(ds []VEEDelta, perHour float64) []Condition {
	var out []Condition
	for _, d := range ds {
		if d.Span <= 0 {
			continue
		}
		rate := float64(d.Delta) / d.Span.Hours()
		if rate > perHour {
			out = append(out, Condition{Kind: AlarmVEERate, Subject: d.MeterID,
				Message: fmt.Sprintf("meter %s: %d VEE exceptions in %s (%.1f an hour, above %.1f)", d.MeterID, d.Delta, d.Span.Truncate(time.Second), rate, perHour)})
		}
	}
	return out
}

// IngestLag returns an ingest_lag condition when more than max journal
// records wait for the stores.
func IngestLag(lag, maxLag uint64) []Condition {
	if lag <= maxLag {
		return nil
	}
	return []Condition{{Kind: AlarmIngestLag, Subject: "journal",
		Message: fmt.Sprintf("%d journal records wait for the stores (alarm above %d)", lag, maxLag)}}
}

// PaymentFailures returns a payment_failure_rate condition when at least
// minCount payments settled in the window and more than maxRatio of them
// failed.
func PaymentFailures(succeeded, failed, minCount int, maxRatio float64, window time.Duration) []Condition {
	n := succeeded + failed
	if n == 0 || n < minCount {
		return nil
	}
	ratio := float64(failed) / float64(n)
	if ratio <= maxRatio {
		return nil
	}
	return []Condition{{Kind: AlarmPaymentFailure, Subject: "",
		Message: fmt.Sprintf("%d of %d payments failed in the last %s (%.0f%%, alarm above %.0f%%)", failed, n, window, ratio*100, maxRatio*100)}}
}

// --- formatting ---

func thousandths(v int64) string {
	return decimal.New(v, -3).String()
}

func unit(utility string) string {
	if utility == "electricity" {
		return "kWh"
	}
	return "m³"
}

func weekday(day string) string {
	t, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return "day like today"
	}
	return t.Weekday().String()
}
