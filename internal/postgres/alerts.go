package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/meterflow/meterflow/internal/alert"
	"github.com/meterflow/meterflow/internal/apperr"
)

// Alerts is the PostgreSQL store of household alerts, their deliveries and
// preferences, and operator alarms (migrations/006_alerts.sql). It reads
// accounts, bills, accruals, budgets, meters, interval usage, VEE exceptions
// and payments for the rules.
type Alerts struct{ DB *DB }

var _ alert.Store = (*Alerts)(nil)

// Owner returns who an account belongs to.
func (s *Alerts) Owner(ctx context.Context, accountID int64) (alert.Owner, error) {
	o := alert.Owner{AccountID: accountID}
	err := s.DB.Pool.QueryRow(ctx, `select household_id, time_zone from accounts where id = $1`, accountID).Scan(&o.HouseholdID, &o.TimeZone)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, apperr.New(apperr.NotFound, "account %d not found", accountID)
	}
	if err != nil {
		return o, fmt.Errorf("owner of account %d: %w", accountID, err)
	}
	return o, nil
}

// HouseholdZone is the time zone of the household's first account.
func (s *Alerts) HouseholdZone(ctx context.Context, householdID int64) (string, error) {
	var tz string
	err := s.DB.Pool.QueryRow(ctx, `select time_zone from accounts where household_id = $1 order by id limit 1`, householdID).Scan(&tz)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("time zone of household %d: %w", householdID, err)
	}
	return tz, nil
}

// Preferences returns a household's stored choices.
func (s *Alerts) Preferences(ctx context.Context, householdID int64) (alert.Preferences, error) {
	var p alert.Preferences
	var channels []byte
	var start, end *string
	err := s.DB.Pool.QueryRow(ctx, `select channels, to_char(quiet_start, 'HH24:MI'), to_char(quiet_end, 'HH24:MI')
		from alert_preferences where household_id = $1`, householdID).Scan(&channels, &start, &end)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("alert preferences of household %d: %w", householdID, err)
	}
	if err := json.Unmarshal(channels, &p.Channels); err != nil {
		return p, fmt.Errorf("alert preferences of household %d: %w", householdID, err)
	}
	if start != nil && end != nil {
		p.QuietHours = &alert.QuietHours{Start: *start, End: *end}
	}
	return p, nil
}

// SavePreferences replaces a household's choices.
func (s *Alerts) SavePreferences(ctx context.Context, householdID int64, p alert.Preferences, now time.Time) error {
	channels := p.Channels
	if channels == nil {
		channels = map[alert.Kind][]alert.Channel{}
	}
	b, err := json.Marshal(channels)
	if err != nil {
		return err
	}
	var start, end *string
	if q := p.QuietHours; q != nil {
		start, end = &q.Start, &q.End
	}
	_, err = s.DB.Pool.Exec(ctx, `insert into alert_preferences (household_id, channels, quiet_start, quiet_end, updated_at)
		values ($1, $2, $3::time, $4::time, $5)
		on conflict (household_id) do update set channels = excluded.channels, quiet_start = excluded.quiet_start,
			quiet_end = excluded.quiet_end, updated_at = excluded.updated_at`, householdID, b, start, end, now)
	if err != nil {
		return fmt.Errorf("save alert preferences of household %d: %w", householdID, err)
	}
	return nil
}

const alertColumns = `a.id, a.alert_key, a.household_id, coalesce(a.account_id, 0), a.kind, a.title, a.body, a.data, a.created_at, a.read_at`

func scanAlert(row pgx.Row, extra ...any) (alert.Alert, error) {
	var a alert.Alert
	var kind string
	var data []byte
	err := row.Scan(append([]any{&a.ID, &a.Key, &a.HouseholdID, &a.AccountID, &kind, &a.Title, &a.Body, &data, &a.CreatedAt, &a.ReadAt}, extra...)...)
	a.Kind, a.Data = alert.Kind(kind), data
	return a, err
}

