package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	simfleet "github.com/meterflow/meterflow/firmware-sim/fleet"
	"github.com/meterflow/meterflow/internal/broker"
	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/pki"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/protocol"
	"github.com/meterflow/meterflow/internal/testenv"
)

// pkiEnv is a server whose TLS listener authenticates meters by the client
// certificates that `meterflow ca init` and `meterflow meters certs` made.
type pkiEnv struct {
	m       *Main
	cfg     ServeCmd
	dir     string // ca.pem, ca-key.pem, server.pem, server-key.pem
	certs   string // {id}.pem, {id}-key.pem
	roots   *x509.CertPool
	tlsAddr string
}

func startPKI(t *testing.T, ids ...string) *pkiEnv {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	e := &pkiEnv{dir: t.TempDir()}
	e.certs = filepath.Join(e.dir, "meters")
	require.NoError(t, (&CAInitCmd{Out: e.dir, Name: "Test CA", Valid: 24 * time.Hour, Hosts: []string{"localhost", "127.0.0.1"}}).Run(log))

	// Half the meters by id, half from a CSV as provision-bulk writes it.
	csvPath := filepath.Join(e.dir, "meters.csv")
	half := len(ids) / 2
	var rows strings.Builder
	rows.WriteString("meter_id,utility,token\n")
	for _, id := range ids[half:] {
		rows.WriteString(id + ",electricity,unused\n")
	}
	require.NoError(t, os.WriteFile(csvPath, []byte(rows.String()), 0o600))
	require.NoError(t, (&CertsCmd{CACert: filepath.Join(e.dir, "ca.pem"), CAKey: filepath.Join(e.dir, "ca-key.pem"),
		Out: e.certs, Valid: time.Hour, From: csvPath, IDs: ids[:half]}).Run(log))

	inf := testenv.InfluxDB(t)
	e.cfg = testConfig(t, inf.URL, inf.Bucket)
	e.cfg.MQTTTLSAddr = "127.0.0.1:0"
	e.cfg.MQTTTLSCert = filepath.Join(e.dir, "server.pem")
	e.cfg.MQTTTLSKey = filepath.Join(e.dir, "server-key.pem")
	e.cfg.MQTTClientCA = filepath.Join(e.dir, "ca.pem")
	pemCA, err := os.ReadFile(e.cfg.MQTTClientCA)
	require.NoError(t, err)
	e.roots = x509.NewCertPool()
	require.True(t, e.roots.AppendCertsFromPEM(pemCA))
	return e
}

func (e *pkiEnv) start(t *testing.T) {
	e.m = startMain(t, e.cfg)
	e.tlsAddr = e.m.Broker.TLSAddr().String()
}

// dialCert connects as clientID over TLS with a client certificate and no
// password.
func (e *pkiEnv) dialCert(t *testing.T, clientID string, cert tls.Certificate) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("ssl://" + e.tlsAddr).SetClientID(clientID).SetUsername(clientID).
		SetTLSConfig(&tls.Config{RootCAs: e.roots, ServerName: "localhost", Certificates: []tls.Certificate{cert}}).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4).
		SetWriteTimeout(5 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

func (e *pkiEnv) meterCert(t *testing.T, id string) tls.Certificate {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(pki.CertPath(e.certs, id), pki.KeyPath(e.certs, id))
	require.NoError(t, err)
	return cert
}

func issuedBy(t *testing.T, ca *pki.CA, id string, notBefore time.Time, valid time.Duration) tls.Certificate {
	t.Helper()
	p, err := ca.IssueClient(id, notBefore, valid)
	require.NoError(t, err)
	cert, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	require.NoError(t, err)
	return cert
}

// intervalCount counts a meter's billing intervals in PostgreSQL, any channel.
func intervalCount(t *testing.T, pgURL, meterID string) int {
	t.Helper()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: pgURL})
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `select count(*) from interval_usage where meter_id = $1`, meterID).Scan(&n))
	return n
}

