package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/tariff"
)

// Billing is the PostgreSQL store of the billing engine: tariffs, bills,
// accruals, thresholds and the outbox (schema in migrations/002_billing.sql).
type Billing struct{ DB *DB }

var _ billing.Store = (*Billing)(nil)

// ---------- conversions ----------

// num converts an exact decimal to a numeric parameter without going through
// text or float.
func num(d decimal.Decimal) pgtype.Numeric {
	return pgtype.Numeric{Int: d.Coefficient(), Exp: d.Exponent(), Valid: true}
}

// dec converts a scanned numeric to a decimal.
func dec(n pgtype.Numeric) (decimal.Decimal, error) {
	if !n.Valid {
		return decimal.Zero, nil
	}
	if n.NaN || n.InfinityModifier != pgtype.Finite {
		return decimal.Zero, errors.New("numeric is not a finite number")
	}
	return decimal.NewFromBigInt(n.Int, n.Exp), nil
}

func dateTime(d tariff.Date) time.Time {
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC)
}

func dateOf(t time.Time) tariff.Date { return tariff.DateOf(t.UTC()) }

func optDate(t *time.Time) tariff.Date {
	if t == nil {
		return tariff.Date{}
	}
	return dateOf(*t)
}

func derefTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// ---------- tariffs ----------

// SaveTariff stores t as the next revision of its code unless the latest
// revision has the same definition. Loads of one code are serialised by a
// transaction-scoped advisory lock, so two loads cannot take one revision.
func (s *Billing) SaveTariff(ctx context.Context, t tariff.Tariff, definition []byte) (billing.StoredTariff, bool, error) {
	st := billing.StoredTariff{Tariff: t}
	created := false
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `select pg_advisory_xact_lock(hashtextextended('tariff:' || $1, 0))`, t.Code); err != nil {
			return err
		}
		var rev int
		var same bool
		var at time.Time
		err := tx.QueryRow(ctx, `select revision, definition = $2::jsonb, created_at from tariffs
			where code = $1 order by revision desc limit 1`, t.Code, string(definition)).Scan(&rev, &same, &at)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if same {
			st.Revision, st.LoadedAt = rev, at
			return nil
		}
		st.Revision = rev + 1
		created = true
		return tx.QueryRow(ctx, `insert into tariffs (code, revision, utility, currency, definition)
			values ($1, $2, $3, $4, $5::jsonb) returning created_at`,
			t.Code, st.Revision, string(t.Utility), t.Currency, string(definition)).Scan(&st.LoadedAt)
	})
	if err != nil {
		return st, false, fmt.Errorf("save tariff %s: %w", t.Code, err)
	}
	return st, created, nil
}

// Tariffs returns every revision of every tariff, parsed.
func (s *Billing) Tariffs(ctx context.Context) ([]billing.StoredTariff, error) {
	rows, err := s.DB.Pool.Query(ctx, `select code, revision, definition::text, created_at from tariffs order by code, revision`)
	if err != nil {
		return nil, fmt.Errorf("list tariffs: %w", err)
	}
	defer rows.Close()
	var out []billing.StoredTariff
	for rows.Next() {
		var code, def string
		var st billing.StoredTariff
		if err := rows.Scan(&code, &st.Revision, &def, &st.LoadedAt); err != nil {
			return nil, err
		}
		t, err := tariff.Parse([]byte(def))
		if err != nil {
			return nil, fmt.Errorf("stored tariff %s revision %d: %w", code, st.Revision, err)
		}
		st.Tariff = t
		out = append(out, st)
	}
	return out, rows.Err()
}

// CalorificValues returns the daily calorific values in [from, to).
func (s *Billing) CalorificValues(ctx context.Context, from, to tariff.Date) (map[tariff.Date]decimal.Decimal, error) {
	rows, err := s.DB.Pool.Query(ctx, `select day, mj_per_m3 from calorific_values where day >= $1 and day < $2`, dateTime(from), dateTime(to))
	if err != nil {
		return nil, fmt.Errorf("calorific values: %w", err)
	}
	defer rows.Close()
	out := map[tariff.Date]decimal.Decimal{}
	for rows.Next() {
		var day time.Time
		var v pgtype.Numeric
		if err := rows.Scan(&day, &v); err != nil {
			return nil, err
		}
		d, err := dec(v)
		if err != nil {
			return nil, err
		}
		out[dateOf(day)] = d
	}
	return out, rows.Err()
}

// ---------- accounts, service points, usage ----------

// CountAccounts counts the accounts.
func (s *Billing) CountAccounts(ctx context.Context) (int, error) {
	var n int
	err := s.DB.Pool.QueryRow(ctx, `select count(*) from accounts`).Scan(&n)
	return n, err
}

