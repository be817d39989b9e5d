// Package outbox delivers the events that billing and payments record in
// PostgreSQL's outbox table to the parts of the system that act on them:
// auto-pay turns a bill or a crossed threshold into a payment, alerts tell
// the household. It owns the delivery loop, not the events: their producers
// write them in the same transaction as the change they report.
//
// Delivery is at least once per consumer and exactly once in effect: each
// consumer has its own delivery row per event (made by a trigger in the
// transaction that wrote the event, see migrations/005_outbox_deliveries.sql),
// claims due rows under a lease, runs its handler and marks the row done. A
// crash between handling and marking redelivers the event after the lease;
// handlers are idempotent (they key what they create by the event's key), so
// the second delivery changes nothing. A handler that fails is retried with
// backoff; after MaxAttempts the delivery is marked dead and logged, for an
// operator to look at.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Event is an outbox event as a consumer sees it.
type Event struct {
	ID int64
	// Key names the condition and its period; it is unique in the outbox.
	Key        string
	Kind       string
	AccountID  int64
	Payload    json.RawMessage
	OccurredAt time.Time
	// Attempt counts deliveries of this event to this consumer, from 1.
	Attempt int
}

// Decode unmarshals the event's payload into v.
func (e Event) Decode(v any) error {
	if err := json.Unmarshal(e.Payload, v); err != nil {
		return fmt.Errorf("event %s: payload: %w", e.Key, err)
	}
	return nil
}

// Store holds deliveries. Claim takes up to limit due deliveries of the
// consumer that no other process holds, leases them until now+lease and
// counts the attempt.
type Store interface {
	Claim(ctx context.Context, consumer string, now time.Time, lease time.Duration, limit int) ([]Event, error)
	// Done marks deliveries handled.
	Done(ctx context.Context, consumer string, outboxIDs []int64, now time.Time) error
	// Retry releases a delivery to be tried again at next; dead gives up.
	Retry(ctx context.Context, consumer string, outboxID int64, errText string, next time.Time, dead bool) error
}

// Handler acts on one event. It must be idempotent: the same event may be
// delivered again after a crash. An error whose Permanent method reports
// true is not retried.
type Handler func(ctx context.Context, e Event) error

// Permanent wraps err so the delivery is given up at once (a malformed
// event, say), instead of retried.
func Permanent(err error) error { return permanentError{err} }

type permanentError struct{ error }

func (p permanentError) Unwrap() error { return p.error }

// Config configures a consumer. Zero fields take the defaults in brackets.
type Config struct {
	// Name is the consumer's name in outbox_consumers.
	Name string
	// Poll is how often the consumer looks for due deliveries when idle [1s].
	Poll time.Duration
	// Batch is how many deliveries one claim takes [100].
	Batch int
	// Lease is how long a claimed delivery is held [1m]; a handler must
	// finish well within it.
	Lease time.Duration
	// MaxAttempts bounds deliveries of one event [10].
	MaxAttempts int
	// Backoff is the wait after the first failure, doubled per attempt up to
	// an hour [5s].
	Backoff time.Duration
	Logger  *slog.Logger
	Now     func() time.Time
}

func (c *Config) defaults() {
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.Batch <= 0 {
		c.Batch = 100
	}
	if c.Lease <= 0 {
		c.Lease = time.Minute
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	if c.Backoff <= 0 {
		c.Backoff = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Consumer delivers a consumer's events to its handler.
type Consumer struct {
	cfg     Config
	store   Store
	handler Handler
}

// New returns a consumer.
func New(store Store, cfg Config, h Handler) (*Consumer, error) {
	if cfg.Name == "" {
		return nil, errors.New("outbox: consumer name must be set")
	}
	if h == nil {
		return nil, errors.New("outbox: handler must be set")
	}
	cfg.defaults()
	cfg.Logger = cfg.Logger.With("consumer", cfg.Name)
	return &Consumer{cfg: cfg, store: store, handler: h}, nil
}

// Stats counts what one pass did.
type Stats struct {
	Handled, Retried, Dead int
}

// RunOnce claims and handles due deliveries until none is left, and
// returns what it did. The deliveries of one claim are marked done together
// after the batch: a crash in between delivers them again, which the
// handlers' idempotency makes harmless.
func (c *Consumer) RunOnce(ctx context.Context) (Stats, error) {
	var st Stats
	for {
		evs, err := c.store.Claim(ctx, c.cfg.Name, c.cfg.Now(), c.cfg.Lease, c.cfg.Batch)
		if err != nil {
			return st, fmt.Errorf("outbox %s: claim: %w", c.cfg.Name, err)
		}
		var done []int64
		for _, e := range evs {
			ok, err := c.deliver(ctx, e, &st)
			if ok {
				done = append(done, e.ID)
			}
			if err != nil {
				return st, errors.Join(err, c.markDone(ctx, done, &st))
			}
		}
		if err := c.markDone(ctx, done, &st); err != nil {
			return st, err
		}
		if len(evs) < c.cfg.Batch {
			return st, nil
		}
	}
}

func (c *Consumer) markDone(ctx context.Context, ids []int64, st *Stats) error {
	if len(ids) == 0 {
		return nil
	}
	if err := c.store.Done(ctx, c.cfg.Name, ids, c.cfg.Now()); err != nil {
		// The leases run out and the events come again; the handlers are
		// idempotent.
		return fmt.Errorf("outbox %s: mark %d done: %w", c.cfg.Name, len(ids), err)
	}
	st.Handled += len(ids)
	return nil
}

// deliver runs the handler; it reports whether the event was handled, and
// records a failure for retry or as dead.
func (c *Consumer) deliver(ctx context.Context, e Event, st *Stats) (bool, error) {
	hctx, cancel := context.WithTimeout(ctx, c.cfg.Lease*3/4)
	herr := c.handler(hctx, e)
	cancel()
	if herr == nil {
		return true, nil
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	now := c.cfg.Now()
	var perm permanentError
	dead := errors.As(herr, &perm) || e.Attempt >= c.cfg.MaxAttempts
	next := now.Add(c.backoff(e.Attempt))
	if err := c.store.Retry(ctx, c.cfg.Name, e.ID, herr.Error(), next, dead); err != nil {
		return false, fmt.Errorf("outbox %s: release %s: %w", c.cfg.Name, e.Key, err)
	}
	if dead {
		st.Dead++
		c.cfg.Logger.Error("outbox event given up", "event", e.Key, "kind", e.Kind, "attempts", e.Attempt, "err", herr)
	} else {
		st.Retried++
		c.cfg.Logger.Warn("outbox event failed; will retry", "event", e.Key, "kind", e.Kind, "attempt", e.Attempt, "next", next, "err", herr)
	}
	return false, nil
}

// backoff is the wait after the attempt-th failure: Backoff doubled per
// attempt, at most an hour, with up to 20% jitter so a burst of failures
// does not come back at once.
func (c *Consumer) backoff(attempt int) time.Duration {
	d := c.cfg.Backoff
	for i := 1; i < attempt && d < time.Hour; i++ {
		d *= 2
	}
	d = min(d, time.Hour)
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

// Run delivers events until ctx ends, polling every Poll when idle. Errors
// are logged and retried at the next poll.
func (c *Consumer) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Poll)
	defer t.Stop()
	for {
		if _, err := c.RunOnce(ctx); err != nil && ctx.Err() == nil {
			c.cfg.Logger.Warn("outbox pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
