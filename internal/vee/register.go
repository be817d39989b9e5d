package vee

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/meterflow/meterflow/internal/meter"
)

// A register channel's state is the run of its recent reads in time order:
// every read inside the reorder window plus the newest one before it (the
// anchor), from which a re-sequenced read always finds its predecessor.
//
// Consumption lives on read spans: the span ending at read q starts at the
// read before it, p, and carries q.delta, the register advance from p to q
// (rollovers added back, resets and impossible jumps excluded). A span
// covers the grid intervals from floor(p) to the one holding q (or ending
// at q when q sits on a boundary); its delta is split over them in
// proportion to time or to the learned profile.
//
// Interval values are not stored. Each read keeps just enough to rebuild
// the interval it falls in without the spans before it: acc, what the spans
// up to the read put into the read's interval, and head, what the span
// after it puts there. The value of an interval holding reads is acc+head
// of its last read; an interval inside a span gets that span's share.
// Re-sequencing a read recomputes the one or two spans it touches, and
// every interval they cover is emitted again, so the latest value of every
// interval key always sums to the advance between the first and last read.
type read struct {
	t     int64       // Unix milliseconds, after clock correction
	raw   meter.Value // the register as read
	delta meter.Value // consumption of the span ending here
	acc   meter.Value // the interval's consumption up to this read
	head  meter.Value // the next span's share of this read's interval
	seg   Flag        // classification of the span ending here
	accF  Flag        // flags of the spans in acc
	bits  uint8
}

const (
	// bitCorrected marks a read whose time was corrected for clock skew.
	bitCorrected uint8 = 1 << iota
	// bitSkewed marks a read applied at the time it was sent although its
	// message was found skewed (no correction established yet).
	bitSkewed
	bitsMask = bitCorrected | bitSkewed
)

const (
	// baselineReady is how many measured spans the spike baseline needs
	// before the spike check starts.
	baselineReady = 8
	// baselineShift makes the baseline an exponentially weighted average
	// over about eight spans (two hours of 15-minute reads).
	baselineShift = 3
	// readsCap is the capacity a channel's read buffer starts with, enough
	// for a 15-minute meter and a two-hour window without growing.
	readsCap = 16
	// maxReads bounds Rules.MaxBuffered and the decoder.
	maxReads = 1 << 12
)

// register is one register channel of a meter.
type register struct {
	ch       meter.Channel
	first    int64 // time of the channel's first read ever, or noTime
	reads    []read
	baseline int64 // recent consumption rate, Value per hour
	baseN    uint8 // spans folded into baseline, saturating
	prof     *profile
	// arcs are the estimated stretches of recent gaps, in time order and
	// not overlapping, kept for Rules.LateHorizon so that a late read can
	// re-split one (refine).
	arcs []gapArc
}

// gapArc is the stretch of whole grid intervals strictly inside a gap span
// [from, to), with the register's estimated value at from and the
// consumption the estimate put into the stretch. The intervals at the
// span's ends also hold consumption from other spans, so they are never
// part of an arc.
type gapArc struct {
	from, to int64
	fromRaw  meter.Value
	sum      meter.Value
	flags    Flag
}

// maxArcs bounds the arcs a channel keeps.
const maxArcs = 64

// find returns the index of the read at time t and true, or the index a
// read at t would be inserted at and false. Reads mostly arrive newest
// last, so it searches from the end.
func (g *register) find(t int64) (int, bool) {
	i := len(g.reads)
	for i > 0 && g.reads[i-1].t >= t {
		i--
		if g.reads[i].t == t {
			return i, true
		}
	}
	return i, false
}

// late reports whether a read at t can no longer be sequenced: it is older
// than the cut (the meter's newest time minus the reorder window), or older
// than the first kept read when that one's predecessor was already dropped.
func (g *register) late(t, cut int64) bool {
	if t < cut {
		return true
	}
	return len(g.reads) > 0 && t < g.reads[0].t && g.reads[0].t != g.first
}