// Record inserts an alert and its deliveries unless its key exists.
func (s *Alerts) Record(ctx context.Context, a alert.Alert, ds []alert.Delivery) (int64, bool, error) {
	var id int64
	created := false
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		data := a.Data
		if len(data) == 0 {
			data = json.RawMessage(`{}`)
		}
		err := tx.QueryRow(ctx, `insert into alerts (alert_key, household_id, account_id, kind, title, body, data, created_at)
			values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (alert_key) do nothing returning id`,
			a.Key, a.HouseholdID, nullID(a.AccountID), string(a.Kind), a.Title, a.Body, []byte(data), a.CreatedAt).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return tx.QueryRow(ctx, `select id from alerts where alert_key = $1`, a.Key).Scan(&id)
		}
		if err != nil {
			return err
		}
		created = true
		for _, d := range ds {
			if _, err := tx.Exec(ctx, `insert into alert_deliveries (alert_id, channel, not_before) values ($1, $2, $3)`,
				id, string(d.Channel), d.NotBefore); err != nil {
				return fmt.Errorf("delivery %s: %w", d.Channel, err)
			}
		}
		return nil
	})
	return id, created, err
}

// Inbox lists alerts that went to the inbox, newest first.
func (s *Alerts) Inbox(ctx context.Context, householdID, before int64, limit int) ([]alert.Alert, error) {
	rows, err := s.DB.Pool.Query(ctx, `select `+alertColumns+` from alerts a
		where ($1 = 0 or a.household_id = $1) and ($2 = 0 or a.id < $2)
		  and exists (select 1 from alert_deliveries d where d.alert_id = a.id and d.channel = 'inapp')
		order by a.id desc limit $3`, householdID, before, limit)
	if err != nil {
		return nil, fmt.Errorf("alert inbox: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (alert.Alert, error) { return scanAlert(r) })
}

// Alert returns one alert.
func (s *Alerts) Alert(ctx context.Context, id int64) (alert.Alert, error) {
	a, err := scanAlert(s.DB.Pool.QueryRow(ctx, `select `+alertColumns+` from alerts a where a.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, apperr.New(apperr.NotFound, "alert %d not found", id)
	}
	if err != nil {
		return a, fmt.Errorf("alert %d: %w", id, err)
	}
	return a, nil
}

// MarkRead sets read_at once.
func (s *Alerts) MarkRead(ctx context.Context, id int64, now time.Time) error {
	_, err := s.DB.Pool.Exec(ctx, `update alerts set read_at = $2 where id = $1 and read_at is null`, id, now)
	if err != nil {
		return fmt.Errorf("mark alert %d read: %w", id, err)
	}
	return nil
}

// ClaimDeliveries leases due pending deliveries, oldest alert first,
// skipping rows another sender holds.
func (s *Alerts) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]alert.Delivery, error) {
	rows, err := s.DB.Pool.Query(ctx, `
		with due as (
			select alert_id, channel from alert_deliveries
			 where status = 'pending' and not_before <= $1 and next_at <= $1
			   and (lease_until is null or lease_until <= $1)
			 order by alert_id, channel
			 limit $3
			 for update skip locked)
		update alert_deliveries d set lease_until = $2, attempts = d.attempts + 1
		  from due, alerts a
		 where d.alert_id = due.alert_id and d.channel = due.channel and a.id = d.alert_id
		returning `+alertColumns+`, d.channel, d.not_before, d.attempts, coalesce(d.sms_id, 0)`,
		now, now.Add(lease), limit)
	if err != nil {
		return nil, fmt.Errorf("claim alert deliveries: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (alert.Delivery, error) {
		var d alert.Delivery
		var ch string
		var err error
		d.Alert, err = scanAlert(r, &ch, &d.NotBefore, &d.Attempt, &d.SMSID)
		d.Channel = alert.Channel(ch)
		return d, err
	})
}

// DeliveryDone ends a pending delivery.
func (s *Alerts) DeliveryDone(ctx context.Context, alertID int64, c alert.Channel, status, errText string, now time.Time) error {
	_, err := s.DB.Pool.Exec(ctx, `update alert_deliveries set status = $3, last_error = $4, lease_until = null,
		sent_at = case when $3 = 'sent' then $5::timestamptz end
		where alert_id = $1 and channel = $2 and status = 'pending'`, alertID, string(c), status, clip(errText), now)
	if err != nil {
		return fmt.Errorf("end delivery: %w", err)
	}
	return nil
}

// DeliveryRetry releases a pending delivery until next.
func (s *Alerts) DeliveryRetry(ctx context.Context, alertID int64, c alert.Channel, errText string, next time.Time) error {
	_, err := s.DB.Pool.Exec(ctx, `update alert_deliveries set lease_until = null, next_at = $3, last_error = $4
		where alert_id = $1 and channel = $2 and status = 'pending'`, alertID, string(c), next, clip(errText))
	if err != nil {
		return fmt.Errorf("release delivery: %w", err)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 2000 {
		return s[:2000]
	}
	return s
}

// VerifiedPhone is the household's most recently verified phone, or "".
func (s *Alerts) VerifiedPhone(ctx context.Context, householdID int64) (string, error) {
	var e164 string
	err := s.DB.Pool.QueryRow(ctx, `select e164 from household_phones where household_id = $1 and verified_at is not null
		order by verified_at desc, id desc limit 1`, householdID).Scan(&e164)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("phone of household %d: %w", householdID, err)
	}
	return e164, nil
}

// QueueSMS records an SMS notice and ties it to the alert's delivery.
func (s *Alerts) QueueSMS(ctx context.Context, alertID, householdID int64, to, body, provider string, now time.Time) (int64, error) {
	var id int64
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `insert into sms_messages (household_id, to_e164, purpose, body, provider, created_at, updated_at)
			values ($1, $2, 'notice', $3, $4, $5, $5) returning id`, householdID, to, body, provider, now).Scan(&id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `update alert_deliveries set sms_id = $2 where alert_id = $1 and channel = 'sms'`, alertID, id)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("queue sms of alert %d: %w", alertID, err)
	}
	return id, nil
}

// SMSStatus returns a message's status.
func (s *Alerts) SMSStatus(ctx context.Context, smsID int64) (string, error) {
	var st string
	if err := s.DB.Pool.QueryRow(ctx, `select status from sms_messages where id = $1`, smsID).Scan(&st); err != nil {
		return "", fmt.Errorf("sms %d: %w", smsID, err)
	}
	return st, nil
}

// SMSResult records the sender's answer for a message.
func (s *Alerts) SMSResult(ctx context.Context, smsID int64, providerID string, sendErr error, now time.Time) error {
	return (&Payments{DB: s.DB}).SMSResult(ctx, smsID, providerID, sendErr, now)
}

// Projections lists budgets with the projection of the running cycle.
func (s *Alerts) Projections(ctx context.Context) ([]alert.Projection, error) {
	rows, err := s.DB.Pool.Query(ctx, `
		select b.account_id, a.household_id, a.time_zone, b.scope, b.amount, sum(ac.projected), a.currency, min(ac.cycle_start)::text
		  from budgets b
		  join accounts a on a.id = b.account_id
		  join accruals ac on ac.account_id = b.account_id and (b.scope = 'account' or ac.utility = b.scope)
		 group by b.account_id, a.household_id, a.time_zone, b.scope, b.amount, a.currency
		 order by b.account_id, b.scope`)
	if err != nil {
		return nil, fmt.Errorf("budget projections: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (alert.Projection, error) {
		var p alert.Projection
		var budget, projected pgtype.Numeric
		if err := r.Scan(&p.AccountID, &p.HouseholdID, &p.TimeZone, &p.Scope, &budget, &projected, &p.Currency, &p.CycleStart); err != nil {
			return p, err
		}
		var err error
		if p.Budget, err = dec(budget); err != nil {
			return p, err
		}
		p.Projected, err = dec(projected)
		return p, err
	})
}

// UnpaidBills lists issued bills due on or after since.
func (s *Alerts) UnpaidBills(ctx context.Context, since time.Time) ([]alert.DueBill, error) {
	rows, err := s.DB.Pool.Query(ctx, `select b.id, b.account_id, b.household_id, a.time_zone, b.due_date, b.total::text, b.currency
		from bills b join accounts a on a.id = b.account_id
		where b.status = 'issued' and b.due_date >= $1::date order by b.id`, since)
	if err != nil {
		return nil, fmt.Errorf("unpaid bills: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (alert.DueBill, error) {
		var b alert.DueBill
		var due pgtype.Date
		err := r.Scan(&b.BillID, &b.AccountID, &b.HouseholdID, &b.TimeZone, &due, &b.Total, &b.Currency)
		b.DueDate = due.Time
		return b, err
	})
}

// Meters lists active meters with their owner (zero when the meter is on no
// account) and the time of their last saved ingest state.
func (s *Alerts) Meters(ctx context.Context, after string, limit int) ([]alert.Meter, error) {
	rows, err := s.DB.Pool.Query(ctx, `
		select m.id, m.utility, m.interval_seconds, coalesce(a.id, 0), coalesce(a.household_id, 0), coalesce(a.time_zone, ''), st.updated_at
		  from meters m
		  left join service_points sp on sp.id = m.service_point_id
		  left join premises p on p.id = sp.premise_id
		  left join accounts a on a.id = p.account_id
		  left join meter_state st on st.meter_id = m.id
		 where m.status = 'active' and m.id > $1
		 order by m.id limit $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("meters: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (alert.Meter, error) {
		var m alert.Meter
		var seen *time.Time
		err := r.Scan(&m.ID, &m.Utility, &m.IntervalSeconds, &m.AccountID, &m.HouseholdID, &m.TimeZone, &seen)
		m.LastSeen = derefTime(seen)
		return m, err
	})
}

// UsageSums sums a meter's channel over each window.
func (s *Alerts) UsageSums(ctx context.Context, meterID, channel string, windows [][2]time.Time) ([]int64, []bool, error) {
	from, to := make([]time.Time, len(windows)), make([]time.Time, len(windows))
	for i, w := range windows {
		from[i], to[i] = w[0], w[1]
	}
	rows, err := s.DB.Pool.Query(ctx, `
		select coalesce(sum(u.quantity), 0)::bigint, count(u.start_at) > 0
		  from unnest($3::timestamptz[], $4::timestamptz[]) with ordinality w(f, t, i)
		  left join interval_usage u on u.meter_id = $1 and u.channel = $2 and u.start_at >= w.f and u.start_at < w.t
		 group by w.i order by w.i`, meterID, channel, from, to)
	if err != nil {
		return nil, nil, fmt.Errorf("usage of %s: %w", meterID, err)
	}
	defer rows.Close()
	var sums []int64
	var present []bool
	for rows.Next() {
		var n int64
		var p bool
		if err := rows.Scan(&n, &p); err != nil {
			return nil, nil, err
		}
		sums, present = append(sums, n), append(present, p)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("usage of %s: %w", meterID, err)
	}
	if len(sums) != len(windows) {
		return nil, nil, fmt.Errorf("usage of %s: %d sums for %d windows", meterID, len(sums), len(windows))
	}
	return sums, present, nil
}

// Intervals returns a meter's channel quantities by interval start.
func (s *Alerts) Intervals(ctx context.Context, meterID, channel string, from, to time.Time) (map[int64]int64, error) {
	rows, err := s.DB.Pool.Query(ctx, `select start_at, quantity from interval_usage
		where meter_id = $1 and channel = $2 and start_at >= $3 and start_at < $4`, meterID, channel, from, to)
	if err != nil {
		return nil, fmt.Errorf("intervals of %s: %w", meterID, err)
	}
	defer rows.Close()
	out := map[int64]int64{}
	for rows.Next() {
		var t time.Time
		var q int64
		if err := rows.Scan(&t, &q); err != nil {
			return nil, err
		}
		out[t.Unix()] = q
	}
	return out, rows.Err()
}

// RaiseAlarm opens an alarm for c, or refreshes the open one.
func (s *Alerts) RaiseAlarm(ctx context.Context, c alert.Condition, at time.Time) (bool, error) {
	raised := false
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `update alarms set message = $3, last_seen_at = $4
			where kind = $1 and subject = $2 and state <> 'cleared'`, c.Kind, c.Subject, c.Message, at)
		if err != nil || tag.RowsAffected() > 0 {
			return err
		}
		since := at
		if !c.Since.IsZero() && c.Since.Before(at) {
			since = c.Since
		}
		var id int64
		err = tx.QueryRow(ctx, `insert into alarms (kind, subject, message, raised_at, last_seen_at) values ($1, $2, $3, $4, $5)
			on conflict (kind, subject) where state <> 'cleared' do nothing returning id`, c.Kind, c.Subject, c.Message, since, at).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // raised by another process a moment ago
		}
		if err != nil {
			return err
		}
		raised = true
		_, err = tx.Exec(ctx, `insert into alarm_events (alarm_id, state, at, note) values ($1, 'active', $2, $3)`, id, since, c.Message)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("raise alarm %s %s: %w", c.Kind, c.Subject, err)
	}
	return raised, nil
}

