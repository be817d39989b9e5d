package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/portal"
)

// Households lists households by id with their number of accounts.
func (s *Portal) Households(ctx context.Context, after int64, limit int) ([]portal.Household, error) {
	rows, err := s.DB.Pool.Query(ctx, `select h.id, h.name, coalesce(h.email, ''), h.created_at,
		(select count(*) from accounts a where a.household_id = h.id)
		from households h where h.id > $1 order by h.id limit $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("households: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (portal.Household, error) {
		var h portal.Household
		err := r.Scan(&h.ID, &h.Name, &h.Email, &h.CreatedAt, &h.AccountCount)
		return h, err
	})
}

// maxOwned bounds the accounts and premises read with one household; a
// household has a handful.
const maxOwned = 1000

// Household returns a household with its accounts and premises.
func (s *Portal) Household(ctx context.Context, id int64) (portal.Household, error) {
	var h portal.Household
	err := s.DB.Pool.QueryRow(ctx, `select id, name, coalesce(email, ''), created_at from households where id = $1`, id).
		Scan(&h.ID, &h.Name, &h.Email, &h.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return h, apperr.New(apperr.NotFound, "household %d not found", id)
	}
	if err != nil {
		return h, fmt.Errorf("household %d: %w", id, err)
	}
	if h.Accounts, err = s.Accounts(ctx, id, 0, maxOwned); err != nil {
		return h, err
	}
	h.AccountCount = len(h.Accounts)
	if h.Premises, err = s.Premises(ctx, id, 0, maxOwned); err != nil {
		return h, err
	}
	if h.Accounts == nil {
		h.Accounts = []portal.Account{}
	}
	if h.Premises == nil {
		h.Premises = []portal.Premise{}
	}
	return h, nil
}

const premiseColumns = `p.id, p.account_id, a.household_id, p.address, p.region, a.time_zone, p.created_at`

func scanPremise(r pgx.CollectableRow) (portal.Premise, error) {
	var p portal.Premise
	err := r.Scan(&p.ID, &p.AccountID, &p.HouseholdID, &p.Address, &p.Region, &p.TimeZone, &p.CreatedAt)
	return p, err
}

// Premises lists premises by id, of one household or (householdID 0) all,
// with their service points and meters.
func (s *Portal) Premises(ctx context.Context, householdID, after int64, limit int) ([]portal.Premise, error) {
	rows, err := s.DB.Pool.Query(ctx, `select `+premiseColumns+` from premises p join accounts a on a.id = p.account_id
		where ($1 = 0 or a.household_id = $1) and p.id > $2 order by p.id limit $3`, householdID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("premises: %w", err)
	}
	ps, err := pgx.CollectRows(rows, scanPremise)
	if err != nil {
		return nil, fmt.Errorf("premises: %w", err)
	}
	return ps, s.fillServicePoints(ctx, ps)
}

// Premise returns one premise with its service points and meters.
func (s *Portal) Premise(ctx context.Context, id int64) (portal.Premise, error) {
	rows, err := s.DB.Pool.Query(ctx, `select `+premiseColumns+` from premises p join accounts a on a.id = p.account_id where p.id = $1`, id)
	if err != nil {
		return portal.Premise{}, fmt.Errorf("premise %d: %w", id, err)
	}
	ps, err := pgx.CollectRows(rows, scanPremise)
	if err != nil {
		return portal.Premise{}, fmt.Errorf("premise %d: %w", id, err)
	}
	if len(ps) == 0 {
		return portal.Premise{}, apperr.New(apperr.NotFound, "premise %d not found", id)
	}
	if err := s.fillServicePoints(ctx, ps); err != nil {
		return portal.Premise{}, err
	}
	return ps[0], nil
}

// fillServicePoints reads the service points of the premises, with their
// tariff assignments and meters, in three queries.
func (s *Portal) fillServicePoints(ctx context.Context, ps []portal.Premise) error {
	if len(ps) == 0 {
		return nil
	}
	ids := make([]int64, len(ps))
	at := make(map[int64]int, len(ps))
	for i := range ps {
		ids[i], at[ps[i].ID] = ps[i].ID, i
		ps[i].ServicePoints = []portal.ServicePoint{}
	}
	rows, err := s.DB.Pool.Query(ctx, `select id, premise_id, utility, coalesce(tariff_code, '') from service_points
		where premise_id = any($1) order by premise_id, utility`, ids)
	if err != nil {
		return fmt.Errorf("service points: %w", err)
	}
	type ref struct{ premise, sp int }
	spAt := map[int64]ref{}
	var spIDs []int64
	var premiseID int64
	var sp portal.ServicePoint
	_, err = pgx.ForEachRow(rows, []any{&sp.ID, &premiseID, &sp.Utility, &sp.TariffCode}, func() error {
		i := at[premiseID]
		ps[i].ServicePoints = append(ps[i].ServicePoints, portal.ServicePoint{ID: sp.ID, Utility: sp.Utility, TariffCode: sp.TariffCode,
			Tariffs: []portal.TariffAssignment{}, Meters: []portal.MeterInfo{}})
		spAt[sp.ID] = ref{i, len(ps[i].ServicePoints) - 1}
		spIDs = append(spIDs, sp.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("service points: %w", err)
	}
	if len(spIDs) == 0 {
		return nil
	}
	rows, err = s.DB.Pool.Query(ctx, `select service_point_id, effective_from, tariff_code from service_point_tariffs
		where service_point_id = any($1) order by service_point_id, effective_from`, spIDs)
	if err != nil {
		return fmt.Errorf("tariff assignments: %w", err)
	}
	var spID int64
	var from time.Time
	var code string
	_, err = pgx.ForEachRow(rows, []any{&spID, &from, &code}, func() error {
		r := spAt[spID]
		x := &ps[r.premise].ServicePoints[r.sp]
		x.Tariffs = append(x.Tariffs, portal.TariffAssignment{EffectiveFrom: dateOf(from).String(), TariffCode: code})
		return nil
	})
	if err != nil {
		return fmt.Errorf("tariff assignments: %w", err)
	}
	rows, err = s.DB.Pool.Query(ctx, meterInfoQuery+` where m.service_point_id = any($1) order by m.id`, spIDs)
	if err != nil {
		return fmt.Errorf("meters of service points: %w", err)
	}
	ms, err := pgx.CollectRows(rows, scanMeterInfo)
	if err != nil {
		return fmt.Errorf("meters of service points: %w", err)
	}
	for _, m := range ms {
		r := spAt[*m.ServicePointID]
		x := &ps[r.premise].ServicePoints[r.sp]
		x.Meters = append(x.Meters, m)
	}
	return nil
}

// meterInfoQuery reads meters with where they are installed, their last
// reading (the time their ingest state was last saved) and their VEE
// exception count.
const meterInfoQuery = `select m.id, m.utility, m.status, m.service_point_id, coalesce(sp.premise_id, 0),
	coalesce(p.account_id, 0), coalesce(a.household_id, 0), m.interval_seconds, m.created_at, m.revoked_at, ms.updated_at,
	coalesce((select sum(v.count) from vee_exceptions v where v.meter_id = m.id), 0)::bigint
	from meters m
	left join service_points sp on sp.id = m.service_point_id
	left join premises p on p.id = sp.premise_id
	left join accounts a on a.id = p.account_id
	left join meter_state ms on ms.meter_id = m.id`

func scanMeterInfo(r pgx.CollectableRow) (portal.MeterInfo, error) {
	var m portal.MeterInfo
	err := r.Scan(&m.ID, &m.Utility, &m.Status, &m.ServicePointID, &m.PremiseID, &m.AccountID, &m.HouseholdID,
		&m.IntervalSeconds, &m.CreatedAt, &m.RevokedAt, &m.LastReadingAt, &m.VEEExceptions)
	return m, err
}

// MeterInfo returns one meter with its state.
func (s *Portal) MeterInfo(ctx context.Context, id string) (portal.MeterInfo, error) {
	rows, err := s.DB.Pool.Query(ctx, meterInfoQuery+` where m.id = $1`, id)
	if err != nil {
		return portal.MeterInfo{}, fmt.Errorf("meter %s: %w", id, err)
	}
	ms, err := pgx.CollectRows(rows, scanMeterInfo)
	if err != nil {
		return portal.MeterInfo{}, fmt.Errorf("meter %s: %w", id, err)
	}
	if len(ms) == 0 {
		return portal.MeterInfo{}, apperr.New(apperr.NotFound, "meter %q not found", id)
	}
	return ms[0], nil
}

// AccountMeterInfos lists an account's meters by id, with their state.
func (s *Portal) AccountMeterInfos(ctx context.Context, accountID int64, after string, limit int) ([]portal.MeterInfo, error) {
	rows, err := s.DB.Pool.Query(ctx, meterInfoQuery+` where p.account_id = $1 and m.id > $2 order by m.id limit $3`, accountID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("meters of account %d: %w", accountID, err)
	}
	return pgx.CollectRows(rows, scanMeterInfo)
}

// storedDefinition is what the tariff listing reads of a stored definition
// (billing.EncodeTariff's JSON, whose numbers are strings).
type storedDefinition struct {
	Name     string `json:"name"`
	Unit     string `json:"unit"`
	Versions []struct {
		EffectiveFrom        string          `json:"effective_from"`
		StandingChargePerDay string          `json:"standing_charge_per_day"`
		FlatRate             string          `json:"flat_rate"`
		Tiers                json.RawMessage `json:"tiers"`
		TOU                  json.RawMessage `json:"tou"`
	} `json:"versions"`
}

func (d storedDefinition) versions() []portal.TariffVersion {
	out := make([]portal.TariffVersion, len(d.Versions))
	for i, v := range d.Versions {
		tv := portal.TariffVersion{EffectiveFrom: v.EffectiveFrom, StandingChargePerDay: v.StandingChargePerDay, FlatRate: v.FlatRate}
		switch {
		case v.FlatRate != "":
			tv.Pricing = "flat"
		case len(v.Tiers) > 0:
			tv.Pricing = "tiers"
		case len(v.TOU) > 0:
			tv.Pricing = "tou"
		}
		if i+1 < len(d.Versions) {
			tv.EffectiveTo = d.Versions[i+1].EffectiveFrom
		}
		out[i] = tv
	}
	return out
}

func scanTariff(r pgx.CollectableRow) (portal.Tariff, json.RawMessage, error) {
	var t portal.Tariff
	var def string
	if err := r.Scan(&t.Code, &t.Revision, &t.Utility, &t.Currency, &def, &t.LoadedAt); err != nil {
		return t, nil, err
	}
	var d storedDefinition
	if err := json.Unmarshal([]byte(def), &d); err != nil {
		return t, nil, fmt.Errorf("stored tariff %s revision %d: %w", t.Code, t.Revision, err)
	}
	t.Name, t.Unit, t.Versions = d.Name, d.Unit, d.versions()
	return t, json.RawMessage(def), nil
}

// Tariffs lists the latest revision of each tariff, by code.
func (s *Portal) Tariffs(ctx context.Context, after string, limit int) ([]portal.Tariff, error) {
	rows, err := s.DB.Pool.Query(ctx, `select distinct on (code) code, revision, utility, currency, definition::text, created_at
		from tariffs where code > $1 order by code, revision desc limit $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("tariffs: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (portal.Tariff, error) {
		t, _, err := scanTariff(r)
		return t, err
	})
}

