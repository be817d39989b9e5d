package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/protocol"
)

// Authenticator checks meter credentials (device.Registry implements it).
type Authenticator interface {
	Authenticate(ctx context.Context, id, token string) (device.Identity, error)
	Lookup(ctx context.Context, id string) (device.Credential, error)
}

// Ingester takes one reading payload from an authenticated meter. It returns
// nil only once the payload is durable. An error with a method
// RejectReason() string is a bad payload that will never be accepted; one
// with Busy() bool returning true means the pipeline cannot take it now (the
// meter keeps it and retries); anything else is internal. Both are declared
// by behaviour so that the broker and the pipeline need not import each other.
type Ingester interface {
	Ingest(ctx context.Context, meter device.Identity, payload []byte, received time.Time) error
}

type rejection interface{ RejectReason() string }

type busy interface{ Busy() bool }

// Config configures the listeners and limits.
type Config struct {
	// TCPAddr is the plain MQTT listener ("" disables it).
	TCPAddr string
	// TLSAddr is the MQTT over TLS listener ("" disables it); it needs
	// CertFile and KeyFile.
	TLSAddr  string
	CertFile string
	KeyFile  string
	// WSAddr is the MQTT over WebSocket listener ("" disables it), for
	// gateways and browsers that reach us only over HTTP. It is mochi's
	// listener: plain ws (terminate TLS in front of it), any path, binary
	// frames. Meters authenticate with id and token as on TCP.
	WSAddr string
	// ClientCAFile, when set, lets meters authenticate on the TLS listener
	// with a certificate signed by this CA whose Common Name is the meter id.
	ClientCAFile string
	// MaxPacketBytes bounds one MQTT packet (default 64 KiB + headers).
	MaxPacketBytes uint32
	// WritesPending bounds each client's outbound queue. mochi allocates it
	// up front per connection; meters receive only acks and rare commands,
	// so it is small (default 32).
	WritesPending int32
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.TCPAddr == "" && c.TLSAddr == "" && c.WSAddr == "" {
		errs = append(errs, errors.New("mqtt: at least one of mqtt-addr, mqtt-tls-addr and mqtt-ws-addr must be set"))
	}
	if c.WSAddr != "" {
		if _, _, err := net.SplitHostPort(c.WSAddr); err != nil {
			errs = append(errs, fmt.Errorf("mqtt-ws-addr: %w", err))
		}
	}
	if c.TLSAddr != "" && (c.CertFile == "" || c.KeyFile == "") {
		errs = append(errs, errors.New("mqtt-tls-addr: needs mqtt-tls-cert and mqtt-tls-key"))
	}
	for name, f := range map[string]string{"mqtt-tls-cert": c.CertFile, "mqtt-tls-key": c.KeyFile, "mqtt-tls-client-ca": c.ClientCAFile} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	if c.ClientCAFile != "" && c.TLSAddr == "" {
		errs = append(errs, errors.New("mqtt-tls-client-ca: needs mqtt-tls-addr"))
	}
	return errors.Join(errs...)
}

// Broker is the embedded MQTT broker.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	srv     *mqtt.Server
	hook    *hook
	tcpAddr net.Addr
	tlsAddr net.Addr
	closeMu sync.Once
}

// New builds a broker; Start opens its listeners.
func New(cfg Config, auth Authenticator, ing Ingester, log *slog.Logger, reg prometheus.Registerer) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxPacketBytes == 0 {
		cfg.MaxPacketBytes = 64<<10 + 1024
	}
	if cfg.WritesPending == 0 {
		cfg.WritesPending = 32
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = cfg.WritesPending
	caps.MaximumPacketSize = cfg.MaxPacketBytes
	caps.MaximumQos = 1
	caps.RetainAvailable = 0
	caps.WildcardSubAvailable = 0
	caps.SharedSubAvailable = 0
	caps.ReceiveMaximum = 64
	caps.MaximumInflight = 64
	caps.MaximumSessionExpiryInterval = 7 * 24 * 3600
	caps.MaximumMessageExpiryInterval = 24 * 3600
	srv := mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		ClientNetWriteBufferSize: 512,
		ClientNetReadBufferSize:  2048,
		SysTopicResendInterval:   3600,
		Logger:                   slog.New(quietRefusals{log.Handler()}).With("component", "mqtt"),
	})
	m := newMetrics(reg, srv)
	h := &hook{auth: auth, ing: ing, log: log, m: m, ids: make(map[*mqtt.Client]device.Identity)}
	h.throttle = newThrottle(time.Second)
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("add broker hook: %w", err)
	}
	return &Broker{cfg: cfg, log: log, srv: srv, hook: h}, nil
}

