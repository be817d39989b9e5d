package payment

import (
	"context"
	"errors"
	"time"

	"github.com/meterflow/meterflow/internal/apperr"
)

// MethodInfo is all Meterflow keeps of a payment method besides the
// gateway's token: enough to show a household which card pays ("Visa ending
// 4242, expires 08/2030"), never enough to charge it elsewhere. A card
// number never reaches Meterflow: the household gives it to the gateway,
// which returns the token.
type MethodInfo struct {
	// Brand is the card network in the gateway's words, lower case (visa,
	// mastercard, amex, discover, jcb, diners, unionpay, unknown).
	Brand string
	// Last4 is the last four digits of the card number.
	Last4 string
	// ExpMonth (1-12) and ExpYear (four digits) are the card's expiry.
	ExpMonth int
	ExpYear  int
}

// Validate reports what is wrong with m.
func (m MethodInfo) Validate() error {
	var errs []error
	if m.Brand == "" {
		errs = append(errs, apperr.Field("brand", "must be set"))
	}
	if len(m.Last4) != 4 || !allDigits(m.Last4) {
		errs = append(errs, apperr.Field("last4", "must be four digits"))
	}
	if m.ExpMonth < 1 || m.ExpMonth > 12 {
		errs = append(errs, apperr.Field("exp_month", "must be 1 to 12"))
	}
	if m.ExpYear < 2000 || m.ExpYear > 9999 {
		errs = append(errs, apperr.Field("exp_year", "must be a four-digit year"))
	}
	return errors.Join(errs...)
}

// ExpiredAt reports whether the card has expired at t: a card is good
// through the last day of its expiry month (in UTC).
func (m MethodInfo) ExpiredAt(t time.Time) bool {
	firstAfter := time.Date(m.ExpYear, time.Month(m.ExpMonth)+1, 1, 0, 0, 0, 0, time.UTC)
	return !t.Before(firstAfter)
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// MethodInspector looks up a payment method by its gateway token, so that
// enrolment can check a token the household's browser got from the gateway
// and store only the token and its MethodInfo. Implementations must be safe
// for concurrent use. A token the gateway does not know is an apperr
// not_found error; any error without a code means the gateway could not be
// asked and the lookup may be tried again.
type MethodInspector interface {
	Method(ctx context.Context, token string) (MethodInfo, error)
}
