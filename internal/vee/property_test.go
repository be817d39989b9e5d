package vee

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
)

// The property tests generate a meter's true consumption on two register
// channels, read it at jittered times with gaps, deliver the messages in a
// shuffled order with delays, replays and re-sends, and check that the
// intervals an idempotent writer ends up with add up to the true
// consumption between the first and last reading VEE applied, resets
// excluded.

// scenarioKind selects what a scenario's registers do.
type scenarioKind uint8

const (
	// linear: rollovers, every gap estimated linearly, no spike check, so
	// that the final intervals depend only on the set of applied reads.
	kindLinear scenarioKind = iota
	// resets: meter resets instead of rollovers, and at most one corrupted
	// read (an impossible jump up and back), linear gaps.
	kindResets
	// profile: rollovers, long gaps spread by the learned profile, spike
	// check on: only the sum is order-independent.
	kindProfile
	numKinds
)

// propModulus is small enough for rollovers to come often; with resets,
// a large modulus keeps a reset or corrupted read from ever looking like a
// plausible rollover over the longest span a scenario can have (48 h).
func propModulus(kind scenarioKind) meter.Value {
	if kind == kindResets {
		return 100_000 * meter.Scale
	}
	return 10_000 * meter.Scale
}

// glitchJump is how far above the truth a corrupted read is.
const glitchJump = 40_000 * meter.Scale

var propChannels = [2]meter.Channel{imp, exp}

type arrival struct {
	m    meter.Message
	recv time.Time
}

type scenario struct {
	kind  scenarioKind
	rules Rules
	// arrivals in delivery order.
	arrivals []arrival
	// cum[c][t] is the true cumulative consumption of channel c at read
	// time t (Unix ms); resetAfter[c] holds the times of reads that are
	// the first after a reset; glitch[c] is the time of the corrupted
	// read, if any.
	cum        [2]map[int64]meter.Value
	resetAfter [2]map[int64]bool
	glitch     [2]int64
	times      []int64 // all read times, ascending
}

func propRules(kind scenarioKind) Rules {
	r := DefaultRules(meter.Electricity)
	// Skew detection is exercised elsewhere: here every message is old by
	// its delivery delay, and a correction would reorder reads.
	r.SkewThreshold = 1000 * time.Hour
	r.MaxFuture = 1000 * time.Hour
	regs := map[meter.Channel]RegisterRule{}
	for _, c := range propChannels {
		rr := r.Registers[c]
		rr.Modulus = propModulus(kind)
		if kind != kindProfile {
			rr.SpikeFactor = 0
		}
		regs[c] = rr
	}
	r.Registers = regs
	if kind != kindProfile {
		r.LinearGapMax = 1000 * time.Hour
	}
	return r
}

// genScenario builds a scenario of up to n reads from rng.
func genScenario(rng *rand.Rand, kind scenarioKind, n int) *scenario {
	sc := &scenario{kind: kind, rules: propRules(kind)}
	maxRate := int64(sc.rules.Registers[imp].MaxPerHour) / 2 // per hour, below the physical max
	var raw [2]meter.Value
	var cum [2]meter.Value
	mod := propModulus(kind)
	glitchAt := -1
	if kind == kindResets && rng.IntN(2) == 0 {
		glitchAt = 1 + rng.IntN(max(n-2, 1))
	}
	for c := range 2 {
		sc.cum[c] = map[int64]meter.Value{}
		sc.resetAfter[c] = map[int64]bool{}
		if kind == kindResets {
			raw[c] = meter.Value(rng.Int64N(int64(mod / 4)))
		} else {
			// Start near the top so that the register wraps.
			raw[c] = mod - meter.Value(rng.Int64N(200*meter.Scale))
		}
	}
	iv := int64(15 * time.Minute / time.Millisecond)
	t := t0.UnixMilli() + rng.Int64N(iv)
	end := t + int64(48*time.Hour/time.Millisecond) // resets stay implausible as rollovers
	for i := 0; i < n && t < end; i++ {
		sc.times = append(sc.times, t)
		for c := range 2 {
			sc.cum[c][t] = cum[c]
		}
		msg := meter.Message{Meter: testMeter, Seq: uint64(i + 1)}
		at := time.UnixMilli(t).UTC()
		for c := range 2 {
			v := raw[c]
			if i == glitchAt && v < mod/2 {
				v += glitchJump
				sc.glitch[c] = t
			}
			msg.Readings = append(msg.Readings, meter.Reading{Channel: propChannels[c], Time: at, Value: v})
		}
		msg.Readings = append(msg.Readings, meter.Reading{Channel: voltage, Time: at, Value: 230*meter.Scale + meter.Value(rng.Int64N(5000))})
		sc.arrivals = append(sc.arrivals, arrival{m: msg})

		// The next read time: mostly one interval on with jitter, sometimes
		// an extra read inside the interval, sometimes a gap.
		step := iv + rng.Int64N(60_000) - 30_000
		switch x := rng.IntN(100); {
		case x < 5:
			step = iv/3 + rng.Int64N(iv/3)
		case x < 15:
			step += iv * (1 + rng.Int64N(3))
		case x < 19:
			step += iv * (8 + rng.Int64N(24))
		case x < 22:
			step = iv * (1 + rng.Int64N(4)) // exactly on a boundary step
			step -= floorMod(t+step, iv)
			if step <= 0 {
				step += iv
			}
		}
		t += step
		for c := range 2 {
			used := meter.Value(rng.Int64N(maxRate*step/msPerHour + 1))
			if rng.IntN(10) == 0 {
				used = 0
			}
			cum[c] += used
			raw[c] = (raw[c] + used) % mod
			if kind == kindResets && rng.IntN(40) == 0 && raw[c] >= mod/10 && raw[c] < mod/2 {
				raw[c] = meter.Value(rng.Int64N(1000))
				sc.resetAfter[c][t] = true
			}
		}
	}
	sc.deliver(rng)
	return sc
}

