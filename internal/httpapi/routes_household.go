package httpapi

import (
	"bytes"
	"net/http"
	"strconv"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/portal"
	"github.com/meterflow/meterflow/internal/tariff"
)

// householdRoutes are a household's accounts, usage and bills.
func (a *api) householdRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/accounts", Rule: Household, Summary: "Accounts", handler: a.listAccounts},
		{Method: "GET", Pattern: "/accounts/{account}", Rule: Household, Summary: "One account", handler: a.getAccount},
		{Method: "GET", Pattern: "/accounts/{account}/bills", Rule: Household, Summary: "An account's bills, newest first", handler: a.accountBills},
		{Method: "GET", Pattern: "/accounts/{account}/usage", Rule: Household, Summary: "Usage series of an account's meters", handler: a.accountUsage},
		{Method: "GET", Pattern: "/accounts/{account}/accrual", Rule: Household, Summary: "Cost so far of the running cycle", handler: a.accountAccrual},
		{Method: "GET", Pattern: "/bills/{bill}", Rule: Household, Summary: "One bill with its lines", handler: a.getBill},
		{Method: "GET", Pattern: "/bills/{bill}/print", Rule: Household, Summary: "A bill as printable HTML", handler: a.printBill},
	}
}

// --- household resources ---

// account loads an account p may see. Another household's account is "not
// found", so ids do not reveal what exists.
func (a *api) account(r *http.Request, p *auth.Principal) (portal.Account, error) {
	id, err := pathID(r, "account")
	if err != nil {
		return portal.Account{}, err
	}
	acc, err := a.cfg.Portal.Account(r.Context(), id)
	if err != nil {
		return acc, err
	}
	if hh := householdScope(p); hh != 0 && acc.HouseholdID != hh {
		return portal.Account{}, apperr.New(apperr.NotFound, "account %d not found", id)
	}
	return acc, nil
}

func (a *api) listAccounts(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	limit, after, err := intPage(r)
	if err != nil {
		return err
	}
	accs, err := a.cfg.Portal.Accounts(r.Context(), householdScope(p), after, limit+1)
	if err != nil {
		return err
	}
	writePage(w, accs, limit, func(x portal.Account) string { return strconv.FormatInt(x.ID, 10) })
	return nil
}

func (a *api) getAccount(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	acc, err := a.account(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, acc)
	return nil
}

func (a *api) accountBills(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	acc, err := a.account(r, p)
	if err != nil {
		return err
	}
	limit, after, err := intPage(r)
	if err != nil {
		return err
	}
	bills, err := a.cfg.Portal.Bills(r.Context(), acc.ID, after, limit+1)
	if err != nil {
		return err
	}
	views := make([]billSummaryView, len(bills))
	for i, b := range bills {
		views[i] = billSummaryJSON(b)
	}
	writePage(w, views, limit, func(x billSummaryView) string { return strconv.FormatInt(x.ID, 10) })
	return nil
}

// accrualView is one utility's cost so far of the running cycle, its
// projected cost at the end of the cycle, and its budget (nil: none), so a
// portal can draw "so far / forecast / budget". Amounts are written with
// the currency's minor units; Amount and Projected take the place of the
// accrual's own decimals (encoding/json prefers the less nested field).
type accrualView struct {
	portal.Accrual
	Amount         string  `json:"amount"`
	Projected      string  `json:"projected"`
	Budget         *string `json:"budget"`
	BudgetPercents []int   `json:"budget_percents,omitempty"`
}

// accrualTotal is the whole account: the sum over utilities and the
// account-wide budget.
type accrualTotal struct {
	Amount         string  `json:"amount"`
	Projected      string  `json:"projected"`
	Budget         *string `json:"budget"`
	BudgetPercents []int   `json:"budget_percents,omitempty"`
}

func (a *api) accountAccrual(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	acc, err := a.account(r, p)
	if err != nil {
		return err
	}
	acs, err := a.cfg.Portal.Accruals(r.Context(), acc.ID)
	if err != nil {
		return err
	}
	bs, err := a.cfg.Bills.Budgets(r.Context(), acc.ID)
	if err != nil {
		return err
	}
	budgets := map[string]billing.Budget{}
	for _, b := range bs {
		budgets[b.Scope] = b
	}
	budget := func(scope string) (*string, []int) {
		b, ok := budgets[scope]
		if !ok {
			return nil, nil
		}
		s := tariff.FormatMoney(b.Amount, acc.Currency)
		return &s, b.Percents
	}
	var total accrualTotal
	total.Budget, total.BudgetPercents = budget(billing.BudgetScopeAccount)
	amount, projected := decimal.Zero, decimal.Zero
	views := make([]accrualView, len(acs))
	for i, ac := range acs {
		views[i] = accrualView{Accrual: ac, Amount: tariff.FormatMoney(ac.Amount, ac.Currency),
			Projected: tariff.FormatMoney(ac.Projected, ac.Currency)}
		views[i].Budget, views[i].BudgetPercents = budget(ac.Utility)
		amount = amount.Add(ac.Amount)
		projected = projected.Add(ac.Projected)
	}
	total.Amount, total.Projected = tariff.FormatMoney(amount, acc.Currency), tariff.FormatMoney(projected, acc.Currency)
	body := map[string]any{"account_id": acc.ID, "currency": acc.Currency, "utilities": views, "total": total, "budgets": budgetViews(bs, acc.Currency)}
	if len(acs) > 0 {
		body["cycle_start"], body["cycle_end"] = acs[0].CycleStart, acs[0].CycleEnd
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (a *api) bill(r *http.Request, p *auth.Principal) (billing.Bill, error) {
	id, err := pathID(r, "bill")
	if err != nil {
		return billing.Bill{}, err
	}
	b, err := a.cfg.Bills.Bill(r.Context(), id)
	if err != nil {
		return b, err
	}
	if hh := householdScope(p); hh != 0 && b.HouseholdID != hh {
		return billing.Bill{}, apperr.New(apperr.NotFound, "bill %d not found", id)
	}
	return b, nil
}

func (a *api) getBill(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	b, err := a.bill(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, billJSON(b))
	return nil
}

func (a *api) printBill(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	b, err := a.bill(r, p)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := billing.RenderBill(&buf, b); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	_, _ = w.Write(buf.Bytes())
	return nil
}
