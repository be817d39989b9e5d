package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/ledger"
	"github.com/meterflow/meterflow/internal/otp"
	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/phone"
	"github.com/meterflow/meterflow/internal/tariff"
)

// Payments is the PostgreSQL store of payments, one-time passwords, SMS
// messages and the ledger (schema in migrations/003_payments.sql).
type Payments struct{ DB *DB }

var _ payment.Store = (*Payments)(nil)

const paymentColumns = `p.id, p.household_id, p.account_id, coalesce(p.bill_id, 0), coalesce(p.autopay_rule_id, 0), p.kind,
	p.amount, p.currency, p.payee, p.payment_method_id, m.token, p.state, p.idempotency_key, p.gateway,
	p.gateway_charge_id, p.gateway_status, p.attempts, p.failure_reason, p.confirm_by, p.lease_until,
	p.created_at, p.updated_at, p.otp_sent_at, p.confirmed_at, p.charging_at, p.settled_at, p.requires_otp, p.fee`

func scanPayment(row pgx.Row) (payment.Payment, error) {
	var p payment.Payment
	var amount, fee pgtype.Numeric
	var kind, state string
	var lease, sent, confirmed, charging, settled *time.Time
	err := row.Scan(&p.ID, &p.HouseholdID, &p.AccountID, &p.BillID, &p.AutoPayRuleID, &kind,
		&amount, &p.Currency, &p.Payee, &p.PaymentMethodID, &p.MethodToken, &state, &p.IdempotencyKey, &p.Gateway,
		&p.GatewayChargeID, &p.GatewayStatus, &p.Attempts, &p.FailureReason, &p.ConfirmBy, &lease,
		&p.CreatedAt, &p.UpdatedAt, &sent, &confirmed, &charging, &settled, &p.RequiresOTP, &fee)
	if err != nil {
		return p, err
	}
	p.Kind, p.State = payment.Kind(kind), payment.State(state)
	if p.Amount, err = dec(amount); err != nil {
		return p, err
	}
	if p.Fee, err = dec(fee); err != nil {
		return p, err
	}
	p.LeaseUntil, p.OTPSentAt, p.ConfirmedAt = derefTime(lease), derefTime(sent), derefTime(confirmed)
	p.ChargingAt, p.SettledAt = derefTime(charging), derefTime(settled)
	return p, nil
}

// isUniqueViolation reports whether err violates the named unique index.
func isUniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == constraint
}

func nullID(id int64) *int64 {
	if id == 0 {
		return nil
	}
	return &id
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// CreatePayment inserts p unless its idempotency key is taken, and returns
// the stored payment.
func (s *Payments) CreatePayment(ctx context.Context, p payment.Payment) (payment.Payment, bool, error) {
	var id int64
	err := s.DB.Pool.QueryRow(ctx, `
		insert into payments (household_id, account_id, bill_id, autopay_rule_id, kind, amount, currency, payee,
		                      payment_method_id, state, idempotency_key, gateway, confirm_by, created_at, updated_at, requires_otp)
		select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15
		  from payment_methods m
		 where m.id = $9 and m.household_id = $1 and m.disabled_at is null
		on conflict (idempotency_key) do nothing
		returning id`,
		p.HouseholdID, p.AccountID, nullID(p.BillID), nullID(p.AutoPayRuleID), string(p.Kind), num(p.Amount), p.Currency, p.Payee,
		p.PaymentMethodID, string(p.State), p.IdempotencyKey, p.Gateway, p.ConfirmBy, p.CreatedAt, p.RequiresOTP).Scan(&id)
	created := err == nil
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.DB.Pool.QueryRow(ctx, `select id from payments where idempotency_key = $1`, p.IdempotencyKey).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return payment.Payment{}, false, apperr.Field("payment_method_id", "no usable payment method %d for household %d", p.PaymentMethodID, p.HouseholdID)
		}
	}
	if err != nil {
		if isUniqueViolation(err, "payments_one_live_per_bill") {
			return payment.Payment{}, false, apperr.New(apperr.Conflict, "bill %d already has a payment in progress", p.BillID)
		}
		return payment.Payment{}, false, fmt.Errorf("insert payment: %w", err)
	}
	got, err := s.Payment(ctx, id)
	return got, created, err
}

