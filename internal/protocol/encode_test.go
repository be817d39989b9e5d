package protocol

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
)

func TestAppendCompact(t *testing.T) {
	t1 := at(0)
	cases := []struct {
		name string
		m    meter.Message
		want string
	}{
		{
			name: "example of the spec",
			m: msg(1042, rd("1-0:1.8.0", t1, 12345678), rd("1-0:1.7.0", t1, 420),
				rd("1-0:32.7.0", t1, 231400), rd("1-0:31.7.0", t1, 1830)),
			want: `{"v":1,"seq":1042,"t":1763769600,"r":[{"c":"1-0:1.8.0","v":12345.678},{"c":"1-0:1.7.0","v":0.420},{"c":"1-0:32.7.0","v":231.400},{"c":"1-0:31.7.0","v":1.830}]}`,
		},
		{
			name: "milliseconds",
			m:    msg(0, rd("1-0:1.8.0", at(5), -5)),
			want: `{"v":1,"seq":0,"t":1763769600.005,"r":[{"c":"1-0:1.8.0","v":-0.005}]}`,
		},
		{
			name: "sub-millisecond times are truncated",
			m:    msg(0, rd("1-0:1.8.0", at(120).Add(999*time.Microsecond), 0)),
			want: `{"v":1,"seq":0,"t":1763769600.120,"r":[{"c":"1-0:1.8.0","v":0.000}]}`,
		},
		{
			name: "time zone does not matter",
			m:    msg(1, rd("1-0:1.8.0", at(0).In(time.FixedZone("CET", 3600)), 1)),
			want: `{"v":1,"seq":1,"t":1763769600,"r":[{"c":"1-0:1.8.0","v":0.001}]}`,
		},
		{
			name: "before the epoch",
			m:    msg(1, rd("1-0:1.8.0", time.UnixMilli(-1500), 1)),
			want: `{"v":1,"seq":1,"t":-1.500,"r":[{"c":"1-0:1.8.0","v":0.001}]}`,
		},
		{
			name: "largest seq",
			m:    msg(math.MaxUint64, rd("1-0:1.8.0", t1, math.MaxInt64)),
			want: `{"v":1,"seq":18446744073709551615,"t":1763769600,"r":[{"c":"1-0:1.8.0","v":9223372036854775.807}]}`,
		},
		{
			name: "strings are escaped",
			m:    msg(1, rd("a\"b\\c\x01", t1, 1)),
			want: `{"v":1,"seq":1,"t":1763769600,"r":[{"c":"a\"b\\c\u0001","v":0.001}]}`,
		},
		{
			name: "no readings",
			m:    msg(1),
			want: `{"v":1,"seq":1,"t":0,"r":[]}`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, "prefix"+c.want, string(AppendCompact([]byte("prefix"), c.m)))
		})
	}
}

func TestAppendCompactBatch(t *testing.T) {
	ms := []meter.Message{
		msg(1040, rd("1-0:1.8.0", at(-1800_000), 12345101)),
		msg(1041, rd("1-0:1.8.0", at(-900_000), 12345390), rd("1-0:1.7.0", at(-900_000), 1)),
	}
	want := `{"v":1,"b":[{"seq":1040,"t":1763767800,"r":[{"c":"1-0:1.8.0","v":12345.101}]},` +
		`{"seq":1041,"t":1763768700,"r":[{"c":"1-0:1.8.0","v":12345.390},{"c":"1-0:1.7.0","v":0.001}]}]}`
	assert.Equal(t, want, string(AppendCompactBatch(nil, ms)))
	assert.Equal(t, `{"v":1,"b":[]}`, string(AppendCompactBatch(nil, nil)))
}

