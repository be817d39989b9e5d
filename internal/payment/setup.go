package payment

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/otp"
	"github.com/meterflow/meterflow/internal/phone"
	"github.com/meterflow/meterflow/internal/tariff"
)

// Phone is a household's phone number. Codes go only to a verified one.
type Phone struct {
	ID          int64     `json:"id"`
	HouseholdID int64     `json:"household_id"`
	E164        string    `json:"e164"`
	VerifiedAt  time.Time `json:"verified_at,omitzero"`
	CreatedAt   time.Time `json:"created_at"`
}

// Verified reports whether the number has been verified.
func (p Phone) Verified() bool { return !p.VerifiedAt.IsZero() }

func (p *Phone) binding() otp.Binding {
	return otp.Binding{Purpose: otp.PhoneVerify, HouseholdID: p.HouseholdID, PhoneID: p.ID, Phone: p.E164}
}

// Method is a payment method: the gateway's token and what may be shown
// of the card. A card number is never stored.
type Method struct {
	ID          int64     `json:"id"`
	HouseholdID int64     `json:"household_id"`
	Gateway     string    `json:"gateway"`
	Token       string    `json:"-"`
	Brand       string    `json:"brand"`
	Last4       string    `json:"last4"`
	ExpMonth    int       `json:"exp_month,omitempty"`
	ExpYear     int       `json:"exp_year,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// Trigger is what makes an auto-pay rule create a payment.
type Trigger string

const (
	// TriggerBillIssued pays each bill when it is issued.
	TriggerBillIssued Trigger = "bill_issued"
	// TriggerAccruedAbove pays the cost so far of the cycle when it rises
	// above AccruedAbove.
	TriggerAccruedAbove Trigger = "accrued_above"
	// TriggerBalanceBelow tops the prepaid balance up by TopUpAmount when
	// it falls below BalanceBelow.
	TriggerBalanceBelow Trigger = "balance_below"
)

// Rule is an auto-pay rule of an account. It takes effect (Enabled) only
// once the household has confirmed it with a code. Unset amounts are zero.
type Rule struct {
	ID              int64           `json:"id"`
	AccountID       int64           `json:"account_id"`
	HouseholdID     int64           `json:"household_id"`
	Trigger         Trigger         `json:"trigger"`
	AccruedAbove    decimal.Decimal `json:"accrued_above,omitzero"`
	BalanceBelow    decimal.Decimal `json:"balance_below,omitzero"`
	TopUpAmount     decimal.Decimal `json:"topup_amount,omitzero"`
	MaxAmount       decimal.Decimal `json:"max_amount"`
	OTPFreeBelow    decimal.Decimal `json:"otp_free_below,omitzero"`
	PaymentMethodID int64           `json:"payment_method_id"`
	Currency        string          `json:"currency"`
	Enabled         bool            `json:"enabled"`
	ConfirmedAt     time.Time       `json:"confirmed_at,omitzero"`
	DisabledAt      time.Time       `json:"disabled_at,omitzero"`
	CreatedAt       time.Time       `json:"created_at"`
}

// terms is the rule's terms in one canonical string: the code that confirms
// a rule is bound to exactly these terms.
func (r *Rule) terms() string {
	return fmt.Sprintf("rule:%d;account:%d;trigger:%s;accrued_above:%s;balance_below:%s;topup:%s;max:%s;otp_free_below:%s;method:%d;currency:%s",
		r.ID, r.AccountID, r.Trigger, r.AccruedAbove, r.BalanceBelow, r.TopUpAmount, r.MaxAmount, r.OTPFreeBelow, r.PaymentMethodID, r.Currency)
}

func (r *Rule) binding() otp.Binding {
	return otp.Binding{Purpose: otp.AutopayEnrol, HouseholdID: r.HouseholdID, Amount: r.MaxAmount, Currency: r.Currency, Subject: r.terms()}
}

// describe says in words what the rule does, for the code message.
func (r *Rule) describe(m Method) string {
	var what string
	switch r.Trigger {
	case TriggerBillIssued:
		what = "pay each bill when it is issued"
	case TriggerAccruedAbove:
		what = fmt.Sprintf("pay your usage so far when it passes %s %s", tariff.FormatMoney(r.AccruedAbove, r.Currency), r.Currency)
	case TriggerBalanceBelow:
		what = fmt.Sprintf("top up %s %s when your prepaid balance falls below %s %s",
			tariff.FormatMoney(r.TopUpAmount, r.Currency), r.Currency, tariff.FormatMoney(r.BalanceBelow, r.Currency), r.Currency)
		if r.OTPFreeBelow.IsPositive() {
			what += fmt.Sprintf(", without a code up to %s %s", tariff.FormatMoney(r.OTPFreeBelow, r.Currency), r.Currency)
		}
	}
	card := strings.TrimSpace(m.Brand + " " + m.Last4)
	return fmt.Sprintf("%s, at most %s %s without asking (larger payments always need a code), with card %s",
		what, tariff.FormatMoney(r.MaxAmount, r.Currency), r.Currency, card)
}

// SetupStore persists phones, payment methods and auto-pay rules. The
// Update methods lock the row, run fn and save what fn changed, with what fn
// did through SetupTx, in one transaction.
type SetupStore interface {
	Phones(ctx context.Context, householdID int64) ([]Phone, error)
	// InsertPhone records a number (or returns the household's existing
	// row for it).
	InsertPhone(ctx context.Context, householdID int64, e164 string, now time.Time) (Phone, error)
	UpdatePhone(ctx context.Context, id int64, fn func(SetupTx, *Phone) error) error

	Methods(ctx context.Context, householdID int64) ([]Method, error)
	Method(ctx context.Context, id int64) (Method, error)
	// InsertMethod records a method, or returns the existing one of the
	// household with the same gateway token.
	InsertMethod(ctx context.Context, m Method, now time.Time) (Method, error)
	DisableMethod(ctx context.Context, householdID, id int64, now time.Time) error

	Rules(ctx context.Context, accountID int64) ([]Rule, error)
	// ActiveRule returns the enabled rule of an account for a trigger.
	ActiveRule(ctx context.Context, accountID int64, t Trigger) (Rule, bool, error)
	// ReplaceRule stores r as the account's rule for its trigger, not
	// enabled until confirmed; the previous rule stops at once. It checks
	// that the account and the method belong to the household and fills in
	// the account's currency.
	ReplaceRule(ctx context.Context, r Rule, now time.Time) (Rule, error)
	// UpdateRule saves Enabled, ConfirmedAt and DisabledAt; the account's
	// thresholds follow the enabled rules (billing raises the events).
	UpdateRule(ctx context.Context, id int64, fn func(SetupTx, *Rule) error) error
}

// SetupTx is what a locked phone or rule's transaction may do.
type SetupTx interface {
	LockOTPFailures(ctx context.Context, householdID int64, day time.Time) (int, error)
	SetOTPFailures(ctx context.Context, householdID int64, day time.Time, failures int, locked bool, now time.Time) error
	QueueSMS(ctx context.Context, m SMS, now time.Time) (int64, error)
	VerifiedPhone(ctx context.Context, householdID int64) (string, error)
	// SubjectCode and SaveSubjectCode keep the code of a phone (purpose
	// phone_verify) or a rule (purpose autopay_enrol).
	SubjectCode(ctx context.Context, purpose otp.Purpose, id int64) (*otp.Code, error)
	SaveSubjectCode(ctx context.Context, purpose otp.Purpose, id int64, c *otp.Code) error
}

// Setup is the part of the service that handles phones, payment methods
// and auto-pay rules.
type Setup struct {
	s      *Service
	store  SetupStore
	region string
	// Inspector tells what a gateway token is; without one, payment methods
	// cannot be added through the API.
	Inspector MethodInspector
}

// NewSetup returns the setup service over the payment service's policy,
// sender and clock. region is the default region of numbers written
// without a country code (for example "GB").
func (s *Service) NewSetup(store SetupStore, region string) *Setup {
	return &Setup{s: s, store: store, region: region}
}

// Phones lists a household's phones.
func (st *Setup) Phones(ctx context.Context, householdID int64) ([]Phone, error) {
	return st.store.Phones(ctx, householdID)
}

// AddPhone records a number for the household and sends it a code to
// verify it. An already verified number is returned as it is.
func (st *Setup) AddPhone(ctx context.Context, householdID int64, raw string) (Phone, error) {
	e164, err := phone.Normalize(raw, st.region)
	if err != nil {
		return Phone{}, err
	}
	p, err := st.store.InsertPhone(ctx, householdID, e164, st.s.Now())
	if err != nil {
		return Phone{}, err
	}
	if p.Verified() {
		return p, nil
	}
	return p, st.SendPhoneCode(ctx, householdID, p.ID)
}

// subjectCode issues the first code for a subject or a resend within the
// policy, and queues its message. It returns the message to deliver after
// commit, or the policy's refusal.
func (st *Setup) subjectCode(ctx context.Context, tx SetupTx, purpose otp.Purpose, id int64, b otp.Binding, to string,
	text func(code string) string) (out outgoing, refused, err error) {
	now := st.s.Now()
	failures, err := tx.LockOTPFailures(ctx, b.HouseholdID, otp.Day(now))
	if err != nil {
		return outgoing{}, nil, err
	}
	c, err := tx.SubjectCode(ctx, purpose, id)
	if err != nil {
		return outgoing{}, nil, err
	}
	var code string
	if c == nil || c.Used() {
		var fresh otp.Code
		code, fresh, err = st.s.otp.Issue(b, failures)
		if c != nil {
			fresh.ID = c.ID
		}
		c = &fresh
	} else {
		c.Binding = b
		code, err = st.s.otp.Resend(c, failures)
	}
	if err != nil {
		if isPolicy(err) {
			return outgoing{}, err, nil
		}
		return outgoing{}, nil, err
	}
	c.Binding = b
	if err := tx.SaveSubjectCode(ctx, purpose, id, c); err != nil {
		return outgoing{}, nil, err
	}
	msg := text(code)
	mid, err := tx.QueueSMS(ctx, SMS{HouseholdID: b.HouseholdID, To: to, Purpose: "otp", Provider: st.s.cfg.SMSProvider,
		Body: strings.ReplaceAll(msg, code, strings.Repeat("•", len(code)))}, now)
	if err != nil {
		return outgoing{}, nil, err
	}
	return outgoing{id: mid, to: to, text: msg}, nil, nil
}

// checkSubject checks a code against a subject's, counting the check and,
// when wrong, the household's failures. It returns the policy's refusal.
func (st *Setup) checkSubject(ctx context.Context, tx SetupTx, purpose otp.Purpose, id int64, b otp.Binding, code string) (refused error, err error) {
	now := st.s.Now()
	day := otp.Day(now)
	failures, err := tx.LockOTPFailures(ctx, b.HouseholdID, day)
	if err != nil {
		return nil, err
	}
	c, err := tx.SubjectCode(ctx, purpose, id)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return apperr.New(apperr.Conflict, "no code was sent; ask for one"), nil
	}
	c.Binding = b
	res, cerr := st.s.otp.Check(c, b, code, failures)
	if err := tx.SaveSubjectCode(ctx, purpose, id, c); err != nil {
		return nil, err
	}
	if res.Failed {
		failures++
		if err := tx.SetOTPFailures(ctx, b.HouseholdID, day, failures, st.s.otp.Locked(failures), now); err != nil {
			return nil, err
		}
	}
	return cerr, nil
}

// SendPhoneCode sends (or re-sends, within the policy) the code that
// verifies a phone, to that phone.
func (st *Setup) SendPhoneCode(ctx context.Context, householdID, phoneID int64) error {
	var out outgoing
	var refused error
	err := st.store.UpdatePhone(ctx, phoneID, func(tx SetupTx, p *Phone) error {
		if p.HouseholdID != householdID {
			return apperr.New(apperr.NotFound, "phone %d not found", phoneID)
		}
		if p.Verified() {
			return apperr.New(apperr.Conflict, "phone %d is already verified", phoneID)
		}
		var err error
		out, refused, err = st.subjectCode(ctx, tx, otp.PhoneVerify, p.ID, p.binding(), p.E164, func(code string) string {
			return fmt.Sprintf("Meterflow: %s is your code to verify this number for payment codes and alerts. It expires in %d minutes. Never share it.",
				code, int(st.s.otp.Policy.TTL.Minutes()))
		})
		return err
	})
	return st.afterSend(ctx, err, refused, out)
}

// afterSend finishes a send whose transaction has ended: a failure, or the
// policy's refusal, is returned; otherwise the queued message goes out.
func (st *Setup) afterSend(ctx context.Context, err, refused error, out outgoing) error {
	if err != nil {
		return err
	}
	if refused != nil {
		return refused
	}
	return st.s.deliver(ctx, out)
}

// isPolicy reports whether err is the OTP policy refusing (a rate limit,
// a wrong code), as opposed to a failure of the store.
func isPolicy(err error) bool {
	var ae *apperr.Error
	return errors.As(err, &ae)
}

// VerifyPhone checks the code sent to a phone and marks it verified.
func (st *Setup) VerifyPhone(ctx context.Context, householdID, phoneID int64, code string) (Phone, error) {
	var out Phone
	var refused error
	err := st.store.UpdatePhone(ctx, phoneID, func(tx SetupTx, p *Phone) error {
		if p.HouseholdID != householdID {
			return apperr.New(apperr.NotFound, "phone %d not found", phoneID)
		}
		if p.Verified() {
			return apperr.New(apperr.Conflict, "phone %d is already verified", phoneID)
		}
		var err error
		if refused, err = st.checkSubject(ctx, tx, otp.PhoneVerify, p.ID, p.binding(), code); err != nil || refused != nil {
			return err
		}
		p.VerifiedAt = st.s.Now()
		out = *p
		return nil
	})
	if err != nil {
		return Phone{}, err
	}
	return out, refused
}

// Methods lists a household's usable payment methods.
func (st *Setup) Methods(ctx context.Context, householdID int64) ([]Method, error) {
	return st.store.Methods(ctx, householdID)
}

// AddMethod records a payment method from the gateway's token (made by the
// gateway's own card form: a card number never reaches Meterflow). The
// gateway is asked what the token is; an unknown or expired card is
// refused, and only brand, last four digits and expiry are kept.
func (st *Setup) AddMethod(ctx context.Context, householdID int64, token string) (Method, error) {
	if st.Inspector == nil {
		return Method{}, apperr.New(apperr.Unavailable, "this server's gateway cannot add payment methods")
	}
	token = strings.TrimSpace(token)
	if token == "" || len(token) > 255 {
		return Method{}, apperr.Field("token", "must be a gateway token of 1 to 255 characters")
	}
	if strings.Trim(token, "0123456789 -") == "" {
		return Method{}, apperr.Field("token", "send the gateway's token, never a card number")
	}
	info, err := st.Inspector.Method(ctx, token)
	if err != nil {
		if c := apperr.CodeOf(err); c == apperr.NotFound || c == apperr.Invalid {
			return Method{}, apperr.Field("token", "the gateway does not know this payment method")
		}
		return Method{}, err
	}
	if err := info.Validate(); err != nil {
		return Method{}, err
	}
	if info.ExpiredAt(st.s.Now()) {
		return Method{}, apperr.Field("token", "this card has expired")
	}
	return st.store.InsertMethod(ctx, Method{HouseholdID: householdID, Gateway: st.s.cfg.Gateway, Token: token,
		Brand: info.Brand, Last4: info.Last4, ExpMonth: info.ExpMonth, ExpYear: info.ExpYear}, st.s.Now())
}

// DisableMethod stops a payment method from being used.
func (st *Setup) DisableMethod(ctx context.Context, householdID, id int64) error {
	return st.store.DisableMethod(ctx, householdID, id, st.s.Now())
}

// Rules lists an account's auto-pay rules, enabled or waiting for their
// confirmation.
func (st *Setup) Rules(ctx context.Context, accountID int64) ([]Rule, error) {
	return st.store.Rules(ctx, accountID)
}

// Enrol asks for an auto-pay rule: it is stored, not yet in effect, and a
// code stating its terms goes to the household's verified phone. Confirm
// puts it in effect.
func (st *Setup) Enrol(ctx context.Context, r Rule) (Rule, error) {
	if err := r.validate(); err != nil {
		return Rule{}, err
	}
	if _, err := st.method(ctx, r.HouseholdID, r.PaymentMethodID); err != nil {
		return Rule{}, err
	}
	// Paying the cost so far and paying each bill would pay the same usage
	// twice: an account has one or the other.
	if r.Trigger == TriggerBillIssued || r.Trigger == TriggerAccruedAbove {
		rules, err := st.store.Rules(ctx, r.AccountID)
		if err != nil {
			return Rule{}, err
		}
		for _, o := range rules {
			if o.Trigger != r.Trigger && (o.Trigger == TriggerBillIssued || o.Trigger == TriggerAccruedAbove) && o.DisabledAt.IsZero() {
				return Rule{}, apperr.Field("trigger", "the account already has a %s rule (%d); turn it off first", o.Trigger, o.ID)
			}
		}
	}
	got, err := st.store.ReplaceRule(ctx, r, st.s.Now())
	if err != nil {
		return Rule{}, err
	}
	return got, st.SendRuleCode(ctx, r.HouseholdID, got.ID)
}

func (st *Setup) method(ctx context.Context, householdID, id int64) (Method, error) {
	m, err := st.store.Method(ctx, id)
	if apperr.CodeOf(err) == apperr.NotFound || (err == nil && m.HouseholdID != householdID) {
		return Method{}, apperr.Field("payment_method_id", "no payment method %d", id)
	}
	return m, err
}

func (r Rule) validate() error {
	var errs []error
	pos := func(field string, d decimal.Decimal) {
		if !d.IsPositive() {
			errs = append(errs, apperr.Field(field, "must be a positive amount"))
		} else if d.Exponent() < -2 {
			errs = append(errs, apperr.Field(field, "at most two decimal places"))
		}
	}
	unset := func(field string, d decimal.Decimal) {
		if !d.IsZero() {
			errs = append(errs, apperr.Field(field, "does not apply to trigger %s", r.Trigger))
		}
	}
	pos("max_amount", r.MaxAmount)
	switch r.Trigger {
	case TriggerBillIssued:
		unset("accrued_above", r.AccruedAbove)
		unset("balance_below", r.BalanceBelow)
		unset("topup_amount", r.TopUpAmount)
		unset("otp_free_below", r.OTPFreeBelow)
	case TriggerAccruedAbove:
		pos("accrued_above", r.AccruedAbove)
		unset("balance_below", r.BalanceBelow)
		unset("topup_amount", r.TopUpAmount)
		unset("otp_free_below", r.OTPFreeBelow)
	case TriggerBalanceBelow:
		if r.BalanceBelow.IsNegative() || r.BalanceBelow.Exponent() < -2 {
			errs = append(errs, apperr.Field("balance_below", "must be zero or a positive amount"))
		}
		pos("topup_amount", r.TopUpAmount)
		unset("accrued_above", r.AccruedAbove)
		if !r.OTPFreeBelow.IsZero() {
			pos("otp_free_below", r.OTPFreeBelow)
			if r.OTPFreeBelow.GreaterThan(r.MaxAmount) {
				errs = append(errs, apperr.Field("otp_free_below", "cannot be above max_amount"))
			}
		}
	default:
		errs = append(errs, apperr.Field("trigger", "want bill_issued, accrued_above or balance_below"))
	}
	if r.PaymentMethodID <= 0 {
		errs = append(errs, apperr.Field("payment_method_id", "must be set"))
	}
	return errors.Join(errs...)
}

// SendRuleCode sends (or re-sends) the code that puts a rule in effect.
func (st *Setup) SendRuleCode(ctx context.Context, householdID, ruleID int64) error {
	var out outgoing
	var refused error
	err := st.store.UpdateRule(ctx, ruleID, func(tx SetupTx, r *Rule) error {
		if r.HouseholdID != householdID {
			return apperr.New(apperr.NotFound, "auto-pay rule %d not found", ruleID)
		}
		if r.Enabled || !r.DisabledAt.IsZero() {
			return apperr.New(apperr.Conflict, "auto-pay rule %d is not waiting for confirmation", ruleID)
		}
		to, err := tx.VerifiedPhone(ctx, householdID)
		if err != nil {
			return err
		}
		if to == "" {
			return apperr.New(apperr.Conflict, "verify a phone first: auto-pay is confirmed by a code sent to it")
		}
		m, err := st.method(ctx, householdID, r.PaymentMethodID)
		if err != nil {
			return err
		}
		out, refused, err = st.subjectCode(ctx, tx, otp.AutopayEnrol, r.ID, r.binding(), to, func(code string) string {
			return fmt.Sprintf("Meterflow: %s is your code to turn on auto-pay: %s. It expires in %d minutes. Never share it.",
				code, r.describe(m), int(st.s.otp.Policy.TTL.Minutes()))
		})
		return err
	})
	return st.afterSend(ctx, err, refused, out)
}

// ConfirmRule checks the code for a rule and puts the rule in effect.
func (st *Setup) ConfirmRule(ctx context.Context, householdID, ruleID int64, code string) (Rule, error) {
	var out Rule
	var refused error
	err := st.store.UpdateRule(ctx, ruleID, func(tx SetupTx, r *Rule) error {
		if r.HouseholdID != householdID {
			return apperr.New(apperr.NotFound, "auto-pay rule %d not found", ruleID)
		}
		if r.Enabled || !r.DisabledAt.IsZero() {
			return apperr.New(apperr.Conflict, "auto-pay rule %d is not waiting for confirmation", ruleID)
		}
		var err error
		if refused, err = st.checkSubject(ctx, tx, otp.AutopayEnrol, r.ID, r.binding(), code); err != nil || refused != nil {
			return err
		}
		r.Enabled, r.ConfirmedAt = true, st.s.Now()
		out = *r
		return nil
	})
	if err != nil {
		return Rule{}, err
	}
	return out, refused
}

// DisableRule stops a rule. Payments it already created are not touched.
func (st *Setup) DisableRule(ctx context.Context, householdID, ruleID int64) (Rule, error) {
	var out Rule
	err := st.store.UpdateRule(ctx, ruleID, func(_ SetupTx, r *Rule) error {
		if r.HouseholdID != householdID {
			return apperr.New(apperr.NotFound, "auto-pay rule %d not found", ruleID)
		}
		if !r.DisabledAt.IsZero() {
			out = *r
			return nil
		}
		r.Enabled, r.DisabledAt = false, st.s.Now()
		out = *r
		return nil
	})
	return out, err
}
