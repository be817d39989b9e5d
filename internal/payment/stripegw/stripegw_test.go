package stripegw_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/payment/paymenttest"
	"github.com/meterflow/meterflow/internal/payment/stripegw"
	"github.com/meterflow/meterflow/internal/testenv"
)

const key = "sk_test_meterflow"

func newGateway(t *testing.T, backend string, retries int) *stripegw.Gateway {
	t.Helper()
	cfg := stripegw.DefaultConfig()
	cfg.SecretKey, cfg.BackendURL, cfg.NetworkRetries, cfg.Timeout = key, backend, retries, 5*time.Second
	g, err := stripegw.New(cfg, nil)
	require.NoError(t, err)
	return g
}

// fixtureCard reads, without the adapter, what stripe-mock says of a
// payment method, so the suite compares the adapter's reading with the
// server's own answer rather than with a copy of today's fixture.
func fixtureCard(t *testing.T, base, id string) payment.MethodInfo {
	req, err := http.NewRequest(http.MethodGet, base+"/v1/payment_methods/"+id, nil)
	require.NoError(t, err)
	req.SetBasicAuth(key, "")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var pm struct {
		Card struct {
			Brand    string `json:"brand"`
			Last4    string `json:"last4"`
			ExpMonth int    `json:"exp_month"`
			ExpYear  int    `json:"exp_year"`
		} `json:"card"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&pm))
	return payment.MethodInfo{Brand: pm.Card.Brand, Last4: pm.Card.Last4, ExpMonth: pm.Card.ExpMonth, ExpYear: pm.Card.ExpYear}
}

func TestGatewaySuiteAgainstStripeMock(t *testing.T) {
	mock := testenv.StartStripeMock(t)
	const fixture = "stripe-mock answers every PaymentIntent with one fixture (status requires_payment_method), " +
		"so it cannot show this outcome; TestChargeMapping covers it with Stripe's documented answers"
	const stateless = "stripe-mock keeps no state: a repeated idempotency key returns a new PaymentIntent; " +
		"the sandbox proves replay, TestChargeRequestShape that the key is sent"
	paymenttest.RunGatewaySuite(t, func(t *testing.T) paymenttest.Target {
		g := newGateway(t, mock.URL, 0)
		return paymenttest.Target{
			Gateway:           g,
			Inspector:         g,
			Succeeds:          "pm_card_visa",
			Declined:          "pm_card_chargeDeclined",
			InsufficientFunds: "pm_card_chargeDeclinedInsufficientFunds",
			RequiresAction:    "pm_card_authenticationRequired",
			SucceedsInfo:      fixtureCard(t, mock.URL, "pm_card_visa"),
			Unknown:           "pm_never_issued",
			Skip: map[string]string{
				paymenttest.CaseSucceeds:         fixture,
				paymenttest.CaseDeclined:         fixture,
				paymenttest.CaseRequiresAction:   fixture,
				paymenttest.CaseReplay:           stateless,
				paymenttest.CaseConcurrentReplay: stateless,
				paymenttest.CaseKeyReuse:         stateless,
				paymenttest.CaseUnknownMethod:    "stripe-mock answers every payment method id with its fixture; TestMethodErrors covers not found",
			},
		}
	})
}

// recorded is one request that went through the recording proxy, and
// stripe-mock's answer to it.
type recorded struct {
	method, path string
	header       http.Header
	form         url.Values
	status       int
	body         []byte
}

// recordingProxy forwards to target and keeps every exchange.
func recordingProxy(t *testing.T, target string) (string, func() []recorded) {
	u, err := url.Parse(target)
	require.NoError(t, err)
	var mu sync.Mutex
	var log []recorded
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		mu.Lock()
		log[len(log)-1].status, log[len(log)-1].body = resp.StatusCode, body
		mu.Unlock()
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(raw))
		mu.Lock()
		log = append(log, recorded{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), form: form})
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(raw))
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []recorded {
		mu.Lock()
		defer mu.Unlock()
		return append([]recorded(nil), log...)
	}
}

func TestChargeRequestShape(t *testing.T) {
	ctx := context.Background()
	mock := testenv.StartStripeMock(t)
	proxy, exchanges := recordingProxy(t, mock.URL)
	g := newGateway(t, proxy, 0)
	cases := []struct {
		amount, currency, token string
		minor, customer, pm     string
	}{
		{"12.34", "GBP", "pm_card_visa", "1234", "", "pm_card_visa"},
		{"0.01", "USD", "pm_card_visa", "1", "", "pm_card_visa"},
		{"1234567.89", "EUR", "cus_ada:pm_card_visa", "123456789", "cus_ada", "pm_card_visa"},
		{"500", "JPY", "pm_card_visa", "500", "", "pm_card_visa"},
		{"1.250", "KWD", "pm_card_visa", "1250", "", "pm_card_visa"},
		{"500", "ISK", "pm_card_visa", "50000", "", "pm_card_visa"},
	}
	for i, tc := range cases {
		keyN := "payment:" + tc.currency + ":" + tc.amount
		res, err := g.Charge(ctx, payment.ChargeRequest{IdempotencyKey: keyN, Amount: decimal.RequireFromString(tc.amount),
			Currency: tc.currency, PaymentMethodToken: tc.token, Description: "Meterflow bill 42"})
		require.NoError(t, err, tc.currency)
		assert.True(t, strings.HasPrefix(res.ID, "pi_"), res.ID)
		// stripe-mock's fixture is requires_payment_method: a failed attempt.
		assert.Equal(t, payment.ChargeDeclined, res.Status)

		ex := exchanges()
		require.Len(t, ex, i+1)
		got := ex[i]
		assert.Equal(t, http.MethodPost, got.method)
		assert.Equal(t, "/v1/payment_intents", got.path)
		assert.Equal(t, http.StatusOK, got.status, "stripe-mock accepts the request's shape: %s", got.body)
		assert.Equal(t, keyN, got.header.Get("Idempotency-Key"), "the payment's key is Stripe's key")
		assert.Equal(t, "Bearer "+key, got.header.Get("Authorization"))
		want := url.Values{"amount": {tc.minor}, "currency": {strings.ToLower(tc.currency)}, "payment_method": {tc.pm},
			"confirm": {"true"}, "off_session": {"true"}, "description": {"Meterflow bill 42"}}
		if tc.customer != "" {
			want.Set("customer", tc.customer)
		}
		assert.Equal(t, want, got.form, tc.currency)
		// stripe-mock reflects the amount and currency it was sent.
		var pi struct {
			Amount   int64  `json:"amount"`
			Currency string `json:"currency"`
			ID       string `json:"id"`
		}
		require.NoError(t, json.Unmarshal(got.body, &pi))
		assert.Equal(t, tc.minor, decimal.NewFromInt(pi.Amount).String())
		assert.Equal(t, strings.ToLower(tc.currency), pi.Currency)
		assert.Equal(t, pi.ID, res.ID)
	}

	info, err := g.Method(ctx, "cus_ada:pm_card_visa")
	require.NoError(t, err)
	assert.Equal(t, fixtureCard(t, mock.URL, "pm_card_visa"), info)
	ex := exchanges()
	last := ex[len(ex)-1]
	assert.Equal(t, http.MethodGet, last.method)
	assert.Equal(t, "/v1/payment_methods/pm_card_visa", last.path, "the customer is not part of the lookup")
}

func TestMinorAmount(t *testing.T) {
	cases := []struct {
		amount, currency string
		want             int64
		ok               bool
	}{
		{"12.34", "GBP", 1234, true},
		{"12.3", "GBP", 1230, true},
		{"0.01", "USD", 1, true},
		{"92233720368547758.07", "USD", 9223372036854775807, true},
		{"92233720368547758.08", "USD", 0, false},
		{"12.345", "GBP", 0, false},
		{"1000", "JPY", 1000, true},
		{"1000.5", "JPY", 0, false},
		{"1.23", "KWD", 1230, true},
		{"1.234", "KWD", 0, false},
		{"1.2345", "KWD", 0, false},
		{"25", "ISK", 2500, true},
		{"25.5", "ISK", 0, false},
		{"0", "GBP", 0, false},
		{"-1", "GBP", 0, false},
		{"1", "XXX", 0, false},
		{"1", "gbp", 0, false},
	}
	for _, tc := range cases {
		got, err := stripegw.MinorAmount(decimal.RequireFromString(tc.amount), tc.currency)
		if !tc.ok {
			assert.Equal(t, apperr.Invalid, apperr.CodeOf(err), "%s %s: %v", tc.amount, tc.currency, err)
			continue
		}
		require.NoError(t, err, "%s %s", tc.amount, tc.currency)
		assert.Equal(t, tc.want, got, "%s %s", tc.amount, tc.currency)
	}
}

// scripted answers every request with one canned response, and counts
// requests and their idempotency keys.
type scripted struct {
	mu     sync.Mutex
	status []int
	body   []string
	keys   []string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.keys)
	s.keys = append(s.keys, r.Header.Get("Idempotency-Key"))
	status, body := s.status[min(n, len(s.status)-1)], s.body[min(n, len(s.body)-1)]
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (s *scripted) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

// Bodies in the shape of Stripe's API reference (errors: "error" object
// with type, code, decline_code, message, param, payment_intent).
func intent(status string, extra string) string {
	return `{"id":"pi_123","object":"payment_intent","amount":1234,"currency":"gbp","status":"` + status + `"` + extra + `}`
}

func stripeError(fields string) string { return `{"error":{` + fields + `}}` }

func TestChargeMapping(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		status  int
		body    string
		want    payment.ChargeResult
		code    apperr.Code // "" with wantErr: a plain, retryable error
		wantErr bool
	}{
		{name: "succeeded", status: 200, body: intent("succeeded", ""), want: payment.ChargeResult{ID: "pi_123", Status: payment.ChargeSucceeded}},
		{name: "processing", status: 200, body: intent("processing", ""), want: payment.ChargeResult{ID: "pi_123", Status: payment.ChargeProcessing}},
		{name: "requires_action", status: 200, body: intent("requires_action", `,"next_action":{"type":"use_stripe_sdk"}`),
			want: payment.ChargeResult{ID: "pi_123", Status: payment.ChargeRequiresAction}},
		{name: "requires_payment_method with a decline", status: 200,
			body: intent("requires_payment_method", `,"last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"do_not_honor"}`),
			want: payment.ChargeResult{ID: "pi_123", Status: payment.ChargeDeclined, DeclineCode: "do_not_honor"}},
		{name: "canceled", status: 200, body: intent("canceled", ""), want: payment.ChargeResult{ID: "pi_123", Status: payment.ChargeDeclined, DeclineCode: "canceled"}},
		{name: "requires_capture is for reconciliation", status: 200, body: intent("requires_capture", ""), wantErr: true},
		{name: "card declined: insufficient funds", status: 402,
			body: stripeError(`"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds.","payment_intent":{"id":"pi_456","object":"payment_intent","status":"requires_payment_method"}`),
			want: payment.ChargeResult{ID: "pi_456", Status: payment.ChargeDeclined, DeclineCode: "insufficient_funds"}},
		{name: "card declined: generic", status: 402,
			body: stripeError(`"type":"card_error","code":"card_declined","decline_code":"generic_decline","message":"Your card was declined."`),
			want: payment.ChargeResult{Status: payment.ChargeDeclined, DeclineCode: "generic_decline"}},
		{name: "card error without decline code", status: 402,
			body: stripeError(`"type":"card_error","code":"expired_card","message":"Your card has expired."`),
			want: payment.ChargeResult{Status: payment.ChargeDeclined, DeclineCode: "expired_card"}},
		{name: "authentication required off session", status: 402,
			body: stripeError(`"type":"card_error","code":"authentication_required","decline_code":"authentication_required","payment_intent":{"id":"pi_789","object":"payment_intent","status":"requires_payment_method"}`),
			want: payment.ChargeResult{ID: "pi_789", Status: payment.ChargeRequiresAction}},
		{name: "invalid request", status: 400,
			body: stripeError(`"type":"invalid_request_error","code":"parameter_invalid_integer","param":"amount","message":"Invalid integer: 12.5"`),
			code: apperr.Invalid, wantErr: true},
		{name: "no such payment method", status: 400,
			body: stripeError(`"type":"invalid_request_error","code":"resource_missing","param":"payment_method","message":"No such PaymentMethod: 'pm_x'"`),
			code: apperr.Invalid, wantErr: true},
		{name: "idempotency error", status: 400,
			body: stripeError(`"type":"idempotency_error","message":"Keys for idempotent requests can only be used with the same parameters they were first used with."`),
			code: apperr.Conflict, wantErr: true},
		{name: "key in use", status: 409,
			body:    stripeError(`"type":"invalid_request_error","code":"idempotency_key_in_use","message":"There is currently another in-progress request using this Stripe-Idempotency-Key."`),
			wantErr: true},
		{name: "bad api key", status: 401, body: stripeError(`"type":"invalid_request_error","message":"Invalid API Key provided: sk_test_***"`), wantErr: true},
		{name: "rate limited", status: 429, body: stripeError(`"type":"invalid_request_error","code":"rate_limit","message":"Too many requests"`), wantErr: true},
		{name: "api error", status: 500, body: stripeError(`"type":"api_error","message":"Something went wrong on Stripe's end."`), wantErr: true},
		{name: "unavailable, not json", status: 503, body: `<html>down</html>`, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &scripted{status: []int{tc.status}, body: []string{tc.body}}
			srv := httptest.NewServer(s)
			t.Cleanup(srv.Close)
			g := newGateway(t, srv.URL, 0)
			res, err := g.Charge(ctx, payment.ChargeRequest{IdempotencyKey: "payment:1", Amount: decimal.RequireFromString("12.34"),
				Currency: "GBP", PaymentMethodToken: "pm_card_visa"})
			assert.Equal(t, []string{"payment:1"}, s.seen(), "one request, with the key")
			if !tc.wantErr {
				require.NoError(t, err)
				assert.Equal(t, tc.want, res)
				return
			}
			require.Error(t, err)
			assert.Equal(t, payment.ChargeResult{}, res)
			if tc.code == "" {
				c := apperr.CodeOf(err)
				assert.True(t, c != apperr.Invalid && c != apperr.Conflict, "the outcome is unknown, so it must stay retryable: %v", err)
				return
			}
			assert.Equal(t, tc.code, apperr.CodeOf(err), "%v", err)
		})
	}
}