// Payment returns one payment.
func (s *Payments) Payment(ctx context.Context, id int64) (payment.Payment, error) {
	p, err := scanPayment(s.DB.Pool.QueryRow(ctx, `select `+paymentColumns+`
		from payments p join payment_methods m on m.id = p.payment_method_id where p.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, apperr.New(apperr.NotFound, "payment %d not found", id)
	}
	if err != nil {
		return p, fmt.Errorf("payment %d: %w", id, err)
	}
	return p, nil
}

// Update locks the payment row, runs fn and saves what it changed.
func (s *Payments) Update(ctx context.Context, id int64, fn func(payment.Tx, *payment.Payment) error) error {
	return s.DB.InTx(ctx, func(tx pgx.Tx) error {
		p, err := scanPayment(tx.QueryRow(ctx, `select `+paymentColumns+`
			from payments p join payment_methods m on m.id = p.payment_method_id where p.id = $1 for update of p`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.New(apperr.NotFound, "payment %d not found", id)
		}
		if err != nil {
			return fmt.Errorf("lock payment %d: %w", id, err)
		}
		before := p
		if err := fn(&paymentTx{tx: tx}, &p); err != nil {
			return err
		}
		if p == before {
			return nil
		}
		_, err = tx.Exec(ctx, `update payments set state = $2, gateway = $3, gateway_charge_id = $4, gateway_status = $5,
			attempts = $6, failure_reason = $7, lease_until = $8, updated_at = $9, otp_sent_at = $10, confirmed_at = $11,
			charging_at = $12, settled_at = $13, fee = $14 where id = $1`,
			p.ID, string(p.State), p.Gateway, p.GatewayChargeID, p.GatewayStatus, p.Attempts, p.FailureReason,
			nullTime(p.LeaseUntil), p.UpdatedAt, nullTime(p.OTPSentAt), nullTime(p.ConfirmedAt), nullTime(p.ChargingAt), nullTime(p.SettledAt), num(p.Fee))
		if err != nil {
			return fmt.Errorf("save payment %d: %w", id, err)
		}
		if p.State != before.State {
			return paymentEvent(ctx, tx, &p)
		}
		return nil
	})
}

// paymentEvent writes the outbox event of p's move into its state, in the
// transaction that saves the move. Its key is unique per payment and kind.
func paymentEvent(ctx context.Context, tx pgx.Tx, p *payment.Payment) error {
	kind := payment.EventKind(p.State)
	if kind == "" {
		return nil
	}
	payload, err := json.Marshal(map[string]any{
		"payment_id": p.ID, "household_id": p.HouseholdID, "account_id": p.AccountID, "bill_id": p.BillID,
		"kind": p.Kind, "amount": tariff.FormatMoney(p.Amount, p.Currency), "currency": p.Currency, "payee": p.Payee,
		"state": p.State, "failure_reason": p.FailureReason, "confirm_by": p.ConfirmBy,
	})
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `insert into outbox (event_key, kind, account_id, payload, occurred_at)
		values ($1, $2, $3, $4, $5) on conflict (event_key) do nothing`,
		fmt.Sprintf("%s:%d", kind, p.ID), kind, p.AccountID, payload, p.UpdatedAt)
	if err != nil {
		return fmt.Errorf("outbox event of payment %d: %w", p.ID, err)
	}
	return nil
}

// DuePending lists unconfirmed payments past their deadline.
func (s *Payments) DuePending(ctx context.Context, now time.Time, limit int) ([]int64, error) {
	return s.ids(ctx, `select id from payments where state in ('created', 'otp_sent') and confirm_by <= $1 order by confirm_by limit $2`, now, limit)
}

// DueCharges lists confirmed payments and charging ones whose lease is over.
func (s *Payments) DueCharges(ctx context.Context, now time.Time, limit int) ([]int64, error) {
	return s.ids(ctx, `select id from payments where state = 'confirmed' or (state = 'charging' and lease_until <= $1)
		order by id limit $2`, now, limit)
}

func (s *Payments) ids(ctx context.Context, q string, args ...any) ([]int64, error) {
	rows, err := s.DB.Pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list payments: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// SMSResult records the sender's answer for a message. A send accepted
// with a provider id also applies the delivery report that came before it,
// if one was kept by SMSEarlyDelivery and has not expired: its final status
// (delivered, undelivered, failed) replaces "sent"; a kept "sent" changes
// nothing. SMSResult and SMSEarlyDelivery take turns on the provider id
// (lockSMSReport), so a report is either kept before the id is recorded,
// and applied here, or finds the message after.
func (s *Payments) SMSResult(ctx context.Context, id int64, providerID string, sendErr error, now time.Time) error {
	if sendErr != nil || providerID == "" {
		status, msg := "sent", ""
		if sendErr != nil {
			status, msg = "failed", sendErr.Error()
		}
		_, err := s.DB.Pool.Exec(ctx, `update sms_messages set status = $2, provider_id = $3, error = $4,
			attempts = attempts + 1, updated_at = $5 where id = $1`, id, status, providerID, msg, now)
		if err != nil {
			return fmt.Errorf("record sms %d: %w", id, err)
		}
		return nil
	}
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		var provider string
		err := tx.QueryRow(ctx, `select provider from sms_messages where id = $1 for update`, id).Scan(&provider)
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.New(apperr.NotFound, "no sms message %d", id)
		}
		if err != nil {
			return err
		}
		if err := lockSMSReport(ctx, tx, provider, providerID); err != nil {
			return err
		}
		// The same send recorded again (its reports may have moved it on
		// already) keeps its status; a new send starts again at "sent".
		if _, err := tx.Exec(ctx, `update sms_messages set
			status = case when provider_id = $2 and status <> 'queued' then status else 'sent' end,
			error = case when provider_id = $2 and status <> 'queued' then error else '' end,
			provider_id = $2, attempts = attempts + 1, updated_at = $3 where id = $1`, id, providerID, now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			with r as (
				delete from sms_early_reports where provider = $2 and provider_id = $3
				returning status, error, expires_at
			)
			update sms_messages s set status = r.status, error = r.error
			  from r
			 where s.id = $1 and s.status = 'sent' and r.expires_at > $4 and r.status <> 'sent'`, id, provider, providerID, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("record sms %d: %w", id, err)
	}
	return nil
}

// lockSMSReport takes the transaction's advisory lock on one provider id.
func lockSMSReport(ctx context.Context, tx pgx.Tx, provider, providerID string) error {
	_, err := tx.Exec(ctx, `select pg_advisory_xact_lock(hashtextextended('sms:' || $1 || ':' || $2, 0))`, provider, providerID)
	return err
}

// lockSMSEarlyReports is the advisory lock under which a new report is
// counted against the limit and kept.
const lockSMSEarlyReports = `select pg_advisory_xact_lock(hashtextextended('sms-early-reports', 0))`

// deliveryStatus checks a reported status.
func deliveryStatus(status string) error {
	switch status {
	case "sent", "delivered", "failed", "undelivered":
		return nil
	}
	return apperr.Field("status", "unknown delivery status %q", status)
}

// applySMSDelivery records a report on the message with the provider id,
// if there is one, and says whether there is. Statuses only move forward:
// queued, then sent, then one final status. (The update runs whether or not
// the select reads it: PostgreSQL always completes data-modifying WITH
// statements.)
func applySMSDelivery(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, provider, providerID, status, errText string, now time.Time) (bool, error) {
	var found int
	err := q.QueryRow(ctx, `
		with m as (
			select id, status from sms_messages where provider = $1 and provider_id = $2 for update
		), u as (
			update sms_messages s set status = $3, error = $4, updated_at = $5
			  from m
			 where s.id = m.id and (m.status = 'queued' or (m.status = 'sent' and $3 <> 'sent'))
			returning s.id
		)
		select count(*) from m`,
		provider, providerID, status, errText, now).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("record delivery of %s: %w", providerID, err)
	}
	return found > 0, nil
}

