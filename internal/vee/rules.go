package vee

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/meterflow/meterflow/internal/meter"
)

// Rules are the VEE settings for one utility and meter type. The ingest
// pipeline builds them once (DefaultRules, then overrides from
// configuration), checks them with Validate and passes the same *Rules to
// every Apply of the meters they cover. Apply never modifies them, so one
// Rules value may be shared by any number of goroutines.
//
// Interval is part of every State built with these rules: interval values
// in a State are kept on its grid, so a meter must keep the same Interval
// for its whole life (start a new State to change it). Every other setting
// may change between calls; a change applies from the next Apply on.
//
// docs/vee.md describes every rule, its settings and defaults.
type Rules struct {
	// Interval is the length of the interval grid consumption is reported
	// on, aligned to the Unix epoch (so 15 min, 30 min and 1 h intervals
	// start on the quarter, half and full hour in every whole-hour time
	// zone). It must divide 24 hours into whole milliseconds.
	Interval time.Duration
	// ReorderWindow is how far behind the newest applied reading of a meter
	// a reading may arrive and still be re-sequenced into the intervals.
	// Older readings are late: kept raw and counted, intervals unchanged.
	ReorderWindow time.Duration
	// MeasuredSpan is the longest time between two consecutive register
	// reads whose consumption is still Measured; a longer span is a gap and
	// its intervals are Estimated. The default, Interval plus a quarter,
	// tolerates meters that read a little after the interval boundary.
	MeasuredSpan time.Duration
	// LinearGapMax is the longest gap estimated linearly (in proportion to
	// time); longer gaps follow the meter's learned profile of consumption
	// by hour of the week, once it has one.
	LinearGapMax time.Duration
	// MaxBuffered caps the register reads a State keeps per channel for
	// re-sequencing, so that a meter reading every few seconds cannot grow
	// its state without bound; a reading older than the oldest kept one is
	// late even inside ReorderWindow.
	MaxBuffered int

	// SkewThreshold is how far a meter's clock may be from the server's
	// receive time before its messages are flagged as clock skew.
	SkewThreshold time.Duration
	// SkewTolerance is how close the clock offsets of successive messages
	// must be to count as one consistent offset.
	SkewTolerance time.Duration
	// SkewConfirm is how many messages in a row with a consistent offset
	// establish it (as the correction applied to the meter's times, or as
	// no correction when the offset is within SkewThreshold).
	SkewConfirm int
	// MaxFuture is how far ahead of the receive time a reading's time may
	// be, after any correction, and still be applied; readings further
	// ahead are kept raw only, so that a fast clock cannot drag the meter's
	// newest time into the future and make its real readings late.
	MaxFuture time.Duration
	// LateHorizon is how long the estimated stretches of gaps are kept in a
	// meter's state, so that a late read falling inside one can re-split it
	// (see docs/vee.md, late data). Zero turns this off: late reads then
	// change nothing.
	LateHorizon time.Duration

	// Location is the time zone whose weekday and hour the learned
	// consumption profile is kept by; nil means UTC. Only the profile uses
	// it: the interval grid is always epoch-aligned.
	Location *time.Location

	// Registers holds the checks of each cumulative register channel. A
	// register channel without an entry is still turned into intervals, with
	// no rollover, maximum or spike check.
	Registers map[meter.Channel]RegisterRule
	// Ranges holds the plausible range of each instantaneous channel; a
	// value outside it is flagged. A channel without an entry is not
	// range-checked.
	Ranges map[meter.Channel]Range
}

// RegisterRule holds the physical facts about one register channel that
// tell rollovers, meter resets and spikes apart.
type RegisterRule struct {
	// Modulus is the value at which the register wraps to zero: 10^digits of
	// the register's display, for example 1,000,000.000 kWh for a register
	// that shows 999999.999. Zero means the register never wraps; then a
	// read below the previous one is always a meter reset.
	Modulus meter.Value
	// MaxPerHour is the most the meter can physically register in one hour
	// (its rated maximum power or flow). A delta above MaxPerHour × elapsed
	// time is impossible and excluded; a wrap is a rollover only when the
	// wrapped delta stays within it. Zero disables both checks (allowed
	// only when Modulus is zero).
	MaxPerHour meter.Value
	// SpikeFactor flags a delta whose rate is more than SpikeFactor times
	// the channel's recent baseline rate; zero disables the check.
	SpikeFactor int
	// SpikeFloor is the least baseline rate (per hour) the spike check
	// compares with, so that a meter that has been using next to nothing is
	// not flagged for every kettle.
	SpikeFloor meter.Value
}

// Range is an inclusive range of plausible values of an instantaneous
// channel, in thousandths of the channel's unit.
type Range struct {
	Min, Max meter.Value
}

