// Package meter owns the vocabulary of metering that every other package
// shares: utilities, channels named by OBIS codes, fixed-point register
// values, readings and their quality flags.
//
// It imports only the standard library. Values are exact fixed-point
// integers (thousandths of a channel's canonical unit) so that a register
// difference is never disturbed by binary floating point on its way to a
// bill.
package meter
