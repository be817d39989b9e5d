package vee

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
)

func TestDefaultRulesValid(t *testing.T) {
	for _, u := range []meter.Utility{meter.Electricity, meter.Water, meter.Gas} {
		r := DefaultRules(u)
		require.NoError(t, r.Validate(), u)
		for _, c := range meter.Channels(u) {
			if c.Kind == meter.Register {
				assert.Contains(t, r.Registers, c.Channel, "%s: register without a rule", u)
			} else {
				assert.Contains(t, r.Ranges, c.Channel, "%s: instantaneous channel without a range", u)
			}
		}
	}
}

func TestRulesValidateJoinsProblems(t *testing.T) {
	r := DefaultRules(meter.Electricity)
	r.Interval = 7 * time.Minute
	r.MeasuredSpan = time.Minute
	r.SkewConfirm = 0
	r.MaxFuture = time.Second
	r.Registers["1-0:1.7.0"] = RegisterRule{}
	r.Registers[imp] = RegisterRule{Modulus: 1000, SpikeFactor: -1}
	r.Ranges[voltage] = Range{Min: 10, Max: 1}
	err := r.Validate()
	require.Error(t, err)
	for _, want := range []string{
		"interval 7m0s: must divide 24h",
		"measured span 1m0s",
		"skew confirm 0",
		"max future 1s",
		`register rule for "1-0:1.7.0": not a register channel`,
		"register 1-0:1.8.0: a modulus needs max per hour",
		"register 1-0:1.8.0: spike factor -1",
		"range of 1-0:32.7.0: min 0.010 above max 0.001",
	} {
		assert.Contains(t, err.Error(), want)
	}
}

// stream returns n in-order messages of a 15-minute electricity meter
// whose import register wraps partway, with jitter.
func stream(n int, seed uint64) []arrival {
	rng := rand.New(rand.NewPCG(seed, 1))
	v := meter.Value(999_990 * meter.Scale)
	var as []arrival
	for i := range n {
		at := t0.Add(time.Duration(i)*15*time.Minute + time.Duration(rng.IntN(20))*time.Second)
		v = (v + meter.Value(rng.IntN(800))) % (1_000_000 * meter.Scale)
		m := msg(uint64(i+1), at, reg(imp, v), reg(power, meter.Value(rng.IntN(3000))), reg(voltage, 230_000), reg(current, 4_000))
		as = append(as, arrival{m: m, recv: at.Add(2 * time.Second)})
	}
	return as
}

func TestStateRoundTrip(t *testing.T) {
	r := DefaultRules(meter.Electricity)
	as := stream(3*96, 1)
	s := NewState(testMeter, meter.Electricity)
	var out Output
	for _, a := range as[:2*96] {
		s.Apply(&r, a.m, a.recv, &out)
	}
	b, err := s.MarshalBinary()
	require.NoError(t, err)
	t.Logf("state after two days: %d bytes encoded, about %d bytes in memory", len(b), s.Size())

	var back State
	require.NoError(t, back.UnmarshalBinary(b))
	assert.Equal(t, s.Meter(), back.Meter())
	assert.Equal(t, s.Utility(), back.Utility())
	b2, err := back.MarshalBinary()
	require.NoError(t, err)
	assert.Equal(t, b, b2, "re-encoding differs")

	// Applying after a reload gives exactly what applying without one does.
	for _, a := range as[2*96:] {
		var o1, o2 Output
		s.Apply(&r, a.m, a.recv, &o1)
		back.Apply(&r, a.m, a.recv, &o2)
		require.Equal(t, o1, o2)
	}
	// Including replays of what the saved state had already seen.
	for _, a := range as[96 : 2*96] {
		var o1, o2 Output
		s.Apply(&r, a.m, a.recv, &o1)
		back.Apply(&r, a.m, a.recv, &o2)
		require.True(t, o1.Duplicate)
		require.Equal(t, o1, o2)
	}
}

func TestUnmarshalRejects(t *testing.T) {
	r := DefaultRules(meter.Electricity)
	s := NewState(testMeter, meter.Electricity)
	var out Output
	for _, a := range stream(40, 2) {
		s.Apply(&r, a.m, a.recv, &out)
	}
	good, err := s.MarshalBinary()
	require.NoError(t, err)

	cases := map[string][]byte{
		"empty":          nil,
		"not a state":    []byte("hello"),
		"future version": append([]byte("vee\x03"), good[4:]...),
		"trailing bytes": append(append([]byte{}, good...), 0),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			var st State
			assert.Error(t, st.UnmarshalBinary(b))
		})
	}
	// Every truncation fails cleanly and leaves the receiver alone.
	for n := range len(good) {
		st := *NewState("keep", meter.Gas)
		require.Error(t, st.UnmarshalBinary(good[:n]), "truncated to %d bytes", n)
		require.Equal(t, "keep", st.Meter())
	}
}

