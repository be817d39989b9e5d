package protocol

import "errors"

// Reason is why a payload was rejected. The values are the label values of
// the rejection counter (mf_ingest_rejected_total{reason=...}) and must not
// change.
type Reason string

// Rejection reasons of docs/protocol.md that decoding can produce.
// (journal_full belongs to the ingest pipeline, not to decoding.)
const (
	// TooLarge: the payload is longer than Decoder.MaxBytes.
	TooLarge Reason = "too_large"
	// MalformedJSON: the payload is not JSON, is not a JSON object (compact)
	// or array (SenML), repeats a field name in one object, or has a
	// structural field of the wrong JSON type (r or b not an array, an
	// entry, reading or record not an object).
	MalformedJSON Reason = "malformed_json"
	// BadVersion: v is not 1, SenML bver is above 10, or a SenML record
	// carries a mandatory-to-understand field (name ending in "_").
	BadVersion Reason = "bad_version"
	// MissingField: a required field is absent, or r, b or the SenML pack
	// holds no readings.
	MissingField Reason = "missing_field"
	// BadChannel: unknown channel, or a channel of another utility.
	BadChannel Reason = "bad_channel"
	// BadUnit: a unit the channel does not accept.
	BadUnit Reason = "bad_unit"
	// BadValue: a value (or seq) that is not a number in range, or the same
	// channel twice at the same time in one message.
	BadValue Reason = "bad_value"
	// BadTime: a time before 2000-01-01 or too far in the future.
	BadTime Reason = "bad_time"
	// WrongMeter: the SenML base name names another meter.
	WrongMeter Reason = "wrong_meter"
	// TooManyReadings: more than MaxReadings readings at one time, or more
	// than MaxEntries messages in one payload.
	TooManyReadings Reason = "too_many_readings"
)

// Error is a rejected payload. Callers count rejections by Reason:
//
//	var perr *protocol.Error
//	if errors.As(err, &perr) { rejected.WithLabelValues(string(perr.Reason)).Inc() }
type Error struct {
	Reason Reason
	// Detail says what was wrong and where, for logs and for the meter's
	// maintainer; it is not meant to be parsed.
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Detail
}

// ReasonOf returns the rejection reason carried by err, or "" when err is
// nil or not (wrapping) an *Error.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}
