package tariff

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/meter"
)

// MaxPeriodDays bounds the billing periods and cycles Price and Accrue take.
const MaxPeriodDays = 366

// MaxIntervalQuantity bounds one interval's consumption (a billion units),
// far above any meter's, so that sums over a period cannot overflow.
const MaxIntervalQuantity meter.Value = 1e12

// Period is a run of whole local days: Start is the first instant of the
// first day and End the first instant of the day after the last, both in
// the account's time zone (Date.Start gives them).
type Period struct {
	Start, End time.Time
}

// Interval is the consumption metered over [Start, Start+Duration), in
// thousandths of the meter's canonical unit (Wh for electricity, litres for
// water and gas).
type Interval struct {
	Start time.Time
	// Duration is 15 minutes, 30 minutes or one hour.
	Duration time.Duration
	Quantity meter.Value
	// Estimated marks a value that fills a gap; the lines it reaches and the
	// whole Charge are flagged.
	Estimated bool
}

// Usage is what is priced: the intervals metered in a period for one
// account. Missing intervals count as no consumption; the ingest pipeline
// estimates gaps before billing.
type Usage struct {
	Period Period
	// Location is the account's time zone. Days, tariff version changes and
	// time-of-use bands are local to it.
	Location *time.Location
	// Intervals lie inside Period and do not overlap. They need not be
	// sorted, though sorted input is faster.
	Intervals []Interval
	// CalorificValue (MJ/m³) converts gas volume to energy for a gas tariff
	// priced per kWh; it must then be positive. Other tariffs ignore it.
	CalorificValue decimal.Decimal
}

// LineKind classifies the lines of a Charge.
type LineKind string

const (
	KindStanding LineKind = "standing" // days × charge per day
	KindEnergy   LineKind = "energy"   // units × flat rate
	KindTier     LineKind = "tier"     // units in one block × its rate
	KindTOU      LineKind = "tou"      // units in one time-of-use band × its rate
	KindDemand   LineKind = "demand"   // peak kW × rate per kW
	KindMinimum  LineKind = "minimum"  // the shortfall below the minimum charge
	KindLevy     LineKind = "levy"     // units × levy per unit, or 1 bill × levy per bill
	KindTax      LineKind = "tax"      // taxable amount × percentage
)

// Line is one priced item of a Charge. Quantity × UnitPrice is Amount before
// Amount is rounded to the currency's minor unit.
type Line struct {
	Kind LineKind
	// Name is the band, tier ("tier 2"), levy or tax name; empty for the
	// other kinds.
	Name        string
	Description string
	// Quantity is in Unit: days, the tariff's unit, kW, bills, or (for a
	// tax) money in the tariff's currency.
	Quantity decimal.Decimal
	Unit     string
	// UnitPrice is at full precision: a tariff rate as written, or a rate
	// prorated for part of a period and rounded to RateDecimals.
	UnitPrice decimal.Decimal
	// Amount is rounded to the currency's minor unit.
	Amount decimal.Decimal
	// TariffVersion is the EffectiveFrom of the version that priced the
	// line (for a tax line, of the first version it applies under).
	TariffVersion Date
	// Estimated is set when an estimated interval contributed.
	Estimated bool
}

// Charge is a priced period: what a bill for it shows.
type Charge struct {
	Tariff   string
	Currency string
	Period   Period
	// Days is the number of local days in Period.
	Days  int
	Lines []Line
	// Subtotal is the sum of every line but taxes, Tax the sum of tax lines
	// and Total their sum.
	Subtotal, Tax, Total decimal.Decimal
	// Estimated is set when any estimated interval contributed.
	Estimated bool
}

