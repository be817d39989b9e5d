package sms_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/sms"
	"github.com/meterflow/meterflow/internal/sms/smstest"
)

const sid = "AC0123456789abcdef0123456789abcdef"

// sleeps records the waits a client asks for, without waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

func newClient(t *testing.T, cfg sms.Config) (*sms.Client, *sleeps) {
	t.Helper()
	c, err := sms.New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	s := &sleeps{}
	c.Sleep = s.sleep
	return c, s
}

func TestTwilioSenderSuite(t *testing.T) {
	smstest.RunSenderSuite(t, func(t *testing.T) (payment.Sender, smstest.Inbox) {
		srv := smstest.NewTwilioServer(t)
		c, _ := newClient(t, srv.Config())
		return c, srv
	})
}

func TestTwilioSenderSuiteWithMessagingService(t *testing.T) {
	smstest.RunSenderSuite(t, func(t *testing.T) (payment.Sender, smstest.Inbox) {
		srv := smstest.NewTwilioServer(t)
		cfg := srv.Config()
		cfg.From, cfg.MessagingServiceSID = "", "MG0123456789abcdef0123456789abcdef"
		cfg.StatusCallbackURL = "https://meterflow.example/sms/status"
		c, _ := newClient(t, cfg)
		return c, srv
	})
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	err := sms.Config{BaseURL: "http://api.twilio.com", StatusCallbackURL: "ftp://x"}.Validate()
	require.Error(t, err)
	for _, want := range []string{"account sid", "auth token", "sender", "status callback url", "base url",
		"provider", "timeout", "max attempts", "backoff base", "max callback bytes", "early report ttl", "max early reports"} {
		assert.Contains(t, err.Error(), want)
	}

	good := sms.DefaultConfig()
	good.AccountSID, good.AuthToken, good.From = sid, "token", "+447700900000"
	require.NoError(t, good.Validate())

	cases := map[string]func(c *sms.Config){
		"both senders":       func(c *sms.Config) { c.MessagingServiceSID = "MG0123456789abcdef0123456789abcdef" },
		"bad service sid":    func(c *sms.Config) { c.From, c.MessagingServiceSID = "", "MG123" },
		"bad from":           func(c *sms.Config) { c.From = "07700 900000" },
		"plain http remote":  func(c *sms.Config) { c.BaseURL = "http://api.twilio.com" },
		"callback with user": func(c *sms.Config) { c.StatusCallbackURL = "https://u:p@meterflow.example/cb" },
		"backoff max < base": func(c *sms.Config) { c.BackoffMax = c.BackoffBase / 2 },
	}
	for name, mutate := range cases {
		c := good
		mutate(&c)
		assert.Error(t, c.Validate(), name)
	}
	alpha := good
	alpha.From = "Meterflow"
	assert.NoError(t, alpha.Validate(), "an alphanumeric sender id")
	local := good
	local.BaseURL = "http://127.0.0.1:8080"
	assert.NoError(t, local.Validate(), "plain http to loopback")
	_, err = sms.New(sms.Config{}, nil)
	assert.Error(t, err, "the constructor refuses an invalid config")
}

func TestRequestShape(t *testing.T) {
	ctx := context.Background()
	srv := smstest.NewTwilioServer(t)
	cfg := srv.Config()
	cfg.From, cfg.MessagingServiceSID = "", "MG0123456789abcdef0123456789abcdef"
	cfg.StatusCallbackURL = "https://meterflow.example/sms/status?x=1"
	c, _ := newClient(t, cfg)
	id, err := c.Send(ctx, "+447700900001", "Your code is 123456")
	require.NoError(t, err)
	got := srv.Accepted()
	require.Len(t, got, 1)
	assert.Equal(t, smstest.TwilioMessage{SID: id, To: "+447700900001", MessagingServiceSID: cfg.MessagingServiceSID,
		Body: "Your code is 123456", StatusCallback: cfg.StatusCallbackURL}, got[0])
	assert.True(t, strings.HasPrefix(id, "SM"), id)

	cfg = srv.Config()
	c, _ = newClient(t, cfg)
	_, err = c.Send(ctx, "+447700900001", "hi")
	require.NoError(t, err)
	got = srv.Accepted()
	require.Len(t, got, 2)
	assert.Equal(t, "+15005550006", got[1].From)
	assert.Empty(t, got[1].MessagingServiceSID)
	assert.Empty(t, got[1].StatusCallback, "no callback configured, none sent")

	_, err = c.Send(ctx, "+447700900001", strings.Repeat("x", sms.MaxBodyChars+1))
	assert.True(t, apperr.Is(err, apperr.Invalid), "a text longer than an SMS may be: %v", err)
	assert.Equal(t, 2, srv.Requests(), "refused before any request")
}

