package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meterflow/meterflow/internal/ingest"
	"github.com/meterflow/meterflow/internal/meter"
)

// IngestSink writes the pipeline's billing registers, exceptions and state
// snapshots. Every write is an upsert by key inside one transaction, so a
// replayed batch changes nothing.
type IngestSink struct{ DB *DB }

var _ ingest.RegisterSink = (*IngestSink)(nil)

// WriteRegisters upserts interval consumption and exception counts. Rows go
// through COPY into temporary tables, then one upsert each: far fewer round
// trips than row-by-row statements.
func (s *IngestSink) WriteRegisters(ctx context.Context, b *ingest.Batch) error {
	if len(b.Intervals) == 0 && len(b.Exceptions) == 0 {
		return nil
	}
	return s.DB.InTx(ctx, func(tx pgx.Tx) error {
		if len(b.Intervals) > 0 {
			if err := upsertIntervals(ctx, tx, coalesceIntervals(b.Intervals)); err != nil {
				return err
			}
		}
		if len(b.Exceptions) > 0 {
			if err := upsertExceptions(ctx, tx, b.Exceptions); err != nil {
				return err
			}
		}
		return nil
	})
}

// coalesceIntervals keeps the last value of each key: one batch may update
// the same interval twice, and an upsert may touch a row only once.
func coalesceIntervals(in []ingest.Interval) []ingest.Interval {
	type key struct {
		m string
		c meter.Channel
		t int64
	}
	idx := make(map[key]int, len(in))
	out := make([]ingest.Interval, 0, len(in))
	for _, iv := range in {
		k := key{iv.Meter, iv.Channel, iv.Start.UnixMilli()}
		if i, ok := idx[k]; ok {
			out[i] = iv
			continue
		}
		idx[k] = len(out)
		out = append(out, iv)
	}
	return out
}

func upsertIntervals(ctx context.Context, tx pgx.Tx, ivs []ingest.Interval) error {
	if _, err := tx.Exec(ctx, `create temp table if not exists tmp_interval_usage
		(meter_id text, channel text, start_at timestamptz, quantity bigint, quality smallint) on commit delete rows`); err != nil {
		return fmt.Errorf("temp intervals: %w", err)
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"tmp_interval_usage"},
		[]string{"meter_id", "channel", "start_at", "quantity", "quality"},
		pgx.CopyFromSlice(len(ivs), func(i int) ([]any, error) {
			iv := ivs[i]
			return []any{iv.Meter, string(iv.Channel), iv.Start, int64(iv.Quantity), int16(iv.Quality)}, nil
		}))
	if err != nil {
		return fmt.Errorf("copy intervals: %w", err)
	}
	_, err = tx.Exec(ctx, `insert into interval_usage (meter_id, channel, start_at, quantity, quality)
		select meter_id, channel, start_at, quantity, quality from tmp_interval_usage
		on conflict (meter_id, channel, start_at) do update
		   set quantity = excluded.quantity, quality = excluded.quality, updated_at = now()
		 where (interval_usage.quantity, interval_usage.quality) is distinct from (excluded.quantity, excluded.quality)`)
	if err != nil {
		return fmt.Errorf("upsert intervals: %w", err)
	}
	return nil
}

// upsertExceptions adds rule firings to the per-meter counts. A replayed
// batch would add them again, so counts are "at least": they feed operator
// views and alarms, never money.
func upsertExceptions(ctx context.Context, tx pgx.Tx, es []ingest.Exception) error {
	type key struct {
		m, rule, ch string
	}
	type agg struct {
		n      int64
		last   time.Time
		detail string
	}
	m := map[key]*agg{}
	var order []key
	for _, e := range es {
		k := key{e.Meter, string(e.Rule), string(e.Channel)}
		a := m[k]
		if a == nil {
			a = &agg{}
			m[k] = a
			order = append(order, k)
		}
		a.n++
		if !e.Time.Before(a.last) {
			a.last, a.detail = e.Time, e.Detail
		}
	}
	batch := &pgx.Batch{}
	for _, k := range order {
		a := m[k]
		batch.Queue(`insert into vee_exceptions (meter_id, rule, channel, count, last_at, last_detail)
			values ($1, $2, $3, $4, $5, $6)
			on conflict (meter_id, rule, channel) do update
			   set count = vee_exceptions.count + excluded.count,
			       last_at = greatest(vee_exceptions.last_at, excluded.last_at),
			       last_detail = excluded.last_detail`, k.m, k.rule, k.ch, a.n, a.last, a.detail)
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("upsert exceptions: %w", err)
	}
	return nil
}

// SaveStates upserts state snapshots.
func (s *IngestSink) SaveStates(ctx context.Context, states []ingest.Snapshot) error {
	if len(states) == 0 {
		return nil
	}
	return s.DB.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `create temp table if not exists tmp_meter_state
			(meter_id text, state bytea) on commit delete rows`); err != nil {
			return fmt.Errorf("temp states: %w", err)
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"tmp_meter_state"}, []string{"meter_id", "state"},
			pgx.CopyFromSlice(len(states), func(i int) ([]any, error) {
				return []any{states[i].Meter, states[i].State}, nil
			}))
		if err != nil {
			return fmt.Errorf("copy states: %w", err)
		}
		_, err = tx.Exec(ctx, `insert into meter_state (meter_id, state)
			select meter_id, state from tmp_meter_state
			on conflict (meter_id) do update set state = excluded.state, updated_at = now()`)
		if err != nil {
			return fmt.Errorf("upsert states: %w", err)
		}
		return nil
	})
}

// LoadStates streams every saved state with its meter's utility.
func (s *IngestSink) LoadStates(ctx context.Context, fn func(ingest.Snapshot) error) error {
	rows, err := s.DB.Pool.Query(ctx, `select s.meter_id, m.utility, s.state from meter_state s join meters m on m.id = s.meter_id`)
	if err != nil {
		return fmt.Errorf("load states: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var snap ingest.Snapshot
		var u string
		if err := rows.Scan(&snap.Meter, &u, &snap.State); err != nil {
			return fmt.Errorf("scan state: %w", err)
		}
		snap.Utility = meter.Utility(u)
		if err := fn(snap); err != nil {
			return err
		}
	}
	return rows.Err()
}
