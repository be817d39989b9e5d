package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/broker"
	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

// recorder is an Ingester that keeps what it is given.
type recorder struct {
	mu  sync.Mutex
	got map[string][]string
}

type reject struct{}

func (reject) Error() string        { return "bad payload" }
func (reject) RejectReason() string { return "malformed_json" }

type busyErr struct{}

func (busyErr) Error() string { return "busy" }
func (busyErr) Busy() bool    { return true }

func (r *recorder) Ingest(_ context.Context, m device.Identity, payload []byte, _ time.Time) error {
	switch string(payload) {
	case "bad":
		return reject{}
	case "busy":
		return busyErr{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[m.ID] = append(r.got[m.ID], string(payload))
	return nil
}

func (r *recorder) payloads(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got[id]...)
}

type fixture struct {
	b      *broker.Broker
	reg    *device.Registry
	rec    *recorder
	tokens map[string]string
	prom   *prometheus.Registry
	ca     *x509.CertPool
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

func start(t *testing.T) *fixture {
	t.Helper()
	rec := &recorder{got: map[string][]string{}}
	f := startWith(t, rec)
	f.rec = rec
	return f
}

// startWith starts the broker with ing taking the payloads.
func startWith(t *testing.T, ing broker.Ingester) *fixture {
	t.Helper()
	return startLogged(t, ing, slog.New(slog.DiscardHandler))
}

// startLogged starts the broker with ing taking the payloads and log
// taking its log.
func startLogged(t *testing.T, ing broker.Ingester, log *slog.Logger) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{tokens: map[string]string{}, prom: prometheus.NewRegistry(), dir: t.TempDir()}
	f.reg = device.NewRegistry(&postgres.Meters{DB: testenv.PostgresDB(t)}, device.Config{})
	prov, err := f.reg.Provision(ctx, []device.Request{
		{ID: "E-1", Utility: meter.Electricity}, {ID: "E-2", Utility: meter.Electricity}, {ID: "W-1", Utility: meter.Water},
	})
	require.NoError(t, err)
	for _, p := range prov {
		f.tokens[p.ID] = p.Token
	}
	certFile, keyFile, caFile := f.makePKI(t)
	f.b, err = broker.New(broker.Config{
		TCPAddr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0",
		CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile,
	}, f.reg, ing, log, f.prom)
	require.NoError(t, err)
	require.NoError(t, f.b.Start())
	t.Cleanup(func() { _ = f.b.Close() })
	return f
}

func (f *fixture) makePKI(t *testing.T) (cert, key, ca string) {
	var err error
	f.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Meterflow test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &f.caKey.PublicKey, f.caKey)
	require.NoError(t, err)
	f.caCert, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	f.ca = x509.NewCertPool()
	f.ca.AddCert(f.caCert)
	ca = filepath.Join(f.dir, "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	c, k := f.issue(t, "localhost", true)
	cert, key = filepath.Join(f.dir, "server.pem"), filepath.Join(f.dir, "server.key")
	require.NoError(t, os.WriteFile(cert, c, 0o600))
	require.NoError(t, os.WriteFile(key, k, 0o600))
	return cert, key, ca
}

// issue signs a certificate for cn with the test CA.
func (f *fixture) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.caCert, &key.PublicKey, f.caKey)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

type clientOpt func(*paho.ClientOptions)

