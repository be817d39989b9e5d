package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/portal"
)

// Prefix is where the JSON API lives.
const Prefix = "/api/v1"

// Cookie names. The session cookie is HttpOnly; the CSRF cookie is readable
// by the portal's script, which echoes it in the X-CSRF-Token header.
const (
	SessionCookie = "mf_session"
	CSRFCookie    = "mf_csrf"
	CSRFHeader    = "X-CSRF-Token"
)

// Authenticator signs users in and tells who makes a request (auth.Service).
type Authenticator interface {
	SignIn(ctx context.Context, phone, password string) (string, error)
	Verify(ctx context.Context, challenge, code string) (auth.Grant, error)
	Resend(ctx context.Context, challenge string) (auth.Resent, error)
	Authenticate(ctx context.Context, token string) (auth.Principal, error)
	SignOut(ctx context.Context, p auth.Principal) error
	CheckCSRF(sessionToken, csrf string) bool
	User(ctx context.Context, id int64) (auth.User, error)
}

// Bills is the billing engine (billing.Service): issued bills, tariff
// loading and budgets.
type Bills interface {
	Bill(ctx context.Context, id int64) (billing.Bill, error)
	LoadTariff(ctx context.Context, data []byte) (billing.StoredTariff, bool, error)
	Budgets(ctx context.Context, accountID int64) ([]billing.Budget, error)
	SetBudgets(ctx context.Context, accountID int64, currency string, bs []billing.Budget) ([]billing.Budget, error)
}

// Devices provisions and revokes meters (device.Registry).
type Devices interface {
	Provision(ctx context.Context, reqs []device.Request) ([]device.Provisioned, error)
	Revoke(ctx context.Context, id string) error
	List(ctx context.Context, after string, limit int) ([]device.Meter, error)
}

// Limit is a rate: Burst requests at once, then one per Every.
type Limit struct {
	Every time.Duration
	Burst int
}

// APIConfig wires the JSON API. Fleet may be nil: its route then answers
// "unavailable".
type APIConfig struct {
	Auth    Authenticator
	Portal  portal.Store
	Usage   portal.UsageSource
	Bills   Bills
	Devices Devices
	// Payments, PaymentSetup and PaymentLog may be nil together: payment
	// routes then answer "unavailable".
	Payments     Payments
	PaymentSetup PaymentSetup
	PaymentLog   PaymentLog
	// DevInbox is the development SMS inbox, nil unless the development
	// sender is in use.
	DevInbox DevInbox
	// Fleet, when set, feeds the operators' live stream (/fleet/live).
	Fleet Fleet
	// LiveEvery is how often /fleet/live sends a snapshot (default 1 s).
	LiveEvery time.Duration
	// Alerts serves the alert inbox, preferences, live stream and alarms;
	// nil answers "unavailable".
	Alerts Alerts
	// OpenAPI is the document served at /api/v1/openapi.yaml.
	OpenAPI []byte
	// CookieSecure marks cookies Secure; turn it off only for local http.
	CookieSecure bool
	// MaxBodyBytes bounds a request body (default 1 MiB).
	MaxBodyBytes int64
	// RequestTimeout bounds each request's work (default 30 s).
	RequestTimeout time.Duration
	// Sign-in and code checks are limited per client IP and per phone
	// number or challenge, in memory (defaults: 10 a minute per IP, 5 per
	// 15 minutes per phone, 30 a minute per IP for codes).
	SignInPerIP, SignInPerPhone, VerifyPerIP Limit
	Now                                      func() time.Time
}

