package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/ledger"
	"github.com/meterflow/meterflow/internal/otp"
	"github.com/meterflow/meterflow/internal/payment"
)

// Phones, payment methods and auto-pay rules of households
// (migrations/003_payments.sql and 006_autopay.sql).

var _ payment.SetupStore = (*Payments)(nil)

const phoneColumns = `id, household_id, e164, verified_at, created_at`

func scanPhone(r pgx.Row) (payment.Phone, error) {
	var p payment.Phone
	var verified *time.Time
	err := r.Scan(&p.ID, &p.HouseholdID, &p.E164, &verified, &p.CreatedAt)
	p.VerifiedAt = derefTime(verified)
	return p, err
}

// Phones lists a household's phones, verified first.
func (s *Payments) Phones(ctx context.Context, householdID int64) ([]payment.Phone, error) {
	rows, err := s.DB.Pool.Query(ctx, `select `+phoneColumns+` from household_phones where household_id = $1
		order by verified_at desc nulls last, id`, householdID)
	if err != nil {
		return nil, fmt.Errorf("phones of household %d: %w", householdID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment.Phone, error) { return scanPhone(r) })
}

// InsertPhone records a number, or returns the household's row for it.
func (s *Payments) InsertPhone(ctx context.Context, householdID int64, e164 string, now time.Time) (payment.Phone, error) {
	p, err := scanPhone(s.DB.Pool.QueryRow(ctx, `insert into household_phones (household_id, e164, created_at) values ($1, $2, $3)
		on conflict (household_id, e164) do update set e164 = excluded.e164
		returning `+phoneColumns, householdID, e164, now))
	if err != nil {
		return p, fmt.Errorf("add phone of household %d: %w", householdID, err)
	}
	return p, nil
}

// UpdatePhone locks a phone, runs fn and saves its verification.
func (s *Payments) UpdatePhone(ctx context.Context, id int64, fn func(payment.SetupTx, *payment.Phone) error) error {
	return s.DB.InTx(ctx, func(tx pgx.Tx) error {
		p, err := scanPhone(tx.QueryRow(ctx, `select `+phoneColumns+` from household_phones where id = $1 for update`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.New(apperr.NotFound, "phone %d not found", id)
		}
		if err != nil {
			return fmt.Errorf("lock phone %d: %w", id, err)
		}
		before := p
		if err := fn(&paymentTx{tx: tx}, &p); err != nil {
			return err
		}
		if p.VerifiedAt.Equal(before.VerifiedAt) {
			return nil
		}
		_, err = tx.Exec(ctx, `update household_phones set verified_at = $2 where id = $1`, id, nullTime(p.VerifiedAt))
		return err
	})
}

const methodColumns = `id, household_id, gateway, token, brand, last4, coalesce(exp_month, 0), coalesce(exp_year, 0), created_at`

func scanMethod(r pgx.Row) (payment.Method, error) {
	var m payment.Method
	var em, ey int16
	err := r.Scan(&m.ID, &m.HouseholdID, &m.Gateway, &m.Token, &m.Brand, &m.Last4, &em, &ey, &m.CreatedAt)
	m.ExpMonth, m.ExpYear = int(em), int(ey)
	return m, err
}

// Methods lists a household's usable payment methods.
func (s *Payments) Methods(ctx context.Context, householdID int64) ([]payment.Method, error) {
	rows, err := s.DB.Pool.Query(ctx, `select `+methodColumns+` from payment_methods
		where household_id = $1 and disabled_at is null order by id`, householdID)
	if err != nil {
		return nil, fmt.Errorf("payment methods of household %d: %w", householdID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment.Method, error) { return scanMethod(r) })
}

// Method returns a usable payment method.
func (s *Payments) Method(ctx context.Context, id int64) (payment.Method, error) {
	m, err := scanMethod(s.DB.Pool.QueryRow(ctx, `select `+methodColumns+` from payment_methods where id = $1 and disabled_at is null`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return m, apperr.New(apperr.NotFound, "payment method %d not found", id)
	}
	return m, err
}

// InsertMethod records a payment method, or returns the household's
// existing one for the same token.
func (s *Payments) InsertMethod(ctx context.Context, m payment.Method, now time.Time) (payment.Method, error) {
	var em, ey *int16
	if m.ExpMonth != 0 {
		v := int16(m.ExpMonth)
		em = &v
	}
	if m.ExpYear != 0 {
		v := int16(m.ExpYear)
		ey = &v
	}
	got, err := scanMethod(s.DB.Pool.QueryRow(ctx, `insert into payment_methods (household_id, gateway, token, brand, last4, exp_month, exp_year, created_at)
		values ($1, $2, $3, $4, $5, $6, $7, $8)
		on conflict (gateway, token) do update set disabled_at = null where payment_methods.household_id = excluded.household_id
		returning `+methodColumns, m.HouseholdID, m.Gateway, m.Token, m.Brand, m.Last4, em, ey, now))
	if errors.Is(err, pgx.ErrNoRows) {
		// The token belongs to another household.
		return got, apperr.Field("token", "this payment method cannot be added")
	}
	if err != nil {
		return got, fmt.Errorf("add payment method: %w", err)
	}
	return got, nil
}

// DisableMethod stops a method from being used, and the rules that use it.
func (s *Payments) DisableMethod(ctx context.Context, householdID, id int64, now time.Time) error {
	return s.DB.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `update payment_methods set disabled_at = coalesce(disabled_at, $3) where id = $1 and household_id = $2`, id, householdID, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return apperr.New(apperr.NotFound, "payment method %d not found", id)
		}
		rows, err := tx.Query(ctx, `update autopay_rules set enabled = false, disabled_at = coalesce(disabled_at, $2)
			where payment_method_id = $1 returning account_id`, id, now)
		if err != nil {
			return err
		}
		accounts, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		for _, a := range accounts {
			if err := syncThresholds(ctx, tx, a); err != nil {
				return err
			}
		}
		return nil
	})
}

