package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/broker"
	"github.com/meterflow/meterflow/internal/ingest"
	"github.com/meterflow/meterflow/internal/journal"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/protocol"
)

// dial5 connects an MQTT 5 client as meter id.
func (f *fixture) dial5(t *testing.T, id string) *paho5.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", f.b.TCPAddr().String(), 5*time.Second)
	require.NoError(t, err)
	c := paho5.NewClient(paho5.ClientConfig{Conn: conn, PacketTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, &paho5.Connect{
		ClientID: id, Username: id, UsernameFlag: true, Password: []byte(f.tokens[id]), PasswordFlag: true,
		KeepAlive: 30, CleanStart: true,
	})
	require.NoError(t, err)
	require.Equal(t, byte(0), ack.ReasonCode)
	t.Cleanup(func() { _ = c.Disconnect(&paho5.Disconnect{}) })
	return c
}

// puback publishes payload at QoS 1 and returns the PUBACK's reason code
// and reason string; err is set only when no PUBACK came.
func puback(c *paho5.Client, topic string, payload []byte, wait time.Duration) (code byte, reason string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := c.Publish(ctx, &paho5.Publish{Topic: topic, QoS: 1, Payload: payload})
	if resp == nil {
		return 0, "", err
	}
	if resp.Properties != nil {
		reason = resp.Properties.ReasonString
	}
	return resp.ReasonCode, reason, nil
}