// SMSDelivery records a provider's delivery report for a message. Statuses
// only move forward: queued, then sent, then one of delivered, undelivered
// and failed, which is final. A report that would move a message backwards
// or sideways (a late "sent" after "delivered", or a second final status)
// changes nothing and is not an error, since providers do not promise to
// report in order; a repeated report is a no-op. A report of a message not
// known (yet) is an apperr not_found error: see SMSEarlyDelivery.
func (s *Payments) SMSDelivery(ctx context.Context, provider, providerID, status, errText string, now time.Time) error {
	if err := deliveryStatus(status); err != nil {
		return err
	}
	found, err := applySMSDelivery(ctx, s.DB.Pool, provider, providerID, status, errText, now)
	if err != nil {
		return err
	}
	if !found {
		return apperr.New(apperr.NotFound, "no message %s from %s", providerID, provider)
	}
	return nil
}

// SMSEarlyDelivery takes a delivery report that SMSDelivery found no
// message for. If the send result with this provider id has been recorded
// meanwhile, the report is recorded as by SMSDelivery. Otherwise it is kept
// in sms_early_reports until keepUntil, for SMSResult to apply: a second
// report of the same id is merged into the kept one by the same rule
// (forward only), and the first keepUntil stands. Expired reports are
// deleted here. With maxKept reports (of other ids) kept already, nothing
// is kept and the error is apperr rate_limited.
func (s *Payments) SMSEarlyDelivery(ctx context.Context, provider, providerID, status, errText string, now, keepUntil time.Time, maxKept int) error {
	if err := deliveryStatus(status); err != nil {
		return err
	}
	var full bool
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		if err := lockSMSReport(ctx, tx, provider, providerID); err != nil {
			return err
		}
		found, err := applySMSDelivery(ctx, tx, provider, providerID, status, errText, now)
		if err != nil || found {
			return err
		}
		tag, err := tx.Exec(ctx, `
			update sms_early_reports set status = $3, error = $4, received_at = $5
			 where provider = $1 and provider_id = $2 and expires_at > $5
			   and (status = 'sent' and $3 <> 'sent')`, provider, providerID, status, errText, now)
		if err != nil {
			return fmt.Errorf("merge early report of %s: %w", providerID, err)
		}
		if tag.RowsAffected() > 0 {
			return nil
		}
		var kept bool
		if err := tx.QueryRow(ctx, `select exists (select 1 from sms_early_reports
			where provider = $1 and provider_id = $2 and expires_at > $3)`, provider, providerID, now).Scan(&kept); err != nil {
			return fmt.Errorf("early report of %s: %w", providerID, err)
		}
		if kept {
			return nil // a report as far along or further is kept already
		}
		if _, err := tx.Exec(ctx, lockSMSEarlyReports); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `delete from sms_early_reports where expires_at <= $1`, now); err != nil {
			return fmt.Errorf("delete expired early reports: %w", err)
		}
		var n int
		if err := tx.QueryRow(ctx, `select count(*) from sms_early_reports`).Scan(&n); err != nil {
			return fmt.Errorf("count early reports: %w", err)
		}
		if n >= maxKept {
			full = true
			return nil
		}
		_, err = tx.Exec(ctx, `insert into sms_early_reports (provider, provider_id, status, error, received_at, expires_at)
			values ($1, $2, $3, $4, $5, $6)`, provider, providerID, status, errText, now, keepUntil)
		if err != nil {
			return fmt.Errorf("keep early report of %s: %w", providerID, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if full {
		return apperr.New(apperr.RateLimited, "%d reports of unknown messages are kept already", maxKept)
	}
	return nil
}

// paymentTx is payment.Tx over one transaction.
type paymentTx struct{ tx pgx.Tx }

var _ payment.Tx = (*paymentTx)(nil)

func (t *paymentTx) VerifiedPhone(ctx context.Context, householdID int64) (string, error) {
	var e164 string
	err := t.tx.QueryRow(ctx, `select e164 from household_phones where household_id = $1 and verified_at is not null
		order by verified_at desc, id desc limit 1`, householdID).Scan(&e164)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("phone of household %d: %w", householdID, err)
	}
	return e164, nil
}