func FuzzUnmarshalBinary(f *testing.F) {
	r := DefaultRules(meter.Electricity)
	s := NewState(testMeter, meter.Electricity)
	var out Output
	for _, a := range stream(300, 3) {
		s.Apply(&r, a.m, a.recv, &out)
	}
	good, err := s.MarshalBinary()
	require.NoError(f, err)
	f.Add(good)
	empty, err := NewState(testMeter, meter.Water).MarshalBinary()
	require.NoError(f, err)
	f.Add(empty)
	next := stream(310, 3)[300:]
	f.Fuzz(func(t *testing.T, b []byte) {
		var st State
		if st.UnmarshalBinary(b) != nil {
			return
		}
		// A state that decodes re-encodes to the same bytes, and Apply on
		// it does not panic. (Apply is skipped for states whose reads are
		// years from the stream: the intervals of such a gap are many
		// millions, legitimately.)
		again, err := st.MarshalBinary()
		require.NoError(t, err)
		require.Equal(t, b, again)
		near := func(ms int64) bool { return ms == noTime || abs(ms-t0.UnixMilli()) < 30*24*msPerHour }
		ok := near(st.newest)
		for _, g := range st.regs {
			ok = ok && near(g.first)
			for _, rd := range g.reads {
				ok = ok && near(rd.t)
			}
		}
		if !ok {
			return
		}
		for _, a := range next {
			out.Reset()
			st.Apply(&r, a.m, a.recv, &out)
		}
	})
}

func TestDuplicateChangesNothing(t *testing.T) {
	r := DefaultRules(meter.Electricity)
	s := NewState(testMeter, meter.Electricity)
	as := stream(20, 4)
	var out Output
	for _, a := range as {
		s.Apply(&r, a.m, a.recv, &out)
	}
	before, err := s.MarshalBinary()
	require.NoError(t, err)
	for i, a := range as {
		out.Reset()
		// A replay, late or not, with the original receive time or a new one.
		s.Apply(&r, a.m, a.recv.Add(time.Duration(i)*time.Hour), &out)
		require.True(t, out.Duplicate, "message %d", i)
		require.Empty(t, out.Readings)
		require.Empty(t, out.Intervals)
		require.Equal(t, []Exception{{Rule: RuleDuplicate, Time: a.m.Readings[0].Time, Detail: "sequence number already applied"}}, out.Exceptions)
		after, err := s.MarshalBinary()
		require.NoError(t, err)
		require.Equal(t, before, after)
	}
}

// TestGapProfile checks that once a meter has a week of history, a long gap
// is spread by its profile: the evening peak the meter shows every day
// gets the lion's share of an overnight gap, and the sum stays exact.
func TestGapProfile(t *testing.T) {
	r := DefaultRules(meter.Electricity)
	s := NewState(testMeter, meter.Electricity)
	k := newSink()
	v := meter.Value(5_000 * meter.Scale)
	use := func(at time.Time) meter.Value {
		if h := at.Hour(); h >= 18 && h < 22 {
			return 800 // 3.2 kWh/h in the evening
		}
		return 50 // 0.2 kWh/h otherwise
	}
	apply := func(seq uint64, at time.Time) *Output {
		var out Output
		s.Apply(&r, msg(seq, at, reg(imp, v)), at.Add(2*time.Second), &out)
		k.add(&out)
		return &out
	}
	at := t0
	seq := uint64(1)
	for ; at.Before(t0.Add(8 * 24 * time.Hour)); at = at.Add(15 * time.Minute) {
		apply(seq, at)
		v += use(at)
		seq++
	}
	// The meter goes quiet from 12:00 on day 8 until 06:00 on day 9.
	gapStart := at.Add(12 * time.Hour)
	for ; at.Before(gapStart); at = at.Add(15 * time.Minute) {
		apply(seq, at)
		v += use(at)
		seq++
	}
	before := v
	var truth meter.Value
	for ; at.Before(gapStart.Add(18 * time.Hour)); at = at.Add(15 * time.Minute) {
		v += use(at)
		truth += use(at)
	}
	out := apply(seq, at)
	require.Equal(t, truth, v-before)

	var inGap, evening meter.Value
	n := 0
	for _, iv := range out.Intervals {
		if iv.Start.Before(gapStart) || !iv.Start.Before(at) {
			continue
		}
		n++
		assert.Equal(t, meter.Estimated, iv.Quality)
		assert.Equal(t, FlagGap|FlagProfile, iv.Flags)
		inGap += iv.Quantity
		if h := iv.Start.Hour(); h >= 18 && h < 22 {
			evening += iv.Quantity
		}
	}
	assert.Equal(t, 72, n)
	assert.Equal(t, truth, inGap, "a gap's intervals add up to the register advance")
	// The evening holds 16 of 72 intervals but 12.8 of 15.6 kWh; a flat
	// spread would give it 22%.
	assert.Greater(t, evening*100/inGap, meter.Value(70), "evening share %s of %s", evening, inGap)
	assert.Contains(t, ruleCounts(out), RuleGap)
	assert.Equal(t, v-5_000*meter.Scale, k.total(imp))
}

