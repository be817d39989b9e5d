package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/postgres"
)

// MetersCmd administers meter identities.
type MetersCmd struct {
	Provision     ProvisionCmd     `cmd:"" help:"Provision one meter and print its device token (shown only once)."`
	ProvisionBulk ProvisionBulkCmd `cmd:"" name:"provision-bulk" help:"Provision many meters at once; writes meter_id,utility,token CSV."`
	Revoke        RevokeCmd        `cmd:"" help:"Revoke a meter: it can no longer connect."`
	List          ListCmd          `cmd:"" help:"List meters."`
}

func openRegistry(ctx context.Context, f PostgresFlags) (*device.Registry, func(), error) {
	db, err := postgres.Open(ctx, f.Config())
	if err != nil {
		return nil, nil, err
	}
	return device.NewRegistry(&postgres.Meters{DB: db}, device.Config{}), db.Close, nil
}

// ProvisionCmd provisions one meter.
type ProvisionCmd struct {
	Postgres     PostgresFlags `embed:""`
	ID           string        `arg:"" help:"Meter id (1 to 64 of A-Z a-z 0-9 . _ -)."`
	Utility      string        `required:"" enum:"electricity,water,gas" help:"What the meter measures."`
	ServicePoint int64         `name:"service-point" help:"Service point the meter belongs to (0: none yet)."`
	Model        string        `help:"Meter model, which selects its VEE rules (see --vee-rules of serve); empty for its utility's."`
}

// Run provisions the meter.
func (c *ProvisionCmd) Run(ctx context.Context) error {
	reg, done, err := openRegistry(ctx, c.Postgres)
	if err != nil {
		return err
	}
	defer done()
	req := device.Request{ID: c.ID, Utility: meter.Utility(c.Utility), Model: c.Model}
	if c.ServicePoint > 0 {
		req.ServicePointID = &c.ServicePoint
	}
	out, err := reg.Provision(ctx, []device.Request{req})
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(out[0])
}

// ProvisionBulkCmd provisions many meters.
type ProvisionBulkCmd struct {
	Postgres PostgresFlags `embed:""`
	From     string        `help:"CSV of meters to provision (header id,utility[,service_point_id[,model]]); '-' for standard input." type:"existingfile"`
	Count    int           `help:"Generate this many meter ids instead of reading --from."`
	Prefix   string        `default:"MTR-" help:"Prefix of generated ids."`
	Start    int           `default:"1" help:"Number of the first generated id."`
	Utility  string        `default:"mixed" enum:"electricity,water,gas,mixed" help:"Utility of generated meters; mixed cycles electricity, water, gas."`
	Model    string        `help:"Model of generated meters."`
	Out      string        `short:"o" default:"-" help:"Where to write meter_id,utility,token CSV ('-': standard output). Keep it secret."`
}

// Run provisions the meters in batches of 10,000.
func (c *ProvisionBulkCmd) Run(ctx context.Context, log *slog.Logger) error {
	var reqs []device.Request
	var err error
	switch {
	case c.From != "" && c.Count > 0:
		return fmt.Errorf("--from and --count: give one of them")
	case c.From != "":
		reqs, err = readProvisionCSV(c.From)
		if err != nil {
			return err
		}
	case c.Count > 0:
		utilities := []meter.Utility{meter.Electricity, meter.Water, meter.Gas}
		for i := 0; i < c.Count; i++ {
			u := meter.Utility(c.Utility)
			if c.Utility == "mixed" {
				u = utilities[i%3]
			}
			reqs = append(reqs, device.Request{ID: fmt.Sprintf("%s%07d", c.Prefix, c.Start+i), Utility: u, Model: c.Model})
		}
	default:
		return fmt.Errorf("give --from FILE or --count N")
	}
	reg, done, err := openRegistry(ctx, c.Postgres)
	if err != nil {
		return err
	}
	defer done()
	var w io.Writer = os.Stdout
	if c.Out != "-" {
		f, err := os.OpenFile(c.Out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"meter_id", "utility", "token"})
	for i := 0; i < len(reqs); i += 10000 {
		part := reqs[i:min(i+10000, len(reqs))]
		out, err := reg.Provision(ctx, part)
		if err != nil {
			return fmt.Errorf("meters %d to %d: %w", i+1, i+len(part), err)
		}
		for _, p := range out {
			_ = cw.Write([]string{p.ID, string(p.Utility), p.Token})
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
	}
	log.Info("meters provisioned", "count", len(reqs))
	return nil
}

func readProvisionCSV(path string) ([]device.Request, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(rows) == 0 || strings.TrimSpace(rows[0][0]) != "id" {
		return nil, fmt.Errorf("%s: the first line must be the header id,utility[,service_point_id[,model]]", path)
	}
	var reqs []device.Request
	for i, row := range rows[1:] {
		if len(row) < 2 {
			return nil, fmt.Errorf("%s line %d: want id,utility", path, i+2)
		}
		u, err := meter.ParseUtility(row[1])
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, i+2, err)
		}
		q := device.Request{ID: strings.TrimSpace(row[0]), Utility: u}
		if len(row) > 2 && strings.TrimSpace(row[2]) != "" {
			sp, err := strconv.ParseInt(strings.TrimSpace(row[2]), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s line %d: service_point_id: %w", path, i+2, err)
			}
			q.ServicePointID = &sp
		}
		if len(row) > 3 {
			q.Model = strings.TrimSpace(row[3])
		}
		reqs = append(reqs, q)
	}
	return reqs, nil
}

// RevokeCmd revokes a meter.
type RevokeCmd struct {
	Postgres PostgresFlags `embed:""`
	ID       string        `arg:"" help:"Meter id."`
}

// Run revokes the meter. A running server drops it from its credential
// cache within --auth-cache-ttl.
func (c *RevokeCmd) Run(ctx context.Context) error {
	reg, done, err := openRegistry(ctx, c.Postgres)
	if err != nil {
		return err
	}
	defer done()
	return reg.Revoke(ctx, c.ID)
}

// ListCmd lists meters.
type ListCmd struct {
	Postgres PostgresFlags `embed:""`
	After    string        `help:"List meters after this id."`
	Limit    int           `default:"100" help:"At most this many (up to 1000)."`
}

// Run prints meters as JSON lines.
func (c *ListCmd) Run(ctx context.Context) error {
	reg, done, err := openRegistry(ctx, c.Postgres)
	if err != nil {
		return err
	}
	defer done()
	ms, err := reg.List(ctx, c.After, c.Limit)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	for _, m := range ms {
		if err := enc.Encode(m); err != nil {
			return err
		}
	}
	return nil
}
