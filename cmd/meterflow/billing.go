package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/seed"
	"github.com/meterflow/meterflow/internal/tariff"
)

// BillingFlags configure the billing engine (billing.Config).
type BillingFlags struct {
	DueDays        int    `name:"due-days" env:"MF_BILLING_DUE_DAYS" default:"14" help:"Days after the local issue day a bill is due (${env})."`
	Workers        int    `name:"billing-workers" env:"MF_BILLING_WORKERS" default:"2" help:"Batches priced and written at once (${env})."`
	BatchSize      int    `name:"billing-batch" env:"MF_BILLING_BATCH" default:"500" help:"Accounts per batch: one usage query and one COPY each (${env})."`
	CalorificValue string `name:"calorific-value" env:"MF_BILLING_CALORIFIC_VALUE" default:"39.5" help:"Gas calorific value (MJ/m3) for days missing from calorific_values (${env})."`
}

// Config returns the billing configuration.
func (f BillingFlags) Config() (billing.Config, error) {
	var cv decimal.Decimal
	if f.CalorificValue != "" {
		var err error
		if cv, err = decimal.NewFromString(f.CalorificValue); err != nil {
			return billing.Config{}, fmt.Errorf("calorific value %q: not a decimal number", f.CalorificValue)
		}
	}
	c := billing.Config{DueDays: f.DueDays, Workers: f.Workers, BatchSize: f.BatchSize, DefaultCalorificValue: cv}
	return c, c.Validate()
}

// openBilling opens the database and a billing service over it.
func openBilling(ctx context.Context, pf PostgresFlags, bf BillingFlags, log *slog.Logger) (*billing.Service, *postgres.DB, error) {
	cfg, err := bf.Config()
	if err != nil {
		return nil, nil, err
	}
	db, err := postgres.Open(ctx, pf.Config())
	if err != nil {
		return nil, nil, err
	}
	svc, err := billing.New(&postgres.Billing{DB: db}, cfg, log)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return svc, db, nil
}

// TariffsCmd administers tariffs.
type TariffsCmd struct {
	Load TariffsLoadCmd `cmd:"" help:"Load a tariff file (YAML or JSON, docs/billing.md) as the next revision of its code."`
}

// TariffsLoadCmd loads tariff files.
type TariffsLoadCmd struct {
	Postgres PostgresFlags `embed:""`
	Files    []string      `arg:"" type:"existingfile" help:"Tariff files."`
}

// Run validates and stores each file; a bad file is refused with every
// problem named by field and reason, and nothing of it is stored.
func (c *TariffsLoadCmd) Run(ctx context.Context, log *slog.Logger) error {
	svc, db, err := openBilling(ctx, c.Postgres, BillingFlags{}, log)
	if err != nil {
		return err
	}
	defer db.Close()
	var errs []error
	for _, f := range c.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st, created, err := svc.LoadTariff(ctx, data)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: refused:\n", f)
			var ae interface{ Unwrap() error }
			cause := err
			if errors.As(err, &ae) && ae.Unwrap() != nil {
				cause = ae.Unwrap()
			}
			for _, line := range strings.Split(cause.Error(), "\n") {
				fmt.Fprintf(os.Stderr, "  %s\n", line)
			}
			errs = append(errs, fmt.Errorf("%s: tariff refused", f))
			continue
		}
		state := "unchanged"
		if created {
			state = "loaded"
		}
		fmt.Printf("%s: %s %s revision %d (%s, %s, %d versions)\n", f, state, st.Code, st.Revision, st.Utility, st.Currency, len(st.Versions))
	}
	return errors.Join(errs...)
}

// BillRunCmd bills every account whose cycle has ended.
type BillRunCmd struct {
	Postgres   PostgresFlags `embed:""`
	Billing    BillingFlags  `embed:""`
	AsOf       string        `name:"as-of" help:"Bill cycles ended by this time (RFC 3339, or YYYY-MM-DD for midnight UTC); default now."`
	NoProgress bool          `name:"no-progress" help:"Do not draw a progress bar (it is drawn only on a terminal)."`
	CPUProfile string        `name:"cpu-profile" type:"path" help:"Write a CPU profile of the run to this file (go tool pprof)."`
}