func (c *APIConfig) defaults() {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.LiveEvery <= 0 {
		c.LiveEvery = time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.SignInPerIP == (Limit{}) {
		c.SignInPerIP = Limit{Every: 6 * time.Second, Burst: 10}
	}
	if c.SignInPerPhone == (Limit{}) {
		c.SignInPerPhone = Limit{Every: 3 * time.Minute, Burst: 5}
	}
	if c.VerifyPerIP == (Limit{}) {
		c.VerifyPerIP = Limit{Every: 2 * time.Second, Burst: 30}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Rule is who may call a route. Every route declares one; the zero value is
// no rule and refused when the route table is built.
type Rule int

const (
	ruleNone Rule = iota
	// Public routes need no credentials.
	Public
	// SignedIn routes take any session, household or operator.
	SignedIn
	// Household routes take household users, for their own household's
	// resources only (another household's are "not found"), and operators,
	// for any household's.
	Household
	// Operator routes take operators only.
	Operator
	// HouseholdOnly routes take household users only, acting for their own
	// household: confirming a payment, verifying a phone, setting up
	// auto-pay. Operators cannot act for a household.
	HouseholdOnly
)

func (r Rule) String() string {
	switch r {
	case Public:
		return "public"
	case SignedIn:
		return "signed-in"
	case Household:
		return "household"
	case Operator:
		return "operator"
	case HouseholdOnly:
		return "household-only"
	}
	return "none"
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error

// Route is one endpoint of the API. Path parameters are named after what
// they identify ({account}, {bill}, {payment}, {meter}), which lets the
// access tests substitute another household's resources.
type Route struct {
	Method  string
	Pattern string // under Prefix
	Rule    Rule
	// Scope, when set, also admits API tokens granted it.
	Scope   string
	Summary string
	// Stream marks a long-lived response (server-sent events): it is not
	// bounded by RequestTimeout and ends when the client goes away.
	Stream  bool
	handler handlerFunc
}

// api serves /api/v1.
type api struct {
	cfg    APIConfig
	log    *slog.Logger
	routes []Route

	signInIP, signInPhone, verifyIP *limiter
}

func newAPI(cfg APIConfig, log *slog.Logger) *api {
	cfg.defaults()
	a := &api{
		cfg:         cfg,
		log:         log,
		signInIP:    newLimiter(cfg.SignInPerIP, cfg.Now),
		signInPhone: newLimiter(cfg.SignInPerPhone, cfg.Now),
		verifyIP:    newLimiter(cfg.VerifyPerIP, cfg.Now),
	}
	a.routes = a.routeTable()
	return a
}

// Routes returns the API's route table (for documentation and tests).
func (s *Server) Routes() []Route {
	if s.api == nil {
		return nil
	}
	return append([]Route(nil), s.api.routes...)
}

func (a *api) mount(mux *http.ServeMux) {
	for _, rt := range a.routes {
		if rt.Rule == ruleNone || rt.handler == nil {
			panic(fmt.Sprintf("httpapi: route %s %s declares no access rule or handler", rt.Method, rt.Pattern))
		}
		mux.Handle(rt.Method+" "+Prefix+rt.Pattern, a.wrap(rt))
	}
	mux.Handle(Prefix+"/", a.wrap(Route{Rule: Public, handler: func(http.ResponseWriter, *http.Request, *auth.Principal) error {
		return apperr.New(apperr.NotFound, "no such endpoint")
	}}))
}

// wrap applies what every route shares: body limit, timeout, credentials,
// CSRF, the access rule, and error mapping.
func (a *api) wrap(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := r.Context(), context.CancelFunc(func() {})
		if !rt.Stream {
			ctx, cancel = context.WithTimeout(ctx, a.cfg.RequestTimeout)
		}
		defer cancel()
		r = r.WithContext(ctx)
		if r.ContentLength > a.cfg.MaxBodyBytes {
			a.writeError(w, r, tooLarge(a.cfg.MaxBodyBytes))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes)
		var p *auth.Principal
		if rt.Rule != Public {
			var err error
			if p, err = a.principal(r); err != nil {
				a.writeError(w, r, err)
				return
			}
			if err := allowed(rt, p); err != nil {
				a.writeError(w, r, err)
				return
			}
		}
		if err := rt.handler(w, r, p); err != nil {
			a.writeError(w, r, err)
		}
	})
}

// principal authenticates a request by its bearer token or session cookie.
// A cookie session must send the CSRF token with any unsafe method.
func (a *api) principal(r *http.Request) (*auth.Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, auth.ErrUnauthenticated
		}
		p, err := a.cfg.Auth.Authenticate(r.Context(), strings.TrimSpace(tok))
		return &p, err
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return nil, auth.ErrUnauthenticated
	}
	p, err := a.cfg.Auth.Authenticate(r.Context(), c.Value)
	if err != nil {
		return nil, err
	}
	p.Cookie = true
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if !a.cfg.Auth.CheckCSRF(c.Value, r.Header.Get(CSRFHeader)) {
			return nil, apperr.New(apperr.Forbidden, "missing or wrong %s header", CSRFHeader)
		}
	}
	return &p, nil
}

