package fleet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testCA makes a CA and a server certificate for 127.0.0.1 signed by it,
// and writes the CA to a PEM file.
func testCA(t *testing.T) (caFile string, server tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "broker"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)

	caFile = filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600))
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestTLS(t *testing.T) {
	caFile, cert := testCA(t)
	rec := &recorder{}
	b := startBroker(t, "127.0.0.1:0", rec, nil, &listeners.Config{
		ID:        "tls",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	})
	creds := testCreds(4)

	cfg := testConfig(t, b.addr)
	cfg.Broker = "tls://" + b.addr
	cfg.CAFile = caFile
	cfg.Duration = 300 * time.Millisecond
	sum := runFleet(t, cfg, creds)
	assert.EqualValues(t, 4, sum.Connected)
	msgs, bad := decodeAll(t, rec.publishes(), creds)
	require.Empty(t, bad)
	assert.EqualValues(t, sum.Generated, len(distinct(msgs)))

	// Without the CA the broker's certificate is not trusted.
	cfg.CAFile = ""
	cfg.Duration = time.Second
	cfg.Drain = 100 * time.Millisecond
	cfg.AckedLog = ""
	sum = runFleet(t, cfg, creds)
	assert.Zero(t, sum.Connected)
	assert.Positive(t, sum.ConnectErrors)

	// Unless told not to check (development only).
	cfg.InsecureSkipVerify = true
	sum = runFleet(t, cfg, creds)
	assert.EqualValues(t, 4, sum.Connected)

	// A CA file that holds no certificate is an error at start.
	empty := filepath.Join(t.TempDir(), "empty.pem")
	require.NoError(t, os.WriteFile(empty, []byte("nothing"), 0o600))
	cfg.CAFile = empty
	_, err := New(cfg, creds)
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "no PEM certificate"))
}