// Run runs the bill run with a progress bar on standard error.
func (c *BillRunCmd) Run(ctx context.Context, log *slog.Logger) error {
	var asOf time.Time
	if c.AsOf != "" {
		t, err := parseTime(c.AsOf)
		if err != nil {
			return err
		}
		asOf = t
	}
	svc, db, err := openBilling(ctx, c.Postgres, c.Billing, log)
	if err != nil {
		return err
	}
	defer db.Close()
	var bar *progressbar.ProgressBar
	progress := func(done, total int) {}
	if !c.NoProgress && isTerminal(os.Stderr) {
		progress = func(done, total int) {
			if bar == nil {
				bar = progressbar.NewOptions(total,
					progressbar.OptionSetWriter(os.Stderr),
					progressbar.OptionSetDescription("billing"),
					progressbar.OptionShowCount(),
					progressbar.OptionShowIts(),
					progressbar.OptionSetItsString("accounts"),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }),
				)
			}
			_ = bar.Set(done)
		}
	}
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	s, err := svc.RunBills(ctx, asOf, progress)
	if bar != nil {
		_ = bar.Finish()
	}
	fmt.Printf("bill run %d: %s; %d accounts, %d bills issued, %d already billed, %d with nothing to bill, %d failed, %d corrections; %s\n",
		s.RunID, s.Outcome, s.Accounts, s.BillsIssued, s.AlreadyBilled, s.NothingToBill, s.Failed, s.Adjustments,
		s.Finished.Sub(s.Started).Round(time.Millisecond))
	if err == nil && s.Failed > 0 {
		err = fmt.Errorf("%d accounts could not be billed (see the log); first: %v", s.Failed, s.FailedAccounts[:min(10, len(s.FailedAccounts))])
	}
	return err
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2025-02-01T06:00:00Z) or YYYY-MM-DD", s)
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// BillsCmd shows bills.
type BillsCmd struct {
	Show        BillsShowCmd        `cmd:"" help:"Show an issued bill as text, JSON or printable HTML."`
	MarkOverdue BillsMarkOverdueCmd `cmd:"" name:"mark-overdue" help:"Mark unpaid bills past their due date overdue (serve does this every accrual interval)."`
}

// BillsMarkOverdueCmd marks overdue bills once.
type BillsMarkOverdueCmd struct {
	Postgres PostgresFlags `embed:""`
}