const ruleColumns = `r.id, r.account_id, r.household_id, r.trigger, r.accrued_above, r.balance_below, r.topup_amount, r.max_amount,
	r.otp_free_below, r.payment_method_id, a.currency, r.enabled, r.confirmed_at, r.disabled_at, r.created_at`

func scanRule(row pgx.Row) (payment.Rule, error) {
	var r payment.Rule
	var trig string
	var above, below, topup, maxA, free pgtype.Numeric
	var confirmed, disabled *time.Time
	err := row.Scan(&r.ID, &r.AccountID, &r.HouseholdID, &trig, &above, &below, &topup, &maxA, &free, &r.PaymentMethodID,
		&r.Currency, &r.Enabled, &confirmed, &disabled, &r.CreatedAt)
	if err != nil {
		return r, err
	}
	r.Trigger = payment.Trigger(trig)
	r.ConfirmedAt, r.DisabledAt = derefTime(confirmed), derefTime(disabled)
	for _, f := range []struct {
		dst *decimal.Decimal
		src pgtype.Numeric
	}{{&r.AccruedAbove, above}, {&r.BalanceBelow, below}, {&r.TopUpAmount, topup}, {&r.MaxAmount, maxA}, {&r.OTPFreeBelow, free}} {
		if !f.src.Valid {
			continue
		}
		if *f.dst, err = dec(f.src); err != nil {
			return r, err
		}
	}
	return r, nil
}

// Rules lists an account's rules, newest first; replaced rules are gone.
func (s *Payments) Rules(ctx context.Context, accountID int64) ([]payment.Rule, error) {
	rows, err := s.DB.Pool.Query(ctx, `select `+ruleColumns+` from autopay_rules r join accounts a on a.id = r.account_id
		where r.account_id = $1 order by r.id desc`, accountID)
	if err != nil {
		return nil, fmt.Errorf("auto-pay rules of account %d: %w", accountID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment.Rule, error) { return scanRule(r) })
}