const accountColumns = `a.id, a.household_id, h.name, a.number, a.currency, a.time_zone, a.cycle_anchor_day, a.billing_from,
	(select b.period_end from bills b where b.account_id = a.id order by b.period_start desc limit 1)`

func scanAccounts(rows pgx.Rows) ([]billing.Account, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.Account, error) {
		var a billing.Account
		var anchor int16
		var from, last *time.Time
		err := r.Scan(&a.ID, &a.HouseholdID, &a.HouseholdName, &a.Number, &a.Currency, &a.TimeZone, &anchor, &from, &last)
		a.AnchorDay, a.BillingFrom, a.LastBilledEnd = int(anchor), optDate(from), optDate(last)
		return a, err
	})
}

// Accounts returns accounts in id order after the given id.
func (s *Billing) Accounts(ctx context.Context, after int64, limit int) ([]billing.Account, error) {
	rows, err := s.DB.Pool.Query(ctx, `select `+accountColumns+`
		from accounts a join households h on h.id = a.household_id
		where a.id > $1 order by a.id limit $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	return scanAccounts(rows)
}

// ServicePoints returns the accounts' service points with their meters and
// tariff assignments: service points joined to their meters (one row a
// meter), then the assignments of those service points, in one round trip.
// Two index-driven statements cost about half of one with a per-row
// aggregate of each.
func (s *Billing) ServicePoints(ctx context.Context, accountIDs []int64) ([]billing.ServicePoint, error) {
	var b pgx.Batch
	b.Queue(`
		select sp.id, p.account_id, p.id, p.address, sp.utility, coalesce(sp.tariff_code, ''), m.id, m.interval_seconds
		  from premises p
		  join service_points sp on sp.premise_id = p.id
		  left join meters m on m.service_point_id = sp.id
		 where p.account_id = any($1)
		 order by p.account_id, sp.id, m.id`, accountIDs)
	b.Queue(`
		select t.service_point_id, t.effective_from, t.tariff_code
		  from premises p
		  join service_points sp on sp.premise_id = p.id
		  join service_point_tariffs t on t.service_point_id = sp.id
		 where p.account_id = any($1)
		 order by t.service_point_id, t.effective_from`, accountIDs)
	br := s.DB.Pool.SendBatch(ctx, &b)
	defer br.Close()

	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("service points: %w", err)
	}
	var sps []billing.ServicePoint
	index := map[int64]int{}
	var sp billing.ServicePoint
	var utility string
	var meterID *string
	var secs *int32
	_, err = pgx.ForEachRow(rows, []any{&sp.ID, &sp.AccountID, &sp.PremiseID, &sp.Address, &utility, &sp.TariffCode, &meterID, &secs}, func() error {
		i, ok := index[sp.ID]
		if !ok {
			i = len(sps)
			index[sp.ID] = i
			sp.Utility = meter.Utility(utility)
			sps = append(sps, billing.ServicePoint{ID: sp.ID, AccountID: sp.AccountID, PremiseID: sp.PremiseID, Address: sp.Address,
				Utility: sp.Utility, TariffCode: sp.TariffCode})
		}
		if meterID != nil && secs != nil {
			sps[i].Meters = append(sps[i].Meters, billing.Meter{ID: *meterID, Interval: time.Duration(*secs) * time.Second})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("service points: %w", err)
	}

	rows, err = br.Query()
	if err != nil {
		return nil, fmt.Errorf("tariff assignments: %w", err)
	}
	var spID int64
	var from time.Time
	var code string
	_, err = pgx.ForEachRow(rows, []any{&spID, &from, &code}, func() error {
		if i, ok := index[spID]; ok {
			sps[i].Assignments = append(sps[i].Assignments, billing.Assignment{EffectiveFrom: dateOf(from), TariffCode: code})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tariff assignments: %w", err)
	}
	return sps, nil
}

// Usage answers the queries with one statement per mode: the queries go in
// as arrays and are joined to interval_usage on its primary key.
func (s *Billing) Usage(ctx context.Context, qs []billing.UsageQuery) ([][]billing.UsageRow, error) {
	out := make([][]billing.UsageRow, len(qs))
	for _, mode := range []billing.UsageMode{billing.Raw, billing.Daily, billing.Total} {
		var idx []int64
		var meters, channels, zones []string
		var froms, tos []time.Time
		for i, q := range qs {
			if q.Mode != mode {
				continue
			}
			idx = append(idx, int64(i))
			meters = append(meters, q.MeterID)
			channels = append(channels, string(q.Channel))
			froms = append(froms, q.From)
			tos = append(tos, q.To)
			tz := q.TimeZone
			if tz == "" {
				tz = "UTC"
			}
			zones = append(zones, tz)
		}
		if len(idx) == 0 {
			continue
		}
		var sql string
		switch mode {
		case billing.Raw:
			sql = `select q.i, iu.start_at, iu.quantity, iu.quality`
		case billing.Daily:
			sql = `select q.i, min(iu.start_at), (iu.start_at at time zone q.tz)::date as day, sum(iu.quantity)::bigint, count(*),
			              count(*) filter (where iu.quality = 1), min(iu.start_at), max(iu.start_at)`
		}
		const queries = ` from unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[]) as q(i, meter_id, channel, s, e, tz)`
		const match = `iu.meter_id = q.meter_id and iu.channel = q.channel and iu.start_at >= q.s and iu.start_at < q.e`
		switch mode {
		case billing.Raw:
			sql += queries + ` join interval_usage iu on ` + match + ` order by q.i, iu.start_at`
		case billing.Daily:
			sql += queries + ` join interval_usage iu on ` + match + ` group by q.i, day order by q.i, day`
		case billing.Total:
			// An aggregate per query (a lateral subquery) rather than one
			// join grouped afterwards: no sort of every interval by query,
			// half the time.
			sql = `select q.i, t.first, '1970-01-01'::date, t.quantity, t.n, t.estimated, t.first, t.last` + queries + `
				cross join lateral (select min(iu.start_at) first, max(iu.start_at) last, sum(iu.quantity)::bigint quantity,
				                           count(*) n, count(*) filter (where iu.quality = 1) estimated
				                      from interval_usage iu where ` + match + `) t
				where t.n > 0 order by q.i`
		}
		rows, err := s.DB.Pool.Query(ctx, sql, idx, meters, channels, froms, tos, zones)
		if err != nil {
			return nil, fmt.Errorf("usage: %w", err)
		}
		var i int64
		var r billing.UsageRow
		var day time.Time
		var q, n, est int64
		if mode == billing.Raw {
			var quality int16
			_, err = pgx.ForEachRow(rows, []any{&i, &r.Start, &q, &quality}, func() error {
				r.Quantity, r.Intervals, r.First, r.Last, r.Estimated = meter.Value(q), 1, r.Start, r.Start, 0
				if quality == int16(meter.Estimated) {
					r.Estimated = 1
				}
				out[i] = append(out[i], r)
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("usage: %w", err)
			}
			continue
		}
		_, err = pgx.ForEachRow(rows, []any{&i, &r.Start, &day, &q, &n, &est, &r.First, &r.Last}, func() error {
			r.Quantity, r.Intervals, r.Estimated = meter.Value(q), int(n), int(est)
			if mode == billing.Daily {
				r.Day = dateOf(day)
			}
			out[i] = append(out[i], r)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("usage: %w", err)
		}
	}
	return out, nil
}

// BilledRegisters returns the latest billed quantity of each meter for each
// of the accounts' bills whose period ended after since: the bill's own
// register, or the latest correction of it.
func (s *Billing) BilledRegisters(ctx context.Context, accountIDs []int64, since time.Time) ([]billing.BilledRegister, error) {
	rows, err := s.DB.Pool.Query(ctx, `
		with b0 as (
			select id, account_id, period_start, period_end from bills
			 where account_id = any($1) and period_end_at > $2
		), regs as (
			select b0.account_id, b0.id as orig, b0.period_start, b0.period_end, r.*
			  from b0 join bill_registers r on r.bill_id = b0.id and r.adjusts_bill_id is null
			union all
			select b0.account_id, b0.id, b0.period_start, b0.period_end, r.*
			  from b0 join bill_registers r on r.adjusts_bill_id = b0.id
		)
		select distinct on (orig, meter_id, channel)
		       account_id, orig, period_start, period_end, meter_id, channel, service_point_id,
		       period_start_at, period_end_at, quantity, intervals, estimated_intervals, expected_intervals,
		       first_interval_at, last_interval_at
		  from regs
		 order by orig, meter_id, channel, bill_id desc`, accountIDs, since)
	if err != nil {
		return nil, fmt.Errorf("billed registers: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.BilledRegister, error) {
		var b billing.BilledRegister
		var ps, pe time.Time
		var ch string
		var q int64
		var first, last *time.Time
		err := r.Scan(&b.AccountID, &b.BillID, &ps, &pe, &b.MeterID, &ch, &b.ServicePointID, &b.Start, &b.End,
			&q, &b.Intervals, &b.Estimated, &b.Expected, &first, &last)
		b.PeriodStart, b.PeriodEnd, b.Channel, b.Quantity = dateOf(ps), dateOf(pe), meter.Channel(ch), meter.Value(q)
		b.FirstInterval, b.LastInterval = derefTime(first), derefTime(last)
		return b, err
	})
}

// BilledCharges sums what a bill and its corrections charged for a service
// point, and lists the tariff revisions the bill priced it with.
func (s *Billing) BilledCharges(ctx context.Context, billID, servicePointID int64) (billing.BilledCharges, error) {
	bc := billing.BilledCharges{Revisions: map[string]int{}}
	var sub, tax pgtype.Numeric
	err := s.DB.Pool.QueryRow(ctx, `
		select coalesce(sum(amount) filter (where kind not in ('tax', 'adjustment_tax')), 0),
		       coalesce(sum(amount) filter (where kind in ('tax', 'adjustment_tax')), 0)
		  from bill_lines
		 where service_point_id = $2 and ((bill_id = $1 and adjusts_bill_id is null) or adjusts_bill_id = $1)`,
		billID, servicePointID).Scan(&sub, &tax)
	if err != nil {
		return bc, fmt.Errorf("billed charges of bill %d: %w", billID, err)
	}
	if bc.Subtotal, err = dec(sub); err != nil {
		return bc, err
	}
	if bc.Tax, err = dec(tax); err != nil {
		return bc, err
	}
	rows, err := s.DB.Pool.Query(ctx, `select distinct tariff_code, tariff_revision from bill_lines
		where bill_id = $1 and service_point_id = $2 and adjusts_bill_id is null and tariff_code <> ''`, billID, servicePointID)
	if err != nil {
		return bc, fmt.Errorf("billed tariffs of bill %d: %w", billID, err)
	}
	var code string
	var rev int
	_, err = pgx.ForEachRow(rows, []any{&code, &rev}, func() error {
		bc.Revisions[code] = rev
		return nil
	})
	return bc, err
}

// ---------- bill runs and bills ----------

// StartBillRun records a run starting.
func (s *Billing) StartBillRun(ctx context.Context, asOf, started time.Time) (int64, error) {
	var id int64
	err := s.DB.Pool.QueryRow(ctx, `insert into bill_runs (as_of, started_at) values ($1, $2) returning id`, asOf, started).Scan(&id)
	return id, err
}

// FinishBillRun records how a run ended.
func (s *Billing) FinishBillRun(ctx context.Context, r billing.RunSummary) error {
	_, err := s.DB.Pool.Exec(ctx, `update bill_runs set finished_at = $2, accounts = $3, bills_issued = $4,
		already_billed = $5, nothing_to_bill = $6, failed = $7, adjustments = $8, outcome = $9, error = $10 where id = $1`,
		r.RunID, r.Finished, r.Accounts, r.BillsIssued, r.AlreadyBilled, r.NothingToBill, r.Failed, r.Adjustments, r.Outcome, r.Error)
	return err
}

// NextBillIDs reserves n bill ids from the bills' sequence.
func (s *Billing) NextBillIDs(ctx context.Context, n int) ([]int64, error) {
	rows, err := s.DB.Pool.Query(ctx, `select nextval(pg_get_serial_sequence('bills', 'id')) from generate_series(1, $1)`, n)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

var billColumns = []string{"id", "account_id", "household_id", "period_start", "period_end", "period_start_at", "period_end_at",
	"time_zone", "currency", "subtotal", "tax", "total", "status", "issued_at", "due_date", "estimated", "missing_intervals", "run_id"}

var lineColumns = []string{"bill_id", "line_no", "service_point_id", "utility", "kind", "name", "description", "quantity", "unit",
	"unit_price", "amount", "estimated", "tariff_code", "tariff_revision", "tariff_version", "meter_ids", "channel",
	"first_interval_at", "last_interval_at", "metered_quantity", "adjusts_bill_id"}

var registerColumns = []string{"bill_id", "meter_id", "channel", "service_point_id", "period_start_at", "period_end_at", "quantity",
	"intervals", "estimated_intervals", "expected_intervals", "first_interval_at", "last_interval_at", "adjusts_bill_id"}

// IssueBills writes a batch of bills in one transaction. The bills go
// through COPY into bills, or, when one of them was issued already, through
// a temporary table into bills with ON CONFLICT DO NOTHING on (account_id,
// period_start); either way in account order, so that two runs inserting
// overlapping batches wait for each other instead of deadlocking. Only the bills that went in get their lines, registers and
// events (COPY again).
func (s *Billing) IssueBills(ctx context.Context, bills []*billing.Bill, events []billing.Event) ([]int64, error) {
	if len(bills) == 0 {
		return nil, nil
	}
	var issued []int64
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		var bc textCopy
		for _, b := range bills {
			bc.row()
			bc.int(b.ID)
			bc.int(b.AccountID)
			bc.int(b.HouseholdID)
			bc.date(b.PeriodStart)
			bc.date(b.PeriodEnd)
			bc.time(b.StartAt)
			bc.time(b.EndAt)
			bc.str(b.TimeZone)
			bc.str(b.Currency)
			bc.dec(b.Subtotal)
			bc.dec(b.Tax)
			bc.dec(b.Total)
			bc.str(string(b.Status))
			bc.time(b.IssuedAt)
			bc.date(b.DueDate)
			bc.bool(b.Estimated)
			bc.int(int64(b.MissingIntervals))
			bc.optInt(b.RunID)
		}
		// Straight into bills first: the common case, no bill of the batch
		// issued before. A bill issued already (a run again, or a
		// concurrent run: COPY waits for its transaction, then fails) makes
		// the COPY fail whole; then through a temporary table with ON
		// CONFLICT DO NOTHING, which issues the rest.
		if _, err := tx.Exec(ctx, `savepoint copy_bills`); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
		err := copyText(ctx, tx, "bills", billColumns, &bc)
		switch {
		case err == nil:
			issued = make([]int64, len(bills))
			for i, b := range bills {
				issued[i] = b.ID
			}
		case isUniqueViolation(err, "bills_account_id_period_start_key"):
			if _, err := tx.Exec(ctx, `rollback to savepoint copy_bills`); err != nil {
				return fmt.Errorf("rollback to savepoint: %w", err)
			}
			if _, err := tx.Exec(ctx, `create temp table if not exists tmp_bills on commit delete rows as select `+joinCols(billColumns)+` from bills with no data`); err != nil {
				return fmt.Errorf("temp bills: %w", err)
			}
			if err := copyText(ctx, tx, "tmp_bills", billColumns, &bc); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `insert into bills (`+joinCols(billColumns)+`)
				select `+joinCols(billColumns)+` from tmp_bills order by account_id, period_start
				on conflict (account_id, period_start) do nothing returning id`)
			if err != nil {
				return fmt.Errorf("insert bills: %w", err)
			}
			if issued, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
				return fmt.Errorf("insert bills: %w", err)
			}
		default:
			return err
		}
		if len(issued) == 0 {
			return nil
		}
		in := make(map[int64]bool, len(issued))
		for _, id := range issued {
			in[id] = true
		}
		var lc, rc textCopy
		var adjusted []int64
		for _, b := range bills {
			if !in[b.ID] {
				continue
			}
			for _, l := range b.Lines {
				lc.row()
				lc.int(b.ID)
				lc.int(int64(l.No))
				lc.optInt(l.ServicePointID)
				if l.ServicePointID != 0 {
					lc.str(string(l.Utility))
				} else {
					lc.null()
				}
				lc.str(string(l.Kind))
				lc.str(l.Name)
				lc.str(l.Description)
				lc.dec(l.Quantity)
				lc.str(l.Unit)
				lc.dec(l.UnitPrice)
				lc.dec(l.Amount)
				lc.bool(l.Estimated)
				lc.str(l.TariffCode)
				lc.int(int64(l.TariffRevision))
				lc.date(l.TariffVersion)
				lc.strArray(l.Meters)
				lc.str(string(l.Channel))
				lc.time(l.FirstInterval)
				lc.time(l.LastInterval)
				lc.int(int64(l.MeteredQuantity))
				lc.optInt(l.AdjustsBillID)
				if l.AdjustsBillID != 0 && !slices.Contains(adjusted, l.AdjustsBillID) {
					adjusted = append(adjusted, l.AdjustsBillID)
				}
			}
			for _, r := range b.Registers {
				rc.row()
				rc.int(b.ID)
				rc.str(r.MeterID)
				rc.str(string(r.Channel))
				rc.int(r.ServicePointID)
				rc.time(r.Start)
				rc.time(r.End)
				rc.int(int64(r.Quantity))
				rc.int(int64(r.Intervals))
				rc.int(int64(r.Estimated))
				rc.int(int64(r.Expected))
				rc.time(r.FirstInterval)
				rc.time(r.LastInterval)
				rc.optInt(r.AdjustsBillID)
			}
		}
		if err := copyText(ctx, tx, "bill_lines", lineColumns, &lc); err != nil {
			return err
		}
		if err := copyText(ctx, tx, "bill_registers", registerColumns, &rc); err != nil {
			return err
		}
		var evs []billing.Event
		for _, e := range events {
			if e.BillID == 0 || in[e.BillID] {
				evs = append(evs, e)
			}
		}
		if _, err := insertEvents(ctx, tx, evs); err != nil {
			return err
		}
		if len(adjusted) > 0 {
			slices.Sort(adjusted)
			if _, err := tx.Exec(ctx, `update bills set status = 'adjusted' where id = any($1) and status = 'issued'`, adjusted); err != nil {
				return fmt.Errorf("mark adjusted bills: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return issued, nil
}

func joinCols(cols []string) string {
	s := ""
	for i, c := range cols {
		if i > 0 {
			s += ", "
		}
		s += c
	}
	return s
}

// insertEvents records events whose keys are new and returns how many were.
func insertEvents(ctx context.Context, tx pgx.Tx, evs []billing.Event) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	keys := make([]string, len(evs))
	kinds := make([]string, len(evs))
	accounts := make([]int64, len(evs))
	payloads := make([]string, len(evs))
	at := make([]time.Time, len(evs))
	for i, e := range evs {
		p, err := json.Marshal(e.Payload)
		if err != nil {
			return 0, fmt.Errorf("event %s payload: %w", e.Key, err)
		}
		keys[i], kinds[i], accounts[i], payloads[i], at[i] = e.Key, e.Kind, e.AccountID, string(p), e.OccurredAt
	}
	tag, err := tx.Exec(ctx, `insert into outbox (event_key, kind, account_id, payload, occurred_at)
		select k, kind, a, p::jsonb, t from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[]) as e(k, kind, a, p, t)
		order by k
		on conflict (event_key) do nothing`, keys, kinds, accounts, payloads, at)
	if err != nil {
		return 0, fmt.Errorf("insert events: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Bill returns an issued bill with its lines, registers and the service
// points they refer to.
func (s *Billing) Bill(ctx context.Context, id int64) (billing.Bill, error) {
	var b billing.Bill
	var ps, pe, due time.Time
	var sub, tax, total pgtype.Numeric
	var status string
	var missing int32
	var runID *int64
	err := s.DB.Pool.QueryRow(ctx, `
		select b.id, b.account_id, a.number, b.household_id, h.name, b.period_start, b.period_end, b.period_start_at, b.period_end_at,
		       b.time_zone, b.currency, b.subtotal, b.tax, b.total, b.status, b.issued_at, b.due_date, b.estimated,
		       b.missing_intervals, b.run_id
		  from bills b join accounts a on a.id = b.account_id join households h on h.id = b.household_id
		 where b.id = $1`, id).Scan(&b.ID, &b.AccountID, &b.AccountNumber, &b.HouseholdID, &b.HouseholdName, &ps, &pe,
		&b.StartAt, &b.EndAt, &b.TimeZone, &b.Currency, &sub, &tax, &total, &status, &b.IssuedAt, &due, &b.Estimated, &missing, &runID)
	if errors.Is(err, pgx.ErrNoRows) {
		return b, apperr.New(apperr.NotFound, "bill %d not found", id)
	}
	if err != nil {
		return b, fmt.Errorf("bill %d: %w", id, err)
	}
	b.PeriodStart, b.PeriodEnd, b.DueDate, b.Status, b.MissingIntervals = dateOf(ps), dateOf(pe), dateOf(due), billing.Status(status), int(missing)
	if runID != nil {
		b.RunID = *runID
	}
	for _, p := range []struct {
		n *pgtype.Numeric
		d *decimal.Decimal
	}{{&sub, &b.Subtotal}, {&tax, &b.Tax}, {&total, &b.Total}} {
		if *p.d, err = dec(*p.n); err != nil {
			return b, err
		}
	}

	rows, err := s.DB.Pool.Query(ctx, `select `+joinCols(lineColumns[1:])+` from bill_lines where bill_id = $1 order by line_no`, id)
	if err != nil {
		return b, fmt.Errorf("bill %d lines: %w", id, err)
	}
	b.Lines, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.Line, error) {
		var l billing.Line
		var no, rev int32
		var spID, adj *int64
		var utility *string
		var kind, ch string
		var q, up, amt pgtype.Numeric
		var version, first, last *time.Time
		var mq int64
		if err := r.Scan(&no, &spID, &utility, &kind, &l.Name, &l.Description, &q, &l.Unit, &up, &amt, &l.Estimated,
			&l.TariffCode, &rev, &version, &l.Meters, &ch, &first, &last, &mq, &adj); err != nil {
			return l, err
		}
		l.No, l.Kind, l.TariffRevision, l.Channel, l.MeteredQuantity = int(no), tariff.LineKind(kind), int(rev), meter.Channel(ch), meter.Value(mq)
		if spID != nil {
			l.ServicePointID = *spID
		}
		if utility != nil {
			l.Utility = meter.Utility(*utility)
		}
		if adj != nil {
			l.AdjustsBillID = *adj
		}
		l.TariffVersion, l.FirstInterval, l.LastInterval = optDate(version), derefTime(first), derefTime(last)
		var err error
		if l.Quantity, err = dec(q); err != nil {
			return l, err
		}
		if l.UnitPrice, err = dec(up); err != nil {
			return l, err
		}
		l.Amount, err = dec(amt)
		return l, err
	})
	if err != nil {
		return b, fmt.Errorf("bill %d lines: %w", id, err)
	}

	rows, err = s.DB.Pool.Query(ctx, `select `+joinCols(registerColumns[1:])+` from bill_registers where bill_id = $1
		order by adjusts_bill_id nulls first, service_point_id, meter_id, period_start_at`, id)
	if err != nil {
		return b, fmt.Errorf("bill %d registers: %w", id, err)
	}
	b.Registers, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.Register, error) {
		var g billing.Register
		var ch string
		var q int64
		var n, est, exp int32
		var first, last *time.Time
		var adj *int64
		err := r.Scan(&g.MeterID, &ch, &g.ServicePointID, &g.Start, &g.End, &q, &n, &est, &exp, &first, &last, &adj)
		g.Channel, g.Quantity, g.Intervals, g.Estimated, g.Expected = meter.Channel(ch), meter.Value(q), int(n), int(est), int(exp)
		g.FirstInterval, g.LastInterval = derefTime(first), derefTime(last)
		if adj != nil {
			g.AdjustsBillID = *adj
		}
		return g, err
	})
	if err != nil {
		return b, fmt.Errorf("bill %d registers: %w", id, err)
	}

	rows, err = s.DB.Pool.Query(ctx, `select sp.id, sp.utility, p.address from service_points sp join premises p on p.id = sp.premise_id
		where sp.id in (select service_point_id from bill_lines where bill_id = $1
		                union select service_point_id from bill_registers where bill_id = $1)
		order by sp.id`, id)
	if err != nil {
		return b, fmt.Errorf("bill %d service points: %w", id, err)
	}
	b.ServicePoints, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.ServicePointInfo, error) {
		var i billing.ServicePointInfo
		var u string
		err := r.Scan(&i.ID, &u, &i.Address)
		i.Utility = meter.Utility(u)
		return i, err
	})
	if err != nil {
		return b, fmt.Errorf("bill %d service points: %w", id, err)
	}
	return b, nil
}

// ---------- accruals ----------

// StartAccrualRun records a run; its watermark is the database's clock at
// the start, the clock interval_usage.updated_at is stamped with.
func (s *Billing) StartAccrualRun(ctx context.Context) (int64, time.Time, time.Time, error) {
	var id int64
	var since *time.Time
	var watermark time.Time
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `select watermark from accrual_runs where finished_at is not null order by id desc limit 1`).Scan(&since)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		return tx.QueryRow(ctx, `insert into accrual_runs default values returning id, started_at`).Scan(&id, &watermark)
	})
	if err != nil {
		return 0, time.Time{}, time.Time{}, err
	}
	return id, derefTime(since), watermark, nil
}

// AccrualAccounts returns accounts with service points that need an
// accrual: usage changed after changedSince, no accrual yet, or an accrual
// not through the end of their local today.
func (s *Billing) AccrualAccounts(ctx context.Context, changedSince, now time.Time, after int64, limit int) ([]billing.Account, error) {
	rows, err := s.DB.Pool.Query(ctx, `
		with changed as (
			select distinct p.account_id
			  from interval_usage iu
			  join meters m on m.id = iu.meter_id
			  join service_points sp on sp.id = m.service_point_id
			  join premises p on p.id = sp.premise_id
			 where iu.updated_at > $1
		)
		select `+accountColumns+`
		  from accounts a join households h on h.id = a.household_id
		 where a.id > $3
		   and exists (select 1 from premises p join service_points sp on sp.premise_id = p.id where p.account_id = a.id)
		   and (a.id in (select account_id from changed)
		        or not exists (select 1 from accruals x where x.account_id = a.id)
		        or exists (select 1 from accruals x where x.account_id = a.id
		                    and x.through <> (($2::timestamptz at time zone a.time_zone)::date + 1)))
		 order by a.id limit $4`, changedSince, now, after, limit)
	if err != nil {
		return nil, fmt.Errorf("accrual accounts: %w", err)
	}
	return scanAccounts(rows)
}

// Thresholds returns the accounts' budgets and thresholds, with their
// prepaid balances.
func (s *Billing) Thresholds(ctx context.Context, accountIDs []int64) ([]billing.Budget, []billing.Thresholds, error) {
	rows, err := s.DB.Pool.Query(ctx, `select account_id, scope, amount, percents from budgets where account_id = any($1) order by account_id, scope`, accountIDs)
	if err != nil {
		return nil, nil, fmt.Errorf("budgets: %w", err)
	}
	budgets, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.Budget, error) {
		var b billing.Budget
		var amt pgtype.Numeric
		var pcts []int16
		if err := r.Scan(&b.AccountID, &b.Scope, &amt, &pcts); err != nil {
			return b, err
		}
		for _, p := range pcts {
			b.Percents = append(b.Percents, int(p))
		}
		var err error
		b.Amount, err = dec(amt)
		return b, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("budgets: %w", err)
	}
	rows, err = s.DB.Pool.Query(ctx, `
		select t.account_id, t.accrued_above, t.balance_below, pb.balance
		  from account_thresholds t left join prepaid_balances pb on pb.account_id = t.account_id
		 where t.account_id = any($1) order by t.account_id`, accountIDs)
	if err != nil {
		return nil, nil, fmt.Errorf("thresholds: %w", err)
	}
	ths, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.Thresholds, error) {
		var t billing.Thresholds
		var above, below, bal pgtype.Numeric
		if err := r.Scan(&t.AccountID, &above, &below, &bal); err != nil {
			return t, err
		}
		for _, p := range []struct {
			n   pgtype.Numeric
			dst **decimal.Decimal
		}{{above, &t.AccruedAbove}, {below, &t.BalanceBelow}, {bal, &t.Balance}} {
			if !p.n.Valid {
				continue
			}
			d, err := dec(p.n)
			if err != nil {
				return t, err
			}
			*p.dst = &d
		}
		return t, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("thresholds: %w", err)
	}
	return budgets, ths, nil
}

// ReplaceBudgets replaces an account's budgets in one transaction.
func (s *Billing) ReplaceBudgets(ctx context.Context, accountID int64, bs []billing.Budget) error {
	return s.DB.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `delete from budgets where account_id = $1`, accountID); err != nil {
			return fmt.Errorf("delete budgets of account %d: %w", accountID, err)
		}
		for _, b := range bs {
			pcts := make([]int16, len(b.Percents))
			for i, p := range b.Percents {
				pcts[i] = int16(p)
			}
			if _, err := tx.Exec(ctx, `insert into budgets (account_id, scope, amount, percents) values ($1, $2, $3, $4)`,
				accountID, b.Scope, num(b.Amount), pcts); err != nil {
				if isForeignKeyViolation(err) {
					return apperr.New(apperr.NotFound, "account %d not found", accountID)
				}
				return fmt.Errorf("insert budget %s of account %d: %w", b.Scope, accountID, err)
			}
		}
		return nil
	})
}

// SaveAccruals upserts the accruals and records new events in one
// transaction.
func (s *Billing) SaveAccruals(ctx context.Context, accruals []billing.Accrual, events []billing.Event) (int, error) {
	n := 0
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		if len(accruals) > 0 {
			b := &pgx.Batch{}
			for _, a := range accruals {
				b.Queue(`insert into accruals (account_id, utility, cycle_start, cycle_end, through, currency, quantity, amount, projected, estimated, updated_at)
					values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
					on conflict (account_id, utility) do update set cycle_start = excluded.cycle_start, cycle_end = excluded.cycle_end,
					  through = excluded.through, currency = excluded.currency, quantity = excluded.quantity, amount = excluded.amount,
					  projected = excluded.projected, estimated = excluded.estimated, updated_at = excluded.updated_at`,
					a.AccountID, string(a.Utility), dateTime(a.CycleStart), dateTime(a.CycleEnd), dateTime(a.Through), a.Currency,
					int64(a.Quantity), num(a.Amount), num(a.Projected), a.Estimated, a.UpdatedAt)
			}
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return fmt.Errorf("upsert accruals: %w", err)
			}
		}
		var err error
		n, err = insertEvents(ctx, tx, events)
		return err
	})
	return n, err
}

// FinishAccrualRun records a run's end.
func (s *Billing) FinishAccrualRun(ctx context.Context, id int64, watermark time.Time, accounts, events int) error {
	_, err := s.DB.Pool.Exec(ctx, `update accrual_runs set finished_at = clock_timestamp(), watermark = $2, accounts = $3, events = $4 where id = $1`,
		id, watermark, accounts, events)
	return err
}

// MarkOverdue marks issued bills whose due date is before the local day of
// now in their time zone as overdue, and records a bill.overdue event for
// each in the same transaction.
func (s *Billing) MarkOverdue(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `
			with due as (
				update bills set status = 'overdue'
				 where status = 'issued' and due_date < ($1::timestamptz at time zone time_zone)::date
				returning id, account_id, household_id, total, currency, due_date, period_start, period_end),
			ev as (
				insert into outbox (event_key, kind, account_id, payload, occurred_at)
				select 'bill.overdue:' || id, 'bill.overdue', account_id,
				       jsonb_build_object('bill_id', id, 'account_id', account_id, 'household_id', household_id,
				                          'total', total::text, 'currency', currency, 'due_date', due_date::text,
				                          'period_start', period_start::text, 'period_end', period_end::text),
				       $1
				  from due
				on conflict (event_key) do nothing)
			select count(*) from due`, now).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("mark overdue bills: %w", err)
	}
	return n, nil
}
