// Package paymenttest holds the conformance suite every payment.Gateway
// (and payment.MethodInspector) must pass, whatever is behind it: the
// sandbox, or a real gateway's adapter against a stand-in of its API.
package paymenttest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/payment"
)

// Case names, for Target.Skip.
const (
	CaseSucceeds         = "succeeds"
	CaseDeclined         = "declined"
	CaseRequiresAction   = "requires action"
	CaseReplay           = "idempotent replay"
	CaseConcurrentReplay = "concurrent charges with one key charge once"
	CaseKeyReuse         = "key reused with other parameters"
	CaseDistinctKeys     = "distinct keys are distinct charges"
	CaseInvalid          = "invalid requests"
	CaseCanceled         = "cancelled context"
	CaseMethod           = "method"
	CaseUnknownMethod    = "unknown method"
)

var allCases = map[string]bool{CaseSucceeds: true, CaseDeclined: true, CaseRequiresAction: true, CaseReplay: true,
	CaseConcurrentReplay: true, CaseKeyReuse: true, CaseDistinctKeys: true, CaseInvalid: true, CaseCanceled: true,
	CaseMethod: true, CaseUnknownMethod: true}

// Target is a gateway under test and what the suite must know of it.
type Target struct {
	Gateway payment.Gateway
	// Inspector looks up tokens; nil fails the method cases unless skipped.
	Inspector payment.MethodInspector
	// Tokens of payment methods whose charges succeed, are declined
	// (any decline code), are declined for insufficient_funds, and need
	// the cardholder's authentication.
	Succeeds, Declined, InsufficientFunds, RequiresAction string
	// SucceedsInfo is what the Inspector must say of Succeeds.
	SucceedsInfo payment.MethodInfo
	// Unknown is a well-formed token the gateway does not know.
	Unknown string
	// Skip names cases the target cannot express, each with the reason,
	// which the test log shows.
	Skip map[string]string
}

