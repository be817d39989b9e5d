package stripegw

import (
	"strings"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/tariff"
)

// stripeExponent overrides the ISO 4217 exponent where Stripe's API counts
// otherwise: ISK became zero-decimal, but Stripe keeps it at two decimals
// for compatibility (an amount of 100 is 1 króna).
var stripeExponent = map[string]int32{"ISK": 2}

// wholeUnitsOnly are currencies whose amounts Stripe takes in whole units
// only, though its API counts them in hundredths.
var wholeUnitsOnly = map[string]bool{"ISK": true}

// MinorAmount converts amount in currency (upper-case ISO 4217) to the
// integer Stripe's API expects, exactly: an amount it cannot express
// without rounding is an apperr invalid error.
func MinorAmount(amount decimal.Decimal, currency string) (int64, error) {
	if !amount.IsPositive() {
		return 0, apperr.Field("amount", "must be positive")
	}
	iso, ok := tariff.MinorUnits(currency)
	if !ok || strings.ToUpper(currency) != currency {
		return 0, apperr.Field("currency", "%q is not a currency Meterflow charges in", currency)
	}
	if !amount.Equal(amount.Truncate(iso)) {
		return 0, apperr.Field("amount", "%s has more decimals than %s has (%d)", amount, currency, iso)
	}
	exp := iso
	if e, ok := stripeExponent[currency]; ok {
		exp = e
	}
	minor := amount.Shift(exp)
	if !minor.IsInteger() || !minor.BigInt().IsInt64() {
		return 0, apperr.Field("amount", "%s %s is out of range", amount, currency)
	}
	n := minor.IntPart()
	if wholeUnitsOnly[currency] && n%100 != 0 {
		return 0, apperr.Field("amount", "Stripe takes whole units of %s only", currency)
	}
	if exp == 3 && n%10 != 0 {
		return 0, apperr.Field("amount", "Stripe takes %s amounts in steps of 0.010 only", currency)
	}
	return n, nil
}
