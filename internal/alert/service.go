package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/outbox"
	"github.com/meterflow/meterflow/internal/payment"
)

// ConsumerName is the outbox consumer alerts read events as
// (migrations/005_outbox_deliveries.sql registers it for every kind).
const ConsumerName = "alerts"

// Config configures alerts and alarms. DefaultConfig holds the defaults;
// docs/alerts.md explains each threshold.
type Config struct {
	// EvaluateEvery is how often the periodic rules and alarms run.
	EvaluateEvery time.Duration
	// SendEvery is how often the sender looks for due deliveries when
	// nothing nudges it (a new alert nudges it at once).
	SendEvery time.Duration
	// Lease is how long a claimed delivery is held; a sender that dies
	// holding one lets the next claim take it after this.
	Lease time.Duration
	// MaxAttempts bounds the sends of one delivery; Backoff is the wait
	// after the first failure, doubled per attempt up to an hour.
	MaxAttempts int
	Backoff     time.Duration
	// Batch is how many deliveries, events or meters one step takes.
	Batch int

	// UpcomingBillDays: an unpaid bill alerts this many days before it is
	// due.
	UpcomingBillDays int
	// SilentAfter: a household's meter silent this long alerts it.
	SilentAfter time.Duration
	// AbnormalFactor, AbnormalWeeks, AbnormalMinWeeks, AbnormalMinExcess:
	// today's usage so far alerts when it is at least AbnormalFactor times
	// the median of the same stretch of the same weekday over the past
	// AbnormalWeeks weeks (at least AbnormalMinWeeks of them with data) and
	// above it by AbnormalMinExcess (thousandths of the unit, by utility).
	AbnormalFactor    decimal.Decimal
	AbnormalWeeks     int
	AbnormalMinWeeks  int
	AbnormalMinExcess map[string]int64
	// LeakFromHour and LeakToHour bound the local night window in which
	// every interval with flow suggests a leak.
	LeakFromHour, LeakToHour int

	// OfflineAfter: a meter silent this long raises meter_offline.
	OfflineAfter time.Duration
	// VEEWindow and VEEPerHour: more than VEEPerHour exceptions an hour
	// over a window raises vee_rate for the meter.
	VEEWindow  time.Duration
	VEEPerHour float64
	// MaxIngestLag: more journal records than this waiting for the stores
	// raises ingest_lag.
	MaxIngestLag uint64
	// PaymentWindow, PaymentMinCount, PaymentMaxFailure: when at least
	// PaymentMinCount payments settled in the window and more than
	// PaymentMaxFailure (a fraction) failed, payment_failure_rate is raised.
	PaymentWindow     time.Duration
	PaymentMinCount   int
	PaymentMaxFailure float64

	// SMSProvider names the SMS provider, as recorded on messages.
	SMSProvider string
	Logger      *slog.Logger
	Now         func() time.Time
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		EvaluateEvery: 5 * time.Minute, SendEvery: time.Second, Lease: time.Minute,
		MaxAttempts: 8, Backoff: 30 * time.Second, Batch: 200,
		UpcomingBillDays: 3, SilentAfter: 24 * time.Hour,
		AbnormalFactor: decimal.NewFromInt(2), AbnormalWeeks: 4, AbnormalMinWeeks: 3,
		AbnormalMinExcess: map[string]int64{"electricity": 5000, "water": 250, "gas": 2000},
		LeakFromHour:      1, LeakToHour: 5,
		OfflineAfter: 6 * time.Hour, VEEWindow: time.Hour, VEEPerHour: 12, MaxIngestLag: 100_000,
		PaymentWindow: time.Hour, PaymentMinCount: 10, PaymentMaxFailure: 0.25,
		SMSProvider: "dev",
	}
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("alert %s: must be positive", name))
		}
	}
	pos("evaluate interval", c.EvaluateEvery)
	pos("send interval", c.SendEvery)
	pos("lease", c.Lease)
	pos("backoff", c.Backoff)
	pos("silent after", c.SilentAfter)
	pos("offline after", c.OfflineAfter)
	pos("vee window", c.VEEWindow)
	pos("payment window", c.PaymentWindow)
	if c.MaxAttempts < 1 || c.Batch < 1 {
		errs = append(errs, errors.New("alert max attempts and batch: must be at least 1"))
	}
	if c.UpcomingBillDays < 0 || c.UpcomingBillDays > 31 {
		errs = append(errs, fmt.Errorf("alert upcoming bill days: %d is outside 0..31", c.UpcomingBillDays))
	}
	if !c.AbnormalFactor.GreaterThan(decimal.NewFromInt(1)) {
		errs = append(errs, errors.New("alert abnormal factor: must be above 1"))
	}
	if c.AbnormalWeeks < 1 || c.AbnormalMinWeeks < 1 || c.AbnormalMinWeeks > c.AbnormalWeeks {
		errs = append(errs, errors.New("alert abnormal weeks: want 1 <= min weeks <= weeks"))
	}
	if c.LeakFromHour < 0 || c.LeakToHour > 23 || c.LeakFromHour >= c.LeakToHour {
		errs = append(errs, errors.New("alert leak window: want 0 <= from < to <= 23"))
	}
	if c.VEEPerHour <= 0 {
		errs = append(errs, errors.New("alert vee per hour: must be positive"))
	}
	if c.PaymentMaxFailure <= 0 || c.PaymentMaxFailure >= 1 || c.PaymentMinCount < 1 {
		errs = append(errs, errors.New("alert payment failure: want a ratio in (0, 1) and a minimum count of at least 1"))
	}
	return errors.Join(errs...)
}