// insert sequences x into the channel, classifies the spans it creates,
// emits the intervals they cover and the exceptions they raise, and
// returns the classification of the span ending at x and whether x was
// older than the channel's newest read.
func (g *register) insert(r *Rules, rr *RegisterRule, x read, out *Output) (Flag, bool) {
	if g.reads == nil {
		g.reads = make([]read, 0, readsCap)
	}
	n := len(g.reads)
	pos, _ := g.find(x.t)
	// The span x splits, if any: its rules were already counted.
	var old Flag
	if pos > 0 && pos < n {
		old = g.reads[pos].seg
	}
	g.reads = append(g.reads, read{})
	copy(g.reads[pos+1:], g.reads[pos:n])
	g.reads[pos] = x
	if pos == 0 {
		g.first = x.t // late() let x in, so it precedes the first read
	}
	i0, i1 := max(pos-1, 0), min(pos+1, n)
	for i := i0 + 1; i <= i1; i++ {
		g.classify(r, rr, i)
		if fresh := g.reads[i].seg &^ old; fresh != 0 {
			g.raise(r, i, fresh, out)
		}
	}
	g.emit(r, i0, i1, out)
	return g.reads[pos].seg, pos < n
}

// classify computes the delta and flags of the span ending at reads[i]
// from its two reads alone (and, for the spike flag, the baseline), so
// that the spans of a set of reads come out the same whatever order the
// reads arrived in.
func (g *register) classify(r *Rules, rr *RegisterRule, i int) {
	p, q := &g.reads[i-1], &g.reads[i]
	span := q.t - p.t
	var f Flag
	if (p.bits|q.bits)&bitCorrected != 0 {
		f |= FlagTimeCorrected
	}
	if (p.bits|q.bits)&bitSkewed != 0 {
		f |= FlagClockSkew
	}
	if span > r.MeasuredSpan.Milliseconds() {
		f |= FlagGap
		if span > r.LinearGapMax.Milliseconds() && g.prof.usable() {
			f |= FlagProfile
		}
	}
	d := q.raw - p.raw
	limit := maxDelta(rr.MaxPerHour, span)
	switch {
	case d < 0 && rr.Modulus > 0 && d+rr.Modulus <= limit:
		d += rr.Modulus
		f |= FlagRollover
	case d < 0:
		d = 0
		f |= FlagReset
	case d > limit:
		d = 0
		f |= FlagOverMax
	}
	// The spike check allows one unit of quantisation in the delta, so
	// that reads seconds apart are not flagged for a rounding step.
	if d > 1 && rr.SpikeFactor > 0 && g.baseN >= baselineReady {
		rate := mulDivSat(uint64(d-1), uint64(msPerHour), uint64(span))
		ref := uint64(max(g.baseline, int64(rr.SpikeFloor), 1))
		if rate > ref*uint64(rr.SpikeFactor) {
			f |= FlagSpike
		}
	}
	q.delta, q.seg = d, f
}

// maxDelta is the most a register may advance in span milliseconds at
// maxPerHour, rounded up and plus one unit of quantisation; unlimited when
// maxPerHour is zero.
func maxDelta(maxPerHour meter.Value, span int64) meter.Value {
	if maxPerHour <= 0 {
		return math.MaxInt64
	}
	m := mulDivSat(uint64(maxPerHour), uint64(span)+uint64(msPerHour)-1, uint64(msPerHour))
	if m >= math.MaxInt64-1 {
		return math.MaxInt64
	}
	return meter.Value(m) + 1
}

// raise emits an exception for every counted rule in f, for the span
// ending at reads[i].
func (g *register) raise(r *Rules, i int, f Flag, out *Output) {
	q := &g.reads[i]
	p := &g.reads[i-1]
	at := time.UnixMilli(q.t).UTC()
	span := time.Duration(q.t-p.t) * time.Millisecond
	add := func(rule Rule, detail string) {
		out.Exceptions = append(out.Exceptions, Exception{Rule: rule, Channel: g.ch, Time: at, Detail: detail})
	}
	if f&FlagRollover != 0 {
		add(RuleRollover, fmt.Sprintf("%s to %s in %s: rollover, %s consumed", p.raw, q.raw, span, q.delta))
	}
	if f&FlagReset != 0 {
		add(RuleMeterReset, fmt.Sprintf("%s to %s in %s: reset or replaced, new baseline, no consumption attributed", p.raw, q.raw, span))
	}
	if f&FlagOverMax != 0 {
		add(RuleOverMax, fmt.Sprintf("%s to %s in %s: above the meter's maximum, new baseline, no consumption attributed", p.raw, q.raw, span))
	}
	if f&FlagSpike != 0 {
		add(RuleSpike, fmt.Sprintf("%s in %s: above %d times the baseline of %s per hour", q.delta, span, r.Registers[g.ch].SpikeFactor, meter.Value(g.baseline)))
	}
	if f&FlagGap != 0 {
		how := "linearly"
		if f&FlagProfile != 0 {
			how = "by profile"
		}
		add(RuleGap, fmt.Sprintf("%s without reads, %s estimated %s", span, q.delta, how))
	}
}

