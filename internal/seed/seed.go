// Package seed generates synthetic households for development, demos and
// benchmarks: accounts, premises, service points on sample tariffs, meters
// and their interval usage, written to PostgreSQL with COPY.
//
// The data is deterministic for a given account number and day, so two
// seeds of the same size hold the same usage. Seeded meters have no usable
// device token: they exist to be billed, not to connect.
package seed

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/tariff"
)

//go:embed tariffs/*.yaml
var tariffFiles embed.FS

// Tariffs returns the sample tariff files the generated service points are
// on; load them (billing.Service.LoadTariff) before billing seeded accounts.
func Tariffs() map[string][]byte {
	out := map[string][]byte{}
	names, _ := fs.Glob(tariffFiles, "tariffs/*.yaml")
	for _, n := range names {
		b, _ := tariffFiles.ReadFile(n)
		out[n] = b
	}
	return out
}

// Sample tariff codes.
const (
	ElectricityFlat = "SEED-E-FLAT"
	ElectricityE7   = "SEED-E-E7"
	Water           = "SEED-W"
	Gas             = "SEED-G"
)

// Options say what to generate.
type Options struct {
	// Accounts is how many households to create, one account, premise and
	// service point per utility each.
	Accounts int
	// From and To (exclusive) are the local days of usage to generate.
	From, To tariff.Date
	// Interval is the grid of the usage: 15 minutes, 30 minutes, an hour or
	// a day. Electricity on a sub-daily grid is on Economy 7 for every other
	// account (time of use needs intervals); daily data is all flat rate.
	Interval time.Duration
	// Utilities to supply; all three when empty.
	Utilities []meter.Utility
	// TimeZone of the accounts (default Europe/London); they bill in GBP on
	// cycles starting the first of the month.
	TimeZone string
	// Workers is how many COPY streams write usage at once (default 2).
	Workers int
	// Progress, if set, is called with the interval rows written so far and
	// the total, from one goroutine at a time.
	Progress func(done, total int64)
}

// Result counts what was written.
type Result struct {
	FirstAccount, LastAccount int64
	Accounts, Meters          int
	Intervals                 int64
}

