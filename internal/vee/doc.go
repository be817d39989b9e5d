// Package vee owns meter-data validation, estimation and editing (VEE):
// it turns the decoded messages of one meter into validated readings,
// interval consumption on a fixed grid with a quality flag, and one
// exception per rule that fired.
//
//	meter.Message ──▶ State.Apply(rules, msg, received, &out)
//	                    │  duplicate?  clock skew?  late?
//	                    │  register reads ──▶ spans ──▶ grid intervals
//	                    ▼
//	            out.Readings   (raw and validated, every reading)
//	            out.Intervals  (upsert by channel and start)
//	            out.Exceptions (one per rule firing)
//
// The ingest pipeline owns one *State per meter (workers own meters by hash
// of meter ID, so a State is never shared) and writes every Output
// idempotently. Apply is deterministic: the same State and the same
// messages give the same Output, and a State reloaded from MarshalBinary
// continues exactly where the saved one stopped, so a crash followed by a
// replay of the journal changes nothing that was written. A message that
// was already applied is reported as a duplicate and changes nothing.
//
// Quantities are exact: meter.Value integers all the way, consumption
// between two reads split over the grid with remainders carried, so that
// the intervals of a channel always add up to its register advance.
//
// The package does no I/O, imports only the standard library and meter,
// and allocates nothing per message in the steady state (Output.Reset
// keeps buffers). docs/vee.md describes every rule, its settings and
// defaults, the quality flags and the late-data policy.
package vee
