// Package stripegw is the Stripe payment gateway: payment.Gateway over
// Stripe's PaymentIntents API and payment.MethodInspector over its
// PaymentMethods, through the official client library (stripe-go).
//
// A charge is one PaymentIntent created and confirmed at once, off
// session (the household is not present: auto-pay), with the payment's
// idempotency key as Stripe's Idempotency-Key, so a re-issued charge
// returns the first one's PaymentIntent for 24 hours (Stripe's key
// retention, which the payment service's retry schedule stays inside).
//
// Tokens are Stripe PaymentMethod ids ("pm_..."). A payment method saved for
// reuse belongs to a Customer, and Stripe then wants the customer named on
// the PaymentIntent: such a token is written "cus_...:pm_...".
//
// Amounts are sent in the currency's minor unit as Stripe counts it: the
// ISO 4217 exponent (tariff.MinorUnits), except ISK, which Stripe's API
// keeps at two decimals (whole krónur only); in the three-decimal
// currencies (BHD, JOD, KWD, OMR, TND) Stripe takes only amounts whose last
// digit is 0. An amount that cannot be sent exactly is refused as invalid,
// never rounded.
//
// Stripe's answers map onto payment.ChargeResult and errors as the payment
// service expects (docs/payments.md):
//
//	PaymentIntent succeeded               ChargeSucceeded
//	PaymentIntent processing              ChargeProcessing
//	PaymentIntent requires_action         ChargeRequiresAction
//	card_error authentication_required    ChargeRequiresAction (off session, the bank wants the household)
//	card_error (any other)                ChargeDeclined, DeclineCode = decline_code, else code
//	PaymentIntent requires_payment_method ChargeDeclined (the attempt failed; last_payment_error's code)
//	PaymentIntent canceled                ChargeDeclined ("canceled")
//	invalid_request_error                 apperr invalid: the request can never succeed
//	idempotency_error                     apperr conflict: the key was used with other parameters
//	anything else                         a plain error: the outcome is unknown, and the
//	                                      service re-issues the charge with the same key
//
// "Anything else" includes network failures, 5xx answers, 429 rate limits,
// 409 idempotency_key_in_use (a concurrent request with the key is still
// running), 401/403 (our API key: to be fixed by an operator, after which
// the retry succeeds), and a PaymentIntent in a state an off-session
// automatic-capture charge should never reach (requires_capture,
// requires_confirmation), left for reconciliation. stripe-go itself retries
// (Config.NetworkRetries times) failures on the way and 429 lock timeouts,
// always with the same idempotency key, so those retries cannot charge
// twice either; other error answers come back at once, for the payment
// service's own schedule.
package stripegw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/payment"
)

// DefaultBackendURL is Stripe's API.
const DefaultBackendURL = "https://api.stripe.com"

// Config configures the Stripe gateway. DefaultConfig holds the defaults.
type Config struct {
	// SecretKey is the API key: a secret (sk_live_..., sk_test_...) or
	// restricted (rk_...) key allowed to create PaymentIntents and read
	// PaymentMethods.
	SecretKey string
	// BackendURL is the API's address: Stripe's, a proxy's, or stripe-mock's.
	// Plain http is allowed only to a loopback address.
	BackendURL string
	// Timeout bounds one HTTP request. Keep it below the payment service's
	// ChargeTimeout, so a slow answer ends as an error the service retries.
	Timeout time.Duration
	// NetworkRetries is how many times stripe-go retries a request that
	// failed on the way (with the same idempotency key).
	NetworkRetries int
}