func simConfig(e *pkiEnv) simfleet.Config {
	fc := simfleet.DefaultConfig()
	fc.Broker = "tls://" + e.tlsAddr
	fc.CAFile = filepath.Join(e.dir, "ca.pem")
	fc.ServerName = "localhost"
	fc.CertDir = e.certs
	fc.Start = time.Now().Add(-6 * time.Hour)
	fc.Speed = float64(6*time.Hour) / float64(time.Second)
	fc.Duration = time.Second
	fc.Drain = 5 * time.Second
	fc.ConnectRate = 0
	fc.ReconnectMin, fc.ReconnectMax = 20*time.Millisecond, 200*time.Millisecond
	fc.AckTimeout = 3 * time.Second
	return fc
}

// Meters of the simulated fleet connect over TLS with their own
// certificates and no password, and their readings reach the stores.
func TestFleetWithClientCertificates(t *testing.T) {
	e := startPKI(t, "E-1", "W-1", "G-1")
	provision(t, e.cfg.Postgres.URL,
		device.Request{ID: "E-1", Utility: meter.Electricity}, device.Request{ID: "W-1", Utility: meter.Water},
		device.Request{ID: "G-1", Utility: meter.Gas})
	e.start(t)

	// The credentials carry no tokens: the certificates are the credentials.
	creds, err := simfleet.ReadCredentials(strings.NewReader("meter_id,utility\nE-1,electricity\nW-1,water\nG-1,gas\n"), false)
	require.NoError(t, err)
	f, err := simfleet.New(simConfig(e), creds)
	require.NoError(t, err)
	sum, err := f.Run(context.Background())
	require.NoError(t, err)
	assert.EqualValues(t, 3, sum.Connected)
	assert.Zero(t, sum.ConnectRefused)
	assert.Zero(t, sum.Rejected)
	assert.Positive(t, sum.MessagesAcked)
	assert.Equal(t, sum.Generated, sum.MessagesAcked, "every reading acknowledged")
	for _, c := range creds {
		require.Eventually(t, func() bool { return intervalCount(t, e.cfg.Postgres.URL, c.MeterID) > 0 },
			20*time.Second, 100*time.Millisecond, "intervals of %s", c.MeterID)
	}

	// Meters presenting another meter's certificate are refused.
	fc := simConfig(e)
	fc.Faults.WrongCredentials = 1
	fc.Drain = 200 * time.Millisecond
	f, err = simfleet.New(fc, creds)
	require.NoError(t, err)
	sum, err = f.Run(context.Background())
	require.NoError(t, err)
	assert.Zero(t, sum.Connected)
	assert.Positive(t, sum.ConnectRefused)

	// A meter whose certificate is missing stops the run at start.
	more, err := simfleet.ReadCredentials(strings.NewReader("meter_id,utility\nE-1,electricity\nE-9,electricity\n"), false)
	require.NoError(t, err)
	f, err = simfleet.New(simConfig(e), more)
	require.NoError(t, err)
	_, err = f.Run(context.Background())
	require.ErrorContains(t, err, "meter E-9")
}

