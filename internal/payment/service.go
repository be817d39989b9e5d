package payment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/ledger"
	"github.com/meterflow/meterflow/internal/otp"
	"github.com/meterflow/meterflow/internal/tariff"
)

func errConflict(format string, args ...any) error {
	return apperr.New(apperr.Conflict, format, args...)
}

// Config configures the payment service. DefaultConfig holds the defaults.
type Config struct {
	// ConfirmWithin is how long a payment waits for confirmation before it
	// expires.
	ConfirmWithin time.Duration
	// ChargeTimeout bounds one gateway call. The lease a charge holds is
	// ChargeTimeout plus a minute, so Recover never re-issues a charge that
	// is still in flight.
	ChargeTimeout time.Duration
	// Backoff is the wait before re-issuing a charge whose outcome is
	// unknown (a gateway error, or processing) after the 1st, 2nd, ...
	// attempt; the last value repeats.
	Backoff []time.Duration
	// MaxAttempts is how many times one charge is sent before the payment
	// fails as unresolved (for reconciliation with the gateway's records).
	MaxAttempts int
	// KeyRetention is how long the gateway keeps idempotency keys (24 hours
	// at Stripe). Retries must end before it, or a re-issued charge could
	// be taken twice.
	KeyRetention time.Duration
	// Gateway names the gateway, as recorded on payments.
	Gateway string
	// SMSProvider names the SMS provider, as recorded on messages.
	SMSProvider string
	// Payee is who auto-pay payments are made to, as the household's codes
	// and receipts name it.
	Payee string
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config {
	return Config{
		ConfirmWithin: 48 * time.Hour,
		ChargeTimeout: 30 * time.Second,
		Backoff:       []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 6 * time.Hour},
		MaxAttempts:   6,
		KeyRetention:  24 * time.Hour,
		Gateway:       "sandbox",
		SMSProvider:   "dev",
		Payee:         "Meterflow Energy",
	}
}

// retryWindow is the longest a charge is retried: the lease of every
// attempt and the backoff between them.
func (c Config) retryWindow() time.Duration {
	var d time.Duration
	for i := 1; i < c.MaxAttempts; i++ {
		d += c.backoff(i) + c.lease()
	}
	return d + c.lease()
}

func (c Config) lease() time.Duration { return c.ChargeTimeout + time.Minute }

// backoff is the wait after the attempt-th attempt (1-based).
func (c Config) backoff(attempt int) time.Duration {
	if len(c.Backoff) == 0 {
		return time.Minute
	}
	return c.Backoff[min(attempt, len(c.Backoff))-1]
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.ConfirmWithin <= 0 {
		errs = append(errs, errors.New("payment confirm within: must be positive"))
	}
	if c.ChargeTimeout <= 0 {
		errs = append(errs, errors.New("payment charge timeout: must be positive"))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, errors.New("payment max attempts: must be at least 1"))
	}
	for _, b := range c.Backoff {
		if b <= 0 {
			errs = append(errs, errors.New("payment backoff: must be positive"))
			break
		}
	}
	if c.MaxAttempts >= 1 && c.retryWindow() >= c.KeyRetention {
		errs = append(errs, fmt.Errorf("payment retries: last retry after %s, not before the gateway forgets keys (%s)", c.retryWindow(), c.KeyRetention))
	}
	if c.Gateway == "" {
		errs = append(errs, errors.New("payment gateway: must be named"))
	}
	return errors.Join(errs...)
}

// Service runs payments through their state machine.
type Service struct {
	store   Store
	gateway Gateway
	sender  Sender
	otp     *otp.Issuer
	cfg     Config
	log     *slog.Logger
	// Now is the clock.
	Now func() time.Time
}

// New returns a service. The issuer's clock should be the service's.
func New(store Store, gw Gateway, sender Sender, issuer *otp.Issuer, cfg Config, log *slog.Logger, now func() time.Time) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, gateway: gw, sender: sender, otp: issuer, cfg: cfg, log: log, Now: now}, nil
}

// NewPayment asks for a payment.
type NewPayment struct {
	HouseholdID     int64
	AccountID       int64
	BillID          int64
	AutoPayRuleID   int64
	Kind            Kind
	Amount          decimal.Decimal
	Currency        string
	Payee           string
	PaymentMethodID int64
	// IdempotencyKey makes creating a payment idempotent (an auto-pay rule
	// uses "autopay:<rule>:<event key>"); it is also the gateway's key.
	IdempotencyKey string
	// SkipOTP charges the payment without a code. Only an auto-pay rule
	// whose household allowed small top-ups without a code sets it.
	SkipOTP bool
}

