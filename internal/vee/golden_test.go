package vee

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the outputs")

// goldenInput is the format of testdata/NAME.json: a meter's messages in
// arrival order, with optional overrides of the utility's default rules.
type goldenInput struct {
	Utility  meter.Utility `json:"utility"`
	Rules    ruleOverrides `json:"rules"`
	Messages []struct {
		Seq uint64 `json:"seq"`
		// T is the message time; Received defaults to T + Delay, and
		// Delay to 2s.
		T        time.Time `json:"t"`
		Received time.Time `json:"received"`
		Delay    string    `json:"delay"`
		R        []struct {
			C meter.Channel `json:"c"`
			V json.Number   `json:"v"`
		} `json:"r"`
	} `json:"messages"`
}

type ruleOverrides struct {
	ReorderWindow string `json:"reorder_window"`
	LinearGapMax  string `json:"linear_gap_max"`
	SkewConfirm   int    `json:"skew_confirm"`
}

func (o ruleOverrides) apply(t *testing.T, r *Rules) {
	dur := func(s string, d *time.Duration) {
		if s != "" {
			v, err := time.ParseDuration(s)
			require.NoError(t, err)
			*d = v
		}
	}
	dur(o.ReorderWindow, &r.ReorderWindow)
	dur(o.LinearGapMax, &r.LinearGapMax)
	if o.SkewConfirm != 0 {
		r.SkewConfirm = o.SkewConfirm
	}
}

// runGolden applies testdata/NAME.json and returns the rendered outputs,
// the final intervals by key and every Output.
func runGolden(t *testing.T, name string) (string, *sink, []Output) {
	raw, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var in goldenInput
	require.NoError(t, dec.Decode(&in))
	if in.Utility == "" {
		in.Utility = meter.Electricity
	}
	rules := DefaultRules(in.Utility)
	in.Rules.apply(t, &rules)
	require.NoError(t, rules.Validate())

	s := NewState(testMeter, in.Utility)
	k := newSink()
	outs := make([]Output, len(in.Messages))
	var b strings.Builder
	for i, m := range in.Messages {
		msg := meter.Message{Meter: testMeter, Seq: m.Seq}
		for _, r := range m.R {
			v, err := meter.ParseValue(r.V.String())
			require.NoError(t, err)
			msg.Readings = append(msg.Readings, meter.Reading{Channel: r.C, Time: m.T, Value: v})
		}
		rx := m.Received
		if rx.IsZero() {
			delay := 2 * time.Second
			if m.Delay != "" {
				delay, err = time.ParseDuration(m.Delay)
				require.NoError(t, err)
			}
			rx = m.T.Add(delay)
		}
		s.Apply(&rules, msg, rx, &outs[i])
		k.add(&outs[i])
		fmt.Fprintf(&b, "message seq=%d t=%s received=%s\n", m.Seq, m.T.UTC().Format(timeFmt), rx.UTC().Format(timeFmt))
		render(&b, &outs[i])
	}
	b.WriteString("\nfinal intervals\n")
	for _, iv := range k.sorted() {
		renderInterval(&b, "  ", iv)
	}
	b.WriteString("\ntotals\n")
	for _, c := range slices.Sorted(func(yield func(meter.Channel) bool) {
		seen := map[meter.Channel]bool{}
		for key := range k.intervals {
			if !seen[key.ch] {
				seen[key.ch] = true
				if !yield(key.ch) {
					return
				}
			}
		}
	}) {
		fmt.Fprintf(&b, "  %-10s %s\n", c, k.total(c))
	}
	enc, err := s.MarshalBinary()
	require.NoError(t, err)
	fmt.Fprintf(&b, "\nstate %d bytes encoded\n", len(enc))
	return b.String(), k, outs
}

