package sms_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/sms"
	"github.com/meterflow/meterflow/internal/sms/smstest"
	"github.com/meterflow/meterflow/internal/testenv"
)

func TestSignatureMatchesTwiliosPublishedExample(t *testing.T) {
	form := url.Values{"CallSid": {"CA1234567890ABCDE"}, "Caller": {"+12349013030"}, "Digits": {"1234"},
		"From": {"+12349013030"}, "To": {"+18005551212"}}
	assert.Equal(t, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", sms.Signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", form))
}

// recorder is a DeliveryRecorder that remembers its calls.
type recorder struct {
	mu       sync.Mutex
	calls    []string
	err      error
	earlyErr error
}

func (r *recorder) SMSDelivery(_ context.Context, provider, providerID, status, errText string, _ time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, strings.Join([]string{provider, providerID, status, errText}, "|"))
	return r.err
}

func (r *recorder) SMSEarlyDelivery(_ context.Context, provider, providerID, status, errText string, now, keepUntil time.Time, maxKept int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, strings.Join([]string{"early", provider, providerID, status, errText,
		keepUntil.Sub(now).String(), strconv.Itoa(maxKept)}, "|"))
	return r.earlyErr
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

const callbackURL = "https://meterflow.example/sms/status"

func callbackConfig() sms.Config {
	c := sms.DefaultConfig()
	c.AccountSID, c.AuthToken, c.From, c.StatusCallbackURL = sid, "secret-token", "+15005550006", callbackURL
	return c
}

func TestCallback(t *testing.T) {
	form := url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}, "AccountSid": {sid}, "To": {"+447700900001"}}
	good := sms.Signature("secret-token", callbackURL, form)
	undelivered := url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"undelivered"}, "ErrorCode": {"30003"}}
	tampered := url.Values{"MessageSid": {"SM2"}, "MessageStatus": {"delivered"}, "AccountSid": {sid}, "To": {"+447700900001"}}
	cases := []struct {
		name        string
		method      string
		contentType string
		body        string
		signature   string
		recErr      error
		earlyErr    error
		want        int
		recorded    []string
	}{
		{name: "good signature", body: form.Encode(), signature: good, want: 204, recorded: []string{"twilio|SM1|delivered|"}},
		{name: "error code", body: undelivered.Encode(), signature: sms.Signature("secret-token", callbackURL, undelivered),
			want: 204, recorded: []string{"twilio|SM1|undelivered|twilio error 30003"}},
		{name: "default port in the signed URL", body: form.Encode(),
			signature: sms.Signature("secret-token", "https://meterflow.example:443/sms/status", form), want: 204, recorded: []string{"twilio|SM1|delivered|"}},
		{name: "missing signature", body: form.Encode(), want: 403},
		{name: "wrong signature", body: form.Encode(), signature: "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", want: 403},
		{name: "signed with another token", body: form.Encode(), signature: sms.Signature("other-token", callbackURL, form), want: 403},
		{name: "signed for another URL", body: form.Encode(), signature: sms.Signature("secret-token", "https://evil.example/sms/status", form), want: 403},
		{name: "tampered parameter", body: tampered.Encode(), signature: good, want: 403},
		{name: "extra parameter", body: form.Encode() + "&MessageStatus=failed", signature: good, want: 403},
		{name: "oversized body", body: form.Encode() + "&Pad=" + strings.Repeat("x", 20<<10), signature: good, want: 413},
		{name: "wrong method", method: http.MethodGet, signature: good, want: 405},
		{name: "not a form", contentType: "application/json", body: `{"MessageSid":"SM1"}`, signature: good, want: 415},
		{name: "status not recorded", body: "MessageSid=SM1&MessageStatus=queued",
			signature: sms.Signature("secret-token", callbackURL, url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"queued"}}), want: 204},
		{name: "no message sid", body: "MessageStatus=sent",
			signature: sms.Signature("secret-token", callbackURL, url.Values{"MessageStatus": {"sent"}}), want: 400},
		{name: "unknown message: kept for its send result", body: form.Encode(), signature: good, recErr: apperr.New(apperr.NotFound, "no message"),
			want: 204, recorded: []string{"twilio|SM1|delivered|", "early|twilio|SM1|delivered||15m0s|10000"}},
		{name: "unknown message, too many kept", body: form.Encode(), signature: good, recErr: apperr.New(apperr.NotFound, "no message"),
			earlyErr: apperr.New(apperr.RateLimited, "full"), want: 503, recorded: []string{"twilio|SM1|delivered|", "early|twilio|SM1|delivered||15m0s|10000"}},
		{name: "unknown message, store down", body: form.Encode(), signature: good, recErr: apperr.New(apperr.NotFound, "no message"),
			earlyErr: context.DeadlineExceeded, want: 500, recorded: []string{"twilio|SM1|delivered|", "early|twilio|SM1|delivered||15m0s|10000"}},
		{name: "store down", body: form.Encode(), signature: good, recErr: context.DeadlineExceeded,
			want: 500, recorded: []string{"twilio|SM1|delivered|"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{err: tc.recErr, earlyErr: tc.earlyErr}
			h, err := sms.NewCallback(callbackConfig(), rec, nil)
			require.NoError(t, err)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, "http://10.0.0.7:8080/sms/status", strings.NewReader(tc.body))
			ct := tc.contentType
			if ct == "" {
				ct = "application/x-www-form-urlencoded"
			}
			req.Header.Set("Content-Type", ct)
			if tc.signature != "" {
				req.Header.Set("X-Twilio-Signature", tc.signature)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			assert.Equal(t, tc.want, w.Code, w.Body.String())
			assert.Equal(t, tc.recorded, rec.all())
		})
	}
}

