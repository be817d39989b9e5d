// Package otp owns one-time passwords: how a code is made, what it is bound
// to, how it is kept, and when a check of it succeeds.
//
// A code is a string of decimal digits from crypto/rand. Only an
// HMAC-SHA256 of it is kept, under a server key, and the HMAC's input holds
// the code's binding (its purpose and subject: the payment's id, amount,
// currency, payee and bill, or the phone being verified), so a code issued
// for one payment cannot confirm another, nor a changed amount. A check
// compares MACs in constant time; a code is single use, expires, allows a
// limited number of checks, and is resent a limited number of times no
// sooner than a set interval. Failed checks count per household and day, and
// at a limit lock the household's confirmations for the rest of that UTC
// day.
//
// The package holds no state and does no I/O: callers keep a Code (the
// PostgreSQL otp_codes row) and the day's failure count, and persist what
// Issue, Resend and Check change, in the transaction that read them.
package otp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
)

// Codes of the errors a check can return, beside apperr.RateLimited.
const (
	CodeWrong   apperr.Code = "otp_invalid"
	CodeExpired apperr.Code = "otp_expired"
	CodeUsed    apperr.Code = "otp_used"
)

// The errors Check, Issue and Resend return. Compare with errors.Is.
var (
	ErrWrong     = &apperr.Error{Code: CodeWrong, Message: "the code is not correct"}
	ErrExpired   = &apperr.Error{Code: CodeExpired, Message: "the code has expired; ask for a new one"}
	ErrUsed      = &apperr.Error{Code: CodeUsed, Message: "the code has already been used"}
	ErrExhausted = &apperr.Error{Code: apperr.RateLimited, Message: "too many wrong codes for this request; start again"}
	ErrLocked    = &apperr.Error{Code: apperr.RateLimited, Message: "too many wrong codes today; confirmations are locked until tomorrow"}
	ErrTooSoon   = &apperr.Error{Code: apperr.RateLimited, Message: "a code was sent moments ago; wait before asking again"}
	ErrTooMany   = &apperr.Error{Code: apperr.RateLimited, Message: "no more codes can be sent for this request"}
)

// Policy is the OTP policy. DefaultPolicy holds the defaults.
type Policy struct {
	// Digits is the length of a code (at least 6, NIST SP 800-63B).
	Digits int
	// TTL is how long a code is valid after it is sent.
	TTL time.Duration
	// MaxChecks is how many checks a subject allows, across resends: a
	// resend does not buy more guesses.
	MaxChecks int
	// ResendAfter is the least time between two sends for one subject.
	ResendAfter time.Duration
	// MaxSends is how many codes one subject may be sent.
	MaxSends int
	// DailyFailures is how many failed checks lock a household's
	// confirmations for the rest of the UTC day.
	DailyFailures int
}

// DefaultPolicy returns the default policy: 6 digits, valid 5 minutes, 5
// checks, a resend after 60 seconds, 5 sends, and 10 failures a day lock.
func DefaultPolicy() Policy {
	return Policy{Digits: 6, TTL: 5 * time.Minute, MaxChecks: 5, ResendAfter: 60 * time.Second, MaxSends: 5, DailyFailures: 10}
}

// Validate reports every problem with p.
func (p Policy) Validate() error {
	var errs []error
	if p.Digits < 6 || p.Digits > 10 {
		errs = append(errs, errors.New("otp digits: must be between 6 and 10"))
	}
	if p.TTL <= 0 || p.TTL > time.Hour {
		errs = append(errs, errors.New("otp ttl: must be positive and at most an hour"))
	}
	if p.MaxChecks < 1 || p.MaxChecks > 10 {
		errs = append(errs, errors.New("otp max checks: must be between 1 and 10"))
	}
	if p.ResendAfter < 0 {
		errs = append(errs, errors.New("otp resend after: must not be negative"))
	}
	if p.MaxSends < 1 {
		errs = append(errs, errors.New("otp max sends: must be at least 1"))
	}
	if p.DailyFailures < 1 || p.DailyFailures > 100 {
		errs = append(errs, errors.New("otp daily failures: must be between 1 and 100"))
	}
	return errors.Join(errs...)
}

// Purpose is what a code is for.
type Purpose string

const (
	PaymentConfirm Purpose = "payment_confirm"
	PhoneVerify    Purpose = "phone_verify"
	// AutopayEnrol confirms an auto-pay rule; Subject holds its terms.
	AutopayEnrol Purpose = "autopay_enrol"
	// SignIn is the second factor of a sign-in; Subject names the user and
	// the challenge.
	SignIn Purpose = "sign_in"
)

// Binding is what a code confirms. Every field enters the HMAC, so a code
// checks only against the binding it was issued for.
type Binding struct {
	Purpose     Purpose
	HouseholdID int64
	// PaymentID, Amount, Currency, Payee and BillID (0 for none) bind a
	// payment confirmation.
	PaymentID int64
	Amount    decimal.Decimal
	Currency  string
	Payee     string
	BillID    int64
	// PhoneID and Phone (E.164) bind a phone verification.
	PhoneID int64
	Phone   string
	// Subject binds anything else (a sign-in's user and challenge). It
	// enters the MAC only when set, so codes bound before it existed keep
	// their MACs.
	Subject string
}

