package fleet

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testConfig is a fast run against addr: a simulated day goes by in half
// a second of real time, after which the simulated clock has caught up
// with the wall clock and the meters fall quiet.
func testConfig(t *testing.T, addr string) Config {
	cfg := DefaultConfig()
	cfg.Broker = "tcp://" + addr
	cfg.Start = time.Now().Add(-24 * time.Hour)
	cfg.Speed = float64(24*time.Hour) / float64(500*time.Millisecond)
	cfg.Duration = 800 * time.Millisecond
	cfg.Drain = 5 * time.Second
	cfg.ConnectRate = 0
	cfg.ReconnectMin = 20 * time.Millisecond
	cfg.ReconnectMax = 200 * time.Millisecond
	cfg.AckTimeout = 3 * time.Second
	cfg.Seed = 7
	cfg.AckedLog = filepath.Join(t.TempDir(), "acked.csv")
	return cfg
}

func runFleet(t *testing.T, cfg Config, creds []Credential) Summary {
	t.Helper()
	f, err := New(cfg, creds)
	require.NoError(t, err)
	sum, err := f.Run(context.Background())
	require.NoError(t, err)
	t.Logf("summary: sent %d acked %d failed %d rejected %d generated %d batches %d pending %d losses %d",
		sum.Sent, sum.Acked, sum.Failed, sum.Rejected, sum.Generated, sum.Batches, sum.Pending, sum.ConnectionLosses)
	return sum
}

type ackLine struct {
	key
	t time.Time
}

func readAckLog(t *testing.T, path string) []ackLine {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	require.True(t, sc.Scan())
	require.Equal(t, "meter_id,seq,time", sc.Text())
	var out []ackLine
	for sc.Scan() {
		parts := strings.Split(sc.Text(), ",")
		require.Len(t, parts, 3)
		seq, err := strconv.ParseUint(parts[1], 10, 64)
		require.NoError(t, err)
		at, err := time.Parse(time.RFC3339Nano, parts[2])
		require.NoError(t, err)
		out = append(out, ackLine{key{parts[0], seq}, at})
	}
	require.NoError(t, sc.Err())
	return out
}

// checkAcked asserts that every line of the acked log arrived at the
// broker with its time, once per message.
func checkAcked(t *testing.T, lines []ackLine, got map[key]message) {
	t.Helper()
	seen := map[key]bool{}
	for _, l := range lines {
		require.False(t, seen[l.key], "acked log repeats %v", l.key)
		seen[l.key] = true
		m, ok := got[l.key]
		require.True(t, ok, "acknowledged %v never reached the broker", l.key)
		require.True(t, l.t.Equal(m.Readings[0].Time), "acked log time %v, broker got %v", l.t, m.Readings[0].Time)
	}
}