// Price prices the usage of one billing period.
//
// A period that spans tariff versions is split at each version's
// EffectiveFrom (a local midnight). Each part is priced by its own version:
// standing charges for the part's days; usage by the version in force when
// it was metered; tier thresholds (per period), demand rates, per-bill
// levies and the minimum charge prorated by the part's days over the
// period's days. Taxes are computed once per distinct tax (name and
// percentage) on the sum of the rounded lines of the parts it applies to.
//
// Price treats Period as a whole billing period; to price the days so far
// of a cycle that is still running, use Accrue. It validates the tariff
// first, so a tariff built in code cannot be priced half right. Errors
// match ErrInvalid and name the offending field ("usage.intervals[12]").
func (t Tariff) Price(in Usage) (Charge, error) {
	return t.price(in, in.Period)
}

// Accrue prices part of a billing cycle (in.Period: whole local days inside
// cycle, typically from its start to today's local midnight) as its pro-rata
// share of the cycle's bill: standing charges and usage as Price would,
// while tier thresholds (per period), demand rates, per-bill levies and the
// minimum charge are scaled by in.Period's days over the cycle's days.
// Priced day by day with steady usage, the accrual grows towards the bill
// Price gives for the whole cycle.
func (t Tariff) Accrue(in Usage, cycle Period) (Charge, error) {
	if in.Location == nil {
		return Charge{}, usageErr("location", "required")
	}
	if in.Period.Start.Before(cycle.Start) || in.Period.End.After(cycle.End) {
		return Charge{}, usageErr("period", "%s is not inside the cycle %s", fmtPeriod(in.Period, in.Location), fmtPeriod(cycle, in.Location))
	}
	return t.price(in, cycle)
}

func usageErr(path, format string, args ...any) error {
	return &FieldError{Path: "usage." + path, Reason: fmt.Sprintf(format, args...)}
}

// ivErr reports a problem with intervals[i] (or one of its fields).
func ivErr(i int, field, format string, args ...any) error {
	return usageErr(fmt.Sprintf("intervals[%d]%s", i, field), format, args...)
}

func fmtPeriod(p Period, loc *time.Location) string {
	return fmt.Sprintf("%s to %s", p.Start.In(loc).Format(time.DateTime), p.End.In(loc).Format(time.DateTime))
}

// volumeCorrection is the standard temperature and pressure correction of
// gas volume in Great Britain, and megajoulesPerKWh converts MJ to kWh.
var (
	volumeCorrection = decimal.RequireFromString("1.02264")
	megajoulesPerKWh = decimal.RequireFromString("3.6")
)

// GasToKWh converts a gas volume in m³ to kWh:
// m³ × 1.02264 × calorific value (MJ/m³) ÷ 3.6, rounded half up to
// QuantityDecimals (0.001 kWh).
func GasToKWh(m3, calorificValue decimal.Decimal) decimal.Decimal {
	return m3.Mul(volumeCorrection).Mul(calorificValue).DivRound(megajoulesPerKWh, QuantityDecimals)
}

// segment is the part of a period under one tariff version.
type segment struct {
	version    int
	from, to   Date
	start, end time.Time
	days       int

	tou *touTable
	// Accumulated usage, in meter.Value units of the metered quantity.
	total     int64
	estimated bool
	bucket    []int64 // per TOU line
	bucketEst []bool
	// Demand: the window being summed and the highest window so far.
	win, winSum     int64
	winEst, winOpen bool
	peak            int64
	peakStart       int64
	peakEst         bool
	lines           []Line
	subtotal        decimal.Decimal
	subtotalEst     bool
}