func (n NewPayment) validate() error {
	var errs []error
	if n.HouseholdID <= 0 {
		errs = append(errs, apperr.Field("household_id", "must be set"))
	}
	if n.AccountID <= 0 {
		errs = append(errs, apperr.Field("account_id", "must be set"))
	}
	switch n.Kind {
	case KindBill:
		if n.BillID <= 0 {
			errs = append(errs, apperr.Field("bill_id", "a bill payment names its bill"))
		}
	case KindAccrued, KindTopUp:
	default:
		errs = append(errs, apperr.Field("kind", "must be bill, accrued or topup"))
	}
	if !n.Amount.IsPositive() {
		errs = append(errs, apperr.Field("amount", "must be positive"))
	}
	if len(n.Currency) != 3 || strings.ToUpper(n.Currency) != n.Currency {
		errs = append(errs, apperr.Field("currency", "must be an ISO 4217 code"))
	}
	if strings.TrimSpace(n.Payee) == "" {
		errs = append(errs, apperr.Field("payee", "must be set"))
	}
	if n.PaymentMethodID <= 0 {
		errs = append(errs, apperr.Field("payment_method_id", "must be set"))
	}
	if n.IdempotencyKey == "" || len(n.IdempotencyKey) > 255 {
		errs = append(errs, apperr.Field("idempotency_key", "must be 1 to 255 characters"))
	}
	return errors.Join(errs...)
}

// Create records a payment awaiting confirmation. Creating it again with the
// same idempotency key returns the first one.
func (s *Service) Create(ctx context.Context, n NewPayment) (Payment, error) {
	if err := n.validate(); err != nil {
		return Payment{}, err
	}
	now := s.Now()
	p := Payment{
		HouseholdID: n.HouseholdID, AccountID: n.AccountID, BillID: n.BillID, AutoPayRuleID: n.AutoPayRuleID,
		Kind: n.Kind, Amount: n.Amount, Currency: n.Currency, Payee: n.Payee, PaymentMethodID: n.PaymentMethodID,
		State: Created, IdempotencyKey: n.IdempotencyKey, Gateway: s.cfg.Gateway, RequiresOTP: !n.SkipOTP,
		ConfirmBy: now.Add(s.cfg.ConfirmWithin), CreatedAt: now, UpdatedAt: now,
	}
	got, created, err := s.store.CreatePayment(ctx, p)
	if err != nil {
		return Payment{}, err
	}
	if !created && (got.HouseholdID != n.HouseholdID || !got.Amount.Equal(n.Amount) || got.BillID != n.BillID ||
		got.Currency != n.Currency || got.Payee != n.Payee || got.PaymentMethodID != n.PaymentMethodID || got.RequiresOTP == n.SkipOTP) {
		return Payment{}, errConflict("idempotency key %q was used for another payment", n.IdempotencyKey)
	}
	return got, nil
}

// Payee is who payments are made to.
func (s *Service) Payee() string { return s.cfg.Payee }

// Payment returns a payment.
func (s *Service) Payment(ctx context.Context, id int64) (Payment, error) {
	return s.store.Payment(ctx, id)
}

// outgoing is an SMS recorded in a transaction, sent after it commits.
type outgoing struct {
	id       int64
	to, text string
}

// SendCode sends the payment's confirmation code to the household's verified
// phone: the first code, or a new one when the policy allows a resend.
func (s *Service) SendCode(ctx context.Context, paymentID int64) error {
	var out outgoing
	var refused error
	err := s.store.Update(ctx, paymentID, func(tx Tx, p *Payment) error {
		now := s.Now()
		if p.State != Created && p.State != OTPSent {
			return errConflict("payment %d is %s: no code to send", p.ID, p.State)
		}
		if !now.Before(p.ConfirmBy) {
			return errConflict("payment %d is past its confirmation deadline", p.ID)
		}
		phone, err := tx.VerifiedPhone(ctx, p.HouseholdID)
		if err != nil {
			return err
		}
		if phone == "" {
			return apperr.New(apperr.Conflict, "household %d has no verified phone", p.HouseholdID)
		}
		failures, err := tx.LockOTPFailures(ctx, p.HouseholdID, otp.Day(now))
		if err != nil {
			return err
		}
		c, err := tx.OTPCode(ctx, p.ID)
		if err != nil {
			return err
		}
		var code string
		if c == nil {
			var fresh otp.Code
			code, fresh, err = s.otp.Issue(p.Binding(), failures)
			c = &fresh
		} else {
			c.Binding = p.Binding() // the row keeps no binding, only its MAC
			code, err = s.otp.Resend(c, failures)
		}
		if err != nil {
			refused = err
			return nil // nothing changed; the refusal is the caller's answer
		}
		if err := tx.SaveOTPCode(ctx, p.ID, c); err != nil {
			return err
		}
		text := s.codeMessage(p, code)
		id, err := tx.QueueSMS(ctx, SMS{HouseholdID: p.HouseholdID, To: phone, Purpose: "otp", PaymentID: p.ID,
			Provider: s.cfg.SMSProvider,
			Body:     strings.ReplaceAll(text, code, strings.Repeat("•", len(code)))}, now)
		if err != nil {
			return err
		}
		out = outgoing{id: id, to: phone, text: text}
		if p.State == Created {
			return p.move(OTPSent, now)
		}
		p.UpdatedAt = now
		return nil
	})
	if err != nil {
		return err
	}
	if refused != nil {
		return refused
	}
	return s.deliver(ctx, out)
}