func TestFleetDeliversEveryAcknowledgedMessage(t *testing.T) {
	rec := &recorder{}
	b := startBroker(t, "127.0.0.1:0", rec, nil, nil)
	creds := testCreds(20)
	cfg := testConfig(t, b.addr)
	sum := runFleet(t, cfg, creds)

	msgs, bad := decodeAll(t, rec.publishes(), creds)
	require.Empty(t, bad, "every payload decodes")
	got := distinct(msgs)

	// Counts: nothing lost, nothing left, nothing counted twice.
	assert.Equal(t, 20, sum.Meters)
	assert.EqualValues(t, 20, sum.Connected)
	assert.Positive(t, sum.Generated)
	assert.EqualValues(t, len(got), sum.Generated, "every generated message arrived")
	assert.Equal(t, sum.Generated, sum.MessagesAcked)
	assert.Zero(t, sum.Pending)
	assert.Zero(t, sum.Dropped)
	assert.Zero(t, sum.Failed)
	assert.Zero(t, sum.Rejected)
	assert.Equal(t, sum.Sent, sum.Acked)
	assert.EqualValues(t, len(rec.publishes()), sum.Sent)
	assert.Equal(t, sum.Sent, sum.Acked+sum.Failed+sum.Rejected)
	assert.Positive(t, sum.AckLatencyMs.Max)
	assert.LessOrEqual(t, sum.AckLatencyMs.P50, sum.AckLatencyMs.P99)
	assert.LessOrEqual(t, sum.AckLatencyMs.P99, sum.AckLatencyMs.Max)
	assert.Positive(t, sum.MsgsPerS)
	assert.Positive(t, sum.Memory.BytesPerMeter)

	var readings int64
	for _, m := range got {
		readings += int64(len(m.Readings))
	}
	assert.Equal(t, readings, sum.ReadingsAcked)

	lines := readAckLog(t, cfg.AckedLog)
	assert.EqualValues(t, sum.MessagesAcked, len(lines))
	checkAcked(t, lines, got)

	// A day of quarter hours per meter, with registers that only go up
	// (no meter of this seed starts near its width).
	perMeter := map[string][]message{}
	for _, m := range got {
		perMeter[m.Meter] = append(perMeter[m.Meter], m)
	}
	require.Len(t, perMeter, 20)
	for id, ms := range perMeter {
		slices.SortFunc(ms, func(a, b message) int { return int(a.Seq) - int(b.Seq) })
		assert.InDelta(t, 96, len(ms), 2, "meter %s", id)
		for i := 1; i < len(ms); i++ {
			assert.Equal(t, ms[i-1].Seq+1, ms[i].Seq, "meter %s seqs are consecutive", id)
			assert.Equal(t, 15*time.Minute, ms[i].Readings[0].Time.Sub(ms[i-1].Readings[0].Time))
			assert.GreaterOrEqual(t, ms[i].Readings[0].Value, ms[i-1].Readings[0].Value, "meter %s register", id)
		}
	}

	// Sessions: one per meter, client ID the meter ID, clean by default.
	conns := rec.connections()
	assert.Len(t, conns, 20)
	for _, s := range conns {
		assert.Contains(t, perMeter, s.client)
		assert.True(t, s.clean)
	}
}

func TestSummaryJSON(t *testing.T) {
	rec := &recorder{}
	b := startBroker(t, "127.0.0.1:0", rec, nil, nil)
	cfg := testConfig(t, b.addr)
	cfg.Duration = 300 * time.Millisecond
	sum := runFleet(t, cfg, testCreds(3))

	raw, err := json.Marshal(sum)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	for _, k := range []string{"meters", "connected", "sent", "acked", "failed", "rejected", "duration_s", "msgs_per_s", "readings_per_s", "ack_latency_ms"} {
		assert.Contains(t, m, k)
	}
	lat, ok := m["ack_latency_ms"].(map[string]any)
	require.True(t, ok)
	for _, k := range []string{"p50", "p90", "p99", "max"} {
		assert.Contains(t, lat, k)
	}
	assert.EqualValues(t, 3, m["meters"])
	assert.EqualValues(t, sum.Acked, m["acked"])
	assert.InDelta(t, float64(sum.Acked)/sum.DurationS, m["msgs_per_s"], 1e-6)
	assert.InDelta(t, float64(sum.ReadingsAcked)/sum.DurationS, m["readings_per_s"], 1e-6)
}

func TestStoreAndForwardAcrossBrokerRestart(t *testing.T) {
	rec := &recorder{}
	first := startBroker(t, "127.0.0.1:0", rec, nil, nil)
	addr := first.addr
	creds := testCreds(20)
	cfg := testConfig(t, addr)
	// Two simulated days over two seconds: the broker is away for the
	// middle of them.
	cfg.Start = time.Now().Add(-48 * time.Hour)
	cfg.Speed = float64(48*time.Hour) / float64(2*time.Second)
	cfg.Duration = 2500 * time.Millisecond

	f, err := New(cfg, creds)
	require.NoError(t, err)
	type result struct {
		sum Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := f.Run(context.Background())
		done <- result{sum, err}
	}()

	time.Sleep(600 * time.Millisecond)
	first.close()
	time.Sleep(100 * time.Millisecond) // publishes being read as it closed
	before := len(rec.publishes())
	time.Sleep(600 * time.Millisecond)
	assert.Equal(t, before, len(rec.publishes()), "nothing arrives while the broker is away")
	startBroker(t, addr, rec, nil, nil)

	res := <-done
	require.NoError(t, res.err)
	sum := res.sum
	t.Logf("summary: %+v", sum)

	msgs, bad := decodeAll(t, rec.publishes(), creds)
	require.Empty(t, bad)
	got := distinct(msgs)
	assert.EqualValues(t, len(got), sum.Generated, "every generated message arrived")
	assert.Equal(t, sum.Generated, sum.MessagesAcked)
	assert.Zero(t, sum.Pending)
	assert.Zero(t, sum.Dropped)
	assert.GreaterOrEqual(t, sum.ConnectionLosses, int64(20))
	assert.GreaterOrEqual(t, sum.Connects, int64(40))
	assert.Equal(t, sum.Sent, sum.Acked+sum.Failed+sum.Rejected)
	checkAcked(t, readAckLog(t, cfg.AckedLog), got)

	// The backlog went out in b batches after the restart.
	assert.Positive(t, sum.Batches)
	batched := 0
	for _, m := range msgs {
		if m.batch && m.order >= before {
			batched++
		}
	}
	assert.Greater(t, batched, 20, "backlog messages sent in batches")
	for _, p := range rec.publishes() {
		if strings.Contains(string(p.payload), `"b":[`) {
			assert.LessOrEqual(t, strings.Count(string(p.payload), `"seq":`), 96)
		}
	}
}

