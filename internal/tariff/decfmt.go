package tariff

import (
	"strconv"

	"github.com/shopspring/decimal"
)

// Bills carry millions of amounts, rates and quantities, and formatting
// them with decimal.Decimal's own String and StringFixed goes through
// math/big for every value. These produce the same text without it when the
// coefficient has at most 18 digits, which is every amount a bill holds, and
// fall back to the library otherwise.

// maxFastDigits is the most digits a coefficient may have for the int64 path.
const maxFastDigits = 18

// FormatDecimal is d.String(): no exponent, no trailing fractional zeros.
func FormatDecimal(d decimal.Decimal) string {
	var buf [40]byte
	return string(AppendDecimal(buf[:0], d))
}

// AppendDecimal appends FormatDecimal(d) to dst.
func AppendDecimal(dst []byte, d decimal.Decimal) []byte {
	c, exp, ok := small(d)
	if !ok {
		return append(dst, d.String()...)
	}
	if exp < 0 {
		// Drop trailing fractional zeros.
		for exp < 0 && c%10 == 0 && c != 0 {
			c /= 10
			exp++
		}
		if c == 0 {
			exp = 0
		}
	}
	return appendScaled(dst, c, exp, max(0, -exp))
}

// FormatFixed is d.StringFixed(places) for places >= 0: rounded half away
// from zero to places decimals, with exactly that many after the point.
func FormatFixed(d decimal.Decimal, places int32) string {
	var buf [40]byte
	return string(AppendFixed(buf[:0], d, places))
}

// AppendFixed appends FormatFixed(d, places) to dst.
func AppendFixed(dst []byte, d decimal.Decimal, places int32) []byte {
	c, exp, ok := small(d)
	if !ok || places < 0 || places > maxFastDigits || int(-exp) > int(places) {
		// Rounding needed (or a value too large for int64): the library's.
		return append(dst, d.StringFixed(places)...)
	}
	return appendScaled(dst, c, exp, int(places))
}

// small returns d's coefficient and exponent when the coefficient and the
// exponent are small enough to format with int64 arithmetic.
func small(d decimal.Decimal) (int64, int, bool) {
	exp := int(d.Exponent())
	if d.NumDigits() > maxFastDigits || exp < -maxFastDigits || exp > maxFastDigits {
		return 0, 0, false
	}
	return d.CoefficientInt64(), exp, true
}

// appendScaled appends c × 10^exp with exactly places fractional digits
// (places >= -exp when exp < 0).
func appendScaled(dst []byte, c int64, exp, places int) []byte {
	if c < 0 {
		dst = append(dst, '-')
	}
	u := uint64(c)
	if c < 0 {
		u = uint64(-c)
	}
	var digits [48]byte
	s := strconv.AppendUint(digits[:0], u, 10)
	if exp >= 0 {
		dst = append(dst, s...)
		if u != 0 {
			for range exp {
				dst = append(dst, '0')
			}
		}
		return appendZeros(dst, places, true)
	}
	frac := -exp
	if len(s) <= frac {
		dst = append(dst, '0')
		dst = append(dst, '.')
		for range frac - len(s) {
			dst = append(dst, '0')
		}
		dst = append(dst, s...)
	} else {
		dst = append(dst, s[:len(s)-frac]...)
		dst = append(dst, '.')
		dst = append(dst, s[len(s)-frac:]...)
	}
	return appendZeros(dst, places-frac, false)
}

// appendZeros appends n fractional zeros, with the point first if point.
func appendZeros(dst []byte, n int, point bool) []byte {
	if n <= 0 {
		return dst
	}
	if point {
		dst = append(dst, '.')
	}
	for range n {
		dst = append(dst, '0')
	}
	return dst
}

// AppendDate appends d as YYYY-MM-DD.
func AppendDate(dst []byte, d Date) []byte {
	dst = appendPadded(dst, d.Year, 4)
	dst = append(dst, '-')
	dst = appendPadded(dst, int(d.Month), 2)
	dst = append(dst, '-')
	return appendPadded(dst, d.Day, 2)
}

func appendPadded(dst []byte, v, width int) []byte {
	if v < 0 {
		dst = append(dst, '-')
		v = -v
	}
	var b [20]byte
	s := strconv.AppendInt(b[:0], int64(v), 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}