func (t Tariff) price(in Usage, cycle Period) (Charge, error) {
	if err := t.Validate(); err != nil {
		return Charge{}, fmt.Errorf("tariff %q: %w", t.Code, err)
	}
	loc := in.Location
	if loc == nil {
		return Charge{}, usageErr("location", "required")
	}
	first, last, err := localDays(in.Period, loc, "period")
	if err != nil {
		return Charge{}, err
	}
	cFirst, cLast, err := localDays(cycle, loc, "cycle")
	if err != nil {
		return Charge{}, err
	}
	basis := cFirst.DaysUntil(cLast)
	minor, _ := MinorUnits(t.Currency)

	gasKWh := t.Utility == meter.Gas && t.Unit == KWh
	if gasKWh {
		cv := in.CalorificValue
		switch {
		case !cv.IsPositive():
			return Charge{}, usageErr("calorific_value", "a gas tariff priced per kWh needs the period's calorific value (MJ/m3)")
		case cv.GreaterThan(decimal.NewFromInt(100)) || !hasAtMostDecimals(cv, RateDecimals):
			return Charge{}, usageErr("calorific_value", "%s MJ/m3 is not a plausible calorific value", cv)
		}
	}

	segs, err := t.segments(first, last, loc)
	if err != nil {
		return Charge{}, err
	}
	if err := accumulate(segs, t.Versions, in); err != nil {
		return Charge{}, err
	}

	p := pricer{t: t, in: in, minor: minor, basis: basis, gasKWh: gasKWh}
	c := Charge{
		Tariff:   t.Code,
		Currency: t.Currency,
		Period:   in.Period,
		Days:     first.DaysUntil(last),
	}
	for i := range segs {
		p.segment(&segs[i], len(segs) > 1)
		c.Lines = append(c.Lines, segs[i].lines...)
	}
	c.Lines = append(c.Lines, p.taxes(segs)...)
	c.Subtotal, c.Tax = decimal.Zero, decimal.Zero
	for _, l := range c.Lines {
		if l.Kind == KindTax {
			c.Tax = c.Tax.Add(l.Amount)
		} else {
			c.Subtotal = c.Subtotal.Add(l.Amount)
		}
		c.Estimated = c.Estimated || l.Estimated
	}
	for _, s := range segs {
		c.Estimated = c.Estimated || s.estimated
	}
	c.Total = c.Subtotal.Add(c.Tax)
	return c, nil
}

// localDays checks that p is a run of whole local days and returns its first
// day and the day after its last.
func localDays(p Period, loc *time.Location, name string) (Date, Date, error) {
	first, last := DateOf(p.Start.In(loc)), DateOf(p.End.In(loc))
	if !first.Start(loc).Equal(p.Start) {
		return Date{}, Date{}, usageErr(name+".start", "%s is not a local midnight in %s", p.Start.In(loc).Format(time.RFC3339), loc)
	}
	if !last.Start(loc).Equal(p.End) {
		return Date{}, Date{}, usageErr(name+".end", "%s is not a local midnight in %s", p.End.In(loc).Format(time.RFC3339), loc)
	}
	n := first.DaysUntil(last)
	if n < 1 || n > MaxPeriodDays {
		return Date{}, Date{}, usageErr(name, "%d days: want 1 to %d", n, MaxPeriodDays)
	}
	return first, last, nil
}

// segments splits the days [first, last) at version boundaries.
func (t Tariff) segments(first, last Date, loc *time.Location) ([]segment, error) {
	if first.Before(t.Versions[0].EffectiveFrom) {
		return nil, usageErr("period.start", "no version of tariff %s is in force on %s (the first starts %s)",
			t.Code, first, t.Versions[0].EffectiveFrom)
	}
	var segs []segment
	for i, v := range t.Versions {
		from := v.EffectiveFrom
		if from.Before(first) {
			from = first
		}
		to := last
		if i+1 < len(t.Versions) && t.Versions[i+1].EffectiveFrom.Before(last) {
			to = t.Versions[i+1].EffectiveFrom
		}
		if !from.Before(to) {
			continue
		}
		s := segment{version: i, from: from, to: to, start: from.Start(loc), end: to.Start(loc), days: from.DaysUntil(to)}
		if v.TOU != nil {
			s.tou = compileTOU(&problems{}, "", *v.TOU)
			s.bucket = make([]int64, len(s.tou.lines))
			s.bucketEst = make([]bool, len(s.tou.lines))
		}
		segs = append(segs, s)
	}
	return segs, nil
}

