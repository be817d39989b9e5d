package payment

import (
	"context"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/ledger"
	"github.com/meterflow/meterflow/internal/otp"
)

// State is where a payment is in its life.
type State string

const (
	Created   State = "created"  // waiting for its code to be sent
	OTPSent   State = "otp_sent" // waiting for the household to confirm
	Confirmed State = "confirmed"
	Charging  State = "charging" // the gateway has been, or is being, asked
	Succeeded State = "succeeded"
	Failed    State = "failed"
	Expired   State = "expired" // not confirmed by its deadline
	Canceled  State = "canceled"
)

// transitions is the state machine; the database enforces the same one.
var transitions = map[State][]State{
	Created:   {OTPSent, Expired, Canceled},
	OTPSent:   {Confirmed, Expired, Canceled},
	Confirmed: {Charging},
	Charging:  {Succeeded, Failed},
}

// CanMove reports whether the state machine allows from → to.
func CanMove(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Final reports whether s is a terminal state.
func (s State) Final() bool { return len(transitions[s]) == 0 }

// Outbox event kinds of payment state changes. The store writes one in the
// same transaction as the move into its state, keyed "<kind>:<payment id>",
// so alerts learn of each change exactly once.
const (
	EventOTPSent   = "payment.otp_sent" // the household is asked to confirm
	EventSucceeded = "payment.succeeded"
	EventFailed    = "payment.failed"
	EventExpired   = "payment.expired"
)

// EventKind is the outbox event a move into s writes, or "" for none
// (confirmed and charging are steps the household does not need to hear
// about; canceled is the household's own doing).
func EventKind(s State) string {
	switch s {
	case OTPSent:
		return EventOTPSent
	case Succeeded:
		return EventSucceeded
	case Failed:
		return EventFailed
	case Expired:
		return EventExpired
	}
	return ""
}

// Kind is what a payment pays.
type Kind string

const (
	KindBill    Kind = "bill"
	KindAccrued Kind = "accrued"
	KindTopUp   Kind = "topup"
)

// Payment is one payment.
type Payment struct {
	ID              int64
	HouseholdID     int64
	AccountID       int64
	BillID          int64 // 0: none
	AutoPayRuleID   int64 // 0: none
	Kind            Kind
	Amount          decimal.Decimal
	Currency        string
	Payee           string
	PaymentMethodID int64
	// MethodToken is the gateway's token of the payment method (read only).
	MethodToken string
	// RequiresOTP is false only for a payment its auto-pay rule allowed
	// without a code (a small prepaid top-up the household chose to allow).
	RequiresOTP bool
	State       State
	// IdempotencyKey is unique per payment and is the key of every charge
	// attempt sent to the gateway.
	IdempotencyKey  string
	Gateway         string
	GatewayChargeID string
	GatewayStatus   string
	// Fee is the gateway's fee of a succeeded charge (zero if unknown).
	Fee decimal.Decimal
	// Attempts counts charge attempts sent (or about to be sent).
	Attempts      int
	FailureReason string
	ConfirmBy     time.Time
	// LeaseUntil is when a charging payment may next be (re)charged by
	// Recover: a charge in flight holds the lease.
	LeaseUntil  time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
	OTPSentAt   time.Time
	ConfirmedAt time.Time
	ChargingAt  time.Time
	SettledAt   time.Time
}

// move changes p's state, refusing what the state machine does not allow.
func (p *Payment) move(to State, now time.Time) error {
	if !CanMove(p.State, to) && !(p.State == Created && to == Confirmed && !p.RequiresOTP) {
		return errConflict("payment %d is %s and cannot become %s", p.ID, p.State, to)
	}
	p.State, p.UpdatedAt = to, now
	switch to {
	case OTPSent:
		p.OTPSentAt = now
	case Confirmed:
		p.ConfirmedAt = now
	case Charging:
		p.ChargingAt = now
	case Succeeded, Failed, Expired, Canceled:
		p.SettledAt = now
	}
	return nil
}

// what says in words what p pays, for messages.
func (p *Payment) what() string {
	switch p.Kind {
	case KindTopUp:
		return "a prepaid top-up"
	case KindAccrued:
		return "your usage so far"
	}
	if p.BillID != 0 {
		return fmt.Sprintf("bill %d", p.BillID)
	}
	return "your bill"
}

// Binding is what the payment's code is bound to.
func (p *Payment) Binding() otp.Binding {
	return otp.Binding{Purpose: otp.PaymentConfirm, HouseholdID: p.HouseholdID, PaymentID: p.ID,
		Amount: p.Amount, Currency: p.Currency, Payee: p.Payee, BillID: p.BillID}
}

// ChargeStatus is a gateway's verdict on a charge.
type ChargeStatus string

const (
	ChargeSucceeded      ChargeStatus = "succeeded"
	ChargeDeclined       ChargeStatus = "declined"
	ChargeRequiresAction ChargeStatus = "requires_action"
	ChargeProcessing     ChargeStatus = "processing"
)

// ChargeRequest asks a gateway to charge a payment method.
type ChargeRequest struct {
	// IdempotencyKey makes a repeated request return the first one's result;
	// the same key with other parameters is an error.
	IdempotencyKey     string
	Amount             decimal.Decimal
	Currency           string
	PaymentMethodToken string
	Description        string
}

// ChargeResult is a gateway's answer.
type ChargeResult struct {
	ID     string
	Status ChargeStatus
	// DeclineCode says why a charge was declined (insufficient_funds, ...).
	DeclineCode string
	// Fee is what the gateway keeps of a succeeded charge, in the charge's
	// currency; zero when the gateway does not say at charge time (its
	// fees then reach the ledger with the payout).
	Fee decimal.Decimal
}

// Gateway charges payment methods. Implementations must be safe for
// concurrent use and must honour IdempotencyKey for at least as long as the
// service keeps retrying (Config.KeyRetention). An error means the outcome
// is unknown and the charge may be retried with the same key, unless it
// carries apperr code invalid or conflict (a request that can never
// succeed, such as a key reused with other parameters).
type Gateway interface {
	Charge(ctx context.Context, req ChargeRequest) (ChargeResult, error)
}

// Sender sends an SMS to an E.164 number and returns the provider's message
// id. Implementations must be safe for concurrent use.
type Sender interface {
	Send(ctx context.Context, to, body string) (providerID string, err error)
}

// SMS is a message to a household, recorded before it is sent.
type SMS struct {
	ID          int64
	HouseholdID int64
	To          string
	Purpose     string // "otp" or "notice"
	PaymentID   int64
	// Body is what is stored: for a one-time password, the text with the
	// code masked. The text sent is kept only in memory.
	Body string
	// Provider names the SMS provider the message goes through.
	Provider string
}

// Store persists payments. Update and the Tx it hands out run in one
// transaction with the payment's row locked, so transitions of one payment
// are serialised across goroutines and processes.
type Store interface {
	// CreatePayment inserts p unless a payment with its idempotency key
	// exists, and returns the stored payment and whether it was created.
	CreatePayment(ctx context.Context, p Payment) (Payment, bool, error)
	Payment(ctx context.Context, id int64) (Payment, error)
	// Update locks payment id, runs fn and, when fn returns nil, saves the
	// payment as fn left it and commits what fn did through Tx.
	Update(ctx context.Context, id int64, fn func(Tx, *Payment) error) error
	// DuePending lists payments in created or otp_sent whose confirm_by is
	// not after now; DueCharges lists confirmed payments and charging
	// payments whose lease_until is not after now.
	DuePending(ctx context.Context, now time.Time, limit int) ([]int64, error)
	DueCharges(ctx context.Context, now time.Time, limit int) ([]int64, error)
	// SMSResult records what the sender did with a message.
	SMSResult(ctx context.Context, id int64, providerID string, sendErr error, now time.Time) error
}

// Tx is what a locked payment's transaction may do besides saving it.
type Tx interface {
	// VerifiedPhone returns the household's most recently verified phone,
	// or "" when it has none.
	VerifiedPhone(ctx context.Context, householdID int64) (string, error)
	// OTPCode returns the payment's code, or nil.
	OTPCode(ctx context.Context, paymentID int64) (*otp.Code, error)
	// SaveOTPCode inserts or updates the payment's code.
	SaveOTPCode(ctx context.Context, paymentID int64, c *otp.Code) error
	// LockOTPFailures locks and returns the household's failed checks on
	// day, so concurrent checks of one household are serialised.
	LockOTPFailures(ctx context.Context, householdID int64, day time.Time) (int, error)
	// SetOTPFailures stores the day's count; locked marks the lock.
	SetOTPFailures(ctx context.Context, householdID int64, day time.Time, failures int, locked bool, now time.Time) error
	QueueSMS(ctx context.Context, m SMS, now time.Time) (int64, error)
	// PostEntry records a balanced ledger entry once per key; it reports
	// whether it was new.
	PostEntry(ctx context.Context, e ledger.Entry) (bool, error)
	// MarkBillPaid sets an issued or overdue bill's status to paid.
	MarkBillPaid(ctx context.Context, billID int64) error
	// AddPrepaid adds amount to an account's prepaid balance.
	AddPrepaid(ctx context.Context, accountID int64, amount decimal.Decimal, now time.Time) error
}

// StateCount is how many payments are in a state, and their total per
// currency.
type StateCount struct {
	State    State           `json:"state"`
	Currency string          `json:"currency"`
	Count    int             `json:"count"`
	Amount   decimal.Decimal `json:"amount"`
}

// InboxMessage is a message in the development SMS inbox.
type InboxMessage struct {
	ID        int64     `json:"id"`
	To        string    `json:"to"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}
