package portal

import (
	"context"
	"time"
)

// RegionUsage is the consumption of one utility's primary register in one
// region over a recent window, for the operator dashboard.
type RegionUsage struct {
	Region  string `json:"region"`
	Utility string `json:"utility"`
	// Unit is the primary register's unit (kWh, m3).
	Unit string `json:"unit"`
	// Quantity is the sum over the window, in Unit.
	Quantity float64 `json:"quantity"`
	// Meters is how many meters reported usage in the window.
	Meters int64 `json:"meters"`
}

// FleetStore reads fleet-wide figures for operators.
type FleetStore interface {
	// UsageByRegion sums interval consumption from since (inclusive) to
	// until (exclusive) by premise region and utility. Premises without a
	// region are grouped under "".
	UsageByRegion(ctx context.Context, since, until time.Time) ([]RegionUsage, error)
}
