package vee

import (
	"fmt"
	"math"
	"time"

	"github.com/meterflow/meterflow/internal/meter"
)

// noTime marks a time not known yet.
const noTime = math.MinInt64

// maxSeqRanges bounds the sequence ranges a State remembers; see markSeq.
const maxSeqRanges = 16

// State is everything VEE remembers about one meter between messages: the
// sequence numbers it has applied, its clock offset, and per register
// channel the reads still open to re-sequencing, a spike baseline and a
// learned hour-of-week profile. A 15-minute meter with one register
// channel holds about 1.5 KiB of memory (Size) and encodes to about 600
// bytes once its profile is learned (MarshalBinary); each further
// register channel adds about as much.
//
// A State belongs to the one worker that owns its meter and is not safe
// for concurrent use. It is a pure function of the messages applied to it
// and the arguments of those calls: a State reloaded with UnmarshalBinary
// continues exactly as the one that was saved, which is what makes replay
// after a crash safe.
type State struct {
	meter   string
	utility meter.Utility
	newest  int64 // newest applied reading time, Unix ms, or noTime
	maxSent int64 // newest message time as sent, Unix ms, or noTime
	seqs    []seqRange
	clock   clock
	regs    []register
}

// seqRange is a run of applied sequence numbers, lo to hi inclusive.
type seqRange struct{ lo, hi uint64 }

// NewState returns the state of a meter VEE has not seen yet.
func NewState(meterID string, u meter.Utility) *State {
	return &State{meter: meterID, utility: u, newest: noTime, maxSent: noTime}
}

// Meter returns the meter's ID.
func (s *State) Meter() string { return s.meter }

// Utility returns the meter's utility.
func (s *State) Utility() meter.Utility { return s.utility }

// Apply validates one decoded message of the meter, updates the state and
// appends what it produced to out (which it does not Reset).
//
// received is the time the broker received the message, as recorded with
// it in the journal: Apply compares it with the meter's clock, so a replay
// must pass the original time, never the time of the replay.
//
// Applying a message that was already applied is detected as a duplicate:
// out.Duplicate is set, one duplicate Exception is appended and nothing
// changes. Any sequence of messages applied to a State, whatever their
// order, leaves every register channel's intervals (the latest value
// emitted for each key) adding up to the register's advance between its
// first and last applied read, rollovers added back and spans across a
// reset or an impossible jump excluded; see docs/vee.md for each rule.
func (s *State) Apply(r *Rules, msg meter.Message, received time.Time, out *Output) {
	if len(msg.Readings) == 0 {
		s.markSeq(msg.Seq)
		return
	}
	msgTime := msg.Readings[0].Time
	sent := msgTime.UnixMilli()
	restart := false
	if s.seqSeen(msg.Seq) {
		if sent <= s.maxSent {
			s.duplicate(msgTime, "sequence number already applied", out)
			return
		}
		// A seen number with a newer time than any message before it is
		// not a replay: the meter's counter started again.
		restart = true
	}
	recv := received.UnixMilli()
	clk, shift, skewed := s.clock.evaluate(r, msg.Seq, sent, recv)
	if s.allApplied(msg, shift) {
		s.duplicate(msgTime, "every reading's time and value already applied", out)
		return
	}

	if restart {
		s.seqs = s.seqs[:0]
		out.Exceptions = append(out.Exceptions, Exception{Rule: RuleSeqReset, Time: msgTime,
			Detail: fmt.Sprintf("sequence number %d was applied to an older message: the meter's counter restarted", msg.Seq)})
	}
	s.markSeq(msg.Seq)
	s.maxSent = max(s.maxSent, sent)
	s.clock = clk
	var msgFlags Flag
	if skewed {
		msgFlags |= FlagClockSkew
		out.Exceptions = append(out.Exceptions, Exception{Rule: RuleClockSkew, Time: msgTime, Detail: skewDetail(sent-recv, shift)})
	}
	if shift != 0 {
		msgFlags |= FlagTimeCorrected
	}
	maxFuture := r.MaxFuture.Milliseconds()
	for _, rd := range msg.Readings {
		v := Validated{
			Channel:   rd.Channel,
			Time:      rd.Time,
			MeterTime: rd.Time,
			Raw:       rd.Value,
			Value:     rd.Value,
			Quality:   meter.Measured,
			Flags:     msgFlags,
		}
		t := rd.Time.UnixMilli() - shift
		if shift != 0 {
			v.Time = rd.Time.Add(-time.Duration(shift) * time.Millisecond)
			v.Quality = meter.Edited
		}
		if t-recv > maxFuture {
			v.Flags |= FlagFuture
			out.Readings = append(out.Readings, v)
			continue
		}
		if info, ok := meter.Lookup(rd.Channel); ok && info.Kind == meter.Register {
			s.applyRegister(r, &v, t, out)
		} else {
			s.applyInstant(r, &v, t, out)
		}
	}
}