// goldenCases names one case per rule. Each runs testdata/NAME.json, whose
// rendered outputs must match testdata/NAME.golden (run
// `go test -run TestGolden -update` after an intended change and review
// the diff), and checks what the case is about: how often each rule
// fired, and the channel totals.
var goldenCases = []struct {
	name   string
	rules  map[Rule]int
	totals map[meter.Channel]meter.Value
}{
	// Four channels every 15 minutes, a few seconds after the boundary:
	// nothing fires, every complete interval is measured.
	{"in_order", nil, map[meter.Channel]meter.Value{imp: 1_870}},
	// Reads on the boundaries and one inside an interval.
	{"boundary", nil, map[meter.Channel]meter.Value{imp: 1_000}},
	// A replay (same seq), a re-send under a new seq, and a conflicting
	// value for a time already applied.
	{"duplicate", map[Rule]int{RuleDuplicate: 3}, map[meter.Channel]meter.Value{imp: 500}},
	// A read arriving after a newer one, within the window: re-sequenced,
	// the gap it fills re-emitted as measured.
	{"out_of_order", map[Rule]int{RuleGap: 1, RuleOutOfOrder: 1}, map[meter.Channel]meter.Value{imp: 1_000}},
	// Two reads inside a gap arriving within the window.
	{"gap_filled", map[Rule]int{RuleGap: 1, RuleOutOfOrder: 2}, map[meter.Channel]meter.Value{imp: 1_000}},
	// A read older than the window: kept raw, intervals unchanged.
	{"late", map[Rule]int{RuleGap: 1, RuleLate: 1}, map[meter.Channel]meter.Value{imp: 3_000}},
	// A 45-minute gap, spread linearly.
	{"gap_linear", map[Rule]int{RuleGap: 1}, map[meter.Channel]meter.Value{imp: 1_600}},
	// A 6-hour gap before the meter has a profile: spread flat.
	{"gap_long_flat", map[Rule]int{RuleGap: 1}, map[meter.Channel]meter.Value{imp: 6_250}},
	// The register wraps from 999999.950 to 0.120.
	{"rollover", map[Rule]int{RuleRollover: 1}, map[meter.Channel]meter.Value{imp: 600}},
	// A water register wraps at 99999.999 m³.
	{"water_rollover", map[Rule]int{RuleRollover: 1}, map[meter.Channel]meter.Value{"8-0:1.0.0": 60}},
	// The register drops to 0.010 far from its modulus: a new meter.
	{"meter_reset", map[Rule]int{RuleMeterReset: 1}, map[meter.Channel]meter.Value{imp: 712}},
	// A corrupted read 80,000 kWh high: the jump up is impossible and the
	// fall back a reset, so no consumption is attributed around it.
	{"over_max", map[Rule]int{RuleOverMax: 1, RuleMeterReset: 1}, map[meter.Channel]meter.Value{imp: 500}},
	// Steady use, then 6 kWh/h (above ten times the baseline but under the
	// floor's threshold) and 24 kWh/h (flagged, kept as measured).
	{"spike", map[Rule]int{RuleSpike: 1}, map[meter.Channel]meter.Value{imp: 9_600}},
	// A meter 10 minutes fast: held until four messages agree on the
	// offset, then corrected.
	{"clock_skew_ahead", map[Rule]int{RuleClockSkew: 6}, map[meter.Channel]meter.Value{imp: 500}},
	// A meter an hour slow, sending live: flagged from its second message,
	// corrected from the fifth.
	{"clock_skew_behind", map[Rule]int{RuleClockSkew: 6, RuleGap: 1}, map[meter.Channel]meter.Value{imp: 1_500}},
	// A backlog after an outage, received in a burst: old but not skewed.
	{"backlog", nil, map[meter.Channel]meter.Value{imp: 3_000}},
	// An instantaneous value out of range is flagged and kept; a register
	// out of range is flagged and not applied, which leaves a gap.
	{"out_of_range", map[Rule]int{RuleOutOfRange: 3, RuleGap: 1}, map[meter.Channel]meter.Value{imp: 500}},
	// The meter's sequence counter starts again; a replay after that is
	// still a duplicate.
	{"seq_reset", map[Rule]int{RuleSeqReset: 1, RuleDuplicate: 1}, map[meter.Channel]meter.Value{imp: 1_000}},
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	var names []string
	for _, c := range goldenCases {
		names = append(names, c.name)
	}
	for _, f := range files {
		assert.Contains(t, names, strings.TrimSuffix(filepath.Base(f), ".json"), "testdata file without a case")
	}
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			got, k, outs := runGolden(t, c.name)
			golden := filepath.Join("testdata", c.name+".golden")
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			} else {
				want, err := os.ReadFile(golden)
				require.NoError(t, err, "run go test -run TestGolden -update to create it")
				assert.Equal(t, string(want), got)
			}
			counts := ruleCounts(ptrs(outs)...)
			if c.rules == nil {
				c.rules = map[Rule]int{}
			}
			assert.Equal(t, c.rules, counts, "rule firings")
			for ch, want := range c.totals {
				assert.Equal(t, want, k.total(ch), "total of %s", ch)
			}
		})
	}
}

func ptrs(outs []Output) []*Output {
	p := make([]*Output, len(outs))
	for i := range outs {
		p[i] = &outs[i]
	}
	return p
}
