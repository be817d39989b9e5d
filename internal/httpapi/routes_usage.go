package httpapi

import (
	"cmp"
	"context"
	"encoding/csv"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/portal"
)

// usageRoutes are usage series of meters and their exports. The account's
// own series (/accounts/{account}/usage) is with the other account routes.
func (a *api) usageRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/meters/{meter}/usage", Rule: Household, Scope: ScopeUsageRead, Summary: "Usage series of one meter", handler: a.meterUsage},
		{Method: "GET", Pattern: "/accounts/{account}/export.csv", Rule: Household, Summary: "An account's usage as CSV", handler: a.exportCSV},
		{Method: "GET", Pattern: "/accounts/{account}/greenbutton.xml", Rule: Household, Summary: "An account's electricity usage as Green Button (ESPI) XML", handler: a.greenButton},
	}
}

// maxSpan bounds a usage query per step, so one request reads at most a few
// thousand points per meter.
var maxSpan = map[portal.Step]time.Duration{
	portal.Step15m: 31 * 24 * time.Hour,
	portal.Step1h:  366 * 24 * time.Hour,
	portal.Step1d:  5 * 366 * 24 * time.Hour,
	portal.Step1mo: 5 * 366 * 24 * time.Hour,
}

// usageQuery is a validated usage request: [From, To) at Step, for one
// utility or all (""). At Step1mo From and To are local month starts in
// Loc.
type usageQuery struct {
	From, To time.Time
	Step     portal.Step
	Utility  string
	Loc      *time.Location
}

// parseUsage reads from, to, step and utility. allowed lists the steps
// the endpoint takes, the first being the default.
func (a *api) parseUsage(r *http.Request, loc *time.Location, allowed ...portal.Step) (usageQuery, error) {
	q := r.URL.Query()
	u := usageQuery{Step: portal.Step(q.Get("step")), Utility: q.Get("utility"), Loc: loc}
	if u.Step == "" {
		u.Step = allowed[0]
	}
	if !slices.Contains(allowed, u.Step) {
		want := ""
		for i, s := range allowed {
			if i > 0 {
				want += ", "
			}
			want += string(s)
		}
		return u, apperr.Field("step", "want one of %s", want)
	}
	if u.Utility != "" && !meter.Utility(u.Utility).Valid() {
		return u, apperr.Field("utility", "want electricity, water or gas")
	}
	var err error
	u.To = a.cfg.Now().UTC()
	if s := q.Get("to"); s != "" {
		if u.To, err = time.Parse(time.RFC3339, s); err != nil {
			return u, apperr.Field("to", "want an RFC 3339 time")
		}
	}
	u.From = u.To.Add(-24 * time.Hour)
	if s := q.Get("from"); s != "" {
		if u.From, err = time.Parse(time.RFC3339, s); err != nil {
			return u, apperr.Field("from", "want an RFC 3339 time")
		}
	}
	if !u.From.Before(u.To) {
		return u, apperr.Field("from", "must be before to")
	}
	span := maxSpan[u.Step]
	if u.To.Sub(u.From) > span {
		return u, apperr.Field("from", "at step %s a query spans at most %d days", u.Step, int(span.Hours()/24))
	}
	if u.Step == portal.Step1mo {
		u.From = monthStart(u.From, loc)
		if end := monthStart(u.To, loc); !end.Equal(u.To) {
			u.To = end.AddDate(0, 1, 0)
		}
	}
	return u, nil
}

// monthStart is the local midnight starting t's month in loc.
func monthStart(t time.Time, loc *time.Location) time.Time {
	y, m, _ := t.In(loc).Date()
	return time.Date(y, m, 1, 0, 0, 0, 0, loc)
}

// series reads the usage of meters. Months are summed from daily points:
// the daily rollups are UTC days, and each counts towards the local month
// holding its middle (noon UTC), so a month's total is exact for zones
// within 12 hours of UTC except for the hours between UTC and local
// midnight on the days at its edges.
func (a *api) series(ctx context.Context, ids []string, q usageQuery) ([]portal.UsagePoint, error) {
	if len(ids) == 0 {
		return []portal.UsagePoint{}, nil
	}
	var pts []portal.UsagePoint
	var err error
	if q.Step != portal.Step1mo {
		pts, err = a.cfg.Usage.Usage(ctx, ids, q.Utility, q.From, q.To, q.Step)
	} else {
		pts, err = a.cfg.Usage.Usage(ctx, ids, q.Utility, q.From.Add(-24*time.Hour), q.To, portal.Step1d)
		pts = monthly(pts, q)
	}
	if err != nil {
		return nil, &apperr.Error{Code: apperr.Unavailable, Message: "usage is unavailable right now", Err: err}
	}
	if pts == nil {
		pts = []portal.UsagePoint{}
	}
	return pts, nil
}

// thousandths is a quantity in thousandths of its unit, the meters'
// resolution: the time-series store keeps it as a float, and rounding to
// the nearest thousandth recovers it exactly.
func thousandths(q float64) meter.Value { return meter.Value(math.Round(q * meter.Scale)) }

// monthly sums daily points into local months, per meter and channel.
func monthly(daily []portal.UsagePoint, q usageQuery) []portal.UsagePoint {
	type key struct {
		meter, channel string
		month          int64
	}
	sums := map[key]meter.Value{}
	first := map[key]portal.UsagePoint{}
	for _, p := range daily {
		m := monthStart(p.Time.Add(12*time.Hour), q.Loc)
		if m.Before(q.From) || !m.Before(q.To) {
			continue
		}
		k := key{p.Meter, p.Channel, m.Unix()}
		if _, ok := first[k]; !ok {
			first[k] = portal.UsagePoint{Time: m, Meter: p.Meter, Utility: p.Utility, Channel: p.Channel}
		}
		sums[k] += thousandths(p.Quantity)
	}
	out := make([]portal.UsagePoint, 0, len(first))
	for k, p := range first {
		p.Quantity = sums[k].Float()
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y portal.UsagePoint) int {
		return cmp.Or(cmp.Compare(x.Meter, y.Meter), cmp.Compare(x.Channel, y.Channel), x.Time.Compare(y.Time))
	})
	return out
}

