// Package protocol owns the wire format of docs/protocol.md, version 1: it
// turns a meter's MQTT payload (compact JSON or SenML JSON) into
// meter.Message values, and writes the compact form for the firmware
// simulator and tests.
//
// Decoding is all or nothing: a payload either yields every message it
// carries or is rejected with an *Error whose Reason is one of the rejection
// reasons the protocol documents, so that the ingest pipeline can count
// rejections by reason. Values never pass through binary floating point:
// the decimal text of each JSON number goes straight to meter.ParseScaled.
//
// The package does no I/O and keeps no state between calls; a Decoder is
// safe for concurrent use.
package protocol