// DefaultConfig returns the defaults; the key is left empty.
func DefaultConfig() Config {
	return Config{BackendURL: DefaultBackendURL, Timeout: 20 * time.Second, NetworkRetries: 2}
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if !strings.HasPrefix(c.SecretKey, "sk_") && !strings.HasPrefix(c.SecretKey, "rk_") {
		errs = append(errs, errors.New("stripe secret key: must be a secret (sk_...) or restricted (rk_...) key"))
	}
	if u, err := url.Parse(c.BackendURL); err != nil || u.Host == "" || u.User != nil {
		errs = append(errs, errors.New("stripe backend url: must be an absolute URL without user"))
	} else if u.Scheme != "https" && (u.Scheme != "http" || !isLoopback(u.Hostname())) {
		errs = append(errs, errors.New("stripe backend url: must be https (plain http only to a loopback address)"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("stripe timeout: must be positive"))
	}
	if c.NetworkRetries < 0 {
		errs = append(errs, errors.New("stripe network retries: must not be negative"))
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	return strings.HasPrefix(host, "127.") || host == "::1"
}

// Gateway is the Stripe gateway. It is safe for concurrent use.
type Gateway struct {
	client *stripe.Client
}

var (
	_ payment.Gateway         = (*Gateway)(nil)
	_ payment.MethodInspector = (*Gateway)(nil)
)

// New returns a gateway for cfg, which must be valid. stripe-go's own log
// lines go to log at debug level (warnings at warn): errors are returned,
// and logged by whoever handles them.
func New(cfg Config, log *slog.Logger) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backendURL := strings.TrimRight(cfg.BackendURL, "/")
	retries := int64(cfg.NetworkRetries)
	backends := stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               &backendURL,
		HTTPClient:        &http.Client{Timeout: cfg.Timeout},
		MaxNetworkRetries: &retries,
		LeveledLogger:     slogLogger{log.With("gateway", "stripe")},
		EnableTelemetry:   stripe.Bool(false),
	})
	return &Gateway{client: stripe.NewClient(cfg.SecretKey, stripe.WithBackends(backends))}, nil
}

// slogLogger is stripe-go's LeveledLoggerInterface over slog.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Debugf(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s slogLogger) Infof(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s slogLogger) Warnf(format string, v ...any)  { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s slogLogger) Errorf(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }

// splitToken returns a token's customer (or "") and payment method.
func splitToken(token string) (customer, method string, err error) {
	customer, method, found := strings.Cut(token, ":")
	if !found {
		customer, method = "", token
	}
	if !strings.HasPrefix(method, "pm_") || (found && !strings.HasPrefix(customer, "cus_")) || strings.ContainsAny(method, ":/") {
		return "", "", apperr.Field("payment_method", "not a Stripe payment method token (pm_... or cus_...:pm_...)")
	}
	return customer, method, nil
}

// Charge creates and confirms a PaymentIntent.
func (g *Gateway) Charge(ctx context.Context, req payment.ChargeRequest) (payment.ChargeResult, error) {
	if req.IdempotencyKey == "" || len(req.IdempotencyKey) > 255 {
		return payment.ChargeResult{}, apperr.Field("idempotency_key", "must be 1 to 255 characters")
	}
	amount, err := MinorAmount(req.Amount, req.Currency)
	if err != nil {
		return payment.ChargeResult{}, err
	}
	customer, method, err := splitToken(req.PaymentMethodToken)
	if err != nil {
		return payment.ChargeResult{}, err
	}
	params := &stripe.PaymentIntentCreateParams{
		Amount:        stripe.Int64(amount),
		Currency:      stripe.String(strings.ToLower(req.Currency)),
		PaymentMethod: stripe.String(method),
		Confirm:       stripe.Bool(true),
		OffSession:    stripe.Bool(true),
	}
	if customer != "" {
		params.Customer = stripe.String(customer)
	}
	if req.Description != "" {
		params.Description = stripe.String(req.Description)
	}
	params.IdempotencyKey = stripe.String(req.IdempotencyKey)
	pi, err := g.client.V1PaymentIntents.Create(ctx, params)
	if err != nil {
		return chargeError(err)
	}
	return intentResult(pi)
}

// intentResult maps a PaymentIntent onto a charge result.
func intentResult(pi *stripe.PaymentIntent) (payment.ChargeResult, error) {
	res := payment.ChargeResult{ID: pi.ID}
	switch pi.Status {
	case stripe.PaymentIntentStatusSucceeded:
		res.Status = payment.ChargeSucceeded
	case stripe.PaymentIntentStatusProcessing:
		res.Status = payment.ChargeProcessing
	case stripe.PaymentIntentStatusRequiresAction:
		res.Status = payment.ChargeRequiresAction
	case stripe.PaymentIntentStatusRequiresPaymentMethod:
		res.Status, res.DeclineCode = payment.ChargeDeclined, "requires_payment_method"
		if e := pi.LastPaymentError; e != nil {
			res.DeclineCode = declineCode(e, "requires_payment_method")
		}
	case stripe.PaymentIntentStatusCanceled:
		res.Status, res.DeclineCode = payment.ChargeDeclined, "canceled"
	default:
		return payment.ChargeResult{}, fmt.Errorf("stripe: payment intent %s is %q, not a state an off-session charge should reach", pi.ID, pi.Status)
	}
	if res.ID == "" {
		return payment.ChargeResult{}, errors.New("stripe: answer without a payment intent id")
	}
	return res, nil
}