func TestFaultInjection(t *testing.T) {
	creds := testCreds(12)
	tokens := map[string]string{}
	for _, c := range creds {
		tokens[c.MeterID] = c.Token
	}
	cases := []struct {
		name  string
		setup func(*Config)
		check func(t *testing.T, sum Summary, msgs []message, bad []received, rec *recorder)
	}{
		{
			name:  "corrupted payloads fail to decode",
			setup: func(c *Config) { c.Faults.Corrupt = 0.2 },
			check: func(t *testing.T, sum Summary, msgs []message, bad []received, _ *recorder) {
				require.Positive(t, sum.Faults.Corrupted)
				assert.EqualValues(t, sum.Faults.Corrupted, len(bad), "every corrupted copy, and only those, fails to decode")
				assert.EqualValues(t, sum.Generated, len(distinct(msgs)), "the real messages still arrive")
			},
		},
		{
			name:  "duplicates resend the same seq",
			setup: func(c *Config) { c.Faults.Duplicate = 0.2 },
			check: func(t *testing.T, sum Summary, msgs []message, _ []received, rec *recorder) {
				require.Positive(t, sum.Faults.Duplicates)
				// Each duplicate is the previous payload of its meter
				// again, byte for byte.
				last := map[string]string{}
				again := 0
				for _, p := range rec.publishes() {
					if last[p.client] == string(p.payload) {
						again++
					}
					last[p.client] = string(p.payload)
				}
				assert.EqualValues(t, sum.Faults.Duplicates, again)
				assert.Greater(t, len(msgs), len(distinct(msgs)))
				assert.EqualValues(t, sum.Generated, len(distinct(msgs)))
				assert.Equal(t, sum.Generated, sum.MessagesAcked, "duplicates are not counted as messages")
			},
		},
		{
			name:  "out-of-order messages arrive after the next one",
			setup: func(c *Config) { c.Faults.OutOfOrder = 0.2 },
			check: func(t *testing.T, sum Summary, msgs []message, _ []received, _ *recorder) {
				require.Positive(t, sum.Faults.OutOfOrder)
				last := map[string]uint64{}
				backwards := 0
				for _, m := range msgs {
					if prev, ok := last[m.Meter]; ok && m.Seq < prev {
						backwards++
					}
					last[m.Meter] = m.Seq
				}
				// A message held back when the run stops goes out last,
				// after its predecessor: at most one per meter.
				assert.LessOrEqual(t, int64(backwards), sum.Faults.OutOfOrder)
				assert.GreaterOrEqual(t, int64(backwards), sum.Faults.OutOfOrder-12)
				assert.EqualValues(t, sum.Generated, len(distinct(msgs)))
			},
		},
		{
			name:  "spikes jump and come back",
			setup: func(c *Config) { c.Faults.Spike = 0.1 },
			check: func(t *testing.T, sum Summary, msgs []message, _ []received, _ *recorder) {
				require.Positive(t, sum.Faults.Spikes)
				spikes := 0
				for _, ms := range byMeter(msgs) {
					for i := 1; i+1 < len(ms); i++ {
						v := ms[i].Readings[0].Value
						if v-ms[i-1].Readings[0].Value >= spikeJump && v-ms[i+1].Readings[0].Value >= spikeJump/2 {
							spikes++
						}
					}
				}
				assert.Positive(t, spikes)
				assert.LessOrEqual(t, int64(spikes), sum.Faults.Spikes)
			},
		},
		{
			name:  "rollover meters wrap their registers",
			setup: func(c *Config) { c.Faults.Rollover = 1 },
			check: func(t *testing.T, sum Summary, msgs []message, _ []received, _ *recorder) {
				assert.EqualValues(t, 12, sum.Faults.RolloverMeters)
				wrapped := 0
				for _, ms := range byMeter(msgs) {
					for i := 1; i < len(ms); i++ {
						if ms[i].Readings[0].Value < ms[i-1].Readings[0].Value {
							wrapped++
							break
						}
					}
				}
				assert.Greater(t, wrapped, 6, "most registers wrap within the simulated days")
			},
		},
		{
			name: "clock skew shifts every time of a meter",
			setup: func(c *Config) {
				c.Faults.ClockSkew = 1
				c.Faults.MaxSkew = 5 * time.Minute
			},
			check: func(t *testing.T, sum Summary, msgs []message, _ []received, _ *recorder) {
				assert.EqualValues(t, 12, sum.Faults.SkewedMeters)
				for id, ms := range byMeter(msgs) {
					skew := ms[0].Readings[0].Time.Sub(time.UnixMilli(int64(ms[0].Seq) * (15 * time.Minute).Milliseconds()))
					assert.NotZero(t, skew, "meter %s", id)
					assert.LessOrEqual(t, skew.Abs(), 5*time.Minute)
					for _, m := range ms {
						assert.Equal(t, skew, m.Readings[0].Time.Sub(time.UnixMilli(int64(m.Seq)*(15*time.Minute).Milliseconds())))
					}
				}
			},
		},
		{
			name: "offline periods are bridged by the backlog",
			setup: func(c *Config) {
				c.Faults.Offline = 0.03
				c.Faults.OfflineMax = 3 * time.Hour
			},
			check: func(t *testing.T, sum Summary, msgs []message, _ []received, _ *recorder) {
				require.Positive(t, sum.Faults.OfflinePeriods)
				assert.GreaterOrEqual(t, sum.ConnectionLosses, sum.Faults.OfflinePeriods)
				assert.EqualValues(t, sum.Generated, len(distinct(msgs)))
				assert.Zero(t, sum.Pending)
				assert.Positive(t, sum.Batches)
			},
		},
		{
			name:  "wrong credentials are refused",
			setup: func(c *Config) { c.Faults.WrongCredentials = 0.4 },
			check: func(t *testing.T, sum Summary, msgs []message, _ []received, rec *recorder) {
				wrong := sum.Faults.WrongCredentials
				require.Positive(t, wrong)
				assert.Positive(t, sum.ConnectRefused)
				assert.EqualValues(t, 12-wrong, sum.Connected)
				assert.EqualValues(t, 12-wrong, len(byMeter(msgs)), "refused meters publish nothing")
				assert.Positive(t, sum.Pending, "refused meters keep their readings")
				assert.Equal(t, sum.Generated, sum.MessagesAcked+sum.Pending)
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			b := startBroker(t, "127.0.0.1:0", rec, &tokenAuth{tokens: tokens}, nil)
			cfg := testConfig(t, b.addr)
			cfg.Start = time.Now().Add(-72 * time.Hour)
			cfg.Speed = float64(72*time.Hour) / float64(600*time.Millisecond)
			c.setup(&cfg)
			sum := runFleet(t, cfg, creds)
			msgs, bad := decodeAll(t, rec.publishes(), creds)
			c.check(t, sum, msgs, bad, rec)
		})
	}
}