// ClearAlarms clears open alarms of kind whose subject is not in keep
// (among scope, when scope is not nil), with a history event each.
func (s *Alerts) ClearAlarms(ctx context.Context, kind string, keep, scope []string, at time.Time) (int, error) {
	if keep == nil {
		keep = []string{}
	}
	tag, err := s.DB.Pool.Exec(ctx, `
		with cleared as (
			update alarms set state = 'cleared', cleared_at = $4
			 where kind = $1 and state <> 'cleared' and subject <> all($2::text[])
			   and ($3::text[] is null or subject = any($3::text[]))
			returning id)
		insert into alarm_events (alarm_id, state, at) select id, 'cleared', $4 from cleared`, kind, keep, scope, at)
	if err != nil {
		return 0, fmt.Errorf("clear %s alarms: %w", kind, err)
	}
	return int(tag.RowsAffected()), nil
}

const alarmColumns = `id, kind, subject, state, message, raised_at, last_seen_at, acknowledged_at, coalesce(acknowledged_by, 0), cleared_at`

func scanAlarm(row pgx.Row) (alert.Alarm, error) {
	var a alert.Alarm
	var state string
	err := row.Scan(&a.ID, &a.Kind, &a.Subject, &state, &a.Message, &a.RaisedAt, &a.LastSeenAt, &a.AcknowledgedAt, &a.AcknowledgedBy, &a.ClearedAt)
	a.State = alert.AlarmState(state)
	return a, err
}

