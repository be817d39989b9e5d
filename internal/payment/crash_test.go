package payment_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/payment/sandbox"
)

// dying is a gateway whose process "dies" after the charge reaches the
// gateway and before its result is saved: it panics, the first time only.
type dying struct {
	inner *sandbox.Gateway
	died  atomic.Bool
}

func (d *dying) Charge(ctx context.Context, req payment.ChargeRequest) (payment.ChargeResult, error) {
	res, err := d.inner.Charge(ctx, req)
	if d.died.CompareAndSwap(false, true) {
		panic("process killed after the charge was sent")
	}
	return res, err
}

// unreachable never answers.
type unreachable struct{ calls atomic.Int32 }

func (u *unreachable) Charge(context.Context, payment.ChargeRequest) (payment.ChargeResult, error) {
	u.calls.Add(1)
	return payment.ChargeResult{}, errors.New("connection reset by peer")
}

func TestCrashBetweenChargeAndSave(t *testing.T) {
	sb := &sandbox.Gateway{}
	gw := &dying{inner: sb}
	e := newEnv(t, gw)
	p := e.create(sandbox.CardSuccess, "crash")
	require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
	code := e.lastCode()

	func() {
		defer func() { require.NotNil(t, recover(), "the process died") }()
		_, _ = e.svc.Confirm(e.ctx, e.household, p.ID, code)
	}()
	got := e.payment(p.ID)
	assert.Equal(t, payment.Charging, got.State, "charging and its key were saved before the gateway was called")
	assert.Equal(t, 1, got.Attempts)
	require.Len(t, sb.Charges(), 1)

	// While the lease holds, recovery leaves it alone (the charge may be in flight).
	n, err := e.svc.Recover(e.ctx)
	require.NoError(t, err)
	assert.Zero(t, n)

	// After restart and the lease: recovery re-issues with the same key, from two processes at once.
	e.clock.Advance(2 * time.Minute)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			_, err := e.svc.Recover(e.ctx)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	got = e.payment(p.ID)
	assert.Equal(t, payment.Succeeded, got.State)
	assert.Equal(t, sb.Charges()[0].ID, got.GatewayChargeID)
	assert.Len(t, sb.Charges(), 1, "exactly one charge")
	assert.Equal(t, 2, sb.Calls(), "the re-issued charge was answered from the key")
	assert.Equal(t, "paid", e.billStatus(e.bill))
	e.checkLedger(1)

	n, err = e.svc.Recover(e.ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
}

func TestTimeoutThenRecover(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	p := e.create(sandbox.CardTimeout, "timeout")
	require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
	got, err := e.svc.Confirm(e.ctx, e.household, p.ID, e.lastCode())
	require.NoError(t, err, "an unknown outcome is not the household's error")
	assert.Equal(t, payment.Charging, got.State)
	assert.Contains(t, got.FailureReason, "retrying")

	e.clock.Advance(59 * time.Second)
	n, err := e.svc.Recover(e.ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "backoff after the first attempt is a minute")
	e.clock.Advance(time.Second)
	n, err = e.svc.Recover(e.ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	got = e.payment(p.ID)
	assert.Equal(t, payment.Succeeded, got.State)
	assert.Equal(t, 2, got.Attempts)
	assert.Len(t, e.gw.Charges(), 1)
	e.checkLedger(1)
}

func TestUnresolvedAfterMaxAttempts(t *testing.T) {
	gw := &unreachable{}
	e := newEnv(t, gw)
	p := e.create(sandbox.CardSuccess, "unreachable")
	require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
	_, err := e.svc.Confirm(e.ctx, e.household, p.ID, e.lastCode())
	require.NoError(t, err)
	for range 10 {
		// Recovery runs as soon as each retry is due.
		if next := e.payment(p.ID); next.State == payment.Charging {
			e.clock.Advance(next.LeaseUntil.Sub(e.clock.Now()))
		}
		_, err := e.svc.Recover(e.ctx)
		require.NoError(t, err)
	}
	got := e.payment(p.ID)
	assert.Equal(t, payment.Failed, got.State)
	assert.Contains(t, got.FailureReason, "unresolved")
	assert.EqualValues(t, payment.DefaultConfig().MaxAttempts, gw.calls.Load())
	assert.Less(t, got.SettledAt.Sub(got.ChargingAt), payment.DefaultConfig().KeyRetention, "retries end while the gateway keeps the key")
	assert.Equal(t, "issued", e.billStatus(e.bill))
	e.checkLedger(0)
}

func TestConcurrentConfirmationsChargeOnce(t *testing.T) {
	e := newEnv(t, &sandbox.Gateway{})
	p := e.create(sandbox.CardSuccess, "race")
	require.NoError(t, e.svc.SendCode(e.ctx, p.ID))
	code := e.lastCode()

	const n = 6
	var wg sync.WaitGroup
	var succeeded, conflicts atomic.Int32
	for range n {
		wg.Go(func() {
			got, err := e.svc.Confirm(e.ctx, e.household, p.ID, code)
			switch {
			case err == nil && got.State == payment.Succeeded:
				succeeded.Add(1)
			case apperr.Is(err, apperr.Conflict):
				conflicts.Add(1)
			default:
				t.Errorf("confirm: %v %v", got.State, err)
			}
		})
	}
	wg.Wait()
	assert.EqualValues(t, 1, succeeded.Load())
	assert.EqualValues(t, n-1, conflicts.Load())
	assert.Len(t, e.gw.Charges(), 1)
	assert.Equal(t, 1, e.gw.Calls())
	e.checkLedger(1)
}