// emit recomputes the spans ending at reads[i0+1..i1] (already
// classified), emits every interval they cover, and brings acc up to date
// for the reads after i1 in i1's interval.
func (g *register) emit(r *Rules, i0, i1 int, out *Output) {
	if i0 == i1 {
		return
	}
	iv := r.Interval.Milliseconds()
	for i := i0; i < i1; i++ {
		p, q := &g.reads[i], &g.reads[i+1]
		f := floorDiv(p.t, iv)
		fq := floorDiv(q.t, iv)
		onBoundary := fq*iv == q.t
		l := fq // the last interval the span covers
		if onBoundary {
			l--
		}
		sf := q.seg
		var sp spreader
		sp.init(r, g.prof, p.t, q.t, f, l, q.delta, sf&FlagProfile != 0)
		p.head = sp.next()
		if fq != f {
			// p is the last read in its interval, which is now complete.
			g.out(r, f, p.acc+p.head, p.accF|sf, out)
		}
		var inner meter.Value
		for k := f + 1; k < l; k++ {
			share := sp.next()
			inner += share
			g.out(r, k, share, sf, out)
		}
		g.keepArc(r, p, q, f, l, inner)
		switch {
		case l > f && onBoundary:
			g.out(r, l, sp.next(), sf, out)
			q.acc, q.accF = 0, 0
		case l > f:
			q.acc, q.accF = sp.next(), sf
		case onBoundary:
			q.acc, q.accF = 0, 0
		default:
			q.acc, q.accF = p.acc+p.head, p.accF|sf
		}
	}
	// The interval holding reads[i1] changed too, unless i1 starts it.
	j := i1
	k := floorDiv(g.reads[j].t, iv)
	if k*iv == g.reads[j].t {
		return
	}
	for j+1 < len(g.reads) && floorDiv(g.reads[j+1].t, iv) == k {
		n := &g.reads[j+1]
		n.acc, n.accF = g.reads[j].acc+n.delta, g.reads[j].accF|n.seg
		j++
	}
	f := g.reads[j].accF
	if j+1 < len(g.reads) {
		f |= g.reads[j+1].seg
	}
	g.out(r, k, g.reads[j].acc+g.reads[j].head, f, out)
}

// out appends the value of interval k.
func (g *register) out(r *Rules, k int64, q meter.Value, f Flag, out *Output) {
	iv := r.Interval.Milliseconds()
	start := k * iv
	partial := start+iv > g.reads[len(g.reads)-1].t || start < g.first
	out.Intervals = append(out.Intervals, Interval{
		Channel:  g.ch,
		Start:    time.UnixMilli(start).UTC(),
		Quantity: q,
		Quality:  qualityOf(f),
		Flags:    f & segFlags,
		Partial:  partial,
	})
}

// trim drops the reads that can no longer be re-sequenced against: all
// before the anchor (the newest read older than cut) and any beyond
// Rules.MaxBuffered. Their spans are final, so they feed the baseline and
// the profile here, each exactly once.
func (g *register) trim(r *Rules, rr *RegisterRule, cut int64) {
	k := 0
	for k+1 < len(g.reads) && g.reads[k+1].t < cut {
		k++
	}
	k = max(k, len(g.reads)-r.MaxBuffered)
	if k <= 0 {
		return
	}
	for j := 1; j <= k; j++ {
		g.learn(r, rr, j)
	}
	n := copy(g.reads, g.reads[k:])
	g.reads = g.reads[:n]
}

