package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/meter"
)

// Meters is the PostgreSQL store of meter identities.
type Meters struct{ DB *DB }

var _ device.Store = (*Meters)(nil)

// CreateMeters inserts meters in one transaction with COPY, so provisioning
// thousands at once is one round trip.
func (s *Meters) CreateMeters(ctx context.Context, ms []device.NewMeter) error {
	if len(ms) == 0 {
		return nil
	}
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"meters"},
			[]string{"id", "utility", "model", "service_point_id", "token_hash"},
			pgx.CopyFromSlice(len(ms), func(i int) ([]any, error) {
				m := ms[i]
				return []any{m.ID, string(m.Utility), m.Model, m.ServicePointID, m.TokenHash}, nil
			}))
		return err
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return &apperr.Error{Code: apperr.Conflict, Field: "id", Message: "a meter with this id exists", Err: err}
		case "23503":
			return &apperr.Error{Code: apperr.NotFound, Field: "service_point_id", Message: "no such service point", Err: err}
		}
	}
	if err != nil {
		return fmt.Errorf("create meters: %w", err)
	}
	return nil
}

// MeterCredential returns what authentication needs of one meter.
func (s *Meters) MeterCredential(ctx context.Context, id string) (device.Credential, error) {
	var c device.Credential
	var utility, status string
	err := s.DB.Pool.QueryRow(ctx, `select id, utility, model, token_hash, status from meters where id = $1`, id).
		Scan(&c.ID, &utility, &c.Model, &c.TokenHash, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, apperr.New(apperr.NotFound, "meter %q not found", id)
	}
	if err != nil {
		return c, fmt.Errorf("meter credential %s: %w", id, err)
	}
	c.Utility, c.Status = meter.Utility(utility), device.Status(status)
	return c, nil
}

// RevokeMeter marks a meter revoked; revoking twice is harmless.
func (s *Meters) RevokeMeter(ctx context.Context, id string, at time.Time) error {
	tag, err := s.DB.Pool.Exec(ctx,
		`update meters set status = 'revoked', revoked_at = coalesce(revoked_at, $2) where id = $1`, id, at)
	if err != nil {
		return fmt.Errorf("revoke meter %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return apperr.New(apperr.NotFound, "meter %q not found", id)
	}
	return nil
}

// ListMeters lists meters in id order after the given id.
func (s *Meters) ListMeters(ctx context.Context, after string, limit int) ([]device.Meter, error) {
	rows, err := s.DB.Pool.Query(ctx,
		`select id, utility, model, service_point_id, status, created_at, revoked_at
		   from meters where id > $1 order by id limit $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list meters: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (device.Meter, error) {
		var m device.Meter
		var utility, status string
		err := r.Scan(&m.ID, &utility, &m.Model, &m.ServicePointID, &status, &m.CreatedAt, &m.RevokedAt)
		m.Utility, m.Status = meter.Utility(utility), device.Status(status)
		return m, err
	})
}
