package protocol

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/meterflow/meterflow/internal/meter"
)

// Limits and defaults of protocol version 1.
const (
	// Version is the compact payload version this package speaks.
	Version = 1
	// MaxReadings is the most readings one message (one r, or one time of
	// a SenML pack) may carry.
	MaxReadings = 64
	// MaxEntries is the most messages one payload may carry (entries of b,
	// or distinct times of a SenML pack).
	MaxEntries = 96
	// DefaultMaxBytes is the default payload size limit.
	DefaultMaxBytes = 64 << 10
	// DefaultMaxFuture is how far past the server's clock a time may lie
	// by default.
	DefaultMaxFuture = time.Hour
	// maxSenMLBver is the highest SenML base version understood.
	maxSenMLBver = 10
)

// minTimeMs is 2000-01-01T00:00:00Z in milliseconds: earlier times are
// refused.
const minTimeMs = 946684800000

// Decoder decodes payloads of protocol version 1. Its zero value uses the
// defaults; a Decoder holds no state and is safe for concurrent use.
type Decoder struct {
	// MaxBytes is the largest payload accepted; zero or less means
	// DefaultMaxBytes.
	MaxBytes int
	// MaxFuture is how far past the now given to Decode a measurement
	// time may lie; zero or less means DefaultMaxFuture.
	MaxFuture time.Duration
}

// Decode decodes one payload published by meterID (which the broker has
// authenticated) measuring utility, and appends its messages to dst. A
// compact payload yields one message, or one per entry of b; a SenML pack
// yields one message per distinct time, in time order, each with a
// sequence number equal to its time in milliseconds since the epoch.
// Readings within a message keep the payload's order. All times are UTC
// and whole milliseconds.
//
// now is the server's receive time: it bounds future times and anchors
// SenML relative times.
//
// On error Decode returns dst unchanged and an *Error; nothing of a
// rejected payload is returned. The returned messages share one newly
// allocated readings array but nothing with payload, which the caller may
// reuse.
func (d Decoder) Decode(dst []meter.Message, meterID string, utility meter.Utility, payload []byte, now time.Time) ([]meter.Message, error) {
	maxBytes := d.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if len(payload) > maxBytes {
		return dst, &Error{Reason: TooLarge, Detail: fmt.Sprintf("payload is %d bytes, at most %d", len(payload), maxBytes)}
	}
	maxFuture := d.MaxFuture
	if maxFuture <= 0 {
		maxFuture = DefaultMaxFuture
	}

	st := statePool.Get().(*decodeState)
	defer st.release()
	// One copy of the payload lets every field be a substring of it
	// without allocating, and keeps nothing pointing into the caller's
	// buffer.
	st.sc = scanner{s: string(payload)}
	st.meterID = meterID
	st.utility = utility
	st.nowMs = now.UnixMilli()
	st.maxMs = st.nowMs + maxFuture.Milliseconds()

	sc := &st.sc
	sc.ws()
	var err error
	switch sc.peek() {
	case '{':
		err = st.compact()
	case '[':
		err = st.senml()
	default:
		if sc.i >= len(sc.s) {
			return dst, &Error{Reason: MalformedJSON, Detail: "empty payload"}
		}
		return dst, sc.syntax("payload is neither a JSON object (compact) nor an array (SenML)")
	}
	if err != nil {
		return dst, err
	}

	// Everything is valid: copy the readings out of the scratch buffer
	// into one exactly sized array that the messages share.
	out := make([]meter.Reading, len(st.readings))
	copy(out, st.readings)
	for _, sp := range st.spans {
		dst = append(dst, meter.Message{Meter: meterID, Seq: sp.seq, Readings: out[sp.start:sp.end:sp.end]})
	}
	return dst, nil
}

// span is one decoded message: its sequence number and its readings
// st.readings[start:end].
type span struct {
	seq        uint64
	start, end int
}

// decodeState is the scratch space of one Decode call, pooled so that a
// steady stream of payloads reuses its buffers.
type decodeState struct {
	sc       scanner
	meterID  string
	utility  meter.Utility
	nowMs    int64
	maxMs    int64
	readings []meter.Reading
	spans    []span

	// verErr is a version problem; it outranks every other semantic
	// error, because a payload of another version may mean anything.
	verErr *Error
	// err is the first other semantic error, in document order. Decoding
	// goes on after it to find syntax and version errors, which outrank it.
	err *Error
}

var statePool = sync.Pool{New: func() any { return new(decodeState) }}

func (st *decodeState) release() {
	*st = decodeState{readings: st.readings[:0], spans: st.spans[:0]}
	statePool.Put(st)
}

