package sms

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/meterflow/meterflow/internal/apperr"
)

// DeliveryRecorder records a provider's delivery reports of messages.
// postgres.Payments satisfies it. status is one of sent, delivered,
// undelivered and failed; a report that would move a message backwards
// (sent after delivered) must be ignored.
type DeliveryRecorder interface {
	// SMSDelivery records a report of a message whose send result (the
	// provider's id) is recorded. A report of a message it does not know
	// must be an apperr not_found error.
	SMSDelivery(ctx context.Context, provider, providerID, status, errText string, now time.Time) error
	// SMSEarlyDelivery takes a report that SMSDelivery did not find the
	// message of: the provider may report before the answer to the send
	// has reached the sender and been recorded. If the message is known by
	// now the report is recorded as by SMSDelivery; otherwise it is kept
	// until keepUntil, and recording the send result with this provider id
	// applies it then (statuses still only move forward). Deciding between
	// the two must be atomic with recording a send result, so no report
	// falls between them. When maxKept reports are kept already it keeps
	// nothing and returns an apperr rate_limited error.
	SMSEarlyDelivery(ctx context.Context, provider, providerID, status, errText string, now, keepUntil time.Time, maxKept int) error
}

// Callback is the http.Handler of Twilio's status callbacks. It is safe for
// concurrent use.
type Callback struct {
	token    []byte
	urls     []string
	provider string
	maxBytes int64
	keepFor  time.Duration
	maxKept  int
	rec      DeliveryRecorder
	log      *slog.Logger
	// Now is the clock of recorded reports.
	Now func() time.Time
}

// NewCallback returns the handler of the delivery reports of messages sent
// with cfg, which must be valid and name a StatusCallbackURL.
func NewCallback(cfg Config, rec DeliveryRecorder, log *slog.Logger) (*Callback, error) {
	err := cfg.Validate()
	if cfg.StatusCallbackURL == "" {
		err = errors.Join(err, errors.New("twilio status callback url: must be set to receive delivery reports"))
	}
	if rec == nil {
		err = errors.Join(err, errors.New("twilio callback: no delivery recorder"))
	}
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Callback{
		token:    []byte(cfg.AuthToken),
		urls:     urlVariants(cfg.StatusCallbackURL),
		provider: cfg.Provider,
		maxBytes: cfg.MaxCallbackBytes,
		keepFor:  cfg.EarlyReportTTL,
		maxKept:  cfg.MaxEarlyReports,
		rec:      rec,
		log:      log.With("provider", cfg.Provider),
		Now:      time.Now,
	}, nil
}

// urlVariants lists the URL with and without its scheme's default port:
// Twilio signs the URL as configured, and its own libraries accept both.
func urlVariants(raw string) []string {
	out := []string{raw}
	u, err := url.Parse(raw)
	if err != nil {
		return out
	}
	def := map[string]string{"https": "443", "http": "80"}[u.Scheme]
	v := *u
	switch u.Port() {
	case "":
		v.Host = u.Host + ":" + def
	case def:
		v.Host = u.Hostname()
	default:
		return out
	}
	return append(out, v.String())
}

// Signature computes Twilio's request signature: HMAC-SHA1, keyed by the
// auth token, of the full URL followed by each POST parameter's name and
// value, sorted by name (and values of one name sorted), in base64.
func Signature(authToken, fullURL string, form url.Values) string {
	names := make([]string, 0, len(form))
	for k := range form {
		names = append(names, k)
	}
	sort.Strings(names)
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(fullURL))
	for _, k := range names {
		vals := append([]string(nil), form[k]...)
		sort.Strings(vals)
		for _, v := range vals {
			mac.Write([]byte(k))
			mac.Write([]byte(v))
		}
	}
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// valid reports whether sig signs form at one of the callback's URLs.
func (h *Callback) valid(sig string, form url.Values) bool {
	if sig == "" {
		return false
	}
	ok := 0
	for _, u := range h.urls {
		want := Signature(string(h.token), u, form)
		ok |= subtle.ConstantTimeCompare([]byte(want), []byte(sig))
	}
	return ok == 1
}

// reported maps the statuses Twilio reports onto the ones recorded; the
// others (queued, accepted, sending, scheduled, ...) say nothing a recorded
// message does not already know.
var reported = map[string]bool{"sent": true, "delivered": true, "undelivered": true, "failed": true}

func (h *Callback) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		http.Error(w, "expected a form", http.StatusUnsupportedMediaType)
		return
	}
	if r.ContentLength > h.maxBytes {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	form, err := url.ParseQuery(string(bytes.TrimSpace(body)))
	if err != nil {
		http.Error(w, "malformed form", http.StatusBadRequest)
		return
	}
	if !h.valid(r.Header.Get("X-Twilio-Signature"), form) {
		h.log.Warn("sms callback refused: bad signature", "remote", r.RemoteAddr)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	sid, status := form.Get("MessageSid"), form.Get("MessageStatus")
	if sid == "" || status == "" {
		http.Error(w, "MessageSid and MessageStatus are required", http.StatusBadRequest)
		return
	}
	if !reported[status] {
		h.log.Debug("sms callback: status not recorded", "sid", sid, "status", status)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	errText := ""
	if code := form.Get("ErrorCode"); code != "" && code != "0" {
		errText = "twilio error " + code
	}
	now := h.Now()
	err = h.rec.SMSDelivery(r.Context(), h.provider, sid, status, errText, now)
	if apperr.CodeOf(err) == apperr.NotFound {
		// Reported before the send's result was recorded. Twilio does not
		// call again after an error answer (retries are an opt-in of the
		// URL, and last seconds at most), so the report is kept for the
		// message rather than refused.
		h.log.Debug("sms callback before the send result", "sid", sid, "status", status)
		err = h.rec.SMSEarlyDelivery(r.Context(), h.provider, sid, status, errText, now, now.Add(h.keepFor), h.maxKept)
	}
	switch apperr.CodeOf(err) {
	case "":
		w.WriteHeader(http.StatusNoContent)
	case apperr.RateLimited:
		h.log.Warn("sms callback dropped: too many reports of unknown messages kept", "sid", sid, "status", status, "max", h.maxKept)
		http.Error(w, "too many reports of unknown messages", http.StatusServiceUnavailable)
	case apperr.Invalid:
		http.Error(w, "invalid report", http.StatusBadRequest)
	default:
		h.log.Error("sms callback: record delivery", "sid", sid, "status", status, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}