func TestRetries(t *testing.T) {
	ctx := context.Background()
	date := time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat)
	cases := []struct {
		name     string
		script   []smstest.Response
		requests int
		ok       bool
		code     apperr.Code
		unknown  bool
		// minWaits are lower bounds of the waits between attempts.
		minWaits []time.Duration
		errText  string
	}{
		{name: "429 then success", script: []smstest.Response{{Status: 429, Code: 20429, RetryAfter: "2"}},
			requests: 2, ok: true, minWaits: []time.Duration{2 * time.Second}},
		{name: "503 twice then success", script: []smstest.Response{{Status: 503, RetryAfter: "1"}, {Status: 503}},
			requests: 3, ok: true, minWaits: []time.Duration{time.Second, 0}},
		{name: "503 with a date", script: []smstest.Response{{Status: 503, RetryAfter: date}},
			requests: 2, ok: true, minWaits: []time.Duration{time.Second}},
		{name: "400 is permanent", script: []smstest.Response{{Status: 400, Code: 21211, Message: "The 'To' number is not a valid phone number."}},
			requests: 1, code: apperr.Invalid, errText: "21211"},
		{name: "401 is permanent", script: []smstest.Response{{Status: 401, Code: 20003, Message: "Authenticate"}},
			requests: 1, code: apperr.Internal, errText: "20003"},
		{name: "404 is permanent", script: []smstest.Response{{Status: 404, Code: 20404}},
			requests: 1, code: apperr.Internal},
		{name: "500 may have been accepted", script: []smstest.Response{{Status: 500}},
			requests: 1, unknown: true},
		{name: "502 may have been accepted", script: []smstest.Response{{Status: 502}},
			requests: 1, unknown: true},
		{name: "lost answer is not sent again", script: []smstest.Response{{Drop: true}},
			requests: 1, unknown: true},
		{name: "gives up after max attempts", script: []smstest.Response{{Status: 429}, {Status: 503}, {Status: 429}, {Status: 503}, {Status: 429}},
			requests: 4, code: apperr.Unavailable, errText: "gave up after 4 attempts"},
		{name: "retry-after too long", script: []smstest.Response{{Status: 503, RetryAfter: "120"}},
			requests: 1, code: apperr.Unavailable, errText: "asks to wait 2m0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := smstest.NewTwilioServer(t)
			srv.Script(tc.script...)
			c, slept := newClient(t, srv.Config())
			id, err := c.Send(ctx, "+447700900002", "Your code is 123456")
			assert.Equal(t, tc.requests, srv.Requests(), "requests")
			waits := slept.all()
			require.Len(t, waits, tc.requests-1, "one wait between attempts")
			for i, w := range tc.minWaits {
				assert.GreaterOrEqual(t, waits[i], w, "wait %d honours Retry-After", i)
			}
			if tc.ok {
				require.NoError(t, err)
				assert.NotEmpty(t, id)
				assert.Len(t, srv.Accepted(), 1, "sent once")
				return
			}
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "123456", "the text never appears in an error")
			assert.NotContains(t, err.Error(), "+447700900002", "nor the full number")
			if tc.errText != "" {
				assert.Contains(t, err.Error(), tc.errText)
			}
			if tc.unknown {
				assert.ErrorIs(t, err, sms.ErrOutcomeUnknown)
				assert.Equal(t, apperr.Internal, apperr.CodeOf(err), "no code: the outcome is unknown")
				return
			}
			assert.NotErrorIs(t, err, sms.ErrOutcomeUnknown)
			assert.Equal(t, tc.code, apperr.CodeOf(err), "%v", err)
			if tc.code == apperr.Invalid || tc.code == apperr.Internal {
				var api *sms.APIError
				require.ErrorAs(t, err, &api)
				assert.Equal(t, tc.script[0].Status, api.Status)
				assert.Equal(t, tc.script[0].Code, api.Code)
			}
			assert.Empty(t, srv.Accepted())
		})
	}
}

