package fleet

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/protocol"
)

func TestBacklog(t *testing.T) {
	b := newBacklog(5)
	for i := range 3 {
		assert.False(t, b.push(entry{seq: uint64(i)}))
	}
	assert.Equal(t, 3, b.len())
	assert.Equal(t, uint64(0), b.at(0).seq)
	b.pop(2)
	assert.Equal(t, 1, b.len())
	assert.Equal(t, uint64(2), b.at(0).seq)
	for i := 3; i < 7; i++ {
		assert.False(t, b.push(entry{seq: uint64(i)}))
	}
	// Full: the oldest goes.
	assert.True(t, b.push(entry{seq: 7}))
	assert.Equal(t, 5, b.len())
	var seqs []uint64
	for i := range b.len() {
		seqs = append(seqs, b.at(i).seq)
	}
	assert.Equal(t, []uint64{3, 4, 5, 6, 7}, seqs)
	b.pop(10)
	assert.Zero(t, b.len())

	// A large backlog releases its storage once drained.
	big := newBacklog(1000)
	for i := range 500 {
		big.push(entry{seq: uint64(i)})
	}
	big.pop(499)
	assert.NotNil(t, big.items)
	big.pop(1)
	assert.Nil(t, big.items)
	big.push(entry{seq: 9})
	assert.Equal(t, uint64(9), big.at(0).seq)
}

func TestHistogram(t *testing.T) {
	var h histogram
	assert.Zero(t, h.snapshot().quantile(0.5), "empty")
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	s := h.snapshot()
	assert.EqualValues(t, 1000, s.total())
	for _, c := range []struct{ q, want float64 }{{0.5, 500}, {0.9, 900}, {0.99, 990}, {1, 1000}} {
		assert.InEpsilon(t, c.want, s.quantile(c.q), 1.0/64, "q%v", c.q)
	}
	assert.EqualValues(t, 1_000_000, s.maxUs)

	// A window holds only what came after its start.
	for range 10 {
		h.record(5 * time.Second)
	}
	w := h.snapshot().since(s)
	assert.EqualValues(t, 10, w.total())
	assert.InEpsilon(t, 5000, w.quantile(0.5), 1.0/64)

	// Buckets are contiguous and ordered.
	for v := uint64(0); v < 1<<36; v += v/50 + 1 {
		require.LessOrEqual(t, histIndex(v), histIndex(v+1))
		require.InDelta(t, float64(v), histMid(histIndex(v)), float64(v)/64+1)
	}
	assert.Equal(t, histBuckets-1, histIndex(1<<62))
}

func TestLimiter(t *testing.T) {
	var none *limiter
	require.NoError(t, none.wait(context.Background()))
	assert.Nil(t, newLimiter(0, 10))

	l := newLimiter(1000, 1)
	start := time.Now()
	for range 50 {
		require.NoError(t, l.wait(context.Background()))
	}
	assert.GreaterOrEqual(t, time.Since(start), 45*time.Millisecond, "50 tokens at 1000/s take about 50 ms")

	slow := newLimiter(0.1, 1)
	require.NoError(t, slow.wait(context.Background()))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, slow.wait(ctx), context.Canceled)
}