// location resolves a time zone, falling back to UTC for a name the
// server does not know (accounts' zones are checked when they are made).
func location(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC
	}
	return loc
}

// accountMeterIDs lists the ids of an account's meters of one utility (or
// all).
func (a *api) accountMeterIDs(ctx context.Context, accountID int64, utility string) ([]portal.Meter, []string, error) {
	meters, err := a.cfg.Portal.AccountMeters(ctx, accountID)
	if err != nil {
		return nil, nil, err
	}
	ids := make([]string, 0, len(meters))
	for _, m := range meters {
		if utility == "" || m.Utility == utility {
			ids = append(ids, m.ID)
		}
	}
	if meters == nil {
		meters = []portal.Meter{}
	}
	return meters, ids, nil
}

var usageSteps = []portal.Step{portal.Step1h, portal.Step15m, portal.Step1d, portal.Step1mo}

func (a *api) accountUsage(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	acc, err := a.account(r, p)
	if err != nil {
		return err
	}
	q, err := a.parseUsage(r, location(acc.TimeZone), usageSteps...)
	if err != nil {
		return err
	}
	meters, ids, err := a.accountMeterIDs(r.Context(), acc.ID, q.Utility)
	if err != nil {
		return err
	}
	points, err := a.series(r.Context(), ids, q)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"account_id": acc.ID, "step": q.Step, "from": q.From, "to": q.To, "time_zone": acc.TimeZone, "meters": meters, "points": points,
	})
	return nil
}

func (a *api) meterUsage(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	m, err := a.meterOf(r, p)
	if err != nil {
		return err
	}
	tz := "UTC"
	if m.AccountID != 0 {
		acc, err := a.cfg.Portal.Account(r.Context(), m.AccountID)
		if err != nil {
			return err
		}
		tz = acc.TimeZone
	}
	q, err := a.parseUsage(r, location(tz), usageSteps...)
	if err != nil {
		return err
	}
	if q.Utility != "" && q.Utility != m.Utility {
		return apperr.Field("utility", "meter %s measures %s", m.ID, m.Utility)
	}
	points, err := a.series(r.Context(), []string{m.ID}, q)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"meter_id": m.ID, "utility": m.Utility, "step": q.Step, "from": q.From, "to": q.To, "time_zone": tz, "points": points,
	})
	return nil
}

// exportChunk is how much of a CSV export is read from the time-series
// store at once: the response streams chunk by chunk, so memory stays
// bounded however long the span.
var exportChunk = map[portal.Step]time.Duration{
	portal.Step15m: 7 * 24 * time.Hour,
	portal.Step1h:  31 * 24 * time.Hour,
	portal.Step1d:  366 * 24 * time.Hour,
}

// exportCSV streams an account's usage as CSV: a header row, then one row
// per meter, channel and step in time order, with RFC 3339 UTC times and
// quantities as exact decimals in the channel's unit.
func (a *api) exportCSV(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	acc, err := a.account(r, p)
	if err != nil {
		return err
	}
	q, err := a.parseUsage(r, location(acc.TimeZone), usageSteps...)
	if err != nil {
		return err
	}
	_, ids, err := a.accountMeterIDs(r.Context(), acc.ID, q.Utility)
	if err != nil {
		return err
	}
	chunk, ok := exportChunk[q.Step]
	if !ok {
		chunk = q.To.Sub(q.From)
	}
	// The first chunk is read before anything is written, so that a store
	// that is down still gets a proper error response.
	from := q.From
	next := func() ([]portal.UsagePoint, error) {
		c := q
		c.From, c.To = from, from.Add(chunk)
		if c.To.After(q.To) {
			c.To = q.To
		}
		from = c.To
		pts, err := a.series(r.Context(), ids, c)
		slices.SortStableFunc(pts, func(x, y portal.UsagePoint) int {
			return cmp.Or(x.Time.Compare(y.Time), cmp.Compare(x.Meter, y.Meter), cmp.Compare(x.Channel, y.Channel))
		})
		return pts, err
	}
	pts, err := next()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", `attachment; filename="usage-`+safeFilename(acc.Number)+`.csv"`)
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	rc := http.NewResponseController(w)
	_ = cw.Write([]string{"time", "meter", "utility", "channel", "quantity", "unit"})
	for {
		for _, pt := range pts {
			unit := ""
			if info, ok := meter.Lookup(meter.Channel(pt.Channel)); ok {
				unit = info.Unit
			}
			_ = cw.Write([]string{pt.Time.UTC().Format(time.RFC3339), pt.Meter, pt.Utility, pt.Channel, thousandths(pt.Quantity).String(), unit})
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return nil // the client went away
		}
		_ = rc.Flush()
		if !from.Before(q.To) {
			return nil
		}
		if pts, err = next(); err != nil {
			// The status is sent: end the body short, and log why.
			a.log.WarnContext(r.Context(), "csv export cut short", "account", acc.ID, "err", err)
			return nil
		}
	}
}

// safeFilename keeps the characters of s that are safe in a quoted
// Content-Disposition filename.
func safeFilename(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "account"
	}
	return string(b)
}

// stepSeconds is the length of a fixed step.
func stepSeconds(s portal.Step) int64 {
	switch s {
	case portal.Step15m:
		return 900
	case portal.Step1h:
		return 3600
	case portal.Step1d:
		return 86400
	}
	return 0
}
