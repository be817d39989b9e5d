package billing

import (
	"fmt"
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/tariff"
)

// usagePoint is consumption merged across a service point's meters: one
// interval (raw) or one local day (daily, priced as an hour-long interval at
// the day's start, which is all a tariff without time of use or demand
// looks at).
type usagePoint struct {
	start       time.Time
	dur         time.Duration
	qty         int64
	est         bool
	first, last time.Time
}

// spUsage is a service point's usage over a span.
type spUsage struct {
	points    []usagePoint // in start order
	registers []Register   // one per meter
	expected  int          // intervals expected on the service point's grid
	present   int
	estimated int
}

func (u spUsage) missing() int { return max(0, u.expected-u.present) }

// queryMode is how to read meter m for a service point priced in mode:
// a meter read once a day already has one row a day, which is cheaper to
// read raw than to group.
func queryMode(mode UsageMode, m Meter) UsageMode {
	if mode == Daily && m.Interval >= 24*time.Hour {
		return Raw
	}
	return mode
}

// expectedIntervals is how many intervals of length grid fit in [from, to);
// a daily grid counts local days.
func expectedIntervals(grid time.Duration, from, to time.Time, loc *time.Location) int {
	if grid >= 24*time.Hour {
		return tariff.DateOf(from.In(loc)).DaysUntil(tariff.DateOf(to.In(loc)))
	}
	if grid <= 0 {
		grid = 15 * time.Minute
	}
	return int(to.Sub(from) / grid)
}