func TestBackoffIsBoundedAndJittered(t *testing.T) {
	srv := smstest.NewTwilioServer(t)
	srv.Script(smstest.Response{Status: 429}, smstest.Response{Status: 429}, smstest.Response{Status: 429}, smstest.Response{Status: 429})
	cfg := srv.Config()
	cfg.MaxAttempts, cfg.BackoffBase, cfg.BackoffMax = 5, 100*time.Millisecond, 300*time.Millisecond
	c, slept := newClient(t, cfg)
	_, err := c.Send(context.Background(), "+447700900003", "hi")
	require.NoError(t, err)
	waits := slept.all()
	require.Len(t, waits, 4)
	for i, bound := range []time.Duration{100, 200, 300, 300} {
		assert.LessOrEqual(t, waits[i], bound*time.Millisecond, "wait %d", i)
		assert.Positive(t, waits[i])
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func TestConnectionRefusedIsRetried(t *testing.T) {
	ctx := context.Background()
	srv := smstest.NewTwilioServer(t)
	cfg := srv.Config()
	addr := freeAddr(t)
	cfg.BaseURL = "http://" + addr
	c, err := sms.New(cfg, nil)
	require.NoError(t, err)
	// The first attempt finds nothing listening; during the wait the API
	// comes up on that address.
	started := 0
	c.Sleep = func(ctx context.Context, d time.Duration) error {
		started++
		if started == 1 {
			l, err := net.Listen("tcp", addr)
			require.NoError(t, err)
			proxy := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.URL.Scheme, r.URL.Host = "http", strings.TrimPrefix(srv.URL, "http://")
				req, _ := http.NewRequestWithContext(r.Context(), r.Method, r.URL.String(), r.Body)
				req.Header = r.Header
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					w.WriteHeader(http.StatusBadGateway)
					return
				}
				defer resp.Body.Close()
				w.WriteHeader(resp.StatusCode)
				_, _ = w.Write([]byte(`{"sid":"SMfromproxy","status":"queued"}`))
			})}}
			proxy.Start()
			t.Cleanup(proxy.Close)
		}
		return nil
	}
	id, err := c.Send(ctx, "+447700900004", "hello")
	require.NoError(t, err)
	assert.Equal(t, "SMfromproxy", id)
	assert.Equal(t, 1, started)
	assert.Len(t, srv.Accepted(), 1)

	cfg.BaseURL = "http://" + freeAddr(t)
	down, slept := newClient(t, cfg)
	_, err = down.Send(ctx, "+447700900004", "hello")
	require.Error(t, err)
	assert.Equal(t, apperr.Unavailable, apperr.CodeOf(err))
	var op *net.OpError
	assert.ErrorAs(t, err, &op, "the cause is kept")
	assert.Len(t, slept.all(), cfg.MaxAttempts-1)
}

// hangUntilGone answers nothing until the client goes away (bounded, so a
// broken test cannot hang the run).
func hangUntilGone(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

func TestContextCancellation(t *testing.T) {
	t.Run("while waiting to retry", func(t *testing.T) {
		srv := smstest.NewTwilioServer(t)
		srv.Script(smstest.Response{Status: 503})
		c, err := sms.New(srv.Config(), nil)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}
		_, err = c.Send(ctx, "+447700900005", "hi")
		assert.ErrorIs(t, err, context.Canceled)
		assert.NotErrorIs(t, err, sms.ErrOutcomeUnknown, "nothing was accepted")
		assert.Equal(t, 1, srv.Requests())
	})
	t.Run("while the request is in flight", func(t *testing.T) {
		arrived := make(chan struct{})
		hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // the server notices a closed connection only once the body is read
			close(arrived)
			hangUntilGone(r)
		}))
		t.Cleanup(hang.Close)
		cfg := sms.DefaultConfig()
		cfg.AccountSID, cfg.AuthToken, cfg.From, cfg.BaseURL = sid, "token", "+15005550006", hang.URL
		c, slept := newClient(t, cfg)
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-arrived; cancel() }()
		_, err := c.Send(ctx, "+447700900005", "hi")
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorIs(t, err, sms.ErrOutcomeUnknown, "a request cut off after it was written may have been accepted")
		assert.Empty(t, slept.all(), "not retried")
	})
	t.Run("deadline before the next attempt", func(t *testing.T) {
		srv := smstest.NewTwilioServer(t)
		srv.Script(smstest.Response{Status: 429, RetryAfter: "20"})
		c, slept := newClient(t, srv.Config())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Send(ctx, "+447700900005", "hi")
		assert.Equal(t, apperr.Unavailable, apperr.CodeOf(err), "%v", err)
		assert.Contains(t, err.Error(), "past the deadline")
		assert.Empty(t, slept.all(), "does not wait for nothing")
	})
	t.Run("http client timeout", func(t *testing.T) {
		hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			hangUntilGone(r)
		}))
		t.Cleanup(hang.Close)
		cfg := sms.DefaultConfig()
		cfg.AccountSID, cfg.AuthToken, cfg.From, cfg.BaseURL = sid, "token", "+15005550006", hang.URL
		cfg.Timeout = 50 * time.Millisecond
		c, slept := newClient(t, cfg)
		start := time.Now()
		_, err := c.Send(context.Background(), "+447700900005", "hi")
		assert.ErrorIs(t, err, sms.ErrOutcomeUnknown)
		assert.Less(t, time.Since(start), 5*time.Second)
		assert.Empty(t, slept.all())
	})
}

func TestErrorsAreTyped(t *testing.T) {
	e := &sms.APIError{Status: 400, Code: 21211, Message: "bad number"}
	assert.Equal(t, "twilio: http 400 error 21211: bad number", e.Error())
	wrapped := &apperr.Error{Code: apperr.Invalid, Message: "x", Err: e}
	var got *sms.APIError
	assert.True(t, errors.As(wrapped, &got))
}
