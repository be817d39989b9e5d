package billing

import (
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"

	"github.com/meterflow/meterflow/internal/tariff"
)

// TestBillMode checks when a bill reads a register's total instead of its
// days or intervals: only when one tariff version without time of use or
// demand covers the whole period.
func TestBillMode(t *testing.T) {
	rate := decimal.RequireFromString("0.25")
	flat := func(from string) tariff.Version { return tariff.Version{EffectiveFrom: date(from), FlatRate: &rate} }
	tou := tariff.Version{EffectiveFrom: date("2024-01-01"), TOU: &tariff.TOU{}}
	ts := newTariffSet([]StoredTariff{
		{Revision: 1, Tariff: tariff.Tariff{Code: "FLAT", Versions: []tariff.Version{flat("2024-01-01")}}},
		{Revision: 1, Tariff: tariff.Tariff{Code: "CHANGES", Versions: []tariff.Version{flat("2024-01-01"), flat("2025-01-15")}}},
		{Revision: 1, Tariff: tariff.Tariff{Code: "CHANGED", Versions: []tariff.Version{flat("2024-01-01"), flat("2025-01-01"), flat("2025-02-01")}}},
		{Revision: 1, Tariff: tariff.Tariff{Code: "LATE", Versions: []tariff.Version{flat("2025-01-10")}}},
		{Revision: 1, Tariff: tariff.Tariff{Code: "TOU", Versions: []tariff.Version{tou}}},
		// Revision 2 of FLAT changes its rate mid-January.
		{Revision: 2, Tariff: tariff.Tariff{Code: "FLAT", Versions: []tariff.Version{flat("2024-01-01"), flat("2025-01-20")}}},
	})
	from, to := date("2025-01-01"), date("2025-02-01")
	cases := []struct {
		name string
		sp   ServicePoint
		revs map[string]int
		want UsageMode
	}{
		{"one version all period", ServicePoint{TariffCode: "FLAT"}, map[string]int{"FLAT": 1}, Total},
		{"latest revision changes mid-period", ServicePoint{TariffCode: "FLAT"}, nil, Daily},
		{"version starts mid-period", ServicePoint{TariffCode: "CHANGES"}, nil, Daily},
		{"versions change on the boundaries only", ServicePoint{TariffCode: "CHANGED"}, nil, Total},
		{"no version at the start", ServicePoint{TariffCode: "LATE"}, nil, Daily},
		{"time of use", ServicePoint{TariffCode: "TOU"}, nil, Raw},
		{"tariff switch mid-period", ServicePoint{Assignments: []Assignment{
			{EffectiveFrom: date("2024-06-01"), TariffCode: "CHANGED"}, {EffectiveFrom: date("2025-01-10"), TariffCode: "CHANGES"}}}, nil, Daily},
		{"assignment before the period", ServicePoint{Assignments: []Assignment{
			{EffectiveFrom: date("2024-06-01"), TariffCode: "CHANGED"}}}, nil, Total},
		{"move-in mid-period", ServicePoint{Assignments: []Assignment{
			{EffectiveFrom: date("2025-01-10"), TariffCode: "CHANGED"}}}, nil, Daily},
		{"no tariff", ServicePoint{}, nil, Daily},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, billMode(c.sp, from, to, ts, c.revs))
		})
	}
}
