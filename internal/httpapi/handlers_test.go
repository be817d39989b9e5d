package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
)

// TestDisabledServicesAreUnavailable calls every alert and payment route
// of a server without those services: each answers 503 unavailable, for
// the caller its rule admits, before it reads anything else.
func TestDisabledServicesAreUnavailable(t *testing.T) {
	e := newEnv(t, func(c *APIConfig) {
		c.Alerts, c.Payments, c.PaymentSetup, c.PaymentLog = nil, nil, nil, nil
	})
	ids := map[string]string{"account": fmt.Sprint(e.a.account), "bill": fmt.Sprint(e.a.bill), "payment": fmt.Sprint(e.a.paymentID),
		"alert": fmt.Sprint(e.a.alertID), "alarm": fmt.Sprint(e.alarm), "phone": fmt.Sprint(e.a.phoneID),
		"method": fmt.Sprint(e.a.methodID), "rule": fmt.Sprint(e.a.ruleID)}
	n := 0
	for _, rt := range append(e.srv.api.alertRoutes(), e.srv.api.paymentRoutes()...) {
		t.Run(rt.Method+" "+rt.Pattern, func(t *testing.T) {
			path := Prefix + paramRE.ReplaceAllStringFunc(rt.Pattern, func(m string) string { return ids[m[1:len(m)-1]] })
			h := &e.a
			if rt.Rule == Operator {
				h = &e.op
			}
			r := e.do(rt.Method, path, []byte(`not even JSON`), h, false, nil)
			assert.Equal(t, http.StatusServiceUnavailable, r.code, string(r.body))
			assert.Equal(t, apperr.Unavailable, r.errCode())
		})
		n++
	}
	assert.Greater(t, n, 20)
}

// TestHandlerOpenings checks what alert and payment handlers read before
// they act, and in which order: whose household, the id in the path, then
// the JSON body and its required fields; the first problem is the answer.
func TestHandlerOpenings(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name         string
		method, path string
		body         string
		who          *household
		code         int
		err          apperr.Code
		field        string
		message      string
	}{
		{name: "confirm without a code", method: "POST", path: fmt.Sprintf("/payments/%d/confirm", e.a.paymentID), body: `{}`,
			code: 400, err: apperr.Invalid, field: "code"},
		{name: "confirm with an empty body", method: "POST", path: fmt.Sprintf("/payments/%d/confirm", e.a.paymentID),
			code: 400, err: apperr.Invalid, message: "request body is empty"},
		{name: "confirm with an unknown field", method: "POST", path: fmt.Sprintf("/payments/%d/confirm", e.a.paymentID),
			body: `{"code":"123456","amount":"1"}`, code: 400, err: apperr.Invalid, message: "unknown field"},
		{name: "confirm with data after the object", method: "POST", path: fmt.Sprintf("/payments/%d/confirm", e.a.paymentID),
			body: `{"code":"123456"} {}`, code: 400, err: apperr.Invalid, message: "data after the JSON object"},
		{name: "confirm of a bad id, before the body", method: "POST", path: "/payments/x/confirm", body: `nope`,
			code: 404, err: apperr.NotFound},
		{name: "cancel of a bad id", method: "POST", path: "/payments/0/cancel", code: 404, err: apperr.NotFound},
		{name: "verify a phone without a code", method: "POST", path: fmt.Sprintf("/phones/%d/verify", e.a.phoneID), body: `{"code":""}`,
			code: 400, err: apperr.Invalid, field: "code"},
		{name: "confirm a rule without a code", method: "POST", path: fmt.Sprintf("/autopay/%d/confirm", e.a.ruleID), body: `{}`,
			code: 400, err: apperr.Invalid, field: "code"},
		{name: "confirm a rule of a bad id, before the body", method: "POST", path: "/autopay/-1/confirm", body: `{}`,
			code: 404, err: apperr.NotFound},
		{name: "add a phone with a malformed body", method: "POST", path: "/phones", body: `{"phone":`, code: 400, err: apperr.Invalid},
		{name: "read an alert of a bad id", method: "POST", path: "/alerts/first/read", code: 404, err: apperr.NotFound},
		{name: "acknowledge an alarm of a bad id, before the body", method: "POST", path: "/alarms/x/ack", body: `nope`, who: &e.op,
			code: 404, err: apperr.NotFound},
		{name: "acknowledge with a malformed note", method: "POST", path: fmt.Sprintf("/alarms/%d/ack", e.alarm), body: `{"note":1}`, who: &e.op,
			code: 400, err: apperr.Invalid},
		{name: "acknowledge with an unknown field", method: "POST", path: fmt.Sprintf("/alarms/%d/ack", e.alarm), body: `{"notes":"x"}`, who: &e.op,
			code: 400, err: apperr.Invalid, message: "unknown field"},
		{name: "an operator's inbox of a bad household", method: "GET", path: "/alerts?household_id=-1", who: &e.op,
			code: 400, err: apperr.Invalid, field: "household_id"},
		{name: "an operator's stream of a bad household", method: "GET", path: "/alerts/stream?household_id=x", who: &e.op,
			code: 400, err: apperr.Invalid, field: "household_id"},
		{name: "an operator's preferences of a bad household", method: "GET", path: "/alert-preferences?household_id=0", who: &e.op,
			code: 400, err: apperr.Invalid, field: "household_id"},
		{name: "an operator names the household, before the body", method: "PUT", path: "/alert-preferences", body: `nope`, who: &e.op,
			code: 400, err: apperr.Invalid, field: "household_id", message: "an operator names the household"},
		{name: "preferences with an empty body", method: "PUT", path: "/alert-preferences",
			code: 400, err: apperr.Invalid, message: "request body is empty"},
		{name: "preferences with an unknown field", method: "PUT", path: "/alert-preferences", body: `{"channel":{}}`,
			code: 400, err: apperr.Invalid, message: "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			who := tc.who
			if who == nil {
				who = &e.a
			}
			var body any
			if tc.body != "" {
				body = []byte(tc.body)
			}
			r := e.do(tc.method, Prefix+tc.path, body, who, false, nil)
			require.Equal(t, tc.code, r.code, string(r.body))
			assert.Equal(t, tc.err, r.errCode())
			assert.Equal(t, tc.field, r.errField())
			if tc.message != "" {
				assert.True(t, strings.Contains(string(r.body), tc.message), string(r.body))
			}
		})
	}

	// An acknowledgement may come without a body.
	r := e.do("POST", fmt.Sprintf("%s/alarms/%d/ack", Prefix, e.alarm), nil, &e.op, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
}