// The broker accepts a certificate only for the meter it names, signed by
// its client CA, within its validity, and for an active meter; and a
// meter authenticated by certificate may publish only to its own topic.
func TestClientCertificateRefusals(t *testing.T) {
	e := startPKI(t, "E-1", "E-2", "E-R")
	provision(t, e.cfg.Postgres.URL,
		device.Request{ID: "E-1", Utility: meter.Electricity}, device.Request{ID: "E-2", Utility: meter.Electricity},
		device.Request{ID: "E-R", Utility: meter.Electricity})
	e.start(t)
	require.NoError(t, e.m.Devices.Revoke(context.Background(), "E-R"))

	// E-1 with its own certificate publishes; its reading is stored.
	c1, err := e.dialCert(t, "E-1", e.meterCert(t, "E-1"))
	require.NoError(t, err)
	at := time.Now().Add(-time.Hour).Truncate(15 * time.Minute)
	own := meter.Message{Meter: "E-1", Seq: 1, Readings: []meter.Reading{{Channel: "1-0:1.8.0", Time: at, Value: 1000}}}
	tok := c1.Publish(broker.ReadingsTopic("E-1"), 1, false, protocol.AppendCompact(nil, own))
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())

	// E-2's certificate: accepted as E-2, but E-2 cannot publish to E-1's
	// topic; the broker drops the connection and stores nothing for E-1.
	c2, err := e.dialCert(t, "E-2", e.meterCert(t, "E-2"))
	require.NoError(t, err)
	spoof := meter.Message{Meter: "E-1", Seq: 2, Readings: []meter.Reading{{Channel: "1-0:1.8.0", Time: at.Add(15 * time.Minute), Value: 2500}}}
	c2.Publish(broker.ReadingsTopic("E-1"), 1, false, protocol.AppendCompact(nil, spoof)).WaitTimeout(2 * time.Second)
	require.Eventually(t, func() bool { return !c2.IsConnectionOpen() }, 5*time.Second, 20*time.Millisecond)

	// E-2's certificate does not make its holder E-1.
	_, err = e.dialCert(t, "E-1", e.meterCert(t, "E-2"))
	require.Error(t, err, "certificate naming another meter")

	ca, err := pki.LoadCA(filepath.Join(e.dir, "ca.pem"), filepath.Join(e.dir, "ca-key.pem"))
	require.NoError(t, err)
	foreign, _, err := pki.NewCA("Someone else's CA", time.Now(), 24*time.Hour)
	require.NoError(t, err)
	refused := []struct {
		name string
		id   string
		cert tls.Certificate
	}{
		{"expired", "E-1", issuedBy(t, ca, "E-1", time.Now().Add(-3*time.Hour), time.Hour)},
		{"not yet valid", "E-1", issuedBy(t, ca, "E-1", time.Now().Add(time.Hour), time.Hour)},
		{"signed by a foreign CA", "E-1", issuedBy(t, foreign, "E-1", time.Now().Add(-time.Minute), time.Hour)},
		{"revoked meter", "E-R", e.meterCert(t, "E-R")},
		{"unknown meter", "E-404", issuedBy(t, ca, "E-404", time.Now().Add(-time.Minute), time.Hour)},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.dialCert(t, c.id, c.cert)
			require.Error(t, err)
		})
	}

	// Only E-1's own readings were stored: its next one spans two intervals
	// (1000 → 3000), split evenly; the spoofed read at the middle would
	// have made them 1500 and 500.
	next := meter.Message{Meter: "E-1", Seq: 3, Readings: []meter.Reading{{Channel: "1-0:1.8.0", Time: at.Add(30 * time.Minute), Value: 3000}}}
	tok = c1.Publish(broker.ReadingsTopic("E-1"), 1, false, protocol.AppendCompact(nil, next))
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	require.Eventually(t, func() bool { sum, n := pgUsage(t, e.cfg.Postgres.URL, "E-1"); return n == 2 && sum == 2000 },
		20*time.Second, 100*time.Millisecond)
	db, err := postgres.Open(context.Background(), postgres.Config{URL: e.cfg.Postgres.URL})
	require.NoError(t, err)
	defer db.Close()
	var even int
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`select count(*) from interval_usage where meter_id = 'E-1' and channel = '1-0:1.8.0' and quantity = 1000`).Scan(&even))
	assert.Equal(t, 2, even, "the spoofed reading was not taken")
	assert.Equal(t, 0, intervalCount(t, e.cfg.Postgres.URL, "E-2"))

	resp, err := http.Get("http://" + e.m.HTTPAddr() + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), "mf_mqtt_acl_denied_total 1")
}