// deliver shuffles the arrivals: each message is delayed (mostly a little,
// sometimes within the reorder window, sometimes beyond it), some are
// replayed with the same sequence number, some re-sent with a new one.
func (sc *scenario) deliver(rng *rand.Rand) {
	window := sc.rules.ReorderWindow.Milliseconds()
	type keyed struct {
		at int64
		a  arrival
	}
	var ks []keyed
	for i, a := range sc.arrivals {
		t := a.m.Readings[0].Time.UnixMilli()
		delay := rng.Int64N(10_000)
		switch x := rng.IntN(100); {
		case x < 15:
			delay = rng.Int64N(window * 9 / 10)
		case x < 20:
			delay = window + rng.Int64N(2*window)
		}
		ks = append(ks, keyed{t + delay, a})
		switch x := rng.IntN(100); {
		case x < 5: // a replay, as after a crash
			ks = append(ks, keyed{t + delay + rng.Int64N(window), a})
		case x < 8: // the same readings under a new number
			b := a
			b.m.Seq = uint64(1_000_000 + i)
			ks = append(ks, keyed{t + delay + rng.Int64N(window), b})
		}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return cmp.Compare(a.at, b.at) })
	sc.arrivals = sc.arrivals[:0]
	for _, k := range ks {
		k.a.recv = time.UnixMilli(k.at + 500).UTC()
		sc.arrivals = append(sc.arrivals, k.a)
	}
}

// run applies the arrivals to a fresh State, reloading it through
// MarshalBinary before message i when reload(i) says so, and returns the
// sink and every Output.
func (sc *scenario) run(t testing.TB, reload func(i int) bool) (*sink, []Output) {
	s := NewState(testMeter, meter.Electricity)
	k := newSink()
	outs := make([]Output, len(sc.arrivals))
	for i, a := range sc.arrivals {
		if reload != nil && reload(i) {
			b, err := s.MarshalBinary()
			require.NoError(t, err)
			s = new(State)
			require.NoError(t, s.UnmarshalBinary(b))
		}
		s.Apply(&sc.rules, a.m, a.recv, &outs[i])
		k.add(&outs[i])
	}
	return k, outs
}

// applied returns the times of the register reads of channel c that were
// applied, in time order.
func applied(outs []Output, c meter.Channel) []int64 {
	var ts []int64
	for i := range outs {
		for _, v := range outs[i].Readings {
			if v.Channel == c && v.Applied() {
				ts = append(ts, v.Time.UnixMilli())
			}
		}
	}
	slices.Sort(ts)
	return ts
}

// want is the true consumption between the applied reads of channel c,
// spans across a reset or to or from the corrupted read excluded.
func (sc *scenario) want(c int, ts []int64) meter.Value {
	var sum meter.Value
	for i := 1; i < len(ts); i++ {
		a, b := ts[i-1], ts[i]
		reset := sc.glitch[c] != 0 && (a == sc.glitch[c] || b == sc.glitch[c])
		for t := range sc.resetAfter[c] {
			if t > a && t <= b {
				reset = true
			}
		}
		if !reset {
			sum += sc.cum[c][b] - sc.cum[c][a]
		}
	}
	return sum
}