// duplicate reports a whole message as already applied.
func (s *State) duplicate(at time.Time, detail string, out *Output) {
	out.Duplicate = true
	out.Exceptions = append(out.Exceptions, Exception{Rule: RuleDuplicate, Time: at, Detail: detail})
}

// cut is the oldest time a reading may have and still be sequenced.
func (s *State) cut(r *Rules) int64 {
	if s.newest == noTime {
		return noTime
	}
	return s.newest - r.ReorderWindow.Milliseconds()
}

func (s *State) applyInstant(r *Rules, v *Validated, t int64, out *Output) {
	if rg, ok := r.Ranges[v.Channel]; ok && (v.Raw < rg.Min || v.Raw > rg.Max) {
		v.Flags |= FlagOutOfRange
		out.Exceptions = append(out.Exceptions, Exception{Rule: RuleOutOfRange, Channel: v.Channel, Time: v.Time,
			Detail: fmt.Sprintf("%s outside %s to %s", v.Raw, rg.Min, rg.Max)})
	}
	if t < s.cut(r) {
		v.Flags |= FlagLate
		v.Late = true
	}
	s.newest = max(s.newest, t)
	out.Readings = append(out.Readings, *v)
}

func (s *State) applyRegister(r *Rules, v *Validated, t int64, out *Output) {
	rr := r.Registers[v.Channel]
	if v.Raw < 0 || (rr.Modulus > 0 && v.Raw >= rr.Modulus) {
		v.Flags |= FlagOutOfRange
		out.Exceptions = append(out.Exceptions, Exception{Rule: RuleOutOfRange, Channel: v.Channel, Time: v.Time,
			Detail: fmt.Sprintf("register %s outside 0 to %s", v.Raw, rr.Modulus)})
		out.Readings = append(out.Readings, *v)
		return
	}
	g := s.register(v.Channel)
	if i, found := g.find(t); found {
		detail := "same time and value already applied"
		if have := g.reads[i].raw; have != v.Raw {
			detail = fmt.Sprintf("time already applied with %s; %s ignored", have, v.Raw)
		}
		out.Exceptions = append(out.Exceptions, Exception{Rule: RuleDuplicate, Channel: v.Channel, Time: v.Time, Detail: detail})
		return
	}
	if g.late(t, s.cut(r)) {
		v.Flags |= FlagLate
		v.Late = true
		behind := time.Duration(s.newest-t) * time.Millisecond
		detail := fmt.Sprintf("%s behind the newest reading: kept raw, intervals unchanged", behind)
		if used, clamped := g.refine(r, t, v.Raw, out); used {
			v.Flags |= FlagRefined
			detail = fmt.Sprintf("%s behind the newest reading: the estimated gap around it re-split at this read", behind)
			if clamped {
				detail += " (the read lies outside the gap's estimate and was held to it)"
			}
		}
		out.Exceptions = append(out.Exceptions, Exception{Rule: RuleLate, Channel: v.Channel, Time: v.Time, Detail: detail})
		out.Readings = append(out.Readings, *v)
		return
	}
	x := read{t: t, raw: v.Raw}
	switch {
	case v.Flags&FlagTimeCorrected != 0:
		x.bits |= bitCorrected
	case v.Flags&FlagClockSkew != 0:
		x.bits |= bitSkewed
	}
	f, outOfOrder := g.insert(r, &rr, x, out)
	// The span's clock flags may come from the read before; the reading's
	// own are already set.
	v.Flags |= f &^ (FlagClockSkew | FlagTimeCorrected)
	if outOfOrder {
		v.Flags |= FlagOutOfOrder
		out.Exceptions = append(out.Exceptions, Exception{Rule: RuleOutOfOrder, Channel: v.Channel, Time: v.Time,
			Detail: fmt.Sprintf("%s behind the channel's newest read: re-sequenced", time.Duration(g.reads[len(g.reads)-1].t-t)*time.Millisecond)})
	}
	out.Readings = append(out.Readings, *v)
	s.newest = max(s.newest, t)
	g.trim(r, &rr, s.cut(r))
}

