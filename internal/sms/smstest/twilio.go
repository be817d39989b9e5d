package smstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/meterflow/meterflow/internal/phone"
	"github.com/meterflow/meterflow/internal/sms"
)

// Response is a scripted answer of the emulated Messages API, given instead
// of accepting the message. The request is checked all the same.
type Response struct {
	// Status is the HTTP status (429, 503, 400, 401, 500, ...).
	Status int
	// RetryAfter is the Retry-After header, if any.
	RetryAfter string
	// Code and Message are Twilio's error code and text.
	Code    int
	Message string
	// Drop accepts the message and then closes the connection without an
	// answer, as when an answer is lost on the way back.
	Drop bool
}

// TwilioMessage is a message the emulated API accepted.
type TwilioMessage struct {
	SID, To, From, MessagingServiceSID, Body, StatusCallback string
}

// TwilioServer emulates Twilio's Messages API on loopback. It checks every
// request as Twilio would (method, path, basic auth, content type, form
// fields, an E.164 To) and fails the test on anything else, so a test that
// passes proves the adapter's requests are well-formed. It is closed when
// the test ends.
type TwilioServer struct {
	URL        string
	AccountSID string
	AuthToken  string

	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	script   []Response
	messages []TwilioMessage
	requests int
	// early are the statuses reported for the next accepted message before
	// the send is answered; earlyCodes the answers of those reports.
	early      []string
	earlyCodes []int
}

// NewTwilioServer starts an emulated Messages API with fresh credentials.
func NewTwilioServer(t testing.TB) *TwilioServer {
	s := &TwilioServer{t: t, AccountSID: "AC" + randomHex(16), AuthToken: randomHex(16)}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Config returns the adapter's configuration for this server: its address
// and credentials, a sender number, and short backoffs.
func (s *TwilioServer) Config() sms.Config {
	c := sms.DefaultConfig()
	c.BaseURL, c.AccountSID, c.AuthToken = s.URL, s.AccountSID, s.AuthToken
	c.From = "+15005550006"
	c.BackoffBase, c.BackoffMax = time.Millisecond, 4*time.Millisecond
	return c
}

// Script queues answers for the next requests, one each, in order.
func (s *TwilioServer) Script(rs ...Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, rs...)
}

// ReportBeforeAnswer makes the next accepted message's status callback
// receive these statuses, one after another, before the send is answered,
// as when a carrier reports faster than the answer travels back. The
// message needs a StatusCallback. EarlyAnswers returns the callback's
// answers.
func (s *TwilioServer) ReportBeforeAnswer(statuses ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.early = append([]string(nil), statuses...)
}

// EarlyAnswers returns the HTTP statuses with which the callback answered
// the reports made before a send was answered, in order.
func (s *TwilioServer) EarlyAnswers() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.earlyCodes...)
}

// Requests returns how many requests reached the server.
func (s *TwilioServer) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Accepted returns every accepted message, in order.
func (s *TwilioServer) Accepted() []TwilioMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TwilioMessage(nil), s.messages...)
}

// Messages implements Inbox.
func (s *TwilioServer) Messages(_ context.Context, to string) ([]Message, error) {
	var out []Message
	for _, m := range s.Accepted() {
		if m.To == to {
			out = append(out, Message{ID: m.SID, To: m.To, Body: m.Body})
		}
	}
	return out, nil
}

