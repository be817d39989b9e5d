package alert

import (
	"fmt"
	"slices"
	"time"

	"github.com/meterflow/meterflow/internal/apperr"
)

// Preferences are a household's choices of channels per alert kind and its
// quiet hours. Quiet hours hold SMS until they end; the inbox and live push
// are never held.
type Preferences struct {
	// Channels maps every kind to the channels it uses; a kind with no
	// channels is not recorded at all.
	Channels map[Kind][]Channel `json:"channels"`
	// QuietHours, when set, is a daily local window such as 22:00 to 07:00.
	QuietHours *QuietHours `json:"quiet_hours,omitempty"`
	// TimeZone is the household's local time (its first account's zone);
	// it is read only.
	TimeZone string `json:"time_zone"`
}

// QuietHours is a daily window of local wall-clock time, "HH:MM" to
// "HH:MM"; a window whose end is before its start runs over midnight.
type QuietHours struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// DefaultChannels is what a household that has chosen nothing gets: every
// alert in the inbox, and by SMS those that need action or may cost money.
func DefaultChannels() map[Kind][]Channel {
	both := []Channel{InApp, SMS}
	return map[Kind][]Channel{
		KindBudget:           both,
		KindProjectedOver:    {InApp},
		KindBillUpcoming:     both,
		KindBillIssued:       both,
		KindBillOverdue:      both,
		KindPaymentConfirm:   both,
		KindPaymentSucceeded: {InApp},
		KindPaymentFailed:    both,
		KindAbnormalUsage:    {InApp},
		KindLeak:             both,
		KindMeterSilent:      {InApp},
	}
}

// Effective returns p with every kind's channels filled in from the
// defaults where p says nothing.
func (p Preferences) Effective() Preferences {
	out := Preferences{Channels: DefaultChannels(), QuietHours: p.QuietHours, TimeZone: p.TimeZone}
	for k, cs := range p.Channels {
		out.Channels[k] = slices.Clone(cs)
	}
	return out
}

// Uses reports whether kind k goes out on channel c.
func (p Preferences) Uses(k Kind, c Channel) bool {
	return slices.Contains(p.Effective().Channels[k], c)
}

// Validate reports every problem with p as field errors.
func (p Preferences) Validate() error {
	for k, cs := range p.Channels {
		if !k.Valid() {
			return apperr.Field("channels", "unknown alert kind %q", k)
		}
		for _, c := range cs {
			if c != InApp && c != SMS {
				return apperr.Field("channels", "unknown channel %q for %s; want inapp or sms", c, k)
			}
		}
	}
	if q := p.QuietHours; q != nil {
		s, err1 := parseClock(q.Start)
		e, err2 := parseClock(q.End)
		if err1 != nil || err2 != nil {
			return apperr.Field("quiet_hours", "want start and end as HH:MM")
		}
		if s == e {
			return apperr.Field("quiet_hours", "start and end are the same; omit quiet_hours for none")
		}
	}
	return nil
}

// parseClock parses "HH:MM" into minutes after midnight.
func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("clock %q: %w", s, err)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// QuietUntil returns when an SMS decided at now may be sent: now outside
// quiet hours, else the end of the quiet window in loc. Wall-clock times
// that a daylight-saving change skips are taken as time.Date normalises
// them (an hour later).
func QuietUntil(now time.Time, loc *time.Location, q *QuietHours) time.Time {
	if q == nil {
		return now
	}
	start, err1 := parseClock(q.Start)
	end, err2 := parseClock(q.End)
	if err1 != nil || err2 != nil || start == end {
		return now
	}
	l := now.In(loc)
	tod := l.Hour()*60 + l.Minute()
	at := func(dayOffset, min int) time.Time {
		return time.Date(l.Year(), l.Month(), l.Day()+dayOffset, min/60, min%60, 0, 0, loc)
	}
	switch {
	case start < end && tod >= start && tod < end:
		return at(0, end)
	case start > end && tod >= start:
		return at(1, end)
	case start > end && tod < end:
		return at(0, end)
	}
	return now
}
