package fleet

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/meterflow/meterflow/internal/meter"
)

// Credential is one meter's identity as provisioned on the server: the
// meter ID (also the MQTT client ID and username), its utility and its
// device token (the password; empty for a meter that authenticates with
// its client certificate).
type Credential struct {
	MeterID string
	Utility meter.Utility
	Token   string
}

// LoadCredentials reads a credentials file (see ReadCredentials).
func LoadCredentials(path string, tokens bool) ([]Credential, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open credentials: %w", err)
	}
	defer f.Close()
	creds, err := ReadCredentials(f, tokens)
	if err != nil {
		return nil, fmt.Errorf("read credentials %s: %w", path, err)
	}
	return creds, nil
}

// ReadCredentials reads the CSV that `meterflow meters provision-bulk`
// writes: a header naming the columns meter_id, utility and token (in any
// order, other columns ignored), then one meter per row. Meter IDs must
// be valid protocol meter IDs and unique. Without tokens (meters that
// authenticate with client certificates) the token column may be missing
// or empty.
func ReadCredentials(r io.Reader, tokens bool) ([]Credential, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	required := []string{"meter_id", "utility"}
	if tokens {
		required = append(required, "token")
	}
	var missing []string
	for _, name := range required {
		if _, ok := col[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("header %q lacks column(s) %s", strings.Join(header, ","), strings.Join(missing, ", "))
	}
	var (
		out  []Credential
		errs []error
		seen = map[string]int{}
	)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		line, _ := cr.FieldPos(0)
		field := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		c := Credential{MeterID: field("meter_id"), Token: field("token")}
		u, err := meter.ParseUtility(field("utility"))
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", line, err))
		}
		c.Utility = u
		if !validMeterID(c.MeterID) {
			errs = append(errs, fmt.Errorf("line %d: meter id %q is not 1 to 64 characters of A-Z a-z 0-9 - _ .", line, c.MeterID))
		}
		if prev, dup := seen[c.MeterID]; dup {
			errs = append(errs, fmt.Errorf("line %d: meter id %q already on line %d", line, c.MeterID, prev))
		}
		seen[c.MeterID] = line
		if tokens && c.Token == "" {
			errs = append(errs, fmt.Errorf("line %d: meter %q has no token", line, c.MeterID))
		}
		out = append(out, c)
		if len(errs) >= 10 {
			errs = append(errs, errors.New("too many errors"))
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no meters")
	}
	return out, nil
}

// validMeterID reports whether id is a protocol meter ID: 1 to 64
// characters of A-Z a-z 0-9 - _ . (docs/protocol.md).
func validMeterID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
