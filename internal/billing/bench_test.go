package billing_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/seed"
	"github.com/meterflow/meterflow/internal/tariff"
)

// BenchmarkBillRun bills seeded accounts (electricity, water and gas each)
// for January 2025, from a fresh set of bills each iteration:
//
//	daily-10000: 10,000 accounts on a daily grid (930,000 intervals),
//	             as `meterflow seed --interval 24h` makes for large runs;
//	15m-300:     300 accounts on the 15-minute grid, half on time of use
//	             (2.7 million intervals), the detail ingest writes.
//
// Reported: accounts/s. docs/performance.md has the figures.
func BenchmarkBillRun(b *testing.B) {
	for _, c := range []struct {
		accounts int
		interval time.Duration
		name     string
	}{
		{10000, 24 * time.Hour, "daily-10000"},
		{300, 15 * time.Minute, "15m-300"},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b, billing.Config{Workers: 2, BatchSize: 500})
			for _, data := range seed.Tariffs() {
				e.loadTariff(string(data))
			}
			_, err := seed.Run(e.ctx, e.db, seed.Options{
				Accounts: c.accounts, From: tariff.Date{Year: 2025, Month: 1, Day: 1}, To: tariff.Date{Year: 2025, Month: 2, Day: 1},
				Interval: c.interval, Utilities: []meter.Utility{meter.Electricity, meter.Water, meter.Gas},
			})
			require.NoError(b, err)
			svc, err := billing.New(e.store, billing.Config{Workers: 2, BatchSize: 500}, slog.New(slog.DiscardHandler))
			require.NoError(b, err)
			asOf := time.Date(2025, 2, 1, 6, 0, 0, 0, time.UTC)
			svc.Now = func() time.Time { return asOf }
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				// Bills are immutable row by row; TRUNCATE is the only way back.
				e.exec(`truncate bill_registers, bill_lines, bills, outbox, outbox_deliveries, bill_runs cascade`)
				b.StartTimer()
				s, err := svc.RunBills(e.ctx, asOf, nil)
				require.NoError(b, err)
				require.Equal(b, c.accounts, s.BillsIssued, fmt.Sprintf("%+v", s))
			}
			b.ReportMetric(float64(c.accounts*b.N)/b.Elapsed().Seconds(), "accounts/s")
		})
	}
}
