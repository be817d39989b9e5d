package httpapi

import (
	"net/http"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/portal"
)

// operatorRoutes are the fleet and data-quality endpoints of operators.
func (a *api) operatorRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/meters", Rule: Operator, Scope: ScopeMetersRead, Summary: "Provisioned meters", handler: a.listMeters},
		{Method: "POST", Pattern: "/meters", Rule: Operator, Scope: ScopeMetersWrite, Summary: "Provision meters; returns their tokens once", handler: a.provisionMeters},
		{Method: "POST", Pattern: "/meters/{meter}/revoke", Rule: Operator, Scope: ScopeMetersWrite, Summary: "Revoke a meter", handler: a.revokeMeter},
		{Method: "GET", Pattern: "/vee/exceptions", Rule: Operator, Scope: ScopeVEERead, Summary: "VEE exceptions by meter and rule", handler: a.veeExceptions},
	}
}

// --- operators ---

func (a *api) listMeters(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	limit, after, err := pageParams(r)
	if err != nil {
		return err
	}
	ms, err := a.cfg.Devices.List(r.Context(), after, limit+1)
	if err != nil {
		return err
	}
	writePage(w, ms, limit, func(x device.Meter) string { return x.ID })
	return nil
}

type provisionRequest struct {
	Meters []struct {
		ID             string        `json:"id"`
		Utility        meter.Utility `json:"utility"`
		Model          string        `json:"model"`
		ServicePointID *int64        `json:"service_point_id"`
	} `json:"meters"`
}

// maxProvision bounds one request; larger fleets use several requests or
// `meterflow meters provision-bulk`.
const maxProvision = 1000

func (a *api) provisionMeters(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	var req provisionRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if len(req.Meters) == 0 || len(req.Meters) > maxProvision {
		return apperr.Field("meters", "want 1 to %d meters", maxProvision)
	}
	reqs := make([]device.Request, len(req.Meters))
	for i, m := range req.Meters {
		reqs[i] = device.Request{ID: m.ID, Utility: m.Utility, Model: m.Model, ServicePointID: m.ServicePointID}
	}
	out, err := a.cfg.Devices.Provision(r.Context(), reqs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"meters": out})
	return nil
}

func (a *api) revokeMeter(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	id := r.PathValue("meter")
	if !device.ValidID(id) {
		return apperr.New(apperr.NotFound, "meter %q not found", id)
	}
	if err := a.cfg.Devices.Revoke(r.Context(), id); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "status": string(device.Revoked)})
	return nil
}

func (a *api) veeExceptions(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	limit, after, err := pageParams(r)
	if err != nil {
		return err
	}
	xs, err := a.cfg.Portal.VEEExceptions(r.Context(), after, limit+1)
	if err != nil {
		return err
	}
	writePage(w, xs, limit, portal.VEEException.Cursor)
	return nil
}
