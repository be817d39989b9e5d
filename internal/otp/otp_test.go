package otp

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newIssuer(t *testing.T) (*Issuer, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)}
	is, err := NewIssuer(DefaultPolicy(), bytes.Repeat([]byte{7}, 32), "k1", c.Now)
	require.NoError(t, err)
	return is, c
}

func payment(id int64, amount string) Binding {
	return Binding{Purpose: PaymentConfirm, HouseholdID: 1, PaymentID: id, Amount: decimal.RequireFromString(amount),
		Currency: "GBP", Payee: "Meterflow Energy", BillID: 9}
}

// wrong returns a code that differs from code.
func wrong(code string) string {
	if code == "000000" {
		return "000001"
	}
	return "000000"
}

func TestDefaultsAndValidate(t *testing.T) {
	require.NoError(t, DefaultPolicy().Validate())
	err := Policy{Digits: 4}.Validate()
	require.Error(t, err)
	for _, s := range []string{"digits", "ttl", "max checks", "max sends", "daily failures"} {
		assert.Contains(t, err.Error(), s)
	}
	_, err = NewIssuer(DefaultPolicy(), []byte("short"), "", nil)
	assert.ErrorContains(t, err, "otp key")
}

func TestIssueShape(t *testing.T) {
	is, c := newIssuer(t)
	seen := map[string]bool{}
	for range 50 {
		code, kept, err := is.Issue(payment(1, "10.00"), 0)
		require.NoError(t, err)
		assert.Regexp(t, `^[0-9]{6}$`, code)
		assert.Len(t, kept.MAC, 32)
		assert.NotContains(t, string(kept.MAC), code, "only the MAC is kept")
		assert.Equal(t, c.t.Add(5*time.Minute), kept.ExpiresAt)
		assert.Equal(t, 1, kept.Sends)
		seen[code] = true
	}
	assert.Greater(t, len(seen), 40, "codes are random")
}

func TestCheck(t *testing.T) {
	b := payment(1, "10.50")
	cases := []struct {
		name   string
		run    func(is *Issuer, c *clock, code string, kept *Code) error
		want   error
		failed bool
		used   bool
	}{
		{name: "right code", run: func(is *Issuer, c *clock, code string, k *Code) error {
			_, err := is.Check(k, b, code, 0)
			return err
		}, used: true},
		{name: "same amount written differently", run: func(is *Issuer, c *clock, code string, k *Code) error {
			_, err := is.Check(k, payment(1, "10.5"), code, 0)
			return err
		}, used: true},
		{name: "wrong code", run: func(is *Issuer, c *clock, code string, k *Code) error {
			_, err := is.Check(k, b, wrong(code), 0)
			return err
		}, want: ErrWrong, failed: true},
		{name: "expired", run: func(is *Issuer, c *clock, code string, k *Code) error {
			c.Advance(5 * time.Minute)
			_, err := is.Check(k, b, code, 0)
			return err
		}, want: ErrExpired},
		{name: "just before expiry", run: func(is *Issuer, c *clock, code string, k *Code) error {
			c.Advance(5*time.Minute - time.Second)
			_, err := is.Check(k, b, code, 0)
			return err
		}, used: true},
		{name: "replayed", run: func(is *Issuer, c *clock, code string, k *Code) error {
			if _, err := is.Check(k, b, code, 0); err != nil {
				return err
			}
			_, err := is.Check(k, b, code, 0)
			return err
		}, want: ErrUsed, used: true},
		{name: "other payment", run: func(is *Issuer, c *clock, code string, k *Code) error {
			_, err := is.Check(k, payment(2, "10.50"), code, 0)
			return err
		}, want: ErrWrong, failed: true},
		{name: "changed amount", run: func(is *Issuer, c *clock, code string, k *Code) error {
			_, err := is.Check(k, payment(1, "10.51"), code, 0)
			return err
		}, want: ErrWrong, failed: true},
		{name: "changed payee", run: func(is *Issuer, c *clock, code string, k *Code) error {
			o := b
			o.Payee = "Someone Else"
			_, err := is.Check(k, o, code, 0)
			return err
		}, want: ErrWrong, failed: true},
		{name: "changed bill", run: func(is *Issuer, c *clock, code string, k *Code) error {
			o := b
			o.BillID = 10
			_, err := is.Check(k, o, code, 0)
			return err
		}, want: ErrWrong, failed: true},
		{name: "other purpose", run: func(is *Issuer, c *clock, code string, k *Code) error {
			o := b
			o.Purpose = PhoneVerify
			_, err := is.Check(k, o, code, 0)
			return err
		}, want: ErrWrong, failed: true},
		{name: "household locked", run: func(is *Issuer, c *clock, code string, k *Code) error {
			_, err := is.Check(k, b, code, 10)
			return err
		}, want: ErrLocked},
		{name: "other key", run: func(is *Issuer, c *clock, code string, k *Code) error {
			other := *is
			other.Key = bytes.Repeat([]byte{8}, 32)
			_, err := other.Check(k, b, code, 0)
			return err
		}, want: ErrWrong, failed: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			is, c := newIssuer(t)
			code, kept, err := is.Issue(b, 0)
			require.NoError(t, err)
			err = tc.run(is, c, code, &kept)
			if tc.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.want)
			}
			assert.Equal(t, tc.used, kept.Used())
		})
	}
}