// randomMessage returns a message Decode could have produced: distinct
// channels of utility u, a time in the accepted range, any value but
// math.MinInt64 (whose negation does not fit).
func randomMessage(rng *rand.Rand, u meter.Utility) meter.Message {
	chans := utilityChannels(u)
	rng.Shuffle(len(chans), func(i, j int) { chans[i], chans[j] = chans[j], chans[i] })
	chans = chans[:1+rng.IntN(len(chans))]
	ms := minTimeMs + rng.Int64N(testNow.UnixMilli()+DefaultMaxFuture.Milliseconds()-minTimeMs+1)
	if rng.IntN(2) == 0 {
		ms -= ms % 1000
	}
	m := meter.Message{Meter: testMeter, Seq: rng.Uint64()}
	for _, c := range chans {
		var v meter.Value
		switch rng.IntN(4) {
		case 0:
			v = meter.Value(rng.Int64N(1_000_000))
		case 1:
			v = meter.Value(-rng.Int64N(1_000_000))
		case 2:
			v = meter.Value(rng.Int64())
		default:
			v = -meter.Value(rng.Int64())
		}
		m.Readings = append(m.Readings, meter.Reading{Channel: c.Channel, Time: time.UnixMilli(ms).UTC(), Value: v})
	}
	return m
}

// utilityChannels lists a utility's channels in a stable order.
func utilityChannels(u meter.Utility) []meter.ChannelInfo {
	cs := meter.Channels(u)
	slices.SortFunc(cs, func(a, b meter.ChannelInfo) int {
		if a.Channel < b.Channel {
			return -1
		}
		if a.Channel > b.Channel {
			return 1
		}
		return 0
	})
	return cs
}

var utilities = []meter.Utility{meter.Electricity, meter.Water, meter.Gas}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		u := utilities[i%len(utilities)]
		m := randomMessage(rng, u)
		got, err := Decoder{}.Decode(nil, testMeter, u, AppendCompact(nil, m), testNow)
		require.NoError(t, err, "message %+v", m)
		require.Equal(t, []meter.Message{m}, got)
	}
	for i := range 50 {
		u := utilities[i%len(utilities)]
		ms := make([]meter.Message, 1+rng.IntN(MaxEntries))
		for j := range ms {
			ms[j] = randomMessage(rng, u)
		}
		got, err := Decoder{}.Decode(nil, testMeter, u, AppendCompactBatch(nil, ms), testNow)
		require.NoError(t, err)
		require.Equal(t, ms, got)
	}
}

// FuzzRoundTrip builds a valid message from the fuzzer's numbers and
// checks that encoding and decoding it gives it back.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(0), uint8(1), uint64(1042), int64(1763769600000), int64(12345678), int64(7))
	f.Add(uint8(1), uint8(3), uint64(0), int64(946684800000), int64(-1), int64(math.MaxInt64))
	f.Add(uint8(2), uint8(255), uint64(math.MaxUint64), int64(1763773200123), int64(math.MinInt64+1), int64(0))
	f.Fuzz(func(t *testing.T, uSel, chanMask uint8, seq uint64, ms, v0, step int64) {
		u := utilities[int(uSel)%len(utilities)]
		maxMs := testNow.UnixMilli() + DefaultMaxFuture.Milliseconds()
		if ms < minTimeMs || ms > maxMs {
			ms = minTimeMs + int64(uint64(ms)%uint64(maxMs-minTimeMs+1))
		}
		m := meter.Message{Meter: testMeter, Seq: seq}
		v := v0
		for i, c := range utilityChannels(u) {
			if chanMask&(1<<i) == 0 {
				continue
			}
			if v == math.MinInt64 {
				v++
			}
			m.Readings = append(m.Readings, meter.Reading{Channel: c.Channel, Time: time.UnixMilli(ms).UTC(), Value: meter.Value(v)})
			v += step
		}
		if len(m.Readings) == 0 {
			return
		}
		got, err := Decoder{}.Decode(nil, testMeter, u, AppendCompact(nil, m), testNow)
		require.NoError(t, err)
		require.Equal(t, []meter.Message{m}, got)
		got, err = Decoder{}.Decode(nil, testMeter, u, AppendCompactBatch(nil, []meter.Message{m, m}), testNow)
		require.NoError(t, err)
		require.Equal(t, []meter.Message{m, m}, got)
	})
}