func (t *paymentTx) OTPCode(ctx context.Context, paymentID int64) (*otp.Code, error) {
	var c otp.Code
	var used *time.Time
	err := t.tx.QueryRow(ctx, `select id, mac, key_id, expires_at, attempts, sends, last_sent_at, used_at, created_at
		from otp_codes where payment_id = $1 for update`, paymentID).
		Scan(&c.ID, &c.MAC, &c.KeyID, &c.ExpiresAt, &c.Attempts, &c.Sends, &c.LastSentAt, &used, &c.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("code of payment %d: %w", paymentID, err)
	}
	c.UsedAt = derefTime(used)
	return &c, nil
}

func (t *paymentTx) SaveOTPCode(ctx context.Context, paymentID int64, c *otp.Code) error {
	err := t.tx.QueryRow(ctx, `insert into otp_codes (household_id, purpose, payment_id, mac, key_id, expires_at, attempts,
			sends, last_sent_at, used_at, created_at)
		values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		on conflict (payment_id) where payment_id is not null do update set mac = excluded.mac, key_id = excluded.key_id,
			expires_at = excluded.expires_at, attempts = excluded.attempts, sends = excluded.sends,
			last_sent_at = excluded.last_sent_at, used_at = excluded.used_at
		returning id`,
		c.Binding.HouseholdID, string(otp.PaymentConfirm), paymentID, c.MAC, c.KeyID, c.ExpiresAt, c.Attempts, c.Sends,
		c.LastSentAt, nullTime(c.UsedAt), c.CreatedAt).Scan(&c.ID)
	if err != nil {
		return fmt.Errorf("save code of payment %d: %w", paymentID, err)
	}
	return nil
}

