package vee

import (
	"testing"
	"time"

	"github.com/meterflow/meterflow/internal/meter"
)

// benchStream feeds a State the messages of a typical electricity meter:
// every 15 minutes, a few seconds after the boundary, the import register,
// active power, voltage and current, received two seconds later.
type benchStream struct {
	msg  meter.Message
	at   time.Time
	reg  meter.Value
	step int
}

func newBenchStream() *benchStream {
	return &benchStream{
		msg: meter.Message{Meter: testMeter, Readings: []meter.Reading{
			{Channel: imp}, {Channel: power}, {Channel: voltage}, {Channel: current},
		}},
		at:  t0,
		reg: 12_345_678,
	}
}

// next advances the stream by one message, in place.
func (b *benchStream) next() (meter.Message, time.Time) {
	b.step++
	b.msg.Seq = uint64(b.step)
	b.at = t0.Add(time.Duration(b.step)*15*time.Minute + time.Duration(b.step%7)*time.Second)
	// Between 0 and about 1 kWh per quarter hour, varying with the hour.
	use := meter.Value((b.step*7919)%1000 + (b.step/4%24)*20)
	b.reg = (b.reg + use) % (1_000_000 * meter.Scale)
	rs := b.msg.Readings
	rs[0].Value = b.reg
	rs[1].Value = use * 4
	rs[2].Value = 230_000 + meter.Value(b.step%2000)
	rs[3].Value = use * 17
	for i := range rs {
		rs[i].Time = b.at
	}
	return b.msg, b.at.Add(2 * time.Second)
}

// BenchmarkApply applies a steady 4-channel electricity stream, reporting
// the cost per reading; the state and output are warmed up first so that
// the loop measures the steady state.
func BenchmarkApply(b *testing.B) {
	r := DefaultRules(meter.Electricity)
	s := NewState(testMeter, meter.Electricity)
	st := newBenchStream()
	var out Output
	for range 7 * 96 { // a week: baseline and profile learned
		out.Reset()
		m, rx := st.next()
		s.Apply(&r, m, rx, &out)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		out.Reset()
		m, rx := st.next()
		s.Apply(&r, m, rx, &out)
		n += len(m.Readings)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/reading")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "readings/s")
	enc, _ := s.MarshalBinary()
	b.ReportMetric(float64(len(enc)), "state-bytes")
}

// BenchmarkApplyReordered is BenchmarkApply with every tenth message
// delivered after the one that follows it and every fiftieth delivered
// twice: the re-sequencing and duplicate paths, whose exceptions allocate.
func BenchmarkApplyReordered(b *testing.B) {
	r := DefaultRules(meter.Electricity)
	s := NewState(testMeter, meter.Electricity)
	st := newBenchStream()
	var out Output
	held := meter.Message{Readings: make([]meter.Reading, 4)}
	var heldRx time.Time
	holding := false
	apply := func(m meter.Message, rx time.Time) {
		out.Reset()
		s.Apply(&r, m, rx, &out)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		m, rx := st.next()
		switch {
		case st.step%10 == 0:
			held.Seq = m.Seq
			copy(held.Readings, m.Readings)
			heldRx, holding = rx, true
			continue
		case holding:
			apply(m, rx)
			apply(held, heldRx.Add(time.Second))
			holding = false
			n += 2 * len(m.Readings)
			continue
		case st.step%50 == 1:
			apply(m, rx)
			n += len(m.Readings)
		}
		apply(m, rx)
		n += len(m.Readings)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/reading")
}

// weekOldState returns the state of a meter after a week of the bench
// stream, encoded.
func weekOldState(b *testing.B) *State {
	r := DefaultRules(meter.Electricity)
	s := NewState(testMeter, meter.Electricity)
	st := newBenchStream()
	var out Output
	for range 7 * 96 {
		out.Reset()
		m, rx := st.next()
		s.Apply(&r, m, rx, &out)
	}
	return s
}

func BenchmarkMarshalBinary(b *testing.B) {
	s := weekOldState(b)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = s.AppendBinary(buf[:0])
	}
	b.ReportMetric(float64(len(buf)), "bytes")
}

func BenchmarkUnmarshalBinary(b *testing.B) {
	buf, err := weekOldState(b).MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	var back State
	b.ReportAllocs()
	for b.Loop() {
		if err := back.UnmarshalBinary(buf); err != nil {
			b.Fatal(err)
		}
	}
}