func (f *fixture) connect(t *testing.T, clientID, user, pass string, opts ...clientOpt) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker("tcp://" + f.b.TCPAddr().String()).
		SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetProtocolVersion(4)
	for _, opt := range opts {
		opt(o)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func publish(c paho.Client, topic, payload string) error {
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(3 * time.Second) {
		return errors.New("no acknowledgement")
	}
	return tok.Error()
}

func TestAuthentication(t *testing.T) {
	f := start(t)
	revoked := "E-2"
	require.NoError(t, f.reg.Revoke(context.Background(), revoked))
	cases := []struct {
		name, clientID, user, pass string
		ok                         bool
	}{
		{"right token", "E-1", "E-1", f.tokens["E-1"], true},
		{"wrong token", "E-1", "E-1", "mft_wrong", false},
		{"empty password", "E-1", "E-1", "", false},
		{"another meter's token", "W-1", "W-1", f.tokens["E-1"], false},
		{"unknown meter", "X-9", "X-9", f.tokens["E-1"], false},
		{"revoked meter", revoked, revoked, f.tokens[revoked], false},
		{"client id is not the username", "W-1", "E-1", f.tokens["E-1"], false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.connect(t, c.clientID, c.user, c.pass)
			if c.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
	fails, err := testutil.GatherAndCount(f.prom, "mf_mqtt_auth_failures_total")
	require.NoError(t, err)
	assert.Positive(t, fails)
}

func TestPublishACLAndRejections(t *testing.T) {
	f := start(t)
	c, err := f.connect(t, "E-1", "E-1", f.tokens["E-1"])
	require.NoError(t, err)

	require.NoError(t, publish(c, broker.ReadingsTopic("E-1"), `good`))
	assert.Equal(t, []string{"good"}, f.rec.payloads("E-1"))

	// A malformed payload is refused for good: counted, not ingested.
	require.NoError(t, publish(c, broker.ReadingsTopic("E-1"), `bad`), "MQTT 3.1.1 acknowledges and drops")
	assert.Equal(t, []string{"good"}, f.rec.payloads("E-1"))
	assert.Equal(t, 1.0, testutil.ToFloat64(mustCounter(t, f.prom, "mf_ingest_rejected_total", "malformed_json")))

	// Subscribing to another meter's commands is refused; to its own, allowed.
	tok := c.Subscribe(broker.CommandsTopic("E-2"), 1, nil)
	require.True(t, tok.WaitTimeout(3*time.Second))
	assert.Equal(t, byte(0x80), tok.(*paho.SubscribeToken).Result()[broker.CommandsTopic("E-2")], "refused subscription")
	tok = c.Subscribe(broker.CommandsTopic("E-1"), 1, nil)
	require.True(t, tok.WaitTimeout(3*time.Second))
	assert.Equal(t, byte(1), tok.(*paho.SubscribeToken).Result()[broker.CommandsTopic("E-1")])

	// Publishing to another meter's topic at QoS 1 disconnects the meter and stores nothing.
	_ = publish(c, broker.ReadingsTopic("E-2"), `spoof`)
	assert.Eventually(t, func() bool { return !c.IsConnectionOpen() }, 5*time.Second, 20*time.Millisecond)
	assert.Empty(t, f.rec.payloads("E-2"))
}

func TestBusyIsNotAcknowledged(t *testing.T) {
	f := start(t)
	c, err := f.connect(t, "E-1", "E-1", f.tokens["E-1"])
	require.NoError(t, err)
	tok := c.Publish(broker.ReadingsTopic("E-1"), 1, false, "busy")
	assert.False(t, tok.WaitTimeout(500*time.Millisecond), "a payload the journal cannot take must not be acknowledged")
}

func TestTLSWithTokenAndClientCertificate(t *testing.T) {
	f := start(t)
	tlsAddr := "ssl://" + f.b.TLSAddr().String()

	// Token over TLS.
	_, err := f.connect(t, "E-1", "E-1", f.tokens["E-1"], func(o *paho.ClientOptions) {
		o.Servers = nil
		o.AddBroker(tlsAddr).SetTLSConfig(&tls.Config{RootCAs: f.ca, ServerName: "localhost"})
	})
	require.NoError(t, err)

	// A client certificate naming the meter, no password.
	certPEM, keyPEM := f.issue(t, "W-1", false)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	c, err := f.connect(t, "W-1", "W-1", "", func(o *paho.ClientOptions) {
		o.Servers = nil
		o.AddBroker(tlsAddr).SetTLSConfig(&tls.Config{RootCAs: f.ca, ServerName: "localhost", Certificates: []tls.Certificate{cert}})
	})
	require.NoError(t, err)
	require.NoError(t, publish(c, broker.ReadingsTopic("W-1"), "over tls"))
	assert.Equal(t, []string{"over tls"}, f.rec.payloads("W-1"))

	// A certificate naming another meter does not authenticate.
	_, err = f.connect(t, "E-1", "E-1", "", func(o *paho.ClientOptions) {
		o.Servers = nil
		o.AddBroker(tlsAddr).SetTLSConfig(&tls.Config{RootCAs: f.ca, ServerName: "localhost", Certificates: []tls.Certificate{cert}})
	})
	require.Error(t, err)
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name, label string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
				}
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return nil
}

// A meter can speak MQTT over WebSocket with the same credentials and ACL.
func TestWebSocketListener(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{got: map[string][]string{}}
	reg := device.NewRegistry(&postgres.Meters{DB: testenv.PostgresDB(t)}, device.Config{})
	prov, err := reg.Provision(ctx, []device.Request{{ID: "E-9", Utility: meter.Electricity}})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	b, err := broker.New(broker.Config{WSAddr: addr}, reg, rec, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })

	connect := func(token string) (paho.Client, error) {
		o := paho.NewClientOptions().AddBroker("ws://" + addr + "/mqtt").SetClientID("E-9").SetUsername("E-9").SetPassword(token).
			SetAutoReconnect(false).SetConnectRetry(false)
		c := paho.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(5 * time.Second) {
			return nil, errors.New("connect timed out")
		}
		return c, tok.Error()
	}
	var c paho.Client
	require.Eventually(t, func() bool {
		c, err = connect(prov[0].Token)
		return err == nil
	}, 5*time.Second, 50*time.Millisecond, "the listener comes up: %v", err)
	defer c.Disconnect(100)
	tok := c.Publish("meters/E-9/readings", 1, false, `{"v":1}`)
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	assert.Equal(t, []string{`{"v":1}`}, rec.payloads("E-9"))

	tok = c.Publish("meters/E-1/readings", 1, false, `{"v":2}`)
	tok.WaitTimeout(2 * time.Second)
	assert.Empty(t, rec.payloads("E-1"), "another meter's topic is refused over WebSocket too")

	_, err = connect("wrong-token")
	assert.Error(t, err, "a wrong token is refused")
}
