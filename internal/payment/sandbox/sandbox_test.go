package sandbox

import (
	"context"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/payment"
)

func TestCards(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name, card string
		status     payment.ChargeStatus
		decline    string
		err        error
	}{
		{"success", CardSuccess, payment.ChargeSucceeded, "", nil},
		{"declined", CardDeclined, payment.ChargeDeclined, "card_declined", nil},
		{"insufficient funds", CardInsufficientFunds, payment.ChargeDeclined, "insufficient_funds", nil},
		{"requires action", CardRequiresAction, payment.ChargeRequiresAction, "", nil},
		{"timeout", CardTimeout, "", "", ErrTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var g Gateway
			tok, err := Tokenize(tc.card)
			require.NoError(t, err)
			assert.NotContains(t, tok, tc.card)
			req := payment.ChargeRequest{IdempotencyKey: "k1", Amount: decimal.RequireFromString("12.34"), Currency: "GBP", PaymentMethodToken: tok}
			res, err := g.Charge(ctx, req)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
			} else {
				require.NoError(t, err)
				assert.Equal(t, tc.status, res.Status)
				assert.Equal(t, tc.decline, res.DeclineCode)
			}
			again, err := g.Charge(ctx, req)
			require.NoError(t, err, "a repeated key returns the recorded result")
			if tc.err == nil {
				assert.Equal(t, res, again)
			} else {
				assert.Equal(t, payment.ChargeSucceeded, again.Status, "the timed-out charge was taken")
			}
			assert.Len(t, g.Charges(), 1)
			assert.Equal(t, 2, g.Calls())

			req.Amount = decimal.RequireFromString("12.35")
			_, err = g.Charge(ctx, req)
			assert.True(t, apperr.Is(err, apperr.Conflict), "same key, other parameters: %v", err)
		})
	}
}

func TestTokenize(t *testing.T) {
	_, err := Tokenize("4242 4242 4242 4241")
	assert.Error(t, err)
	tok, err := Tokenize("4242-4242-4242-4242")
	require.NoError(t, err)
	assert.Equal(t, "tok_sandbox_424242_4242", tok)
}

func TestMethodBrands(t *testing.T) {
	ctx := context.Background()
	var g Gateway
	for card, brand := range map[string]string{
		"4242424242424242": "visa", "5555555555554444": "mastercard", "2223003122003222": "mastercard",
		"378282246310005": "amex", "6011111111111117": "discover", "3566002020360505": "jcb",
		"36227206271667": "diners", "6200000000000005": "unionpay", "9999999999999995": "unknown",
	} {
		tok, err := Tokenize(card)
		require.NoError(t, err, card)
		info, err := g.Method(ctx, tok)
		require.NoError(t, err, card)
		assert.Equal(t, payment.MethodInfo{Brand: brand, Last4: card[len(card)-4:], ExpMonth: TestExpMonth, ExpYear: TestExpYear}, info, card)
	}
	_, err := g.Method(ctx, "tok_sandbox_42424_4242")
	assert.True(t, apperr.Is(err, apperr.NotFound), "a malformed token is no token: %v", err)
}