// Run marks the bills.
func (c *BillsMarkOverdueCmd) Run(ctx context.Context, log *slog.Logger) error {
	svc, db, err := openBilling(ctx, c.Postgres, BillingFlags{}, log)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := svc.MarkOverdue(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("%d bills marked overdue\n", n)
	return nil
}

// BillsShowCmd shows one bill.
type BillsShowCmd struct {
	Postgres PostgresFlags `embed:""`
	ID       int64         `arg:"" help:"Bill id."`
	HTML     bool          `name:"html" xor:"format" help:"Write the printable HTML bill."`
	JSON     bool          `name:"json" xor:"format" help:"Write the bill as JSON."`
	Out      string        `short:"o" default:"-" help:"Where to write ('-': standard output)."`
}

// Run writes the bill.
func (c *BillsShowCmd) Run(ctx context.Context, log *slog.Logger) error {
	svc, db, err := openBilling(ctx, c.Postgres, BillingFlags{}, log)
	if err != nil {
		return err
	}
	defer db.Close()
	b, err := svc.Bill(ctx, c.ID)
	if err != nil {
		return err
	}
	var w io.Writer = os.Stdout
	if c.Out != "-" {
		f, err := os.Create(c.Out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	switch {
	case c.HTML:
		return billing.RenderBill(w, b)
	case c.JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(b)
	}
	return writeBillText(w, b)
}

func writeBillText(w io.Writer, b billing.Bill) error {
	minor, _ := tariff.MinorUnits(b.Currency)
	fmt.Fprintf(w, "Bill %d  account %s (%s)  %s to %s  issued %s  due %s  %s\n", b.ID, b.AccountNumber, b.HouseholdName,
		b.PeriodStart, b.PeriodEnd.AddDays(-1), b.IssuedAt.Format(time.DateOnly), b.DueDate, b.Status)
	for _, l := range b.Lines {
		est := ""
		if l.Estimated {
			est = "  [estimated]"
		}
		ver := ""
		if l.TariffCode != "" {
			ver = fmt.Sprintf("  [%s r%d v%s]", l.TariffCode, l.TariffRevision, l.TariffVersion)
		}
		fmt.Fprintf(w, "  %3d %-12s %-14s %12s  %s%s%s\n", l.No, l.Utility, l.Kind, l.Amount.StringFixed(minor), l.Description, ver, est)
	}
	for _, r := range b.Registers {
		adj := ""
		if r.AdjustsBillID != 0 {
			adj = fmt.Sprintf("  (corrects bill %d)", r.AdjustsBillID)
		}
		fmt.Fprintf(w, "  meter %s %s: %s over %d of %d intervals, %d estimated%s\n", r.MeterID, r.Channel, r.Quantity, r.Intervals, r.Expected, r.Estimated, adj)
	}
	_, err := fmt.Fprintf(w, "  subtotal %s  tax %s  total %s %s\n", b.Subtotal.StringFixed(minor), b.Tax.StringFixed(minor), b.Total.StringFixed(minor), b.Currency)
	return err
}

// AccrualsCmd maintains accruals.
type AccrualsCmd struct {
	Update AccrualsUpdateCmd `cmd:"" help:"Recompute the cost so far of running cycles and record threshold events."`
}

// AccrualsUpdateCmd runs the accrual job once, or every --every.
type AccrualsUpdateCmd struct {
	Postgres PostgresFlags `embed:""`
	Billing  BillingFlags  `embed:""`
	Every    time.Duration `help:"Run again at this interval until interrupted (0: once)."`
}

// Run updates the accruals.
func (c *AccrualsUpdateCmd) Run(ctx context.Context, log *slog.Logger) error {
	svc, db, err := openBilling(ctx, c.Postgres, c.Billing, log)
	if err != nil {
		return err
	}
	defer db.Close()
	for {
		s, err := svc.UpdateAccruals(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("accrual run %d: %d accounts, %d accruals, %d new events, %d failed\n", s.RunID, s.Accounts, s.Accruals, s.Events, s.Failed)
		if c.Every <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.Every):
		}
	}
}

// SeedCmd generates synthetic households with usage.
type SeedCmd struct {
	Postgres  PostgresFlags `embed:""`
	Accounts  int           `required:"" help:"Households to create (one account, premise and meter per utility each)."`
	Month     string        `help:"Month of usage, YYYY-MM (default: last month)."`
	Interval  time.Duration `default:"15m" help:"Usage grid: 15m, 30m, 1h or 24h. Use 24h for a million accounts (see docs/performance.md)."`
	Utilities []string      `default:"electricity,water,gas" help:"Utilities to supply."`
	TimeZone  string        `name:"time-zone" default:"Europe/London" help:"Time zone of the accounts."`
	Workers   int           `default:"2" help:"Parallel COPY streams."`
}

// Run seeds the database and loads the sample tariffs.
func (c *SeedCmd) Run(ctx context.Context, log *slog.Logger) error {
	month := time.Now().UTC().AddDate(0, -1, 0).Format("2006-01")
	if c.Month != "" {
		month = c.Month
	}
	m, err := time.Parse("2006-01", month)
	if err != nil {
		return fmt.Errorf("month %q: want YYYY-MM", month)
	}
	from := tariff.DateOf(m)
	to := tariff.DateOf(m.AddDate(0, 1, 0))
	var us []meter.Utility
	for _, u := range c.Utilities {
		p, err := meter.ParseUtility(u)
		if err != nil {
			return err
		}
		us = append(us, p)
	}
	svc, db, err := openBilling(ctx, c.Postgres, BillingFlags{DueDays: 14, Workers: 1, BatchSize: 1, CalorificValue: "39.5"}, log)
	if err != nil {
		return err
	}
	defer db.Close()
	for name, data := range seed.Tariffs() {
		if _, _, err := svc.LoadTariff(ctx, data); err != nil {
			return fmt.Errorf("sample tariff %s: %w", name, err)
		}
	}
	var bar *progressbar.ProgressBar
	opts := seed.Options{Accounts: c.Accounts, From: from, To: to, Interval: c.Interval, Utilities: us, TimeZone: c.TimeZone, Workers: c.Workers}
	if isTerminal(os.Stderr) {
		opts.Progress = func(done, total int64) {
			if bar == nil {
				bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription("intervals"),
					progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionThrottle(200*time.Millisecond))
			}
			_ = bar.Set64(done)
		}
	}
	start := time.Now()
	r, err := seed.Run(ctx, db, opts)
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return err
	}
	fmt.Printf("seeded accounts %d to %d (%d meters, %d intervals, %s to %s) in %s\n", r.FirstAccount, r.LastAccount, r.Meters, r.Intervals,
		from, to.AddDays(-1), time.Since(start).Round(time.Millisecond))
	return nil
}
