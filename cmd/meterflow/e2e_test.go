package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/broker"
	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/influx"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/protocol"
	"github.com/meterflow/meterflow/internal/testenv"
)

// The kill -9 test runs the server in a child process: this test binary
// started again with MF_E2E_CHILD set.
func TestMain(m *testing.M) {
	if cfg := os.Getenv("MF_E2E_CHILD"); cfg != "" {
		runChild(cfg)
		return
	}
	os.Exit(m.Run())
}

func runChild(cfgJSON string) {
	var cfg ServeCmd
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		os.Exit(2)
	}
	m := &Main{Config: cfg, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if err := m.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "child run:", err)
		os.Exit(2)
	}
	fmt.Printf("READY %s %s\n", m.HTTPAddr(), m.Broker.TCPAddr())
	select {}
}

// testConfig is a server configuration on free ports over fresh databases.
func testConfig(t *testing.T, influxURL, bucket string) ServeCmd {
	return ServeCmd{
		HTTPAddr: "127.0.0.1:0", Shutdown: 20 * time.Second,
		Postgres:        PostgresFlags{URL: testenv.Postgres(t), MaxConns: 8},
		Influx:          InfluxFlags{URL: influxURL, Bucket: bucket},
		MQTTAddr:        "127.0.0.1:0",
		MaxPayload:      65536,
		AuthCacheTTL:    time.Minute,
		JournalDir:      filepath.Join(t.TempDir(), "journal"),
		JournalMaxBytes: 256 << 20,
		Workers:         2, BatchSize: 2000,
		FlushInterval: 50 * time.Millisecond, SnapshotEvery: 300 * time.Millisecond,
		RollupEvery: time.Hour, // tests run passes themselves
		Auth:        AuthFlags{SessionTTL: time.Hour, Argon2MemoryKiB: 1024},
		Payments:    testPaymentFlags(), SlowFrom: 0.25, MaxHold: 200 * time.Millisecond,
	}
}

func testPaymentFlags() PaymentsFlags {
	return PaymentsFlags{Gateway: "sandbox", Payee: "Meterflow Energy", PhoneRegion: "GB", SMS: "dev",
		RecoverEvery: time.Second, OutboxPoll: 50 * time.Millisecond, ConfirmDeadline: 48 * time.Hour}
}

func startMain(t *testing.T, cfg ServeCmd) *Main {
	t.Helper()
	m := &Main{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	require.NoError(t, m.Run(context.Background()))
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func provision(t *testing.T, pgURL string, reqs ...device.Request) map[string]string {
	t.Helper()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: pgURL})
	require.NoError(t, err)
	defer db.Close()
	out, err := device.NewRegistry(&postgres.Meters{DB: db}, device.Config{}).Provision(context.Background(), reqs)
	require.NoError(t, err)
	tokens := map[string]string{}
	for _, p := range out {
		tokens[p.ID] = p.Token
	}
	return tokens
}

// simMeter publishes an electricity meter's readings: a register that grows
// by a known amount every 15 minutes.
type simMeter struct {
	id     string
	client paho.Client
	seq    uint64
	reg    meter.Value
	t0     time.Time
}

func dialMeter(t *testing.T, addr, id, token string) *simMeter {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername(id).SetPassword(token).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetWriteTimeout(5 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	t.Cleanup(func() { c.Disconnect(50) })
	return &simMeter{id: id, client: c, reg: 1_000_000, t0: time.Now().Add(-48 * time.Hour).Truncate(15 * time.Minute)}
}

// startAgo moves the meter's first reading n intervals into the past, so
// that n messages stay behind the server's clock.
func (m *simMeter) startAgo(n int) {
	m.t0 = time.Now().Add(-time.Duration(n) * 15 * time.Minute).Truncate(15 * time.Minute)
}

// message returns the next message: 4 channels at the next 15-minute mark.
func (m *simMeter) message() meter.Message {
	m.seq++
	m.reg += meter.Value(100 + m.seq%7*10)
	at := m.t0.Add(time.Duration(m.seq) * 15 * time.Minute)
	return meter.Message{Meter: m.id, Seq: m.seq, Readings: []meter.Reading{
		{Channel: "1-0:1.8.0", Time: at, Value: m.reg},
		{Channel: "1-0:1.7.0", Time: at, Value: 420},
		{Channel: "1-0:32.7.0", Time: at, Value: 231_400},
		{Channel: "1-0:31.7.0", Time: at, Value: 1_830},
	}}
}

func (m *simMeter) publish(msg meter.Message) error {
	tok := m.client.Publish(broker.ReadingsTopic(m.id), 1, false, protocol.AppendCompact(nil, msg))
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("no acknowledgement for seq %d", msg.Seq)
	}
	return tok.Error()
}

