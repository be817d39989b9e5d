package alert

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Delivery statuses.
const (
	StatusSent    = "sent"
	StatusSkipped = "skipped"
	StatusDead    = "dead"
)

// SendStats counts what one sending pass did.
type SendStats struct {
	Sent, Skipped, Retried, Dead int
}

// SendDue claims due deliveries under a lease and sends them until none is
// left: in-app ones are pushed to open portals (the inbox already has the
// alert), SMS ones go through the sender and are recorded in sms_messages.
// A sender that dies while holding deliveries leaves them to the next claim
// after the lease; an SMS already recorded as sent is not sent again.
func (s *Service) SendDue(ctx context.Context) (SendStats, error) {
	var st SendStats
	for {
		ds, err := s.store.ClaimDeliveries(ctx, s.cfg.Now(), s.cfg.Lease, s.cfg.Batch)
		if err != nil {
			return st, fmt.Errorf("claim deliveries: %w", err)
		}
		for _, d := range ds {
			if err := s.deliver(ctx, d, &st); err != nil {
				return st, err
			}
		}
		if len(ds) < s.cfg.Batch {
			return st, nil
		}
	}
}

func (s *Service) deliver(ctx context.Context, d Delivery, st *SendStats) error {
	a := d.Alert
	done := func(status, errText string) error {
		if err := s.store.DeliveryDone(ctx, a.ID, d.Channel, status, errText, s.cfg.Now()); err != nil {
			return fmt.Errorf("alert %d %s: %w", a.ID, d.Channel, err)
		}
		switch status {
		case StatusSent:
			st.Sent++
		case StatusSkipped:
			st.Skipped++
		case StatusDead:
			st.Dead++
		}
		return nil
	}
	if d.Channel == InApp {
		s.hub.Publish(a)
		return done(StatusSent, "")
	}
	// The household may have turned SMS off since the alert was decided.
	prefs, err := s.store.Preferences(ctx, a.HouseholdID)
	if err != nil {
		return s.retry(ctx, d, err, st)
	}
	if !prefs.Uses(a.Kind, SMS) {
		return done(StatusSkipped, "sms turned off for "+string(a.Kind))
	}
	smsID := d.SMSID
	var to string
	if smsID != 0 {
		status, err := s.store.SMSStatus(ctx, smsID)
		if err != nil {
			return s.retry(ctx, d, err, st)
		}
		if status == "sent" || status == "delivered" {
			// Sent before a crash kept the delivery from being marked.
			return done(StatusSent, "")
		}
	}
	to, err = s.store.VerifiedPhone(ctx, a.HouseholdID)
	if err != nil {
		return s.retry(ctx, d, err, st)
	}
	if to == "" {
		return done(StatusSkipped, "no verified phone")
	}
	body := a.Title + ": " + a.Body
	if smsID == 0 {
		if smsID, err = s.store.QueueSMS(ctx, a.ID, a.HouseholdID, to, body, s.cfg.SMSProvider, s.cfg.Now()); err != nil {
			return s.retry(ctx, d, err, st)
		}
	}
	pid, serr := s.sender.Send(ctx, to, body)
	if err := s.store.SMSResult(ctx, smsID, pid, serr, s.cfg.Now()); err != nil {
		// The lease runs out and the message status says what to do next.
		return fmt.Errorf("record sms %d: %w", smsID, err)
	}
	if serr != nil {
		return s.retry(ctx, d, serr, st)
	}
	return done(StatusSent, "")
}

// retry releases a failed delivery with backoff, or gives it up after
// MaxAttempts.
func (s *Service) retry(ctx context.Context, d Delivery, cause error, st *SendStats) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	now := s.cfg.Now()
	if d.Attempt >= s.cfg.MaxAttempts {
		s.log.Error("alert delivery given up", "alert", d.Alert.ID, "channel", d.Channel, "attempts", d.Attempt, "err", cause)
		if err := s.store.DeliveryDone(ctx, d.Alert.ID, d.Channel, StatusDead, cause.Error(), now); err != nil {
			return err
		}
		st.Dead++
		return nil
	}
	wait := s.cfg.Backoff
	for i := 1; i < d.Attempt && wait < time.Hour; i++ {
		wait *= 2
	}
	wait = min(wait, time.Hour)
	wait += time.Duration(rand.Int64N(int64(wait)/5 + 1))
	s.log.Warn("alert delivery failed; will retry", "alert", d.Alert.ID, "channel", d.Channel, "attempt", d.Attempt, "err", cause)
	if err := s.store.DeliveryRetry(ctx, d.Alert.ID, d.Channel, cause.Error(), now.Add(wait)); err != nil {
		return err
	}
	st.Retried++
	return nil
}
