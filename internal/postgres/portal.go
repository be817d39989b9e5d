package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/portal"
)

// Portal reads what the HTTP API shows.
type Portal struct{ DB *DB }

var _ portal.Store = (*Portal)(nil)

const portalAccountColumns = `id, household_id, number, currency, time_zone, cycle_anchor_day, created_at`

func scanAccount(row pgx.Row) (portal.Account, error) {
	var a portal.Account
	var anchor int16
	err := row.Scan(&a.ID, &a.HouseholdID, &a.Number, &a.Currency, &a.TimeZone, &anchor, &a.CreatedAt)
	a.AnchorDay = int(anchor)
	return a, err
}

// Accounts lists accounts by id, of one household or (householdID 0) all.
func (s *Portal) Accounts(ctx context.Context, householdID, after int64, limit int) ([]portal.Account, error) {
	rows, err := s.DB.Pool.Query(ctx, `select `+portalAccountColumns+` from accounts
		where ($1 = 0 or household_id = $1) and id > $2 order by id limit $3`, householdID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (portal.Account, error) { return scanAccount(r) })
}

// Account returns one account.
func (s *Portal) Account(ctx context.Context, id int64) (portal.Account, error) {
	a, err := scanAccount(s.DB.Pool.QueryRow(ctx, `select `+portalAccountColumns+` from accounts where id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, apperr.New(apperr.NotFound, "account %d not found", id)
	}
	if err != nil {
		return a, fmt.Errorf("account %d: %w", id, err)
	}
	return a, nil
}

// Bills lists an account's bills, newest first.
func (s *Portal) Bills(ctx context.Context, accountID, after int64, limit int) ([]portal.BillSummary, error) {
	if after <= 0 {
		after = 1<<63 - 1
	}
	rows, err := s.DB.Pool.Query(ctx, `select id, account_id, period_start, period_end, currency, total, status, issued_at, due_date, estimated
		from bills where account_id = $1 and id < $2 order by id desc limit $3`, accountID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("bills of account %d: %w", accountID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (portal.BillSummary, error) {
		var b portal.BillSummary
		var ps, pe, due time.Time
		var total pgtype.Numeric
		if err := r.Scan(&b.ID, &b.AccountID, &ps, &pe, &b.Currency, &total, &b.Status, &b.IssuedAt, &due, &b.Estimated); err != nil {
			return b, err
		}
		b.PeriodStart, b.PeriodEnd, b.DueDate = dateOf(ps).String(), dateOf(pe).String(), dateOf(due).String()
		var err error
		b.Total, err = dec(total)
		return b, err
	})
}

// Accruals returns the accruals of an account's running cycle.
func (s *Portal) Accruals(ctx context.Context, accountID int64) ([]portal.Accrual, error) {
	rows, err := s.DB.Pool.Query(ctx, `select utility, cycle_start, cycle_end, through, currency, quantity, amount, projected, estimated, updated_at
		from accruals where account_id = $1 order by utility`, accountID)
	if err != nil {
		return nil, fmt.Errorf("accruals of account %d: %w", accountID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (portal.Accrual, error) {
		var a portal.Accrual
		var cs, ce, th time.Time
		var q int64
		var amt, proj pgtype.Numeric
		if err := r.Scan(&a.Utility, &cs, &ce, &th, &a.Currency, &q, &amt, &proj, &a.Estimated, &a.UpdatedAt); err != nil {
			return a, err
		}
		a.CycleStart, a.CycleEnd, a.Through, a.Quantity = dateOf(cs).String(), dateOf(ce).String(), dateOf(th).String(), float64(q)/1000
		var err error
		if a.Amount, err = dec(amt); err != nil {
			return a, err
		}
		a.Projected, err = dec(proj)
		return a, err
	})
}

// AccountMeters lists the meters of an account's service points.
func (s *Portal) AccountMeters(ctx context.Context, accountID int64) ([]portal.Meter, error) {
	rows, err := s.DB.Pool.Query(ctx, `select m.id, m.utility from meters m
		join service_points sp on sp.id = m.service_point_id
		join premises p on p.id = sp.premise_id
		where p.account_id = $1 order by m.id`, accountID)
	if err != nil {
		return nil, fmt.Errorf("meters of account %d: %w", accountID, err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[portal.Meter])
}

// VEEExceptions lists VEE exceptions by meter, rule and channel.
func (s *Portal) VEEExceptions(ctx context.Context, after string, limit int) ([]portal.VEEException, error) {
	var am, ar, ac string
	if after != "" {
		parts := strings.SplitN(after, "|", 3)
		if len(parts) != 3 {
			return nil, apperr.Field("after", "not a cursor from this list")
		}
		am, ar, ac = parts[0], parts[1], parts[2]
	}
	rows, err := s.DB.Pool.Query(ctx, `select meter_id, rule, channel, count, last_at, last_detail from vee_exceptions
		where $1 = '' or (meter_id, rule, channel) > ($2, $3, $4)
		order by meter_id, rule, channel limit $5`, after, am, ar, ac, limit)
	if err != nil {
		return nil, fmt.Errorf("vee exceptions: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[portal.VEEException])
}
