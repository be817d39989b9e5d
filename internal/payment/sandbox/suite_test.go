package sandbox_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/payment/paymenttest"
	"github.com/meterflow/meterflow/internal/payment/sandbox"
)

func TestGatewaySuite(t *testing.T) {
	paymenttest.RunGatewaySuite(t, func(t *testing.T) paymenttest.Target {
		tok := func(card string) string {
			s, err := sandbox.Tokenize(card)
			require.NoError(t, err)
			return s
		}
		g := &sandbox.Gateway{}
		return paymenttest.Target{
			Gateway:           g,
			Inspector:         g,
			Succeeds:          tok(sandbox.CardSuccess),
			Declined:          tok(sandbox.CardDeclined),
			InsufficientFunds: tok(sandbox.CardInsufficientFunds),
			RequiresAction:    tok(sandbox.CardRequiresAction),
			SucceedsInfo:      payment.MethodInfo{Brand: "visa", Last4: "4242", ExpMonth: sandbox.TestExpMonth, ExpYear: sandbox.TestExpYear},
			Unknown:           "tok_sandbox_never_issued",
		}
	})
}