// byMeter groups messages by meter, each group in seq order without
// repeats.
func byMeter(msgs []message) map[string][]message {
	out := map[string][]message{}
	for _, m := range distinct(msgs) {
		out[m.Meter] = append(out[m.Meter], m)
	}
	for _, ms := range out {
		slices.SortFunc(ms, func(a, b message) int { return int(a.Seq) - int(b.Seq) })
	}
	return out
}

func TestLoadMode(t *testing.T) {
	rec := &recorder{}
	b := startBroker(t, "127.0.0.1:0", rec, nil, nil)
	creds := testCreds(10)
	cfg := testConfig(t, b.addr)
	cfg.Rate = 0
	cfg.Start = time.Time{} // a year ago
	cfg.Duration = 500 * time.Millisecond
	sum := runFleet(t, cfg, creds)

	msgs, bad := decodeAll(t, rec.publishes(), creds)
	require.Empty(t, bad)
	assert.Positive(t, sum.Acked)
	assert.Zero(t, sum.Batches, "load mode publishes one message at a time")
	assert.Equal(t, sum.Acked, sum.MessagesAcked)
	assert.EqualValues(t, sum.Generated, len(distinct(msgs)))
	checkAcked(t, readAckLog(t, cfg.AckedLog), distinct(msgs))
	for _, m := range msgs {
		assert.True(t, m.Readings[0].Time.Before(time.Now().AddDate(0, 0, -300)), "load mode replays the past year")
	}
}