// Start opens the listeners and starts serving.
func (b *Broker) Start() error {
	if b.cfg.TCPAddr != "" {
		l, err := net.Listen("tcp", b.cfg.TCPAddr)
		if err != nil {
			return fmt.Errorf("mqtt listen %s: %w", b.cfg.TCPAddr, err)
		}
		b.tcpAddr = l.Addr()
		if err := b.srv.AddListener(listeners.NewNet("tcp", l)); err != nil {
			return err
		}
	}
	if b.cfg.TLSAddr != "" {
		tc, err := b.tlsConfig()
		if err != nil {
			return err
		}
		l, err := tls.Listen("tcp", b.cfg.TLSAddr, tc)
		if err != nil {
			return fmt.Errorf("mqtt tls listen %s: %w", b.cfg.TLSAddr, err)
		}
		b.tlsAddr = l.Addr()
		if err := b.srv.AddListener(listeners.NewNet("tls", l)); err != nil {
			return err
		}
	}
	if b.cfg.WSAddr != "" {
		// mochi's WebSocket listener binds when served; check the address
		// now, so a taken port is an error at start, not a log line.
		probe, err := net.Listen("tcp", b.cfg.WSAddr)
		if err != nil {
			return fmt.Errorf("mqtt websocket listen %s: %w", b.cfg.WSAddr, err)
		}
		_ = probe.Close()
		if err := b.srv.AddListener(listeners.NewWebsocket(listeners.Config{ID: "ws", Address: b.cfg.WSAddr})); err != nil {
			return err
		}
	}
	return b.srv.Serve()
}

func (b *Broker) tlsConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(b.cfg.CertFile, b.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("mqtt tls certificate: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if b.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(b.cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt tls client ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt tls client ca: no certificate in %s", b.cfg.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// TCPAddr is the bound plain listener address (nil when disabled).
func (b *Broker) TCPAddr() net.Addr { return b.tcpAddr }

// TLSAddr is the bound TLS listener address (nil when disabled).
func (b *Broker) TLSAddr() net.Addr { return b.tlsAddr }

// Connected is the number of connected meters.
func (b *Broker) Connected() int64 { return atomic.LoadInt64(&b.srv.Info.ClientsConnected) }

// Close disconnects every meter and closes the listeners. Payloads whose
// Ingest returned have been acknowledged or not; none is half-taken.
func (b *Broker) Close() error {
	var err error
	b.closeMu.Do(func() { err = b.srv.Close() })
	return err
}

// quietRefusals drops the line mochi logs, at error level and with the
// whole packet, for every publish a hook answers with a reason code: the
// hook counts and logs refusals itself, throttled, so that a meter sending
// bad payloads in a loop cannot flood the log.
type quietRefusals struct{ slog.Handler }

func (q quietRefusals) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "publish packet error" {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietRefusals) WithAttrs(as []slog.Attr) slog.Handler {
	return quietRefusals{q.Handler.WithAttrs(as)}
}

func (q quietRefusals) WithGroup(name string) slog.Handler {
	return quietRefusals{q.Handler.WithGroup(name)}
}

// hook authenticates meters, enforces the topic ACL and hands payloads to
// the ingester.
type hook struct {
	mqtt.HookBase
	auth     Authenticator
	ing      Ingester
	log      *slog.Logger
	m        *metrics
	throttle *throttle

	mu  sync.RWMutex
	ids map[*mqtt.Client]device.Identity
}

func (h *hook) ID() string { return "meterflow" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnDisconnect:
		return true
	}
	return false
}

// ReadingsTopic is the topic a meter publishes its readings to.
func ReadingsTopic(id string) string { return "meters/" + id + "/readings" }

// CommandsTopic is the topic a meter subscribes to for commands.
func CommandsTopic(id string) string { return "meters/" + id + "/commands" }

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := cl.ID
	user := string(pk.Connect.Username)
	var (
		ident device.Identity
		err   error
		how   = "token"
	)
	switch {
	case certCN(cl) != "":
		how = "certificate"
		if certCN(cl) != id {
			err = fmt.Errorf("certificate names %q: %w", certCN(cl), device.ErrAuth)
			break
		}
		var cred device.Credential
		cred, err = h.auth.Lookup(ctx, id)
		ident = cred.Identity()
	case user != id:
		err = fmt.Errorf("client id %q differs from username %q: %w", id, user, device.ErrAuth)
	default:
		ident, err = h.auth.Authenticate(ctx, id, string(pk.Connect.Password))
	}
	if err != nil {
		reason := "bad_credentials"
		if !device.IsAuthError(err) {
			reason = "store_unavailable"
		}
		h.m.authFailures.WithLabelValues(reason).Inc()
		h.throttle.log(h.log, "auth:"+reason, "meter connection refused", "meter", id, "method", how, "remote", cl.Net.Remote, "err", err)
		return false
	}
	h.mu.Lock()
	h.ids[cl] = ident
	h.mu.Unlock()
	return true
}

