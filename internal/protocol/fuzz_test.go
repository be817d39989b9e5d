package protocol

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
)

// addSeeds adds the payloads of testdata/*/*.json whose first byte is
// first ('{' compact, '[' SenML), and extra, for every utility.
func addSeeds(f *testing.F, first byte, extra ...string) {
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.json"))
	require.NoError(f, err)
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(f, err)
		if len(b) > 0 && b[0] == first {
			extra = append(extra, string(b))
		}
	}
	for _, s := range extra {
		for u := range utilities {
			f.Add([]byte(s), uint8(u))
		}
	}
}

// checkDecode is the property both decoder fuzz tests check: Decode never
// panics; it rejects with a documented reason and leaves dst alone, or it
// returns messages that obey the protocol's limits and survive a round
// trip through the compact encoding unchanged.
func checkDecode(t *testing.T, payload []byte, uSel uint8) {
	u := utilities[int(uSel)%len(utilities)]
	prefix := []meter.Message{{Meter: "other"}}
	ms, err := Decoder{}.Decode(prefix, testMeter, u, payload, testNow)
	if err != nil {
		var perr *Error
		require.True(t, errors.As(err, &perr), "%T is not an *Error", err)
		require.Contains(t, allReasons, perr.Reason)
		require.Equal(t, prefix, ms)
		return
	}
	require.Equal(t, prefix, ms[:1])
	ms = ms[1:]
	require.NotEmpty(t, ms)
	require.LessOrEqual(t, len(ms), MaxEntries)
	maxMs := testNow.UnixMilli() + DefaultMaxFuture.Milliseconds()
	for _, m := range ms {
		require.Equal(t, testMeter, m.Meter)
		require.NotEmpty(t, m.Readings)
		require.LessOrEqual(t, len(m.Readings), MaxReadings)
		seen := map[meter.Channel]bool{}
		for _, r := range m.Readings {
			info, ok := meter.Lookup(r.Channel)
			require.True(t, ok)
			require.Equal(t, u, info.Utility)
			require.False(t, seen[r.Channel], "duplicate channel")
			seen[r.Channel] = true
			require.True(t, r.Time.Equal(m.Readings[0].Time), "one time per message")
			ms := r.Time.UnixMilli()
			require.True(t, ms >= minTimeMs && ms <= maxMs, "time %v out of range", r.Time)
		}
	}

	// Re-encoding may make a SenML pack longer (every message gets its seq
	// and t), so the second decode allows more bytes.
	again, err := Decoder{MaxBytes: 1 << 20}.Decode(nil, testMeter, u, AppendCompactBatch(nil, ms), testNow)
	require.NoError(t, err)
	require.Equal(t, ms, again)
	if len(ms) == 1 {
		again, err := Decoder{MaxBytes: 1 << 20}.Decode(nil, testMeter, u, AppendCompact(nil, ms[0]), testNow)
		require.NoError(t, err)
		require.Equal(t, ms, again)
	}
}

var allReasons = []Reason{TooLarge, MalformedJSON, BadVersion, MissingField, BadChannel, BadUnit, BadValue, BadTime, WrongMeter, TooManyReadings}

func FuzzDecodeCompact(f *testing.F) {
	addSeeds(f, '{',
		`{"v":1,"seq":1,"t":1763769600.5,"r":[{"c":"1-0:1.8.0","v":1e2,"u":"Wh"},{"c":"8-0:1.0.0","v":-0.0005,"u":"l"},{"c":"7-0:43.0.0","v":1,"u":"l/h"}]}`,
		`{"v":1,"b":[{"seq":1,"t":1763769600,"r":[{"c":"1-0:1.7.0","v":1,"u":"W"}]},{"seq":2,"t":1763769601,"x":{},"r":[{"c":"8-0:2.0.0","v":2}]}]}`,
		`{"\u0076":1,"seq":18446744073709551615,"t":946684800,"r":[{"c":"7-0:3.0.0","v":0}]}`,
	)
	f.Fuzz(checkDecode)
}

func FuzzDecodeSenML(f *testing.F) {
	addSeeds(f, '[',
		`[{"bn":"urn:dev:mf:MTR-000001:","bt":1763769600,"bu":"l","n":"8-0:1.0.0","s":1},{"n":"7-0:3.0.0","t":-1,"v":2}]`,
		`[{"n":"1-0:1.8.0","v":1,"t":-60},{"n":"8-0:2.0.0","u":"l/h","v":2.5},{"bt":1763769600,"n":"7-0:43.0.0","v":3,"t":0.001}]`,
		`[{"bver":10,"n":"1-0:32.7.0","u":"V","v":230,"t":1763769600,"ut":60}]`,
	)
	f.Fuzz(checkDecode)
}
