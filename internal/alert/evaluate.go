package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/meterflow/meterflow/internal/meter"
)

// Stats counts what one evaluation did.
type Stats struct {
	// Alerts counts alerts recorded (new keys only).
	Alerts int
	// Raised and Cleared count alarm transitions.
	Raised, Cleared int
}

// Evaluate runs the periodic household rules and the operator alarms once.
// Running it again at once records nothing new. A failing step is logged
// and reported; the others still run.
func (s *Service) Evaluate(ctx context.Context) (Stats, error) {
	var st Stats
	now := s.cfg.Now()
	var errs []error
	try := func(name string, err error) {
		if err != nil && ctx.Err() == nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	try("projections", s.evalProjections(ctx, &st))
	try("upcoming bills", s.evalBills(ctx, now, &st))
	meters, err := s.evalMeters(ctx, now, &st)
	try("meters", err)
	if err == nil {
		try("meter_offline", s.reconcile(ctx, AlarmMeterOffline, OfflineMeters(meters, now, s.cfg.OfflineAfter), nil, now, &st))
	}
	try("vee_rate", s.evalVEE(ctx, now, &st))
	if s.lag != nil {
		try("ingest_lag", s.reconcile(ctx, AlarmIngestLag, IngestLag(s.lag.Lag(), s.cfg.MaxIngestLag), nil, now, &st))
	}
	try("store_down", s.evalStores(ctx, now, &st))
	ok, failed, err := s.store.PaymentOutcomes(ctx, now.Add(-s.cfg.PaymentWindow), now)
	try("payment outcomes", err)
	if err == nil {
		try("payment_failure_rate", s.reconcile(ctx, AlarmPaymentFailure,
			PaymentFailures(ok, failed, s.cfg.PaymentMinCount, s.cfg.PaymentMaxFailure, s.cfg.PaymentWindow), nil, now, &st))
	}
	return st, errors.Join(errs...)
}

func (s *Service) record(ctx context.Context, d Decision, st *Stats) error {
	created, err := s.decide(ctx, d)
	if created {
		st.Alerts++
	}
	return err
}

func (s *Service) evalProjections(ctx context.Context, st *Stats) error {
	ps, err := s.store.Projections(ctx)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if d, ok := ProjectedOver(p); ok {
			if err := s.record(ctx, d, st); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Service) evalBills(ctx context.Context, now time.Time, st *Stats) error {
	// Any zone's today is within a day of UTC's.
	y, m, d := now.UTC().Date()
	bills, err := s.store.UnpaidBills(ctx, time.Date(y, m, d-1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		return err
	}
	for _, b := range bills {
		if d, ok := BillUpcoming(b, localDay(now, b.TimeZone), s.cfg.UpcomingBillDays); ok {
			if err := s.record(ctx, d, st); err != nil {
				return err
			}
		}
	}
	return nil
}

// localDay is now's local day in zone tz as midnight UTC.
func localDay(now time.Time, tz string) time.Time {
	y, m, d := now.In(zone(tz)).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func zone(tz string) *time.Location {
	if l, err := time.LoadLocation(tz); err == nil && tz != "" {
		return l
	}
	return time.UTC
}

// evalMeters runs the per-meter household rules (silent, abnormal usage,
// leak) and returns every meter for the offline alarm.
func (s *Service) evalMeters(ctx context.Context, now time.Time, st *Stats) ([]Meter, error) {
	var all []Meter
	after := ""
	for {
		ms, err := s.store.Meters(ctx, after, s.cfg.Batch)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			all = append(all, m)
			if m.AccountID == 0 {
				continue
			}
			if err := s.evalMeter(ctx, m, now, st); err != nil {
				return nil, fmt.Errorf("meter %s: %w", m.ID, err)
			}
		}
		if len(ms) < s.cfg.Batch {
			return all, nil
		}
		after = ms[len(ms)-1].ID
	}
}

func (s *Service) evalMeter(ctx context.Context, m Meter, now time.Time, st *Stats) error {
	if d, ok := Silent(m, now, s.cfg.SilentAfter); ok {
		if err := s.record(ctx, d, st); err != nil {
			return err
		}
	}
	ch := string(meter.PrimaryRegister(meter.Utility(m.Utility)))
	loc := zone(m.TimeZone)
	day, today, past := DayWindows(now, loc, s.cfg.AbnormalWeeks)
	sums, present, err := s.store.UsageSums(ctx, m.ID, ch, append([][2]time.Time{today}, past...))
	if err != nil {
		return err
	}
	u := Usage{Meter: m, Day: day, Today: sums[0], Baseline: sums[1:], Present: present[1:]}
	if d, ok := Abnormal(u, AbnormalConfig{Factor: s.cfg.AbnormalFactor, MinExcess: s.cfg.AbnormalMinExcess, MinWeeks: s.cfg.AbnormalMinWeeks}); ok {
		if err := s.record(ctx, d, st); err != nil {
			return err
		}
	}
	if (m.Utility == "water" || m.Utility == "gas") && m.IntervalSeconds > 0 && m.IntervalSeconds <= 3600 {
		nightDay, starts := NightWindow(now, loc, s.cfg.LeakFromHour, s.cfg.LeakToHour, time.Duration(m.IntervalSeconds)*time.Second)
		if len(starts) > 0 {
			last := starts[len(starts)-1].Add(time.Duration(m.IntervalSeconds) * time.Second)
			qs, err := s.store.Intervals(ctx, m.ID, ch, starts[0], last)
			if err != nil {
				return err
			}
			if d, ok := Leak(Night{Meter: m, Day: nightDay, Starts: starts, Quantities: qs}); ok {
				if err := s.record(ctx, d, st); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// reconcile raises an alarm for every condition and clears the open alarms
// of kind whose condition no longer holds (among scope, when given).
func (s *Service) reconcile(ctx context.Context, kind string, cs []Condition, scope []string, now time.Time, st *Stats) error {
	keep := make([]string, 0, len(cs))
	for _, c := range cs {
		raised, err := s.store.RaiseAlarm(ctx, c, now)
		if err != nil {
			return err
		}
		if raised {
			st.Raised++
			s.log.Warn("alarm raised", "kind", c.Kind, "subject", c.Subject, "message", c.Message)
		}
		keep = append(keep, c.Subject)
	}
	n, err := s.store.ClearAlarms(ctx, kind, keep, scope, now)
	st.Cleared += n
	return err
}

func (s *Service) evalVEE(ctx context.Context, now time.Time, st *Stats) error {
	ds, err := s.store.VEEDeltas(ctx, now, s.cfg.VEEWindow)
	if err != nil {
		return err
	}
	scope := make([]string, len(ds))
	for i, d := range ds {
		scope[i] = d.MeterID
	}
	if len(scope) == 0 {
		return nil
	}
	return s.reconcile(ctx, AlarmVEERate, VEERate(ds, s.cfg.VEEPerHour), scope, now, st)
}

// evalStores probes each store. A store seen down is remembered from when,
// so that an outage of PostgreSQL itself (when no alarm can be written) is
// recorded with its times once it is back.
func (s *Service) evalStores(ctx context.Context, now time.Time, st *Stats) error {
	if len(s.probes) == 0 {
		return nil
	}
	var cs []Condition
	var recovered []Condition
	for _, p := range s.probes {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.Check(pctx)
		cancel()
		s.mu.Lock()
		since, wasDown := s.down[p.Name]
		if err != nil && !wasDown {
			since = now
			s.down[p.Name] = now
		}
		s.mu.Unlock()
		c := Condition{Kind: AlarmStoreDown, Subject: p.Name, Since: since}
		if err != nil {
			c.Message = fmt.Sprintf("%s is down since %s: %v", p.Name, since.UTC().Format(time.RFC3339), err)
			cs = append(cs, c)
		} else if wasDown {
			c.Message = fmt.Sprintf("%s was down from %s", p.Name, since.UTC().Format(time.RFC3339))
			recovered = append(recovered, c)
		}
	}
	// A recovered store's alarm is raised (if it never could be) before the
	// clear below ends it, so the outage is in the history.
	for _, c := range recovered {
		raised, err := s.store.RaiseAlarm(ctx, c, now)
		if err != nil {
			return err
		}
		if raised {
			st.Raised++
		}
	}
	if err := s.reconcile(ctx, AlarmStoreDown, cs, nil, now, st); err != nil {
		return err
	}
	s.mu.Lock()
	for _, c := range recovered {
		delete(s.down, c.Subject)
	}
	s.mu.Unlock()
	return nil
}

func marshalData(m map[string]any) (json.RawMessage, error) {
	if len(m) == 0 {
		return json.RawMessage(`{}`), nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("alert data: %w", err)
	}
	return b, nil
}
