package fleet

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/protocol"
)

// received is one PUBLISH as the broker saw it.
type received struct {
	client  string
	topic   string
	payload []byte
	at      time.Time
}

// session is one CONNECT as the broker saw it.
type session struct {
	client string
	remote string
	clean  bool
}

// recorder is a broker hook that records every publish (before the
// PUBACK, in OnPublish) and every connection. It is shared by the brokers
// of a test, so that a restart keeps one record.
type recorder struct {
	mqtt.HookBase
	mu       sync.Mutex
	pubs     []received
	sessions []session
}

func (h *recorder) ID() string { return "recorder" }

func (h *recorder) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnConnect
}

func (h *recorder) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sessions = append(h.sessions, session{client: cl.ID, remote: cl.Net.Remote, clean: pk.Connect.Clean})
	return nil
}

func (h *recorder) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pubs = append(h.pubs, received{client: cl.ID, topic: pk.TopicName, payload: bytes.Clone(pk.Payload), at: time.Now()})
	return pk, nil
}

func (h *recorder) publishes() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.pubs)
}

func (h *recorder) connections() []session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sessions)
}

// tokenAuth lets in only meters presenting their own token, and lets them
// publish anywhere.
type tokenAuth struct {
	mqtt.HookBase
	tokens map[string]string
}

func (h *tokenAuth) ID() string { return "token-auth" }

func (h *tokenAuth) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *tokenAuth) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	want, ok := h.tokens[string(pk.Connect.Username)]
	return ok && want == string(pk.Connect.Password)
}

func (h *tokenAuth) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// broker is an in-process mochi broker listening on TCP.
type broker struct {
	srv  *mqtt.Server
	addr string
	once sync.Once
}

// close stops the broker (mochi panics on a second Close).
func (b *broker) close() { b.once.Do(func() { _ = b.srv.Close() }) }

// startBroker starts a broker on addr (127.0.0.1:0 for any port) with the
// allow-all hook (or authHook) and rec. Restarting on a port just freed
// may take a few tries.
func startBroker(t *testing.T, addr string, rec *recorder, authHook mqtt.Hook, listen *listeners.Config) *broker {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if authHook == nil {
		authHook = new(auth.AllowHook)
	}
	require.NoError(t, srv.AddHook(authHook, nil))
	require.NoError(t, srv.AddHook(rec, nil))
	cfg := listeners.Config{ID: "tcp", Address: addr}
	if listen != nil {
		cfg = *listen
		cfg.Address = addr
	}
	l := listeners.NewTCP(cfg)
	var err error
	for range 50 {
		if err = srv.AddListener(l); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err)
	require.NoError(t, srv.Serve())
	b := &broker{srv: srv, addr: l.Address()}
	t.Cleanup(b.close)
	return b
}

// testCreds makes n meters of the three utilities in turn.
func testCreds(n int) []Credential {
	utilities := []meter.Utility{meter.Electricity, meter.Water, meter.Gas}
	out := make([]Credential, n)
	for i := range out {
		out[i] = Credential{
			MeterID: fmt.Sprintf("SIM-%04d", i),
			Utility: utilities[i%3],
			Token:   fmt.Sprintf("token-%04d", i),
		}
	}
	return out
}

// message is one decoded protocol message with where it came from.
type message struct {
	meter.Message
	batch bool // it came in a b payload
	order int  // arrival order at the broker
}

// decodeAll decodes every payload the broker received. Payloads that do
// not decode are returned apart.
func decodeAll(t *testing.T, pubs []received, creds []Credential) (msgs []message, bad []received) {
	t.Helper()
	utility := map[string]meter.Utility{}
	for _, c := range creds {
		utility[c.MeterID] = c.Utility
	}
	var dec protocol.Decoder
	for i, p := range pubs {
		u, ok := utility[p.client]
		require.True(t, ok, "unknown client %q", p.client)
		require.Equal(t, "meters/"+p.client+"/readings", p.topic)
		ms, err := dec.Decode(nil, p.client, u, p.payload, p.at)
		if err != nil {
			bad = append(bad, p)
			continue
		}
		batch := strings.Contains(string(p.payload), `"b":[`)
		for _, m := range ms {
			msgs = append(msgs, message{Message: m, batch: batch, order: i})
		}
	}
	return msgs, bad
}

// key names one message.
type key struct {
	meter string
	seq   uint64
}

func distinct(msgs []message) map[key]message {
	out := map[key]message{}
	for _, m := range msgs {
		if _, ok := out[key{m.Meter, m.Seq}]; !ok {
			out[key{m.Meter, m.Seq}] = m
		}
	}
	return out
}
