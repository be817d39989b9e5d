// Package pki issues the certificates of meter client authentication: a
// certificate authority for development, a server certificate for the
// broker's TLS listener, and one ECDSA P-256 client certificate per meter
// whose Common Name is the meter id. The broker authenticates a meter by
// such a certificate when its TLS listener trusts the CA
// (--mqtt-tls-client-ca); docs/protocol.md describes the contract.
//
// The CA made here is for development and tests. In production meters get
// their certificates from the utility's own PKI (often at manufacture, with
// keys that never leave the meter); the broker needs only that CA's
// certificate, and IssueClient works with any CA whose key the operator
// holds as a PEM file.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/meterflow/meterflow/internal/device"
)

// Backdate is how far before the time of issue a certificate becomes valid,
// so that a meter whose clock runs a little slow accepts it at once.
const Backdate = 5 * time.Minute

// CA is a certificate authority able to sign.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Pair is a certificate and its private key, both PEM.
type Pair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// serial returns a random positive 128-bit serial number (RFC 5280 allows
// up to 20 octets; random serials make issued certificates unpredictable).
func serial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// NewCA makes a self-signed CA valid from now (less Backdate) for valid.
// It may sign end-entity certificates only (path length 0).
func NewCA(name string, now time.Time, valid time.Duration) (*CA, Pair, error) {
	if valid <= 0 {
		return nil, Pair{}, errors.New("ca validity must be positive")
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, Pair{}, err
	}
	sn, err := serial()
	if err != nil {
		return nil, Pair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(valid),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, Pair{}, fmt.Errorf("create ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, Pair{}, err
	}
	return &CA{Cert: cert, Key: key}, Pair{CertPEM: pemCert(der), KeyPEM: keyPEM}, nil
}

// LoadCA reads a CA certificate and its private key (PEM; PKCS#8, SEC 1
// EC or PKCS#1 RSA). The certificate must be a CA allowed to sign
// certificates.
func LoadCA(certFile, keyFile string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	cert := pair.Leaf
	if cert == nil {
		if cert, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("load ca: %w", err)
		}
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("load ca: %s is not a CA certificate allowed to sign certificates", certFile)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("load ca: key in %s cannot sign", keyFile)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// IssueClient issues a meter's client certificate: a fresh ECDSA P-256
// key, Common Name the meter id, extended key usage client authentication,
// a random 128-bit serial, valid from notBefore for valid. A certificate
// that would outlive its CA is refused, since it would stop working with
// the CA anyway.
func (ca *CA) IssueClient(meterID string, notBefore time.Time, valid time.Duration) (Pair, error) {
	if !device.ValidID(meterID) {
		return Pair{}, fmt.Errorf("%q is not a meter id (1 to 64 of A-Z a-z 0-9 . _ -)", meterID)
	}
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: meterID},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, notBefore, valid)
}

// IssueServer issues a server certificate for the broker's TLS listener,
// naming hosts (DNS names or IP addresses), for development.
func (ca *CA) IssueServer(hosts []string, notBefore time.Time, valid time.Duration) (Pair, error) {
	if len(hosts) == 0 {
		return Pair{}, errors.New("a server certificate needs at least one host name")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl, notBefore, valid)
}

func (ca *CA) issue(tmpl *x509.Certificate, notBefore time.Time, valid time.Duration) (Pair, error) {
	if valid <= 0 {
		return Pair{}, errors.New("certificate validity must be positive")
	}
	tmpl.NotBefore = notBefore
	tmpl.NotAfter = notBefore.Add(valid)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		return Pair{}, fmt.Errorf("certificate for %s would be valid until %s, after its CA expires (%s)",
			tmpl.Subject.CommonName, tmpl.NotAfter.UTC().Format(time.RFC3339), ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	sn, err := serial()
	if err != nil {
		return Pair{}, err
	}
	tmpl.SerialNumber = sn
	key, keyPEM, err := newKey()
	if err != nil {
		return Pair{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Pair{}, fmt.Errorf("sign certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	return Pair{CertPEM: pemCert(der), KeyPEM: keyPEM}, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// CertPath and KeyPath name a meter's files in a certificate directory:
// {id}.pem and {id}-key.pem. firmware-sim --tls-cert-dir reads the same
// names.
func CertPath(dir, meterID string) string { return filepath.Join(dir, meterID+".pem") }

// KeyPath names a meter's private key file (see CertPath).
func KeyPath(dir, meterID string) string { return filepath.Join(dir, meterID+"-key.pem") }

// WritePair writes a certificate (mode 0644) and its key (mode 0600) to
// certFile and keyFile, replacing what is there. Each file is written to a
// temporary file in the same directory and renamed, so a reader never sees
// half a file and an existing key file's looser mode is not kept.
func WritePair(certFile, keyFile string, p Pair) error {
	if err := writeFile(keyFile, p.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(certFile, p.CertPEM, 0o644)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
