package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/meterflow/meterflow/docs"
	"github.com/meterflow/meterflow/internal/alert"
	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/otp"
	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/payment/sandbox"
	"github.com/meterflow/meterflow/internal/portal"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// outbox is an SMS sender that keeps the last message to each number.
type outbox struct {
	mu   sync.Mutex
	last map[string]string
}

func (o *outbox) Send(_ context.Context, to, body string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last[to] = body
	return "test", nil
}

var codeRE = regexp.MustCompile(`\b\d{6}\b`)

func (o *outbox) code(t *testing.T, to string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := codeRE.FindString(o.last[to])
	require.NotEmpty(t, c, "no code sent to %s", to)
	return c
}

type noUsage struct{}

func (noUsage) Usage(context.Context, []string, string, time.Time, time.Time, portal.Step) ([]portal.UsagePoint, error) {
	return nil, nil
}

// household is one household's fixture: its user and resources.
type household struct {
	id, alertID                int64
	phone                      string
	account, bill, paymentID   int64
	premise, servicePoint      int64
	phoneID, methodID, ruleID  int64
	accountNumber, meterID     string
	token, csrf, sessionCookie string
}

type env struct {
	t      *testing.T
	srv    *Server
	alerts *alert.Service
	alarm  int64
	db     *postgres.DB
	auth   *auth.Service
	bills  *billing.Service
	sms    *outbox
	clock  *clock
	a, b   household
	op     household
}

const password = "correct horse battery"

const flatTariffCode = "TEST-E-FLAT"

// flatTariff is a flat electricity tariff in the file format.
const flatTariff = `code: TEST-E-FLAT
name: Test flat electricity
utility: electricity
currency: GBP
unit: kWh
versions:
  - effective_from: 2020-01-01
    standing_charge_per_day: 0.50
    flat_rate: 0.2450
  - effective_from: 2026-04-01
    standing_charge_per_day: 0.55
    flat_rate: 0.2500
    taxes:
      - {name: VAT, percent: 5}
`