func (t *paymentTx) LockOTPFailures(ctx context.Context, householdID int64, day time.Time) (int, error) {
	if _, err := t.tx.Exec(ctx, `insert into otp_failures (household_id, day) values ($1, $2) on conflict do nothing`,
		householdID, day); err != nil {
		return 0, fmt.Errorf("otp failures of household %d: %w", householdID, err)
	}
	var n int
	if err := t.tx.QueryRow(ctx, `select failures from otp_failures where household_id = $1 and day = $2 for update`,
		householdID, day).Scan(&n); err != nil {
		return 0, fmt.Errorf("otp failures of household %d: %w", householdID, err)
	}
	return n, nil
}

func (t *paymentTx) SetOTPFailures(ctx context.Context, householdID int64, day time.Time, failures int, locked bool, now time.Time) error {
	_, err := t.tx.Exec(ctx, `update otp_failures set failures = $3,
		locked_at = case when $4 then coalesce(locked_at, $5) end where household_id = $1 and day = $2`,
		householdID, day, failures, locked, now)
	if err != nil {
		return fmt.Errorf("otp failures of household %d: %w", householdID, err)
	}
	return nil
}

func (t *paymentTx) QueueSMS(ctx context.Context, m payment.SMS, now time.Time) (int64, error) {
	var id int64
	err := t.tx.QueryRow(ctx, `insert into sms_messages (household_id, to_e164, purpose, payment_id, body, provider, created_at, updated_at)
		values ($1, $2, $3, $4, $5, $6, $7, $7) returning id`,
		nullID(m.HouseholdID), m.To, m.Purpose, nullID(m.PaymentID), m.Body, m.Provider, now).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("queue sms: %w", err)
	}
	return id, nil
}

func (t *paymentTx) PostEntry(ctx context.Context, e ledger.Entry) (bool, error) {
	return postEntry(ctx, t.tx, e)
}

func (t *paymentTx) MarkBillPaid(ctx context.Context, billID int64) error {
	_, err := t.tx.Exec(ctx, `update bills set status = 'paid' where id = $1 and status in ('issued', 'overdue')`, billID)
	if err != nil {
		return fmt.Errorf("mark bill %d paid: %w", billID, err)
	}
	return nil
}

func (t *paymentTx) AddPrepaid(ctx context.Context, accountID int64, amount decimal.Decimal, now time.Time) error {
	_, err := t.tx.Exec(ctx, `insert into prepaid_balances (account_id, balance, updated_at) values ($1, $2, $3)
		on conflict (account_id) do update set balance = prepaid_balances.balance + excluded.balance, updated_at = excluded.updated_at`,
		accountID, num(amount), now)
	if err != nil {
		return fmt.Errorf("top up account %d: %w", accountID, err)
	}
	return nil
}