// fail records a semantic error unless an earlier one is already known.
func (st *decodeState) fail(reason Reason, format string, args ...any) {
	if st.err == nil {
		st.err = &Error{Reason: reason, Detail: fmt.Sprintf(format, args...)}
	}
}

// result returns the error a finished payload is rejected with, if any.
func (st *decodeState) result() error {
	if st.verErr != nil {
		return st.verErr
	}
	if st.err != nil {
		return st.err
	}
	return nil
}

// loc says where in a payload something is, for error details. It is a
// fmt.Stringer so that it is only formatted when an error is reported.
type loc struct {
	senml bool
	entry int // index in b, or -1
	item  int // index in r, or of the SenML record; -1 for an entry itself
}

// String returns " in r[2]", " in b[1].r[2]", " in b[1]", " in record 3",
// or "" for the top level of a compact payload.
func (l loc) String() string {
	switch {
	case l.senml:
		return fmt.Sprintf(" in record %d", l.item)
	case l.entry < 0 && l.item < 0:
		return ""
	case l.entry < 0:
		return fmt.Sprintf(" in r[%d]", l.item)
	case l.item < 0:
		return fmt.Sprintf(" in b[%d]", l.entry)
	}
	return fmt.Sprintf(" in b[%d].r[%d]", l.entry, l.item)
}

// field bits, to refuse a field name given twice in one object.
const (
	fV uint32 = 1 << iota
	fSeq
	fT
	fR
	fB
	fC
	fU
	fBn
	fBt
	fBu
	fBver
	fN
	fS
	fVs
	fVb
	fVd
	fBv
	fBs
)

// dup records field bit f in seen, refusing a field given twice: JSON
// leaves the meaning of repeated names open, and parsers disagree.
func (st *decodeState) dup(seen *uint32, f uint32, name string) error {
	if *seen&f != 0 {
		return st.sc.syntax("field %q given twice", name)
	}
	*seen |= f
	return nil
}

// stringField reads the value of field k at l, which must be a string. A
// value of another type is recorded as a reason error and skipped, and ok
// is false.
func (st *decodeState) stringField(k string, l loc, reason Reason) (s string, ok bool, err error) {
	sc := &st.sc
	if sc.kind() != '"' {
		st.fail(reason, "%s%v is %s, want a string", k, l, kindName(sc.kind()))
		return "", false, sc.skip(0)
	}
	s, err = sc.str()
	return s, err == nil, err
}

// numberField is stringField for numbers; it returns the number's text.
func (st *decodeState) numberField(k string, l loc, reason Reason) (text string, ok bool, err error) {
	sc := &st.sc
	if sc.kind() != '0' {
		st.fail(reason, "%s%v is %s, want a number", k, l, kindName(sc.kind()))
		return "", false, sc.skip(0)
	}
	text, err = sc.num()
	return text, err == nil, err
}

// compact decodes a compact payload; sc is at its '{'.
func (st *decodeState) compact() error {
	sc := &st.sc
	e, err := st.entry(-1)
	if err != nil {
		return err
	}
	sc.ws()
	if sc.i != len(sc.s) {
		return sc.syntax("data after the payload")
	}
	if e.seen&fV == 0 {
		return &Error{Reason: MissingField, Detail: "v missing"}
	}
	if err := st.result(); err != nil {
		return err
	}
	if e.seen&fB != 0 {
		if e.seen&(fSeq|fT|fR) != 0 {
			return &Error{Reason: MalformedJSON, Detail: "b cannot be combined with seq, t or r"}
		}
		return nil
	}
	st.finishEntry(&e, -1)
	return st.result()
}

// entryResult is what entry read of one object holding seq, t and r.
type entryResult struct {
	seen       uint32
	seq        uint64
	ms         int64
	start, end int // its readings are st.readings[start:end]
	count      int // readings in r, including those not kept
}

