// Package profile owns the consumption models of the firmware simulator:
// how much electricity, water and gas one simulated household uses, minute
// by minute, and the meter registers that integrate that use.
//
// A Model is deterministic: the readings it returns at a time depend only
// on the fleet seed, the meter ID, the options and the time given to
// Advance (and on the time of the first Advance, which is when the meter
// is installed and its register starts counting). Randomness comes from
// math/rand/v2 PCG generators seeded per meter and per day or minute, never
// from a global source, so a simulation can be replayed exactly and a
// model advanced in one-minute steps reads the same as one advanced in
// one jump.
//
// Registers are exact: consumption is integrated in millionths of the
// canonical unit and a register reads in meter.Value thousandths, so a
// register never goes backwards (except when it rolls over at its width)
// and the difference of two reads is exactly the consumption generated in
// between.
//
// The package imports only the standard library and internal/meter. A
// Model is not safe for concurrent use: each simulated meter owns its own.
package profile
