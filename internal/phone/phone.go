// Package phone normalises telephone numbers to E.164 ("+447700900123"),
// the only form Meterflow stores and sends SMS to.
package phone

import (
	"github.com/nyaruka/phonenumbers"

	"github.com/meterflow/meterflow/internal/apperr"
)

// Normalize parses a number as a person writes it ("07700 900123",
// "+44 7700 900123", "(415) 555-0132") and returns it in E.164. region is
// the ISO 3166 country assumed for numbers written without a country code
// (GB, US, ...). Numbers that are not valid for their country, or cannot
// receive SMS (fixed lines are allowed where the library cannot tell), are
// refused.
func Normalize(raw, region string) (string, error) {
	n, err := phonenumbers.Parse(raw, region)
	if err != nil {
		return "", apperr.Field("phone", "not a phone number")
	}
	if !phonenumbers.IsValidNumber(n) {
		return "", apperr.Field("phone", "not a valid number for its country")
	}
	switch phonenumbers.GetNumberType(n) {
	case phonenumbers.MOBILE, phonenumbers.FIXED_LINE_OR_MOBILE, phonenumbers.UNKNOWN:
	default:
		return "", apperr.Field("phone", "not a mobile number")
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

// IsE164 reports whether s is already in E.164 form: a plus sign, a country
// code that does not start with 0, and 7 to 15 digits in all (the check the
// schema puts on stored numbers). It does not say the number exists.
func IsE164(s string) bool {
	if len(s) < 8 || len(s) > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9' {
		return false
	}
	for i := 2; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
