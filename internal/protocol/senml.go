package protocol

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meterflow/meterflow/internal/meter"
)

// relativeLimitMs is 2^28 seconds in milliseconds: a resolved SenML time
// below it is relative to the receive time (RFC 8428 section 4.5.3).
const relativeLimitMs = 1 << 28 * 1000

// senmlBase holds the base fields in force. A base field applies to the
// record that carries it and to every later record until it is given
// again (RFC 8428 section 4.1).
type senmlBase struct {
	btMs  int64
	bu    string
	hasBu bool
}

// senml decodes a SenML pack; sc is at its '['.
func (st *decodeState) senml() error {
	sc := &st.sc
	sc.i++
	var base senmlBase
	n := 0
	for first := true; ; first = false {
		ok, err := sc.more(']', first)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		at := loc{senml: true, item: n}
		n++
		if sc.kind() != '{' {
			st.fail(MalformedJSON, "record %d is %s, want an object", at.item, kindName(sc.kind()))
			if err := sc.skip(0); err != nil {
				return err
			}
			continue
		}
		if err := st.record(at, &base); err != nil {
			return err
		}
	}
	sc.ws()
	if sc.i != len(sc.s) {
		return sc.syntax("data after the pack")
	}
	if err := st.result(); err != nil {
		return err
	}
	if len(st.readings) == 0 {
		return &Error{Reason: MissingField, Detail: "no record of the pack has a value"}
	}
	st.group()
	return st.result()
}

// record reads the SenML record at at, applying its base fields to base.
func (st *decodeState) record(at loc, base *senmlBase) error {
	sc := &st.sc
	sc.i++ // '{'
	var seen uint32
	var bn, bt, bu, name, unit, v, s, t string
	for first := true; ; first = false {
		ok, err := sc.more('}', first)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		k, err := sc.key()
		if err != nil {
			return err
		}
		// Each field has its bit in seen; a field of the wrong JSON type
		// is recorded under the reason of what it carries.
		switch k {
		case "bn":
			if err = st.dup(&seen, fBn, k); err == nil {
				bn, _, err = st.stringField(k, at, WrongMeter)
			}
		case "bt":
			if err = st.dup(&seen, fBt, k); err == nil {
				bt, _, err = st.numberField(k, at, BadTime)
			}
		case "bu":
			if err = st.dup(&seen, fBu, k); err == nil {
				bu, _, err = st.stringField(k, at, BadUnit)
			}
		case "bver":
			if err = st.dup(&seen, fBver, k); err == nil {
				err = st.bver(at)
			}
		case "bv", "bs":
			// Base value and base sum would need exact decimal
			// addition before rounding; no meter of ours sends them,
			// and ignoring them would store wrong values.
			bit := fBv
			if k == "bs" {
				bit = fBs
			}
			if err = st.dup(&seen, bit, k); err == nil {
				st.fail(BadValue, "%s%v is not supported", k, at)
				err = sc.skip(0)
			}
		case "n":
			if err = st.dup(&seen, fN, k); err == nil {
				name, _, err = st.stringField(k, at, BadChannel)
			}
		case "u":
			if err = st.dup(&seen, fU, k); err == nil {
				unit, _, err = st.stringField(k, at, BadUnit)
			}
		case "v":
			if err = st.dup(&seen, fV, k); err == nil {
				v, _, err = st.numberField(k, at, BadValue)
			}
		case "s":
			if err = st.dup(&seen, fS, k); err == nil {
				s, _, err = st.numberField(k, at, BadValue)
			}
		case "t":
			if err = st.dup(&seen, fT, k); err == nil {
				t, _, err = st.numberField(k, at, BadTime)
			}
		case "vs", "vb", "vd":
			bit := fVs
			switch k {
			case "vb":
				bit = fVb
			case "vd":
				bit = fVd
			}
			if err = st.dup(&seen, bit, k); err == nil {
				err = sc.skip(0)
			}
		default:
			// RFC 8428 section 4.4: unknown fields are ignored unless
			// their name ends in "_", which means "must understand".
			if strings.HasSuffix(k, "_") && st.verErr == nil {
				st.verErr = &Error{Reason: BadVersion, Detail: fmt.Sprintf("field %q%v must be understood and is not", k, at)}
			}
			err = sc.skip(0)
		}
		if err != nil {
			return err
		}
	}
	if st.err != nil {
		// The pack is rejected already; only its syntax and version
		// still matter.
		return nil
	}

	// Base fields first: they apply to this record too.
	if seen&fBn != 0 {
		if id, ok := bnMeter(bn); !ok {
			st.fail(WrongMeter, "bn %q%v does not end with a meter ID and ':'", bn, at)
			return nil
		} else if id != st.meterID {
			st.fail(WrongMeter, "bn %q%v names meter %q, not %q", bn, at, id, st.meterID)
			return nil
		}
	}
	if seen&fBt != 0 {
		ms, err := meter.ParseScaled(bt, 0)
		if err != nil {
			st.fail(BadTime, "bt %s%v is out of range", bt, at)
			return nil
		}
		base.btMs = int64(ms)
	}
	if seen&fBu != 0 {
		base.bu, base.hasBu = bu, true
	}

	values := seen & (fV | fS | fVs | fVb | fVd)
	switch {
	case seen&fN == 0 && values == 0:
		// Only base fields (or nothing we know): not a reading.
		return nil
	case seen&fN == 0:
		st.fail(MissingField, "n missing%v", at)
		return nil
	case values&(fV|fS) == 0 && values != 0:
		st.fail(BadValue, "record %d has no numeric value (v or s)", at.item)
		return nil
	case values&(fV|fS) == 0:
		st.fail(MissingField, "v or s missing%v", at)
		return nil
	case values&fV != 0 && values&fS != 0:
		st.fail(BadValue, "record %d has both v and s", at.item)
		return nil
	}
	if values&fS != 0 {
		v = s
	}
	hasUnit := seen&fU != 0
	if !hasUnit && base.hasBu {
		unit, hasUnit = base.bu, true
	}
	r, rerr := st.resolve(name, unit, hasUnit, v)
	if rerr != nil {
		st.fail(rerr.Reason, "%s%v", rerr.Detail, at)
		return nil
	}

	ms := base.btMs
	if seen&fT != 0 {
		tv, err := meter.ParseScaled(t, 0)
		sum, ok := add64(ms, int64(tv))
		if err != nil || !ok {
			st.fail(BadTime, "t %s%v is out of range", t, at)
			return nil
		}
		ms = sum
	}
	if ms < relativeLimitMs {
		sum, ok := add64(st.nowMs, ms)
		if !ok {
			st.fail(BadTime, "relative time %dms%v is out of range", ms, at)
			return nil
		}
		ms = sum
	}
	st.checkTime(ms, "time", at)
	if st.err != nil {
		return nil
	}
	r.Time = time.UnixMilli(ms).UTC()
	if len(st.readings) >= MaxEntries*MaxReadings {
		st.fail(TooManyReadings, "pack has more than %d readings", MaxEntries*MaxReadings)
		return nil
	}
	st.readings = append(st.readings, r)
	return nil
}

