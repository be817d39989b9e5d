package sms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/phone"
)

// MaxBodyChars is the longest text the Messages API takes (1600
// characters, sent as up to 10 segments).
const MaxBodyChars = 1600

// maxResponseBytes bounds what is read of an answer.
const maxResponseBytes = 1 << 20

// ErrOutcomeUnknown is wrapped by a Send error when Twilio may have accepted
// the message although Send could not learn it (a 5xx other than 503, a
// timeout after the request was written, an unreadable answer). Such a send
// is never retried: see the package documentation.
var ErrOutcomeUnknown = errors.New("the provider may have accepted the message")

// APIError is an error answer of the Messages API.
type APIError struct {
	// Status is the HTTP status.
	Status int
	// Code is Twilio's error code (21211: invalid To number, 20003:
	// authentication failed, 20429: too many requests, ...); 0 if none.
	Code     int
	Message  string
	MoreInfo string
}

func (e *APIError) Error() string {
	s := "twilio: http " + strconv.Itoa(e.Status)
	if e.Code != 0 {
		s += " error " + strconv.Itoa(e.Code)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Client sends SMS through Twilio's Messages API. It is safe for concurrent
// use.
type Client struct {
	cfg      Config
	endpoint string
	http     *http.Client
	log      *slog.Logger
	// Sleep waits d, or until ctx ends with its error. Tests replace it to
	// observe the waits without waiting.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock, for Retry-After dates and deadlines.
	Now func() time.Time
}

var _ payment.Sender = (*Client)(nil)

// New returns a client for cfg, which must be valid.
func New(cfg Config, log *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	return &Client{
		cfg:      cfg,
		endpoint: strings.TrimRight(cfg.BaseURL, "/") + "/2010-04-01/Accounts/" + url.PathEscape(cfg.AccountSID) + "/Messages.json",
		http: &http.Client{
			Transport: transport,
			Timeout:   cfg.Timeout,
			// A redirected POST would be re-sent elsewhere, or turned into
			// a GET: neither is what was asked.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:   log.With("provider", cfg.Provider),
		Sleep: sleep,
		Now:   time.Now,
	}, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// verdict is what one attempt tells Send to do.
type verdict int

const (
	accepted  verdict = iota
	retry             // Twilio did not take the message: safe to send again
	permanent         // refused: sending again gives the same answer
	unknown           // may have been accepted: never sent again
)

type outcome struct {
	verdict    verdict
	sid        string
	err        error
	retryAfter time.Duration // asked by Twilio; 0 if none
}

// Send sends body to the E.164 number to and returns Twilio's message SID.
// See the package documentation for what is retried.
func (c *Client) Send(ctx context.Context, to, body string) (string, error) {
	if !phone.IsE164(to) {
		return "", apperr.Field("to", "not an E.164 number")
	}
	if strings.TrimSpace(body) == "" {
		return "", apperr.Field("body", "must not be empty")
	}
	if n := utf8.RuneCountInString(body); n > MaxBodyChars {
		return "", apperr.Field("body", "%d characters, more than the %d an SMS may have", n, MaxBodyChars)
	}
	form := url.Values{"To": {to}, "Body": {body}}
	if c.cfg.MessagingServiceSID != "" {
		form.Set("MessagingServiceSid", c.cfg.MessagingServiceSID)
	} else {
		form.Set("From", c.cfg.From)
	}
	if c.cfg.StatusCallbackURL != "" {
		form.Set("StatusCallback", c.cfg.StatusCallbackURL)
	}
	payload := form.Encode()
	dest := mask(to)
	for attempt := 1; ; attempt++ {
		o := c.attempt(ctx, payload)
		switch o.verdict {
		case accepted:
			if attempt > 1 {
				c.log.Info("sms accepted after retries", "to", dest, "sid", o.sid, "attempts", attempt)
			}
			return o.sid, nil
		case permanent:
			return o.sid, fmt.Errorf("send sms to %s: %w", dest, o.err)
		case unknown:
			return "", fmt.Errorf("send sms to %s: %w", dest, o.err)
		}
		if attempt >= c.cfg.MaxAttempts {
			return "", &apperr.Error{Code: apperr.Unavailable, Err: o.err,
				Message: fmt.Sprintf("sms to %s not sent: gave up after %d attempts", dest, attempt)}
		}
		wait := c.backoff(attempt)
		if o.retryAfter > 0 {
			if o.retryAfter > c.cfg.MaxRetryAfter {
				return "", &apperr.Error{Code: apperr.Unavailable, Err: o.err,
					Message: fmt.Sprintf("sms to %s not sent: twilio asks to wait %s, more than %s", dest, o.retryAfter, c.cfg.MaxRetryAfter)}
			}
			wait = max(wait, o.retryAfter)
		}
		if deadline, ok := ctx.Deadline(); ok && c.Now().Add(wait).After(deadline) {
			return "", &apperr.Error{Code: apperr.Unavailable, Err: o.err,
				Message: fmt.Sprintf("sms to %s not sent: the next attempt (in %s) would be past the deadline", dest, wait)}
		}
		c.log.Warn("sms not accepted, retrying", "to", dest, "attempt", attempt, "wait", wait, "err", o.err)
		if err := c.Sleep(ctx, wait); err != nil {
			return "", fmt.Errorf("send sms to %s: %w (last answer: %v)", dest, err, o.err)
		}
	}
}

// backoff is the wait after the attempt-th attempt: uniform in
// [0, min(max, base·2^(attempt-1))], but at least a millisecond.
func (c *Client) backoff(attempt int) time.Duration {
	bound := c.cfg.BackoffMax
	if attempt-1 < 31 {
		bound = min(bound, c.cfg.BackoffBase<<(attempt-1))
	}
	if bound <= 0 {
		bound = c.cfg.BackoffMax
	}
	return max(time.Duration(rand.Int64N(int64(bound)+1)), time.Millisecond)
}

// attempt makes one request.
func (c *Client) attempt(ctx context.Context, payload string) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, strings.NewReader(payload))
	if err != nil {
		return outcome{verdict: permanent, err: err}
	}
	req.SetBasicAuth(c.cfg.AccountSID, c.cfg.AuthToken)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if notSent(err) {
			if ctx.Err() != nil {
				return outcome{verdict: permanent, err: ctx.Err()}
			}
			return outcome{verdict: retry, err: err}
		}
		if ctx.Err() != nil {
			return outcome{verdict: unknown, err: fmt.Errorf("%w (%w)", ctx.Err(), ErrOutcomeUnknown)}
		}
		return outcome{verdict: unknown, err: fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	switch {
	case resp.StatusCode/100 == 2:
		if err != nil {
			return outcome{verdict: unknown, err: fmt.Errorf("%w: read answer: %v", ErrOutcomeUnknown, err)}
		}
		var m struct {
			SID          string  `json:"sid"`
			Status       string  `json:"status"`
			ErrorCode    *int    `json:"error_code"`
			ErrorMessage *string `json:"error_message"`
		}
		if err := json.Unmarshal(raw, &m); err != nil || m.SID == "" {
			return outcome{verdict: unknown, err: fmt.Errorf("%w: http %d without a message sid", ErrOutcomeUnknown, resp.StatusCode)}
		}
		if m.Status == "failed" || m.Status == "undelivered" || (m.ErrorCode != nil && *m.ErrorCode != 0) {
			e := &APIError{Status: resp.StatusCode, Message: "message " + m.Status}
			if m.ErrorCode != nil {
				e.Code = *m.ErrorCode
			}
			if m.ErrorMessage != nil {
				e.Message = *m.ErrorMessage
			}
			return outcome{verdict: permanent, sid: m.SID, err: &apperr.Error{Code: apperr.Invalid, Message: "twilio refused the message", Err: e}}
		}
		return outcome{verdict: accepted, sid: m.SID}
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		return outcome{verdict: retry, err: apiError(resp.StatusCode, raw), retryAfter: c.retryAfter(resp.Header.Get("Retry-After"))}
	case resp.StatusCode == http.StatusBadRequest:
		return outcome{verdict: permanent, err: &apperr.Error{Code: apperr.Invalid, Message: "twilio refused the message", Err: apiError(resp.StatusCode, raw)}}
	case resp.StatusCode/100 == 4:
		// Credentials, account or address: ours to fix, not the user's.
		return outcome{verdict: permanent, err: &apperr.Error{Code: apperr.Internal, Message: "twilio refused the request", Err: apiError(resp.StatusCode, raw)}}
	default:
		return outcome{verdict: unknown, err: fmt.Errorf("%w: %v", ErrOutcomeUnknown, apiError(resp.StatusCode, raw))}
	}
}

// notSent reports whether err happened before the request could leave: the
// connection was never made.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// apiError decodes Twilio's error answer, keeping what it can.
func apiError(status int, raw []byte) *APIError {
	e := &APIError{Status: status}
	var m struct {
		Code     int    `json:"code"`
		Message  string `json:"message"`
		MoreInfo string `json:"more_info"`
	}
	if json.Unmarshal(raw, &m) == nil {
		e.Code, e.Message, e.MoreInfo = m.Code, m.Message, m.MoreInfo
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func (c *Client) retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := t.Sub(c.Now()); d > 0 {
			return d
		}
	}
	return 0
}

// mask hides all but the country code's first digit and the last three
// digits of a number, for logs and errors.
func mask(e164 string) string {
	if len(e164) < 6 {
		return "***"
	}
	return e164[:2] + strings.Repeat("*", len(e164)-5) + e164[len(e164)-3:]
}