// accumulate checks the intervals and adds each to its segment: total, TOU
// bucket and demand window.
func accumulate(segs []segment, versions []Version, in Usage) error {
	ivs := in.Intervals
	var order []int
	for i := 1; i < len(ivs); i++ {
		if ivs[i].Start.Before(ivs[i-1].Start) {
			order = make([]int, len(ivs))
			for j := range order {
				order[j] = j
			}
			slices.SortStableFunc(order, func(a, b int) int { return ivs[a].Start.Compare(ivs[b].Start) })
			break
		}
	}
	clock := localClock{loc: in.Location}
	var prevEnd time.Time
	prev := -1
	si := 0
	for k := range ivs {
		i := k
		if order != nil {
			i = order[k]
		}
		iv := ivs[i]
		switch iv.Duration {
		case 15 * time.Minute, 30 * time.Minute, time.Hour:
		default:
			return ivErr(i, ".duration", "%s is not 15m, 30m or 1h", iv.Duration)
		}
		if iv.Quantity < 0 || iv.Quantity > MaxIntervalQuantity {
			return ivErr(i, ".quantity", "%s is out of range 0..%s", iv.Quantity, MaxIntervalQuantity)
		}
		end := iv.Start.Add(iv.Duration)
		if iv.Start.Before(in.Period.Start) || end.After(in.Period.End) {
			return ivErr(i, "", "%s is outside the period %s", iv.Start.In(in.Location).Format(time.RFC3339), fmtPeriod(in.Period, in.Location))
		}
		if prev >= 0 && iv.Start.Before(prevEnd) {
			return ivErr(i, "", "overlaps intervals[%d]", prev)
		}
		prev, prevEnd = i, end
		for !iv.Start.Before(segs[si].end) {
			si++
		}
		s := &segs[si]
		if end.After(s.end) {
			return ivErr(i, "", "crosses the change to tariff version %s", s.to)
		}
		q := int64(iv.Quantity)
		s.total += q
		s.estimated = s.estimated || iv.Estimated

		if s.tou != nil {
			sec := iv.Start.Unix()
			month, kind, hour, into := clock.at(sec)
			line := s.tou.line[month-1][kind][hour]
			if into+int64(iv.Duration/time.Second) > 3600 {
				// The interval runs into the next local hour (a half-hour
				// time zone, say): both hours must be in the same band.
				m2, k2, h2, _ := clock.at(end.Unix() - 1)
				if s.tou.line[m2-1][k2][h2] != line {
					return ivErr(i, "", "%s spans two time-of-use bands; send shorter intervals",
						iv.Start.In(in.Location).Format(time.RFC3339))
				}
			}
			s.bucket[line] += q
			s.bucketEst[line] = s.bucketEst[line] || iv.Estimated
		}

		if d := versions[s.version].Demand; d != nil {
			w := int64(d.WindowMinutes) * 60
			if int64(iv.Duration/time.Second) > w {
				return ivErr(i, ".duration", "%s is longer than the %d-minute demand window", iv.Duration, d.WindowMinutes)
			}
			win := floorDiv(iv.Start.Unix(), w)
			if !s.winOpen || win != s.win {
				s.closeWindow(w)
				s.win, s.winSum, s.winEst, s.winOpen = win, 0, false, true
			}
			s.winSum += q
			s.winEst = s.winEst || iv.Estimated
		}
	}
	for i := range segs {
		if d := versions[segs[i].version].Demand; d != nil {
			segs[i].closeWindow(int64(d.WindowMinutes) * 60)
		}
	}
	return nil
}