func TestNewCallbackNeedsAURLAndARecorder(t *testing.T) {
	cfg := callbackConfig()
	cfg.StatusCallbackURL = ""
	_, err := sms.NewCallback(cfg, &recorder{}, nil)
	assert.ErrorContains(t, err, "status callback url")
	_, err = sms.NewCallback(callbackConfig(), nil, nil)
	assert.ErrorContains(t, err, "recorder")
}

// reportStack is the emulated Messages API, a client sending through it
// with a status callback, and the callback handler recording the reports
// in PostgreSQL.
type reportStack struct {
	db     *postgres.DB
	store  *postgres.Payments
	api    *smstest.TwilioServer
	cfg    sms.Config
	client *sms.Client
}

func newReportStack(t *testing.T) *reportStack {
	db := testenv.PostgresDB(t)
	s := &reportStack{db: db, store: &postgres.Payments{DB: db}, api: smstest.NewTwilioServer(t)}
	s.cfg = s.api.Config()
	mux := http.NewServeMux()
	app := httptest.NewServer(mux)
	t.Cleanup(app.Close)
	s.cfg.StatusCallbackURL = app.URL + "/sms/status"
	cb, err := sms.NewCallback(s.cfg, s.store, nil)
	require.NoError(t, err)
	mux.Handle("POST /sms/status", cb)
	s.client, _ = newClient(t, s.cfg)
	return s
}

// queue records a queued message, as the services do before sending it.
func (s *reportStack) queue(t *testing.T, to, body string) int64 {
	var id int64
	require.NoError(t, s.db.Pool.QueryRow(context.Background(), `insert into sms_messages (to_e164, purpose, body, provider, created_at, updated_at)
		values ($1, 'notice', $2, 'twilio', now(), now()) returning id`, to, body).Scan(&id))
	return id
}

func (s *reportStack) status(t *testing.T, id int64) string {
	var st string
	require.NoError(t, s.db.Pool.QueryRow(context.Background(), `select status from sms_messages where id = $1`, id).Scan(&st))
	return st
}

