package vee

import (
	"strings"
	"time"

	"github.com/meterflow/meterflow/internal/meter"
)

// Output is what one Apply produced. The caller owns it and reuses it
// across calls: Reset keeps the slices' storage, so that a worker applying
// message after message allocates nothing in the steady state. Apply only
// appends, so several calls may also share one Output before it is written.
type Output struct {
	// Duplicate is set when the whole message had already been applied
	// (same sequence number, or every register reading's time and value
	// already applied): the State did not change, and the only other
	// content is one Exception with Rule duplicate, for counting.
	Duplicate bool
	// Readings holds every reading of the message, validated, in message
	// order, except register readings whose time was already applied for
	// their channel: those are reported only as a duplicate Exception, so
	// that an upsert of Readings by (meter, channel, time) never overwrites
	// the reading that was applied.
	Readings []Validated
	// Intervals holds the interval values this message created or changed.
	// Write them as upserts keyed by (meter, Channel, Start): an interval
	// is re-emitted whenever its value, quality or flags change (an
	// estimate replaced by measured consumption, a re-sequenced reading,
	// an interval filling up), and a later entry for the same key, in this
	// Output or a later one, supersedes an earlier one.
	Intervals []Interval
	// Exceptions holds one entry per rule firing, for per-meter, per-rule
	// counts and for review. A rule fires once per event: re-sequencing
	// that reshapes an already counted gap, rollover or reset does not
	// count it again.
	Exceptions []Exception
}

// Reset empties o for the next Apply, keeping its storage.
func (o *Output) Reset() {
	o.Duplicate = false
	o.Readings = o.Readings[:0]
	o.Intervals = o.Intervals[:0]
	o.Exceptions = o.Exceptions[:0]
}

// Validated is one reading after validation. Both the reading as sent and
// the validated form are kept: Raw and MeterTime never change, Time may be
// corrected for clock skew, and Flags say what the rules found.
type Validated struct {
	Channel meter.Channel
	// Time is the reading's time after clock-skew correction (MeterTime
	// when no correction applies).
	Time time.Time
	// MeterTime is the time the meter sent.
	MeterTime time.Time
	// Raw is the value the meter sent.
	Raw meter.Value
	// Value is the validated value. Value rules flag readings rather than
	// edit them (consumption is corrected on the intervals instead), so in
	// this version it always equals Raw; readings that were not used are
	// told apart by Flags and Late.
	Value meter.Value
	// Quality is Edited when Time was corrected, else Measured.
	Quality meter.Quality
	// Flags holds every rule that fired for this reading; for an applied
	// register reading this includes the classification of the
	// consumption since the previous read (rollover, reset, over_max,
	// spike, gap, profile) as it was when the reading arrived.
	Flags Flag
	// Late is set when the reading was older than the reorder window: it is
	// kept raw only and changed no interval (billing adjusts, see
	// docs/vee.md).
	Late bool
}

// Applied reports whether the reading was used: a register reading was
// sequenced into its channel's intervals, an instantaneous reading counts
// toward the meter's newest time.
func (v *Validated) Applied() bool {
	return v.Flags&(FlagLate|FlagFuture) == 0 && !(v.Flags&FlagOutOfRange != 0 && v.isRegister())
}

func (v *Validated) isRegister() bool {
	i, ok := meter.Lookup(v.Channel)
	return ok && i.Kind == meter.Register
}

// Interval is the consumption of one register channel over one interval of
// the grid [Start, Start+Rules.Interval).
type Interval struct {
	Channel meter.Channel
	Start   time.Time
	// Quantity is the consumption attributed to the interval, never
	// negative. Consumption between two reads is split over the intervals
	// they span in proportion to time (or to the learned profile for long
	// gaps), in integer arithmetic, so that the quantities of a channel
	// always add up exactly to the register advance between its first and
	// last read, rollovers included and resets excluded.
	Quantity meter.Value
	// Quality is Measured when every read span touching the interval is at
	// most Rules.MeasuredSpan long between reads with trusted times;
	// Estimated when a span is a gap or ends at a read whose time was
	// found skewed but not corrected yet; Edited when a rule set its
	// consumption (reset or impossible jump excluded) or a read's time was
	// corrected. Edited wins over Estimated.
	Quality meter.Quality
	// Flags holds the rules that shaped the interval: FlagGap, FlagProfile,
	// FlagRollover, FlagReset, FlagOverMax, FlagSpike, FlagClockSkew,
	// FlagTimeCorrected.
	Flags Flag
	// Partial is set while the interval is not covered by reads from start
	// to end (it holds the meter's newest or first read): its Quantity
	// will grow when the next read arrives.
	Partial bool
}

