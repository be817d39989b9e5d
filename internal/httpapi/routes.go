package httpapi

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/portal"
)

// Scopes an API token may be granted.
const (
	ScopeMetersRead  = "meters:read"
	ScopeMetersWrite = "meters:write"
	ScopeVEERead     = "vee:read"
)

// routeTable is every endpoint of the API. A route without a rule does not
// start; docs/openapi.yaml must list exactly these (a test compares them).
func (a *api) routeTable() []Route {
	return []Route{
		{Method: "GET", Pattern: "/openapi.yaml", Rule: Public, Summary: "This API's OpenAPI document", handler: a.openAPI},
		{Method: "POST", Pattern: "/auth/sign-in", Rule: Public, Summary: "Check phone and password; send a code by SMS", handler: a.signIn},
		{Method: "POST", Pattern: "/auth/verify", Rule: Public, Summary: "Check the code; open a session", handler: a.verify},
		{Method: "POST", Pattern: "/auth/sign-out", Rule: SignedIn, Summary: "Revoke the session", handler: a.signOut},
		{Method: "GET", Pattern: "/me", Rule: SignedIn, Summary: "The signed-in user", handler: a.me},

		{Method: "GET", Pattern: "/accounts", Rule: Household, Summary: "Accounts", handler: a.listAccounts},
		{Method: "GET", Pattern: "/accounts/{account}", Rule: Household, Summary: "One account", handler: a.getAccount},
		{Method: "GET", Pattern: "/accounts/{account}/bills", Rule: Household, Summary: "An account's bills, newest first", handler: a.accountBills},
		{Method: "GET", Pattern: "/accounts/{account}/usage", Rule: Household, Summary: "Usage series of an account's meters", handler: a.accountUsage},
		{Method: "GET", Pattern: "/accounts/{account}/accrual", Rule: Household, Summary: "Cost so far of the running cycle", handler: a.accountAccrual},
		{Method: "GET", Pattern: "/bills/{bill}", Rule: Household, Summary: "One bill with its lines", handler: a.getBill},
		{Method: "GET", Pattern: "/bills/{bill}/print", Rule: Household, Summary: "A bill as printable HTML", handler: a.printBill},
		{Method: "POST", Pattern: "/payments/{payment}/confirm", Rule: Household, Summary: "Confirm a payment with its SMS code", handler: a.confirmPayment},

		{Method: "GET", Pattern: "/meters", Rule: Operator, Scope: ScopeMetersRead, Summary: "Provisioned meters", handler: a.listMeters},
		{Method: "POST", Pattern: "/meters", Rule: Operator, Scope: ScopeMetersWrite, Summary: "Provision meters; returns their tokens once", handler: a.provisionMeters},
		{Method: "POST", Pattern: "/meters/{meter}/revoke", Rule: Operator, Scope: ScopeMetersWrite, Summary: "Revoke a meter", handler: a.revokeMeter},
		{Method: "GET", Pattern: "/vee/exceptions", Rule: Operator, Scope: ScopeVEERead, Summary: "VEE exceptions by meter and rule", handler: a.veeExceptions},
	}
}

func (a *api) openAPI(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	if len(a.cfg.OpenAPI) == 0 {
		return apperr.New(apperr.NotFound, "no OpenAPI document")
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(a.cfg.OpenAPI)
	return nil
}

// --- sign-in ---

type signInRequest struct {
	Phone    string `json:"phone"`
	Password string `json:"password"`
}

type signInResponse struct {
	Challenge string `json:"challenge"`
}

func (a *api) signIn(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	if !a.signInIP.allow(clientIP(r)) {
		return apperr.New(apperr.RateLimited, "too many sign-in attempts; wait a minute")
	}
	var req signInRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if !a.signInPhone.allow(phoneKey(req.Phone)) {
		return apperr.New(apperr.RateLimited, "too many sign-in attempts for this number; wait a few minutes")
	}
	ch, err := a.cfg.Auth.SignIn(r.Context(), req.Phone, req.Password)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, signInResponse{Challenge: ch})
	return nil
}

// phoneKey reduces a phone number to its digits, so spacing does not buy
// more attempts.
func phoneKey(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

type verifyRequest struct {
	Challenge string `json:"challenge"`
	Code      string `json:"code"`
}

type verifyResponse struct {
	Token     string    `json:"token"`
	CSRFToken string    `json:"csrf_token"`
	ExpiresAt time.Time `json:"expires_at"`
	User      auth.User `json:"user"`
}

func (a *api) verify(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	if !a.verifyIP.allow(clientIP(r)) {
		return apperr.New(apperr.RateLimited, "too many code checks; wait a minute")
	}
	var req verifyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	g, err := a.cfg.Auth.Verify(r.Context(), req.Challenge, req.Code)
	if err != nil {
		return err
	}
	a.setCookie(w, SessionCookie, g.Token, g.ExpiresAt, true)
	a.setCookie(w, CSRFCookie, g.CSRF, g.ExpiresAt, false)
	writeJSON(w, http.StatusOK, verifyResponse{Token: g.Token, CSRFToken: g.CSRF, ExpiresAt: g.ExpiresAt, User: g.User})
	return nil
}

func (a *api) setCookie(w http.ResponseWriter, name, value string, expires time.Time, httpOnly bool) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: httpOnly, Secure: a.cfg.CookieSecure, SameSite: http.SameSiteLaxMode}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
	}
	http.SetCookie(w, c)
}

func (a *api) signOut(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	if err := a.cfg.Auth.SignOut(r.Context(), *p); err != nil {
		return err
	}
	a.setCookie(w, SessionCookie, "", time.Time{}, true)
	a.setCookie(w, CSRFCookie, "", time.Time{}, false)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) me(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	u, err := a.cfg.Auth.User(r.Context(), p.UserID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// --- household resources ---

// householdScope is the household whose resources p may see: its own for a
// household user, 0 (all) for operators and scoped tokens.
func householdScope(p *auth.Principal) int64 {
	if p.IsHousehold() {
		return p.HouseholdID
	}
	return 0
}

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
		reqs[i] = device.Request{ID: m.ID, Utility: m.Utility, ServicePointID: m.ServicePointID}
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