// Report posts a signed status callback for an accepted message to its
// StatusCallback URL, as Twilio does, and returns the HTTP status of the
// answer.
func (s *TwilioServer) Report(ctx context.Context, sid, status, errorCode string) (int, error) {
	var m *TwilioMessage
	for _, a := range s.Accepted() {
		if a.SID == sid {
			m = &a
		}
	}
	if m == nil || m.StatusCallback == "" {
		return 0, fmt.Errorf("no message %s with a status callback", sid)
	}
	form := url.Values{"MessageSid": {sid}, "SmsSid": {sid}, "MessageStatus": {status}, "SmsStatus": {status},
		"AccountSid": {s.AccountSID}, "To": {m.To}, "ApiVersion": {"2010-04-01"}}
	if m.From != "" {
		form.Set("From", m.From)
	}
	if m.MessagingServiceSID != "" {
		form.Set("MessagingServiceSid", m.MessagingServiceSID)
	}
	if errorCode != "" {
		form.Set("ErrorCode", errorCode)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.StatusCallback, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", sms.Signature(s.AuthToken, m.StatusCallback, form))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

var allowedFields = map[string]bool{"To": true, "From": true, "MessagingServiceSid": true, "Body": true, "StatusCallback": true}

// check returns what is wrong with a request, or "".
func (s *TwilioServer) check(r *http.Request) (string, url.Values) {
	if r.Method != http.MethodPost {
		return "method " + r.Method + ", want POST", nil
	}
	if want := "/2010-04-01/Accounts/" + s.AccountSID + "/Messages.json"; r.URL.Path != want {
		return "path " + r.URL.Path + ", want " + want, nil
	}
	if r.URL.RawQuery != "" {
		return "unexpected query " + r.URL.RawQuery, nil
	}
	user, pass, ok := r.BasicAuth()
	if !ok || user != s.AccountSID || pass != s.AuthToken {
		return "basic auth is not the account sid and auth token", nil
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return "content type " + r.Header.Get("Content-Type"), nil
	}
	if err := r.ParseForm(); err != nil {
		return "form: " + err.Error(), nil
	}
	f := r.PostForm
	for k, v := range f {
		if !allowedFields[k] {
			return "unexpected field " + k, nil
		}
		if len(v) != 1 {
			return "field " + k + " given more than once", nil
		}
	}
	if !phone.IsE164(f.Get("To")) {
		return fmt.Sprintf("To %q is not E.164", f.Get("To")), nil
	}
	if (f.Get("From") == "") == (f.Get("MessagingServiceSid") == "") {
		return "exactly one of From and MessagingServiceSid must be set", nil
	}
	if b := f.Get("Body"); b == "" || utf8.RuneCountInString(b) > 1600 {
		return "Body must have 1 to 1600 characters", nil
	}
	if cb := f.Get("StatusCallback"); cb != "" {
		if u, err := url.Parse(cb); err != nil || !u.IsAbs() {
			return "StatusCallback is not an absolute URL", nil
		}
	}
	return "", f
}

func writeError(w http.ResponseWriter, status, code int, msg, retryAfter string) {
	w.Header().Set("Content-Type", "application/json")
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code), "status": status})
}

func (s *TwilioServer) serve(w http.ResponseWriter, r *http.Request) {
	problem, f := s.check(r)
	s.mu.Lock()
	s.requests++
	var scripted *Response
	if problem == "" && len(s.script) > 0 {
		scripted = &s.script[0]
		s.script = s.script[1:]
	}
	s.mu.Unlock()
	if problem != "" {
		s.t.Errorf("twilio emulation: bad request: %s", problem)
		writeError(w, http.StatusBadRequest, 21600, "emulation refused the request: "+problem, "")
		return
	}
	if scripted != nil && !scripted.Drop {
		writeError(w, scripted.Status, scripted.Code, scripted.Message, scripted.RetryAfter)
		return
	}
	m := TwilioMessage{SID: "SM" + randomHex(16), To: f.Get("To"), From: f.Get("From"),
		MessagingServiceSID: f.Get("MessagingServiceSid"), Body: f.Get("Body"), StatusCallback: f.Get("StatusCallback")}
	s.mu.Lock()
	s.messages = append(s.messages, m)
	early := s.early
	s.early = nil
	s.mu.Unlock()
	for _, status := range early {
		code, err := s.Report(r.Context(), m.SID, status, "")
		if err != nil {
			s.t.Errorf("twilio emulation: report %s before the answer: %v", status, err)
		}
		s.mu.Lock()
		s.earlyCodes = append(s.earlyCodes, code)
		s.mu.Unlock()
	}
	if scripted != nil {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	from := any(nil)
	if m.From != "" {
		from = m.From
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"sid": m.SID, "account_sid": s.AccountSID, "to": m.To, "from": from, "body": m.Body,
		"messaging_service_sid": m.MessagingServiceSID, "status": "queued", "direction": "outbound-api",
		"num_segments": "1", "error_code": nil, "error_message": nil, "api_version": "2010-04-01",
		"date_created": time.Now().UTC().Format(time.RFC1123Z),
		"uri":          "/2010-04-01/Accounts/" + s.AccountSID + "/Messages/" + m.SID + ".json",
	})
}