// entry reads one object holding seq, t and r: the whole compact payload
// (index -1, where v and b are also understood) or entry index of b.
func (st *decodeState) entry(index int) (entryResult, error) {
	sc := &st.sc
	at := loc{entry: index, item: -1}
	top := index < 0
	e := entryResult{start: len(st.readings), end: len(st.readings)}
	sc.i++ // '{'
	for first := true; ; first = false {
		ok, err := sc.more('}', first)
		if err != nil {
			return e, err
		}
		if !ok {
			break
		}
		k, err := sc.key()
		if err != nil {
			return e, err
		}
		switch {
		case k == "v" && top:
			if err := st.dup(&e.seen, fV, k); err != nil {
				return e, err
			}
			if err := st.version(); err != nil {
				return e, err
			}
		case k == "b" && top:
			if err := st.dup(&e.seen, fB, k); err != nil {
				return e, err
			}
			if err := st.backlog(); err != nil {
				return e, err
			}
		case k == "seq":
			if err := st.dup(&e.seen, fSeq, k); err != nil {
				return e, err
			}
			text, ok, err := st.numberField(k, at, BadValue)
			if err != nil {
				return e, err
			}
			if ok {
				var perr error
				if e.seq, perr = strconv.ParseUint(text, 10, 64); perr != nil {
					st.fail(BadValue, "seq %s%v is not an integer from 0 to 2^64-1", text, at)
				}
			}
		case k == "t":
			if err := st.dup(&e.seen, fT, k); err != nil {
				return e, err
			}
			text, ok, err := st.numberField(k, at, BadTime)
			if err != nil {
				return e, err
			}
			if ok {
				ms, perr := meter.ParseScaled(text, 0)
				if perr != nil {
					st.fail(BadTime, "t %s%v is out of range", text, at)
					continue
				}
				e.ms = int64(ms)
				st.checkTime(e.ms, "t", at)
			}
		case k == "r":
			if err := st.dup(&e.seen, fR, k); err != nil {
				return e, err
			}
			if err := st.readingList(&e, index); err != nil {
				return e, err
			}
		default:
			// Unknown fields are ignored: additive changes keep version 1.
			if err := sc.skip(0); err != nil {
				return e, err
			}
		}
	}
	if !top || e.seen&fB == 0 {
		for _, f := range [...]struct {
			bit  uint32
			name string
		}{{fSeq, "seq"}, {fT, "t"}, {fR, "r"}} {
			if e.seen&f.bit == 0 {
				st.fail(MissingField, "%s missing%v", f.name, at)
			}
		}
	}
	return e, nil
}

// version reads the compact payload's v.
func (st *decodeState) version() error {
	sc := &st.sc
	if sc.kind() != '0' {
		st.verErr = &Error{Reason: BadVersion, Detail: fmt.Sprintf("v is %s, want the number 1", kindName(sc.kind()))}
		return sc.skip(0)
	}
	text, err := sc.num()
	if err != nil {
		return err
	}
	if text != "1" {
		st.verErr = &Error{Reason: BadVersion, Detail: fmt.Sprintf("version %s not supported (want 1)", text)}
	}
	return nil
}

// checkTime refuses a time (ms since the epoch) outside the accepted
// range; what and at say where it came from.
func (st *decodeState) checkTime(ms int64, what string, at loc) {
	switch {
	case ms < minTimeMs:
		st.fail(BadTime, "%s %s%v is before 2000-01-01", what, fmtMs(ms), at)
	case ms > st.maxMs:
		st.fail(BadTime, "%s %s%v is %v ahead of the server's clock", what, fmtMs(ms), at, time.Duration(ms-st.nowMs)*time.Millisecond)
	}
}

