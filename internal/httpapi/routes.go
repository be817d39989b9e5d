package httpapi

import (
	"net/http"
	"slices"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
)

// Scopes an API token may be granted.
const (
	ScopeMetersRead   = "meters:read"
	ScopeMetersWrite  = "meters:write"
	ScopeVEERead      = "vee:read"
	ScopePaymentsRead = "payments:read"
	ScopeUsageRead    = "usage:read"
	ScopeTariffsRead  = "tariffs:read"
	ScopeTariffsWrite = "tariffs:write"
	ScopeFleetRead    = "fleet:read"
)

// Scopes lists every scope a route admits, for tools that grant tokens.
var Scopes = []string{ScopeMetersRead, ScopeMetersWrite, ScopeVEERead, ScopePaymentsRead, ScopeUsageRead, ScopeTariffsRead, ScopeTariffsWrite, ScopeFleetRead}

// routeTable is every endpoint of the API. A route without a rule does not
// start; docs/openapi.yaml must list exactly these (a test compares them).
func (a *api) routeTable() []Route {
	return slices.Concat(
		[]Route{
			{Method: "GET", Pattern: "/openapi.yaml", Rule: Public, Summary: "This API's OpenAPI document", handler: a.openAPI},
		},
		a.authRoutes(),
		a.householdRoutes(),
		a.resourceRoutes(),
		a.usageRoutes(),
		a.tariffRoutes(),
		a.paymentRoutes(),
		a.operatorRoutes(),
		a.alertRoutes(),
		a.fleetRoutes(),
		a.fleetStatsRoutes(),
	)
}

func (a *api) openAPI(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	if len(a.cfg.OpenAPI) == 0 {
		return apperr.New(apperr.NotFound, "no OpenAPI document")
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(a.cfg.OpenAPI)
	return nil
}

// householdScope is the household whose resources p may see: its own for a
// household user, 0 (all) for operators and scoped tokens.
func householdScope(p *auth.Principal) int64 {
	if p.IsHousehold() {
		return p.HouseholdID
	}
	return 0
}

// writePage writes items (fetched with limit+1) as a page.
func writePage[T any](w http.ResponseWriter, items []T, limit int, cursor func(T) string) {
	pg := page{Items: items}
	if len(items) > limit {
		items = items[:limit]
		pg.Items, pg.NextAfter = items, cursor(items[limit-1])
	}
	if items == nil {
		pg.Items = []T{}
	}
	writeJSON(w, http.StatusOK, pg)
}
