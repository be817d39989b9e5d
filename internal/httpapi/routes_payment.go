package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/tariff"
)

// Payments runs payments (payment.Service).
type Payments interface {
	Create(ctx context.Context, n payment.NewPayment) (payment.Payment, error)
	Payment(ctx context.Context, id int64) (payment.Payment, error)
	SendCode(ctx context.Context, id int64) error
	Confirm(ctx context.Context, householdID, paymentID int64, code string) (payment.Payment, error)
	Cancel(ctx context.Context, householdID, paymentID int64) (payment.Payment, error)
	Payee() string
}

// PaymentSetup handles phones, payment methods and auto-pay rules
// (payment.Setup).
type PaymentSetup interface {
	Phones(ctx context.Context, householdID int64) ([]payment.Phone, error)
	AddPhone(ctx context.Context, householdID int64, raw string) (payment.Phone, error)
	SendPhoneCode(ctx context.Context, householdID, phoneID int64) error
	VerifyPhone(ctx context.Context, householdID, phoneID int64, code string) (payment.Phone, error)
	Methods(ctx context.Context, householdID int64) ([]payment.Method, error)
	AddMethod(ctx context.Context, householdID int64, token string) (payment.Method, error)
	DisableMethod(ctx context.Context, householdID, id int64) error
	Rules(ctx context.Context, accountID int64) ([]payment.Rule, error)
	Enrol(ctx context.Context, r payment.Rule) (payment.Rule, error)
	SendRuleCode(ctx context.Context, householdID, ruleID int64) error
	ConfirmRule(ctx context.Context, householdID, ruleID int64, code string) (payment.Rule, error)
	DisableRule(ctx context.Context, householdID, ruleID int64) (payment.Rule, error)
}

// PaymentLog lists payments and counts them (postgres.Payments).
type PaymentLog interface {
	// ListPayments lists payments newest first, of one household (0: all),
	// optionally in one state, with ids below before (0: from the newest).
	ListPayments(ctx context.Context, householdID int64, state string, before int64, limit int) ([]payment.Payment, error)
	PaymentStats(ctx context.Context, since time.Time) ([]payment.StateCount, error)
}

// DevInbox is the development SMS inbox (postgres.DevSMS); nil in
// production.
type DevInbox interface {
	Inbox(ctx context.Context, to string, limit int) ([]payment.InboxMessage, error)
}

// paymentRoutes are a household's payments, phones, payment methods and
// auto-pay rules.
func (a *api) paymentRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/payments", Rule: Household, Summary: "Payments, newest first", handler: a.listPayments},
		{Method: "GET", Pattern: "/payments/{payment}", Rule: Household, Summary: "One payment", handler: a.getPayment},
		{Method: "POST", Pattern: "/payments/{payment}/confirm", Rule: HouseholdOnly, Summary: "Confirm a payment with its SMS code", handler: a.confirmPayment},
		{Method: "POST", Pattern: "/payments/{payment}/resend", Rule: HouseholdOnly, Summary: "Send the payment's code again", handler: a.resendPaymentCode},
		{Method: "POST", Pattern: "/payments/{payment}/cancel", Rule: HouseholdOnly, Summary: "Cancel an unconfirmed payment", handler: a.cancelPayment},
		{Method: "POST", Pattern: "/bills/{bill}/pay", Rule: HouseholdOnly, Summary: "Pay a bill: creates a payment and sends its code", handler: a.payBill},
		{Method: "GET", Pattern: "/payments-stats", Rule: Operator, Scope: ScopePaymentsRead, Summary: "Payments by state", handler: a.paymentStats},

		{Method: "GET", Pattern: "/phones", Rule: HouseholdOnly, Summary: "The household's phones", handler: a.listPhones},
		{Method: "POST", Pattern: "/phones", Rule: HouseholdOnly, Summary: "Add a phone; a code to verify it is sent to it", handler: a.addPhone},
		{Method: "POST", Pattern: "/phones/{phone}/resend", Rule: HouseholdOnly, Summary: "Send the phone's code again", handler: a.resendPhoneCode},
		{Method: "POST", Pattern: "/phones/{phone}/verify", Rule: HouseholdOnly, Summary: "Verify a phone with its code", handler: a.verifyPhone},

		{Method: "GET", Pattern: "/payment-methods", Rule: HouseholdOnly, Summary: "The household's payment methods", handler: a.listMethods},
		{Method: "POST", Pattern: "/payment-methods", Rule: HouseholdOnly, Summary: "Add a payment method from the gateway's token", handler: a.addMethod},
		{Method: "DELETE", Pattern: "/payment-methods/{method}", Rule: HouseholdOnly, Summary: "Remove a payment method (and the rules using it)", handler: a.deleteMethod},

		{Method: "GET", Pattern: "/accounts/{account}/autopay", Rule: Household, Summary: "An account's auto-pay rules", handler: a.listRules},
		{Method: "POST", Pattern: "/accounts/{account}/autopay", Rule: HouseholdOnly, Summary: "Ask for an auto-pay rule; a code stating its terms is sent", handler: a.enrol},
		{Method: "POST", Pattern: "/autopay/{rule}/resend", Rule: HouseholdOnly, Summary: "Send the rule's code again", handler: a.resendRuleCode},
		{Method: "POST", Pattern: "/autopay/{rule}/confirm", Rule: HouseholdOnly, Summary: "Put an auto-pay rule in effect with its code", handler: a.confirmRule},
		{Method: "DELETE", Pattern: "/autopay/{rule}", Rule: HouseholdOnly, Summary: "Turn an auto-pay rule off", handler: a.disableRule},

		{Method: "GET", Pattern: "/dev/sms", Rule: HouseholdOnly, Summary: "Development SMS inbox: messages to the household's phones (development servers only)", handler: a.devSMS},
	}
}

