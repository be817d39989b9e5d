package sms

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"time"

	"github.com/meterflow/meterflow/internal/phone"
)

// Config configures the Twilio adapter. DefaultConfig holds the defaults;
// flags and environment variables map onto the fields.
type Config struct {
	// AccountSID ("AC" and 32 hex digits) and AuthToken are the account's
	// credentials: the API's basic-auth user and password, and the key of
	// the callbacks' signatures.
	AccountSID string
	AuthToken  string
	// From is the sender: an E.164 number or an alphanumeric sender id.
	// MessagingServiceSID ("MG...") sends through a messaging service
	// instead. Exactly one of them is set.
	From                string
	MessagingServiceSID string
	// StatusCallbackURL is the public URL at which Twilio reports delivery
	// (the Callback handler), sent with every message and used to check the
	// callbacks' signatures. Empty: no delivery reports.
	StatusCallbackURL string
	// BaseURL is the API's address (https://api.twilio.com), or a proxy's.
	// Plain http is allowed only to a loopback address.
	BaseURL string
	// Provider names the provider on recorded messages; it must match the
	// payment service's Config.SMSProvider for delivery reports to find
	// their messages.
	Provider string
	// Timeout bounds one HTTP request, connection to last byte.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one message, the first included.
	MaxAttempts int
	// BackoffBase and BackoffMax bound the exponential wait between
	// attempts; each wait is drawn at random below the bound (full jitter).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxRetryAfter is the longest Retry-After that is waited for; a longer
	// one ends the retries.
	MaxRetryAfter time.Duration
	// MaxCallbackBytes bounds the body of a delivery report.
	MaxCallbackBytes int64
	// EarlyReportTTL is how long a delivery report of a message whose send
	// result is not recorded yet is kept for it (Twilio may report before
	// the answer to the send reaches us, and does not report again).
	// MaxEarlyReports bounds how many such reports are kept at once.
	EarlyReportTTL  time.Duration
	MaxEarlyReports int
}

// DefaultBaseURL is Twilio's API.
const DefaultBaseURL = "https://api.twilio.com"

// DefaultConfig returns the defaults; the credentials and sender are left
// empty.
func DefaultConfig() Config {
	return Config{
		BaseURL:          DefaultBaseURL,
		Provider:         "twilio",
		Timeout:          10 * time.Second,
		MaxAttempts:      4,
		BackoffBase:      500 * time.Millisecond,
		BackoffMax:       8 * time.Second,
		MaxRetryAfter:    30 * time.Second,
		MaxCallbackBytes: 16 << 10,
		EarlyReportTTL:   15 * time.Minute,
		MaxEarlyReports:  10000,
	}
}

var (
	accountSIDRE = regexp.MustCompile(`^AC[0-9a-fA-F]{32}$`)
	serviceSIDRE = regexp.MustCompile(`^MG[0-9a-fA-F]{32}$`)
	// An alphanumeric sender id: 1 to 11 letters, digits and spaces, at
	// least one letter.
	alphaSenderRE = regexp.MustCompile(`^[A-Za-z0-9 ]{1,11}$`)
	hasLetterRE   = regexp.MustCompile(`[A-Za-z]`)
)

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if !accountSIDRE.MatchString(c.AccountSID) {
		errs = append(errs, errors.New("twilio account sid: must be AC followed by 32 hex digits"))
	}
	if c.AuthToken == "" {
		errs = append(errs, errors.New("twilio auth token: must be set"))
	}
	switch {
	case c.From == "" && c.MessagingServiceSID == "":
		errs = append(errs, errors.New("twilio sender: set a from number or a messaging service sid"))
	case c.From != "" && c.MessagingServiceSID != "":
		errs = append(errs, errors.New("twilio sender: set a from number or a messaging service sid, not both"))
	case c.From != "" && !phone.IsE164(c.From) && !(alphaSenderRE.MatchString(c.From) && hasLetterRE.MatchString(c.From)):
		errs = append(errs, errors.New("twilio from: must be an E.164 number or an alphanumeric sender id of at most 11 characters"))
	case c.MessagingServiceSID != "" && !serviceSIDRE.MatchString(c.MessagingServiceSID):
		errs = append(errs, errors.New("twilio messaging service sid: must be MG followed by 32 hex digits"))
	}
	if c.StatusCallbackURL != "" {
		if err := checkURL(c.StatusCallbackURL); err != nil {
			errs = append(errs, fmt.Errorf("twilio status callback url: %w", err))
		}
	}
	if err := checkURL(c.BaseURL); err != nil {
		errs = append(errs, fmt.Errorf("twilio base url: %w", err))
	}
	if c.Provider == "" {
		errs = append(errs, errors.New("twilio provider name: must be set"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("twilio timeout: must be positive"))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, errors.New("twilio max attempts: must be at least 1"))
	}
	if c.BackoffBase <= 0 {
		errs = append(errs, errors.New("twilio backoff base: must be positive"))
	}
	if c.BackoffMax < c.BackoffBase {
		errs = append(errs, errors.New("twilio backoff max: must be at least the backoff base"))
	}
	if c.MaxRetryAfter < 0 {
		errs = append(errs, errors.New("twilio max retry-after: must not be negative"))
	}
	if c.MaxCallbackBytes <= 0 {
		errs = append(errs, errors.New("twilio max callback bytes: must be positive"))
	}
	if c.EarlyReportTTL <= 0 {
		errs = append(errs, errors.New("twilio early report ttl: must be positive"))
	}
	if c.MaxEarlyReports < 1 {
		errs = append(errs, errors.New("twilio max early reports: must be at least 1"))
	}
	return errors.Join(errs...)
}

// checkURL accepts an absolute https URL, or an http one to a loopback
// address (a local proxy, or a test).
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Host == "" || u.User != nil || u.Fragment != "" {
		return errors.New("must be an absolute URL without user or fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return errors.New("plain http is allowed only to a loopback address")
		}
	default:
		return errors.New("must be https")
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