// Exception is one firing of one rule.
type Exception struct {
	Rule Rule
	// Channel is empty for rules about the whole message (duplicate
	// messages, clock skew, sequence resets).
	Channel meter.Channel
	// Time is the time of the reading the rule fired for (the end of the
	// read span for span rules), or of the message.
	Time   time.Time
	Detail string
}

// Rule names a VEE rule. The values are stable: they label per-rule
// counters and are stored with exceptions.
type Rule string

const (
	RuleDuplicate  Rule = "duplicate"
	RuleOutOfOrder Rule = "out_of_order"
	RuleLate       Rule = "late"
	RuleRollover   Rule = "rollover"
	RuleMeterReset Rule = "meter_reset"
	RuleOverMax    Rule = "over_max"
	RuleSpike      Rule = "spike"
	RuleGap        Rule = "gap"
	RuleClockSkew  Rule = "clock_skew"
	RuleOutOfRange Rule = "out_of_range"
	RuleSeqReset   Rule = "seq_reset"
)

// Flag is a set of rules that fired for a reading or shaped an interval.
type Flag uint32

const (
	// FlagOutOfOrder: the register reading arrived after a newer one of
	// its channel and was re-sequenced.
	FlagOutOfOrder Flag = 1 << iota
	// FlagLate: older than the reorder window; kept raw, not applied.
	FlagLate
	// FlagRollover: the register wrapped past its modulus since the
	// previous read.
	FlagRollover
	// FlagReset: the register went down without a plausible rollover (meter
	// reset or replacement); no consumption attributed since the previous
	// read.
	FlagReset
	// FlagOverMax: the register rose faster than the meter physically can;
	// no consumption attributed since the previous read.
	FlagOverMax
	// FlagSpike: the consumption rate since the previous read is far above
	// the channel's recent baseline; kept as measured.
	FlagSpike
	// FlagGap: the previous read is more than Rules.MeasuredSpan older;
	// the consumption between them is estimated.
	FlagGap
	// FlagProfile: the gap was estimated by the learned profile rather
	// than linearly.
	FlagProfile
	// FlagClockSkew: the message's time is off the receive time by more
	// than Rules.SkewThreshold in a way a backlog does not explain.
	FlagClockSkew
	// FlagTimeCorrected: Time was shifted by the meter's established clock
	// offset.
	FlagTimeCorrected
	// FlagFuture: the time is more than Rules.MaxFuture ahead of the
	// receive time even after correction; kept raw, not applied.
	FlagFuture
	// FlagOutOfRange: the value is outside the channel's plausible range
	// (an instantaneous channel's Range, or a register outside 0 to its
	// modulus, which is then not applied).
	FlagOutOfRange
	// FlagRefined: an estimated stretch of a gap was re-split by a late
	// read inside it; still estimated, but bounded by a real read.
	FlagRefined
)

// segFlags are the flags that describe a read span and reach intervals.
const segFlags = FlagRollover | FlagReset | FlagOverMax | FlagSpike | FlagGap | FlagProfile | FlagClockSkew | FlagTimeCorrected | FlagRefined

var flagNames = [...]string{
	"out_of_order", "late", "rollover", "reset", "over_max", "spike", "gap",
	"profile", "clock_skew", "time_corrected", "future", "out_of_range", "refined",
}

// String lists the flags' names joined by "|", in bit order.
func (f Flag) String() string {
	var b strings.Builder
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(n)
		}
	}
	return b.String()
}

// qualityOf derives an interval's quality from the flags of the read spans
// that reach it.
func qualityOf(f Flag) meter.Quality {
	switch {
	case f&(FlagReset|FlagOverMax|FlagTimeCorrected) != 0:
		return meter.Edited
	case f&(FlagGap|FlagClockSkew) != 0:
		return meter.Estimated
	}
	return meter.Measured
}
