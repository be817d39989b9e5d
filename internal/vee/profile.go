package vee

import (
	"math/bits"
	"time"

	"github.com/meterflow/meterflow/internal/meter"
)

const (
	hoursPerWeek = 7 * 24
	msPerHour    = int64(time.Hour / time.Millisecond)
	// profileMin is how many hours of the week must have been learned
	// before long gaps follow the profile instead of a flat line.
	profileMin = 24
	// profileShift makes each profile update move a bucket an eighth of
	// the way to the new observation: an exponentially weighted average
	// over about eight spans in the same hour of the week, two weeks of
	// 15-minute reads.
	profileShift = 3
	// profileScale is the largest bucket value: a rate of the channel's
	// MaxPerHour.
	profileScale = 1<<16 - 1
)

// profile is a channel's learned consumption by hour of the week: each
// bucket holds the average rate of measured spans in that hour, scaled so
// that the channel's MaxPerHour is profileScale. Only the buckets' ratios
// matter (they weight how a long gap's consumption is spread), so the
// scale costs nothing and fits a week in 336 bytes.
type profile struct {
	w       [hoursPerWeek]uint16
	learned [3]uint64 // bit h set: w[h] has been learned
	n       uint8     // number of learned buckets
}

func (p *profile) has(h int) bool { return p.learned[h/64]&(1<<(h%64)) != 0 }

// usable reports whether p has learned enough to shape a gap.
func (p *profile) usable() bool { return p != nil && p.n >= profileMin }

// learn folds a measured rate (Value per hour) observed in hour-of-week h
// into the profile.
func (p *profile) learn(h int, rate uint64, maxPerHour meter.Value) {
	scale := uint64(profileScale)
	if maxPerHour > 0 {
		rate = mulDivSat(rate, profileScale, uint64(maxPerHour))
	}
	x := int64(min(rate, scale))
	if !p.has(h) {
		p.w[h] = uint16(x)
		p.learned[h/64] |= 1 << (h % 64)
		p.n++
		return
	}
	w := int64(p.w[h])
	p.w[h] = uint16(w + (x-w)>>profileShift)
}

// mean is the average of the learned buckets, which stands in for the
// buckets not learned yet.
func (p *profile) mean() uint64 {
	var sum uint64
	for h := range hoursPerWeek {
		if p.has(h) {
			sum += uint64(p.w[h])
		}
	}
	return sum / uint64(max(p.n, 1))
}

// weight is the relative weight of hour-of-week h. One is added so that a
// gap never lands entirely on hours that learned zero.
func (p *profile) weight(h int, mean uint64) uint64 {
	if p.has(h) {
		return uint64(p.w[h]) + 1
	}
	return mean + 1
}

// hourOfWeek returns the hour of the week (0 is Sunday 00:00 to 01:00) of
// the instant ms (Unix milliseconds) in loc, nil meaning UTC.
func hourOfWeek(ms int64, loc *time.Location) int {
	if loc == nil || loc == time.UTC {
		// 1970-01-01 was a Thursday: hour 0 of the epoch is hour 96 of
		// its week.
		return int(floorMod(floorDiv(ms, msPerHour)+4*24, hoursPerWeek))
	}
	t := time.UnixMilli(ms).In(loc)
	return int(t.Weekday())*24 + t.Hour()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

// mulDiv returns a*b/c rounded down; the caller guarantees b <= c, so the
// quotient fits.
func mulDiv(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	q, _ := bits.Div64(hi, lo, c)
	return q
}

// mulDivSat returns a*b/c rounded down, or the largest uint64 when the
// quotient would not fit.
func mulDivSat(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return ^uint64(0)
	}
	q, _ := bits.Div64(hi, lo, c)
	return q
}
