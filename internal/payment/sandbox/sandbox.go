// Package sandbox is a payment gateway for development and tests: it charges
// nothing, answers deterministically by test card, and keeps idempotency
// keys as a real gateway does (the same key returns the first result; the
// same key with other parameters is an error).
//
// Test cards (tokenise them with Tokenize; payment methods store the token):
//
//	4242 4242 4242 4242  succeeds
//	4000 0000 0000 0002  declined (card_declined)
//	4000 0000 0000 9995  declined (insufficient_funds)
//	4000 0000 0000 0119  times out: the charge is recorded as succeeded, but
//	                     the call returns an error, as when a response is lost
//	4000 0025 0000 3155  requires_action (extra authentication)
//
// Any other number that passes the Luhn check succeeds.
//
// A token keeps the card's first six and last four digits, so Method can
// tell its brand and last four; every sandbox card expires TestExpMonth/
// TestExpYear. Charge refuses, as invalid, an amount with more decimals
// than its currency's minor unit and a currency Meterflow cannot bill in.
package sandbox

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/tariff"
)

// Test card numbers.
const (
	CardSuccess           = "4242424242424242"
	CardDeclined          = "4000000000000002"
	CardInsufficientFunds = "4000000000009995"
	CardTimeout           = "4000000000000119"
	CardRequiresAction    = "4000002500003155"
)

// ErrTimeout is what a charge of the timeout card returns (after recording
// the charge).
var ErrTimeout = apperr.New(apperr.Unavailable, "sandbox: gateway timed out")

// Charge is a charge the sandbox took (or declined).
type Charge struct {
	ID     string
	Key    string
	Amount decimal.Decimal
	Result payment.ChargeResult
}

type record struct {
	req    payment.ChargeRequest
	charge Charge
}

// Gateway is the sandbox gateway. The zero value is ready; it is safe for
// concurrent use.
type Gateway struct {
	mu      sync.Mutex
	byKey   map[string]*record
	charges []Charge
	// Calls counts every Charge call, repeats included.
	calls int
}

var (
	_ payment.Gateway         = (*Gateway)(nil)
	_ payment.MethodInspector = (*Gateway)(nil)
)

// The expiry Method reports for every sandbox card.
const (
	TestExpMonth = 12
	TestExpYear  = 2034
)

const tokenPrefix = "tok_sandbox_"

// Tokenize returns the sandbox token of a card number (spaces and dashes
// allowed). Only the token is ever stored.
func Tokenize(number string) (string, error) {
	n := strings.NewReplacer(" ", "", "-", "").Replace(number)
	if len(n) < 12 || len(n) > 19 || !luhn(n) {
		return "", apperr.Field("card_number", "not a valid card number")
	}
	return tokenPrefix + n[:6] + "_" + n[len(n)-4:], nil
}

// parseToken splits a sandbox token into the card's first six and last four
// digits.
func parseToken(token string) (bin, last4 string, ok bool) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return "", "", false
	}
	bin, last4, ok = strings.Cut(rest, "_")
	if !ok || len(bin) != 6 || len(last4) != 4 || !digits(bin) || !digits(last4) {
		return "", "", false
	}
	return bin, last4, true
}

func digits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// brand names a card's network from its first digits, in Stripe's words.
func brand(bin string) string {
	p2, _ := strconv.Atoi(bin[:2])
	p3, _ := strconv.Atoi(bin[:3])
	p4, _ := strconv.Atoi(bin[:4])
	switch {
	case bin[0] == '4':
		return "visa"
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720:
		return "mastercard"
	case p2 == 34, p2 == 37:
		return "amex"
	case p4 == 6011, p2 == 65, p3 >= 644 && p3 <= 649:
		return "discover"
	case p4 >= 3528 && p4 <= 3589:
		return "jcb"
	case p2 == 36, p2 == 38, p2 == 39, p3 >= 300 && p3 <= 305:
		return "diners"
	case p2 == 62:
		return "unionpay"
	}
	return "unknown"
}

