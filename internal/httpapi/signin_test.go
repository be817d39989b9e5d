package httpapi

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
)

// looseLimits turns the in-memory request limits up, so that the tests
// reach the lockout and resend limits of the auth service.
func looseLimits(c *APIConfig) {
	c.SignInPerIP = Limit{Every: time.Millisecond, Burst: 1000}
	c.SignInPerPhone = Limit{Every: time.Millisecond, Burst: 1000}
	c.VerifyPerIP = Limit{Every: time.Millisecond, Burst: 1000}
}

func TestSignInLockout(t *testing.T) {
	e := newEnv(t, looseLimits)
	signIn := func(phone, pw string) resp {
		return e.do("POST", "/api/v1/auth/sign-in", signInRequest{Phone: phone, Password: pw}, nil, false, nil)
	}
	const unknown = "+447400123477"
	wrong := func(phone string, n int) {
		t.Helper()
		for i := range n {
			r := signIn(phone, "wrong password")
			require.Equal(t, http.StatusUnauthorized, r.code, "failure %d: %s", i+1, r.body)
		}
	}

	t.Run("ten wrong passwords lock the number, known or not", func(t *testing.T) {
		wrong(e.a.phone, 9)
		wrong(unknown, 9)
		ra, ru := signIn(e.a.phone, "wrong password"), signIn(unknown, "wrong password")
		assert.Equal(t, http.StatusTooManyRequests, ra.code, string(ra.body))
		assert.Equal(t, apperr.RateLimited, ra.errCode())
		assert.Equal(t, "phone", ra.errField())
		assert.Contains(t, string(ra.body), "locked for 15 more minutes")
		assert.Equal(t, ra.body, ru.body, "a lockout tells nothing of whether the number exists")

		r := signIn(e.a.phone, password)
		assert.Equal(t, http.StatusTooManyRequests, r.code, "the right password is refused while locked")
		e.clock.Add(14 * time.Minute)
		assert.Contains(t, string(signIn(e.a.phone, password).body), "locked for 1 more minute\"")
		e.clock.Add(time.Minute)
		assert.Equal(t, http.StatusAccepted, signIn(e.a.phone, password).code, "the lock ends")
		assert.Equal(t, http.StatusUnauthorized, signIn(unknown, password).code)
	})
	t.Run("failures older than the window do not count", func(t *testing.T) {
		wrong(e.b.phone, 9)
		e.clock.Add(16 * time.Minute)
		wrong(e.b.phone, 9)
		assert.Equal(t, http.StatusAccepted, signIn(e.b.phone, password).code)
	})
	t.Run("the right password starts the count again", func(t *testing.T) {
		wrong(e.op.phone, 9)
		require.Equal(t, http.StatusAccepted, signIn(e.op.phone, password).code)
		wrong(e.op.phone, 9)
		assert.Equal(t, http.StatusTooManyRequests, signIn(e.op.phone, "wrong password").code)
	})
	t.Run("cleanup keeps a lock until it ends", func(t *testing.T) {
		c, err := e.auth.Cleanup(context.Background())
		require.NoError(t, err)
		var n int
		require.NoError(t, e.db.Pool.QueryRow(context.Background(), `select count(*) from sign_in_lockouts where locked_until > $1`, e.clock.Now()).Scan(&n))
		assert.Equal(t, 1, n, "the operator's lock is kept")
		assert.Positive(t, c.Lockouts, "idle lockouts are deleted")
		e.clock.Add(time.Hour)
		_, err = e.auth.Cleanup(context.Background())
		require.NoError(t, err)
		require.NoError(t, e.db.Pool.QueryRow(context.Background(), `select count(*) from sign_in_lockouts`).Scan(&n))
		assert.Zero(t, n)
	})
}

func TestResend(t *testing.T) {
	e := newEnv(t, looseLimits)
	start := func() string {
		t.Helper()
		r := e.do("POST", "/api/v1/auth/sign-in", signInRequest{Phone: e.a.phone, Password: password}, nil, false, nil)
		require.Equal(t, http.StatusAccepted, r.code, string(r.body))
		return decodeBody[signInResponse](t, r).Challenge
	}
	resend := func(ch string) resp {
		return e.do("POST", "/api/v1/auth/resend", resendRequest{Challenge: ch}, nil, false, nil)
	}
	verify := func(ch, code string) resp {
		return e.do("POST", "/api/v1/auth/verify", verifyRequest{Challenge: ch, Code: code}, nil, false, nil)
	}

	ch := start()
	first := e.sms.code(t, e.a.phone)
	r := resend(ch)
	assert.Equal(t, http.StatusTooManyRequests, r.code, "a resend right away: %s", r.body)
	assert.Contains(t, string(r.body), "wait")
	e.clock.Add(29 * time.Second)
	assert.Equal(t, http.StatusTooManyRequests, resend(ch).code)
	e.clock.Add(time.Second)
	r = resend(ch)
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	res := decodeBody[resendResponse](t, r)
	assert.Equal(t, ch, res.Challenge)
	assert.Equal(t, 1, res.SendsLeft)
	assert.True(t, e.clock.Now().Add(30*time.Second).Equal(res.NextAt), "%v", res.NextAt)
	second := e.sms.code(t, e.a.phone)
	if second != first {
		assert.Equal(t, apperr.Code("otp_invalid"), verify(ch, first).errCode(), "the first code is replaced")
	}

	e.clock.Add(30 * time.Second)
	require.Equal(t, http.StatusAccepted, resend(ch).code)
	third := e.sms.code(t, e.a.phone)
	e.clock.Add(time.Minute)
	r = resend(ch)
	assert.Equal(t, http.StatusTooManyRequests, r.code, "three codes per challenge")
	assert.Contains(t, string(r.body), "no more codes")
	r = verify(ch, third)
	assert.Equal(t, http.StatusOK, r.code, "the last code signs in: %s", r.body)
	assert.Equal(t, apperr.Code("otp_used"), resend(ch).errCode(), "nothing to resend once signed in")

	r = resend("no-such-challenge-at-all")
	assert.Equal(t, http.StatusBadRequest, r.code)
	assert.Equal(t, "challenge", r.errField())
	r = resend(strings.Repeat("x", 65))
	assert.Equal(t, "challenge", r.errField())
}

func TestAuthCleanup(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	count := func(table string) int {
		var n int
		require.NoError(t, e.db.Pool.QueryRow(ctx, `select count(*) from `+table).Scan(&n))
		return n
	}
	// Three sessions and three challenges from newEnv; B signs out.
	require.Equal(t, 3, count("sessions"))
	require.Equal(t, 3, count("sign_in_challenges"))
	require.Equal(t, http.StatusNoContent, e.do("POST", "/api/v1/auth/sign-out", nil, &e.b, false, nil).code)

	c, err := e.auth.Cleanup(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), c.Sessions, "the revoked session")
	assert.Zero(t, c.Challenges, "codes expired minutes ago are kept an hour")
	assert.Equal(t, http.StatusOK, e.do("GET", "/api/v1/me", nil, &e.a, false, nil).code, "live sessions stay")

	e.clock.Add(2 * time.Hour)
	c, err = e.auth.Cleanup(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(3), c.Challenges)
	assert.Zero(t, c.Sessions)
	e.clock.Add(11 * time.Hour)
	c, err = e.auth.Cleanup(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(2), c.Sessions, "the expired sessions")
	assert.Zero(t, count("sessions"))
	assert.Zero(t, count("sign_in_challenges"))
}
