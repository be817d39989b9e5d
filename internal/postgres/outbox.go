package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meterflow/meterflow/internal/outbox"
)

// Outbox is the store of outbox deliveries (migrations/005_outbox_deliveries.sql).
type Outbox struct{ DB *DB }

var _ outbox.Store = (*Outbox)(nil)

// Claim leases up to limit due deliveries of consumer, oldest event first,
// skipping rows another process holds.
func (s *Outbox) Claim(ctx context.Context, consumer string, now time.Time, lease time.Duration, limit int) ([]outbox.Event, error) {
	rows, err := s.DB.Pool.Query(ctx, `
		with due as (
			select consumer, outbox_id from outbox_deliveries
			 where consumer = $1 and done_at is null and not dead and next_at <= $2
			   and (lease_until is null or lease_until <= $2)
			 order by outbox_id
			 limit $4
			 for update skip locked)
		update outbox_deliveries d set lease_until = $3, attempts = d.attempts + 1
		  from due, outbox o
		 where d.consumer = due.consumer and d.outbox_id = due.outbox_id and o.id = d.outbox_id
		returning o.id, o.event_key, o.kind, o.account_id, o.payload, o.occurred_at, d.attempts`,
		consumer, now, now.Add(lease), limit)
	if err != nil {
		return nil, err
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (outbox.Event, error) {
		var e outbox.Event
		var payload []byte
		err := r.Scan(&e.ID, &e.Key, &e.Kind, &e.AccountID, &payload, &e.OccurredAt, &e.Attempt)
		e.Payload = payload
		return e, err
	})
	if err != nil {
		return nil, err
	}
	// UPDATE ... RETURNING does not keep the CTE's order.
	slices.SortFunc(evs, func(a, b outbox.Event) int { return cmp.Compare(a.ID, b.ID) })
	return evs, nil
}

// Done marks deliveries handled.
func (s *Outbox) Done(ctx context.Context, consumer string, outboxIDs []int64, now time.Time) error {
	_, err := s.DB.Pool.Exec(ctx, `update outbox_deliveries set done_at = $3, lease_until = null, last_error = ''
		where consumer = $1 and outbox_id = any($2)`, consumer, outboxIDs, now)
	return err
}

// Retry releases a delivery to be tried again at next, or gives it up.
func (s *Outbox) Retry(ctx context.Context, consumer string, outboxID int64, errText string, next time.Time, dead bool) error {
	if len(errText) > 2000 {
		errText = errText[:2000]
	}
	tag, err := s.DB.Pool.Exec(ctx, `update outbox_deliveries set lease_until = null, next_at = $3, last_error = $4, dead = $5
		where consumer = $1 and outbox_id = $2 and done_at is null`, consumer, outboxID, next, errText, dead)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("delivery of event %d to %s not found", outboxID, consumer)
	}
	return nil
}

// Backlog counts deliveries not yet done per consumer, and dead ones.
func (s *Outbox) Backlog(ctx context.Context) (pending, dead map[string]int, err error) {
	rows, err := s.DB.Pool.Query(ctx, `select consumer, count(*) filter (where not dead), count(*) filter (where dead)
		from outbox_deliveries where done_at is null group by consumer`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	pending, dead = map[string]int{}, map[string]int{}
	for rows.Next() {
		var c string
		var p, d int
		if err := rows.Scan(&c, &p, &d); err != nil {
			return nil, nil, err
		}
		pending[c], dead[c] = p, d
	}
	return pending, dead, rows.Err()
}
