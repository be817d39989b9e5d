package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/portal"
)

// fleetStatsRoutes are the operators' statistics of the fleet and of billing.
func (a *api) fleetStatsRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/fleet/stats", Rule: Operator, Scope: ScopeFleetRead, Summary: "Meters by utility and status, silent meters, recent writes and VEE exceptions", handler: a.fleetStats},
		{Method: "GET", Pattern: "/bill-runs", Rule: Operator, Scope: ScopeFleetRead, Summary: "Recent bill runs, newest first", handler: a.billRuns},
	}
}

// silentAfter is how long an active meter may go without a reading before
// it counts as silent.
const silentAfter = time.Hour

func (a *api) fleetStats(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	st, err := a.cfg.Portal.FleetStats(r.Context(), a.cfg.Now(), silentAfter)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (a *api) billRuns(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	limit, after, err := intPage(r)
	if err != nil {
		return err
	}
	runs, err := a.cfg.Portal.BillRuns(r.Context(), after, limit+1)
	if err != nil {
		return err
	}
	writePage(w, runs, limit, func(x portal.BillRun) string { return strconv.FormatInt(x.ID, 10) })
	return nil
}