// Alarms lists alarms, newest first, each with its history.
func (s *Alerts) Alarms(ctx context.Context, state alert.AlarmState, before int64, limit int) ([]alert.Alarm, error) {
	rows, err := s.DB.Pool.Query(ctx, `select `+alarmColumns+` from alarms
		where ($1 = '' or state = $1) and ($2 = 0 or id < $2) order by id desc limit $3`, string(state), before, limit)
	if err != nil {
		return nil, fmt.Errorf("alarms: %w", err)
	}
	as, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (alert.Alarm, error) { return scanAlarm(r) })
	if err != nil || len(as) == 0 {
		return as, err
	}
	ids := make([]int64, len(as))
	at := map[int64]int{}
	for i, a := range as {
		ids[i], at[a.ID] = a.ID, i
	}
	hist, err := s.alarmEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	for id, evs := range hist {
		as[at[id]].History = evs
	}
	return as, nil
}

func (s *Alerts) alarmEvents(ctx context.Context, ids []int64) (map[int64][]alert.AlarmEvent, error) {
	rows, err := s.DB.Pool.Query(ctx, `select alarm_id, state, at, coalesce(user_id, 0), note from alarm_events
		where alarm_id = any($1) order by id`, ids)
	if err != nil {
		return nil, fmt.Errorf("alarm history: %w", err)
	}
	defer rows.Close()
	out := map[int64][]alert.AlarmEvent{}
	for rows.Next() {
		var id int64
		var e alert.AlarmEvent
		var st string
		if err := rows.Scan(&id, &st, &e.At, &e.UserID, &e.Note); err != nil {
			return nil, err
		}
		e.State = alert.AlarmState(st)
		out[id] = append(out[id], e)
	}
	return out, rows.Err()
}