func TestLibraryRetriesKeepTheKey(t *testing.T) {
	// A lock timeout is the error answer stripe-go retries by itself.
	s := &scripted{status: []int{429, 200}, body: []string{
		stripeError(`"type":"invalid_request_error","code":"lock_timeout","message":"This object cannot be accessed right now because another API request or Stripe process is currently accessing it."`),
		intent("succeeded", "")}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	g := newGateway(t, srv.URL, 2)
	res, err := g.Charge(context.Background(), payment.ChargeRequest{IdempotencyKey: "payment:7", Amount: decimal.RequireFromString("1.00"),
		Currency: "GBP", PaymentMethodToken: "pm_card_visa"})
	require.NoError(t, err)
	assert.Equal(t, payment.ChargeSucceeded, res.Status)
	assert.Equal(t, []string{"payment:7", "payment:7"}, s.seen(), "a retried request carries the same key")
}

func TestNetworkFailureIsRetryable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	g := newGateway(t, "http://"+addr, 0)
	_, err = g.Charge(context.Background(), payment.ChargeRequest{IdempotencyKey: "payment:8", Amount: decimal.RequireFromString("1.00"),
		Currency: "GBP", PaymentMethodToken: "pm_card_visa"})
	require.Error(t, err)
	assert.Equal(t, apperr.Internal, apperr.CodeOf(err), "no code: the service retries with the same key")
}