func (s *Service) codeMessage(p *Payment, code string) string {
	return fmt.Sprintf("Meterflow: %s is your code to pay %s %s to %s for %s. It expires in %d minutes. Never share it.",
		code, tariff.FormatMoney(p.Amount, p.Currency), p.Currency, p.Payee, p.what(), int(s.otp.Policy.TTL.Minutes()))
}

// deliver sends a recorded message and records the outcome. A failed send
// is recorded and returned: the household may ask for a resend.
func (s *Service) deliver(ctx context.Context, m outgoing) error {
	if m.id == 0 {
		return nil
	}
	pid, err := s.sender.Send(ctx, m.to, m.text)
	if rerr := s.store.SMSResult(ctx, m.id, pid, err, s.Now()); rerr != nil {
		return errors.Join(err, rerr)
	}
	if err != nil {
		return apperr.New(apperr.Unavailable, "the code could not be sent; try again shortly")
	}
	return nil
}

// Confirm checks a household's code for a payment and, when it is right,
// charges the payment. Every check counts against the code and, when wrong,
// against the household's daily limit, even though the error is returned.
// A charge whose outcome is unknown leaves the payment charging, for Recover.
func (s *Service) Confirm(ctx context.Context, householdID, paymentID int64, code string) (Payment, error) {
	var refused error
	err := s.store.Update(ctx, paymentID, func(tx Tx, p *Payment) error {
		now := s.Now()
		if p.HouseholdID != householdID {
			return apperr.New(apperr.NotFound, "payment %d not found", paymentID)
		}
		if p.State != OTPSent {
			return errConflict("payment %d is %s: nothing to confirm", p.ID, p.State)
		}
		if !now.Before(p.ConfirmBy) {
			return errConflict("payment %d is past its confirmation deadline", p.ID)
		}
		day := otp.Day(now)
		failures, err := tx.LockOTPFailures(ctx, p.HouseholdID, day)
		if err != nil {
			return err
		}
		c, err := tx.OTPCode(ctx, p.ID)
		if err != nil {
			return err
		}
		if c == nil {
			return errConflict("payment %d has no code", p.ID)
		}
		c.Binding = p.Binding()
		res, cerr := s.otp.Check(c, p.Binding(), code, failures)
		if err := tx.SaveOTPCode(ctx, p.ID, c); err != nil {
			return err
		}
		if res.Failed {
			failures++
			if err := tx.SetOTPFailures(ctx, p.HouseholdID, day, failures, s.otp.Locked(failures), now); err != nil {
				return err
			}
		}
		if cerr != nil {
			refused = cerr
			return nil // commit the counted check
		}
		return p.move(Confirmed, now)
	})
	if err != nil {
		return Payment{}, err
	}
	if refused != nil {
		return Payment{}, refused
	}
	return s.charge(ctx, paymentID)
}

// Cancel cancels a payment that has not been confirmed.
func (s *Service) Cancel(ctx context.Context, householdID, paymentID int64) (Payment, error) {
	var out Payment
	err := s.store.Update(ctx, paymentID, func(tx Tx, p *Payment) error {
		if p.HouseholdID != householdID {
			return apperr.New(apperr.NotFound, "payment %d not found", paymentID)
		}
		if err := p.move(Canceled, s.Now()); err != nil {
			return err
		}
		out = *p
		return nil
	})
	return out, err
}

