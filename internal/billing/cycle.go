package billing

import (
	"time"

	"github.com/meterflow/meterflow/internal/tariff"
)

// Cycle is a monthly billing cycle: the local days [Start, End), from the
// anchor day of one month to the anchor day of the next.
type Cycle struct {
	Start, End tariff.Date
}

// CycleAt returns the cycle containing instant t in loc for an account whose
// cycles start on local day anchor (1..28) of each month.
func CycleAt(t time.Time, loc *time.Location, anchor int) Cycle {
	d := tariff.DateOf(t.In(loc))
	start := tariff.Date{Year: d.Year, Month: d.Month, Day: anchor}
	if d.Day < anchor {
		start = addMonths(start, -1)
	}
	return Cycle{Start: start, End: addMonths(start, 1)}
}

// Next is the cycle after c.
func (c Cycle) Next() Cycle { return Cycle{Start: c.End, End: addMonths(c.End, 1)} }

// Prev is the cycle before c.
func (c Cycle) Prev() Cycle { return Cycle{Start: addMonths(c.Start, -1), End: c.Start} }

// Period is c as instants in loc: [local midnight of Start, of End).
func (c Cycle) Period(loc *time.Location) tariff.Period {
	return span(c.Start, c.End, loc)
}

// Days is the number of local days in c.
func (c Cycle) Days() int { return c.Start.DaysUntil(c.End) }

func span(from, to tariff.Date, loc *time.Location) tariff.Period {
	return tariff.Period{Start: from.Start(loc), End: to.Start(loc)}
}

// addMonths moves d by n months; anchor days are at most 28, so the day
// never overflows.
func addMonths(d tariff.Date, n int) tariff.Date {
	m := int(d.Month) - 1 + n
	y := d.Year + floorDiv(m, 12)
	m = m - floorDiv(m, 12)*12
	return tariff.Date{Year: y, Month: time.Month(m + 1), Day: d.Day}
}

func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// duePeriods returns the periods of acc to bill as of asOf, oldest first:
// from the end of the last billed period (or from BillingFrom, or else the
// most recent cycle that ended) through the last cycle that has ended, at
// most max of them. A period is a whole cycle except the first after
// BillingFrom, which starts on that day.
func duePeriods(acc Account, loc *time.Location, asOf time.Time, max int) []period {
	current := CycleAt(asOf, loc, acc.AnchorDay)
	var from tariff.Date
	switch {
	case !acc.LastBilledEnd.IsZero():
		from = acc.LastBilledEnd
	case !acc.BillingFrom.IsZero():
		from = acc.BillingFrom
	default:
		from = current.Prev().Start
	}
	var out []period
	for len(out) < max && from.Before(current.Start) {
		c := CycleAt(from.Start(loc), loc, acc.AnchorDay)
		if !c.End.Start(loc).After(asOf) && !from.Before(c.Start) {
			out = append(out, period{From: from, To: c.End, Cycle: c})
		} else {
			break
		}
		from = c.End
	}
	return out
}

// period is the local days [From, To) inside Cycle that one bill covers.
type period struct {
	From, To tariff.Date
	Cycle    Cycle
}