// register returns the state of channel c, creating it.
func (s *State) register(c meter.Channel) *register {
	if g := s.findRegister(c); g != nil {
		return g
	}
	s.regs = append(s.regs, register{ch: c, first: noTime})
	return &s.regs[len(s.regs)-1]
}

func (s *State) findRegister(c meter.Channel) *register {
	for i := range s.regs {
		if s.regs[i].ch == c {
			return &s.regs[i]
		}
	}
	return nil
}

// allApplied reports whether msg repeats what was already applied under
// another sequence number: every register reading's (corrected) time and
// value are already in its channel, and every other reading has the time
// of one of them. A message without register readings is never a
// duplicate by content, only by sequence number.
func (s *State) allApplied(msg meter.Message, shift int64) bool {
	if t := msg.Readings[0].Time.UnixMilli() - shift; s.newest == noTime || t > s.newest {
		return false // the common case: a new message
	}
	var regTime time.Time
	n := 0
	for _, rd := range msg.Readings {
		if info, ok := meter.Lookup(rd.Channel); !ok || info.Kind != meter.Register {
			continue
		}
		g := s.findRegister(rd.Channel)
		if g == nil {
			return false
		}
		i, found := g.find(rd.Time.UnixMilli() - shift)
		if !found || g.reads[i].raw != rd.Value {
			return false
		}
		regTime = rd.Time
		n++
	}
	if n == 0 {
		return false
	}
	for _, rd := range msg.Readings {
		if !rd.Time.Equal(regTime) {
			if info, ok := meter.Lookup(rd.Channel); !ok || info.Kind != meter.Register {
				return false
			}
		}
	}
	return true
}

// seqSeen reports whether sequence number q was applied.
func (s *State) seqSeen(q uint64) bool {
	for i := len(s.seqs) - 1; i >= 0; i-- {
		if q > s.seqs[i].hi {
			return false
		}
		if q >= s.seqs[i].lo {
			return true
		}
	}
	return false
}

// markSeq records q as applied. The ranges stay sorted and disjoint; a
// meter counting without gaps needs one. When more than maxSeqRanges
// are needed (a meter losing messages, or deriving its numbers from time
// as SenML packs do), the oldest range is forgotten: a message numbered
// inside it is then judged by its readings' times, and is most likely
// late.
func (s *State) markSeq(q uint64) {
	i := len(s.seqs)
	for i > 0 && s.seqs[i-1].lo > q {
		i--
	}
	// q goes after s.seqs[i-1] (whose lo <= q) and before s.seqs[i].
	switch {
	case i > 0 && q <= s.seqs[i-1].hi:
		return
	case i > 0 && q == s.seqs[i-1].hi+1:
		s.seqs[i-1].hi = q
		if i < len(s.seqs) && s.seqs[i].lo == q+1 {
			s.seqs[i-1].hi = s.seqs[i].hi
			s.seqs = append(s.seqs[:i], s.seqs[i+1:]...)
		}
		return
	case i < len(s.seqs) && s.seqs[i].lo == q+1:
		s.seqs[i].lo = q
		return
	}
	if s.seqs == nil {
		s.seqs = make([]seqRange, 0, 4)
	}
	s.seqs = append(s.seqs, seqRange{})
	copy(s.seqs[i+1:], s.seqs[i:])
	s.seqs[i] = seqRange{q, q}
	if len(s.seqs) > maxSeqRanges {
		s.seqs = append(s.seqs[:0], s.seqs[1:]...)
	}
}

