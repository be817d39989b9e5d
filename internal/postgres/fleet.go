package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/portal"
)

var _ portal.FleetStore = (*Portal)(nil)

// UsageByRegion sums the primary register of each utility by premise region.
// It reads interval_usage by start_at, which no index leads with, so callers
// keep the window short (hours, not months).
func (s *Portal) UsageByRegion(ctx context.Context, since, until time.Time) ([]portal.RegionUsage, error) {
	utils := []meter.Utility{meter.Electricity, meter.Water, meter.Gas}
	units := map[string]string{}
	var channels []string
	for _, u := range utils {
		ch := meter.PrimaryRegister(u)
		info, err := meter.ParseChannel(string(ch))
		if err != nil {
			return nil, err
		}
		units[string(u)] = info.Unit
		channels = append(channels, string(ch))
	}
	rows, err := s.DB.Pool.Query(ctx, `select p.region, m.utility, sum(iu.quantity)::bigint, count(distinct m.id)
		from interval_usage iu
		join meters m on m.id = iu.meter_id
		join service_points sp on sp.id = m.service_point_id
		join premises p on p.id = sp.premise_id
		where iu.start_at >= $1 and iu.start_at < $2 and iu.channel = any($3)
		group by p.region, m.utility
		order by p.region, m.utility`, since, until, channels)
	if err != nil {
		return nil, fmt.Errorf("usage by region: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (portal.RegionUsage, error) {
		var u portal.RegionUsage
		var thousandths int64
		if err := r.Scan(&u.Region, &u.Utility, &thousandths, &u.Meters); err != nil {
			return u, err
		}
		u.Unit = units[u.Utility]
		u.Quantity = float64(thousandths) / 1000
		return u, nil
	})
}
