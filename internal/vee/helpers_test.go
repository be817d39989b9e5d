package vee

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meterflow/meterflow/internal/meter"
)

const (
	testMeter = "MTR-000001"
	imp       = meter.Channel("1-0:1.8.0")
	exp       = meter.Channel("1-0:2.8.0")
	power     = meter.Channel("1-0:1.7.0")
	voltage   = meter.Channel("1-0:32.7.0")
	current   = meter.Channel("1-0:31.7.0")
)

// t0 is a Monday midnight UTC.
var t0 = time.Date(2025, 11, 17, 0, 0, 0, 0, time.UTC)

// msg builds a message of readings at one time.
func msg(seq uint64, at time.Time, rs ...meter.Reading) meter.Message {
	for i := range rs {
		if rs[i].Time.IsZero() {
			rs[i].Time = at
		}
	}
	return meter.Message{Meter: testMeter, Seq: seq, Readings: rs}
}

func reg(c meter.Channel, v meter.Value) meter.Reading { return meter.Reading{Channel: c, Value: v} }

// ikey is what the sinks upsert intervals by.
type ikey struct {
	ch    meter.Channel
	start int64
}

// sink keeps what an idempotent writer would hold: the latest Interval by
// key, and the applied readings.
type sink struct {
	intervals map[ikey]Interval
	outputs   int
}

func newSink() *sink { return &sink{intervals: map[ikey]Interval{}} }

func (k *sink) add(o *Output) {
	k.outputs++
	for _, iv := range o.Intervals {
		k.intervals[ikey{iv.Channel, iv.Start.UnixMilli()}] = iv
	}
}

func (k *sink) total(c meter.Channel) meter.Value {
	var sum meter.Value
	for key, iv := range k.intervals {
		if key.ch == c {
			sum += iv.Quantity
		}
	}
	return sum
}

// sorted lists the sink's intervals by channel and start.
func (k *sink) sorted() []Interval {
	out := make([]Interval, 0, len(k.intervals))
	for _, iv := range k.intervals {
		out = append(out, iv)
	}
	slices.SortFunc(out, func(a, b Interval) int {
		if c := strings.Compare(string(a.Channel), string(b.Channel)); c != 0 {
			return c
		}
		return a.Start.Compare(b.Start)
	})
	return out
}

// ruleCounts counts exceptions by rule.
func ruleCounts(outs ...*Output) map[Rule]int {
	m := map[Rule]int{}
	for _, o := range outs {
		for _, e := range o.Exceptions {
			m[e.Rule]++
		}
	}
	return m
}

const timeFmt = "2006-01-02T15:04:05.000Z07:00"

// render writes an Output one item a line, for golden files and failure
// messages.
func render(b *strings.Builder, o *Output) {
	if o.Duplicate {
		b.WriteString("  duplicate\n")
	}
	for _, v := range o.Readings {
		fmt.Fprintf(b, "  reading   %-10s %s %s", v.Channel, v.Time.UTC().Format(timeFmt), v.Raw)
		if !v.MeterTime.Equal(v.Time) {
			fmt.Fprintf(b, " sent=%s", v.MeterTime.UTC().Format(timeFmt))
		}
		if v.Value != v.Raw {
			fmt.Fprintf(b, " value=%s", v.Value)
		}
		fmt.Fprintf(b, " %s", v.Quality)
		if v.Flags != 0 {
			fmt.Fprintf(b, " [%s]", v.Flags)
		}
		if v.Late {
			b.WriteString(" late")
		}
		b.WriteByte('\n')
	}
	for _, iv := range o.Intervals {
		renderInterval(b, "  interval  ", iv)
	}
	for _, e := range o.Exceptions {
		fmt.Fprintf(b, "  exception %s %s %s: %s\n", e.Rule, e.Channel, e.Time.UTC().Format(timeFmt), e.Detail)
	}
}

func renderInterval(b *strings.Builder, prefix string, iv Interval) {
	fmt.Fprintf(b, "%s%-10s %s %10s %s", prefix, iv.Channel, iv.Start.UTC().Format("2006-01-02T15:04Z07:00"), iv.Quantity, iv.Quality)
	if iv.Flags != 0 {
		fmt.Fprintf(b, " [%s]", iv.Flags)
	}
	if iv.Partial {
		b.WriteString(" partial")
	}
	b.WriteByte('\n')
}