func newEnv(t *testing.T, tune func(*APIConfig)) *env {
	t.Helper()
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	clk := &clock{t: time.Now()}
	sms := &outbox{last: map[string]string{}}
	as, err := auth.New(&postgres.Auth{DB: db}, sms, auth.Config{
		Key: bytes.Repeat([]byte{7}, 32), Argon2: auth.Argon2{Memory: 1024, Time: 1, Threads: 1}, Now: clk.Now,
	})
	require.NoError(t, err)
	bs, err := billing.New(&postgres.Billing{DB: db}, billing.Config{}, nil)
	require.NoError(t, err)
	e := &env{t: t, db: db, auth: as, bills: bs, sms: sms, clock: clk}
	_, _, err = bs.LoadTariff(ctx, []byte(flatTariff))
	require.NoError(t, err)

	store := &postgres.Payments{DB: db}
	issuer, err := otp.NewIssuer(otp.DefaultPolicy(), bytes.Repeat([]byte{9}, 32), "test", clk.Now)
	require.NoError(t, err)
	gw := &sandbox.Gateway{}
	pays, err := payment.New(store, gw, sms, issuer, payment.DefaultConfig(), slog.New(slog.DiscardHandler), clk.Now)
	require.NoError(t, err)
	setup := pays.NewSetup(store, "GB")
	setup.Inspector = gw
	for i, h := range []*household{&e.a, &e.b} {
		h.phone = fmt.Sprintf("+4474001234%02d", i+10)
		h.accountNumber = fmt.Sprintf("ACC-%d", i+1)
		h.meterID = fmt.Sprintf("M-%d", i+1)
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into households (name) values ($1) returning id`, "H"+h.accountNumber).Scan(&h.id))
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into accounts (household_id, number, currency, time_zone)
			values ($1, $2, 'GBP', 'Europe/London') returning id`, h.id, h.accountNumber).Scan(&h.account))
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into premises (account_id, address, region) values ($1, $2, 'GB-LND') returning id`,
			h.account, fmt.Sprintf("%d Acacia Avenue", i+1)).Scan(&h.premise))
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into service_points (premise_id, utility, tariff_code) values ($1, 'electricity', $2) returning id`,
			h.premise, flatTariffCode).Scan(&h.servicePoint))
		_, err := db.Pool.Exec(ctx, `insert into meters (id, service_point_id, utility, token_hash) values ($1, $2, 'electricity', '\x00')`, h.meterID, h.servicePoint)
		require.NoError(t, err)
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into bills (account_id, household_id, period_start, period_end,
			period_start_at, period_end_at, time_zone, currency, subtotal, tax, total, issued_at, due_date)
			values ($1, $2, '2026-01-01', '2026-02-01', '2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', 'Europe/London', 'GBP',
			10, 2, 12, now(), '2026-02-15') returning id`, h.account, h.id).Scan(&h.bill))
		var created bool
		h.alertID, created, err = (&postgres.Alerts{DB: db}).Record(ctx, alert.Alert{Key: "test:" + h.accountNumber, HouseholdID: h.id,
			AccountID: h.account, Kind: alert.KindBillIssued, Title: "Bill " + h.accountNumber, Body: "for " + h.accountNumber, CreatedAt: clk.Now()},
			[]alert.Delivery{{Channel: alert.InApp, NotBefore: clk.Now()}})
		require.NoError(t, err)
		require.True(t, created)
		_, err = as.CreateUser(ctx, auth.NewUser{Phone: h.phone, Password: password, Role: auth.RoleHousehold, HouseholdID: h.id})
		require.NoError(t, err)
	}
	for i, h := range []*household{&e.a, &e.b} {
		h.phoneID, err = store.AddPhone(ctx, h.id, h.phone, clk.Now())
		require.NoError(t, err)
		// Two cards the sandbox charges successfully.
		tok, err := sandbox.Tokenize([]string{sandbox.CardSuccess, "5555555555554444"}[i])
		require.NoError(t, err)
		h.methodID, err = store.AddPaymentMethod(ctx, postgres.PaymentMethod{HouseholdID: h.id, Gateway: "sandbox", Token: tok, Last4: tok[len(tok)-4:]})
		require.NoError(t, err)
		p, err := pays.Create(ctx, payment.NewPayment{HouseholdID: h.id, AccountID: h.account, BillID: h.bill, Kind: payment.KindBill,
			Amount: decimal.RequireFromString("12"), Currency: "GBP", Payee: "Meterflow Energy", PaymentMethodID: h.methodID,
			IdempotencyKey: fmt.Sprintf("test:%d", h.id)})
		require.NoError(t, err)
		h.paymentID = p.ID
		r, err := setup.Enrol(ctx, payment.Rule{HouseholdID: h.id, AccountID: h.account, Trigger: payment.TriggerBillIssued,
			MaxAmount: decimal.RequireFromString("100"), PaymentMethodID: h.methodID})
		require.NoError(t, err)
		h.ruleID = r.ID
	}
	e.op.phone = "+447400123499"
	_, err = as.CreateUser(ctx, auth.NewUser{Phone: e.op.phone, Password: password, Role: auth.RoleOperator})
	require.NoError(t, err)

	require.NoError(t, db.Pool.QueryRow(ctx, `insert into alarms (kind, subject, message, raised_at, last_seen_at)
		values ('meter_offline', 'M-1', 'offline', now(), now()) returning id`).Scan(&e.alarm))
	acfg := alert.DefaultConfig()
	acfg.Now = clk.Now
	e.alerts, err = alert.New(alert.Deps{Store: &postgres.Alerts{DB: db}, Outbox: &postgres.Outbox{DB: db}, Sender: sms}, acfg)
	require.NoError(t, err)

	cfg := APIConfig{
		Auth: as, Portal: &postgres.Portal{DB: db}, Usage: noUsage{}, Bills: bs,
		Devices:  device.NewRegistry(&postgres.Meters{DB: db}, device.Config{}),
		Payments: pays, PaymentSetup: setup, PaymentLog: store, DevInbox: &postgres.DevSMS{DB: db}, Alerts: e.alerts,
		OpenAPI: docs.OpenAPI, Now: clk.Now,
	}
	if tune != nil {
		tune(&cfg)
	}
	e.srv = New(Config{API: &cfg})
	for _, h := range []*household{&e.a, &e.b, &e.op} {
		e.signIn(h)
	}
	return e
}

type resp struct {
	code    int
	body    []byte
	cookies []*http.Cookie
}

func (r resp) errCode() apperr.Code {
	var b errorBody
	_ = json.Unmarshal(r.body, &b)
	return b.Error.Code
}

// do sends a request; h selects the credentials: nil for none, a bearer
// token otherwise (or the session cookie when cookie is set).
func (e *env) do(method, path string, body any, h *household, cookie bool, hdr map[string]string) resp {
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		require.NoError(e.t, err)
		rd = bytes.NewReader(j)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, method, path, rd)
	req.RemoteAddr = "192.0.2.1:1234"
	if h != nil {
		if cookie {
			req.AddCookie(&http.Cookie{Name: SessionCookie, Value: h.sessionCookie})
		} else {
			req.Header.Set("Authorization", "Bearer "+h.token)
		}
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(flushEnds{rec, cancel}, req)
	return resp{code: rec.Code, body: rec.Body.Bytes(), cookies: rec.Result().Cookies()}
}

// flushEnds ends the request's context when a stream of server-sent
// events flushes, so a test sees what the stream sent first; other
// responses that flush (exports) run to their end.
type flushEnds struct {
	*httptest.ResponseRecorder
	cancel context.CancelFunc
}

func (f flushEnds) Flush() {
	f.ResponseRecorder.Flush()
	if f.Header().Get("Content-Type") == "text/event-stream" {
		f.cancel()
	}
}

func (e *env) signIn(h *household) {
	e.t.Helper()
	r := e.do("POST", "/api/v1/auth/sign-in", signInRequest{Phone: h.phone, Password: password}, nil, false, nil)
	require.Equal(e.t, http.StatusAccepted, r.code, string(r.body))
	var ch signInResponse
	require.NoError(e.t, json.Unmarshal(r.body, &ch))
	r = e.do("POST", "/api/v1/auth/verify", verifyRequest{Challenge: ch.Challenge, Code: e.sms.code(e.t, h.phone)}, nil, false, nil)
	require.Equal(e.t, http.StatusOK, r.code, string(r.body))
	var v verifyResponse
	require.NoError(e.t, json.Unmarshal(r.body, &v))
	h.token, h.csrf = v.Token, v.CSRFToken
	for _, c := range r.cookies {
		if c.Name == SessionCookie {
			h.sessionCookie = c.Value
			assert.True(e.t, c.HttpOnly)
			assert.Equal(e.t, http.SameSiteLaxMode, c.SameSite)
		}
	}
	require.Equal(e.t, h.token, h.sessionCookie)
}

var paramRE = regexp.MustCompile(`\{(\w+)\}`)

// TestRouteAccess walks the whole route table: every route declares a rule;
// without credentials a non-public route is 401; a household gets 403 on
// operator routes and 404 on another household's resources. A route with a
// path parameter this test has no fixture for fails it.
func TestRouteAccess(t *testing.T) {
	e := newEnv(t, nil)
	other := map[string]string{ // household B's resources, requested by A
		"account": fmt.Sprint(e.b.account), "bill": fmt.Sprint(e.b.bill),
		"payment": fmt.Sprint(e.b.paymentID), "meter": e.b.meterID,
		"alert": fmt.Sprint(e.b.alertID), "alarm": fmt.Sprint(e.alarm),
		"household": fmt.Sprint(e.b.id), "premise": fmt.Sprint(e.b.premise), "tariff": flatTariffCode,
		"phone": fmt.Sprint(e.b.phoneID), "method": fmt.Sprint(e.b.methodID), "rule": fmt.Sprint(e.b.ruleID),
	}
	own := map[string]string{
		"account": fmt.Sprint(e.a.account), "bill": fmt.Sprint(e.a.bill),
		"payment": fmt.Sprint(e.a.paymentID), "meter": e.a.meterID,
		"alert": fmt.Sprint(e.a.alertID), "alarm": fmt.Sprint(e.alarm),
		"household": fmt.Sprint(e.a.id), "premise": fmt.Sprint(e.a.premise), "tariff": flatTariffCode,
		"phone": fmt.Sprint(e.a.phoneID), "method": fmt.Sprint(e.a.methodID), "rule": fmt.Sprint(e.a.ruleID),
	}
	bodies := map[string]any{
		"/payments/{payment}/confirm": confirmRequest{Code: "123456"},
		"/phones/{phone}/verify":      confirmRequest{Code: "123456"},
		"/autopay/{rule}/confirm":     confirmRequest{Code: "123456"},
		"/bills/{bill}/pay":           payBillRequest{PaymentMethodID: 1},
		"/meters":                     map[string]any{"meters": []map[string]string{{"id": "NEW-1", "utility": "electricity"}}},
		"/alert-preferences":          map[string]any{"channels": map[string][]string{"leak": {"inapp"}}},
		"/alarms/{alarm}/ack":         map[string]string{"note": "seen"},
		"/accounts/{account}/budgets": budgetsBody{Budgets: []budgetInput{{Scope: "account", Amount: decimal.RequireFromString("99.50")}}},
		"/tariffs":                    []byte(strings.Replace(flatTariff, "TEST-E-FLAT", "TEST-E-NEW", 1)),
	}
	// B's budget, which A's PUT must not change.
	_, err := e.bills.SetBudgets(context.Background(), e.b.account, "GBP", []billing.Budget{{Scope: "account", Amount: decimal.NewFromInt(70)}})
	require.NoError(t, err)
	fill := func(pattern string, ids map[string]string) string {
		return Prefix + paramRE.ReplaceAllStringFunc(pattern, func(m string) string {
			name := m[1 : len(m)-1]
			v, ok := ids[name]
			if !ok {
				t.Fatalf("route %s: no fixture for path parameter {%s}; add one to TestRouteAccess", pattern, name)
			}
			return v
		})
	}
	routes := e.srv.Routes()
	require.NotEmpty(t, routes)
	for _, rt := range routes {
		t.Run(rt.Method+" "+rt.Pattern, func(t *testing.T) {
			require.NotEqual(t, ruleNone, rt.Rule, "every route declares an access rule")
			body := bodies[rt.Pattern]
			if rt.Rule == Public {
				return
			}
			r := e.do(rt.Method, fill(rt.Pattern, own), body, nil, false, nil)
			assert.Equal(t, http.StatusUnauthorized, r.code, "no credentials: %s", r.body)
			assert.Equal(t, apperr.Unauthorized, r.errCode())

			r = e.do(rt.Method, fill(rt.Pattern, own), body, &e.a, false, map[string]string{"Authorization": "Bearer mfs_forged"})
			assert.Equal(t, http.StatusUnauthorized, r.code, "forged token")

			switch rt.Rule {
			case Operator:
				r = e.do(rt.Method, fill(rt.Pattern, own), body, &e.a, false, nil)
				assert.Equal(t, http.StatusForbidden, r.code, "household on an operator route: %s", r.body)
			case Household:
				if paramRE.MatchString(rt.Pattern) {
					r = e.do(rt.Method, fill(rt.Pattern, other), body, &e.a, false, nil)
					assert.Contains(t, []int{http.StatusForbidden, http.StatusNotFound}, r.code, "A on B's resource: %s", r.body)
					assert.NotContains(t, string(r.body), e.b.accountNumber)
				}
				if rt.Method == "GET" {
					r = e.do(rt.Method, fill(rt.Pattern, own), body, &e.a, false, nil)
					assert.Equal(t, http.StatusOK, r.code, "A on its own resource: %s", r.body)
					assert.NotContains(t, string(r.body), e.b.accountNumber, "A sees nothing of B")
					r = e.do(rt.Method, fill(rt.Pattern, other), body, &e.op, false, nil)
					assert.Equal(t, http.StatusOK, r.code, "operator on any household: %s", r.body)
				}
			case HouseholdOnly:
				r = e.do(rt.Method, fill(rt.Pattern, own), body, &e.op, false, nil)
				assert.Equal(t, http.StatusForbidden, r.code, "an operator cannot act for a household: %s", r.body)
				if paramRE.MatchString(rt.Pattern) {
					r = e.do(rt.Method, fill(rt.Pattern, other), body, &e.a, false, nil)
					assert.Contains(t, []int{http.StatusForbidden, http.StatusNotFound}, r.code, "A on B's resource: %s", r.body)
					assert.NotContains(t, string(r.body), e.b.accountNumber)
				}
				if rt.Method == "GET" {
					r = e.do(rt.Method, fill(rt.Pattern, own), body, &e.a, false, nil)
					assert.Equal(t, http.StatusOK, r.code, "A on its own resource: %s", r.body)
					assert.NotContains(t, string(r.body), e.b.phone, "A sees nothing of B")
					assert.NotContains(t, string(r.body), e.b.accountNumber, "A sees nothing of B")
				}
			case SignedIn:
				if rt.Method == "GET" {
					r = e.do(rt.Method, fill(rt.Pattern, own), body, &e.a, false, nil)
					assert.Equal(t, http.StatusOK, r.code, string(r.body))
				}
			}
		})
	}
	bs, err := e.bills.Budgets(context.Background(), e.b.account)
	require.NoError(t, err)
	require.Len(t, bs, 1)
	assert.Equal(t, "70", bs[0].Amount.String(), "A's PUT left B's budget alone")
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	require.NoError(t, yaml.Unmarshal(docs.OpenAPI, &doc))
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for m := range ops {
			switch m {
			case "get", "post", "put", "patch", "delete":
				documented[strings.ToUpper(m)+" "+path] = true
			}
		}
	}
	served := map[string]bool{}
	for _, rt := range New(Config{API: &APIConfig{}}).Routes() {
		served[rt.Method+" "+rt.Pattern] = true
	}
	for k := range served {
		assert.True(t, documented[k], "%s is served but not in docs/openapi.yaml", k)
	}
	for k := range documented {
		assert.True(t, served[k], "%s is in docs/openapi.yaml but not served", k)
	}
}

func TestSignIn(t *testing.T) {
	e := newEnv(t, nil)
	signIn := func(phone, pw string) resp {
		return e.do("POST", "/api/v1/auth/sign-in", signInRequest{Phone: phone, Password: pw}, nil, false, nil)
	}
	challenge := func(r resp) string {
		var ch signInResponse
		require.NoError(t, json.Unmarshal(r.body, &ch))
		return ch.Challenge
	}
	verify := func(ch, code string) resp {
		return e.do("POST", "/api/v1/auth/verify", verifyRequest{Challenge: ch, Code: code}, nil, false, nil)
	}

	t.Run("wrong password and unknown phone look the same", func(t *testing.T) {
		r1, r2 := signIn(e.a.phone, "wrong password"), signIn("+447400123477", password)
		assert.Equal(t, http.StatusUnauthorized, r1.code)
		assert.Equal(t, r1.body, r2.body)
	})
	t.Run("wrong code", func(t *testing.T) {
		r := signIn(e.a.phone, password)
		require.Equal(t, http.StatusAccepted, r.code)
		ch, code := challenge(r), e.sms.code(t, e.a.phone)
		wrong := "000000"
		if code == wrong {
			wrong = "111111"
		}
		r = verify(ch, wrong)
		assert.Equal(t, http.StatusBadRequest, r.code)
		assert.Equal(t, apperr.Code("otp_invalid"), r.errCode())
		r = verify(ch, code)
		assert.Equal(t, http.StatusOK, r.code, "the right code still works after one wrong one")
		r = verify(ch, code)
		assert.Equal(t, apperr.Code("otp_used"), r.errCode(), "a code is single use")
	})
	t.Run("expired code", func(t *testing.T) {
		r := signIn(e.a.phone, password)
		require.Equal(t, http.StatusAccepted, r.code)
		ch, code := challenge(r), e.sms.code(t, e.a.phone)
		e.clock.Add(6 * time.Minute)
		r = verify(ch, code)
		assert.Equal(t, apperr.Code("otp_expired"), r.errCode(), string(r.body))
	})
	t.Run("unknown challenge", func(t *testing.T) {
		r := verify("no-such-challenge-at-all", "123456")
		assert.Equal(t, http.StatusBadRequest, r.code)
		assert.Equal(t, "challenge", func() string { var b errorBody; _ = json.Unmarshal(r.body, &b); return b.Error.Field }())
	})
	t.Run("cookie POST needs the CSRF token", func(t *testing.T) {
		h := e.b
		r := e.do("POST", "/api/v1/auth/sign-out", nil, &h, true, nil)
		assert.Equal(t, http.StatusForbidden, r.code, string(r.body))
		r = e.do("POST", "/api/v1/auth/sign-out", nil, &h, true, map[string]string{CSRFHeader: "forged"})
		assert.Equal(t, http.StatusForbidden, r.code)
		r = e.do("GET", "/api/v1/me", nil, &h, true, nil)
		assert.Equal(t, http.StatusOK, r.code, "a GET needs no CSRF token")
		r = e.do("POST", "/api/v1/auth/sign-out", nil, &h, true, map[string]string{CSRFHeader: h.csrf})
		assert.Equal(t, http.StatusNoContent, r.code, string(r.body))
	})
	t.Run("session replayed after sign-out", func(t *testing.T) {
		h := e.a
		require.Equal(t, http.StatusOK, e.do("GET", "/api/v1/me", nil, &h, false, nil).code)
		require.Equal(t, http.StatusNoContent, e.do("POST", "/api/v1/auth/sign-out", nil, &h, false, nil).code)
		assert.Equal(t, http.StatusUnauthorized, e.do("GET", "/api/v1/me", nil, &h, false, nil).code)
		assert.Equal(t, http.StatusUnauthorized, e.do("GET", "/api/v1/me", nil, &h, true, nil).code)
	})
	t.Run("expired session", func(t *testing.T) {
		h := e.op
		e.clock.Add(13 * time.Hour)
		assert.Equal(t, http.StatusUnauthorized, e.do("GET", "/api/v1/me", nil, &h, false, nil).code)
	})
}

func TestLimits(t *testing.T) {
	e := newEnv(t, func(c *APIConfig) {
		c.SignInPerPhone = Limit{Every: time.Hour, Burst: 5}
		c.MaxBodyBytes = 4 << 10
	})
	t.Run("oversized body", func(t *testing.T) {
		big := []byte(`{"phone":"` + strings.Repeat("1", 8<<10) + `","password":"x"}`)
		r := e.do("POST", "/api/v1/auth/sign-in", big, nil, false, nil)
		assert.Equal(t, http.StatusRequestEntityTooLarge, r.code)
		assert.Equal(t, apperr.TooLarge, r.errCode())
	})
	t.Run("malformed body", func(t *testing.T) {
		r := e.do("POST", "/api/v1/auth/sign-in", []byte(`{"phone":1`), nil, false, nil)
		assert.Equal(t, http.StatusBadRequest, r.code)
	})
	t.Run("sign-in rate limited per phone", func(t *testing.T) {
		// newEnv signed the operator in once; four more wrong tries use the
		// burst, the next is refused even with the right password.
		for range 4 {
			r := e.do("POST", "/api/v1/auth/sign-in", signInRequest{Phone: e.op.phone, Password: "wrong password"}, nil, false, nil)
			require.Equal(t, http.StatusUnauthorized, r.code)
		}
		r := e.do("POST", "/api/v1/auth/sign-in", signInRequest{Phone: e.op.phone, Password: password}, nil, false, nil)
		assert.Equal(t, http.StatusTooManyRequests, r.code)
		assert.Equal(t, apperr.RateLimited, r.errCode())
	})
}

func TestOperatorAndTokens(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/api/v1/meters", map[string]any{"meters": []map[string]string{
		{"id": "OP-1", "utility": "electricity"}, {"id": "OP-2", "utility": "gas"}}}, &e.op, false, nil)
	require.Equal(t, http.StatusCreated, r.code, string(r.body))
	var out struct{ Meters []device.Provisioned }
	require.NoError(t, json.Unmarshal(r.body, &out))
	require.Len(t, out.Meters, 2)
	assert.True(t, strings.HasPrefix(out.Meters[0].Token, "mft_"))

	r = e.do("POST", "/api/v1/meters", map[string]any{"meters": []map[string]string{{"id": "OP-1", "utility": "electricity"}}}, &e.op, false, nil)
	assert.Equal(t, http.StatusConflict, r.code, string(r.body))

	r = e.do("POST", "/api/v1/meters/OP-1/revoke", nil, &e.op, false, nil)
	assert.Equal(t, http.StatusOK, r.code, string(r.body))
	r = e.do("POST", "/api/v1/meters/NOPE/revoke", nil, &e.op, false, nil)
	assert.Equal(t, http.StatusNotFound, r.code)

	r = e.do("GET", "/api/v1/meters?limit=2", nil, &e.op, false, nil)
	require.Equal(t, http.StatusOK, r.code)
	var pg struct {
		Items     []device.Meter
		NextAfter string `json:"next_after"`
	}
	require.NoError(t, json.Unmarshal(r.body, &pg))
	assert.Len(t, pg.Items, 2)
	assert.NotEmpty(t, pg.NextAfter)
	r = e.do("GET", "/api/v1/meters?limit=0", nil, &e.op, false, nil)
	assert.Equal(t, http.StatusBadRequest, r.code)

	// An API token grants its scopes and nothing else.
	tok, _, err := e.auth.CreateAPIToken(context.Background(), "integrator", []string{ScopeMetersRead}, time.Hour, 0)
	require.NoError(t, err)
	integ := household{token: tok}
	assert.Equal(t, http.StatusOK, e.do("GET", "/api/v1/meters", nil, &integ, false, nil).code)
	assert.Equal(t, http.StatusForbidden, e.do("POST", "/api/v1/meters/OP-2/revoke", nil, &integ, false, nil).code)
	assert.Equal(t, http.StatusForbidden, e.do("GET", "/api/v1/accounts", nil, &integ, false, nil).code)
	assert.Equal(t, http.StatusForbidden, e.do("GET", "/api/v1/me", nil, &integ, false, nil).code)

	r = e.do("GET", "/api/v1/openapi.yaml", nil, nil, false, nil)
	assert.Equal(t, http.StatusOK, r.code)
	r = e.do("GET", "/api/v1/nothing-here", nil, nil, false, nil)
	assert.Equal(t, http.StatusNotFound, r.code)
	assert.Equal(t, apperr.NotFound, r.errCode())
}
