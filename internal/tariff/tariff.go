package tariff

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/meter"
)

// Units a tariff can be priced in. Electricity is priced per kWh and water
// per m³; gas is priced either per m³ or per kWh, in which case the metered
// volume is converted with the calorific value of the period (see
// GasToKWh).
const (
	KWh         = "kWh"
	CubicMetres = "m3"
)

// Tariff is a named price list for one utility in one currency, as a series
// of versions in date order.
type Tariff struct {
	Code    string
	Name    string
	Utility meter.Utility
	// Currency is an ISO 4217 alphabetic code with a known minor unit
	// (see MinorUnits).
	Currency string
	// Unit is what energy rates, tier thresholds and per-unit levies are
	// per: KWh or CubicMetres.
	Unit string
	// Versions are in strictly increasing EffectiveFrom order. A version is
	// in force from its EffectiveFrom until the next version's.
	Versions []Version
}

// Version is one set of prices. Exactly one of FlatRate, Tiers and TOU
// prices energy.
type Version struct {
	// EffectiveFrom is the first day the version is in force, starting at
	// local midnight in the account's time zone.
	EffectiveFrom Date
	// StandingChargePerDay is charged for every local calendar day of the
	// period, whatever its length (23, 24 or 25 hours) or usage.
	StandingChargePerDay decimal.Decimal

	FlatRate *decimal.Decimal
	Tiers    *Tiers
	TOU      *TOU

	// Demand, if set, charges the highest average demand in the period.
	// Electricity only.
	Demand *Demand
	// Levies are per unit or per bill; they are part of the taxable subtotal.
	Levies []Levy
	// Taxes are percentages of the subtotal (all other lines).
	Taxes []Tax
	// MinimumCharge, when positive, is the least the standing, energy and
	// demand lines of a billing period add up to; a shortfall is charged as
	// a minimum line. Levies and taxes come on top.
	MinimumCharge decimal.Decimal
}

// TierBasis says what a tier threshold is counted over.
type TierBasis string

const (
	// PerPeriod thresholds are allowances per billing period, whatever its
	// length; only a period split between versions prorates them by days.
	PerPeriod TierBasis = "period"
	// PerDay thresholds are daily allowances, multiplied by the days of the
	// period (as in the US "baseline" allowance).
	PerDay TierBasis = "day"
)

// Tiers are inclining blocks: the price per unit steps up as the period's
// usage passes each threshold.
type Tiers struct {
	Basis TierBasis
	// Blocks are in order. Every block but the last has an UpTo threshold,
	// strictly increasing; the last has none and prices the rest.
	Blocks []Block
}

// Block is one tier: units above the previous block's UpTo and up to its
// own are priced at Rate.
type Block struct {
	// UpTo is a cumulative threshold in the tariff's unit, at most three
	// decimals (the meter's resolution); nil on the last block.
	UpTo *decimal.Decimal
	Rate decimal.Decimal
}

// TOU prices each interval by the band its local start time falls in. Either
// Bands (the same all year) or Seasons is set.
type TOU struct {
	Bands   []Band
	Seasons []Season
}

// Season is a range of months with its own bands. Seasons cover every month
// exactly once.
type Season struct {
	Name string
	// FromMonth and ToMonth are inclusive; a range may wrap past December
	// (from 10 to 3 is October to March).
	FromMonth, ToMonth time.Month
	Bands              []Band
}

// DayType selects the days a band applies on.
type DayType string

const (
	AllDays  DayType = "all"
	Weekdays DayType = "weekdays" // Monday to Friday
	Weekends DayType = "weekends" // Saturday and Sunday
)

// Band is a named price for a range of local hours. The bands of a season
// (or of the TOU) cover every hour of weekdays and weekends exactly once.
// Bands may share a name (an off-peak before and after a peak) if they
// share a rate; they are billed as one line.
type Band struct {
	Name string
	// From (0..23) and To (1..24) are local clock hours, From inclusive and
	// To exclusive. From > To wraps past midnight within the same calendar
	// day's pattern: 23 to 7 covers 00:00–07:00 and 23:00–24:00.
	From, To int
	Days     DayType
	Rate     decimal.Decimal
}