// allowed applies a route's rule to an authenticated principal.
func allowed(rt Route, p *auth.Principal) error {
	if p.HasScope(rt.Scope) {
		return nil
	}
	ok := false
	switch rt.Rule {
	case SignedIn:
		ok = p.SessionID != 0
	case Household:
		ok = p.IsHousehold() || p.IsOperator()
	case Operator:
		ok = p.IsOperator()
	case HouseholdOnly:
		ok = p.IsHousehold()
	}
	if !ok {
		return apperr.New(apperr.Forbidden, "not allowed for this user")
	}
	return nil
}

func tooLarge(n int64) error {
	return apperr.New(apperr.TooLarge, "request body is larger than %d bytes", n)
}

// status maps error codes to HTTP statuses; codes not listed are 400 when
// they come from the domain (an otp_* code, say) and 500 for internal.
var status = map[apperr.Code]int{
	apperr.Invalid:      http.StatusBadRequest,
	apperr.Unauthorized: http.StatusUnauthorized,
	apperr.Forbidden:    http.StatusForbidden,
	apperr.NotFound:     http.StatusNotFound,
	apperr.Conflict:     http.StatusConflict,
	apperr.RateLimited:  http.StatusTooManyRequests,
	apperr.TooLarge:     http.StatusRequestEntityTooLarge,
	apperr.Unavailable:  http.StatusServiceUnavailable,
	apperr.Internal:     http.StatusInternalServerError,
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    apperr.Code `json:"code"`
	Message string      `json:"message"`
	Field   string      `json:"field,omitempty"`
}

// writeError answers with the error's code. An internal error is logged
// here, once, and its detail is never shown.
func (a *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = tooLarge(mbe.Limit)
	}
	if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() != nil {
		err = &apperr.Error{Code: apperr.Unavailable, Message: "the request took too long", Err: err}
	}
	code := apperr.CodeOf(err)
	body := errorDetail{Code: code}
	var e *apperr.Error
	if code != apperr.Internal && errors.As(err, &e) {
		body.Message, body.Field = e.Message, e.Field
	}
	st, ok := status[code]
	if !ok {
		st = http.StatusBadRequest
	}
	if code == apperr.Internal {
		body.Message = "internal error"
		a.log.ErrorContext(r.Context(), "api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if st == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="meterflow"`)
	}
	writeJSON(w, st, errorBody{Error: body})
}

// decode reads a JSON body into v, refusing unknown fields and trailing data.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		if errors.Is(err, io.EOF) {
			return apperr.New(apperr.Invalid, "request body is empty; want a JSON object")
		}
		return &apperr.Error{Code: apperr.Invalid, Message: "request body is not the JSON this endpoint takes: " + err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return apperr.New(apperr.Invalid, "request body has data after the JSON object")
	}
	return nil
}

// Pagination: ?limit= (1..500, default 50) and ?after= (the next_after of
// the previous page).
const (
	defaultLimit = 50
	maxLimit     = 500
)

type page struct {
	Items     any    `json:"items"`
	NextAfter string `json:"next_after,omitempty"`
}

func pageParams(r *http.Request) (limit int, after string, err error) {
	limit = defaultLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return 0, "", apperr.Field("limit", "want 1 to %d", maxLimit)
		}
		limit = n
	}
	return limit, r.URL.Query().Get("after"), nil
}

func intAfter(after string) (int64, error) {
	if after == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(after, 10, 64)
	if err != nil || n < 0 {
		return 0, apperr.Field("after", "not a cursor from this list")
	}
	return n, nil
}

// intPage reads the page parameters of a list keyed by a numeric id.
func intPage(r *http.Request) (int, int64, error) {
	limit, afterS, err := pageParams(r)
	if err != nil {
		return 0, 0, err
	}
	after, err := intAfter(afterS)
	return limit, after, err
}

// pathID parses a numeric path parameter.
func pathID(r *http.Request, name string) (int64, error) {
	n, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || n <= 0 {
		return 0, apperr.New(apperr.NotFound, "%s %q not found", name, r.PathValue(name))
	}
	return n, nil
}

// clientIP is the address the request came from. Behind a proxy this is
// the proxy's (forwarded headers are not trusted yet).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
