package protocol

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
)

const testMeter = "MTR-000001"

// t0 is the time of the examples in docs/protocol.md, 2025-11-22T00:00:00Z;
// testNow, the server's clock in tests, is an hour later.
const t0 = 1763769600

var testNow = time.Unix(t0+3600, 0)

// at returns t0 plus ms milliseconds, as Decode returns times.
func at(ms int64) time.Time { return time.UnixMilli(t0*1000 + ms).UTC() }

func rd(ch meter.Channel, t time.Time, v meter.Value) meter.Reading {
	return meter.Reading{Channel: ch, Time: t, Value: v}
}

func msg(seq uint64, rs ...meter.Reading) meter.Message {
	return meter.Message{Meter: testMeter, Seq: seq, Readings: rs}
}

// senmlSeq is the sequence number of a SenML message at time t.
func senmlSeq(t time.Time) uint64 { return uint64(t.UnixMilli()) }

// repeat joins n results of f(i) with commas.
func repeat(n int, f func(i int) string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = f(i)
	}
	return strings.Join(parts, ",")
}

func decode(t *testing.T, utility meter.Utility, payload string) ([]meter.Message, error) {
	t.Helper()
	return Decoder{}.Decode(nil, testMeter, utility, []byte(payload), testNow)
}

func TestDecodeAccepted(t *testing.T) {
	t1 := at(0)
	electricity := []struct {
		name    string
		payload string
		want    []meter.Message
	}{
		{
			name: "compact example of the spec",
			payload: `{"v":1,"seq":1042,"t":1763769600,
			 "r":[{"c":"1-0:1.8.0","v":12345.678},
			      {"c":"1-0:1.7.0","v":0.42},
			      {"c":"1-0:32.7.0","v":231.4},
			      {"c":"1-0:31.7.0","v":1.83}]}`,
			want: []meter.Message{msg(1042,
				rd("1-0:1.8.0", t1, 12345678), rd("1-0:1.7.0", t1, 420),
				rd("1-0:32.7.0", t1, 231400), rd("1-0:31.7.0", t1, 1830))},
		},
		{
			name: "backlog example of the spec",
			payload: `{"v":1,"b":[{"seq":1040,"t":1763767800,"r":[{"c":"1-0:1.8.0","v":12345.101}]},
			            {"seq":1041,"t":1763768700,"r":[{"c":"1-0:1.8.0","v":12345.390}]}]}`,
			want: []meter.Message{
				msg(1040, rd("1-0:1.8.0", at(-1800_000), 12345101)),
				msg(1041, rd("1-0:1.8.0", at(-900_000), 12345390)),
			},
		},
		{
			name:    "fields in any order",
			payload: `{"r":[{"v":1,"c":"1-0:1.8.0"}],"t":1763769600,"seq":7,"v":1}`,
			want:    []meter.Message{msg(7, rd("1-0:1.8.0", t1, 1000))},
		},
		{
			name:    "unknown fields at every level are ignored",
			payload: `{"v":1,"fw":"2.1.0","seq":7,"t":1763769600,"x":{"a":[1,{"b":null}],"c":true},"r":[{"c":"1-0:1.8.0","v":1,"q":"ok","z":[]}]}`,
			want:    []meter.Message{msg(7, rd("1-0:1.8.0", t1, 1000))},
		},
		{
			name:    "unknown fields in backlog entries, and v and b there are unknown",
			payload: `{"v":1,"b":[{"seq":7,"t":1763769600,"v":2,"b":[],"r":[{"c":"1-0:1.8.0","v":1}],"crc":"ab"}]}`,
			want:    []meter.Message{msg(7, rd("1-0:1.8.0", t1, 1000))},
		},
		{
			name:    "whitespace everywhere",
			payload: " \r\n\t{ \"v\" : 1 , \"seq\" : 7 , \"t\" : 1763769600 , \"r\" : [ { \"c\" : \"1-0:1.8.0\" , \"v\" : 1 } ] } \n",
			want:    []meter.Message{msg(7, rd("1-0:1.8.0", t1, 1000))},
		},
		{
			name:    "escaped strings",
			payload: `{"\u0076":1,"seq":7,"t":1763769600,"r":[{"c":"1-0\u003a1.8.0","\u0075":"\u006bWh","v":1,"note":"\"\\\/\b\f\n\r\t\ud83d\ude00\ud800"}]}`,
			want:    []meter.Message{msg(7, rd("1-0:1.8.0", t1, 1000))},
		},
		{
			name:    "millisecond fraction of t is kept",
			payload: `{"v":1,"seq":7,"t":1763769600.125,"r":[{"c":"1-0:1.8.0","v":1}]}`,
			want:    []meter.Message{msg(7, rd("1-0:1.8.0", at(125), 1000))},
		},
		{
			name:    "finer fractions of t round half away from zero",
			payload: `{"v":1,"b":[{"seq":1,"t":1763769600.0004999,"r":[{"c":"1-0:1.8.0","v":1}]},{"seq":2,"t":1763769600.0005,"r":[{"c":"1-0:1.8.0","v":1}]}]}`,
			want: []meter.Message{
				msg(1, rd("1-0:1.8.0", at(0), 1000)),
				msg(2, rd("1-0:1.8.0", at(1), 1000)),
			},
		},
		{
			name:    "t with an exponent",
			payload: `{"v":1,"seq":7,"t":1.7637696E9,"r":[{"c":"1-0:1.8.0","v":1}]}`,
			want:    []meter.Message{msg(7, rd("1-0:1.8.0", t1, 1000))},
		},
		{
			name:    "values are exact decimals, rounded past the third",
			payload: `{"v":1,"seq":7,"t":1763769600,"r":[{"c":"1-0:1.8.0","v":999999999.9995},{"c":"1-0:1.7.0","v":-0.0005},{"c":"1-0:32.7.0","v":2.314e2},{"c":"1-0:31.7.0","v":0}]}`,
			want: []meter.Message{msg(7,
				rd("1-0:1.8.0", t1, 1000000000000), rd("1-0:1.7.0", t1, -1),
				rd("1-0:32.7.0", t1, 231400), rd("1-0:31.7.0", t1, 0))},
		},
		{
			name:    "Wh and W convert to kWh and kW",
			payload: `{"v":1,"seq":7,"t":1763769600,"r":[{"c":"1-0:1.8.0","v":12345678,"u":"Wh"},{"c":"1-0:2.8.0","v":0.5,"u":"Wh"},{"c":"1-0:1.7.0","v":420,"u":"W"},{"c":"1-0:2.7.0","v":1.5,"u":"W"}]}`,
			want: []meter.Message{msg(7,
				rd("1-0:1.8.0", t1, 12345678), rd("1-0:2.8.0", t1, 1),
				rd("1-0:1.7.0", t1, 420), rd("1-0:2.7.0", t1, 2))},
		},
		{
			name:    "canonical units may be named",
			payload: `{"v":1,"seq":7,"t":1763769600,"r":[{"c":"1-0:1.8.1","v":1,"u":"kWh"},{"c":"1-0:1.8.2","v":2,"u":"Wh"},{"c":"1-0:32.7.0","v":230,"u":"V"},{"c":"1-0:31.7.0","v":1,"u":"A"}]}`,
			want: []meter.Message{msg(7,
				rd("1-0:1.8.1", t1, 1000), rd("1-0:1.8.2", t1, 2),
				rd("1-0:32.7.0", t1, 230000), rd("1-0:31.7.0", t1, 1000))},
		},
		{
			name:    "seq from 0 to 2^64-1",
			payload: `{"v":1,"b":[{"seq":0,"t":1763769600,"r":[{"c":"1-0:1.8.0","v":1}]},{"seq":18446744073709551615,"t":1763769600,"r":[{"c":"1-0:1.8.0","v":1}]}]}`,
			want: []meter.Message{
				msg(0, rd("1-0:1.8.0", t1, 1000)),
				msg(1<<64-1, rd("1-0:1.8.0", t1, 1000)),
			},
		},
		{
			name:    "times at the limits",
			payload: `{"v":1,"b":[{"seq":1,"t":946684800,"r":[{"c":"1-0:1.8.0","v":1}]},{"seq":2,"t":1763776800,"r":[{"c":"1-0:1.8.0","v":1}]}]}`,
			want: []meter.Message{
				msg(1, rd("1-0:1.8.0", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), 1000)),
				msg(2, rd("1-0:1.8.0", at(7200_000), 1000)),
			},
		},
		{
			name: "SenML example of the spec",
			payload: `[{"bn":"urn:dev:mf:MTR-000001:","bt":1763769600,"bver":10,"n":"1-0:1.8.0","u":"kWh","s":12345.678},
			 {"n":"1-0:1.7.0","u":"kW","v":0.42},
			 {"n":"1-0:32.7.0","u":"V","v":231.4}]`,
			want: []meter.Message{msg(senmlSeq(t1),
				rd("1-0:1.8.0", t1, 12345678), rd("1-0:1.7.0", t1, 420), rd("1-0:32.7.0", t1, 231400))},
		},
		{
			name:    "SenML without bn, with s and v for either kind",
			payload: `[{"n":"1-0:1.8.0","v":1,"t":1763769600},{"n":"1-0:1.7.0","s":2,"t":1763769600}]`,
			want:    []meter.Message{msg(senmlSeq(t1), rd("1-0:1.8.0", t1, 1000), rd("1-0:1.7.0", t1, 2000))},
		},
		{
			name:    "SenML bn of the meter alone",
			payload: `[{"bn":"MTR-000001:","n":"1-0:1.8.0","v":1,"t":1763769600}]`,
			want:    []meter.Message{msg(senmlSeq(t1), rd("1-0:1.8.0", t1, 1000))},
		},
		{
			name: "SenML times are grouped and sorted",
			payload: `[{"bn":"urn:dev:mf:MTR-000001:","bt":1763769600,"n":"1-0:1.8.0","v":3,"t":900},
			 {"n":"1-0:1.7.0","v":0.3,"t":900},
			 {"n":"1-0:1.8.0","v":1},
			 {"n":"1-0:1.8.0","v":2,"t":450.5},
			 {"n":"1-0:1.7.0","v":0.1}]`,
			want: []meter.Message{
				msg(senmlSeq(at(0)), rd("1-0:1.8.0", at(0), 1000), rd("1-0:1.7.0", at(0), 100)),
				msg(senmlSeq(at(450500)), rd("1-0:1.8.0", at(450500), 2000)),
				msg(senmlSeq(at(900000)), rd("1-0:1.8.0", at(900000), 3000), rd("1-0:1.7.0", at(900000), 300)),
			},
		},
		{
			name:    "SenML relative times are relative to now",
			payload: `[{"n":"1-0:1.8.0","v":1,"t":-60},{"n":"1-0:1.7.0","v":2},{"bt":-3600,"n":"1-0:32.7.0","v":230,"t":0.5}]`,
			want: []meter.Message{
				msg(senmlSeq(at(500)), rd("1-0:32.7.0", at(500), 230000)),
				msg(senmlSeq(at(3540_000)), rd("1-0:1.8.0", at(3540_000), 1000)),
				msg(senmlSeq(at(3600_000)), rd("1-0:1.7.0", at(3600_000), 2000)),
			},
		},
		{
			name:    "SenML base unit, overridden by a record's unit",
			payload: `[{"bu":"Wh","bt":1763769600,"n":"1-0:1.8.0","v":1500},{"n":"1-0:1.8.1","u":"kWh","v":1},{"n":"1-0:2.8.0","v":2500},{"bu":"W","n":"1-0:1.7.0","v":42}]`,
			want: []meter.Message{msg(senmlSeq(t1),
				rd("1-0:1.8.0", t1, 1500), rd("1-0:1.8.1", t1, 1000), rd("1-0:2.8.0", t1, 2500), rd("1-0:1.7.0", t1, 42))},
		},
		{
			name:    "SenML records of base fields only, low bver, ignored fields",
			payload: ` [{"bn":"urn:dev:mf:MTR-000001:","bt":1763769600,"bver":5},{},{"n":"1-0:1.8.0","v":1,"ut":900,"ct":"x","vx":[1]},{"bn":"urn:x:MTR-000001:","bver":10}] `,
			want:    []meter.Message{msg(senmlSeq(t1), rd("1-0:1.8.0", t1, 1000))},
		},
	}
	for _, c := range electricity {
		t.Run(c.name, func(t *testing.T) {
			got, err := decode(t, meter.Electricity, c.payload)
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}

	other := []struct {
		name    string
		utility meter.Utility
		payload string
		want    []meter.Message
	}{
		{
			name:    "water in m3 and litres",
			utility: meter.Water,
			payload: `{"v":1,"seq":3,"t":1763769600,"r":[{"c":"8-0:1.0.0","v":1234.5678},{"c":"8-0:2.0.0","v":90,"u":"l/h"}]}`,
			want:    []meter.Message{msg(3, rd("8-0:1.0.0", t1, 1234568), rd("8-0:2.0.0", t1, 90))},
		},
		{
			name:    "water volume in litres",
			utility: meter.Water,
			payload: `{"v":1,"seq":3,"t":1763769600,"r":[{"c":"8-0:1.0.0","v":1234567.8,"u":"l"},{"c":"8-0:2.0.0","v":0.09,"u":"m3/h"}]}`,
			want:    []meter.Message{msg(3, rd("8-0:1.0.0", t1, 1234568), rd("8-0:2.0.0", t1, 90))},
		},
		{
			name:    "gas in SenML",
			utility: meter.Gas,
			payload: `[{"bn":"urn:dev:mf:MTR-000001:","bt":1763769600,"n":"7-0:3.0.0","u":"l","s":5678901},{"n":"7-0:43.0.0","u":"m3/h","v":1.2}]`,
			want:    []meter.Message{msg(senmlSeq(t1), rd("7-0:3.0.0", t1, 5678901), rd("7-0:43.0.0", t1, 1200))},
		},
	}
	for _, c := range other {
		t.Run(c.name, func(t *testing.T) {
			got, err := decode(t, c.utility, c.payload)
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}

// TestDecodeLimits decodes the largest payloads the limits allow.
func TestDecodeLimits(t *testing.T) {
	channels := []meter.Channel{"1-0:1.8.0", "1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.0", "1-0:1.7.0", "1-0:2.7.0", "1-0:32.7.0", "1-0:31.7.0"}
	// No utility has 64 channels, so a valid message never reaches
	// MaxReadings; TestDecodeRejected checks that limit.
	t.Run("96 entries", func(t *testing.T) {
		var want []meter.Message
		for i := range 96 {
			var rs []meter.Reading
			for j, c := range channels {
				rs = append(rs, rd(c, at(int64(i)*1000), meter.Value(i*1000+j)))
			}
			want = append(want, msg(uint64(i), rs...))
		}
		got, err := Decoder{}.Decode(nil, testMeter, meter.Electricity, AppendCompactBatch(nil, want), testNow)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
	t.Run("96 SenML times", func(t *testing.T) {
		payload := `[` + repeat(96, func(i int) string {
			return fmt.Sprintf(`{"n":"1-0:1.8.0","v":%d,"t":%d}`, i, t0+i)
		}) + `]`
		got, err := decode(t, meter.Electricity, payload)
		require.NoError(t, err)
		assert.Len(t, got, 96)
	})
}

func TestDecodeRejected(t *testing.T) {
	r := func(readings string) string {
		return `{"v":1,"seq":1,"t":1763769600,"r":[` + readings + `]}`
	}
	one := `{"c":"1-0:1.8.0","v":1}`
	rec := `{"n":"1-0:1.8.0","v":1,"t":1763769600}`
	cases := []struct {
		name    string
		utility meter.Utility // electricity when empty
		payload string
		reason  Reason
		detail  string // a part of Error.Detail
	}{
		{"too large", "", `{"v":1,"pad":"` + strings.Repeat("x", DefaultMaxBytes) + `"}`, TooLarge, "at most 65536"},

		{"empty payload", "", ``, MalformedJSON, "empty"},
		{"only whitespace", "", " \n ", MalformedJSON, "empty"},
		{"not JSON", "", `hello`, MalformedJSON, "neither"},
		{"JSON string", "", `"v"`, MalformedJSON, "neither"},
		{"JSON number", "", `1`, MalformedJSON, "neither"},
		{"byte order mark", "", "\ufeff" + r(one), MalformedJSON, "neither"},
		{"truncated", "", `{"v":1,"seq":1,"t":1763769600,"r":[{"c":"1-0:1.8.0","v":1}`, MalformedJSON, "end of input"},
		{"trailing data", "", r(one) + `x`, MalformedJSON, "after the payload"},
		{"two objects", "", r(one) + r(one), MalformedJSON, "after the payload"},
		{"trailing comma", "", `{"v":1,"seq":1,"t":1763769600,"r":[{"c":"1-0:1.8.0","v":1},]}`, MalformedJSON, "unexpected character"},
		{"missing colon", "", `{"v" 1}`, MalformedJSON, "':'"},
		{"unquoted key", "", `{v:1}`, MalformedJSON, "field name"},
		{"single quotes", "", `{'v':1}`, MalformedJSON, "field name"},
		{"leading zero", "", r(`{"c":"1-0:1.8.0","v":01}`), MalformedJSON, "expected ','"},
		{"plus sign", "", r(`{"c":"1-0:1.8.0","v":+1}`), MalformedJSON, "unexpected character"},
		{"bare dot", "", r(`{"c":"1-0:1.8.0","v":1.}`), MalformedJSON, "after '.'"},
		{"empty exponent", "", r(`{"c":"1-0:1.8.0","v":1e}`), MalformedJSON, "exponent"},
		{"NaN", "", r(`{"c":"1-0:1.8.0","v":NaN}`), MalformedJSON, "unexpected character"},
		{"bad literal", "", r(`{"c":"1-0:1.8.0","v":1,"x":nul}`), MalformedJSON, "literal"},
		{"bad escape", "", r(`{"c":"1-0:1.8.0\x","v":1}`), MalformedJSON, "escape"},
		{"bad unicode escape", "", r(`{"c":"1-0:1.8.0\u12","v":1}`), MalformedJSON, "escape"},
		{"control character in string", "", r("{\"c\":\"1-0:1.8.0\n\",\"v\":1}"), MalformedJSON, "control"},
		{"unterminated string", "", `{"v":1,"x":"abc`, MalformedJSON, "unterminated"},
		{"deeply nested unknown field", "", `{"v":1,"x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, MalformedJSON, "nesting"},
		{"duplicate field", "", `{"v":1,"seq":1,"seq":2,"t":1763769600,"r":[` + one + `]}`, MalformedJSON, `"seq" given twice`},
		{"duplicate field in reading", "", r(`{"c":"1-0:1.8.0","v":1,"v":2}`), MalformedJSON, `"v" given twice`},
		{"r not an array", "", `{"v":1,"seq":1,"t":1763769600,"r":{"c":"1-0:1.8.0","v":1}}`, MalformedJSON, "r is an object, want an array"},
		{"reading not an object", "", r(`["1-0:1.8.0",1]`), MalformedJSON, "reading in r[0] is an array"},
		{"b not an array", "", `{"v":1,"b":{}}`, MalformedJSON, "b is an object"},
		{"entry not an object", "", `{"v":1,"b":[1]}`, MalformedJSON, "b[0] is a number"},
		{"b and r", "", `{"v":1,"seq":1,"t":1763769600,"r":[` + one + `],"b":[{"seq":2,"t":1763769600,"r":[` + one + `]}]}`, MalformedJSON, "b cannot be combined"},
		{"SenML record not an object", "", `[` + rec + `,"x"]`, MalformedJSON, "record 1 is a string"},
		{"SenML trailing data", "", `[` + rec + `]]`, MalformedJSON, "after the pack"},

		{"version 2", "", `{"v":2,"seq":1,"t":1763769600,"r":[` + one + `]}`, BadVersion, "version 2 not supported"},
		{"version 0", "", `{"v":0}`, BadVersion, "version 0"},
		{"version 1.0", "", `{"v":1.0,"seq":1,"t":1763769600,"r":[` + one + `]}`, BadVersion, "version 1.0"},
		{"version as a string", "", `{"v":"1","seq":1,"t":1763769600,"r":[` + one + `]}`, BadVersion, "v is a string"},
		{"version outranks other errors", "", `{"r":[{"c":"x"}],"v":2}`, BadVersion, "version 2"},
		{"SenML bver 11", "", `[{"bver":11,"n":"1-0:1.8.0","v":1,"t":1763769600}]`, BadVersion, "SenML version 11"},
		{"SenML bver 10.5", "", `[{"bver":10.5,"n":"1-0:1.8.0","v":1,"t":1763769600}]`, BadVersion, "SenML version 10.5"},
		{"SenML bver as a string", "", `[{"bver":"10","n":"1-0:1.8.0","v":1,"t":1763769600}]`, BadVersion, "bver in record 0 is a string"},
		{"SenML bver outranks other errors", "", `[{"n":"nope","v":1},{"bver":12}]`, BadVersion, "SenML version 12"},
		{"SenML must-understand field", "", `[{"n":"1-0:1.8.0","v":1,"t":1763769600,"ct_":"x"}]`, BadVersion, `"ct_" in record 0 must be understood`},

		{"v missing", "", `{"seq":1,"t":1763769600,"r":[` + one + `]}`, MissingField, "v missing"},
		{"seq missing", "", `{"v":1,"t":1763769600,"r":[` + one + `]}`, MissingField, "seq missing"},
		{"t missing", "", `{"v":1,"seq":1,"r":[` + one + `]}`, MissingField, "t missing"},
		{"r missing", "", `{"v":1,"seq":1,"t":1763769600}`, MissingField, "r missing"},
		{"r empty", "", r(``), MissingField, "r is empty"},
		{"c missing", "", r(`{"v":1}`), MissingField, "c missing in r[0]"},
		{"value missing", "", r(one + `,{"c":"1-0:1.7.0"}`), MissingField, "v missing in r[1]"},
		{"b empty", "", `{"v":1,"b":[]}`, MissingField, "b is empty"},
		{"seq missing in b", "", `{"v":1,"b":[{"seq":1,"t":1763769600,"r":[` + one + `]},{"t":1763769600,"r":[` + one + `]}]}`, MissingField, "seq missing in b[1]"},
		{"r empty in b", "", `{"v":1,"b":[{"seq":1,"t":1763769600,"r":[]}]}`, MissingField, "r in b[0] is empty"},
		{"value missing in b", "", `{"v":1,"b":[{"seq":1,"t":1763769600,"r":[{"c":"1-0:1.8.0"}]}]}`, MissingField, "v missing in b[0].r[0]"},
		{"SenML empty pack", "", `[]`, MissingField, "no record"},
		{"SenML only base fields", "", `[{"bn":"MTR-000001:","bt":1763769600}]`, MissingField, "no record"},
		{"SenML name missing", "", `[{"v":1,"t":1763769600}]`, MissingField, "n missing in record 0"},
		{"SenML value missing", "", `[{"n":"1-0:1.8.0","t":1763769600}]`, MissingField, "v or s missing in record 0"},
		{"SenML name missing after bn", "", `[{"bn":"urn:dev:mf:MTR-000001:","v":1,"t":1763769600}]`, MissingField, "n missing"},

		{"unknown channel", "", r(one + `,{"c":"1-0:9.9.9","v":1}`), BadChannel, `unknown channel "1-0:9.9.9" in r[1]`},
		{"channel with spaces", "", r(`{"c":" 1-0:1.8.0","v":1}`), BadChannel, "unknown channel"},
		{"channel of another utility", "", r(`{"c":"8-0:1.0.0","v":1}`), BadChannel, `channel "8-0:1.0.0" measures water, not electricity`},
		{"electricity channel on a gas meter", meter.Gas, r(`{"c":"1-0:1.8.0","v":1}`), BadChannel, "measures electricity, not gas"},
		{"channel not a string", "", r(`{"c":1.8,"v":1}`), BadChannel, "c in r[0] is a number, want a string"},
		{"unknown channel in b", "", `{"v":1,"b":[{"seq":1,"t":1763769600,"r":[{"c":"1-0:9.9.9","v":1}]}]}`, BadChannel, "in b[0].r[0]"},
		{"SenML unknown channel", "", `[{"n":"1-0:9.9.9","v":1,"t":1763769600}]`, BadChannel, "in record 0"},
		{"SenML name with a prefix", "", `[{"n":"MTR-000001:1-0:1.8.0","v":1,"t":1763769600}]`, BadChannel, "unknown channel"},
		{"SenML name not a string", "", `[{"n":5,"v":1,"t":1763769600}]`, BadChannel, "n in record 0 is a number"},

		{"unknown unit", "", r(`{"c":"1-0:1.8.0","v":1,"u":"MWh"}`), BadUnit, `unit "MWh" not accepted for 1-0:1.8.0 (want kWh or Wh)`},
		{"unit of another channel", "", r(`{"c":"1-0:1.8.0","v":1,"u":"kW"}`), BadUnit, `unit "kW"`},
		{"units are case-sensitive", "", r(`{"c":"1-0:1.8.0","v":1,"u":"kwh"}`), BadUnit, `unit "kwh"`},
		{"empty unit", "", r(`{"c":"1-0:1.8.0","v":1,"u":""}`), BadUnit, `unit ""`},
		{"no submultiple for volts", "", r(`{"c":"1-0:32.7.0","v":1,"u":"mV"}`), BadUnit, "(want V)"},
		{"unit not a string", "", r(`{"c":"1-0:1.8.0","v":1,"u":null}`), BadUnit, "u in r[0] is null"},
		{"SenML joules", "", `[{"n":"1-0:1.8.0","u":"J","v":3600,"t":1763769600}]`, BadUnit, `unit "J"`},
		{"SenML bad base unit", "", `[{"bu":"J","n":"1-0:1.8.0","v":3600,"t":1763769600}]`, BadUnit, `unit "J"`},

		{"value out of range", "", r(`{"c":"1-0:1.8.0","v":1e16}`), BadValue, "out of range"},
		{"value with a huge exponent", "", r(`{"c":"1-0:1.8.0","v":1e999}`), BadValue, "exponent"},
		{"value as a string", "", r(`{"c":"1-0:1.8.0","v":"12.5"}`), BadValue, "v in r[0] is a string, want a number"},
		{"value null", "", r(`{"c":"1-0:1.8.0","v":null}`), BadValue, "is null"},
		{"duplicate channel", "", r(one + `,{"c":"1-0:1.7.0","v":1},{"c":"1-0:1.8.0","v":2}`), BadValue, `channel "1-0:1.8.0" given twice in r`},
		{"duplicate channel in b", "", `{"v":1,"b":[{"seq":1,"t":1763769600,"r":[` + one + `,` + one + `]}]}`, BadValue, "given twice in b[0].r"},
		{"negative seq", "", `{"v":1,"seq":-1,"t":1763769600,"r":[` + one + `]}`, BadValue, "seq -1"},
		{"fractional seq", "", `{"v":1,"seq":1.5,"t":1763769600,"r":[` + one + `]}`, BadValue, "seq 1.5"},
		{"seq too large", "", `{"v":1,"seq":18446744073709551616,"t":1763769600,"r":[` + one + `]}`, BadValue, "2^64-1"},
		{"seq as a string", "", `{"v":1,"seq":"1","t":1763769600,"r":[` + one + `]}`, BadValue, "seq is a string"},
		{"SenML duplicate channel at one time", "", `[` + rec + `,{"n":"1-0:1.7.0","v":1,"t":1763769600},` + rec + `]`, BadValue, "given twice at 2025-11-22T00:00:00Z"},
		{"SenML v and s", "", `[{"n":"1-0:1.8.0","v":1,"s":1,"t":1763769600}]`, BadValue, "both v and s"},
		{"SenML string value", "", `[{"n":"1-0:1.8.0","vs":"1","t":1763769600}]`, BadValue, "no numeric value"},
		{"SenML boolean value", "", `[{"n":"1-0:1.8.0","vb":true,"t":1763769600}]`, BadValue, "no numeric value"},
		{"SenML base value", "", `[{"bv":1000,"n":"1-0:1.8.0","v":1,"t":1763769600}]`, BadValue, "bv in record 0 is not supported"},
		{"SenML base sum", "", `[{"bs":1000,"n":"1-0:1.8.0","s":1,"t":1763769600}]`, BadValue, "bs in record 0"},

		{"before 2000", "", `{"v":1,"seq":1,"t":946684799.999,"r":[` + one + `]}`, BadTime, "before 2000-01-01"},
		{"zero time", "", `{"v":1,"seq":1,"t":0,"r":[` + one + `]}`, BadTime, "before 2000-01-01"},
		{"negative time", "", `{"v":1,"seq":1,"t":-1,"r":[` + one + `]}`, BadTime, "before 2000-01-01"},
		{"too far in the future", "", `{"v":1,"seq":1,"t":1763776800.001,"r":[` + one + `]}`, BadTime, "1h0m0.001s ahead"},
		{"time out of range", "", `{"v":1,"seq":1,"t":1e300,"r":[` + one + `]}`, BadTime, "out of range"},
		{"time as a string", "", `{"v":1,"seq":1,"t":"1763769600","r":[` + one + `]}`, BadTime, "t is a string"},
		{"bad time in b", "", `{"v":1,"b":[{"seq":1,"t":1763769600,"r":[` + one + `]},{"seq":2,"t":5,"r":[` + one + `]}]}`, BadTime, "in b[1]"},
		{"SenML in the future", "", `[{"bt":1763769600,"n":"1-0:1.8.0","v":1,"t":7201}]`, BadTime, "in record 0"},
		{"SenML relative time before 2000", "", `[{"n":"1-0:1.8.0","v":1,"t":-1e9}]`, BadTime, "before 2000-01-01"},
		{"SenML relative time in the future", "", `[{"n":"1-0:1.8.0","v":1,"t":3601}]`, BadTime, "ahead"},
		{"SenML time overflow", "", `[{"bt":9e15,"n":"1-0:1.8.0","v":1,"t":9e15}]`, BadTime, "out of range"},
		{"SenML huge negative relative time", "", `[{"bt":-9e15,"n":"1-0:1.8.0","v":1,"t":-2e14}]`, BadTime, "before 2000-01-01"},
		{"SenML bad bt", "", `[{"bt":1e300,"n":"1-0:1.8.0","v":1}]`, BadTime, "bt 1e300"},
		{"SenML t as a string", "", `[{"n":"1-0:1.8.0","v":1,"t":"now"}]`, BadTime, "t in record 0 is a string"},

		{"SenML other meter", "", `[{"bn":"urn:dev:mf:MTR-000002:","n":"1-0:1.8.0","v":1,"t":1763769600}]`, WrongMeter, `names meter "MTR-000002", not "MTR-000001"`},
		{"SenML meter ID is a suffix of bn's", "", `[{"bn":"urn:dev:mf:XMTR-000001:","n":"1-0:1.8.0","v":1,"t":1763769600}]`, WrongMeter, `names meter "XMTR-000001"`},
		{"SenML bn without colon", "", `[{"bn":"urn:dev:mf:MTR-000001","n":"1-0:1.8.0","v":1,"t":1763769600}]`, WrongMeter, "does not end with a meter ID and ':'"},
		{"SenML bn with channel", "", `[{"bn":"urn:dev:mf:MTR-000001:1-0:1.8.0","v":1,"t":1763769600}]`, WrongMeter, "does not end"},
		{"SenML empty bn", "", `[{"bn":"","n":"1-0:1.8.0","v":1,"t":1763769600}]`, WrongMeter, "does not end"},
		{"SenML bn of only a colon", "", `[{"bn":"urn:dev:mf::","n":"1-0:1.8.0","v":1,"t":1763769600}]`, WrongMeter, "does not end"},
		{"SenML other meter later in the pack", "", `[{"bn":"MTR-000001:",` + rec[1:] + `,{"bn":"MTR-000002:","n":"1-0:1.7.0","v":1,"t":1763769600}]`, WrongMeter, "in record 1"},
		{"SenML bn not a string", "", `[{"bn":1,"n":"1-0:1.8.0","v":1,"t":1763769600}]`, WrongMeter, "bn in record 0 is a number"},

		{"65 readings", "", r(repeat(65, func(int) string { return one })), TooManyReadings, "r has 65 readings, at most 64"},
		{"65 readings in b", "", `{"v":1,"b":[{"seq":1,"t":1763769600,"r":[` + repeat(65, func(int) string { return one }) + `]}]}`, TooManyReadings, "r in b[0] has 65"},
		{"97 entries", "", `{"v":1,"b":[` + repeat(97, func(i int) string {
			return fmt.Sprintf(`{"seq":%d,"t":1763769600,"r":[%s]}`, i, one)
		}) + `]}`, TooManyReadings, "b has 97 entries, at most 96"},
		{"SenML 65 readings at one time", "", `[` + repeat(65, func(int) string { return rec }) + `]`, TooManyReadings, "65 readings at 2025-11-22T00:00:00Z"},
		{"SenML 97 times", "", `[` + repeat(97, func(i int) string {
			return fmt.Sprintf(`{"n":"1-0:1.8.0","v":1,"t":%d}`, t0+i)
		}) + `]`, TooManyReadings, "more than 96 distinct times"},
		{"SenML too many records", "", `[{"bt":1763769600},` + repeat(96*64+1, func(i int) string {
			return fmt.Sprintf(`{"n":"1-0:1.8.0","v":1,"t":%d}`, i%96)
		}) + `]`, TooManyReadings, "more than 6144 readings"},
	}
	dec := Decoder{MaxBytes: 1 << 20}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := c.utility
			if u == "" {
				u = meter.Electricity
			}
			d := dec
			if c.reason == TooLarge {
				d = Decoder{}
			}
			prefix := []meter.Message{msg(99)}
			got, err := d.Decode(prefix, testMeter, u, []byte(c.payload), testNow)
			require.Error(t, err)
			t.Log(err)
			var perr *Error
			require.True(t, errors.As(err, &perr), "error %v is not an *Error", err)
			assert.Equal(t, c.reason, perr.Reason, "error: %v", err)
			assert.Contains(t, perr.Detail, c.detail)
			assert.Equal(t, prefix, got, "dst changed on error")
		})
	}
}

func TestErrorMessage(t *testing.T) {
	payload := `{"v":1,"seq":1,"t":1763769600,"r":[{"c":"1-0:1.8.0","v":1},{"c":"1-0:1.7.0","v":1},{"c":"1-0:9.9.9","v":1}]}`
	_, err := decode(t, meter.Electricity, payload)
	require.EqualError(t, err, `bad_channel: unknown channel "1-0:9.9.9" in r[2]`)

	wrapped := fmt.Errorf("decode payload of %s: %w", testMeter, err)
	assert.Equal(t, BadChannel, ReasonOf(wrapped))
	assert.Equal(t, Reason(""), ReasonOf(errors.New("other")))
	assert.Equal(t, Reason(""), ReasonOf(nil))
	assert.Equal(t, "too_large", (&Error{Reason: TooLarge}).Error())
}

// TestErrorPriority pins which error wins when a payload has several.
func TestErrorPriority(t *testing.T) {
	cases := []struct {
		name    string
		payload string
		want    string
	}{
		{"syntax over version", `{"v":2,"r":[}`, "malformed_json"},
		{"version over everything else", `{"seq":-1,"t":0,"r":[],"v":3}`, "bad_version: version 3"},
		{"missing version over the rest", `{"seq":-1,"t":0,"r":[]}`, "missing_field: v missing"},
		{"first problem in document order", `{"v":1,"t":0,"seq":-1,"r":[]}`, "bad_time"},
		{"problems in fields before missing fields", `{"v":1,"r":[{"c":"1-0:1.8.0","v":"x"}]}`, "bad_value"},
		{"first reading's problem", `{"v":1,"seq":1,"t":1763769600,"r":[{"c":"x","v":1},{"c":"1-0:1.8.0","v":"x"}]}`, `bad_channel: unknown channel "x" in r[0]`},
		{"channel before unit and value", `{"v":1,"seq":1,"t":1763769600,"r":[{"u":"x","v":1e999,"c":"x"}]}`, "bad_channel"},
		{"unit before value", `{"v":1,"seq":1,"t":1763769600,"r":[{"u":"x","v":1e999,"c":"1-0:1.8.0"}]}`, "bad_unit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decode(t, meter.Electricity, c.payload)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), c.want), "got %v", err)
		})
	}
}

func TestDecoderSettings(t *testing.T) {
	payload := []byte(`{"v":1,"seq":1,"t":1763773500,"r":[{"c":"1-0:1.8.0","v":1}]}`) // now + 5 min

	_, err := Decoder{MaxBytes: len(payload) - 1}.Decode(nil, testMeter, meter.Electricity, payload, testNow)
	assert.Equal(t, TooLarge, ReasonOf(err))
	_, err = Decoder{MaxBytes: len(payload)}.Decode(nil, testMeter, meter.Electricity, payload, testNow)
	assert.NoError(t, err)

	_, err = Decoder{MaxFuture: 5 * time.Minute}.Decode(nil, testMeter, meter.Electricity, payload, testNow)
	assert.NoError(t, err)
	_, err = Decoder{MaxFuture: 5*time.Minute - time.Millisecond}.Decode(nil, testMeter, meter.Electricity, payload, testNow)
	assert.Equal(t, BadTime, ReasonOf(err))
	_, err = Decoder{MaxFuture: -1}.Decode(nil, testMeter, meter.Electricity, payload, testNow)
	assert.NoError(t, err, "a negative MaxFuture means the default")
}

// TestDecodeOwnership checks what the returned messages share: not the
// payload, and no capacity with each other.
func TestDecodeOwnership(t *testing.T) {
	payload := []byte(`{"v":1,"b":[{"seq":1,"t":1763769600,"r":[{"c":"1-0:1.8.0","v":1}]},{"seq":2,"t":1763769601,"r":[{"c":"1-0:1.8.0","v":2}]}]}`)
	dst := make([]meter.Message, 1, 8)
	got, err := Decoder{}.Decode(dst, testMeter, meter.Electricity, payload, testNow)
	require.NoError(t, err)
	require.Len(t, got, 3)
	assert.Equal(t, meter.Message{}, got[0], "dst's messages are kept")
	want := []meter.Message{
		msg(1, rd("1-0:1.8.0", at(0), 1000)),
		msg(2, rd("1-0:1.8.0", at(1000), 2000)),
	}
	assert.Equal(t, want, got[1:])

	for i := range payload {
		payload[i] = 'x'
	}
	_ = append(got[1].Readings, rd("1-0:1.7.0", at(0), 7))
	assert.Equal(t, want, got[1:], "messages share nothing with the payload or each other")
}

// TestDecodeConcurrent shares one Decoder between goroutines (run with
// -race).
func TestDecodeConcurrent(t *testing.T) {
	payloads := []string{
		`{"v":1,"seq":1,"t":1763769600,"r":[{"c":"1-0:1.8.0","v":1},{"c":"1-0:1.7.0","v":2}]}`,
		`[{"n":"1-0:1.8.0","v":1,"t":1763769600},{"n":"1-0:1.8.0","v":2,"t":1763769601}]`,
		`{"v":1,"seq":1,"t":1763769600,"r":[{"c":"1-0:9.9.9","v":1}]}`,
	}
	var want [][]meter.Message
	var wantErr []error
	dec := Decoder{}
	for _, p := range payloads {
		ms, err := dec.Decode(nil, testMeter, meter.Electricity, []byte(p), testNow)
		want = append(want, ms)
		wantErr = append(wantErr, err)
	}
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				k := (g + i) % len(payloads)
				ms, err := dec.Decode(nil, testMeter, meter.Electricity, []byte(payloads[k]), testNow)
				assert.Equal(t, want[k], ms)
				assert.Equal(t, wantErr[k], err)
			}
		}()
	}
	for range 4 {
		<-done
	}
}