// Demand charges the highest average demand in kW over any window of the
// period: the energy in the window divided by its length.
type Demand struct {
	RatePerKW decimal.Decimal
	// WindowMinutes is 15, 30 or 60. Windows are aligned on multiples of
	// their length since the Unix epoch, which are local clock quarter
	// hours in every time zone in use.
	WindowMinutes int
}

// LevyBasis says what a levy is charged on.
type LevyBasis string

const (
	PerUnit LevyBasis = "unit" // per unit billed (kWh after gas conversion)
	PerBill LevyBasis = "bill" // a fixed amount per billing period
)

// Levy is a charge collected on behalf of someone else (a government scheme,
// a regulator). Levies are taxable.
type Levy struct {
	Name  string
	Basis LevyBasis
	Rate  decimal.Decimal
}

// Tax is a percentage of the subtotal, such as VAT.
type Tax struct {
	Name string
	// Percent is 0..100 with at most four decimals: 5 means 5%.
	Percent decimal.Decimal
}

// VersionAt returns the version in force on day d.
func (t Tariff) VersionAt(d Date) (Version, bool) {
	i := t.versionIndex(d)
	if i < 0 {
		return Version{}, false
	}
	return t.Versions[i], true
}

func (t Tariff) versionIndex(d Date) int {
	found := -1
	for i, v := range t.Versions {
		if v.EffectiveFrom.After(d) {
			break
		}
		found = i
	}
	return found
}

// Date is a calendar day without a time zone; Date.Start places it in one.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// ParseDate parses an ISO 8601 calendar date, 2006-01-02.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return Date{}, fmt.Errorf("date %q is not YYYY-MM-DD", s)
	}
	return DateOf(t), nil
}

// DateOf is the calendar day of t in t's location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{y, m, d}
}

// Start is the first instant of day d in loc: local midnight, or the first
// instant that exists when a daylight-saving change skips midnight.
func (d Date) Start(loc *time.Location) time.Time {
	t := time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, loc)
	if DateOf(t) != d {
		// Midnight did not exist and time.Date moved back into the previous
		// day; the day starts at the first hour that exists.
		for h := 1; h <= 3 && DateOf(t) != d; h++ {
			t = time.Date(d.Year, d.Month, d.Day, h, 0, 0, 0, loc)
		}
	}
	return t
}

// AddDays returns the day n days after d (before, if n is negative).
func (d Date) AddDays(n int) Date {
	return DateOf(time.Date(d.Year, d.Month, d.Day+n, 12, 0, 0, 0, time.UTC))
}

// DaysUntil is the number of calendar days from d to e (negative if e is
// before d).
func (d Date) DaysUntil(e Date) int {
	a := time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC)
	b := time.Date(e.Year, e.Month, e.Day, 0, 0, 0, 0, time.UTC)
	return int(b.Sub(a) / (24 * time.Hour))
}

// Before reports whether d is before e.
func (d Date) Before(e Date) bool { return d.compare(e) < 0 }

// After reports whether d is after e.
func (d Date) After(e Date) bool { return d.compare(e) > 0 }

// IsZero reports whether d is the zero Date.
func (d Date) IsZero() bool { return d == Date{} }

func (d Date) compare(e Date) int {
	switch {
	case d.Year != e.Year:
		return cmpInt(d.Year, e.Year)
	case d.Month != e.Month:
		return cmpInt(int(d.Month), int(e.Month))
	}
	return cmpInt(d.Day, e.Day)
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// String formats d as YYYY-MM-DD.
func (d Date) String() string {
	var buf [16]byte
	return string(AppendDate(buf[:0], d))
}
