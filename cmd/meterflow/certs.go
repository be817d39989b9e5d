package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meterflow/meterflow/internal/pki"
)

// CACmd makes certificate authorities.
type CACmd struct {
	Init CAInitCmd `cmd:"" help:"Make a CA and a broker server certificate for development; production uses its own PKI."`
}

// CAInitCmd makes a development CA and a server certificate signed by it.
type CAInitCmd struct {
	Out   string        `required:"" help:"Directory to write ca.pem, ca-key.pem, server.pem and server-key.pem to (created if missing)."`
	Name  string        `default:"Meterflow development CA" help:"Common Name of the CA."`
	Valid time.Duration `default:"87600h" help:"How long the CA is valid."`
	Hosts []string      `name:"server-host" default:"localhost,127.0.0.1" help:"Host names and IP addresses of the broker's server certificate."`
	Force bool          `help:"Replace an existing CA in --out (certificates it signed stop being trusted)."`
}

// Run writes the CA and the server certificate. The server certificate is
// valid for a year or the CA's life, whichever is shorter.
func (c *CAInitCmd) Run(log *slog.Logger) error {
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return err
	}
	caCert, caKey := filepath.Join(c.Out, "ca.pem"), filepath.Join(c.Out, "ca-key.pem")
	if _, err := os.Stat(caKey); err == nil && !c.Force {
		return fmt.Errorf("%s exists: a CA is already there (--force replaces it)", caKey)
	}
	now := time.Now()
	ca, pair, err := pki.NewCA(c.Name, now, c.Valid)
	if err != nil {
		return err
	}
	server, err := ca.IssueServer(c.Hosts, now.Add(-pki.Backdate), min(c.Valid, 8760*time.Hour))
	if err != nil {
		return err
	}
	if err := pki.WritePair(caCert, caKey, pair); err != nil {
		return err
	}
	if err := pki.WritePair(filepath.Join(c.Out, "server.pem"), filepath.Join(c.Out, "server-key.pem"), server); err != nil {
		return err
	}
	log.Info("development CA written; serve with --mqtt-tls-cert server.pem --mqtt-tls-key server-key.pem --mqtt-tls-client-ca ca.pem",
		"dir", c.Out, "valid_until", ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// CertsCmd issues meters' client certificates.
type CertsCmd struct {
	CACert string        `name:"ca-cert" required:"" type:"existingfile" help:"CA certificate (PEM) to sign with."`
	CAKey  string        `name:"ca-key" required:"" type:"existingfile" help:"The CA's private key (PEM)."`
	Out    string        `required:"" help:"Directory for {id}.pem and {id}-key.pem (created if missing); existing files of a meter are replaced."`
	Valid  time.Duration `default:"8760h" help:"How long each certificate is valid."`
	From   string        `help:"CSV whose header has a meter_id (or id) column, such as provision-bulk's output; '-' for standard input."`
	IDs    []string      `arg:"" optional:"" name:"id" help:"Meter ids."`
}

// Run issues one certificate per meter. The meters need not be
// provisioned yet, but the broker accepts a certificate only for a
// provisioned, active meter.
func (c *CertsCmd) Run(log *slog.Logger) error {
	ids := c.IDs
	if c.From != "" {
		more, err := readMeterIDs(c.From)
		if err != nil {
			return err
		}
		ids = append(ids, more...)
	}
	if len(ids) == 0 {
		return errors.New("give meter ids or --from FILE")
	}
	ca, err := pki.LoadCA(c.CACert, c.CAKey)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return err
	}
	notBefore := time.Now().Add(-pki.Backdate)
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		p, err := ca.IssueClient(id, notBefore, c.Valid)
		if err != nil {
			return err
		}
		if err := pki.WritePair(pki.CertPath(c.Out, id), pki.KeyPath(c.Out, id), p); err != nil {
			return fmt.Errorf("meter %s: %w", id, err)
		}
	}
	log.Info("meter certificates issued", "count", len(seen), "dir", c.Out,
		"valid_until", notBefore.Add(c.Valid).UTC().Format(time.RFC3339))
	return nil
}

// readMeterIDs reads the meter_id (or id) column of a CSV with a header.
func readMeterIDs(path string) ([]string, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	col := -1
	for i, h := range header {
		switch strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))) {
		case "meter_id":
			col = i
		case "id":
			if col < 0 {
				col = i
			}
		}
	}
	if col < 0 {
		return nil, fmt.Errorf("%s: the header has no meter_id or id column", path)
	}
	var ids []string
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return ids, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if col < len(rec) {
			if id := strings.TrimSpace(rec[col]); id != "" {
				ids = append(ids, id)
			}
		}
	}
}