// Validate reports every problem with o.
func (o Options) Validate() error {
	var errs []error
	if o.Accounts < 1 {
		errs = append(errs, errors.New("accounts: want at least 1"))
	}
	if !o.From.Before(o.To) {
		errs = append(errs, errors.New("usage period: from must be before to"))
	}
	switch o.Interval {
	case 15 * time.Minute, 30 * time.Minute, time.Hour, 24 * time.Hour:
	default:
		errs = append(errs, fmt.Errorf("interval %s: want 15m, 30m, 1h or 24h", o.Interval))
	}
	for _, u := range o.Utilities {
		if !u.Valid() {
			errs = append(errs, fmt.Errorf("utility %q: want electricity, water or gas", u))
		}
	}
	if o.TimeZone != "" {
		if _, err := time.LoadLocation(o.TimeZone); err != nil {
			errs = append(errs, fmt.Errorf("time zone: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Run generates the data. Ids continue from the highest in each table, so
// seeding twice adds more households.
func Run(ctx context.Context, db *postgres.DB, o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	if o.TimeZone == "" {
		o.TimeZone = "Europe/London"
	}
	if len(o.Utilities) == 0 {
		o.Utilities = []meter.Utility{meter.Electricity, meter.Water, meter.Gas}
	}
	if o.Workers < 1 {
		o.Workers = 2
	}
	loc, _ := time.LoadLocation(o.TimeZone)
	var base struct{ hh, acc, prem, sp int64 }
	err := db.Pool.QueryRow(ctx, `select (select coalesce(max(id), 0) from households), (select coalesce(max(id), 0) from accounts),
		(select coalesce(max(id), 0) from premises), (select coalesce(max(id), 0) from service_points)`).Scan(&base.hh, &base.acc, &base.prem, &base.sp)
	if err != nil {
		return Result{}, fmt.Errorf("seed ids: %w", err)
	}
	n := int64(o.Accounts)
	nu := int64(len(o.Utilities))
	res := Result{FirstAccount: base.acc + 1, LastAccount: base.acc + n, Accounts: o.Accounts, Meters: o.Accounts * len(o.Utilities)}
	meterID := func(acc int64, u meter.Utility) string { return fmt.Sprintf("SEED-%09d-%c", acc, u[0]) }
	tariffOf := func(acc int64, u meter.Utility) string {
		switch u {
		case meter.Water:
			return Water
		case meter.Gas:
			return Gas
		}
		if o.Interval <= time.Hour && acc%2 == 1 {
			return ElectricityE7
		}
		return ElectricityFlat
	}

	err = db.InTx(ctx, func(tx pgx.Tx) error {
		copies := []struct {
			table string
			cols  []string
			rows  int64
			row   func(i int64) []any
		}{
			{"households", []string{"id", "name"}, n, func(i int64) []any {
				return []any{base.hh + 1 + i, fmt.Sprintf("Household %d", base.acc+1+i)}
			}},
			{"accounts", []string{"id", "household_id", "number", "currency", "time_zone", "cycle_anchor_day"}, n, func(i int64) []any {
				return []any{base.acc + 1 + i, base.hh + 1 + i, fmt.Sprintf("SEED-%09d", base.acc+1+i), "GBP", o.TimeZone, int16(1)}
			}},
			{"premises", []string{"id", "account_id", "address", "region"}, n, func(i int64) []any {
				return []any{base.prem + 1 + i, base.acc + 1 + i, fmt.Sprintf("%d Sample Street", 1+i%400), "seed"}
			}},
			{"service_points", []string{"id", "premise_id", "utility", "tariff_code"}, n * nu, func(i int64) []any {
				a, u := i/nu, o.Utilities[i%nu]
				return []any{base.sp + 1 + i, base.prem + 1 + a, string(u), tariffOf(base.acc+1+a, u)}
			}},
			{"meters", []string{"id", "service_point_id", "utility", "token_hash", "interval_seconds"}, n * nu, func(i int64) []any {
				a, u := i/nu, o.Utilities[i%nu]
				return []any{meterID(base.acc+1+a, u), base.sp + 1 + i, string(u), []byte{0}, int32(o.Interval / time.Second)}
			}},
		}
		for _, c := range copies {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, &genSource{n: c.rows, row: c.row}); err != nil {
				return fmt.Errorf("copy %s: %w", c.table, err)
			}
		}
		for _, t := range []string{"households", "accounts", "premises", "service_points"} {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`select setval(pg_get_serial_sequence('%s', 'id'), (select max(id) from %s))`, t, t)); err != nil {
				return fmt.Errorf("sequence of %s: %w", t, err)
			}
		}
		return nil
	})
	if err != nil {
		return res, err
	}

	// Usage: chunks of accounts, each one COPY, on Workers connections.
	starts := intervalStarts(o.From, o.To, o.Interval, loc)
	total := n * nu * int64(len(starts))
	const chunk = 2000
	var done atomic.Int64
	var mu sync.Mutex
	next := int64(0)
	var wg sync.WaitGroup
	errs := make([]error, o.Workers)
	for w := range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				lo := next
				next += chunk
				mu.Unlock()
				if lo >= n || ctx.Err() != nil {
					return
				}
				hi := min(lo+chunk, n)
				src := &genSource{n: (hi - lo) * nu * int64(len(starts))}
				per := nu * int64(len(starts))
				src.row = func(i int64) []any {
					a := base.acc + 1 + lo + i/per
					u := o.Utilities[(i%per)/int64(len(starts))]
					k := i % int64(len(starts))
					q, quality := usage(a, u, starts[k], o.Interval, loc)
					return []any{meterID(a, u), string(meter.PrimaryRegister(u)), starts[k], q, quality}
				}
				c, err := copyUsage(ctx, db, src)
				if err != nil {
					errs[w] = fmt.Errorf("copy usage of accounts %d to %d: %w", base.acc+1+lo, base.acc+hi, err)
					return
				}
				d := done.Add(c)
				if o.Progress != nil {
					mu.Lock()
					o.Progress(d, total)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	res.Intervals = done.Load()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	if _, err := db.Pool.Exec(ctx, `analyze households, accounts, premises, service_points, meters, interval_usage`); err != nil {
		return res, fmt.Errorf("analyze: %w", err)
	}
	return res, nil
}

// copyUsage writes generated usage with COPY. When the role may (a
// superuser, as on the local stack), it skips the per-row foreign-key checks
// of interval_usage: every row references a meter this seed just created,
// and the checks would otherwise cost more than the COPY itself.
func copyUsage(ctx context.Context, db *postgres.DB, src pgx.CopyFromSource) (int64, error) {
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `set session_replication_role = replica`); err == nil {
		defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `reset session_replication_role`) }()
	}
	return conn.CopyFrom(ctx, pgx.Identifier{"interval_usage"}, []string{"meter_id", "channel", "start_at", "quantity", "quality"}, src)
}

