package alert

import (
	"context"
	"time"
)

// Store is what alerts keep in PostgreSQL (internal/postgres.Alerts).
type Store interface {
	// Owner returns who an account belongs to.
	Owner(ctx context.Context, accountID int64) (Owner, error)
	// HouseholdZone is the time zone of a household's first account ("" when
	// it has none).
	HouseholdZone(ctx context.Context, householdID int64) (string, error)
	// Preferences returns a household's stored choices (zero when none).
	Preferences(ctx context.Context, householdID int64) (Preferences, error)
	SavePreferences(ctx context.Context, householdID int64, p Preferences, now time.Time) error

	// Record inserts the alert and its deliveries in one transaction unless
	// an alert with its key exists; created reports whether it was new.
	Record(ctx context.Context, a Alert, ds []Delivery) (id int64, created bool, err error)
	// Inbox lists a household's (0: every household's) alerts that went to
	// the inbox, newest first, with ids below before (0: from the newest).
	Inbox(ctx context.Context, householdID, before int64, limit int) ([]Alert, error)
	Alert(ctx context.Context, id int64) (Alert, error)
	// MarkRead sets read_at once.
	MarkRead(ctx context.Context, id int64, now time.Time) error

	// ClaimDeliveries leases up to limit pending deliveries that are due
	// (not_before and next_at passed, no live lease) and counts the attempt.
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Delivery, error)
	// DeliveryDone ends a delivery: sent, skipped (no phone, channel turned
	// off since) or dead (attempts exhausted).
	DeliveryDone(ctx context.Context, alertID int64, c Channel, status string, errText string, now time.Time) error
	// DeliveryRetry releases a delivery to be tried again at next.
	DeliveryRetry(ctx context.Context, alertID int64, c Channel, errText string, next time.Time) error
	// VerifiedPhone is the household's most recently verified phone, or "".
	VerifiedPhone(ctx context.Context, householdID int64) (string, error)
	// QueueSMS records the message of an SMS delivery (sms_messages, status
	// queued) and ties it to the delivery, so a later attempt knows it was
	// handed to the sender.
	QueueSMS(ctx context.Context, alertID int64, householdID int64, to, body, provider string, now time.Time) (int64, error)
	// SMSStatus returns a recorded message's status.
	SMSStatus(ctx context.Context, smsID int64) (string, error)
	// SMSResult records what the sender did with a message.
	SMSResult(ctx context.Context, smsID int64, providerID string, sendErr error, now time.Time) error

	// Projections lists every budget with the running cycle's projection.
	Projections(ctx context.Context) ([]Projection, error)
	// UnpaidBills lists issued bills due on or after since (a date).
	UnpaidBills(ctx context.Context, since time.Time) ([]DueBill, error)
	// Meters lists active meters that belong to an account, with their
	// last reading, after the given id, in id order.
	Meters(ctx context.Context, after string, limit int) ([]Meter, error)
	// UsageSums sums a meter's channel over each window [from, to): the
	// sum and whether any interval was there.
	UsageSums(ctx context.Context, meterID, channel string, windows [][2]time.Time) (sums []int64, present []bool, err error)
	// Intervals returns a meter's channel quantities by interval start
	// (Unix seconds) in [from, to).
	Intervals(ctx context.Context, meterID, channel string, from, to time.Time) (map[int64]int64, error)

	// RaiseAlarm opens an alarm for the condition, or refreshes the open
	// one (message, last seen); raised reports a new alarm.
	RaiseAlarm(ctx context.Context, c Condition, at time.Time) (raised bool, err error)
	// ClearAlarms clears open alarms of kind whose subject is not in keep;
	// with scope non-nil only those whose subject is in scope.
	ClearAlarms(ctx context.Context, kind string, keep, scope []string, at time.Time) (int, error)
	// Alarms lists alarms in a state ("" for all), newest first, ids below
	// before (0: from the newest).
	Alarms(ctx context.Context, state AlarmState, before int64, limit int) ([]Alarm, error)
	// Alarm returns one alarm with its history.
	Alarm(ctx context.Context, id int64) (Alarm, error)
	// AckAlarm moves an active alarm to acknowledged.
	AckAlarm(ctx context.Context, id, userID int64, note string, at time.Time) (Alarm, error)
	// VEEDeltas measures meters' VEE exceptions since their mark, for marks
	// at least window old, and moves those marks to now; a meter without a
	// mark is marked and not measured.
	VEEDeltas(ctx context.Context, now time.Time, window time.Duration) ([]VEEDelta, error)
	// PaymentOutcomes counts payments settled in [since, until) by outcome.
	PaymentOutcomes(ctx context.Context, since, until time.Time) (succeeded, failed int, err error)
}