// learn folds the final span ending at reads[j] into the spike baseline
// and the profile, when it was measured.
func (g *register) learn(r *Rules, rr *RegisterRule, j int) {
	p, q := &g.reads[j-1], &g.reads[j]
	if q.seg&(FlagGap|FlagReset|FlagOverMax) != 0 {
		return
	}
	span := q.t - p.t
	// Rates are capped far above any meter so that the spike threshold
	// (baseline times factor) stays inside int64.
	rate := min(mulDivSat(uint64(q.delta), uint64(msPerHour), uint64(span)), 1<<40)
	// A level shift (a new heater) should move the baseline within hours
	// rather than be flagged forever, but a single spike should not drag
	// it far: the input is capped at the spike threshold.
	in := int64(rate)
	if g.baseN >= baselineReady && rr.SpikeFactor > 0 {
		in = min(in, max(g.baseline, int64(rr.SpikeFloor), 1)*int64(rr.SpikeFactor))
	}
	if g.baseN == 0 {
		g.baseline = in
	} else {
		g.baseline += (in - g.baseline) >> baselineShift
	}
	if g.baseN < math.MaxUint8 {
		g.baseN++
	}
	if g.prof == nil {
		g.prof = new(profile)
	}
	g.prof.learn(hourOfWeek(p.t+span/2, r.Location), rate, rr.MaxPerHour)
}

// spreader splits a span's delta over the intervals it covers, one
// interval per next call, in proportion to each interval's weight (the
// milliseconds of the span inside it, times the profile's weight of its
// hour when spreading by profile). Shares are differences of
// floor(delta × cumulative weight / total weight), so they are exact
// integers that add up to delta.
type spreader struct {
	d, total, cum, taken uint64
	k, iv, pt, qt        int64
	prof                 *profile
	mean                 uint64
	loc                  *time.Location
}

func (s *spreader) init(r *Rules, prof *profile, pt, qt, f, l int64, d meter.Value, byProfile bool) {
	*s = spreader{d: uint64(d), k: f, iv: r.Interval.Milliseconds(), pt: pt, qt: qt}
	if d == 0 {
		return
	}
	if !byProfile || !prof.usable() {
		s.total = uint64(qt - pt)
		return
	}
	s.prof, s.mean, s.loc = prof, prof.mean(), r.Location
	for k := f; k <= l; k++ {
		s.total += s.weight(k)
	}
}

func (s *spreader) weight(k int64) uint64 {
	lo, hi := max(k*s.iv, s.pt), min((k+1)*s.iv, s.qt)
	w := uint64(hi - lo)
	if s.prof != nil {
		w *= s.prof.weight(hourOfWeek(k*s.iv, s.loc), s.mean)
	}
	return w
}

func (s *spreader) next() meter.Value {
	if s.d == 0 {
		return 0
	}
	s.cum += s.weight(s.k)
	s.k++
	v := mulDiv(s.d, s.cum, s.total)
	share := v - s.taken
	s.taken = v
	return meter.Value(share)
}

// keepArc records the whole intervals f+1..l-1 of the gap span p→q as an
// arc, replacing the arcs the span now covers (a re-sequenced read inside
// an older gap makes new spans, and their own arcs).
func (g *register) keepArc(r *Rules, p, q *read, f, l int64, inner meter.Value) {
	iv := r.Interval.Milliseconds()
	g.dropArcs(p.t, q.t)
	if r.LateHorizon <= 0 || q.seg&FlagGap == 0 || q.seg&(FlagReset|FlagOverMax) != 0 || l-1 < f+1 {
		return
	}
	a := gapArc{from: (f + 1) * iv, to: l * iv, fromRaw: g.wrap(r, p.raw+p.head), sum: inner, flags: q.seg & segFlags}
	i := len(g.arcs)
	for i > 0 && g.arcs[i-1].from > a.from {
		i--
	}
	g.arcs = slices.Insert(g.arcs, i, a)
	g.pruneArcs(r, q.t)
}