func TestReadCredentials(t *testing.T) {
	cases := []struct {
		name  string
		in    string
		certs bool // meters with client certificates: tokens optional
		want  []Credential
		err   string
	}{
		{
			name: "provisioning output",
			in:   "meter_id,utility,token\nMTR-1,electricity,abc\nMTR-2,Water,def\n",
			want: []Credential{{"MTR-1", meter.Electricity, "abc"}, {"MTR-2", meter.Water, "def"}},
		},
		{
			name: "columns in another order, extra column, BOM",
			in:   "\ufefftoken,account,meter_id,utility\nxyz,ACC-9,MTR.3,gas\n",
			want: []Credential{{"MTR.3", meter.Gas, "xyz"}},
		},
		{name: "missing column", in: "meter_id,token\nMTR-1,abc\n", err: "lacks column(s) utility"},
		{name: "bad meter id", in: "meter_id,utility,token\nMTR 1,gas,abc\n", err: "is not 1 to 64 characters"},
		{name: "bad utility", in: "meter_id,utility,token\nMTR-1,steam,abc\n", err: "unknown utility"},
		{name: "duplicate", in: "meter_id,utility,token\nMTR-1,gas,a\nMTR-1,gas,b\n", err: "already on line 2"},
		{name: "no token", in: "meter_id,utility,token\nMTR-1,gas,\n", err: "has no token"},
		{name: "empty", in: "meter_id,utility,token\n", err: "no meters"},
		{
			name: "certificates: no token column", certs: true,
			in:   "meter_id,utility\nMTR-1,electricity\n",
			want: []Credential{{"MTR-1", meter.Electricity, ""}},
		},
		{
			name: "certificates: empty token", certs: true,
			in:   "meter_id,utility,token\nMTR-1,gas,\nMTR-2,gas,abc\n",
			want: []Credential{{"MTR-1", meter.Gas, ""}, {"MTR-2", meter.Gas, "abc"}},
		},
		{name: "certificates: still a utility", certs: true, in: "meter_id\nMTR-1\n", err: "lacks column(s) utility"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadCredentials(strings.NewReader(c.in), !c.certs)
			if c.err != "" {
				require.ErrorContains(t, err, c.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
	_, err := LoadCredentials("/nonexistent/meters.csv", true)
	require.Error(t, err)
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	cases := []struct {
		name   string
		change func(*Config)
		err    string
	}{
		{"broker", func(c *Config) { c.Broker = "localhost" }, "broker"},
		{"qos", func(c *Config) { c.QoS = 2 }, "qos"},
		{"interval", func(c *Config) { c.Interval = 0 }, "interval"},
		{"speed", func(c *Config) { c.Speed = 0 }, "speed"},
		{"batch", func(c *Config) { c.BatchMax = 97 }, "batch max"},
		{"buffer", func(c *Config) { c.Buffer = 0 }, "buffer"},
		{"backoff", func(c *Config) { c.ReconnectMax = time.Millisecond }, "reconnect max"},
		{"fault", func(c *Config) { c.Faults.Corrupt = 2 }, "corrupt fault"},
		{"cert", func(c *Config) { c.CertFile = "c.pem" }, "cert and a key"},
		{"cert dir over tcp", func(c *Config) { c.CertDir = "certs" }, "needs a tls:// broker"},
		{"cert dir and cert", func(c *Config) {
			c.Broker, c.CertDir, c.CertFile, c.KeyFile = "tls://localhost:8883", "certs", "c.pem", "k.pem"
		}, "exclude each other"},
		{"profile", func(c *Config) { c.Profile.SolarShare = -1 }, "solar share"},
		{"keepalive", func(c *Config) { c.KeepAlive = time.Millisecond }, "keep-alive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.change(&cfg)
			require.ErrorContains(t, cfg.Validate(), c.err)
		})
	}
	// All problems are reported at once.
	cfg := DefaultConfig()
	cfg.QoS, cfg.Buffer = 3, 0
	err := cfg.Validate()
	require.ErrorContains(t, err, "qos")
	require.ErrorContains(t, err, "buffer")
}

func TestStartTime(t *testing.T) {
	now := time.Date(2025, 11, 22, 12, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	assert.Equal(t, now, cfg.start(now), "real time starts now")
	cfg.Speed, cfg.Duration = 1440, 10*time.Minute
	assert.Equal(t, now.AddDate(0, 0, -10), cfg.start(now), "accelerated runs end about now")
	cfg.Duration = 0
	assert.Equal(t, now.AddDate(0, 0, -7), cfg.start(now))
	cfg.Rate = 0
	assert.Equal(t, now.AddDate(-1, 0, 0), cfg.start(now), "load mode replays a year")
	cfg.Start = now.Add(-time.Hour)
	assert.Equal(t, now.Add(-time.Hour), cfg.start(now))
}

func TestSimClock(t *testing.T) {
	real0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := simClock{realStart: real0, simStart: real0.AddDate(0, 0, -2), speed: 1440}
	assert.Equal(t, real0.AddDate(0, 0, -1), c.now(real0.Add(time.Minute)))
	assert.Equal(t, real0.Add(time.Minute), c.realAt(real0.AddDate(0, 0, -1)))
	// It never runs ahead of the wall clock.
	later := real0.Add(time.Hour)
	assert.Equal(t, later, c.now(later))
	assert.Equal(t, real0.Add(5*time.Hour), c.realAt(real0.Add(5*time.Hour)))
}

func TestCorruptedPayloadsNeverDecode(t *testing.T) {
	at := time.Date(2025, 11, 22, 0, 0, 0, 0, time.UTC)
	m := meter.Message{Meter: "MTR-1", Seq: 42, Readings: []meter.Reading{
		{Channel: "1-0:1.8.0", Time: at, Value: 12345678},
		{Channel: "1-0:1.7.0", Time: at, Value: 420},
	}}
	batch := []meter.Message{m, {Meter: "MTR-1", Seq: 43, Readings: m.Readings}}
	payloads := [][]byte{protocol.AppendCompact(nil, m), protocol.AppendCompactBatch(nil, batch)}
	var dec protocol.Decoder
	r := rand.New(rand.NewPCG(1, 2))
	kinds := map[protocol.Reason]int{}
	for i := range 400 {
		p := payloads[i%2]
		bad := corrupt(p, r)
		_, err := dec.Decode(nil, "MTR-1", meter.Electricity, bad, at)
		require.Error(t, err, "%s", bad)
		kinds[protocol.ReasonOf(err)]++
		_, err = dec.Decode(nil, "MTR-1", meter.Electricity, p, at)
		require.NoError(t, err, "the original is untouched")
	}
	assert.Len(t, kinds, 3, "malformed_json, bad_version and bad_channel: %v", kinds)
}

func TestBackoffIsJitteredAndBounded(t *testing.T) {
	f := &Fleet{cfg: DefaultConfig()}
	f.cfg.ReconnectMin, f.cfg.ReconnectMax = 100*time.Millisecond, 2*time.Second
	s := &sim{f: f, rng: rand.New(rand.NewPCG(3, 4))}
	seen := map[time.Duration]bool{}
	for failures := range 10 {
		s.failures = failures
		ceiling := min(100*time.Millisecond<<failures, 2*time.Second)
		for range 20 {
			d := s.backoff()
			assert.GreaterOrEqual(t, d, ceiling/2)
			assert.LessOrEqual(t, d, ceiling)
			seen[d] = true
		}
	}
	assert.Greater(t, len(seen), 150, "waits are spread, not synchronised")
}