func certCN(cl *mqtt.Client) string {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return ""
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return ""
	}
	return st.PeerCertificates[0].Subject.CommonName
}

func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	ok := topic == CommandsTopic(cl.ID)
	if write {
		ok = topic == ReadingsTopic(cl.ID)
	}
	if !ok {
		h.m.aclDenied.Inc()
		h.throttle.log(h.log, "acl", "meter refused a topic", "meter", cl.ID, "topic", topic, "write", write)
	}
	return ok
}

func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	delete(h.ids, cl)
	h.mu.Unlock()
}

// OnPublish hands a reading payload to the ingester and tells mochi how to
// answer it. mochi (server.go, processPublish) acknowledges unless the hook
// returns packets.ErrRejectPacket; to an MQTT 5 client at QoS 1 it sends
// any other packets.Code as the PUBACK's reason code (and its Reason as the
// reason string). To a 3.1.1 client, or at QoS 0, mochi treats any other
// code as success and fans the packet out, so the hook returns one only to
// an MQTT 5 client at QoS 1. MQTT 3.1.1 has no negative acknowledgement:
// there a refusal is either an acknowledgement (the payload is dropped for
// good) or none (the meter keeps it). The codes are documented in
// docs/protocol.md.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.mu.RLock()
	ident, ok := h.ids[cl]
	h.mu.RUnlock()
	if !ok {
		// Only the broker's own inline client could get here.
		return pk, packets.ErrRejectPacket
	}
	err := h.ing.Ingest(context.Background(), ident, pk.Payload, time.Now())
	// negative is a v5 PUBACK's reason code, when there is a PUBACK to carry it.
	negative := cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0
	var rej rejection
	var bz busy
	switch {
	case err == nil:
		// Acknowledge, and do not fan out: nobody subscribes to readings.
		return pk, packets.CodeSuccessIgnore
	case errors.As(err, &rej):
		reason := rej.RejectReason()
		h.m.rejected.WithLabelValues(reason).Inc()
		h.throttle.log(h.log, "reject:"+reason, "payload rejected", "meter", ident.ID, "reason", reason, "err", err)
		if negative {
			return pk, refusal(reason)
		}
		// MQTT 3.1.1 has no negative acknowledgement. The payload is
		// acknowledged and dropped, so the meter does not resend a
		// payload that can never be accepted (docs/protocol.md).
		return pk, packets.CodeSuccessIgnore
	case errors.As(err, &bz) && bz.Busy():
		h.m.rejected.WithLabelValues(ReasonJournalFull).Inc()
		h.throttle.log(h.log, "busy", "payload not acknowledged: ingest busy", "meter", ident.ID)
		if negative {
			return pk, packets.Code{Code: packets.ErrQuotaExceeded.Code, Reason: ReasonJournalFull}
		}
		return pk, packets.ErrRejectPacket
	default:
		h.m.rejected.WithLabelValues(ReasonInternal).Inc()
		h.throttle.log(h.log, "internal", "payload not acknowledged", "meter", ident.ID, "err", err)
		if negative {
			return pk, packets.Code{Code: packets.ErrUnspecifiedError.Code, Reason: ReasonInternal}
		}
		return pk, packets.ErrRejectPacket
	}
}

// Refusals the broker counts besides the ingester's rejection reasons.
const (
	// ReasonJournalFull: the journal is over its disk budget; the payload
	// was not taken and may be sent again later.
	ReasonJournalFull = "journal_full"
	// ReasonInternal: the payload could not be made durable (a journal
	// error); it was not taken and may be sent again later.
	ReasonInternal = "internal"
)

// refusal is the MQTT 5 PUBACK reason code for a payload refused for good,
// with the rejection reason as its reason string.
//
// MQTT 5 allows a PUBACK only the codes of its section 3.4.2.1; 0x95
// "packet too large" is not one of them (it belongs to CONNACK and
// DISCONNECT, which is how a packet over the broker's packet limit ends).
// A payload over the payload limit is a valid PUBLISH the server will not
// take, which is what 0x83 "implementation specific error" says; the other
// codes a meter is sent say "resend later" (0x97, 0x80) or "never" (0x99,
// 0x87) and would blur that difference.
func refusal(reason string) packets.Code {
	switch protocol.Reason(reason) {
	case protocol.TooLarge:
		return packets.Code{Code: packets.ErrImplementationSpecificError.Code, Reason: reason}
	case protocol.WrongMeter:
		// The payload names another meter: as if it had been published
		// to another meter's topic.
		return packets.Code{Code: packets.ErrNotAuthorized.Code, Reason: reason}
	default:
		return packets.Code{Code: packets.ErrPayloadFormatInvalid.Code, Reason: reason}
	}
}