// charge sends the payment's charge if it is confirmed, or re-sends it if it
// is charging and its lease has run out. The state and the key are saved
// before the gateway is called; the result is saved after.
func (s *Service) charge(ctx context.Context, id int64) (Payment, error) {
	var req ChargeRequest
	var attempt int
	var out Payment
	send := false
	err := s.store.Update(ctx, id, func(tx Tx, p *Payment) error {
		now := s.Now()
		out = *p
		switch {
		case p.State == Confirmed:
			if err := p.move(Charging, now); err != nil {
				return err
			}
		case p.State == Charging && !now.Before(p.LeaseUntil):
			if p.Attempts >= s.cfg.MaxAttempts {
				p.FailureReason = "unresolved: no answer from the gateway after " + fmt.Sprint(p.Attempts) + " attempts"
				if err := p.move(Failed, now); err != nil {
					return err
				}
				s.log.Error("payment unresolved: reconcile with the gateway", "payment", p.ID, "key", p.IdempotencyKey)
				out = *p
				return nil
			}
		default:
			return nil // someone else has it, or it is done
		}
		p.Attempts++
		p.LeaseUntil = now.Add(s.cfg.lease())
		p.UpdatedAt = now
		attempt, send, out = p.Attempts, true, *p
		req = ChargeRequest{IdempotencyKey: p.IdempotencyKey, Amount: p.Amount, Currency: p.Currency,
			PaymentMethodToken: p.MethodToken, Description: fmt.Sprintf("Meterflow payment %d to %s", p.ID, p.Payee)}
		return nil
	})
	if err != nil || !send {
		return out, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ChargeTimeout)
	res, cerr := s.gateway.Charge(cctx, req)
	cancel()
	return s.settle(ctx, id, attempt, res, cerr)
}

// settle records a charge's outcome, if the payment is still charging.
func (s *Service) settle(ctx context.Context, id int64, attempt int, res ChargeResult, cerr error) (Payment, error) {
	var out Payment
	var notice outgoing
	err := s.store.Update(ctx, id, func(tx Tx, p *Payment) error {
		now := s.Now()
		out = *p
		if p.State != Charging {
			return nil // already settled by another attempt
		}
		p.UpdatedAt = now
		if cerr != nil {
			if c := apperr.CodeOf(cerr); c == apperr.Invalid || c == apperr.Conflict {
				p.GatewayStatus, p.FailureReason = "error", "gateway refused: "+cerr.Error()
				if err := p.move(Failed, now); err != nil {
					return err
				}
			} else {
				p.GatewayStatus, p.FailureReason = "error", "retrying: "+cerr.Error()
				p.LeaseUntil = now.Add(s.cfg.backoff(attempt))
				s.log.Warn("charge outcome unknown; will retry with the same key", "payment", p.ID, "attempt", attempt, "err", cerr)
			}
			out = *p
			return nil
		}
		p.GatewayChargeID, p.GatewayStatus = res.ID, string(res.Status)
		switch res.Status {
		case ChargeSucceeded:
			p.FailureReason = ""
			if res.Fee.IsPositive() && res.Fee.LessThan(p.Amount) {
				p.Fee = res.Fee
			}
			if err := p.move(Succeeded, now); err != nil {
				return err
			}
			if err := s.book(ctx, tx, p, now); err != nil {
				return err
			}
			phone, err := tx.VerifiedPhone(ctx, p.HouseholdID)
			if err != nil {
				return err
			}
			if phone != "" {
				text := fmt.Sprintf("Meterflow receipt: %s %s paid to %s for %s (payment %d, charge %s). Thank you.",
					tariff.FormatMoney(p.Amount, p.Currency), p.Currency, p.Payee, p.what(), p.ID, p.GatewayChargeID)
				mid, err := tx.QueueSMS(ctx, SMS{HouseholdID: p.HouseholdID, To: phone, Purpose: "notice", PaymentID: p.ID, Body: text, Provider: s.cfg.SMSProvider}, now)
				if err != nil {
					return err
				}
				notice = outgoing{id: mid, to: phone, text: text}
			}
		case ChargeDeclined, ChargeRequiresAction:
			p.FailureReason = string(res.Status)
			if res.DeclineCode != "" {
				p.FailureReason += ": " + res.DeclineCode
			}
			if err := p.move(Failed, now); err != nil {
				return err
			}
			phone, err := tx.VerifiedPhone(ctx, p.HouseholdID)
			if err != nil {
				return err
			}
			if phone != "" {
				text := fmt.Sprintf("Meterflow: your payment of %s %s to %s did not go through. Please pay in the portal.",
					tariff.FormatMoney(p.Amount, p.Currency), p.Currency, p.Payee)
				mid, err := tx.QueueSMS(ctx, SMS{HouseholdID: p.HouseholdID, To: phone, Purpose: "notice", PaymentID: p.ID, Body: text, Provider: s.cfg.SMSProvider}, now)
				if err != nil {
					return err
				}
				notice = outgoing{id: mid, to: phone, text: text}
			}
		case ChargeProcessing:
			p.LeaseUntil = now.Add(s.cfg.backoff(attempt))
		default:
			return fmt.Errorf("payment %d: gateway status %q unknown", p.ID, res.Status)
		}
		out = *p
		return nil
	})
	if err != nil {
		return out, err
	}
	if err := s.deliver(ctx, notice); err != nil {
		s.log.Warn("payment notice not sent", "payment", id, "err", err)
	}
	return out, nil
}