func TestLoadModeRateLimit(t *testing.T) {
	rec := &recorder{}
	b := startBroker(t, "127.0.0.1:0", rec, nil, nil)
	cfg := testConfig(t, b.addr)
	cfg.Rate = 100
	cfg.Start = time.Time{}
	cfg.Duration = 500 * time.Millisecond
	start := time.Now()
	sum := runFleet(t, cfg, testCreds(10))
	elapsed := time.Since(start)
	assert.Positive(t, sum.Acked)
	// The bucket never lets through more than the rate (plus its burst
	// of a twentieth of a second).
	assert.LessOrEqual(t, float64(sum.Sent), 100*elapsed.Seconds()+6)
}

func TestQoS0(t *testing.T) {
	rec := &recorder{}
	b := startBroker(t, "127.0.0.1:0", rec, nil, nil)
	creds := testCreds(6)
	cfg := testConfig(t, b.addr)
	cfg.QoS = 0
	cfg.Duration = 300 * time.Millisecond
	sum := runFleet(t, cfg, creds)
	assert.Zero(t, sum.Acked, "nothing is acknowledged at QoS 0")
	assert.Positive(t, sum.Sent)
	assert.Positive(t, sum.MsgsPerS)
	assert.Empty(t, readAckLog(t, cfg.AckedLog))
	require.Eventually(t, func() bool {
		msgs, _ := decodeAll(t, rec.publishes(), creds)
		return int64(len(distinct(msgs))) == sum.Generated
	}, 2*time.Second, 20*time.Millisecond)
}

func TestSourceAddrsAndPersistentSessions(t *testing.T) {
	rec := &recorder{}
	b := startBroker(t, "127.0.0.1:0", rec, nil, nil)
	cfg := testConfig(t, b.addr)
	cfg.Duration = 200 * time.Millisecond
	cfg.Persistent = true
	cfg.SourceAddrs = []net.IP{net.ParseIP("127.0.0.2"), net.ParseIP("127.0.0.3")}
	runFleet(t, cfg, testCreds(6))
	hosts := map[string]int{}
	for _, s := range rec.connections() {
		host, _, err := net.SplitHostPort(s.remote)
		require.NoError(t, err)
		hosts[host]++
		assert.False(t, s.clean, "persistent session")
	}
	assert.Equal(t, map[string]int{"127.0.0.2": 3, "127.0.0.3": 3}, hosts)
}

func TestFleetRejectsBadSetup(t *testing.T) {
	_, err := New(DefaultConfig(), nil)
	require.Error(t, err)
	cfg := DefaultConfig()
	cfg.Broker = "http://x"
	_, err = New(cfg, testCreds(1))
	require.ErrorContains(t, err, "scheme")
	cfg = DefaultConfig()
	cfg.Meters = 2
	f, err := New(cfg, testCreds(5))
	require.NoError(t, err)
	assert.Len(t, f.creds, 2, "--meters takes the first N credentials")
}

func TestSummaryOfAnUnreachableBroker(t *testing.T) {
	cfg := testConfig(t, "127.0.0.1:1") // nothing listens on port 1
	cfg.Duration = 200 * time.Millisecond
	cfg.Drain = 100 * time.Millisecond
	sum := runFleet(t, cfg, testCreds(3))
	assert.Zero(t, sum.Connected)
	assert.Positive(t, sum.ConnectErrors)
	assert.Zero(t, sum.Sent)
	assert.Equal(t, sum.Generated, sum.Pending, "what could not be sent is counted as pending")
}