func TestMethodErrors(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		status int
		body   string
		code   apperr.Code
	}{
		{"not found", 404, stripeError(`"type":"invalid_request_error","code":"resource_missing","param":"payment_method","message":"No such PaymentMethod: 'pm_x'"`), apperr.NotFound},
		{"not a card", 200, `{"id":"pm_x","object":"payment_method","type":"sepa_debit","sepa_debit":{"last4":"3000"}}`, apperr.Invalid},
		{"api error", 500, stripeError(`"type":"api_error","message":"oops"`), apperr.Internal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(&scripted{status: []int{tc.status}, body: []string{tc.body}})
			t.Cleanup(srv.Close)
			_, err := newGateway(t, srv.URL, 0).Method(ctx, "pm_x")
			assert.Equal(t, tc.code, apperr.CodeOf(err), "%v", err)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	err := stripegw.Config{BackendURL: "http://api.stripe.com", Timeout: 0, NetworkRetries: -1}.Validate()
	require.Error(t, err)
	for _, want := range []string{"secret key", "backend url", "timeout", "network retries"} {
		assert.Contains(t, err.Error(), want)
	}
	good := stripegw.DefaultConfig()
	good.SecretKey = "sk_live_abc"
	assert.NoError(t, good.Validate())
	good.SecretKey = "pk_live_abc"
	assert.ErrorContains(t, good.Validate(), "secret key", "a publishable key cannot charge")
	good.SecretKey, good.BackendURL = "rk_test_abc", "http://127.0.0.1:12111"
	assert.NoError(t, good.Validate(), "plain http to loopback (stripe-mock)")
	_, err = stripegw.New(stripegw.Config{}, nil)
	assert.Error(t, err)
}