// inOrder builds the scenario's applied reads as messages in time order.
func (sc *scenario) inOrder(outs []Output) []arrival {
	byTime := map[int64][]meter.Reading{}
	for i := range outs {
		for _, v := range outs[i].Readings {
			if v.Applied() && v.Channel != voltage {
				byTime[v.Time.UnixMilli()] = append(byTime[v.Time.UnixMilli()], meter.Reading{Channel: v.Channel, Time: v.Time, Value: v.Raw})
			}
		}
	}
	var as []arrival
	for i, t := range slices.Sorted(func(yield func(int64) bool) {
		for t := range byTime {
			if !yield(t) {
				return
			}
		}
	}) {
		rs := byTime[t]
		slices.SortFunc(rs, func(a, b meter.Reading) int { return strings.Compare(string(a.Channel), string(b.Channel)) })
		as = append(as, arrival{m: meter.Message{Meter: testMeter, Seq: uint64(i + 1), Readings: rs}, recv: time.UnixMilli(t + 500).UTC()})
	}
	return as
}

// check runs sc and checks every property for its kind.
func (sc *scenario) check(t testing.TB, rng *rand.Rand) {
	k, outs := sc.run(t, nil)
	for c, ch := range propChannels {
		ts := applied(outs, ch)
		require.Equal(t, sc.want(c, ts), k.total(ch), "channel %s: sum of intervals", ch)
	}
	for _, iv := range k.intervals {
		require.GreaterOrEqual(t, iv.Quantity, meter.Value(0), "interval %v", iv)
		require.Zero(t, iv.Start.UnixMilli()%sc.rules.Interval.Milliseconds(), "interval off the grid")
	}

	// A reload through MarshalBinary anywhere changes nothing.
	reloadAt := rng.Uint64()
	_, again := sc.run(t, func(i int) bool { return (reloadAt>>(i%64))&1 == 1 })
	require.Equal(t, outs, again, "reloading the state changed the outputs")

	if sc.kind == kindProfile {
		return
	}
	// The final intervals depend only on the set of applied reads.
	ordered := scenario{rules: sc.rules, arrivals: sc.inOrder(outs)}
	k2, outs2 := ordered.run(t, nil)
	for i := range outs2 {
		for _, v := range outs2[i].Readings {
			require.True(t, v.Applied(), "in-order reading not applied: %+v", v)
		}
	}
	// Late reads that re-split an estimated gap (refined) are not among
	// the applied reads: the intervals they touched hold the same total as
	// in-order application, split differently; every other interval is
	// the same.
	got, want := k.sorted(), k2.sorted()
	require.Equal(t, len(want), len(got), "final interval keys differ from in-order application")
	refinedSum := map[meter.Channel][2]meter.Value{}
	for i := range got {
		g, w := got[i], want[i]
		require.Equal(t, w.Channel, g.Channel)
		require.True(t, w.Start.Equal(g.Start), "final interval keys differ from in-order application")
		if g.Flags&FlagRefined != 0 {
			s := refinedSum[g.Channel]
			refinedSum[g.Channel] = [2]meter.Value{s[0] + g.Quantity, s[1] + w.Quantity}
			continue
		}
		require.Equal(t, w, g, "final intervals differ from in-order application")
	}
	for c, s := range refinedSum {
		require.Equal(t, s[1], s[0], "channel %s: refined intervals hold what in-order application put there", c)
	}
}

func TestPropertyArrivalOrder(t *testing.T) {
	for kind := range numKinds {
		t.Run(fmt.Sprint([]string{"linear", "resets", "profile"}[kind]), func(t *testing.T) {
			t.Parallel()
			rounds := 150
			if testing.Short() {
				rounds = 20
			}
			for seed := range uint64(rounds) {
				rng := rand.New(rand.NewPCG(seed, uint64(kind)))
				sc := genScenario(rng, kind, 20+rng.IntN(200))
				t.Run(fmt.Sprint(seed), func(t *testing.T) { sc.check(t, rng) })
				if t.Failed() {
					return
				}
			}
		})
	}
}

func FuzzArrivalOrder(f *testing.F) {
	for seed := range uint64(8) {
		f.Add(seed, seed*7919, uint8(seed%uint64(numKinds)), uint8(40+seed*20))
	}
	f.Fuzz(func(t *testing.T, s1, s2 uint64, kind, n uint8) {
		rng := rand.New(rand.NewPCG(s1, s2))
		sc := genScenario(rng, scenarioKind(kind%uint8(numKinds)), 2+int(n))
		sc.check(t, rng)
	})
}