func (a *api) payments() (Payments, PaymentSetup, PaymentLog, error) {
	if a.cfg.Payments == nil || a.cfg.PaymentSetup == nil || a.cfg.PaymentLog == nil {
		return nil, nil, nil, apperr.New(apperr.Unavailable, "payments are not enabled on this server")
	}
	return a.cfg.Payments, a.cfg.PaymentSetup, a.cfg.PaymentLog, nil
}

// paymentService is the payment service, for opening.
func (a *api) paymentService() (Payments, error) {
	pays, _, _, err := a.payments()
	return pays, err
}

// setupService is the setup service, for opening.
func (a *api) setupService() (PaymentSetup, error) {
	_, setup, _, err := a.payments()
	return setup, err
}

// householdOnly returns p's household: payments are a household's own
// acts, which operators and tokens cannot perform for it.
func householdOnly(_ *http.Request, p *auth.Principal) (int64, error) {
	if !p.IsHousehold() {
		return 0, apperr.New(apperr.Forbidden, "only the household itself can do this")
	}
	return p.HouseholdID, nil
}

type paymentJSON struct {
	ID              int64     `json:"id"`
	HouseholdID     int64     `json:"household_id"`
	AccountID       int64     `json:"account_id"`
	BillID          int64     `json:"bill_id,omitempty"`
	AutoPayRuleID   int64     `json:"autopay_rule_id,omitempty"`
	Kind            string    `json:"kind"`
	Amount          string    `json:"amount"`
	Fee             string    `json:"fee,omitempty"`
	Currency        string    `json:"currency"`
	Payee           string    `json:"payee"`
	PaymentMethodID int64     `json:"payment_method_id"`
	State           string    `json:"state"`
	RequiresOTP     bool      `json:"requires_otp"`
	FailureReason   string    `json:"failure_reason,omitempty"`
	ConfirmBy       time.Time `json:"confirm_by"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	SettledAt       time.Time `json:"settled_at,omitzero"`
}

func toPaymentJSON(p payment.Payment) paymentJSON {
	return paymentJSON{ID: p.ID, HouseholdID: p.HouseholdID, AccountID: p.AccountID, BillID: p.BillID, AutoPayRuleID: p.AutoPayRuleID,
		Kind: string(p.Kind), Amount: tariff.FormatMoney(p.Amount, p.Currency), Fee: feeString(p), Currency: p.Currency, Payee: p.Payee, PaymentMethodID: p.PaymentMethodID,
		State: string(p.State), RequiresOTP: p.RequiresOTP, FailureReason: p.FailureReason, ConfirmBy: p.ConfirmBy,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, SettledAt: p.SettledAt}
}

func feeString(p payment.Payment) string {
	if p.Fee.IsZero() {
		return ""
	}
	return tariff.FormatMoney(p.Fee, p.Currency)
}

// ruleView is an auto-pay rule as the API shows it: payment.Rule with its
// amounts in the rule's currency with its minor units, unset ones left out.
// Its fields of the same JSON names take the place of the rule's own
// (encoding/json prefers the less nested field).
type ruleView struct {
	payment.Rule
	AccruedAbove string `json:"accrued_above,omitempty"`
	BalanceBelow string `json:"balance_below,omitempty"`
	TopUpAmount  string `json:"topup_amount,omitempty"`
	MaxAmount    string `json:"max_amount"`
	OTPFreeBelow string `json:"otp_free_below,omitempty"`
}

func toRuleView(r payment.Rule) ruleView {
	unlessZero := func(d decimal.Decimal) string {
		if d.IsZero() {
			return ""
		}
		return tariff.FormatMoney(d, r.Currency)
	}
	return ruleView{Rule: r, AccruedAbove: unlessZero(r.AccruedAbove), BalanceBelow: unlessZero(r.BalanceBelow),
		TopUpAmount: unlessZero(r.TopUpAmount), MaxAmount: tariff.FormatMoney(r.MaxAmount, r.Currency), OTPFreeBelow: unlessZero(r.OTPFreeBelow)}
}

// ruleJSON is ruleView over a service's answer.
func ruleJSON(r payment.Rule, err error) (ruleView, error) {
	return toRuleView(r), err
}

// stateCountView is payment.StateCount with its amount in the currency's
// minor units (taking the place of the embedded one).
type stateCountView struct {
	payment.StateCount
	Amount string `json:"amount"`
}

// payment loads a payment p may see.
func (a *api) payment(r *http.Request, p *auth.Principal) (payment.Payment, error) {
	pays, _, _, err := a.payments()
	if err != nil {
		return payment.Payment{}, err
	}
	id, err := pathID(r, "payment")
	if err != nil {
		return payment.Payment{}, err
	}
	pay, err := pays.Payment(r.Context(), id)
	if err != nil {
		return pay, err
	}
	if hh := householdScope(p); hh != 0 && pay.HouseholdID != hh {
		return payment.Payment{}, apperr.New(apperr.NotFound, "payment %d not found", id)
	}
	return pay, nil
}

var paymentStates = map[string]bool{}

func init() {
	for _, s := range []payment.State{payment.Created, payment.OTPSent, payment.Confirmed, payment.Charging,
		payment.Succeeded, payment.Failed, payment.Expired, payment.Canceled} {
		paymentStates[string(s)] = true
	}
}

func (a *api) listPayments(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	_, _, log, err := a.payments()
	if err != nil {
		return err
	}
	limit, before, err := intPage(r)
	if err != nil {
		return err
	}
	state := r.URL.Query().Get("state")
	if state != "" && !paymentStates[state] {
		return apperr.Field("state", "unknown payment state %q", state)
	}
	ps, err := log.ListPayments(r.Context(), householdScope(p), state, before, limit+1)
	if err != nil {
		return err
	}
	out := make([]paymentJSON, len(ps))
	for i, x := range ps {
		out[i] = toPaymentJSON(x)
	}
	writePage(w, out, limit, func(x paymentJSON) string { return strconv.FormatInt(x.ID, 10) })
	return nil
}

func (a *api) getPayment(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	pay, err := a.payment(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toPaymentJSON(pay))
	return nil
}

type confirmRequest struct {
	Code string `json:"code"`
}

func (c *confirmRequest) check() error {
	if c.Code == "" {
		return apperr.Field("code", "must be set")
	}
	return nil
}

func (a *api) confirmPayment(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req confirmRequest
	pays, hh, id, err := opening(a.paymentService, r, p, input{who: householdOnly, param: "payment", body: &req})
	if err != nil {
		return err
	}
	pay, err := pays.Confirm(r.Context(), hh, id, req.Code)
	return answer(w, http.StatusOK, toPaymentJSON(pay), err)
}

func (a *api) resendPaymentCode(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	if _, err := householdOnly(r, p); err != nil {
		return err
	}
	pay, err := a.payment(r, p)
	if err != nil {
		return err
	}
	if err := a.cfg.Payments.SendCode(r.Context(), pay.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) cancelPayment(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	pays, hh, id, err := opening(a.paymentService, r, p, input{who: householdOnly, param: "payment"})
	if err != nil {
		return err
	}
	pay, err := pays.Cancel(r.Context(), hh, id)
	return answer(w, http.StatusOK, toPaymentJSON(pay), err)
}

type payBillRequest struct {
	PaymentMethodID int64 `json:"payment_method_id"`
}

// payBill creates a payment of a bill's total and sends its code. The
// client's Idempotency-Key header makes a retried request return the same
// payment; without it, a bill has at most one payment in progress anyway.
func (a *api) payBill(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	// The body is read after the bill, so a bill that is not the
	// household's is "not found" whatever the body says.
	pays, hh, _, err := opening(a.paymentService, r, p, input{who: householdOnly})
	if err != nil {
		return err
	}
	b, err := a.bill(r, p)
	if err != nil {
		return err
	}
	var req payBillRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.PaymentMethodID <= 0 {
		return apperr.Field("payment_method_id", "must be set")
	}
	if b.Status == "paid" {
		return apperr.New(apperr.Conflict, "bill %d is already paid", b.ID)
	}
	if !b.Total.IsPositive() {
		return apperr.New(apperr.Conflict, "bill %d has nothing to pay", b.ID)
	}
	key := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if len(key) > 200 {
		return apperr.Field("Idempotency-Key", "at most 200 characters")
	}
	if key == "" {
		key = strconv.FormatInt(a.cfg.Now().UnixNano(), 36)
	}
	pay, err := pays.Create(r.Context(), payment.NewPayment{HouseholdID: hh, AccountID: b.AccountID, BillID: b.ID, Kind: payment.KindBill,
		Amount: b.Total, Currency: b.Currency, Payee: pays.Payee(), PaymentMethodID: req.PaymentMethodID,
		IdempotencyKey: "portal:" + strconv.FormatInt(hh, 10) + ":" + key})
	if err != nil {
		return err
	}
	if pay.State == payment.Created {
		if err := pays.SendCode(r.Context(), pay.ID); err != nil {
			return err
		}
		if pay, err = pays.Payment(r.Context(), pay.ID); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusCreated, toPaymentJSON(pay))
	return nil
}

func (a *api) paymentStats(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	_, _, log, err := a.payments()
	if err != nil {
		return err
	}
	hours := 24
	if s := r.URL.Query().Get("hours"); s != "" {
		if hours, err = strconv.Atoi(s); err != nil || hours < 1 || hours > 24*366 {
			return apperr.Field("hours", "want 1 to 8784")
		}
	}
	since := a.cfg.Now().Add(-time.Duration(hours) * time.Hour)
	st, err := log.PaymentStats(r.Context(), since)
	if err != nil {
		return err
	}
	states := make([]stateCountView, len(st))
	for i, c := range st {
		states[i] = stateCountView{StateCount: c, Amount: tariff.FormatMoney(c.Amount, c.Currency)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"since": since, "states": states})
	return nil
}

// --- phones, payment methods and auto-pay ---

// setupCall opens a household's act on its phones, payment methods or
// auto-pay rules: payments must be enabled and the caller a household user;
// it reads the path parameter param (when set) and the JSON body into req
// (when not nil), and returns the setup service, the household and the id.
func (a *api) setupCall(r *http.Request, p *auth.Principal, param string, req any) (PaymentSetup, int64, int64, error) {
	return opening(a.setupService, r, p, input{who: householdOnly, param: param, body: req})
}

func (a *api) listPhones(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	setup, hh, _, err := a.setupCall(r, p, "", nil)
	if err != nil {
		return err
	}
	out, err := items(setup.Phones(r.Context(), hh))
	return answer(w, http.StatusOK, out, err)
}

type addPhoneRequest struct {
	Phone string `json:"phone"`
}

func (a *api) addPhone(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req addPhoneRequest
	setup, hh, _, err := a.setupCall(r, p, "", &req)
	if err != nil {
		return err
	}
	if !a.verifyIP.allow(clientIP(r)) {
		return apperr.New(apperr.RateLimited, "too many requests; wait a minute")
	}
	ph, err := setup.AddPhone(r.Context(), hh, req.Phone)
	return answer(w, http.StatusCreated, ph, err)
}

func (a *api) resendPhoneCode(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	setup, hh, id, err := a.setupCall(r, p, "phone", nil)
	if err != nil {
		return err
	}
	return noContent(w, setup.SendPhoneCode(r.Context(), hh, id))
}

func (a *api) verifyPhone(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req confirmRequest
	setup, hh, id, err := a.setupCall(r, p, "phone", &req)
	if err != nil {
		return err
	}
	ph, err := setup.VerifyPhone(r.Context(), hh, id, req.Code)
	return answer(w, http.StatusOK, ph, err)
}

func (a *api) listMethods(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	setup, hh, _, err := a.setupCall(r, p, "", nil)
	if err != nil {
		return err
	}
	out, err := items(setup.Methods(r.Context(), hh))
	return answer(w, http.StatusOK, out, err)
}

type addMethodRequest struct {
	Token string `json:"token"`
}

func (a *api) addMethod(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req addMethodRequest
	setup, hh, _, err := a.setupCall(r, p, "", &req)
	if err != nil {
		return err
	}
	m, err := setup.AddMethod(r.Context(), hh, req.Token)
	return answer(w, http.StatusCreated, m, err)
}

func (a *api) deleteMethod(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	setup, hh, id, err := a.setupCall(r, p, "method", nil)
	if err != nil {
		return err
	}
	return noContent(w, setup.DisableMethod(r.Context(), hh, id))
}

func (a *api) listRules(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	_, setup, _, err := a.payments()
	if err != nil {
		return err
	}
	acc, err := a.account(r, p)
	if err != nil {
		return err
	}
	rules, err := setup.Rules(r.Context(), acc.ID)
	views := make([]ruleView, len(rules))
	for i, x := range rules {
		views[i] = toRuleView(x)
	}
	out, err := items(views, err)
	return answer(w, http.StatusOK, out, err)
}

type enrolRequest struct {
	Trigger         payment.Trigger `json:"trigger"`
	AccruedAbove    *string         `json:"accrued_above"`
	BalanceBelow    *string         `json:"balance_below"`
	TopUpAmount     *string         `json:"topup_amount"`
	MaxAmount       string          `json:"max_amount"`
	OTPFreeBelow    *string         `json:"otp_free_below"`
	PaymentMethodID int64           `json:"payment_method_id"`
}

// amountField parses an optional decimal amount sent as a string.
func amountField(field string, s *string) (decimal.Decimal, error) {
	if s == nil || *s == "" {
		return decimal.Zero, nil
	}
	d, err := decimal.NewFromString(*s)
	if err != nil {
		return d, apperr.Field(field, "want a decimal amount such as \"12.50\"")
	}
	return d, nil
}

func (a *api) enrol(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	setup, hh, _, err := a.setupCall(r, p, "", nil)
	if err != nil {
		return err
	}
	acc, err := a.account(r, p)
	if err != nil {
		return err
	}
	var req enrolRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	rule := payment.Rule{HouseholdID: hh, AccountID: acc.ID, Trigger: req.Trigger, PaymentMethodID: req.PaymentMethodID}
	maxA := req.MaxAmount
	for _, f := range []struct {
		name string
		src  *string
		dst  *decimal.Decimal
	}{{"accrued_above", req.AccruedAbove, &rule.AccruedAbove}, {"balance_below", req.BalanceBelow, &rule.BalanceBelow},
		{"topup_amount", req.TopUpAmount, &rule.TopUpAmount}, {"max_amount", &maxA, &rule.MaxAmount},
		{"otp_free_below", req.OTPFreeBelow, &rule.OTPFreeBelow}} {
		if *f.dst, err = amountField(f.name, f.src); err != nil {
			return err
		}
	}
	got, err := ruleJSON(setup.Enrol(r.Context(), rule))
	return answer(w, http.StatusAccepted, got, err)
}

func (a *api) resendRuleCode(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	setup, hh, id, err := a.setupCall(r, p, "rule", nil)
	if err != nil {
		return err
	}
	return noContent(w, setup.SendRuleCode(r.Context(), hh, id))
}

func (a *api) confirmRule(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req confirmRequest
	setup, hh, id, err := a.setupCall(r, p, "rule", &req)
	if err != nil {
		return err
	}
	rule, err := ruleJSON(setup.ConfirmRule(r.Context(), hh, id, req.Code))
	return answer(w, http.StatusOK, rule, err)
}

func (a *api) disableRule(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	setup, hh, id, err := a.setupCall(r, p, "rule", nil)
	if err != nil {
		return err
	}
	rule, err := ruleJSON(setup.DisableRule(r.Context(), hh, id))
	return answer(w, http.StatusOK, rule, err)
}

// --- development SMS inbox ---

func (a *api) devSMS(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	if a.cfg.DevInbox == nil {
		return apperr.New(apperr.NotFound, "this server sends real SMS: there is no development inbox")
	}
	setup, hh, _, err := a.setupCall(r, p, "", nil)
	if err != nil {
		return err
	}
	phones, err := setup.Phones(r.Context(), hh)
	if err != nil {
		return err
	}
	out := []payment.InboxMessage{}
	for _, ph := range phones {
		msgs, err := a.cfg.DevInbox.Inbox(r.Context(), ph.E164, 20)
		if err != nil {
			return err
		}
		out = append(out, msgs...)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
	return nil
}