// Method describes the card behind a sandbox token. A string that is not a
// sandbox token is not found.
func (g *Gateway) Method(ctx context.Context, token string) (payment.MethodInfo, error) {
	if err := ctx.Err(); err != nil {
		return payment.MethodInfo{}, err
	}
	bin, last4, ok := parseToken(token)
	if !ok {
		return payment.MethodInfo{}, apperr.New(apperr.NotFound, "sandbox: no payment method %q", token)
	}
	return payment.MethodInfo{Brand: brand(bin), Last4: last4, ExpMonth: TestExpMonth, ExpYear: TestExpYear}, nil
}

func luhn(n string) bool {
	sum := 0
	for i := range len(n) {
		d := int(n[len(n)-1-i] - '0')
		if d < 0 || d > 9 {
			return false
		}
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// Charge charges a sandbox token.
func (g *Gateway) Charge(ctx context.Context, req payment.ChargeRequest) (payment.ChargeResult, error) {
	if err := ctx.Err(); err != nil {
		return payment.ChargeResult{}, err
	}
	if req.IdempotencyKey == "" || len(req.IdempotencyKey) > 255 {
		return payment.ChargeResult{}, apperr.Field("idempotency_key", "must be 1 to 255 characters")
	}
	if !req.Amount.IsPositive() {
		return payment.ChargeResult{}, apperr.Field("amount", "must be positive")
	}
	minor, ok := tariff.MinorUnits(req.Currency)
	if !ok {
		return payment.ChargeResult{}, apperr.Field("currency", "sandbox: unknown currency %q", req.Currency)
	}
	if !req.Amount.Equal(req.Amount.Truncate(minor)) {
		return payment.ChargeResult{}, apperr.Field("amount", "sandbox: %s has more decimals than %s has", req.Amount, req.Currency)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	if g.byKey == nil {
		g.byKey = map[string]*record{}
	}
	if r, ok := g.byKey[req.IdempotencyKey]; ok {
		if !sameRequest(r.req, req) {
			return payment.ChargeResult{}, apperr.New(apperr.Conflict, "sandbox: idempotency key %q reused with other parameters", req.IdempotencyKey)
		}
		return r.charge.Result, nil
	}
	_, last4, ok := parseToken(req.PaymentMethodToken)
	if !ok {
		return payment.ChargeResult{}, apperr.Field("payment_method", "not a sandbox token")
	}
	id := fmt.Sprintf("ch_sandbox_%d", len(g.charges)+1)
	res := payment.ChargeResult{ID: id, Status: payment.ChargeSucceeded, Fee: Fee(req.Amount, minor)}
	timeout := false
	switch last4 {
	case "0002":
		res.Status, res.DeclineCode = payment.ChargeDeclined, "card_declined"
	case "9995":
		res.Status, res.DeclineCode = payment.ChargeDeclined, "insufficient_funds"
	case "3155":
		res.Status = payment.ChargeRequiresAction
	case "0119":
		timeout = true
	}
	c := Charge{ID: id, Key: req.IdempotencyKey, Amount: req.Amount, Result: res}
	g.byKey[req.IdempotencyKey] = &record{req: req, charge: c}
	g.charges = append(g.charges, c)
	if timeout {
		return payment.ChargeResult{}, ErrTimeout
	}
	return res, nil
}

func sameRequest(a, b payment.ChargeRequest) bool {
	return a.Amount.Equal(b.Amount) && a.Currency == b.Currency && a.PaymentMethodToken == b.PaymentMethodToken
}

// Fee is the sandbox's fee on a charge: 1.5% rounded half up to the
// currency's minor unit, plus 20 minor units (0.20 GBP), as card gateways
// charge in Europe; never more than the amount.
func Fee(amount decimal.Decimal, minor int32) decimal.Decimal {
	f := amount.Mul(decimal.RequireFromString("0.015")).Round(minor).Add(decimal.New(20, -minor))
	if f.GreaterThanOrEqual(amount) {
		return decimal.Zero
	}
	return f
}

// Charges returns every charge taken, in order (one per key).
func (g *Gateway) Charges() []Charge {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Charge(nil), g.charges...)
}

// Calls returns how many times Charge was called, repeats included.
func (g *Gateway) Calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}