// Tariff returns a tariff's latest revision, its definition, and every
// revision.
func (s *Portal) Tariff(ctx context.Context, code string) (portal.TariffDetail, error) {
	var d portal.TariffDetail
	rows, err := s.DB.Pool.Query(ctx, `select code, revision, utility, currency, definition::text, created_at
		from tariffs where code = $1 order by revision`, code)
	if err != nil {
		return portal.TariffDetail{}, fmt.Errorf("tariff %s: %w", code, err)
	}
	type rev struct {
		t   portal.Tariff
		def json.RawMessage
	}
	revs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rev, error) {
		t, def, err := scanTariff(r)
		return rev{t, def}, err
	})
	if err != nil {
		return d, fmt.Errorf("tariff %s: %w", code, err)
	}
	if len(revs) == 0 {
		return d, apperr.New(apperr.NotFound, "tariff %q not found", code)
	}
	last := revs[len(revs)-1]
	d.Tariff, d.Definition = last.t, last.def
	for _, r := range revs {
		d.Revisions = append(d.Revisions, portal.TariffRevision{Revision: r.t.Revision, LoadedAt: r.t.LoadedAt, Versions: r.t.Versions})
	}
	return d, nil
}

// FleetStats counts meters by utility and status, silent meters, what was
// written in the last hour, and VEE exceptions of the last 24 hours.
func (s *Portal) FleetStats(ctx context.Context, now time.Time, silentAfter time.Duration) (portal.FleetStats, error) {
	st := portal.FleetStats{At: now, SilentAfter: silentAfter.String(), Meters: []portal.MeterCount{}, VEELastDay: []portal.RuleCount{}}
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `select utility, status, count(*) from meters group by utility, status order by utility, status`)
		if err != nil {
			return fmt.Errorf("meters by utility and status: %w", err)
		}
		if st.Meters, err = pgx.CollectRows(rows, pgx.RowToStructByPos[portal.MeterCount]); err != nil {
			return fmt.Errorf("meters by utility and status: %w", err)
		}
		if err := tx.QueryRow(ctx, `select count(*) filter (where ms.updated_at < $1), count(*) filter (where ms.meter_id is null)
			from meters m left join meter_state ms on ms.meter_id = m.id where m.status = 'active'`, now.Add(-silentAfter)).
			Scan(&st.Silent, &st.NeverReported); err != nil {
			return fmt.Errorf("silent meters: %w", err)
		}
		hourAgo := now.Add(-time.Hour)
		if err := tx.QueryRow(ctx, `select (select count(*) from interval_usage where updated_at >= $1),
			(select count(*) from meter_state where updated_at >= $1)`, hourAgo).
			Scan(&st.IntervalsLastHour, &st.MetersReportedLastHour); err != nil {
			return fmt.Errorf("writes of the last hour: %w", err)
		}
		rows, err = tx.Query(ctx, `select rule, count(*), coalesce(sum(count), 0)::bigint from vee_exceptions
			where last_at >= $1 group by rule order by rule`, now.Add(-24*time.Hour))
		if err != nil {
			return fmt.Errorf("vee exceptions by rule: %w", err)
		}
		if st.VEELastDay, err = pgx.CollectRows(rows, pgx.RowToStructByPos[portal.RuleCount]); err != nil {
			return fmt.Errorf("vee exceptions by rule: %w", err)
		}
		return nil
	})
	if st.Meters == nil {
		st.Meters = []portal.MeterCount{}
	}
	if st.VEELastDay == nil {
		st.VEELastDay = []portal.RuleCount{}
	}
	return st, err
}

// BillRuns lists bill runs, newest first.
func (s *Portal) BillRuns(ctx context.Context, after int64, limit int) ([]portal.BillRun, error) {
	if after <= 0 {
		after = 1<<63 - 1
	}
	rows, err := s.DB.Pool.Query(ctx, `select id, as_of, started_at, finished_at, accounts, bills_issued, already_billed,
		nothing_to_bill, failed, adjustments, outcome, error from bill_runs where id < $1 order by id desc limit $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("bill runs: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[portal.BillRun])
}