// TestClockFixed: a meter 10 minutes fast is corrected; when its clock is
// set right, its times are taken as sent at once (a time that looks right
// is never edited) and the correction is withdrawn after SkewConfirm
// messages.
func TestClockFixed(t *testing.T) {
	r := DefaultRules(meter.Electricity)
	s := NewState(testMeter, meter.Electricity)
	v := meter.Value(100 * meter.Scale)
	step := func(i int, skew time.Duration) *Output {
		real := t0.Add(time.Duration(i) * 15 * time.Minute)
		var out Output
		v += 250
		s.Apply(&r, msg(uint64(i+1), real.Add(skew), reg(imp, v)), real.Add(time.Second), &out)
		return &out
	}
	for i := range 6 {
		step(i, 10*time.Minute)
	}
	require.Equal(t, int64(10*60*1000-1000), s.clock.corr)
	for i := 6; i < 12; i++ {
		out := step(i, 0)
		require.Len(t, out.Readings, 1)
		assert.Zero(t, out.Readings[0].Flags&(FlagTimeCorrected|FlagClockSkew), "message %d", i)
		assert.True(t, out.Readings[0].Applied())
	}
	assert.Zero(t, s.clock.corr, "correction withdrawn")
}

// TestBacklogOfSlowMeter: once a slow clock's offset is established, the
// backlog it sends after an outage is corrected too.
func TestBacklogOfSlowMeter(t *testing.T) {
	r := DefaultRules(meter.Electricity)
	s := NewState(testMeter, meter.Electricity)
	v := meter.Value(100 * meter.Scale)
	var out Output
	send := func(i int, recv time.Time) {
		real := t0.Add(time.Duration(i) * 15 * time.Minute)
		v += 250
		out.Reset()
		s.Apply(&r, msg(uint64(i+1), real.Add(-time.Hour), reg(imp, v)), recv, &out)
	}
	for i := range 8 {
		send(i, t0.Add(time.Duration(i)*15*time.Minute+time.Second))
	}
	require.Equal(t, int64(-3601000), s.clock.corr)
	// Offline for three hours, then the backlog in one burst.
	burst := t0.Add(11 * time.Hour)
	for i := 8; i < 20; i++ {
		send(i, burst)
		require.Len(t, out.Readings, 1)
		rd := out.Readings[0]
		assert.Equal(t, FlagTimeCorrected, rd.Flags&(FlagTimeCorrected|FlagClockSkew|FlagLate), "message %d", i)
		assert.Equal(t, t0.Add(time.Duration(i)*15*time.Minute+time.Second), rd.Time, "message %d", i)
	}
}

// TestMaxBuffered: a meter reading every 10 seconds keeps at most
// MaxBuffered reads per channel; a read older than the oldest kept is late
// even inside the window.
func TestMaxBuffered(t *testing.T) {
	r := DefaultRules(meter.Electricity)
	r.MaxBuffered = 32
	s := NewState(testMeter, meter.Electricity)
	k := newSink()
	v := meter.Value(0)
	var out Output
	for i := range 200 {
		if i == 100 {
			continue // arrives at the end
		}
		at := t0.Add(time.Duration(i) * 10 * time.Second)
		out.Reset()
		s.Apply(&r, msg(uint64(i+1), at, reg(imp, v+meter.Value(i))), at.Add(time.Second), &out)
		k.add(&out)
		require.LessOrEqual(t, len(s.regs[0].reads), r.MaxBuffered)
	}
	out.Reset()
	at := t0.Add(100 * 10 * time.Second)
	s.Apply(&r, msg(101, at, reg(imp, 100)), t0.Add(time.Hour), &out)
	require.Len(t, out.Readings, 1)
	assert.True(t, out.Readings[0].Late)
	assert.Equal(t, meter.Value(199), k.total(imp))
}