// bver reads SenML's base version. Versions up to 10 (RFC 8428) carry
// nothing this package needs, so they are accepted and ignored.
func (st *decodeState) bver(at loc) error {
	sc := &st.sc
	if sc.kind() != '0' {
		if st.verErr == nil {
			st.verErr = &Error{Reason: BadVersion, Detail: fmt.Sprintf("bver%v is %s, want a number", at, kindName(sc.kind()))}
		}
		return sc.skip(0)
	}
	text, err := sc.num()
	if err != nil {
		return err
	}
	if !smallInt(text, maxSenMLBver) && st.verErr == nil {
		st.verErr = &Error{Reason: BadVersion, Detail: fmt.Sprintf("SenML version %s%v not supported (want 10 or less)", text, at)}
	}
	return nil
}

// smallInt reports whether the JSON number text is an integer no greater
// than limit (a small positive number).
func smallInt(text string, limit int) bool {
	if strings.HasPrefix(text, "-") {
		return !strings.ContainsAny(text, ".eE")
	}
	if strings.ContainsAny(text, ".eE") || len(text) > 4 {
		return false
	}
	n := 0
	for i := 0; i < len(text); i++ {
		n = n*10 + int(text[i]-'0')
	}
	return n <= limit
}

// bnMeter returns the meter ID a SenML base name ends with: bn must end
// with ':', and the ID is the longest run of meter ID characters before
// it, so "urn:dev:mf:MTR-000001:" names MTR-000001 (and not TR-000001).
func bnMeter(bn string) (string, bool) {
	if !strings.HasSuffix(bn, ":") {
		return "", false
	}
	s := bn[:len(bn)-1]
	i := len(s)
	for i > 0 && isIDChar(s[i-1]) {
		i--
	}
	if i == len(s) {
		return "", false
	}
	return s[i:], true
}

// isIDChar reports whether c may appear in a meter ID.
func isIDChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

// add64 adds with overflow detection.
func add64(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

// group turns the pack's readings, in record order, into one message per
// distinct time, in time order, each numbered by its time in
// milliseconds.
func (st *decodeState) group() {
	rs := st.readings
	byTime := func(a, b meter.Reading) int { return a.Time.Compare(b.Time) }
	if !slices.IsSortedFunc(rs, byTime) {
		slices.SortStableFunc(rs, byTime)
	}
	for start := 0; start < len(rs); {
		t := rs[start].Time
		end := start + 1
		for end < len(rs) && rs[end].Time.Equal(t) {
			end++
		}
		switch {
		case len(st.spans) == MaxEntries:
			st.fail(TooManyReadings, "pack has more than %d distinct times", MaxEntries)
			return
		case end-start > MaxReadings:
			st.fail(TooManyReadings, "pack has %d readings at %s, at most %d", end-start, t.Format(time.RFC3339Nano), MaxReadings)
			return
		}
		if c, dup := duplicate(rs[start:end]); dup {
			st.fail(BadValue, "channel %q given twice at %s", c, t.Format(time.RFC3339Nano))
			return
		}
		st.spans = append(st.spans, span{seq: uint64(t.UnixMilli()), start: start, end: end})
		start = end
	}
}