func declineCode(e *stripe.Error, fallback string) string {
	switch {
	case e.DeclineCode != "":
		return string(e.DeclineCode)
	case e.Code != "":
		return string(e.Code)
	}
	return fallback
}

// chargeError maps an error of a charge: see the package documentation.
func chargeError(err error) (payment.ChargeResult, error) {
	var se *stripe.Error
	if !errors.As(err, &se) {
		return payment.ChargeResult{}, fmt.Errorf("stripe: charge: %w", err)
	}
	id := ""
	if se.PaymentIntent != nil {
		id = se.PaymentIntent.ID
	}
	switch {
	case se.Code == stripe.ErrorCodeIdempotencyKeyInUse || se.Code == stripe.ErrorCodeLockTimeout || se.Code == stripe.ErrorCodeRateLimit:
		return payment.ChargeResult{}, fmt.Errorf("stripe: charge: try again: %w", err)
	case se.HTTPStatusCode == http.StatusUnauthorized || se.HTTPStatusCode == http.StatusForbidden:
		return payment.ChargeResult{}, fmt.Errorf("stripe: charge: the API key was refused (fix the configuration; the charge is retried): %w", err)
	case se.Type == stripe.ErrorTypeCard:
		if se.Code == stripe.ErrorCodeAuthenticationRequired || se.DeclineCode == stripe.DeclineCodeAuthenticationRequired {
			return payment.ChargeResult{ID: id, Status: payment.ChargeRequiresAction}, nil
		}
		return payment.ChargeResult{ID: id, Status: payment.ChargeDeclined, DeclineCode: declineCode(se, "card_declined")}, nil
	case se.Type == stripe.ErrorTypeIdempotency:
		return payment.ChargeResult{}, &apperr.Error{Code: apperr.Conflict, Message: "stripe: idempotency key reused with other parameters", Err: err}
	case se.Type == stripe.ErrorTypeInvalidRequest && se.HTTPStatusCode/100 == 4:
		return payment.ChargeResult{}, &apperr.Error{Code: apperr.Invalid, Field: se.Param, Message: "stripe refused the charge: " + se.Msg, Err: err}
	}
	return payment.ChargeResult{}, fmt.Errorf("stripe: charge: %w", err)
}

// Method retrieves a payment method and describes its card.
func (g *Gateway) Method(ctx context.Context, token string) (payment.MethodInfo, error) {
	_, method, err := splitToken(token)
	if err != nil {
		return payment.MethodInfo{}, apperr.New(apperr.NotFound, "stripe: no payment method %q", token)
	}
	pm, err := g.client.V1PaymentMethods.Retrieve(ctx, method, nil)
	if err != nil {
		var se *stripe.Error
		switch {
		case errors.As(err, &se) && (se.HTTPStatusCode == http.StatusNotFound || se.Code == stripe.ErrorCodeResourceMissing):
			return payment.MethodInfo{}, &apperr.Error{Code: apperr.NotFound, Message: "stripe: no payment method " + method, Err: err}
		case errors.As(err, &se) && se.Type == stripe.ErrorTypeInvalidRequest && se.HTTPStatusCode == http.StatusBadRequest:
			return payment.MethodInfo{}, &apperr.Error{Code: apperr.Invalid, Field: "payment_method", Message: "stripe refused the lookup: " + se.Msg, Err: err}
		}
		return payment.MethodInfo{}, fmt.Errorf("stripe: payment method %s: %w", method, err)
	}
	if pm.Type != stripe.PaymentMethodTypeCard || pm.Card == nil {
		return payment.MethodInfo{}, apperr.Field("payment_method", "stripe payment method %s is %s, not a card", method, pm.Type)
	}
	info := payment.MethodInfo{Brand: string(pm.Card.Brand), Last4: pm.Card.Last4, ExpMonth: int(pm.Card.ExpMonth), ExpYear: int(pm.Card.ExpYear)}
	if err := info.Validate(); err != nil {
		return payment.MethodInfo{}, fmt.Errorf("stripe: payment method %s: unexpected card details: %w", method, err)
	}
	return info, nil
}