func TestSeqRanges(t *testing.T) {
	s := NewState(testMeter, meter.Electricity)
	for _, q := range []uint64{5, 6, 7, 10, 9, 8, 20, 3, 4, 22, 21} {
		s.markSeq(q)
	}
	assert.Equal(t, []seqRange{{3, 10}, {20, 22}}, s.seqs)
	for q, want := range map[uint64]bool{2: false, 3: true, 10: true, 11: false, 19: false, 21: true, 23: false} {
		assert.Equal(t, want, s.seqSeen(q), "seq %d", q)
	}
	// Numbers derived from time leave a gap between every message: only the
	// newest maxSeqRanges are remembered.
	s = NewState(testMeter, meter.Electricity)
	for i := range uint64(40) {
		s.markSeq(1_000_000 + i*900_000)
	}
	assert.Len(t, s.seqs, maxSeqRanges)
	assert.False(t, s.seqSeen(1_000_000))
	assert.True(t, s.seqSeen(1_000_000+39*900_000))
}

// TestInstantaneousOnly: a message without register readings produces
// validated readings, no intervals, and is a duplicate only by sequence
// number.
func TestInstantaneousOnly(t *testing.T) {
	r := DefaultRules(meter.Electricity)
	s := NewState(testMeter, meter.Electricity)
	var out Output
	m := msg(1, t0, reg(voltage, 231_000), reg(current, 250_000))
	s.Apply(&r, m, t0.Add(time.Second), &out)
	require.Len(t, out.Readings, 2)
	assert.Empty(t, out.Intervals)
	assert.Equal(t, FlagOutOfRange, out.Readings[1].Flags)
	assert.Equal(t, map[Rule]int{RuleOutOfRange: 1}, ruleCounts(&out))
	out.Reset()
	s.Apply(&r, m, t0.Add(time.Minute), &out)
	assert.True(t, out.Duplicate)
}

func TestSteadyStateAllocs(t *testing.T) {
	r := DefaultRules(meter.Electricity)
	s := NewState(testMeter, meter.Electricity)
	st := newBenchStream()
	var out Output
	for range 2 * 96 {
		out.Reset()
		m, rx := st.next()
		s.Apply(&r, m, rx, &out)
	}
	allocs := testing.AllocsPerRun(500, func() {
		out.Reset()
		m, rx := st.next()
		s.Apply(&r, m, rx, &out)
	})
	assert.Zero(t, allocs)
}

func TestFlagString(t *testing.T) {
	assert.Equal(t, "", Flag(0).String())
	assert.Equal(t, "rollover|gap|time_corrected", (FlagRollover | FlagGap | FlagTimeCorrected).String())
	assert.Len(t, flagNames, 13)
	assert.Equal(t, "refined", FlagRefined.String())
	assert.Equal(t, "out_of_range", FlagOutOfRange.String())
}

func TestHourOfWeek(t *testing.T) {
	loc, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Skip("no time zone database")
	}
	for _, at := range []time.Time{t0, t0.Add(-time.Millisecond), t0.Add(77 * time.Hour), time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)} {
		want := int(at.Weekday())*24 + at.Hour()
		assert.Equal(t, want, hourOfWeek(at.UnixMilli(), nil), at)
		l := at.In(loc)
		assert.Equal(t, int(l.Weekday())*24+l.Hour(), hourOfWeek(at.UnixMilli(), loc), at)
	}
}

func TestOutputReset(t *testing.T) {
	o := Output{Duplicate: true, Readings: make([]Validated, 2), Intervals: make([]Interval, 1), Exceptions: make([]Exception, 3)}
	o.Reset()
	assert.False(t, o.Duplicate)
	assert.Empty(t, o.Readings)
	assert.Equal(t, 2, cap(o.Readings))
	assert.Empty(t, o.Intervals)
	assert.Empty(t, o.Exceptions)
}

// TestRenderStable guards the golden format helpers themselves.
func TestRenderStable(t *testing.T) {
	var b strings.Builder
	renderInterval(&b, "", Interval{Channel: imp, Start: t0, Quantity: 1234, Quality: meter.Estimated, Flags: FlagGap, Partial: true})
	assert.Equal(t, "1-0:1.8.0  2025-11-17T00:00Z      1.234 estimated [gap] partial\n", b.String())
}
