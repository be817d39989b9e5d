package tariff

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/meter"
)

// ErrInvalid is matched (errors.Is) by every error that reports a bad tariff
// or bad usage, as opposed to a failure of the caller's own making; the
// HTTP layer maps it to "invalid".
var ErrInvalid = errors.New("invalid")

// FieldError is one problem with a tariff, named by the path of the field in
// the file format, for example "versions[1].tou.bands[2].from".
type FieldError struct {
	Path   string
	Reason string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// problems collects FieldErrors so that a caller sees every problem at once.
type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, &FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

func (p problems) err() error { return errors.Join(p...) }

// maxThreshold bounds tier thresholds (in units) so that prorating them in
// meter.Value arithmetic cannot overflow.
var maxThreshold = decimal.New(1, 9)

// Validate checks everything Parse checks beyond syntax, so that a tariff
// built in code (or loaded from a database) is held to the same rules. The
// error joins one *FieldError per problem.
func (t Tariff) Validate() error {
	var p problems
	if strings.TrimSpace(t.Code) == "" {
		p.add("code", "required")
	}
	if strings.TrimSpace(t.Name) == "" {
		p.add("name", "required")
	}
	if !t.Utility.Valid() {
		p.add("utility", "%q is not electricity, water or gas", t.Utility)
	}
	switch {
	case !validCurrencyFormat(t.Currency):
		p.add("currency", "%q is not an ISO 4217 code (three upper-case letters, such as GBP)", t.Currency)
	default:
		if _, ok := MinorUnits(t.Currency); !ok {
			p.add("currency", "%q is not a supported currency", t.Currency)
		}
	}
	switch t.Unit {
	case KWh:
		if t.Utility == meter.Water {
			p.add("unit", "water is priced per m3, not kWh")
		}
	case CubicMetres:
		if t.Utility == meter.Electricity {
			p.add("unit", "electricity is priced per kWh, not m3")
		}
	default:
		p.add("unit", "%q is not kWh or m3", t.Unit)
	}
	if len(t.Versions) == 0 {
		p.add("versions", "at least one version is required")
	}
	for i, v := range t.Versions {
		path := fmt.Sprintf("versions[%d]", i)
		t.validateVersion(&p, path, v)
		if i > 0 && !v.EffectiveFrom.After(t.Versions[i-1].EffectiveFrom) {
			p.add(path+".effective_from", "%s is not after versions[%d].effective_from %s: versions must be in date order",
				v.EffectiveFrom, i-1, t.Versions[i-1].EffectiveFrom)
		}
	}
	return p.err()
}

func (t Tariff) validateVersion(p *problems, path string, v Version) {
	if v.EffectiveFrom.IsZero() {
		p.add(path+".effective_from", "required")
	} else if v.EffectiveFrom.AddDays(0) != v.EffectiveFrom {
		p.add(path+".effective_from", "%s is not a calendar date", v.EffectiveFrom)
	}
	rate(p, path+".standing_charge_per_day", v.StandingChargePerDay)

	var energy []string
	if v.FlatRate != nil {
		energy = append(energy, "flat_rate")
		rate(p, path+".flat_rate", *v.FlatRate)
	}
	if v.Tiers != nil {
		energy = append(energy, "tiers")
		validateTiers(p, path+".tiers", *v.Tiers)
	}
	if v.TOU != nil {
		energy = append(energy, "tou")
		compileTOU(p, path+".tou", *v.TOU)
	}
	if len(energy) != 1 {
		found := "none"
		if len(energy) > 1 {
			found = strings.Join(energy, ", ")
		}
		p.add(path, "exactly one of flat_rate, tiers and tou must be set (found %s)", found)
	}

	if d := v.Demand; d != nil {
		if t.Utility != meter.Electricity {
			p.add(path+".demand", "a demand charge applies to electricity only")
		}
		rate(p, path+".demand.rate_per_kw", d.RatePerKW)
		switch d.WindowMinutes {
		case 15, 30, 60:
		default:
			p.add(path+".demand.window_minutes", "%d is not 15, 30 or 60", d.WindowMinutes)
		}
	}
	for i, l := range v.Levies {
		lp := fmt.Sprintf("%s.levies[%d]", path, i)
		if strings.TrimSpace(l.Name) == "" {
			p.add(lp+".name", "required")
		}
		switch l.Basis {
		case PerUnit:
			rate(p, lp+".per_unit", l.Rate)
		case PerBill:
			rate(p, lp+".per_bill", l.Rate)
		default:
			p.add(lp, "basis %q is not unit or bill", l.Basis)
		}
	}
	seen := map[string]int{}
	for i, x := range v.Taxes {
		tp := fmt.Sprintf("%s.taxes[%d]", path, i)
		if strings.TrimSpace(x.Name) == "" {
			p.add(tp+".name", "required")
		} else if j, dup := seen[x.Name]; dup {
			p.add(tp+".name", "%q is already taxes[%d]", x.Name, j)
		} else {
			seen[x.Name] = i
		}
		switch {
		case x.Percent.IsNegative() || x.Percent.GreaterThan(decimal.NewFromInt(100)):
			p.add(tp+".percent", "%s out of range 0..100", x.Percent)
		case !hasAtMostDecimals(x.Percent, PercentDecimals):
			p.add(tp+".percent", "%s has more than %d decimals", x.Percent, PercentDecimals)
		}
	}
	rate(p, path+".minimum_charge", v.MinimumCharge)
}

// rate checks a price: not negative, at most RateDecimals decimals.
func rate(p *problems, path string, d decimal.Decimal) {
	switch {
	case d.IsNegative():
		p.add(path, "negative price %s", d)
	case !hasAtMostDecimals(d, RateDecimals):
		p.add(path, "%s has more than %d decimals", d, RateDecimals)
	}
}

func validateTiers(p *problems, path string, t Tiers) {
	switch t.Basis {
	case "", PerPeriod, PerDay:
	default:
		p.add(path+".per", "%q is not period or day", t.Basis)
	}
	if len(t.Blocks) == 0 {
		p.add(path+".blocks", "at least one block is required")
	}
	var prev *decimal.Decimal
	for i, b := range t.Blocks {
		bp := fmt.Sprintf("%s.blocks[%d]", path, i)
		rate(p, bp+".rate", b.Rate)
		last := i == len(t.Blocks)-1
		switch {
		case last && b.UpTo != nil:
			p.add(bp+".up_to", "the last block prices the rest of the usage and has no up_to")
		case !last && b.UpTo == nil:
			p.add(bp+".up_to", "required on every block but the last")
		case b.UpTo == nil:
		case !b.UpTo.IsPositive():
			p.add(bp+".up_to", "threshold %s is not positive", b.UpTo)
		case !hasAtMostDecimals(*b.UpTo, QuantityDecimals):
			p.add(bp+".up_to", "threshold %s has more than %d decimals", b.UpTo, QuantityDecimals)
		case b.UpTo.GreaterThan(maxThreshold):
			p.add(bp+".up_to", "threshold %s is above %s", b.UpTo, maxThreshold)
		case prev != nil && !b.UpTo.GreaterThan(*prev):
			p.add(bp+".up_to", "threshold %s is not above the previous block's %s: thresholds must increase", b.UpTo, prev)
		}
		if b.UpTo != nil {
			prev = b.UpTo
		}
	}
}

// dayKinds are the two kinds of day a TOU table distinguishes.
var dayKinds = [2]string{"weekdays", "weekends"}

func dayKind(w time.Weekday) int {
	if w == time.Saturday || w == time.Sunday {
		return 1
	}
	return 0
}

// touTable is a TOU component compiled for pricing: the priced line of every
// hour of every kind of day in every month.
type touTable struct {
	// line[month-1][dayKind][hour] indexes lines.
	line  [12][2][24]int32
	lines []touLine
}

// touLine is a band (merged by name within its season) as billed.
type touLine struct {
	season string
	name   string
	rate   decimal.Decimal
}

// compileTOU checks a TOU component, adding problems under path, and
// returns its table; the table is only meaningful when no problem was added.
func compileTOU(p *problems, path string, tou TOU) *touTable {
	tab := &touTable{}
	for m := range tab.line {
		for k := range tab.line[m] {
			for h := range tab.line[m][k] {
				tab.line[m][k][h] = -1
			}
		}
	}
	switch {
	case len(tou.Bands) > 0 && len(tou.Seasons) > 0:
		p.add(path, "set bands or seasons, not both")
		return tab
	case len(tou.Bands) == 0 && len(tou.Seasons) == 0:
		p.add(path, "bands or seasons are required")
		return tab
	case len(tou.Bands) > 0:
		day := compileBands(p, path+".bands", tou.Bands, "", tab)
		for m := range tab.line {
			tab.line[m] = day
		}
		return tab
	}

	seasonOf := [12]int{}
	for m := range seasonOf {
		seasonOf[m] = -1
	}
	names := map[string]int{}
	for i, s := range tou.Seasons {
		sp := fmt.Sprintf("%s.seasons[%d]", path, i)
		if strings.TrimSpace(s.Name) == "" {
			p.add(sp+".name", "required")
		} else if j, dup := names[s.Name]; dup {
			p.add(sp+".name", "%q is already seasons[%d]", s.Name, j)
		} else {
			names[s.Name] = i
		}
		okFrom := s.FromMonth >= 1 && s.FromMonth <= 12
		okTo := s.ToMonth >= 1 && s.ToMonth <= 12
		if !okFrom {
			p.add(sp+".from_month", "month %d out of range 1..12", s.FromMonth)
		}
		if !okTo {
			p.add(sp+".to_month", "month %d out of range 1..12", s.ToMonth)
		}
		day := compileBands(p, sp+".bands", s.Bands, s.Name, tab)
		if !okFrom || !okTo {
			continue
		}
		for m := s.FromMonth; ; m = m%12 + 1 {
			if j := seasonOf[m-1]; j >= 0 {
				p.add(sp, "%s is already in seasons[%d]", m, j)
			} else {
				seasonOf[m-1] = i
				tab.line[m-1] = day
			}
			if m == s.ToMonth {
				break
			}
		}
	}
	var missing []string
	for m, s := range seasonOf {
		if s < 0 {
			missing = append(missing, time.Month(m+1).String())
		}
	}
	if len(missing) > 0 {
		p.add(path+".seasons", "no season covers %s", strings.Join(missing, ", "))
	}
	return tab
}

// compileBands checks the bands of one season, adds their lines to tab and
// returns the season's day table.
func compileBands(p *problems, path string, bands []Band, season string, tab *touTable) [2][24]int32 {
	var day [2][24]int32
	owner := [2][24]int{} // band index covering each hour, -1 if none
	for k := range owner {
		for h := range owner[k] {
			owner[k][h] = -1
			day[k][h] = -1
		}
	}
	if len(bands) == 0 {
		p.add(path, "at least one band is required")
		return day
	}
	byName := map[string]int{} // band name -> first band index
	lineOf := map[string]int32{}
	for j, b := range bands {
		bp := fmt.Sprintf("%s[%d]", path, j)
		rate(p, bp+".rate", b.Rate)
		if strings.TrimSpace(b.Name) == "" {
			p.add(bp+".name", "required")
		} else if i, seen := byName[b.Name]; seen {
			if !bands[i].Rate.Equal(b.Rate) {
				p.add(bp+".rate", "band %q costs %s here but %s in %s[%d]: bands sharing a name share a rate",
					b.Name, b.Rate, bands[i].Rate, lastElem(path), i)
			}
		} else {
			byName[b.Name] = j
			lineOf[b.Name] = int32(len(tab.lines))
			tab.lines = append(tab.lines, touLine{season: season, name: b.Name, rate: b.Rate})
		}
		okHours := true
		if b.From < 0 || b.From > 23 {
			p.add(bp+".from", "hour %d out of range 0..23", b.From)
			okHours = false
		}
		if b.To < 1 || b.To > 24 {
			p.add(bp+".to", "hour %d out of range 1..24", b.To)
			okHours = false
		}
		if okHours && b.From == b.To {
			p.add(bp, "from and to are both %d: a band covers at least one hour (0 to 24 is the whole day)", b.From)
			okHours = false
		}
		var kinds []int
		switch b.Days {
		case AllDays:
			kinds = []int{0, 1}
		case Weekdays:
			kinds = []int{0}
		case Weekends:
			kinds = []int{1}
		default:
			p.add(bp+".days", "%q is not all, weekdays or weekends", b.Days)
		}
		if !okHours {
			continue
		}
		line := lineOf[b.Name]
		for _, k := range kinds {
			var clash [24]bool
			clashWith := -1
			for _, h := range bandHours(b.From, b.To) {
				if i := owner[k][h]; i >= 0 {
					clash[h] = true
					clashWith = i
					continue
				}
				owner[k][h] = j
				day[k][h] = line
			}
			if clashWith >= 0 {
				p.add(bp, "overlaps %s[%d] on %s %s", lastElem(path), clashWith, dayKinds[k], hourRanges(clash))
			}
		}
	}
	var gaps [2][24]bool
	var anyGap [2]bool
	for k := range owner {
		for h, i := range owner[k] {
			if i < 0 {
				gaps[k][h] = true
				anyGap[k] = true
			}
		}
	}
	switch {
	case anyGap[0] && gaps[0] == gaps[1]:
		p.add(path, "no band covers %s on any day", hourRanges(gaps[0]))
	default:
		for k := range gaps {
			if anyGap[k] {
				p.add(path, "no band covers %s on %s", hourRanges(gaps[k]), dayKinds[k])
			}
		}
	}
	return day
}

// bandHours lists the clock hours a band covers.
func bandHours(from, to int) []int {
	var hs []int
	if from < to {
		for h := from; h < to; h++ {
			hs = append(hs, h)
		}
		return hs
	}
	for h := from; h < 24; h++ {
		hs = append(hs, h)
	}
	for h := 0; h < to; h++ {
		hs = append(hs, h)
	}
	return hs
}

// hourRanges formats a set of hours as "07:00-09:00, 21:00-24:00".
func hourRanges(set [24]bool) string {
	var out []string
	for h := 0; h < 24; {
		if !set[h] {
			h++
			continue
		}
		e := h
		for e < 24 && set[e] {
			e++
		}
		out = append(out, fmt.Sprintf("%02d:00-%02d:00", h, e))
		h = e
	}
	return strings.Join(out, ", ")
}

// lastElem is the last element of a field path: "bands" of "tou.bands".
func lastElem(path string) string {
	return path[strings.LastIndexByte(path, '.')+1:]
}