// Deps are what the service works with. Lag and Probes may be empty.
type Deps struct {
	Store  Store
	Outbox outbox.Store
	// Sender sends SMS (the payment package's edge, shared).
	Sender payment.Sender
	Lag    LagSource
	Probes []Probe
}

// Service decides, records and delivers alerts, and keeps alarms. Its
// methods are safe for concurrent use.
type Service struct {
	cfg    Config
	store  Store
	sender payment.Sender
	lag    LagSource
	probes []Probe
	events *outbox.Consumer
	hub    *Hub
	log    *slog.Logger
	nudge  chan struct{}

	mu sync.Mutex
	// down remembers stores seen down since, while their alarm may not have
	// been written (PostgreSQL down itself).
	down map[string]time.Time
}

// New returns a service; Run starts it.
func New(d Deps, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Outbox == nil || d.Sender == nil {
		return nil, errors.New("alert: store, outbox and sender must be set")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{cfg: cfg, store: d.Store, sender: d.Sender, lag: d.Lag, probes: d.Probes, hub: NewHub(),
		log: cfg.Logger, nudge: make(chan struct{}, 1), down: map[string]time.Time{}}
	var err error
	s.events, err = outbox.New(d.Outbox, outbox.Config{Name: ConsumerName, Batch: cfg.Batch, Lease: cfg.Lease,
		Logger: cfg.Logger, Now: cfg.Now}, s.HandleEvent)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Hub is the live push hub of the service.
func (s *Service) Hub() *Hub { return s.hub }

// Run consumes outbox events, evaluates the rules every EvaluateEvery and
// sends due deliveries until ctx ends; then it closes the hub, which ends
// every open stream.
func (s *Service) Run(ctx context.Context) {
	defer s.hub.Close()
	var wg sync.WaitGroup
	wg.Go(func() { s.events.Run(ctx) })
	wg.Go(func() {
		t := time.NewTicker(s.cfg.EvaluateEvery)
		defer t.Stop()
		for {
			if _, err := s.Evaluate(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("alert evaluation incomplete", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	wg.Go(func() {
		t := time.NewTicker(s.cfg.SendEvery)
		defer t.Stop()
		for {
			if _, err := s.SendDue(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("alert sending failed", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-s.nudge:
			}
		}
	})
	wg.Wait()
}

// ConsumeEvents handles every due outbox event once (Run does this every
// second).
func (s *Service) ConsumeEvents(ctx context.Context) (outbox.Stats, error) {
	return s.events.RunOnce(ctx)
}

// HandleEvent turns one outbox event into its alert. It is idempotent: the
// alert's key makes a redelivered event change nothing.
func (s *Service) HandleEvent(ctx context.Context, ev outbox.Event) error {
	o, err := s.store.Owner(ctx, ev.AccountID)
	if apperr.Is(err, apperr.NotFound) {
		return outbox.Permanent(err)
	}
	if err != nil {
		return err
	}
	d, ok, err := FromEvent(ev, o)
	if err != nil {
		return outbox.Permanent(err)
	}
	if !ok {
		return nil
	}
	_, err = s.decide(ctx, d)
	return err
}

// decide records the alert d with a delivery per channel the household
// chose, SMS held until its quiet hours end. It reports whether the alert
// is new; a known key changes nothing.
func (s *Service) decide(ctx context.Context, d Decision) (bool, error) {
	prefs, err := s.store.Preferences(ctx, d.HouseholdID)
	if err != nil {
		return false, err
	}
	prefs = prefs.Effective()
	channels := prefs.Channels[d.Kind]
	if len(channels) == 0 {
		return false, nil
	}
	now := s.cfg.Now()
	loc := time.UTC
	if tz, err := s.store.HouseholdZone(ctx, d.HouseholdID); err != nil {
		return false, err
	} else if l, err := time.LoadLocation(tz); err == nil && tz != "" {
		loc = l
	}
	data, err := marshalData(d.Data)
	if err != nil {
		return false, err
	}
	a := Alert{Key: d.Key, HouseholdID: d.HouseholdID, AccountID: d.AccountID, Kind: d.Kind,
		Title: d.Title, Body: d.Body, Data: data, CreatedAt: now}
	var ds []Delivery
	for _, c := range channels {
		nb := now
		if c == SMS {
			nb = QuietUntil(now, loc, prefs.QuietHours)
		}
		ds = append(ds, Delivery{Channel: c, NotBefore: nb})
	}
	_, created, err := s.store.Record(ctx, a, ds)
	if err != nil {
		return false, fmt.Errorf("record alert %s: %w", d.Key, err)
	}
	if created {
		select {
		case s.nudge <- struct{}{}:
		default:
		}
	}
	return created, nil
}

// --- what the HTTP API calls ---

// Inbox lists a household's alerts (0: every household's), newest first.
func (s *Service) Inbox(ctx context.Context, householdID, before int64, limit int) ([]Alert, error) {
	return s.store.Inbox(ctx, householdID, before, limit)
}

// MarkRead marks one of a household's alerts read (householdID 0: any
// household's). Another household's alert is "not found".
func (s *Service) MarkRead(ctx context.Context, householdID, id int64) (Alert, error) {
	a, err := s.store.Alert(ctx, id)
	if err != nil {
		return Alert{}, err
	}
	if householdID != 0 && a.HouseholdID != householdID {
		return Alert{}, apperr.New(apperr.NotFound, "alert %d not found", id)
	}
	if a.ReadAt == nil {
		if err := s.store.MarkRead(ctx, id, s.cfg.Now()); err != nil {
			return Alert{}, err
		}
		return s.store.Alert(ctx, id)
	}
	return a, nil
}

// Preferences returns a household's effective preferences; household 0
// returns the defaults.
func (s *Service) Preferences(ctx context.Context, householdID int64) (Preferences, error) {
	var p Preferences
	if householdID != 0 {
		var err error
		if p, err = s.store.Preferences(ctx, householdID); err != nil {
			return p, err
		}
		if p.TimeZone, err = s.store.HouseholdZone(ctx, householdID); err != nil {
			return p, err
		}
	}
	return p.Effective(), nil
}

// SetPreferences replaces a household's preferences and returns the
// effective ones.
func (s *Service) SetPreferences(ctx context.Context, householdID int64, p Preferences) (Preferences, error) {
	if err := p.Validate(); err != nil {
		return Preferences{}, err
	}
	p.TimeZone = ""
	if err := s.store.SavePreferences(ctx, householdID, p, s.cfg.Now()); err != nil {
		return Preferences{}, err
	}
	return s.Preferences(ctx, householdID)
}

// Subscribe opens a live stream of a household's alerts (0: every
// household's).
func (s *Service) Subscribe(householdID int64) *Subscription { return s.hub.Subscribe(householdID, 16) }

// Alarms lists alarms in a state ("" for all), newest first.
func (s *Service) Alarms(ctx context.Context, state AlarmState, before int64, limit int) ([]Alarm, error) {
	if state != "" && !state.Valid() {
		return nil, apperr.Field("state", "want active, acknowledged or cleared")
	}
	return s.store.Alarms(ctx, state, before, limit)
}

// Alarm returns one alarm with its history.
func (s *Service) Alarm(ctx context.Context, id int64) (Alarm, error) { return s.store.Alarm(ctx, id) }

// Acknowledge records that an operator has seen an active alarm. It stays
// open until its condition clears.
func (s *Service) Acknowledge(ctx context.Context, id, userID int64, note string) (Alarm, error) {
	if len(note) > 1000 {
		return Alarm{}, apperr.Field("note", "at most 1000 characters")
	}
	return s.store.AckAlarm(ctx, id, userID, note, s.cfg.Now())
}
