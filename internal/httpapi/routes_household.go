package httpapi

import (
	"bytes"
	"net/http"
	"strconv"
	"time"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/portal"
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
	limit, afterS, err := pageParams(r)
	if err != nil {
		return err
	}
	after, err := intAfter(afterS)
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
	limit, afterS, err := pageParams(r)
	if err != nil {
		return err
	}
	after, err := intAfter(afterS)
	if err != nil {
		return err
	}
	bills, err := a.cfg.Portal.Bills(r.Context(), acc.ID, after, limit+1)
	if err != nil {
		return err
	}
	writePage(w, bills, limit, func(x portal.BillSummary) string { return strconv.FormatInt(x.ID, 10) })
	return nil
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
	if acs == nil {
		acs = []portal.Accrual{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"account_id": acc.ID, "utilities": acs})
	return nil
}

// maxSpan bounds a usage query per step, so one request reads at most a few
// thousand points per meter.
var maxSpan = map[portal.Step]time.Duration{
	portal.Step15m: 31 * 24 * time.Hour,
	portal.Step1h:  366 * 24 * time.Hour,
	portal.Step1d:  5 * 366 * 24 * time.Hour,
}

func (a *api) accountUsage(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	acc, err := a.account(r, p)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	step := portal.Step(q.Get("step"))
	if step == "" {
		step = portal.Step1h
	}
	span, ok := maxSpan[step]
	if !ok {
		return apperr.Field("step", "want 15m, 1h or 1d")
	}
	utility := q.Get("utility")
	if utility != "" && !meter.Utility(utility).Valid() {
		return apperr.Field("utility", "want electricity, water or gas")
	}
	to := a.cfg.Now().UTC()
	if s := q.Get("to"); s != "" {
		if to, err = time.Parse(time.RFC3339, s); err != nil {
			return apperr.Field("to", "want an RFC 3339 time")
		}
	}
	from := to.Add(-24 * time.Hour)
	if s := q.Get("from"); s != "" {
		if from, err = time.Parse(time.RFC3339, s); err != nil {
			return apperr.Field("from", "want an RFC 3339 time")
		}
	}
	if !from.Before(to) {
		return apperr.Field("from", "must be before to")
	}
	if to.Sub(from) > span {
		return apperr.Field("from", "at step %s a query spans at most %d days", step, int(span.Hours()/24))
	}
	meters, err := a.cfg.Portal.AccountMeters(r.Context(), acc.ID)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(meters))
	for _, m := range meters {
		if utility == "" || m.Utility == utility {
			ids = append(ids, m.ID)
		}
	}
	points, err := a.cfg.Usage.Usage(r.Context(), ids, utility, from, to, step)
	if err != nil {
		return &apperr.Error{Code: apperr.Unavailable, Message: "usage is unavailable right now", Err: err}
	}
	if points == nil {
		points = []portal.UsagePoint{}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"account_id": acc.ID, "step": step, "from": from, "to": to, "meters": meters, "points": points,
	})
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
