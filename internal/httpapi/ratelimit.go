package httpapi

import (
	"sync"
	"time"
)

// limiter is a token bucket per key, in memory. A process restart or a
// second node gives every key a fresh bucket, which is acceptable for
// slowing guessing down; the one-time code's own check limit is the hard
// bound and is kept in PostgreSQL.
type limiter struct {
	every time.Duration
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxKeys bounds the memory the limiter holds; past it, full buckets (keys
// idle long enough to be at their burst) are dropped.
const maxKeys = 100_000

func newLimiter(l Limit, now func() time.Time) *limiter {
	return &limiter{every: l.Every, burst: float64(l.Burst), now: now, buckets: make(map[string]*bucket)}
}

// allow takes a token for key and reports whether there was one.
func (l *limiter) allow(key string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxKeys {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.refill(now, l.every, l.burst)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refill(now time.Time, every time.Duration, burst float64) {
	if el := now.Sub(b.last); el > 0 && every > 0 {
		b.tokens = min(burst, b.tokens+float64(el)/float64(every))
		b.last = now
	}
}

func (l *limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		b.refill(now, l.every, l.burst)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
}