// postEntry records a balanced entry once per key.
func postEntry(ctx context.Context, tx pgx.Tx, e ledger.Entry) (bool, error) {
	if err := e.Validate(); err != nil {
		return false, err
	}
	var id int64
	err := tx.QueryRow(ctx, `insert into ledger_entries (entry_key, memo, payment_id, posted_at) values ($1, $2, $3, $4)
		on conflict (entry_key) do nothing returning id`, e.Key, e.Memo, nullID(e.PaymentID), e.PostedAt).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("post ledger entry %s: %w", e.Key, err)
	}
	for i, p := range e.Postings {
		if _, err := tx.Exec(ctx, `insert into ledger_postings (entry_id, line_no, account, amount, currency) values ($1, $2, $3, $4, $5)`,
			id, i+1, p.Account, num(p.Amount), p.Currency); err != nil {
			return false, fmt.Errorf("post ledger entry %s line %d: %w", e.Key, i+1, err)
		}
	}
	return true, nil
}

// CheckLedger checks that every entry balances and that all postings sum to
// zero in each currency.
func (s *Payments) CheckLedger(ctx context.Context) (ledger.Report, error) {
	r := ledger.Report{Totals: map[string]decimal.Decimal{}}
	if err := s.DB.Pool.QueryRow(ctx, `select (select count(*) from ledger_entries), (select count(*) from ledger_postings)`).
		Scan(&r.Entries, &r.Postings); err != nil {
		return r, fmt.Errorf("count ledger: %w", err)
	}
	rows, err := s.DB.Pool.Query(ctx, `
		select e.id from ledger_entries e
		 where (select count(*) from ledger_postings p where p.entry_id = e.id) < 2
		    or exists (select 1 from ledger_postings p where p.entry_id = e.id group by p.currency having sum(p.amount) <> 0)
		 order by e.id`)
	if err != nil {
		return r, fmt.Errorf("check ledger entries: %w", err)
	}
	if r.Unbalanced, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
		return r, fmt.Errorf("check ledger entries: %w", err)
	}
	rows, err = s.DB.Pool.Query(ctx, `select currency, sum(amount) from ledger_postings group by currency order by currency`)
	if err != nil {
		return r, fmt.Errorf("ledger totals: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var cur string
		var sum pgtype.Numeric
		if err := rows.Scan(&cur, &sum); err != nil {
			return r, fmt.Errorf("ledger totals: %w", err)
		}
		if r.Totals[cur], err = dec(sum); err != nil {
			return r, err
		}
	}
	return r, rows.Err()
}

// AddPhone records a household's phone number (E.164); verifiedAt is when
// it was verified, or zero.
func (s *Payments) AddPhone(ctx context.Context, householdID int64, e164 string, verifiedAt time.Time) (int64, error) {
	var id int64
	err := s.DB.Pool.QueryRow(ctx, `insert into household_phones (household_id, e164, verified_at) values ($1, $2, $3)
		on conflict (household_id, e164) do update set verified_at = coalesce(excluded.verified_at, household_phones.verified_at)
		returning id`, householdID, e164, nullTime(verifiedAt)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("add phone of household %d: %w", householdID, err)
	}
	return id, nil
}

// PaymentMethod is a stored payment method: the gateway's token only.
type PaymentMethod struct {
	ID          int64
	HouseholdID int64
	Gateway     string
	Token       string
	Brand       string
	Last4       string
}

// AddPaymentMethod records a payment method.
func (s *Payments) AddPaymentMethod(ctx context.Context, m PaymentMethod) (int64, error) {
	var id int64
	err := s.DB.Pool.QueryRow(ctx, `insert into payment_methods (household_id, gateway, token, brand, last4)
		values ($1, $2, $3, $4, $5) returning id`, m.HouseholdID, m.Gateway, m.Token, m.Brand, m.Last4).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("add payment method: %w", err)
	}
	return id, nil
}

