package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/otp"
	"github.com/meterflow/meterflow/internal/payment/sandbox"
)

func decodeAs[T any](t *testing.T, r resp) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(r.body, &v), string(r.body))
	return v
}

// A household pays a bill through the API: the payment is created once per
// Idempotency-Key, confirmed with the code sent to its phone, and cannot be
// confirmed again.
func TestPayBillWithCode(t *testing.T) {
	e := newEnv(t, nil)
	// The fixture's payment holds the bill; cancel it first.
	r := e.do("POST", fmt.Sprintf("/api/v1/payments/%d/cancel", e.a.paymentID), nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))

	path := fmt.Sprintf("/api/v1/bills/%d/pay", e.a.bill)
	hdr := map[string]string{"Idempotency-Key": "k-1"}
	r = e.do("POST", path, payBillRequest{PaymentMethodID: e.a.methodID}, &e.a, false, hdr)
	require.Equal(t, http.StatusCreated, r.code, string(r.body))
	p := decodeAs[paymentJSON](t, r)
	assert.Equal(t, "otp_sent", p.State)
	assert.Equal(t, "12.00", p.Amount)
	code := e.sms.code(t, e.a.phone)

	r = e.do("POST", path, payBillRequest{PaymentMethodID: e.a.methodID}, &e.a, false, hdr)
	require.Equal(t, http.StatusCreated, r.code, string(r.body))
	assert.Equal(t, p.ID, decodeAs[paymentJSON](t, r).ID, "a retried request returns the same payment")

	r = e.do("POST", path, payBillRequest{PaymentMethodID: e.a.methodID}, &e.a, false, map[string]string{"Idempotency-Key": "k-2"})
	assert.Equal(t, http.StatusConflict, r.code, "one payment in progress per bill: %s", r.body)
	r = e.do("POST", path, payBillRequest{PaymentMethodID: e.b.methodID}, &e.a, false, map[string]string{"Idempotency-Key": "k-3"})
	assert.Equal(t, http.StatusBadRequest, r.code, "B's card is not A's to use: %s", r.body)

	confirm := fmt.Sprintf("/api/v1/payments/%d/confirm", p.ID)
	r = e.do("POST", confirm, confirmRequest{Code: "000000"}, &e.a, false, nil)
	if code == "000000" {
		r = e.do("POST", confirm, confirmRequest{Code: "111111"}, &e.a, false, nil)
	}
	assert.Equal(t, otp.CodeWrong, r.errCode(), string(r.body))

	r = e.do("POST", confirm, confirmRequest{Code: code}, &e.b, false, nil)
	assert.Equal(t, http.StatusNotFound, r.code, "B cannot confirm A's payment")

	r = e.do("POST", confirm, confirmRequest{Code: code}, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	assert.Equal(t, "succeeded", decodeAs[paymentJSON](t, r).State)

	r = e.do("POST", confirm, confirmRequest{Code: code}, &e.a, false, nil)
	assert.Equal(t, http.StatusConflict, r.code, "replayed confirmation: %s", r.body)

	r = e.do("GET", "/api/v1/payments?state=succeeded", nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code)
	page := decodeAs[struct{ Items []paymentJSON }](t, r)
	require.Len(t, page.Items, 1)
	assert.Equal(t, p.ID, page.Items[0].ID)

	r = e.do("GET", "/api/v1/payments-stats", nil, &e.op, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	assert.Contains(t, string(r.body), `"state":"succeeded"`)
}

// A household adds and verifies a phone, then turns auto-pay on with the
// code that states the rule's terms.
func TestPhoneAndAutoPaySetup(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/api/v1/phones", addPhoneRequest{Phone: "07400 765432"}, &e.a, false, nil)
	require.Equal(t, http.StatusCreated, r.code, string(r.body))
	ph := decodeAs[struct {
		ID   int64  `json:"id"`
		E164 string `json:"e164"`
	}](t, r)
	assert.Equal(t, "+447400765432", ph.E164)
	r = e.do("POST", "/api/v1/phones", addPhoneRequest{Phone: "12"}, &e.a, false, nil)
	assert.Equal(t, http.StatusBadRequest, r.code)
	assert.Contains(t, string(r.body), `"field":"phone"`)

	r = e.do("POST", fmt.Sprintf("/api/v1/phones/%d/verify", ph.ID), confirmRequest{Code: e.sms.code(t, "+447400765432")}, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	assert.Contains(t, string(r.body), "verified_at")

	e.clock.Add(2 * time.Minute)
	r = e.do("POST", fmt.Sprintf("/api/v1/accounts/%d/autopay", e.a.account), map[string]any{
		"trigger": "balance_below", "balance_below": "5", "topup_amount": "20", "max_amount": "40", "otp_free_below": "20",
		"payment_method_id": e.a.methodID}, &e.a, false, nil)
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	rule := decodeAs[struct {
		ID      int64 `json:"id"`
		Enabled bool  `json:"enabled"`
	}](t, r)
	assert.False(t, rule.Enabled)

	r = e.do("POST", fmt.Sprintf("/api/v1/accounts/%d/autopay", e.a.account), map[string]any{
		"trigger": "balance_below", "balance_below": "5", "topup_amount": "lots", "max_amount": "40", "payment_method_id": e.a.methodID}, &e.a, false, nil)
	assert.Equal(t, http.StatusBadRequest, r.code)
	assert.Contains(t, string(r.body), `"field":"topup_amount"`)

	// Codes go to the most recently verified phone.
	r = e.do("POST", fmt.Sprintf("/api/v1/autopay/%d/confirm", rule.ID), confirmRequest{Code: e.sms.code(t, "+447400765432")}, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	assert.Contains(t, string(r.body), `"enabled":true`)

	r = e.do("GET", fmt.Sprintf("/api/v1/accounts/%d/autopay", e.a.account), nil, &e.op, false, nil)
	require.Equal(t, http.StatusOK, r.code)
	assert.Contains(t, string(r.body), `"trigger":"balance_below"`, "operators see rules")

	r = e.do("DELETE", fmt.Sprintf("/api/v1/autopay/%d", rule.ID), nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	assert.Contains(t, string(r.body), `"enabled":false`)

	r = e.do("GET", "/api/v1/dev/sms", nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
}

// A household adds a card by the gateway's token; a card number, an
// unknown token and another household's token are refused.
func TestAddPaymentMethod(t *testing.T) {
	e := newEnv(t, nil)
	tok, err := sandbox.Tokenize("4000056655665556")
	require.NoError(t, err)
	r := e.do("POST", "/api/v1/payment-methods", addMethodRequest{Token: tok}, &e.a, false, nil)
	require.Equal(t, http.StatusCreated, r.code, string(r.body))
	m := decodeAs[struct {
		ID       int64  `json:"id"`
		Brand    string `json:"brand"`
		Last4    string `json:"last4"`
		ExpYear  int    `json:"exp_year"`
		HasToken bool   `json:"token"`
	}](t, r)
	assert.Equal(t, "visa", m.Brand)
	assert.Equal(t, "5556", m.Last4)
	assert.Equal(t, sandbox.TestExpYear, m.ExpYear)
	assert.NotContains(t, string(r.body), tok, "the token is not echoed")

	r = e.do("POST", "/api/v1/payment-methods", addMethodRequest{Token: "4242 4242 4242 4242"}, &e.a, false, nil)
	assert.Equal(t, http.StatusBadRequest, r.code)
	assert.Contains(t, string(r.body), "never a card number")
	r = e.do("POST", "/api/v1/payment-methods", addMethodRequest{Token: "tok_unknown"}, &e.a, false, nil)
	assert.Equal(t, http.StatusBadRequest, r.code, string(r.body))
	r = e.do("POST", "/api/v1/payment-methods", addMethodRequest{Token: tok}, &e.b, false, nil)
	assert.Equal(t, http.StatusBadRequest, r.code, "a token already held by another household: %s", r.body)

	r = e.do("GET", "/api/v1/payment-methods", nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code)
	assert.Contains(t, string(r.body), `"last4":"5556"`)
}