// book posts a succeeded payment: a balanced ledger entry (debit the
// gateway's clearing account with what it will pay out and the fees account
// with its fee, credit the household's receivable, or the account's prepaid
// credit for a top-up, with the whole amount), and the bill paid.
func (s *Service) book(ctx context.Context, tx Tx, p *Payment, now time.Time) error {
	credit := ledger.Receivable(p.HouseholdID)
	if p.Kind == KindTopUp {
		credit = ledger.Prepaid(p.AccountID)
	}
	e := ledger.Entry{Key: fmt.Sprintf("payment:%d", p.ID), Memo: fmt.Sprintf("payment %d %s", p.ID, p.Kind), PostedAt: now,
		PaymentID: p.ID, Postings: []ledger.Posting{
			{Account: ledger.GatewayClearing, Amount: p.Amount.Sub(p.Fee), Currency: p.Currency},
			{Account: credit, Amount: p.Amount.Neg(), Currency: p.Currency},
		}}
	if p.Fee.IsPositive() {
		e.Postings = append(e.Postings, ledger.Posting{Account: ledger.GatewayFees, Amount: p.Fee, Currency: p.Currency})
	}
	if err := e.Validate(); err != nil {
		return err
	}
	if _, err := tx.PostEntry(ctx, e); err != nil {
		return err
	}
	if p.Kind == KindTopUp {
		return tx.AddPrepaid(ctx, p.AccountID, p.Amount, now)
	}
	if p.BillID != 0 {
		return tx.MarkBillPaid(ctx, p.BillID)
	}
	return nil
}

// Recover charges confirmed payments that were never charged and re-issues,
// with the same idempotency key, the charges of charging payments whose
// lease has run out (a process died mid-charge, or the outcome was unknown).
// Run it at start-up and periodically. It returns how many it charged.
func (s *Service) Recover(ctx context.Context) (int, error) {
	ids, err := s.store.DueCharges(ctx, s.Now(), 100)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, id := range ids {
		if _, err := s.charge(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("recover payment %d: %w", id, err))
		}
	}
	return len(ids), errors.Join(errs...)
}

// ExpireDue expires payments not confirmed by their deadline and tells each
// household by SMS. It returns how many expired.
func (s *Service) ExpireDue(ctx context.Context) (int, error) {
	ids, err := s.store.DuePending(ctx, s.Now(), 100)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, id := range ids {
		var notice outgoing
		expired := false
		err := s.store.Update(ctx, id, func(tx Tx, p *Payment) error {
			now := s.Now()
			if (p.State != Created && p.State != OTPSent) || now.Before(p.ConfirmBy) {
				return nil
			}
			if err := p.move(Expired, now); err != nil {
				return err
			}
			expired = true
			phone, err := tx.VerifiedPhone(ctx, p.HouseholdID)
			if err != nil || phone == "" {
				return err
			}
			text := fmt.Sprintf("Meterflow: your payment of %s %s to %s was not confirmed in time and has expired. Nothing was charged.",
				tariff.FormatMoney(p.Amount, p.Currency), p.Currency, p.Payee)
			mid, err := tx.QueueSMS(ctx, SMS{HouseholdID: p.HouseholdID, To: phone, Purpose: "notice", PaymentID: p.ID, Body: text, Provider: s.cfg.SMSProvider}, now)
			notice = outgoing{id: mid, to: phone, text: text}
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("expire payment %d: %w", id, err))
			continue
		}
		if expired {
			n++
		}
		if err := s.deliver(ctx, notice); err != nil {
			s.log.Warn("expiry notice not sent", "payment", id, "err", err)
		}
	}
	return n, errors.Join(errs...)
}