// SMSMessage is a recorded message.
type SMSMessage struct {
	ID         int64
	To         string
	Purpose    string
	PaymentID  int64
	Body       string
	Provider   string
	ProviderID string
	Status     string
	Error      string
	CreatedAt  time.Time
}

// SMSMessages returns a household's messages, newest first.
func (s *Payments) SMSMessages(ctx context.Context, householdID int64, limit int) ([]SMSMessage, error) {
	rows, err := s.DB.Pool.Query(ctx, `select id, to_e164, purpose, coalesce(payment_id, 0), body, provider, provider_id, status, error, created_at
		from sms_messages where household_id = $1 order by id desc limit $2`, householdID, limit)
	if err != nil {
		return nil, fmt.Errorf("sms of household %d: %w", householdID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (SMSMessage, error) {
		var m SMSMessage
		err := r.Scan(&m.ID, &m.To, &m.Purpose, &m.PaymentID, &m.Body, &m.Provider, &m.ProviderID, &m.Status, &m.Error, &m.CreatedAt)
		return m, err
	})
}

// DevSMS is the development SMS sender: it "delivers" a message by storing
// it, in full, in the development inbox (sms_dev_inbox), where the portal
// shows it. Never use it in production: one-time passwords are kept in
// clear there.
type DevSMS struct{ DB *DB }

var _ payment.Sender = (*DevSMS)(nil)

// Send stores the message and returns its inbox id as the provider id. Like
// a real sender it refuses a number not in E.164 and an empty text.
func (d *DevSMS) Send(ctx context.Context, to, body string) (string, error) {
	if !phone.IsE164(to) {
		return "", apperr.Field("to", "not an E.164 number")
	}
	if strings.TrimSpace(body) == "" {
		return "", apperr.Field("body", "must not be empty")
	}
	var id int64
	if err := d.DB.Pool.QueryRow(ctx, `insert into sms_dev_inbox (to_e164, body) values ($1, $2) returning id`, to, body).Scan(&id); err != nil {
		return "", fmt.Errorf("dev sms: %w", err)
	}
	return "dev-" + strconv.FormatInt(id, 10), nil
}

// Inbox returns the messages sent to a number, newest first.
func (d *DevSMS) Inbox(ctx context.Context, to string, limit int) ([]payment.InboxMessage, error) {
	rows, err := d.DB.Pool.Query(ctx, `select id, to_e164, body, created_at from sms_dev_inbox where to_e164 = $1 order by id desc limit $2`, to, limit)
	if err != nil {
		return nil, fmt.Errorf("dev inbox: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment.InboxMessage, error) {
		var m payment.InboxMessage
		err := r.Scan(&m.ID, &m.To, &m.Body, &m.CreatedAt)
		return m, err
	})
}

// ListPayments lists payments newest first: of one household (0: all),
// in one state ("" for any), with ids below before (0: from the newest).
func (s *Payments) ListPayments(ctx context.Context, householdID int64, state string, before int64, limit int) ([]payment.Payment, error) {
	rows, err := s.DB.Pool.Query(ctx, `select `+paymentColumns+`
		from payments p join payment_methods m on m.id = p.payment_method_id
		where ($1 = 0 or p.household_id = $1) and ($2 = '' or p.state = $2) and ($3 = 0 or p.id < $3)
		order by p.id desc limit $4`, householdID, state, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list payments: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment.Payment, error) { return scanPayment(r) })
}

// PaymentStats counts payments created since a time by state and currency.
func (s *Payments) PaymentStats(ctx context.Context, since time.Time) ([]payment.StateCount, error) {
	rows, err := s.DB.Pool.Query(ctx, `select state, currency, count(*), sum(amount) from payments where created_at >= $1
		group by state, currency order by state, currency`, since)
	if err != nil {
		return nil, fmt.Errorf("payment stats: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment.StateCount, error) {
		var c payment.StateCount
		var state string
		var sum pgtype.Numeric
		if err := r.Scan(&state, &c.Currency, &c.Count, &sum); err != nil {
			return c, err
		}
		c.State = payment.State(state)
		var err error
		c.Amount, err = dec(sum)
		return c, err
	})
}