// DefaultRules returns the rules Meterflow uses for a utility's household
// meters unless configured otherwise. docs/vee.md lists the values and why.
func DefaultRules(u meter.Utility) Rules {
	r := Rules{
		Interval:      15 * time.Minute,
		ReorderWindow: 2 * time.Hour,
		MeasuredSpan:  15*time.Minute + 15*time.Minute/4,
		LinearGapMax:  2 * time.Hour,
		MaxBuffered:   128,
		SkewThreshold: 2 * time.Minute,
		SkewTolerance: 30 * time.Second,
		SkewConfirm:   4,
		MaxFuture:     5 * time.Minute,
		LateHorizon:   62 * 24 * time.Hour,
		Registers:     map[meter.Channel]RegisterRule{},
		Ranges:        map[meter.Channel]Range{},
	}
	switch u {
	case meter.Electricity:
		// A six-digit kWh register; 100 kW is above any household supply
		// (a 100 A three-phase connection is about 69 kW).
		reg := RegisterRule{Modulus: 1_000_000 * meter.Scale, MaxPerHour: 100 * meter.Scale, SpikeFactor: 10, SpikeFloor: 2 * meter.Scale}
		for _, c := range []meter.Channel{"1-0:1.8.0", "1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.0"} {
			r.Registers[c] = reg
		}
		r.Ranges["1-0:1.7.0"] = Range{0, 100 * meter.Scale}
		r.Ranges["1-0:2.7.0"] = Range{0, 100 * meter.Scale}
		r.Ranges["1-0:32.7.0"] = Range{0, 500 * meter.Scale}
		r.Ranges["1-0:31.7.0"] = Range{0, 200 * meter.Scale}
	case meter.Water:
		// A five-digit m³ register; 5 m³/h is the overload flow (Q4) of the
		// largest common household meter.
		r.Registers["8-0:1.0.0"] = RegisterRule{Modulus: 100_000 * meter.Scale, MaxPerHour: 5 * meter.Scale, SpikeFactor: 10, SpikeFloor: meter.Scale / 5}
		r.Ranges["8-0:2.0.0"] = Range{0, 5 * meter.Scale}
	case meter.Gas:
		// A five-digit m³ register; 10 m³/h is the maximum flow of a G6
		// meter, one size above the usual household G4.
		r.Registers["7-0:3.0.0"] = RegisterRule{Modulus: 100_000 * meter.Scale, MaxPerHour: 10 * meter.Scale, SpikeFactor: 10, SpikeFloor: meter.Scale / 2}
		r.Ranges["7-0:43.0.0"] = Range{0, 10 * meter.Scale}
	}
	return r
}

// Limits that keep every product in Apply inside int64.
const (
	maxModulus     = meter.Value(1) << 50
	maxSpikeFactor = 1000
	maxInterval    = 24 * time.Hour
	maxWindow      = 31 * 24 * time.Hour
)

// Validate reports every problem with r, joined.
func (r *Rules) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch {
	case r.Interval < time.Minute || r.Interval > maxInterval:
		bad("interval %s: want 1m to 24h", r.Interval)
	case (24*time.Hour)%r.Interval != 0 || r.Interval%time.Millisecond != 0:
		bad("interval %s: must divide 24h into whole milliseconds", r.Interval)
	}
	if r.ReorderWindow < 0 || r.ReorderWindow > maxWindow {
		bad("reorder window %s: want 0 to %s", r.ReorderWindow, maxWindow)
	}
	if r.MeasuredSpan < r.Interval {
		bad("measured span %s: want at least the interval %s", r.MeasuredSpan, r.Interval)
	}
	if r.LinearGapMax < r.MeasuredSpan {
		bad("linear gap max %s: want at least the measured span %s", r.LinearGapMax, r.MeasuredSpan)
	}
	if r.MaxBuffered < 2 || r.MaxBuffered > maxReads {
		bad("max buffered %d: want 2 to %d", r.MaxBuffered, maxReads)
	}
	if r.SkewThreshold <= 0 {
		bad("skew threshold %s: want more than 0", r.SkewThreshold)
	}
	if r.SkewTolerance <= 0 {
		bad("skew tolerance %s: want more than 0", r.SkewTolerance)
	}
	if r.SkewConfirm < 1 || r.SkewConfirm > 255 {
		bad("skew confirm %d: want 1 to 255", r.SkewConfirm)
	}
	if r.LateHorizon < 0 || r.LateHorizon > 366*24*time.Hour {
		bad("late horizon %s: want 0 to 366 days", r.LateHorizon)
	}
	if r.MaxFuture < r.SkewThreshold {
		bad("max future %s: want at least the skew threshold %s", r.MaxFuture, r.SkewThreshold)
	}
	for _, c := range slices.Sorted(maps.Keys(r.Registers)) {
		rr := r.Registers[c]
		if i, ok := meter.Lookup(c); !ok || i.Kind != meter.Register {
			bad("register rule for %q: not a register channel", c)
		}
		if rr.Modulus < 0 || rr.Modulus > maxModulus {
			bad("register %s: modulus %s out of range", c, rr.Modulus)
		}
		if rr.MaxPerHour < 0 || rr.MaxPerHour > maxModulus {
			bad("register %s: max per hour %s out of range", c, rr.MaxPerHour)
		}
		if rr.Modulus > 0 && rr.MaxPerHour == 0 {
			bad("register %s: a modulus needs max per hour to tell rollovers from resets", c)
		}
		if rr.SpikeFactor < 0 || rr.SpikeFactor > maxSpikeFactor {
			bad("register %s: spike factor %d: want 0 to %d", c, rr.SpikeFactor, maxSpikeFactor)
		}
		if rr.SpikeFloor < 0 || rr.SpikeFloor > maxModulus {
			bad("register %s: spike floor %s out of range", c, rr.SpikeFloor)
		}
	}
	for _, c := range slices.Sorted(maps.Keys(r.Ranges)) {
		rg := r.Ranges[c]
		if i, ok := meter.Lookup(c); !ok || i.Kind != meter.Instantaneous {
			bad("range for %q: not an instantaneous channel", c)
		}
		if rg.Min > rg.Max {
			bad("range of %s: min %s above max %s", c, rg.Min, rg.Max)
		}
	}
	return errors.Join(errs...)
}
