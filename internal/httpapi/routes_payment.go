package httpapi

import (
	"net/http"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
)

// paymentRoutes are a household's payments.
func (a *api) paymentRoutes() []Route {
	return []Route{
		{Method: "POST", Pattern: "/payments/{payment}/confirm", Rule: Household, Summary: "Confirm a payment with its SMS code", handler: a.confirmPayment},
	}
}

type confirmRequest struct {
	Code string `json:"code"`
}

func (a *api) confirmPayment(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	if a.cfg.Payments == nil {
		return apperr.New(apperr.Unavailable, "payments are not enabled on this server")
	}
	if !p.IsHousehold() {
		return apperr.New(apperr.Forbidden, "only the household confirms its payments")
	}
	id, err := pathID(r, "payment")
	if err != nil {
		return err
	}
	var req confirmRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	pay, err := a.cfg.Payments.Confirm(r.Context(), p.HouseholdID, id, req.Code)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": pay.ID, "state": pay.State, "amount": pay.Amount, "currency": pay.Currency})
	return nil
}