// buildUsage merges the rows of each meter (rows[i] answers meters[i]) over
// [from, to).
func buildUsage(sp ServicePoint, meters []Meter, rows [][]UsageRow, mode UsageMode, from, to time.Time, loc *time.Location) spUsage {
	ch := meter.PrimaryRegister(sp.Utility)
	grid := 15 * time.Minute
	if len(meters) > 0 && meters[0].Interval > 0 {
		grid = meters[0].Interval
	}
	u := spUsage{expected: expectedIntervals(grid, from, to, loc), registers: make([]Register, 0, len(meters))}
	n := 0
	for i := range meters {
		n += len(rows[i])
	}
	pts := make([]usagePoint, 0, n)
	for i, m := range meters {
		r := Register{MeterID: m.ID, Channel: ch, ServicePointID: sp.ID, Start: from, End: to,
			Expected: expectedIntervals(m.Interval, from, to, loc)}
		for _, row := range rows[i] {
			r.Quantity += row.Quantity
			r.Intervals += row.Intervals
			r.Estimated += row.Estimated
			if r.FirstInterval.IsZero() || row.First.Before(r.FirstInterval) {
				r.FirstInterval = row.First
			}
			if row.Last.After(r.LastInterval) {
				r.LastInterval = row.Last
			}
			p := usagePoint{start: row.Start, dur: m.Interval, qty: int64(row.Quantity), est: row.Estimated > 0, first: row.First, last: row.Last}
			switch mode {
			case Total:
				// The whole span as one point: only priced when one tariff
				// version covers the span (billMode).
				p.start, p.dur = from, time.Hour
			case Daily:
				d := row.Day
				if d.IsZero() { // a raw row of a meter read daily
					d = tariff.DateOf(row.Start.In(loc))
				}
				p.start, p.dur = d.Start(loc), time.Hour
			}
			pts = append(pts, p)
		}
		u.registers = append(u.registers, r)
		u.present += r.Intervals
		u.estimated += r.Estimated
	}
	byStart := func(a, b usagePoint) int { return a.start.Compare(b.start) }
	if !slices.IsSortedFunc(pts, byStart) {
		slices.SortStableFunc(pts, byStart)
	}
	// Merge points that start together (two meters of one service point, or
	// two days' rows of a meter swap): the sum is what the point consumed.
	u.points = pts[:0]
	for _, p := range pts {
		if n := len(u.points); n > 0 && u.points[n-1].start.Equal(p.start) {
			q := &u.points[n-1]
			q.qty += p.qty
			q.est = q.est || p.est
			q.first = minTime(q.first, p.first)
			q.last = maxTime(q.last, p.last)
			continue
		}
		u.points = append(u.points, p)
	}
	return u
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// segment is the part of a period a service point spends on one tariff.
type segment struct {
	from, to tariff.Date
	code     string
}

// segments splits [from, to) at the service point's tariff assignments;
// adjacent parts on the same tariff stay one part. Days before the first
// assignment have no tariff (code "").
func (sp ServicePoint) segments(from, to tariff.Date) []segment {
	if len(sp.Assignments) == 0 {
		return []segment{{from, to, sp.TariffCode}}
	}
	var out []segment
	cur, code := from, ""
	for _, a := range sp.Assignments {
		if !a.EffectiveFrom.After(cur) {
			code = a.TariffCode
			continue
		}
		if !a.EffectiveFrom.Before(to) {
			break
		}
		if a.TariffCode != code {
			out = append(out, segment{cur, a.EffectiveFrom, code})
			cur, code = a.EffectiveFrom, a.TariffCode
		}
	}
	return append(out, segment{cur, to, code})
}

// usageMode is the detail a service point's tariffs need over [from, to):
// Raw when a version in force has time-of-use bands or a demand charge,
// Daily otherwise.
func usageMode(sp ServicePoint, from, to tariff.Date, ts tariffSet, revs map[string]int) UsageMode {
	for _, seg := range sp.segments(from, to) {
		st, ok := ts.get(seg.code, revs[seg.code])
		if !ok {
			continue
		}
		vs := st.Versions
		for i, v := range vs {
			if !v.EffectiveFrom.Before(seg.to) {
				break
			}
			if i+1 < len(vs) && !vs[i+1].EffectiveFrom.After(seg.from) {
				continue
			}
			if v.TOU != nil || v.Demand != nil {
				return Raw
			}
		}
	}
	return Daily
}

// billMode is the detail a bill needs of a service point over [from, to):
// Total when one version of one tariff is in force over the whole span and
// it has neither time-of-use bands nor a demand charge, since standing
// charges, flat and tiered rates (per-day tiers scale their thresholds by
// the days), levies, taxes and minimum charges then depend only on the
// span's total; usageMode otherwise. A total is one row per meter where a
// day's detail is 31.
func billMode(sp ServicePoint, from, to tariff.Date, ts tariffSet, revs map[string]int) UsageMode {
	mode := usageMode(sp, from, to, ts, revs)
	segs := sp.segments(from, to)
	if mode != Daily || len(segs) != 1 || segs[0].code == "" {
		return mode
	}
	st, ok := ts.get(segs[0].code, revs[segs[0].code])
	if !ok {
		return mode
	}
	in := 0
	for i, v := range st.Versions {
		if v.EffectiveFrom.Before(to) && (i+1 == len(st.Versions) || st.Versions[i+1].EffectiveFrom.After(from)) {
			in++
		}
	}
	if in != 1 || st.Versions[0].EffectiveFrom.After(from) {
		return mode
	}
	return Total
}

// calorificValue is the mean daily calorific value over [from, to), days
// missing from cvs counting at def, rounded half up to tariff.RateDecimals.
func calorificValue(cvs map[tariff.Date]decimal.Decimal, def decimal.Decimal, from, to tariff.Date) decimal.Decimal {
	sum := decimal.Zero
	n := 0
	for d := from; d.Before(to); d = d.AddDays(1) {
		v, ok := cvs[d]
		if !ok {
			v = def
		}
		sum = sum.Add(v)
		n++
	}
	if n == 0 {
		return def
	}
	return sum.DivRound(decimal.NewFromInt(int64(n)), tariff.RateDecimals)
}

// pricing is what pricing a service point needs besides its usage.
type pricing struct {
	acc     Account
	loc     *time.Location
	tariffs tariffSet
	// revs pins tariff codes to revisions (repricing an earlier bill); nil
	// uses the latest revision of each code.
	revs map[string]int
	cvs  map[tariff.Date]decimal.Decimal
	cv   decimal.Decimal // default calorific value
	// cvMeans, if not nil, remembers calorificValue by span: the accounts
	// of a batch mostly share their periods. Used by one goroutine.
	cvMeans map[[2]tariff.Date]decimal.Decimal
}

// calorificValue is calorificValue over [from, to) for pc's values.
func (pc pricing) calorificValue(from, to tariff.Date) decimal.Decimal {
	if pc.cvMeans == nil {
		return calorificValue(pc.cvs, pc.cv, from, to)
	}
	k := [2]tariff.Date{from, to}
	v, ok := pc.cvMeans[k]
	if !ok {
		v = calorificValue(pc.cvs, pc.cv, from, to)
		pc.cvMeans[k] = v
	}
	return v
}

// usageKinds are the line kinds that depend on metered usage: a missing
// interval makes them estimates.
var usageKinds = map[tariff.LineKind]bool{
	tariff.KindEnergy: true, tariff.KindTier: true, tariff.KindTOU: true,
	tariff.KindDemand: true, tariff.KindMinimum: true, tariff.KindTax: true,
}

// priceServicePoint prices the usage of sp over p: each part of the period
// on one tariff is priced by tariff.Accrue against the whole cycle, so a
// part (a move-in, a tariff switch) gets its pro-rata share of per-period
// thresholds, per-bill levies and minimum charges, and a whole cycle is
// priced exactly as tariff.Price would.
func (pc pricing) priceServicePoint(sp ServicePoint, p period, u spUsage) ([]Line, error) {
	var lines []Line
	ch := meter.PrimaryRegister(sp.Utility)
	meterIDs := make([]string, 0, len(u.registers))
	for _, r := range u.registers {
		meterIDs = append(meterIDs, r.MeterID)
	}
	missing := u.missing() > 0
	cycle := p.Cycle.Period(pc.loc)
	for _, seg := range sp.segments(p.From, p.To) {
		if seg.code == "" {
			var used int64
			for _, pt := range u.points {
				if inSpan(pt.start, seg.from, seg.to, pc.loc) {
					used += pt.qty
				}
			}
			if used == 0 {
				continue // no tariff and nothing used: nothing to bill
			}
			return nil, fmt.Errorf("service point %d (%s) has usage but no tariff from %s to %s", sp.ID, sp.Utility, seg.from, seg.to.AddDays(-1))
		}
		st, ok := pc.tariffs.get(seg.code, pc.revs[seg.code])
		if !ok {
			return nil, fmt.Errorf("service point %d: tariff %s (revision %d) is not loaded", sp.ID, seg.code, pc.revs[seg.code])
		}
		if st.Utility != sp.Utility {
			return nil, fmt.Errorf("service point %d is %s but tariff %s is for %s", sp.ID, sp.Utility, st.Code, st.Utility)
		}
		if st.Currency != pc.acc.Currency {
			return nil, fmt.Errorf("account %s bills in %s but tariff %s is in %s", pc.acc.Number, pc.acc.Currency, st.Code, st.Currency)
		}
		sp0 := span(seg.from, seg.to, pc.loc)
		in := tariff.Usage{Period: sp0, Location: pc.loc, Intervals: make([]tariff.Interval, 0, len(u.points))}
		var qty int64
		var first, last time.Time
		for _, pt := range u.points {
			if pt.start.Before(sp0.Start) || !pt.start.Before(sp0.End) {
				continue
			}
			if pt.dur > time.Hour {
				return nil, fmt.Errorf("service point %d: tariff %s prices by time of use or demand, which needs intervals of at most an hour; its meters report every %s", sp.ID, st.Code, pt.dur)
			}
			in.Intervals = append(in.Intervals, tariff.Interval{Start: pt.start, Duration: pt.dur, Quantity: meter.Value(pt.qty), Estimated: pt.est})
			qty += pt.qty
			first, last = minTime(first, pt.first), maxTime(last, pt.last)
		}
		if sp.Utility == meter.Gas && st.Unit == tariff.KWh {
			in.CalorificValue = pc.calorificValue(seg.from, seg.to)
		}
		c, err := st.Accrue(in, cycle)
		if err != nil {
			return nil, fmt.Errorf("service point %d, tariff %s revision %d: %w", sp.ID, st.Code, st.Revision, err)
		}
		if lines == nil {
			lines = make([]Line, 0, len(c.Lines)+2)
		}
		for _, l := range c.Lines {
			lines = append(lines, Line{
				ServicePointID:  sp.ID,
				Utility:         sp.Utility,
				Kind:            l.Kind,
				Name:            l.Name,
				Description:     l.Description,
				Quantity:        l.Quantity,
				Unit:            l.Unit,
				UnitPrice:       l.UnitPrice,
				Amount:          l.Amount,
				Estimated:       l.Estimated || (missing && usageKinds[l.Kind]) || (missing && l.Kind == tariff.KindLevy && l.Unit != "bill"),
				TariffCode:      st.Code,
				TariffRevision:  st.Revision,
				TariffVersion:   l.TariffVersion,
				Meters:          meterIDs,
				Channel:         ch,
				FirstInterval:   first,
				LastInterval:    last,
				MeteredQuantity: meter.Value(qty),
			})
		}
	}
	return lines, nil
}

func inSpan(t time.Time, from, to tariff.Date, loc *time.Location) bool {
	return !t.Before(from.Start(loc)) && t.Before(to.Start(loc))
}

// sums adds up lines into the untaxed subtotal and the tax.
func sums(lines []Line) (sub, tax decimal.Decimal) {
	sub, tax = decimal.Zero, decimal.Zero
	for _, l := range lines {
		if l.Kind == tariff.KindTax || l.Kind == KindAdjustmentTax {
			tax = tax.Add(l.Amount)
		} else {
			sub = sub.Add(l.Amount)
		}
	}
	return sub, tax
}