// clock follows the offset between a meter's clock and the server's
// receive times. All times are Unix milliseconds.
type clock struct {
	corr     int64 // established correction: meter time minus true time
	cand     int64 // offset being confirmed
	candN    uint8 // consistent messages seen for cand
	hasPrev  bool
	prevSeq  uint64 // the newest message by sequence number
	prevSent int64
	prevRecv int64
}

// evaluate judges one message's clock and returns the clock state after
// it (not yet committed: a duplicate message must change nothing), the
// correction to subtract from its times, and whether it is skewed.
//
// A message ahead of its receive time by more than the threshold is
// always skewed. One behind it may just be old (a backlog sent after an
// outage); it is skewed only when it is live: it follows the previous
// message in sequence order and its receive time advanced about as much as
// its meter time (within the tolerance, and by at least half), so that its
// offset is steady rather than catching up as a backlog's does. Ahead and
// live messages are evidence of the meter's clock offset; SkewConfirm of
// them in a row with consistent offsets establish the correction (zero if
// within the threshold).
//
// The correction is applied only to messages whose own offset is beyond
// the threshold and whose corrected time is not in the future: a time
// that looks right is never edited, and a backlog of a meter with a slow
// clock is corrected as its live messages are.
func (c clock) evaluate(r *Rules, seq uint64, sent, recv int64) (next clock, shift int64, skewed bool) {
	thr, tol := r.SkewThreshold.Milliseconds(), r.SkewTolerance.Milliseconds()
	off := sent - recv
	ahead := off > thr
	live := false
	if c.hasPrev && seq > c.prevSeq {
		dSent, dRecv := sent-c.prevSent, recv-c.prevRecv
		live = dSent > 0 && 2*dRecv >= dSent && abs(dSent-dRecv) <= tol
	}
	behind := off < -thr && live
	next = c
	if ahead || live {
		if next.candN > 0 && abs(off-next.cand) <= tol {
			next.candN = min(next.candN+1, math.MaxUint8)
		} else {
			next.cand, next.candN = off, 1
		}
		if int(next.candN) >= r.SkewConfirm {
			next.corr = 0
			if abs(next.cand) > thr {
				next.corr = roundSecond(next.cand)
			}
		}
	}
	if !c.hasPrev || seq > c.prevSeq {
		next.hasPrev, next.prevSeq, next.prevSent, next.prevRecv = true, seq, sent, recv
	}
	if next.corr != 0 && abs(off) > thr && off-next.corr <= tol {
		shift = next.corr
	}
	return next, shift, ahead || behind
}

func skewDetail(off, shift int64) string {
	dir := "ahead of"
	if off < 0 {
		dir = "behind"
	}
	d := fmt.Sprintf("meter time %s %s receive time", time.Duration(abs(off))*time.Millisecond, dir)
	if shift != 0 {
		d += fmt.Sprintf(", corrected by %s", time.Duration(-shift)*time.Millisecond)
	}
	return d
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// roundSecond rounds ms to whole seconds, half away from zero.
func roundSecond(ms int64) int64 {
	if ms < 0 {
		return -roundSecond(-ms)
	}
	return (ms + 500) / 1000 * 1000
}