// A publish the server refuses gets a PUBACK whose reason code says why
// when the meter speaks MQTT 5, and what docs/protocol.md says for MQTT
// 3.1.1; in every case nothing of it reaches the journal. The broker runs
// with the real front and journal, as in production.
func TestRefusalReasonCodes(t *testing.T) {
	j, err := journal.Open(journal.Options{Dir: t.TempDir(), NoSync: true, MaxBytes: 4096, MaxRecordBytes: 1024, SegmentBytes: 1 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { _ = j.Close() })
	const maxPayload = 512
	front := ingest.NewFront(ingest.FrontConfig{MaxPayloadBytes: maxPayload, FullWait: 100 * time.Millisecond}, j, nil)
	var logged lockedBuffer
	f := startLogged(t, front, slog.New(slog.NewTextHandler(&logged, nil)))

	now := time.Now().Truncate(time.Second)
	seq := map[string]uint64{}
	good := func(id string) []byte {
		seq[id]++
		return protocol.AppendCompact(nil, meter.Message{Meter: id, Seq: seq[id], Readings: []meter.Reading{
			{Channel: "1-0:1.8.0", Time: now, Value: meter.Value(1000 + seq[id])}}})
	}
	oversized := func(id string) []byte {
		p := good(id)
		p = append(p[:len(p)-1], `,"pad":"`...)
		p = append(p, strings.Repeat("x", maxPayload)...)
		return append(p, `"}`...)
	}
	refused := map[string]struct {
		payload func(id string) []byte
		reason  string
		code    byte
	}{
		"malformed JSON": {func(string) []byte { return []byte(`{"v":1,`) }, "malformed_json", 0x99},
		"unknown channel": {func(string) []byte {
			return []byte(fmt.Sprintf(`{"v":1,"seq":1,"t":%d,"r":[{"c":"1-0:99.9.9","v":1}]}`, now.Unix()))
		}, "bad_channel", 0x99},
		"unknown version": {func(string) []byte {
			return []byte(fmt.Sprintf(`{"v":9,"seq":1,"t":%d,"r":[{"c":"1-0:1.8.0","v":1}]}`, now.Unix()))
		}, "bad_version", 0x99},
		"oversized": {oversized, "too_large", 0x83},
		"SenML naming another meter": {func(id string) []byte {
			other := map[string]string{"E-1": "E-2", "E-2": "E-1"}[id]
			return []byte(fmt.Sprintf(`[{"bn":"urn:dev:mf:%s:","bt":%d,"n":"1-0:1.8.0","u":"kWh","s":12.5}]`, other, now.Unix()))
		}, "wrong_meter", 0x87},
	}
	rejected := func(reason string) float64 {
		return testutil.ToFloat64(mustCounter(t, f.prom, "mf_ingest_rejected_total", reason))
	}

	v5 := f.dial5(t, "E-1")
	v3, err := f.connect(t, "E-2", "E-2", f.tokens["E-2"])
	require.NoError(t, err)

	t.Run("accepted", func(t *testing.T) {
		head := j.Head()
		code, _, err := puback(v5, broker.ReadingsTopic("E-1"), good("E-1"), 5*time.Second)
		require.NoError(t, err)
		assert.Equal(t, byte(0), code)
		require.NoError(t, publish(v3, broker.ReadingsTopic("E-2"), string(good("E-2"))))
		assert.Equal(t, head+2, j.Head(), "both readings are in the journal")
	})

	for name, c := range refused {
		t.Run("MQTT 5: "+name, func(t *testing.T) {
			head := j.Head()
			code, reason, err := puback(v5, broker.ReadingsTopic("E-1"), c.payload("E-1"), 5*time.Second)
			require.NoError(t, err, "a refusal is acknowledged with a reason code")
			assert.Equal(t, fmt.Sprintf("%#02x", c.code), fmt.Sprintf("%#02x", code))
			assert.Equal(t, c.reason, reason, "the reason string names the rejection reason")
			assert.Equal(t, head, j.Head(), "nothing of it was stored")
		})
		t.Run("MQTT 3.1.1: "+name, func(t *testing.T) {
			head := j.Head()
			before := rejected(c.reason)
			require.NoError(t, publish(v3, broker.ReadingsTopic("E-2"), string(c.payload("E-2"))), "acknowledged and dropped")
			assert.Equal(t, head, j.Head(), "nothing of it was stored")
			assert.Equal(t, before+1, rejected(c.reason))
		})
	}

	t.Run("MQTT 5: another meter's topic", func(t *testing.T) {
		head := j.Head()
		code, reason, err := puback(v5, broker.ReadingsTopic("E-2"), good("E-1"), 5*time.Second)
		require.NoError(t, err)
		assert.Equal(t, byte(0x87), code)
		assert.Equal(t, "not authorized", reason)
		assert.Equal(t, head, j.Head())
		code, _, err = puback(v5, broker.ReadingsTopic("E-1"), good("E-1"), 5*time.Second)
		require.NoError(t, err)
		assert.Equal(t, byte(0), code, "the meter stays connected and publishes on")
		assert.Equal(t, head+1, j.Head())
	})

	// Fill the journal's budget: the next payload is not taken.
	t.Run("journal over its budget", func(t *testing.T) {
		var code byte
		var reason string
		for range 200 {
			head := j.Head()
			code, reason, err = puback(v5, broker.ReadingsTopic("E-1"), good("E-1"), 5*time.Second)
			require.NoError(t, err)
			if code != 0 {
				assert.Equal(t, head, j.Head(), "nothing of it was stored")
				break
			}
			require.Equal(t, head+1, j.Head())
		}
		assert.Equal(t, byte(0x97), code, "quota exceeded: come back later")
		assert.Equal(t, "journal_full", reason)

		head := j.Head()
		tok := v3.Publish(broker.ReadingsTopic("E-2"), 1, false, good("E-2"))
		assert.False(t, tok.WaitTimeout(time.Second), "MQTT 3.1.1: not acknowledged, the meter keeps it")
		assert.Equal(t, head, j.Head())
		assert.Equal(t, 2.0, rejected("journal_full"))
	})

	t.Run("MQTT 3.1.1: another meter's topic", func(t *testing.T) {
		head := j.Head()
		_ = publish(v3, broker.ReadingsTopic("E-1"), string(good("E-2")))
		assert.Eventually(t, func() bool { return !v3.IsConnectionOpen() }, 5*time.Second, 20*time.Millisecond, "disconnected")
		assert.Equal(t, head, j.Head())
	})

	t.Run("journal failed", func(t *testing.T) {
		require.NoError(t, j.Close())
		head := j.Head()
		code, reason, err := puback(v5, broker.ReadingsTopic("E-1"), good("E-1"), 5*time.Second)
		require.NoError(t, err)
		assert.Equal(t, byte(0x80), code, "unspecified error: not taken, come back later")
		assert.Equal(t, "internal", reason)
		assert.Equal(t, head, j.Head())
	})

	t.Run("refusals are logged by the hook alone", func(t *testing.T) {
		out := logged.String()
		assert.Contains(t, out, "payload rejected")
		assert.NotContains(t, out, "publish packet error", "mochi's own line, with the whole packet, for every refusal")
	})

	// A packet over the broker's packet limit is not read at all: the
	// connection is closed without a PUBACK.
	t.Run("MQTT 5: packet over the packet limit", func(t *testing.T) {
		c := f.dial5(t, "W-1")
		_, _, err := puback(c, broker.ReadingsTopic("W-1"), make([]byte, 70_000), 3*time.Second)
		require.Error(t, err)
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the connection stays open")
		}
	})
}

// lockedBuffer is a bytes.Buffer that several goroutines may write to.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
