package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/portal"
	"github.com/meterflow/meterflow/internal/tariff"
)

// resourceRoutes are households, premises, meters and budgets.
func (a *api) resourceRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/household", Rule: HouseholdOnly, Summary: "The signed-in household with its accounts and premises", handler: a.ownHousehold},
		{Method: "GET", Pattern: "/households", Rule: Operator, Summary: "Households", handler: a.listHouseholds},
		{Method: "GET", Pattern: "/households/{household}", Rule: Household, Summary: "One household with its accounts and premises", handler: a.getHousehold},
		{Method: "GET", Pattern: "/premises", Rule: Household, Summary: "Premises with their service points and meters", handler: a.listPremises},
		{Method: "GET", Pattern: "/premises/{premise}", Rule: Household, Summary: "One premise with its service points and meters", handler: a.getPremise},
		{Method: "GET", Pattern: "/accounts/{account}/meters", Rule: Household, Summary: "An account's meters with their state", handler: a.accountMeters},
		{Method: "GET", Pattern: "/meters/{meter}", Rule: Operator, Scope: ScopeMetersRead, Summary: "One meter with its state", handler: a.getMeter},
		{Method: "GET", Pattern: "/accounts/{account}/budgets", Rule: Household, Summary: "An account's budgets per cycle", handler: a.getBudgets},
		{Method: "PUT", Pattern: "/accounts/{account}/budgets", Rule: Household, Summary: "Replace an account's budgets", handler: a.putBudgets},
	}
}

// --- households ---

func (a *api) ownHousehold(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	h, err := a.cfg.Portal.Household(r.Context(), p.HouseholdID)
	if err != nil {
		return err
	}
	a.currentTariffs(h.Premises)
	writeJSON(w, http.StatusOK, h)
	return nil
}

func (a *api) listHouseholds(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	limit, after, err := intPage(r)
	if err != nil {
		return err
	}
	hs, err := a.cfg.Portal.Households(r.Context(), after, limit+1)
	if err != nil {
		return err
	}
	writePage(w, hs, limit, func(x portal.Household) string { return strconv.FormatInt(x.ID, 10) })
	return nil
}

func (a *api) getHousehold(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id, err := pathID(r, "household")
	if err != nil {
		return err
	}
	if hh := householdScope(p); hh != 0 && id != hh {
		return apperr.New(apperr.NotFound, "household %d not found", id)
	}
	h, err := a.cfg.Portal.Household(r.Context(), id)
	if err != nil {
		return err
	}
	a.currentTariffs(h.Premises)
	writeJSON(w, http.StatusOK, h)
	return nil
}

// --- premises ---

// currentTariffs sets each service point's tariff in force today, in its
// premise's time zone.
func (a *api) currentTariffs(ps []portal.Premise) {
	now := a.cfg.Now()
	for i := range ps {
		loc, err := time.LoadLocation(ps[i].TimeZone)
		if err != nil {
			loc = time.UTC
		}
		today := now.In(loc).Format(time.DateOnly)
		for j := range ps[i].ServicePoints {
			sp := &ps[i].ServicePoints[j]
			sp.CurrentTariff = sp.TariffOn(today)
		}
	}
}

func (a *api) listPremises(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	limit, after, err := intPage(r)
	if err != nil {
		return err
	}
	ps, err := a.cfg.Portal.Premises(r.Context(), householdScope(p), after, limit+1)
	if err != nil {
		return err
	}
	a.currentTariffs(ps)
	writePage(w, ps, limit, func(x portal.Premise) string { return strconv.FormatInt(x.ID, 10) })
	return nil
}

func (a *api) getPremise(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id, err := pathID(r, "premise")
	if err != nil {
		return err
	}
	pr, err := a.cfg.Portal.Premise(r.Context(), id)
	if err != nil {
		return err
	}
	if hh := householdScope(p); hh != 0 && pr.HouseholdID != hh {
		return apperr.New(apperr.NotFound, "premise %d not found", id)
	}
	ps := []portal.Premise{pr}
	a.currentTariffs(ps)
	writeJSON(w, http.StatusOK, ps[0])
	return nil
}

// --- meters ---

// meterOf loads a meter p may see: a household's own (another's, or one
// installed nowhere, is "not found"), or any for operators and tokens.
func (a *api) meterOf(r *http.Request, p *auth.Principal) (portal.MeterInfo, error) {
	id := r.PathValue("meter")
	if !device.ValidID(id) {
		return portal.MeterInfo{}, apperr.New(apperr.NotFound, "meter %q not found", id)
	}
	m, err := a.cfg.Portal.MeterInfo(r.Context(), id)
	if err != nil {
		return m, err
	}
	if hh := householdScope(p); hh != 0 && m.HouseholdID != hh {
		return portal.MeterInfo{}, apperr.New(apperr.NotFound, "meter %q not found", id)
	}
	return m, nil
}

func (a *api) getMeter(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	m, err := a.meterOf(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (a *api) accountMeters(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	acc, err := a.account(r, p)
	if err != nil {
		return err
	}
	limit, after, err := pageParams(r)
	if err != nil {
		return err
	}
	if after != "" && !device.ValidID(after) {
		return apperr.Field("after", "not a cursor from this list")
	}
	ms, err := a.cfg.Portal.AccountMeterInfos(r.Context(), acc.ID, after, limit+1)
	if err != nil {
		return err
	}
	writePage(w, ms, limit, func(x portal.MeterInfo) string { return x.ID })
	return nil
}

// --- budgets ---

// budgetView is a budget as the API shows it: the amount in the account's
// currency with its minor units ("120.50").
type budgetView struct {
	Scope    string `json:"scope"`
	Amount   string `json:"amount"`
	Percents []int  `json:"percents"`
}

// budgetInput is a budget as the API takes it. The amount is an exact
// decimal, written as a JSON string or number.
type budgetInput struct {
	Scope    string          `json:"scope"`
	Amount   decimal.Decimal `json:"amount"`
	Percents []int           `json:"percents"`
}

type budgetsBody struct {
	Budgets []budgetInput `json:"budgets"`
}

func budgetViews(bs []billing.Budget, currency string) []budgetView {
	out := make([]budgetView, len(bs))
	for i, b := range bs {
		out[i] = budgetView{Scope: b.Scope, Amount: tariff.FormatMoney(b.Amount, currency), Percents: b.Percents}
	}
	return out
}

func (a *api) getBudgets(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	acc, err := a.account(r, p)
	if err != nil {
		return err
	}
	bs, err := a.cfg.Bills.Budgets(r.Context(), acc.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"account_id": acc.ID, "currency": acc.Currency, "budgets": budgetViews(bs, acc.Currency)})
	return nil
}

// maxBudgets is one per scope: the account and each utility.
const maxBudgets = 4

func (a *api) putBudgets(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	acc, err := a.account(r, p)
	if err != nil {
		return err
	}
	var req budgetsBody
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Budgets == nil {
		return apperr.Field("budgets", "required (an empty list removes every budget)")
	}
	if len(req.Budgets) > maxBudgets {
		return apperr.Field("budgets", "at most %d: one for the account and one per utility", maxBudgets)
	}
	bs := make([]billing.Budget, len(req.Budgets))
	for i, b := range req.Budgets {
		bs[i] = billing.Budget{Scope: b.Scope, Amount: b.Amount, Percents: b.Percents}
	}
	saved, err := a.cfg.Bills.SetBudgets(r.Context(), acc.ID, acc.Currency, bs)
	if err != nil {
		return firstField(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"account_id": acc.ID, "currency": acc.Currency, "budgets": budgetViews(saved, acc.Currency)})
	return nil
}