// closeWindow ends the demand window being summed.
func (s *segment) closeWindow(w int64) {
	if s.winOpen && s.winSum > s.peak {
		s.peak, s.peakStart, s.peakEst = s.winSum, s.win*w, s.winEst
	}
	s.winOpen = false
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// localClock maps instants to local month, kind of day and hour, looking the
// UTC offset up only when an instant leaves the span the last offset held
// for: a month of intervals costs a handful of zone lookups.
type localClock struct {
	loc      *time.Location
	off      int64
	from, to int64 // Unix seconds; the offset holds in [from, to)
	ok       bool
	// The local day (days since 1970-01-01) whose month is cached.
	day   int64
	month time.Month
}

// at returns the local month, kind of day (0 weekday, 1 weekend), hour and
// seconds into the hour of Unix second sec.
func (c *localClock) at(sec int64) (month time.Month, kind, hour int, into int64) {
	if !c.ok || sec < c.from || sec >= c.to {
		t := time.Unix(sec, 0).In(c.loc)
		_, off := t.Zone()
		start, end := t.ZoneBounds()
		c.off, c.from, c.to, c.ok = int64(off), -1<<62, 1<<62, true
		if !start.IsZero() {
			c.from = start.Unix()
		}
		if !end.IsZero() {
			c.to = end.Unix()
		}
	}
	local := sec + c.off
	day := floorDiv(local, 86400)
	secOfDay := local - day*86400
	// 1970-01-01 was a Thursday.
	wd := time.Weekday((day%7 + 7 + 4) % 7)
	if day != c.day || c.month == 0 {
		_, c.month, _ = time.Unix(day*86400, 0).UTC().Date()
		c.day = day
	}
	return c.month, dayKind(wd), int(secOfDay / 3600), secOfDay % 3600
}

// pricer turns accumulated segments into lines.
type pricer struct {
	t      Tariff
	in     Usage
	minor  int32
	basis  int // days of the billing cycle
	gasKWh bool
}

// billed converts a metered quantity (meter.Value) to the tariff's unit,
// returning the quantity and, for gas, how it was converted.
func (p pricer) billed(v int64) (decimal.Decimal, string) {
	q := decimal.New(v, -QuantityDecimals)
	if !p.gasKWh {
		return q, ""
	}
	kwh := GasToKWh(q, p.in.CalorificValue)
	return kwh, fmt.Sprintf(" (%s m3 × %s × %s MJ/m3 ÷ %s)", FormatFixed(q, QuantityDecimals), volumeCorrection, p.in.CalorificValue, megajoulesPerKWh)
}

// prorate scales an amount per period to days of basis, at RateDecimals.
func (p pricer) prorate(x decimal.Decimal, days int) decimal.Decimal {
	if days == p.basis {
		return x
	}
	return x.Mul(decimal.NewFromInt(int64(days))).DivRound(decimal.NewFromInt(int64(p.basis)), RateDecimals)
}

// rate formats a rate for a description: to the minor unit when that is
// exact (0.40), else as written (0.32854).
func (p pricer) rate(d decimal.Decimal) string {
	if hasAtMostDecimals(d, p.minor) {
		return FormatFixed(d, p.minor)
	}
	return FormatDecimal(d)
}

func (p pricer) money(d decimal.Decimal) string {
	return FormatFixed(d, p.minor) + " " + p.t.Currency
}

func (p pricer) line(s *segment, kind LineKind, name, desc string, qty decimal.Decimal, unit string, price decimal.Decimal, est bool) {
	s.lines = append(s.lines, Line{
		Kind:          kind,
		Name:          name,
		Description:   desc,
		Quantity:      qty,
		Unit:          unit,
		UnitPrice:     price,
		Amount:        roundMoney(qty.Mul(price), p.minor),
		TariffVersion: p.t.Versions[s.version].EffectiveFrom,
		Estimated:     est,
	})
}

func (p pricer) segment(s *segment, split bool) {
	v := p.t.Versions[s.version]
	unit := p.t.Unit
	part := ""
	if split || s.days != p.basis {
		part = fmt.Sprintf(" (%s to %s, %d of %d days)", s.from, s.to.AddDays(-1), s.days, p.basis)
	}
	ratio := strconv.Itoa(s.days) + "/" + strconv.Itoa(p.basis) + " days"
	span := ""
	if split {
		span = fmt.Sprintf(" (%s to %s)", s.from, s.to.AddDays(-1))
	}

	if v.StandingChargePerDay.IsPositive() {
		p.line(s, KindStanding, "", "Standing charge: "+plural(s.days, "day")+span+" at "+p.rate(v.StandingChargePerDay)+" per day",
			decimal.NewFromInt(int64(s.days)), "day", v.StandingChargePerDay, false)
	}

	// Energy.
	var units decimal.Decimal // billed units, for per-unit levies
	switch {
	case v.FlatRate != nil:
		q, conv := p.billed(s.total)
		units = q
		if q.IsPositive() {
			p.line(s, KindEnergy, "", "Energy: "+FormatFixed(q, QuantityDecimals)+" "+unit+conv+" at "+p.rate(*v.FlatRate)+part,
				q, unit, *v.FlatRate, s.estimated)
		}
	case v.Tiers != nil:
		q, conv := p.billed(s.total)
		units = q
		total := q.Shift(QuantityDecimals).IntPart()
		var lower int64
		for i, b := range v.Tiers.Blocks {
			upper := int64(-1) // the rest
			bound := "and above"
			if b.UpTo != nil {
				upper = p.threshold(v.Tiers.Basis, b.UpTo.Shift(QuantityDecimals).IntPart(), s.days)
				bound = "to " + FormatFixed(decimal.New(upper, -QuantityDecimals), QuantityDecimals)
			}
			in := total - lower
			if upper >= 0 && total > upper {
				in = upper - lower
			}
			if in > 0 {
				qty := decimal.New(in, -QuantityDecimals)
				scaled := ""
				if v.Tiers.Basis == PerDay {
					scaled = fmt.Sprintf(", thresholds for %d days", s.days)
				} else if s.days != p.basis {
					scaled = ", thresholds prorated " + ratio
				}
				p.line(s, KindTier, fmt.Sprintf("tier %d", i+1),
					fmt.Sprintf("Tier %d (%s %s %s%s): %s %s%s at %s%s", i+1,
						FormatFixed(decimal.New(lower, -QuantityDecimals), QuantityDecimals), bound, unit, scaled,
						FormatFixed(qty, QuantityDecimals), unit, conv, p.rate(b.Rate), part),
					qty, unit, b.Rate, s.estimated)
			}
			if upper < 0 || total <= upper {
				break
			}
			lower = upper
		}
	case v.TOU != nil:
		units = decimal.Zero
		for i, tl := range s.tou.lines {
			q, conv := p.billed(s.bucket[i])
			units = units.Add(q)
			if !q.IsPositive() {
				continue
			}
			label := tl.name
			if tl.season != "" {
				label += ", " + tl.season
			}
			p.line(s, KindTOU, tl.name, fmt.Sprintf("Time of use, %s: %s %s%s at %s%s", label, FormatFixed(q, QuantityDecimals), unit, conv, p.rate(tl.rate), part),
				q, unit, tl.rate, s.bucketEst[i])
		}
	}

	if d := v.Demand; d != nil && s.peak > 0 {
		w := int64(d.WindowMinutes)
		kw := decimal.New(s.peak*60/w, -QuantityDecimals) // Wh per window → kW
		from := time.Unix(s.peakStart, 0).In(p.in.Location)
		rate := p.prorate(d.RatePerKW, s.days)
		desc := fmt.Sprintf("Demand: highest %d-minute average %s kW (%s) at %s per kW", w, FormatFixed(kw, QuantityDecimals), from.Format("2006-01-02 15:04 MST"), p.rate(d.RatePerKW))
		if s.days != p.basis {
			desc += " × " + ratio
		}
		p.line(s, KindDemand, "", desc, kw, "kW", rate, s.peakEst)
	}

	if v.MinimumCharge.IsPositive() {
		// Rounded once, straight to the minor unit.
		due := v.MinimumCharge.Mul(decimal.NewFromInt(int64(s.days))).DivRound(decimal.NewFromInt(int64(p.basis)), p.minor)
		charged := decimal.Zero
		for _, l := range s.lines {
			charged = charged.Add(l.Amount)
		}
		if charged.LessThan(due) {
			short := due.Sub(charged)
			desc := fmt.Sprintf("Minimum charge %s", p.money(v.MinimumCharge))
			if s.days != p.basis {
				desc += " × " + ratio + " = " + p.money(due)
			}
			desc += fmt.Sprintf(", charges %s: shortfall", p.money(charged))
			p.line(s, KindMinimum, "", desc, decimal.NewFromInt(1), "bill", short, s.estimated)
		}
	}

	for _, l := range v.Levies {
		switch l.Basis {
		case PerUnit:
			if units.IsPositive() {
				p.line(s, KindLevy, l.Name, l.Name+": "+FormatFixed(units, QuantityDecimals)+" "+unit+" at "+p.rate(l.Rate)+part,
					units, unit, l.Rate, s.estimated)
			}
		case PerBill:
			desc := fmt.Sprintf("%s: %s per bill", l.Name, p.rate(l.Rate))
			if s.days != p.basis {
				desc += " × " + ratio
			}
			p.line(s, KindLevy, l.Name, desc, decimal.NewFromInt(1), "bill", p.prorate(l.Rate, s.days), false)
		}
	}

	s.subtotal = decimal.Zero
	for _, l := range s.lines {
		s.subtotal = s.subtotal.Add(l.Amount)
		s.subtotalEst = s.subtotalEst || l.Estimated
	}
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}

// threshold returns a tier threshold (meter.Value units) for a part of days.
func (p pricer) threshold(basis TierBasis, upTo int64, days int) int64 {
	if basis == PerDay {
		return upTo * int64(days)
	}
	if days == p.basis {
		return upTo
	}
	// upTo × days / basis, rounded half up to the meter's resolution.
	n, d := upTo*int64(days), int64(p.basis)
	return (2*n + d) / (2 * d)
}

// taxes computes one line per distinct tax (name and percentage) on the sum
// of the subtotals of the segments whose version levies it.
func (p pricer) taxes(segs []segment) []Line {
	type group struct {
		tax     Tax
		version Date
		base    decimal.Decimal
		est     bool
	}
	var groups []*group
	for _, s := range segs {
		v := p.t.Versions[s.version]
		for _, x := range v.Taxes {
			var g *group
			for _, h := range groups {
				if h.tax.Name == x.Name && h.tax.Percent.Equal(x.Percent) {
					g = h
					break
				}
			}
			if g == nil {
				g = &group{tax: x, version: v.EffectiveFrom, base: decimal.Zero}
				groups = append(groups, g)
			}
			g.base = g.base.Add(s.subtotal)
			g.est = g.est || s.subtotalEst
		}
	}
	var lines []Line
	for _, g := range groups {
		rate := g.tax.Percent.Shift(-2)
		lines = append(lines, Line{
			Kind:          KindTax,
			Name:          g.tax.Name,
			Description:   fmt.Sprintf("%s %s%% of %s", g.tax.Name, g.tax.Percent, p.money(g.base)),
			Quantity:      g.base,
			Unit:          p.t.Currency,
			UnitPrice:     rate,
			Amount:        roundMoney(g.base.Mul(rate), p.minor),
			TariffVersion: g.version,
			Estimated:     g.est,
		})
	}
	return lines
}

// String renders the charge as a plain-text bill, two lines per Line (what
// it is; how it was computed), for logs, tests and support staff.
func (c Charge) String() string {
	var b strings.Builder
	minor, _ := MinorUnits(c.Currency)
	fmt.Fprintf(&b, "%s, %s to %s (%d days), %s\n", c.Tariff,
		DateOf(c.Period.Start), DateOf(c.Period.End).AddDays(-1), c.Days, c.Currency)
	for _, l := range c.Lines {
		est := ""
		if l.Estimated {
			est = ", estimated"
		}
		fmt.Fprintf(&b, "  %-8s  %s\n  %8s  %s %s × %s = %s  [version %s%s]\n", l.Kind, l.Description,
			"", l.Quantity, l.Unit, l.UnitPrice, l.Amount.StringFixed(minor), l.TariffVersion, est)
	}
	fmt.Fprintf(&b, "  subtotal %s, tax %s, total %s %s\n", c.Subtotal.StringFixed(minor), c.Tax.StringFixed(minor),
		c.Total.StringFixed(minor), c.Currency)
	return b.String()
}