// RunGatewaySuite checks the behaviour every gateway must have. newTarget
// returns a fresh target for each case.
func RunGatewaySuite(t *testing.T, newTarget func(t *testing.T) Target) {
	ctx := context.Background()
	amount := decimal.RequireFromString("12.34")
	key := func(t *testing.T, suffix string) string {
		return strings.NewReplacer(" ", "-", "/", "-").Replace(t.Name()) + ":" + suffix
	}
	req := func(t *testing.T, token, k string) payment.ChargeRequest {
		return payment.ChargeRequest{IdempotencyKey: key(t, k), Amount: amount, Currency: "GBP",
			PaymentMethodToken: token, Description: "Meterflow bill 42"}
	}
	run := func(name string, f func(t *testing.T, tg Target)) {
		t.Run(name, func(t *testing.T) {
			tg := newTarget(t)
			for s := range tg.Skip {
				require.True(t, allCases[s], "Skip names an unknown case %q", s)
			}
			if reason, ok := tg.Skip[name]; ok {
				t.Skip(reason)
			}
			f(t, tg)
		})
	}

	run(CaseSucceeds, func(t *testing.T, tg Target) {
		res, err := tg.Gateway.Charge(ctx, req(t, tg.Succeeds, "1"))
		require.NoError(t, err)
		assert.Equal(t, payment.ChargeSucceeded, res.Status)
		assert.NotEmpty(t, res.ID)
		assert.Empty(t, res.DeclineCode)
	})

	run(CaseDeclined, func(t *testing.T, tg Target) {
		res, err := tg.Gateway.Charge(ctx, req(t, tg.Declined, "1"))
		require.NoError(t, err, "a decline is an answer, not an error")
		assert.Equal(t, payment.ChargeDeclined, res.Status)
		assert.NotEmpty(t, res.DeclineCode)
		res, err = tg.Gateway.Charge(ctx, req(t, tg.InsufficientFunds, "2"))
		require.NoError(t, err)
		assert.Equal(t, payment.ChargeDeclined, res.Status)
		assert.Equal(t, "insufficient_funds", res.DeclineCode)
	})

	run(CaseRequiresAction, func(t *testing.T, tg Target) {
		res, err := tg.Gateway.Charge(ctx, req(t, tg.RequiresAction, "1"))
		require.NoError(t, err)
		assert.Equal(t, payment.ChargeRequiresAction, res.Status)
	})

	run(CaseReplay, func(t *testing.T, tg Target) {
		for _, token := range []string{tg.Succeeds, tg.Declined, tg.RequiresAction} {
			r := req(t, token, token)
			first, err := tg.Gateway.Charge(ctx, r)
			require.NoError(t, err)
			again, err := tg.Gateway.Charge(ctx, r)
			require.NoError(t, err)
			assert.Equal(t, first, again, "a repeated key returns the first result, id included")
		}
	})

	run(CaseConcurrentReplay, func(t *testing.T, tg Target) {
		r := req(t, tg.Succeeds, "1")
		const n = 8
		results := make([]payment.ChargeResult, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { results[i], errs[i] = tg.Gateway.Charge(ctx, r) })
		}
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i])
			assert.Equal(t, results[0], results[i])
		}
		assert.Equal(t, payment.ChargeSucceeded, results[0].Status)
	})

	run(CaseKeyReuse, func(t *testing.T, tg Target) {
		r := req(t, tg.Succeeds, "1")
		_, err := tg.Gateway.Charge(ctx, r)
		require.NoError(t, err)
		other := r
		other.Amount = decimal.RequireFromString("12.35")
		_, err = tg.Gateway.Charge(ctx, other)
		assert.Equal(t, apperr.Conflict, apperr.CodeOf(err), "another amount: %v", err)
		other = r
		other.PaymentMethodToken = tg.Declined
		_, err = tg.Gateway.Charge(ctx, other)
		assert.Equal(t, apperr.Conflict, apperr.CodeOf(err), "another payment method: %v", err)
		other = r
		other.Currency = "EUR"
		_, err = tg.Gateway.Charge(ctx, other)
		assert.Equal(t, apperr.Conflict, apperr.CodeOf(err), "another currency: %v", err)
	})

	run(CaseDistinctKeys, func(t *testing.T, tg Target) {
		a, err := tg.Gateway.Charge(ctx, req(t, tg.Succeeds, "a"))
		require.NoError(t, err)
		b, err := tg.Gateway.Charge(ctx, req(t, tg.Succeeds, "b"))
		require.NoError(t, err)
		assert.NotEmpty(t, a.ID)
		assert.NotEqual(t, a.ID, b.ID, "two keys are two charges")
		for _, res := range []payment.ChargeResult{a, b} {
			assert.Contains(t, []payment.ChargeStatus{payment.ChargeSucceeded, payment.ChargeDeclined,
				payment.ChargeRequiresAction, payment.ChargeProcessing}, res.Status)
		}
	})

	run(CaseInvalid, func(t *testing.T, tg Target) {
		cases := map[string]func(r *payment.ChargeRequest){
			"zero amount":          func(r *payment.ChargeRequest) { r.Amount = decimal.Zero },
			"negative amount":      func(r *payment.ChargeRequest) { r.Amount = decimal.RequireFromString("-1.00") },
			"sub-minor amount":     func(r *payment.ChargeRequest) { r.Amount = decimal.RequireFromString("12.345") },
			"yen with decimals":    func(r *payment.ChargeRequest) { r.Currency, r.Amount = "JPY", decimal.RequireFromString("100.5") },
			"unknown currency":     func(r *payment.ChargeRequest) { r.Currency = "XXX" },
			"no key":               func(r *payment.ChargeRequest) { r.IdempotencyKey = "" },
			"key too long":         func(r *payment.ChargeRequest) { r.IdempotencyKey = strings.Repeat("k", 256) },
			"no payment method":    func(r *payment.ChargeRequest) { r.PaymentMethodToken = "" },
			"card number as token": func(r *payment.ChargeRequest) { r.PaymentMethodToken = "4242424242424242" },
		}
		for name, mutate := range cases {
			r := req(t, tg.Succeeds, name)
			mutate(&r)
			_, err := tg.Gateway.Charge(ctx, r)
			assert.Equal(t, apperr.Invalid, apperr.CodeOf(err), "%s: %v", name, err)
		}
	})

	run(CaseCanceled, func(t *testing.T, tg Target) {
		done, cancel := context.WithCancel(ctx)
		cancel()
		_, err := tg.Gateway.Charge(done, req(t, tg.Succeeds, "1"))
		require.Error(t, err)
		assert.ErrorIs(t, err, context.Canceled)
		code := apperr.CodeOf(err)
		assert.True(t, code != apperr.Invalid && code != apperr.Conflict,
			"a cancelled call's outcome is unknown, so it must stay retryable: %v", err)
	})

	run(CaseMethod, func(t *testing.T, tg Target) {
		require.NotNil(t, tg.Inspector, "the gateway inspects tokens")
		info, err := tg.Inspector.Method(ctx, tg.Succeeds)
		require.NoError(t, err)
		assert.Equal(t, tg.SucceedsInfo, info)
		require.NoError(t, info.Validate())
		assert.NotContains(t, fmt.Sprint(info), "424242424242", "no card number")
	})

	run(CaseUnknownMethod, func(t *testing.T, tg Target) {
		require.NotNil(t, tg.Inspector, "the gateway inspects tokens")
		for _, token := range []string{tg.Unknown, "", "4242424242424242"} {
			_, err := tg.Inspector.Method(ctx, token)
			assert.Equal(t, apperr.NotFound, apperr.CodeOf(err), "%q: %v", token, err)
		}
	})
}