// forge posts a report of sid signed with a guessed token and returns the
// answer's status.
func (s *reportStack) forge(t *testing.T, sid, status string) int {
	forged := url.Values{"MessageSid": {sid}, "MessageStatus": {status}}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, s.cfg.StatusCallbackURL, strings.NewReader(forged.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", sms.Signature("guessed", s.cfg.StatusCallbackURL, forged))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestDeliveryReportsEndToEnd sends through the emulated API, which reports
// delivery to the callback handler, which records it in PostgreSQL.
func TestDeliveryReportsEndToEnd(t *testing.T) {
	ctx := context.Background()
	s := newReportStack(t)
	msgID := s.queue(t, "+447700900009", "Your bill is paid")
	providerID, err := s.client.Send(ctx, "+447700900009", "Your bill is paid")
	require.NoError(t, err)
	require.NoError(t, s.store.SMSResult(ctx, msgID, providerID, nil, time.Now()))

	assert.Equal(t, "sent", s.status(t, msgID))
	for _, step := range []struct{ report, want string }{
		{"sending", "sent"}, {"delivered", "delivered"}, {"sent", "delivered"}, {"undelivered", "delivered"},
	} {
		code, err := s.api.Report(ctx, providerID, step.report, "")
		require.NoError(t, err)
		assert.Equal(t, http.StatusNoContent, code, step.report)
		assert.Equal(t, step.want, s.status(t, msgID), "after %s", step.report)
	}

	// A forged report, signed with another token, changes nothing.
	assert.Equal(t, http.StatusForbidden, s.forge(t, providerID, "failed"))
	assert.Equal(t, "delivered", s.status(t, msgID))

	code, err := s.api.Report(ctx, providerID, "delivered", "")
	require.NoError(t, err)
	assert.Equal(t, http.StatusNoContent, code, "a repeated report is fine")
}

// TestDeliveryReportBeforeSendResult reproduces the race of a carrier that
// reports before the answer to the send is back: the emulated API calls
// the status callback, twice, before it answers the send, so the reports
// find no message with that id. They are kept and applied when the send
// result is recorded; a forged report of an unknown id is refused and kept
// nowhere.
func TestDeliveryReportBeforeSendResult(t *testing.T) {
	ctx := context.Background()
	s := newReportStack(t)
	kept := func(sid string) int {
		var n int
		require.NoError(t, s.db.Pool.QueryRow(ctx, `select count(*) from sms_early_reports where provider_id = $1`, sid).Scan(&n))
		return n
	}
	msgID := s.queue(t, "+447700900010", "Your bill is ready")

	s.api.ReportBeforeAnswer("sent", "delivered")
	providerID, err := s.client.Send(ctx, "+447700900010", "Your bill is ready")
	require.NoError(t, err)
	assert.Equal(t, []int{http.StatusNoContent, http.StatusNoContent}, s.api.EarlyAnswers(), "reports of a message not recorded yet are taken")
	assert.Equal(t, "queued", s.status(t, msgID), "nothing is recorded on a message before its send result")
	assert.Equal(t, 1, kept(providerID))

	require.NoError(t, s.store.SMSResult(ctx, msgID, providerID, nil, time.Now()))
	assert.Equal(t, "delivered", s.status(t, msgID), "the kept report is applied with the send result")
	assert.Zero(t, kept(providerID), "an applied report is no longer kept")

	code, err := s.api.Report(ctx, providerID, "sent", "")
	require.NoError(t, err)
	assert.Equal(t, http.StatusNoContent, code)
	assert.Equal(t, "delivered", s.status(t, msgID), "a late sent does not move it back")

	// A forged report of an id nobody has recorded yet is refused and kept
	// nowhere, so the send result that follows is not touched by it.
	sid := "SM" + strings.Repeat("f", 32)
	assert.Equal(t, http.StatusForbidden, s.forge(t, sid, "failed"))
	assert.Zero(t, kept(sid))
	other := s.queue(t, "+447700900010", "Paid")
	require.NoError(t, s.store.SMSResult(ctx, other, sid, nil, time.Now()))
	assert.Equal(t, "sent", s.status(t, other))
}