// Rule returns one auto-pay rule.
func (s *Payments) Rule(ctx context.Context, id int64) (payment.Rule, error) {
	r, err := scanRule(s.DB.Pool.QueryRow(ctx, `select `+ruleColumns+` from autopay_rules r join accounts a on a.id = r.account_id where r.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, apperr.New(apperr.NotFound, "auto-pay rule %d not found", id)
	}
	return r, err
}

// ActiveRule returns the enabled rule of an account for a trigger.
func (s *Payments) ActiveRule(ctx context.Context, accountID int64, t payment.Trigger) (payment.Rule, bool, error) {
	r, err := scanRule(s.DB.Pool.QueryRow(ctx, `select `+ruleColumns+` from autopay_rules r join accounts a on a.id = r.account_id
		join payment_methods m on m.id = r.payment_method_id
		where r.account_id = $1 and r.trigger = $2 and r.enabled and m.disabled_at is null`, accountID, string(t)))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("auto-pay rule of account %d: %w", accountID, err)
	}
	return r, true, nil
}

func numOrNull(d decimal.Decimal) any {
	if d.IsZero() {
		return nil
	}
	return num(d)
}

// ReplaceRule stores r as its account's rule for its trigger, pending
// confirmation: the account's row for the trigger takes the new terms and
// stops until they are confirmed, and a code sent for the old terms is
// dropped. Payments the rule made before keep their own amounts.
func (s *Payments) ReplaceRule(ctx context.Context, r payment.Rule, now time.Time) (payment.Rule, error) {
	var out payment.Rule
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		var currency string
		err := tx.QueryRow(ctx, `select currency from accounts where id = $1 and household_id = $2 for update`, r.AccountID, r.HouseholdID).Scan(&currency)
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.New(apperr.NotFound, "account %d not found", r.AccountID)
		}
		if err != nil {
			return err
		}
		var ok bool
		if err := tx.QueryRow(ctx, `select exists (select 1 from payment_methods where id = $1 and household_id = $2 and disabled_at is null)`,
			r.PaymentMethodID, r.HouseholdID).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return apperr.Field("payment_method_id", "no payment method %d", r.PaymentMethodID)
		}
		// The unique (account, trigger) row is reused: the old terms are
		// overwritten, the rule stops until the new terms are confirmed, and
		// its code is dropped so a code sent for the old terms confirms
		// nothing.
		var id int64
		err = tx.QueryRow(ctx, `insert into autopay_rules (account_id, household_id, trigger, accrued_above, balance_below, topup_amount,
				max_amount, otp_free_below, payment_method_id, enabled, confirmed_at, disabled_at, created_at)
			values ($1, $2, $3, $4, $5, $6, $7, $8, $9, false, null, null, $10)
			on conflict (account_id, trigger) do update set accrued_above = excluded.accrued_above, balance_below = excluded.balance_below,
				topup_amount = excluded.topup_amount, max_amount = excluded.max_amount, otp_free_below = excluded.otp_free_below,
				payment_method_id = excluded.payment_method_id, enabled = false, confirmed_at = null, disabled_at = null,
				created_at = excluded.created_at
			returning id`,
			r.AccountID, r.HouseholdID, string(r.Trigger), numOrNull(r.AccruedAbove), numOrNull(r.BalanceBelow), numOrNull(r.TopUpAmount),
			num(r.MaxAmount), numOrNull(r.OTPFreeBelow), r.PaymentMethodID, now).Scan(&id)
		if err != nil {
			return fmt.Errorf("save auto-pay rule: %w", err)
		}
		if r.Trigger == payment.TriggerBalanceBelow && r.BalanceBelow.IsZero() {
			// balance_below 0 is a real threshold, not "unset".
			if _, err := tx.Exec(ctx, `update autopay_rules set balance_below = 0 where id = $1`, id); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `delete from otp_codes where autopay_rule_id = $1`, id); err != nil {
			return err
		}
		if err := syncThresholds(ctx, tx, r.AccountID); err != nil {
			return err
		}
		out, err = scanRule(tx.QueryRow(ctx, `select `+ruleColumns+` from autopay_rules r join accounts a on a.id = r.account_id where r.id = $1`, id))
		return err
	})
	return out, err
}

// UpdateRule locks a rule, runs fn and saves its state.
func (s *Payments) UpdateRule(ctx context.Context, id int64, fn func(payment.SetupTx, *payment.Rule) error) error {
	return s.DB.InTx(ctx, func(tx pgx.Tx) error {
		r, err := scanRule(tx.QueryRow(ctx, `select `+ruleColumns+` from autopay_rules r join accounts a on a.id = r.account_id
			where r.id = $1 for update of r`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.New(apperr.NotFound, "auto-pay rule %d not found", id)
		}
		if err != nil {
			return fmt.Errorf("lock auto-pay rule %d: %w", id, err)
		}
		before := r
		if err := fn(&paymentTx{tx: tx}, &r); err != nil {
			return err
		}
		if r.Enabled == before.Enabled && r.ConfirmedAt.Equal(before.ConfirmedAt) && r.DisabledAt.Equal(before.DisabledAt) {
			return nil
		}
		if _, err := tx.Exec(ctx, `update autopay_rules set enabled = $2, confirmed_at = $3, disabled_at = $4 where id = $1`,
			id, r.Enabled, nullTime(r.ConfirmedAt), nullTime(r.DisabledAt)); err != nil {
			return fmt.Errorf("save auto-pay rule %d: %w", id, err)
		}
		return syncThresholds(ctx, tx, r.AccountID)
	})
}

// syncThresholds makes the account's thresholds, which billing watches,
// those of its enabled accrued_above and balance_below rules.
func syncThresholds(ctx context.Context, tx pgx.Tx, accountID int64) error {
	_, err := tx.Exec(ctx, `
		insert into account_thresholds (account_id, accrued_above, balance_below)
		select $1,
		       (select accrued_above from autopay_rules where account_id = $1 and trigger = 'accrued_above' and enabled),
		       (select balance_below from autopay_rules where account_id = $1 and trigger = 'balance_below' and enabled)
		on conflict (account_id) do update set accrued_above = excluded.accrued_above, balance_below = excluded.balance_below`, accountID)
	if err != nil {
		return fmt.Errorf("thresholds of account %d: %w", accountID, err)
	}
	return nil
}

// SubjectCode returns the code of a phone or a rule, locked, or nil.
func (t *paymentTx) SubjectCode(ctx context.Context, purpose otp.Purpose, id int64) (*otp.Code, error) {
	col, err := subjectColumn(purpose)
	if err != nil {
		return nil, err
	}
	var c otp.Code
	var used *time.Time
	err = t.tx.QueryRow(ctx, `select id, mac, key_id, expires_at, attempts, sends, last_sent_at, used_at, created_at
		from otp_codes where `+col+` = $1 for update`, id).
		Scan(&c.ID, &c.MAC, &c.KeyID, &c.ExpiresAt, &c.Attempts, &c.Sends, &c.LastSentAt, &used, &c.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("code of %s %d: %w", purpose, id, err)
	}
	c.UsedAt = derefTime(used)
	return &c, nil
}

func subjectColumn(p otp.Purpose) (string, error) {
	switch p {
	case otp.PhoneVerify:
		return "phone_id", nil
	case otp.AutopayEnrol:
		return "autopay_rule_id", nil
	}
	return "", fmt.Errorf("no subject codes for purpose %q", p)
}

// SaveSubjectCode inserts or updates the code of a phone or a rule.
func (t *paymentTx) SaveSubjectCode(ctx context.Context, purpose otp.Purpose, id int64, c *otp.Code) error {
	col, err := subjectColumn(purpose)
	if err != nil {
		return err
	}
	err = t.tx.QueryRow(ctx, `insert into otp_codes (household_id, purpose, `+col+`, mac, key_id, expires_at, attempts,
			sends, last_sent_at, used_at, created_at)
		values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		on conflict (`+col+`) where `+col+` is not null do update set mac = excluded.mac, key_id = excluded.key_id,
			expires_at = excluded.expires_at, attempts = excluded.attempts, sends = excluded.sends,
			last_sent_at = excluded.last_sent_at, used_at = excluded.used_at
		returning id`,
		c.Binding.HouseholdID, string(purpose), id, c.MAC, c.KeyID, c.ExpiresAt, c.Attempts, c.Sends,
		c.LastSentAt, nullTime(c.UsedAt), c.CreatedAt).Scan(&c.ID)
	if err != nil {
		return fmt.Errorf("save code of %s %d: %w", purpose, id, err)
	}
	return nil
}

// PostBill posts an issued bill to the ledger: the household owes its
// total (receivable), against revenue for the charges and tax payable for
// the tax. It reports whether the entry was new; posting again changes
// nothing.
func (s *Payments) PostBill(ctx context.Context, billID int64) (bool, error) {
	var posted bool
	err := s.DB.InTx(ctx, func(tx pgx.Tx) error {
		var hh int64
		var sub, tax, total pgtype.Numeric
		var currency string
		var issued time.Time
		err := tx.QueryRow(ctx, `select household_id, subtotal, tax, total, currency, issued_at from bills where id = $1`, billID).
			Scan(&hh, &sub, &tax, &total, &currency, &issued)
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.New(apperr.NotFound, "bill %d not found", billID)
		}
		if err != nil {
			return err
		}
		e := ledger.Entry{Key: fmt.Sprintf("bill:%d", billID), Memo: fmt.Sprintf("bill %d issued", billID), PostedAt: issued}
		add := func(account string, n pgtype.Numeric, sign int64) error {
			d, err := dec(n)
			if err != nil {
				return err
			}
			if !d.IsZero() {
				e.Postings = append(e.Postings, ledger.Posting{Account: account, Amount: d.Mul(decimal.NewFromInt(sign)), Currency: currency})
			}
			return nil
		}
		if err := errors.Join(add(ledger.Receivable(hh), total, 1), add(ledger.Revenue, sub, -1), add(ledger.TaxPayable, tax, -1)); err != nil {
			return err
		}
		if len(e.Postings) < 2 {
			return nil // a zero bill moves nothing
		}
		posted, err = postEntry(ctx, tx, e)
		return err
	})
	return posted, err
}