// dropArcs removes the arcs that overlap [from, to).
func (g *register) dropArcs(from, to int64) {
	g.arcs = slices.DeleteFunc(g.arcs, func(a gapArc) bool { return a.from < to && a.to > from })
}

// pruneArcs drops arcs that ended more than LateHorizon before now, and
// the oldest beyond maxArcs.
func (g *register) pruneArcs(r *Rules, now int64) {
	cut := now - r.LateHorizon.Milliseconds()
	g.arcs = slices.DeleteFunc(g.arcs, func(a gapArc) bool { return a.to < cut })
	if n := len(g.arcs) - maxArcs; n > 0 {
		g.arcs = slices.Delete(g.arcs, 0, n)
	}
}

// wrap brings a register value into [0, modulus) when the channel has one.
func (g *register) wrap(r *Rules, v meter.Value) meter.Value {
	if m := r.Registers[g.ch].Modulus; m > 0 {
		v %= m
		if v < 0 {
			v += m
		}
	}
	return v
}

// refine uses a late read (t, raw) that falls strictly inside an arc: the
// arc's consumption is split at t, raw minus the register at the arc's
// start before t and the rest after, each spread as the gap was (linearly
// or by profile), and every interval of the arc is emitted again. The
// arc's total is kept, so the sum of a channel's intervals still equals
// its register advance; a read outside what the arc can hold (below its
// start or above its end, as estimated) is clamped to it. The arc becomes
// the two whole-interval stretches on either side of the interval holding
// t. It reports whether the read was used, and whether it was clamped.
func (g *register) refine(r *Rules, t int64, raw meter.Value, out *Output) (used, clamped bool) {
	i := slices.IndexFunc(g.arcs, func(a gapArc) bool { return a.from < t && t < a.to })
	if i < 0 {
		return false, false
	}
	a := g.arcs[i]
	off := raw - a.fromRaw
	if m := r.Registers[g.ch].Modulus; m > 0 && off < 0 && a.flags&FlagRollover != 0 {
		off += m
	}
	switch {
	case off < 0:
		off, clamped = 0, true
	case off > a.sum:
		off, clamped = a.sum, true
	}
	iv := r.Interval.Milliseconds()
	kFrom, kT, kTo := a.from/iv, floorDiv(t, iv), a.to/iv
	onBoundary := kT*iv == t
	byProfile := a.flags&FlagProfile != 0
	flags := a.flags | FlagRefined
	// Before t: intervals kFrom..kT-1, and kT's part before t.
	lastBefore := kT
	if onBoundary {
		lastBefore = kT - 1
	}
	var before, after spreader
	before.init(r, g.prof, a.from, t, kFrom, lastBefore, off, byProfile)
	after.init(r, g.prof, t, a.to, kT, kTo-1, a.sum-off, byProfile)
	var sumBefore, sumAfter meter.Value
	for k := kFrom; k < kT; k++ {
		v := before.next()
		sumBefore += v
		g.out(r, k, v, flags, out)
	}
	firstAfter := after.next()
	if onBoundary {
		g.out(r, kT, firstAfter, flags, out)
	} else {
		g.out(r, kT, before.next()+firstAfter, flags, out)
	}
	for k := kT + 1; k < kTo; k++ {
		v := after.next()
		sumAfter += v
		g.out(r, k, v, flags, out)
	}
	// What is left refinable: the whole intervals on either side of t's.
	left := gapArc{from: a.from, to: kT * iv, fromRaw: a.fromRaw, sum: sumBefore, flags: a.flags | FlagRefined}
	// The register at the right stretch's start follows the split (it is
	// raw there, or after t's interval raw plus its share, unless clamped).
	right := gapArc{from: (kT + 1) * iv, to: a.to, fromRaw: g.wrap(r, a.fromRaw+off+firstAfter), sum: sumAfter, flags: a.flags | FlagRefined}
	if onBoundary {
		right.from, right.fromRaw, right.sum = kT*iv, g.wrap(r, a.fromRaw+off), sumAfter+firstAfter
	}
	var repl []gapArc
	for _, x := range []gapArc{left, right} {
		if x.from < x.to {
			repl = append(repl, x)
		}
	}
	g.arcs = slices.Replace(g.arcs, i, i+1, repl...)
	return true, clamped
}
