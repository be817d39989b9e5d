package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/pki"
)

func parse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	require.NotNil(t, b)
	require.Equal(t, "CERTIFICATE", b.Type)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

func TestClientCertificate(t *testing.T) {
	now := time.Now()
	ca, _, err := pki.NewCA("Test CA", now, 24*time.Hour)
	require.NoError(t, err)
	p, err := ca.IssueClient("MTR-0000001", now.Add(-pki.Backdate), time.Hour)
	require.NoError(t, err)
	c := parse(t, p.CertPEM)

	assert.Equal(t, "MTR-0000001", c.Subject.CommonName)
	assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, c.ExtKeyUsage)
	assert.False(t, c.IsCA)
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	require.True(t, ok, "ECDSA key")
	assert.Equal(t, elliptic.P256(), pub.Curve)
	assert.Positive(t, c.SerialNumber.Sign())
	assert.LessOrEqual(t, c.SerialNumber.BitLen(), 128)
	assert.WithinDuration(t, now.Add(-pki.Backdate+time.Hour), c.NotAfter, time.Second)

	// It chains to the CA for client authentication, and not for a server.
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	_, err = c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	_, err = c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	require.Error(t, err)

	// The key matches the certificate.
	b, _ := pem.Decode(p.KeyPEM)
	require.NotNil(t, b)
	key, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	require.NoError(t, err)
	assert.True(t, key.(*ecdsa.PrivateKey).PublicKey.Equal(pub))

	// Serial numbers differ between certificates.
	q, err := ca.IssueClient("MTR-0000001", now, time.Hour)
	require.NoError(t, err)
	assert.NotEqual(t, c.SerialNumber, parse(t, q.CertPEM).SerialNumber)
}

func TestIssueRefuses(t *testing.T) {
	now := time.Now()
	ca, _, err := pki.NewCA("Test CA", now, 24*time.Hour)
	require.NoError(t, err)
	cases := []struct {
		name  string
		id    string
		valid time.Duration
	}{
		{"not a meter id", "meter one", time.Hour},
		{"empty id", "", time.Hour},
		{"outlives its CA", "E-1", 48 * time.Hour},
		{"no validity", "E-1", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ca.IssueClient(c.id, now, c.valid)
			require.Error(t, err)
		})
	}
}

func TestLoadCAAndWritePair(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, pair, err := pki.NewCA("Test CA", now, 24*time.Hour)
	require.NoError(t, err)
	caCert, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	require.NoError(t, pki.WritePair(caCert, caKey, pair))

	loaded, err := pki.LoadCA(caCert, caKey)
	require.NoError(t, err)
	assert.True(t, loaded.Cert.Equal(ca.Cert))
	p, err := loaded.IssueClient("W-7", now, time.Hour)
	require.NoError(t, err)

	// A stale key file with a loose mode is replaced, mode included.
	certFile, keyFile := pki.CertPath(dir, "W-7"), pki.KeyPath(dir, "W-7")
	assert.Equal(t, filepath.Join(dir, "W-7-key.pem"), keyFile)
	require.NoError(t, os.WriteFile(keyFile, []byte("old"), 0o644))
	require.NoError(t, pki.WritePair(certFile, keyFile, p))
	fi, err := os.Stat(keyFile)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	fi, err = os.Stat(certFile)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	got, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	assert.Equal(t, p.KeyPEM, got)
	left, err := filepath.Glob(filepath.Join(dir, ".*"))
	require.NoError(t, err)
	assert.Empty(t, left, "no temporary files left behind")

	// A meter's certificate is not a CA.
	_, err = pki.LoadCA(certFile, keyFile)
	require.Error(t, err)
}

func TestServerCertificate(t *testing.T) {
	now := time.Now()
	ca, _, err := pki.NewCA("Test CA", now, 24*time.Hour)
	require.NoError(t, err)
	p, err := ca.IssueServer([]string{"localhost", "127.0.0.1"}, now, time.Hour)
	require.NoError(t, err)
	c := parse(t, p.CertPEM)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, host := range []string{"localhost", "127.0.0.1"} {
		_, err = c.Verify(x509.VerifyOptions{Roots: roots, DNSName: host})
		require.NoError(t, err, host)
	}
	_, err = c.Verify(x509.VerifyOptions{Roots: roots, DNSName: "example.org"})
	require.Error(t, err)
}
