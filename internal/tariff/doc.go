// Package tariff owns what a unit of electricity, water or gas costs and how
// a period's metered usage becomes the priced lines of a bill.
//
// A Tariff is a list of Versions, each in force from its EffectiveFrom date
// (a local midnight in the account's time zone) until the next one starts.
// A Version combines a standing charge per day, exactly one way of pricing
// energy (flat rate, inclining-block tiers or time-of-use bands with optional
// seasons), an optional demand charge, levies, percentage taxes and a minimum
// charge. Tariffs come from YAML or JSON files (Parse) or are built in code
// and checked with Validate.
//
// Tariff.Price turns a Usage (a billing period, the account's time.Location
// and the interval consumption inside the period) into a Charge whose every
// Line satisfies Quantity × UnitPrice = Amount before rounding. A period that
// spans two versions is split at the version boundary and each part is priced
// by its own version; Tariff.Accrue prices the first days of a cycle as their
// pro-rata share of the cycle's bill.
//
// Money and rates are exact decimals (github.com/shopspring/decimal), never
// float64. Each line amount is rounded once to the currency's minor unit,
// half away from zero; taxes are computed on the sum of the rounded lines and
// rounded once. docs/billing.md is the reference for the file format and the
// rounding rules.
//
// The package does no I/O and keeps no state: a Tariff is a value, safe to
// share between goroutines as long as nobody mutates it.
package tariff