// encode writes b unambiguously: every field is length-prefixed, and the
// amount is in its canonical form (10.50 and 10.5 are the same amount).
func (b Binding) encode(w io.Writer) {
	field := func(s string) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		_, _ = w.Write(n[:])
		_, _ = io.WriteString(w, s)
	}
	field("meterflow-otp-v1")
	field(string(b.Purpose))
	field(fmt.Sprint(b.HouseholdID))
	field(fmt.Sprint(b.PaymentID))
	field(b.Amount.String())
	field(b.Currency)
	field(b.Payee)
	field(fmt.Sprint(b.BillID))
	field(fmt.Sprint(b.PhoneID))
	field(b.Phone)
	if b.Subject != "" {
		field(b.Subject)
	}
}

// Code is the kept state of a subject's code: never the code itself.
type Code struct {
	ID         int64
	Binding    Binding
	MAC        []byte
	KeyID      string
	ExpiresAt  time.Time
	Attempts   int
	Sends      int
	LastSentAt time.Time
	UsedAt     time.Time // zero: unused
	CreatedAt  time.Time
}

// Used reports whether the code has been used.
func (c *Code) Used() bool { return !c.UsedAt.IsZero() }

// Issuer makes and checks codes under one policy and key.
type Issuer struct {
	Policy Policy
	// Key is the HMAC key: at least 32 random bytes, kept out of the
	// database. KeyID names it, for rotation.
	Key   []byte
	KeyID string
	// Now is the clock; Rand the source of codes (crypto/rand by default).
	Now  func() time.Time
	Rand io.Reader
}

// NewIssuer returns an issuer after checking its policy and key.
func NewIssuer(p Policy, key []byte, keyID string, now func() time.Time) (*Issuer, error) {
	var errs []error
	if err := p.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(key) < 32 {
		errs = append(errs, errors.New("otp key: must be at least 32 bytes"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Issuer{Policy: p, Key: key, KeyID: keyID, Now: now, Rand: rand.Reader}, nil
}

func (is *Issuer) mac(b Binding, code string) []byte {
	h := hmac.New(sha256.New, is.Key)
	b.encode(h)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(code)))
	h.Write(n[:])
	h.Write([]byte(code))
	return h.Sum(nil)
}

// generate returns a uniformly random code of the policy's length.
func (is *Issuer) generate() (string, error) {
	max := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(is.Policy.Digits)), nil)
	n, err := rand.Int(is.Rand, max)
	if err != nil {
		return "", fmt.Errorf("generate code: %w", err)
	}
	s := n.String()
	return strings.Repeat("0", is.Policy.Digits-len(s)) + s, nil
}

// Issue makes the first code for a binding. It returns the code, to be sent
// and forgotten, and the state to keep. It refuses when failuresToday, the
// household's failed checks today, lock confirmations.
func (is *Issuer) Issue(b Binding, failuresToday int) (string, Code, error) {
	if is.Locked(failuresToday) {
		return "", Code{}, ErrLocked
	}
	code, err := is.generate()
	if err != nil {
		return "", Code{}, err
	}
	now := is.Now()
	return code, Code{
		Binding: b, MAC: is.mac(b, code), KeyID: is.KeyID,
		ExpiresAt: now.Add(is.Policy.TTL), Sends: 1, LastSentAt: now, CreatedAt: now,
	}, nil
}

// Resend replaces c's code with a new one when the policy allows another
// send: not sooner than ResendAfter after the last, at most MaxSends in all,
// and not once the code is used or its checks are spent. The binding may
// not change: a changed payment needs a new payment.
func (is *Issuer) Resend(c *Code, failuresToday int) (string, error) {
	now := is.Now()
	switch {
	case is.Locked(failuresToday):
		return "", ErrLocked
	case c.Used():
		return "", ErrUsed
	case c.Attempts >= is.Policy.MaxChecks:
		return "", ErrExhausted
	case c.Sends >= is.Policy.MaxSends:
		return "", ErrTooMany
	case now.Before(c.LastSentAt.Add(is.Policy.ResendAfter)):
		return "", ErrTooSoon
	}
	code, err := is.generate()
	if err != nil {
		return "", err
	}
	c.MAC, c.KeyID = is.mac(c.Binding, code), is.KeyID
	c.ExpiresAt = now.Add(is.Policy.TTL)
	c.Sends++
	c.LastSentAt = now
	return code, nil
}

// Locked reports whether failuresToday locks confirmations.
func (is *Issuer) Locked(failuresToday int) bool { return failuresToday >= is.Policy.DailyFailures }

// Result is what a check did, for the caller to persist.
type Result struct {
	// Failed reports a failed check that counts towards the household's
	// daily limit (a wrong code; not a check refused before comparing).
	Failed bool
}

// Check checks code against c for binding b. It updates c (attempts, used)
// and returns nil only for the right, unused, unexpired code with checks
// left, bound to b. Every check counts in c.Attempts; Result.Failed says
// whether the household's failure count must grow. The comparison is of
// MACs, in constant time.
func (is *Issuer) Check(c *Code, b Binding, code string, failuresToday int) (Result, error) {
	now := is.Now()
	switch {
	case is.Locked(failuresToday):
		return Result{}, ErrLocked
	case c.Used():
		return Result{}, ErrUsed
	case c.Attempts >= is.Policy.MaxChecks:
		return Result{}, ErrExhausted
	}
	c.Attempts++
	code = strings.TrimSpace(code)
	ok := hmac.Equal(is.mac(b, code), c.MAC)
	if !ok {
		return Result{Failed: true}, ErrWrong
	}
	if !now.Before(c.ExpiresAt) {
		return Result{}, ErrExpired
	}
	c.UsedAt = now
	return Result{}, nil
}

// Day is the UTC day that failed checks at t count towards.
func Day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