// influxCount counts distinct points of a meter's imported-energy channel.
func influxCount(t *testing.T, url, bucket, meterID string) int {
	t.Helper()
	c, err := influx.Open(influx.Config{URL: url, Bucket: bucket})
	require.NoError(t, err)
	defer c.Close()
	q := fmt.Sprintf(`from(bucket: %q) |> range(start: -400d, stop: 1d)
		|> filter(fn: (r) => r._measurement == "reading" and r.meter == %q and r._field == "1-0:1.8.0")
		|> count()`, bucket, meterID)
	res, err := c.Query(context.Background(), q)
	if err != nil {
		return -1
	}
	defer res.Close()
	n := 0
	for res.Next() {
		if v, ok := res.Record().Value().(int64); ok {
			n += int(v)
		}
	}
	return n
}

// influxSum sums the quantity field of a measurement.
func influxSum(t *testing.T, url, bucket, measurement, pred string) float64 {
	t.Helper()
	c, err := influx.Open(influx.Config{URL: url, Bucket: bucket})
	require.NoError(t, err)
	defer c.Close()
	q := fmt.Sprintf(`from(bucket: %q) |> range(start: -400d, stop: 1d)
		|> filter(fn: (r) => r._measurement == %q and r._field == "quantity" and %s)
		|> group() |> sum()`, bucket, measurement, pred)
	res, err := c.Query(context.Background(), q)
	require.NoError(t, err)
	defer res.Close()
	sum := 0.0
	for res.Next() {
		if v, ok := res.Record().Value().(float64); ok {
			sum += v
		}
	}
	require.NoError(t, res.Err())
	return sum
}

// pgUsage returns the sum of a meter's interval consumption and the number
// of intervals.
func pgUsage(t *testing.T, pgURL, meterID string) (sum int64, n int) {
	t.Helper()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: pgURL})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`select coalesce(sum(quantity), 0), count(*) from interval_usage where meter_id = $1 and channel = '1-0:1.8.0'`, meterID).Scan(&sum, &n))
	return sum, n
}

func TestReadingsReachBothStoresOnce(t *testing.T) {
	inf := testenv.InfluxDB(t)
	cfg := testConfig(t, inf.URL, inf.Bucket)
	tokens := provision(t, cfg.Postgres.URL, device.Request{ID: "E-1", Utility: meter.Electricity})
	m := startMain(t, cfg)

	sm := dialMeter(t, m.Broker.TCPAddr().String(), "E-1", tokens["E-1"])
	first := sm.reg
	var msgs []meter.Message
	for range 40 {
		msg := sm.message()
		msgs = append(msgs, msg)
		require.NoError(t, sm.publish(msg))
	}
	// A meter resending messages (lost PUBACK, reconnect) must not count twice.
	for _, msg := range msgs[30:] {
		require.NoError(t, sm.publish(msg))
	}
	want := int64(sm.reg - first - meter.Value(100+1%7*10)) // consumption between the first and last read
	require.Eventually(t, func() bool {
		sum, _ := pgUsage(t, cfg.Postgres.URL, "E-1")
		return influxCount(t, inf.URL, inf.Bucket, "E-1") == 40 && sum == want
	}, 30*time.Second, 100*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	sum, _ := pgUsage(t, cfg.Postgres.URL, "E-1")
	assert.Equal(t, want, sum, "interval consumption equals last register minus first")
	assert.Equal(t, 40, influxCount(t, inf.URL, inf.Bucket, "E-1"))

	// Hourly and daily rollups add up to the same consumption.
	require.NoError(t, m.Rollups.RunOnce(context.Background()))
	for _, ms := range []string{influx.MeasurementUsage1h, influx.MeasurementUsage1d} {
		assert.InDelta(t, float64(want)/1000, influxSum(t, inf.URL, inf.Bucket, ms, `r.meter == "E-1"`), 1e-6, ms)
	}
	assert.InDelta(t, float64(want)/1000, influxSum(t, inf.URL, inf.Bucket, influx.MeasurementFleet1d, `r.utility == "electricity" and r.channel == "1-0:1.8.0"`), 1e-6)

	resp, err := http.Get("http://" + m.HTTPAddr() + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), "mf_ingest_readings_total 200")
	assert.Contains(t, string(body), "mf_ingest_duplicate_messages_total 10")
}