// fmtMs formats a time in ms since the epoch for error details.
func fmtMs(ms int64) string {
	if ms < -1<<53 || ms > 1<<53 {
		return strconv.FormatInt(ms, 10) + "ms"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

// finishEntry stamps the readings of entry index (-1 for the top level)
// with its time, refuses duplicate channels and records the entry as a
// message. It must only be called while no error is known.
func (st *decodeState) finishEntry(e *entryResult, index int) {
	t := time.UnixMilli(e.ms).UTC()
	rs := st.readings[e.start:e.end]
	for i := range rs {
		rs[i].Time = t
	}
	if c, dup := duplicate(rs); dup {
		r := "r"
		if index >= 0 {
			r = fmt.Sprintf("b[%d].r", index)
		}
		st.fail(BadValue, "channel %q given twice in %s", c, r)
		return
	}
	st.spans = append(st.spans, span{seq: e.seq, start: e.start, end: e.end})
}

// duplicate reports a channel present twice in rs. Messages hold at most
// MaxReadings readings, so the quadratic scan is cheap and allocation free.
func duplicate(rs []meter.Reading) (meter.Channel, bool) {
	for i := 1; i < len(rs); i++ {
		for j := 0; j < i; j++ {
			if rs[i].Channel == rs[j].Channel {
				return rs[i].Channel, true
			}
		}
	}
	return "", false
}

// backlog reads b, each of whose entries becomes a message.
func (st *decodeState) backlog() error {
	sc := &st.sc
	if sc.kind() != '[' {
		st.fail(MalformedJSON, "b is %s, want an array", kindName(sc.kind()))
		return sc.skip(0)
	}
	sc.i++
	n := 0
	for first := true; ; first = false {
		ok, err := sc.more(']', first)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		index := n
		n++
		if sc.kind() != '{' {
			st.fail(MalformedJSON, "b[%d] is %s, want an object", index, kindName(sc.kind()))
			if err := sc.skip(0); err != nil {
				return err
			}
			continue
		}
		e, err := st.entry(index)
		if err != nil {
			return err
		}
		if n > MaxEntries {
			// Go on checking the syntax, but stop collecting.
			st.readings = st.readings[:e.start]
			continue
		}
		if st.err == nil {
			st.finishEntry(&e, index)
		}
	}
	switch {
	case n == 0:
		st.fail(MissingField, "b is empty")
	case n > MaxEntries:
		st.fail(TooManyReadings, "b has %d entries, at most %d", n, MaxEntries)
	}
	return nil
}

// readingList reads r of entry e (index -1 for the top level).
func (st *decodeState) readingList(e *entryResult, index int) error {
	sc := &st.sc
	at := loc{entry: index, item: -1}
	if sc.kind() != '[' {
		st.fail(MalformedJSON, "r%v is %s, want an array", at, kindName(sc.kind()))
		return sc.skip(0)
	}
	sc.i++
	e.start = len(st.readings)
	for first := true; ; first = false {
		ok, err := sc.more(']', first)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		e.count++
		if err := st.reading(loc{entry: index, item: e.count - 1}, e.count <= MaxReadings); err != nil {
			return err
		}
	}
	e.end = len(st.readings)
	switch {
	case e.count == 0:
		st.fail(MissingField, "r%v is empty", at)
	case e.count > MaxReadings:
		st.fail(TooManyReadings, "r%v has %d readings, at most %d", at, e.count, MaxReadings)
	}
	return nil
}

// reading reads the element of r at l; keep is false past MaxReadings,
// when the reading is only checked.
func (st *decodeState) reading(at loc, keep bool) error {
	sc := &st.sc
	if sc.kind() != '{' {
		st.fail(MalformedJSON, "reading%v is %s, want an object", at, kindName(sc.kind()))
		return sc.skip(0)
	}
	sc.i++
	var seen uint32
	var channel, value, unit string
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
		var bit uint32
		switch k {
		case "c":
			bit = fC
			if err = st.dup(&seen, bit, k); err == nil {
				channel, ok, err = st.stringField(k, at, BadChannel)
			}
		case "v":
			bit = fV
			if err = st.dup(&seen, bit, k); err == nil {
				value, ok, err = st.numberField(k, at, BadValue)
			}
		case "u":
			bit = fU
			if err = st.dup(&seen, bit, k); err == nil {
				unit, ok, err = st.stringField(k, at, BadUnit)
			}
		default:
			err = sc.skip(0)
		}
		if err != nil {
			return err
		}
	}
	if st.err != nil {
		// The payload is rejected already; only its syntax and version
		// still matter.
		return nil
	}
	switch {
	case seen&fC == 0:
		st.fail(MissingField, "c missing%v", at)
		return nil
	case seen&fV == 0:
		st.fail(MissingField, "v missing%v", at)
		return nil
	}
	r, rerr := st.resolve(channel, unit, seen&fU != 0, value)
	if rerr != nil {
		st.fail(rerr.Reason, "%s%v", rerr.Detail, at)
		return nil
	}
	if keep {
		st.readings = append(st.readings, r)
	}
	return nil
}

// resolve turns a reading's channel, unit and value text into a Reading
// without its time. Its error's detail does not say where the reading is:
// the caller adds that.
func (st *decodeState) resolve(channel, unit string, hasUnit bool, value string) (meter.Reading, *Error) {
	info, ok := meter.Lookup(meter.Channel(channel))
	if !ok {
		return meter.Reading{}, &Error{Reason: BadChannel, Detail: fmt.Sprintf("unknown channel %q", channel)}
	}
	if info.Utility != st.utility {
		return meter.Reading{}, &Error{Reason: BadChannel, Detail: fmt.Sprintf("channel %q measures %s, not %s", channel, info.Utility, st.utility)}
	}
	exp := 0
	if hasUnit {
		if exp, ok = unitExp(info, unit); !ok {
			return meter.Reading{}, &Error{Reason: BadUnit, Detail: fmt.Sprintf("unit %q not accepted for %s (want %s)", unit, channel, acceptedUnits(info))}
		}
	}
	v, err := meter.ParseScaled(value, exp)
	if err != nil {
		return meter.Reading{}, &Error{Reason: BadValue, Detail: fmt.Sprintf("value %s of %s: %v", value, channel, err)}
	}
	return meter.Reading{Channel: info.Channel, Value: v}, nil
}
