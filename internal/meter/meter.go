package meter

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Utility is the commodity a meter measures.
type Utility string

const (
	Electricity Utility = "electricity"
	Water       Utility = "water"
	Gas         Utility = "gas"
)

// Valid reports whether u is one of the utilities Meterflow bills.
func (u Utility) Valid() bool {
	switch u {
	case Electricity, Water, Gas:
		return true
	}
	return false
}

// ParseUtility parses a utility name.
func ParseUtility(s string) (Utility, error) {
	u := Utility(strings.ToLower(strings.TrimSpace(s)))
	if !u.Valid() {
		return "", fmt.Errorf("unknown utility %q (want electricity, water or gas)", s)
	}
	return u, nil
}

// Value is a fixed-point quantity in thousandths of its channel's canonical
// unit: 1 Value of 1-0:1.8.0 is 1 Wh (0.001 kWh), of 8-0:1.0.0 one litre
// (0.001 m³). int64 holds registers far wider than any meter's.
type Value int64

// Scale is the number of Value units in one canonical unit.
const Scale = 1000

// String formats v in canonical units with three decimals.
func (v Value) String() string {
	sign := ""
	u := int64(v)
	if u < 0 {
		sign = "-"
		if u == math.MinInt64 {
			return "-9223372036854775.808"
		}
		u = -u
	}
	return fmt.Sprintf("%s%d.%03d", sign, u/Scale, u%Scale)
}

// Float returns v in canonical units as a float64, for dashboards and
// time-series storage only; billing works on Value.
func (v Value) Float() float64 { return float64(v) / Scale }

// ParseValue parses a decimal number (as written in JSON: optional sign,
// digits, optional fraction, optional exponent) into a Value, rounding half
// away from zero past the third decimal. It never goes through float64.
func ParseValue(s string) (Value, error) {
	return ParseScaled(s, 0)
}

// ParseScaled parses the decimal s multiplied by 10^exp10 into a Value; it is
// how unit conversions by powers of ten (Wh to kWh, l to m³) stay exact.
func ParseScaled(s string, exp10 int) (Value, error) {
	orig := s
	if s == "" {
		return 0, fmt.Errorf("empty number")
	}
	neg := false
	switch s[0] {
	case '-':
		neg = true
		s = s[1:]
	case '+':
		s = s[1:]
	}
	mant := s
	exp := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > 400 || e < -400 {
			return 0, fmt.Errorf("bad exponent in %q", orig)
		}
		exp = e
		mant = s[:i]
	}
	intPart, frac := mant, ""
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		intPart, frac = mant[:i], mant[i+1:]
	}
	if intPart == "" && frac == "" {
		return 0, fmt.Errorf("not a number: %q", orig)
	}
	digits := intPart + frac
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, fmt.Errorf("not a number: %q", orig)
		}
	}
	// value = digits * 10^(exp - len(frac) + exp10 + 3) in Value units.
	shift := exp - len(frac) + exp10 + 3
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return 0, nil
	}
	var roundUp bool
	if shift < 0 {
		cut := len(digits) + shift
		if cut <= 0 {
			// Everything is below the last kept decimal.
			roundUp = cut == 0 && digits[0] >= '5'
			digits = ""
		} else {
			roundUp = digits[cut] >= '5'
			digits = digits[:cut]
		}
		shift = 0
	}
	if len(digits)+shift > 19 {
		return 0, fmt.Errorf("number out of range: %q", orig)
	}
	var n uint64
	for i := 0; i < len(digits); i++ {
		n = n*10 + uint64(digits[i]-'0')
	}
	for ; shift > 0; shift-- {
		n *= 10
	}
	if roundUp {
		n++
	}
	if n > math.MaxInt64 {
		return 0, fmt.Errorf("number out of range: %q", orig)
	}
	v := int64(n)
	if neg {
		v = -v
	}
	return Value(v), nil
}

// Quality says how far an interval value can be trusted.
type Quality uint8

const (
	// Measured values come straight from validated register reads.
	Measured Quality = iota
	// Estimated values fill a gap; real reads replace them when they arrive.
	Estimated
	// Edited values were corrected by a rule or by an operator.
	Edited
)

func (q Quality) String() string {
	switch q {
	case Measured:
		return "measured"
	case Estimated:
		return "estimated"
	case Edited:
		return "edited"
	}
	return "unknown"
}

// Reading is one channel value at one timestamp from one meter: the unit
// in which throughput is counted.
type Reading struct {
	Channel Channel
	Time    time.Time
	Value   Value
}

// Message is what one meter publishes in one MQTT message: one or more
// readings under a sequence number. A meter sending its backlog after an
// outage packs many timestamps into one message.
type Message struct {
	Meter    string
	Seq      uint64
	Readings []Reading
}