// intervalStarts lists the interval starts of [from, to) in loc: every
// interval on a sub-daily grid, every local midnight on a daily one.
func intervalStarts(from, to tariff.Date, iv time.Duration, loc *time.Location) []time.Time {
	var out []time.Time
	if iv >= 24*time.Hour {
		for d := from; d.Before(to); d = d.AddDays(1) {
			out = append(out, d.Start(loc))
		}
		return out
	}
	end := to.Start(loc)
	for t := from.Start(loc); t.Before(end); t = t.Add(iv) {
		out = append(out, t)
	}
	return out
}

// Typical 15-minute consumption by local hour, in thousandths: Wh of
// electricity (about 8 kWh a day), litres of water (about 330 a day) and
// of gas (about 2.2 m3 a day in winter).
var (
	electricityShape = [24]int64{45, 40, 38, 38, 40, 50, 80, 120, 110, 80, 70, 70, 75, 70, 70, 75, 95, 140, 150, 140, 120, 100, 80, 60}
	waterShape       = [24]int64{0, 0, 0, 0, 1, 3, 8, 10, 8, 4, 3, 3, 3, 3, 2, 2, 3, 4, 6, 7, 6, 4, 2, 1}
	gasShape         = [24]int64{8, 8, 8, 8, 10, 20, 45, 50, 35, 20, 15, 15, 15, 15, 15, 18, 30, 40, 40, 35, 30, 20, 12, 8}
)

// usage is the consumption of account acc's utility u in the interval at
// start, and its quality: about one interval in 500 is an estimate.
func usage(acc int64, u meter.Utility, start time.Time, iv time.Duration, loc *time.Location) (int64, int16) {
	shape := &electricityShape
	switch u {
	case meter.Water:
		shape = &waterShape
	case meter.Gas:
		shape = &gasShape
	}
	local := start.In(loc)
	day := tariff.DateOf(local)
	// A household scale of 60% to 140%, and a day-to-day one of 80% to 120%.
	scale := 60 + int64(mix(uint64(acc))%81)
	dayScale := 80 + int64(mix(uint64(acc)*31+uint64(day.Year*400+int(day.Month)*32+day.Day))%41)
	var q int64
	if iv >= 24*time.Hour {
		for _, v := range shape {
			q += 4 * v
		}
	} else {
		h := local.Hour()
		q = shape[h] * int64(iv/(15*time.Minute))
	}
	q = q * scale * dayScale / 10000
	quality := int16(0)
	if mix(uint64(acc)^uint64(start.Unix()))%500 == 0 {
		quality = int16(meter.Estimated)
	}
	return q, quality
}

// mix is splitmix64's finaliser: a cheap, well-spread hash.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// genSource is a pgx.CopyFromSource that generates rows on demand, so a
// COPY of millions of rows holds one row in memory.
type genSource struct {
	n, i int64
	row  func(i int64) []any
	cur  []any
}

func (g *genSource) Next() bool {
	if g.i >= g.n {
		return false
	}
	g.cur = g.row(g.i)
	g.i++
	return true
}

func (g *genSource) Values() ([]any, error) { return g.cur, nil }
func (g *genSource) Err() error             { return nil }
