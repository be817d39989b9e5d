package fleet

import (
	"context"
	"sync"
	"time"
)

// limiter is a token bucket shared by the fleet: it lets through rate
// events per second on average, with bursts of up to burst. A nil limiter
// lets everything through. It is safe for concurrent use; waiters are
// served in the order they reserve.
type limiter struct {
	mu       sync.Mutex
	interval time.Duration // time per token
	burst    time.Duration // how far the bucket may run ahead
	next     time.Time     // when the next token is free
}

// newLimiter returns a limiter of rate per second, or nil when rate is 0
// (no limit).
func newLimiter(rate float64, burst int) *limiter {
	if rate <= 0 {
		return nil
	}
	iv := time.Duration(float64(time.Second) / rate)
	return &limiter{interval: iv, burst: time.Duration(max(1, burst)) * iv}
}

// wait blocks until a token is free or ctx ends.
func (l *limiter) wait(ctx context.Context) error {
	if l == nil {
		return ctx.Err()
	}
	l.mu.Lock()
	now := time.Now()
	if earliest := now.Add(-l.burst); l.next.Before(earliest) {
		l.next = earliest
	}
	at := l.next
	l.next = l.next.Add(l.interval)
	l.mu.Unlock()
	d := at.Sub(now)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