func TestBruteForceStopsAtCheckLimit(t *testing.T) {
	is, _ := newIssuer(t)
	b := payment(1, "10.00")
	code, kept, err := is.Issue(b, 0)
	require.NoError(t, err)
	failures := 0
	tried := 0
	for guess := range 1000 {
		g := fmt.Sprintf("%06d", guess)
		if g == code {
			continue
		}
		res, err := is.Check(&kept, b, g, failures)
		if errors.Is(err, ErrExhausted) {
			break
		}
		require.ErrorIs(t, err, ErrWrong)
		require.True(t, res.Failed)
		failures++
		tried++
	}
	assert.Equal(t, 5, tried, "five checks per code")
	_, err = is.Check(&kept, b, code, failures)
	assert.ErrorIs(t, err, ErrExhausted, "even the right code is refused once checks are spent")
	_, err = is.Resend(&kept, failures)
	assert.ErrorIs(t, err, ErrExhausted, "a resend does not buy more guesses")
}

func TestDailyLockAcrossCodes(t *testing.T) {
	is, _ := newIssuer(t)
	failures := 0
	for p := int64(1); ; p++ {
		b := payment(p, "10.00")
		code, kept, err := is.Issue(b, failures)
		if errors.Is(err, ErrLocked) {
			break
		}
		require.NoError(t, err)
		for {
			res, err := is.Check(&kept, b, wrong(code), failures)
			if res.Failed {
				failures++
			}
			if err != ErrWrong {
				break
			}
		}
		require.Less(t, p, int64(10))
	}
	assert.Equal(t, 10, failures)
	assert.True(t, is.Locked(failures))
}

func TestResend(t *testing.T) {
	is, c := newIssuer(t)
	b := payment(1, "10.00")
	first, kept, err := is.Issue(b, 0)
	require.NoError(t, err)

	_, err = is.Resend(&kept, 0)
	require.ErrorIs(t, err, ErrTooSoon)
	c.Advance(59 * time.Second)
	_, err = is.Resend(&kept, 0)
	require.ErrorIs(t, err, ErrTooSoon)
	c.Advance(time.Second)
	second, err := is.Resend(&kept, 0)
	require.NoError(t, err)
	assert.Equal(t, 2, kept.Sends)
	assert.Equal(t, c.t.Add(5*time.Minute), kept.ExpiresAt, "a resend restarts the validity")

	if first != second {
		_, err = is.Check(&kept, b, first, 0)
		require.ErrorIs(t, err, ErrWrong, "a resend replaces the code")
	}
	for kept.Sends < 5 {
		c.Advance(time.Minute)
		_, err = is.Resend(&kept, 0)
		require.NoError(t, err)
	}
	c.Advance(time.Minute)
	_, err = is.Resend(&kept, 0)
	require.ErrorIs(t, err, ErrTooMany)
	_, err = is.Resend(&kept, 10)
	require.ErrorIs(t, err, ErrLocked)
}

func TestDay(t *testing.T) {
	at := time.Date(2025, 3, 10, 23, 30, 0, 0, time.FixedZone("x", -2*3600))
	assert.Equal(t, time.Date(2025, 3, 11, 0, 0, 0, 0, time.UTC), Day(at))
}