func TestReadyzNamesWhatIsDown(t *testing.T) {
	d := testenv.StartInfluxd(t)
	cfg := testConfig(t, d.URL(), "meterflow/autogen")
	m := startMain(t, cfg)
	get := func() (int, string) {
		resp, err := http.Get("http://" + m.HTTPAddr() + "/readyz")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, _ := get()
	assert.Equal(t, 200, code)
	d.Stop()
	code, body := get()
	assert.Equal(t, 503, code)
	assert.Contains(t, body, `"down":["influxdb"]`)
	d.Start()
	code, _ = get()
	assert.Equal(t, 200, code)
}

func TestInfluxOutageBuffersAndReplays(t *testing.T) {
	d := testenv.StartInfluxd(t)
	cfg := testConfig(t, d.URL(), "meterflow/autogen")
	tokens := provision(t, cfg.Postgres.URL, device.Request{ID: "E-1", Utility: meter.Electricity})
	m := startMain(t, cfg)
	sm := dialMeter(t, m.Broker.TCPAddr().String(), "E-1", tokens["E-1"])
	for range 20 {
		require.NoError(t, sm.publish(sm.message()))
	}
	require.Eventually(t, func() bool { return influxCount(t, d.URL(), "meterflow/autogen", "E-1") == 20 }, 30*time.Second, 100*time.Millisecond)

	d.Stop()
	for range 30 {
		require.NoError(t, sm.publish(sm.message()), "meters are still acknowledged while InfluxDB is down")
	}
	time.Sleep(500 * time.Millisecond)
	assert.Positive(t, m.Pipeline.Lag(), "the journal holds what the stores have not confirmed")
	d.Start()
	require.Eventually(t, func() bool { return influxCount(t, d.URL(), "meterflow/autogen", "E-1") == 50 }, 60*time.Second, 200*time.Millisecond)
	_, n := pgUsage(t, cfg.Postgres.URL, "E-1")
	assert.Equal(t, 49, n, "every interval between the 50 reads reached PostgreSQL")
}

type child struct {
	cmd  *exec.Cmd
	mqtt string
}

func startChild(t *testing.T, cfg ServeCmd) *child {
	t.Helper()
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MF_E2E_CHILD="+string(b))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	f := strings.Fields(line)
	require.Len(t, f, 3, line)
	return &child{cmd: cmd, mqtt: f[2]}
}

func TestAcknowledgedReadingsSurviveKill9(t *testing.T) {
	inf := testenv.InfluxDB(t)
	cfg := testConfig(t, inf.URL, inf.Bucket)
	cfg.MQTTAddr = "127.0.0.1:" + freePort(t)
	ids := []string{"E-1", "E-2", "E-3", "E-4"}
	var reqs []device.Request
	for _, id := range ids {
		reqs = append(reqs, device.Request{ID: id, Utility: meter.Electricity})
	}
	tokens := provision(t, cfg.Postgres.URL, reqs...)
	c := startChild(t, cfg)

	var mu sync.Mutex
	acked := map[string]uint64{} // highest acknowledged seq per meter; meters publish in order
	firstReg := map[string]meter.Value{}
	regAt := map[string]map[uint64]meter.Value{}
	var wg sync.WaitGroup
	for _, id := range ids {
		sm := dialMeter(t, c.mqtt, id, tokens[id])
		const most = 20000
		sm.startAgo(most + 10)
		mu.Lock()
		firstReg[id] = sm.reg
		regAt[id] = map[uint64]meter.Value{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range most {
				msg := sm.message()
				mu.Lock()
				regAt[id][msg.Seq] = msg.Readings[0].Value
				mu.Unlock()
				if sm.publish(msg) != nil {
					return // the server died
				}
				mu.Lock()
				acked[id] = msg.Seq
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
	_ = c.cmd.Wait()
	wg.Wait()

	startChild(t, cfg) // same journal, same databases
	for _, id := range ids {
		mu.Lock()
		n := acked[id]
		mu.Unlock()
		require.Positive(t, n, "meter %s had readings acknowledged before the kill", id)
		// Every acknowledged reading is in InfluxDB (unacknowledged ones may
		// be too: they were durable but the PUBACK was lost with the process).
		got := 0
		assert.Eventually(t, func() bool { got = influxCount(t, inf.URL, inf.Bucket, id); return got >= int(n) }, 60*time.Second, 200*time.Millisecond, "meter %s", id)
		require.GreaterOrEqual(t, got, int(n), "meter %s: %d of %d acknowledged readings in InfluxDB", id, got, n)
		// PostgreSQL holds each interval once: the consumption sums to the
		// last stored register minus the first.
		var sum, want int64
		var stored int
		require.Eventually(t, func() bool {
			stored = influxCount(t, inf.URL, inf.Bucket, id)
			sum, _ = pgUsage(t, cfg.Postgres.URL, id)
			mu.Lock()
			want = int64(regAt[id][uint64(stored)] - regAt[id][1])
			mu.Unlock()
			return sum == want
		}, 30*time.Second, 200*time.Millisecond, "meter %s: %d reads stored, consumption %d, want %d", id, stored, sum, want)
		assert.GreaterOrEqual(t, stored, int(n))
		t.Logf("meter %s: %d acknowledged, %d stored, consumption %d counted once", id, n, stored, sum)
	}
}

func freePort(t *testing.T) string {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, p, _ := strings.Cut(l.Addr().String(), ":")
	return p
}

func TestMalformedPayloadsStoreNothing(t *testing.T) {
	inf := testenv.InfluxDB(t)
	cfg := testConfig(t, inf.URL, inf.Bucket)
	tokens := provision(t, cfg.Postgres.URL, device.Request{ID: "E-1", Utility: meter.Electricity})
	m := startMain(t, cfg)
	sm := dialMeter(t, m.Broker.TCPAddr().String(), "E-1", tokens["E-1"])
	now := time.Now().Unix()
	cases := []struct {
		name, payload, reason string
	}{
		{"not json", `{"v":1,`, "malformed_json"},
		{"unknown version", fmt.Sprintf(`{"v":9,"seq":1,"t":%d,"r":[{"c":"1-0:1.8.0","v":1}]}`, now), "bad_version"},
		{"unknown channel", fmt.Sprintf(`{"v":1,"seq":1,"t":%d,"r":[{"c":"1-0:99.9.9","v":1}]}`, now), "bad_channel"},
		{"gas channel on an electricity meter", fmt.Sprintf(`{"v":1,"seq":1,"t":%d,"r":[{"c":"7-0:3.0.0","v":1}]}`, now), "bad_channel"},
		{"far future", fmt.Sprintf(`{"v":1,"seq":1,"t":%d,"r":[{"c":"1-0:1.8.0","v":1}]}`, now+86400), "bad_time"},
		{"missing seq", fmt.Sprintf(`{"v":1,"t":%d,"r":[{"c":"1-0:1.8.0","v":1}]}`, now), "missing_field"},
		{"not a number", fmt.Sprintf(`{"v":1,"seq":1,"t":%d,"r":[{"c":"1-0:1.8.0","v":"12"}]}`, now), "bad_value"},
		{"oversized", fmt.Sprintf(`{"v":1,"seq":1,"t":%d,"r":[{"c":"1-0:1.8.0","v":1}],"pad":"%s"}`, now, strings.Repeat("x", 70_000)), "too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := sm.client.Publish(broker.ReadingsTopic("E-1"), 1, false, c.payload)
			tok.WaitTimeout(5 * time.Second)
			assert.Eventually(t, func() bool {
				return strings.Contains(metrics(t, m), fmt.Sprintf(`mf_ingest_rejected_total{reason=%q}`, c.reason))
			}, 5*time.Second, 50*time.Millisecond)
		})
	}
	// A good reading still goes through afterwards, and it is all that is stored.
	sm = dialMeter(t, m.Broker.TCPAddr().String(), "E-1", tokens["E-1"])
	require.NoError(t, sm.publish(sm.message()))
	require.Eventually(t, func() bool { return influxCount(t, inf.URL, inf.Bucket, "E-1") == 1 }, 20*time.Second, 100*time.Millisecond)
	assert.Contains(t, metrics(t, m), "mf_ingest_readings_total 4")
}

func metrics(t *testing.T, m *Main) string {
	resp, err := http.Get("http://" + m.HTTPAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
