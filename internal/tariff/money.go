package tariff

import (
	"github.com/shopspring/decimal"
)

// RateDecimals is the most decimal places a rate, standing charge or
// per-bill amount may have in a tariff (0.245123 GBP/kWh). Prorated unit
// prices are rounded to it, half away from zero.
const RateDecimals = 6

// PercentDecimals is the most decimal places a tax percentage may have.
const PercentDecimals = 4

// QuantityDecimals is the resolution of quantities in units: three decimals,
// the resolution of meter.Value (1 Wh, 1 litre).
const QuantityDecimals = 3

// minorUnits maps the ISO 4217 currencies Meterflow can bill in to the
// number of decimals of their minor unit. A currency missing here is refused
// rather than guessed, since a wrong exponent mis-rounds every bill.
var minorUnits = map[string]int32{
	// Two decimals.
	"AED": 2, "ARS": 2, "AUD": 2, "BGN": 2, "BRL": 2, "CAD": 2, "CHF": 2,
	"CNY": 2, "CZK": 2, "DKK": 2, "EGP": 2, "EUR": 2, "GBP": 2, "HKD": 2,
	"HUF": 2, "ILS": 2, "INR": 2, "MAD": 2, "MXN": 2, "MYR": 2, "NGN": 2,
	"NOK": 2, "NZD": 2, "PHP": 2, "PLN": 2, "QAR": 2, "RON": 2, "RSD": 2,
	"SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TRY": 2, "TWD": 2, "UAH": 2,
	"USD": 2, "ZAR": 2, "COP": 2, "PEN": 2, "KES": 2, "PKR": 2, "IDR": 2,
	// No minor unit.
	"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0, "PYG": 0, "UGX": 0,
	"XAF": 0, "XOF": 0, "XPF": 0,
	// Three decimals.
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

// MinorUnits returns the number of decimals of currency's minor unit (2 for
// GBP, USD and EUR; 0 for JPY) and whether Meterflow knows the currency.
func MinorUnits(currency string) (int32, bool) {
	n, ok := minorUnits[currency]
	return n, ok
}

// validCurrencyFormat reports whether s looks like an ISO 4217 alphabetic
// code: three upper-case ASCII letters.
func validCurrencyFormat(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// roundMoney rounds an amount to the minor unit, half away from zero (half
// up, for the non-negative amounts a tariff produces).
func roundMoney(d decimal.Decimal, minor int32) decimal.Decimal {
	return d.Round(minor)
}

// hasAtMostDecimals reports whether d has no more than n decimal places.
func hasAtMostDecimals(d decimal.Decimal, n int32) bool {
	return d.Equal(d.Truncate(n))
}

// FormatMoney writes an amount of currency as text with the currency's
// minor units, trailing zeros included: "120.50" GBP, "1200" JPY, "4.500"
// KWD. This is how amounts of money leave Meterflow (API, events, alerts).
// It never rounds: an amount with more decimals than the minor unit (a
// rate, or an amount not yet rounded) keeps them all, and an amount in a
// currency this package does not know is written exactly as it is.
func FormatMoney(d decimal.Decimal, currency string) string {
	minor, ok := MinorUnits(currency)
	if !ok || !hasAtMostDecimals(d, minor) {
		return FormatDecimal(d)
	}
	return FormatFixed(d, minor)
}
