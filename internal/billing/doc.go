// Package billing owns the money side of usage: billing cycles, bill runs
// that turn a cycle's billing registers into one consolidated bill per
// account (electricity, water and gas together), adjustments for data that
// arrives after a period was billed, the accrued and projected cost of the
// running cycle, budget and auto-pay thresholds, and the printable bill.
//
// Prices come from package tariff: billing decides which tariff, revision
// and days price which usage, and tariff computes the lines. Billing reads
// only the system of record (its Store, implemented over PostgreSQL); it
// never reads the time-series store.
//
// What must hold:
//   - A bill is issued once per account and period. The Store enforces it
//     (a unique key), so concurrent bill runs and re-runs issue nothing twice.
//   - An issued bill never changes, save its status. Usage that changes after
//     a period was billed (late data, an estimate replaced by a measurement)
//     becomes adjustment lines on the account's next bill.
//   - Threshold events (budget percentages, accrued cost above an amount,
//     prepaid balance below an amount) and "bill issued" are written to an
//     outbox in the same transaction as the change that caused them, once
//     per condition and period.
//
// docs/billing.md describes the model, the bill run, adjustments, accruals
// and the forecast, thresholds and the outbox, and the printable bill.
package billing