// Alarm returns one alarm with its history.
func (s *Alerts) Alarm(ctx context.Context, id int64) (alert.Alarm, error) {
	a, err := scanAlarm(s.DB.Pool.QueryRow(ctx, `select `+alarmColumns+` from alarms where id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, apperr.New(apperr.NotFound, "alarm %d not found", id)
	}
	if err != nil {
		return a, fmt.Errorf("alarm %d: %w", id, err)
	}
	hist, err := s.alarmEvents(ctx, []int64{id})
	a.History = hist[id]
	return a, err
}

// AckAlarm moves an active alarm to acknowledged.
func (s *Alerts) AckAlarm(ctx context.Context, id, userID int64, note string, at time.Time) (alert.Alarm, error) {
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		var state string
		err := tx.QueryRow(ctx, `select state from alarms where id = $1 for update`, id).Scan(&state)
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.New(apperr.NotFound, "alarm %d not found", id)
		}
		if err != nil {
			return err
		}
		if state != string(alert.AlarmActive) {
			return apperr.New(apperr.Conflict, "alarm %d is %s; only an active alarm is acknowledged", id, state)
		}
		if _, err := tx.Exec(ctx, `update alarms set state = 'acknowledged', acknowledged_at = $2, acknowledged_by = $3 where id = $1`,
			id, at, nullID(userID)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `insert into alarm_events (alarm_id, state, at, user_id, note) values ($1, 'acknowledged', $2, $3, $4)`,
			id, at, nullID(userID), note)
		return err
	})
	if err != nil {
		return alert.Alarm{}, err
	}
	return s.Alarm(ctx, id)
}

// VEEDeltas measures VEE exceptions since each meter's mark, for marks at
// least window old, and moves those marks to now.
func (s *Alerts) VEEDeltas(ctx context.Context, now time.Time, window time.Duration) ([]alert.VEEDelta, error) {
	var out []alert.VEEDelta
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			with totals as (select meter_id, sum(count)::bigint as total from vee_exceptions group by meter_id)
			select t.meter_id, t.total, mk.total, mk.at
			  from totals t left join vee_exception_marks mk on mk.meter_id = t.meter_id
			 where mk.at is null or mk.at <= $1`, now.Add(-window))
		if err != nil {
			return err
		}
		var ids []string
		var totals []int64
		for rows.Next() {
			var id string
			var total int64
			var prev *int64
			var at *time.Time
			if err := rows.Scan(&id, &total, &prev, &at); err != nil {
				rows.Close()
				return err
			}
			ids, totals = append(ids, id), append(totals, total)
			if prev != nil && at != nil {
				out = append(out, alert.VEEDelta{MeterID: id, Delta: max(0, total-*prev), Span: now.Sub(*at)})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `insert into vee_exception_marks (meter_id, total, at)
			select u.m, u.t, $3::timestamptz from unnest($1::text[], $2::bigint[]) u(m, t)
			on conflict (meter_id) do update set total = excluded.total, at = excluded.at`, ids, totals, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("vee exception rates: %w", err)
	}
	return out, nil
}

// PaymentOutcomes counts payments settled in [since, until) by outcome.
func (s *Alerts) PaymentOutcomes(ctx context.Context, since, until time.Time) (int, int, error) {
	var ok, failed int
	err := s.DB.Pool.QueryRow(ctx, `select count(*) filter (where state = 'succeeded'), count(*) filter (where state = 'failed')
		from payments where state in ('succeeded', 'failed') and settled_at >= $1 and settled_at < $2`, since, until).Scan(&ok, &failed)
	if err != nil {
		return 0, 0, fmt.Errorf("payment outcomes: %w", err)
	}
	return ok, failed, nil
}
