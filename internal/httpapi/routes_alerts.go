package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/meterflow/meterflow/internal/alert"
	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
)

// Alerts serves households' alerts and operators' alarms (alert.Service).
type Alerts interface {
	Inbox(ctx context.Context, householdID, before int64, limit int) ([]alert.Alert, error)
	MarkRead(ctx context.Context, householdID, id int64) (alert.Alert, error)
	Preferences(ctx context.Context, householdID int64) (alert.Preferences, error)
	SetPreferences(ctx context.Context, householdID int64, p alert.Preferences) (alert.Preferences, error)
	Subscribe(householdID int64) *alert.Subscription
	Alarms(ctx context.Context, state alert.AlarmState, before int64, limit int) ([]alert.Alarm, error)
	Acknowledge(ctx context.Context, id, userID int64, note string) (alert.Alarm, error)
}

// alertRoutes are a household's alerts and preferences, and operators'
// alarms.
func (a *api) alertRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/alerts", Rule: Household, Summary: "Alert inbox, newest first", handler: a.listAlerts},
		{Method: "POST", Pattern: "/alerts/{alert}/read", Rule: HouseholdOnly, Summary: "Mark an alert read", handler: a.readAlert},
		{Method: "GET", Pattern: "/alerts/stream", Rule: Household, Stream: true, Summary: "Live alerts as server-sent events", handler: a.alertStream},
		{Method: "GET", Pattern: "/alert-preferences", Rule: Household, Summary: "Alert channels per kind and quiet hours", handler: a.getAlertPreferences},
		{Method: "PUT", Pattern: "/alert-preferences", Rule: Household, Summary: "Replace alert preferences", handler: a.putAlertPreferences},
		{Method: "GET", Pattern: "/alarms", Rule: Operator, Summary: "Operator alarms, newest first, by state", handler: a.listAlarms},
		{Method: "POST", Pattern: "/alarms/{alarm}/ack", Rule: Operator, Summary: "Acknowledge an active alarm", handler: a.ackAlarm},
	}
}

func (a *api) alerts() (Alerts, error) {
	if a.cfg.Alerts == nil {
		return nil, apperr.New(apperr.Unavailable, "alerts are not enabled on this server")
	}
	return a.cfg.Alerts, nil
}

// alertHousehold is whose alerts a request is about: a household user's
// own; for an operator, ?household_id= or (0) every household.
func alertHousehold(r *http.Request, p *auth.Principal) (int64, error) {
	if p.IsHousehold() {
		return p.HouseholdID, nil
	}
	s := r.URL.Query().Get("household_id")
	if s == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, apperr.Field("household_id", "want a household id")
	}
	return id, nil
}

// namedAlertHousehold is alertHousehold for a change: an operator must name
// the household.
func namedAlertHousehold(r *http.Request, p *auth.Principal) (int64, error) {
	hh, err := alertHousehold(r, p)
	if err == nil && hh == 0 {
		err = apperr.Field("household_id", "an operator names the household")
	}
	return hh, err
}

func (a *api) listAlerts(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	svc, hh, _, err := opening(a.alerts, r, p, input{who: alertHousehold})
	if err != nil {
		return err
	}
	limit, before, err := intPage(r)
	if err != nil {
		return err
	}
	as, err := svc.Inbox(r.Context(), hh, before, limit+1)
	if err != nil {
		return err
	}
	writePage(w, as, limit, func(x alert.Alert) string { return strconv.FormatInt(x.ID, 10) })
	return nil
}

func (a *api) readAlert(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	svc, hh, id, err := opening(a.alerts, r, p, input{who: householdOnly, param: "alert"})
	if err != nil {
		return err
	}
	al, err := svc.MarkRead(r.Context(), hh, id)
	return answer(w, http.StatusOK, al, err)
}

// streamKeepAlive is how often an idle stream sends a comment, so proxies
// and browsers keep it open.
const streamKeepAlive = 25 * time.Second

// alertStream sends the household's alerts as server-sent events, each
// with its alert id as the event id. A client reconnecting with
// Last-Event-ID first gets the inbox alerts it missed (up to a page).
func (a *api) alertStream(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	svc, hh, _, err := opening(a.alerts, r, p, input{who: alertHousehold})
	if err != nil {
		return err
	}
	last := int64(-1)
	if s := r.Header.Get("Last-Event-ID"); s != "" {
		if last, err = strconv.ParseInt(s, 10, 64); err != nil || last < 0 {
			return apperr.Field("Last-Event-ID", "want an alert id")
		}
	}
	sub := svc.Subscribe(hh)
	defer sub.Cancel()
	var missed []alert.Alert
	if last >= 0 {
		as, err := svc.Inbox(r.Context(), hh, 0, defaultLimit)
		if err != nil {
			return err
		}
		for _, al := range as {
			if al.ID > last {
				missed = append(missed, al)
			}
		}
		slices.Reverse(missed)
	}
	rc := http.NewResponseController(w)
	// The server's read and write timeouts would end the stream; it ends
	// when the client goes or the server shuts down.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(al alert.Alert) error {
		b, err := json.Marshal(al)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "id: %d\nevent: alert\ndata: %s\n\n", al.ID, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if _, err := fmt.Fprint(w, "retry: 5000\n: connected\n\n"); err != nil {
		return nil
	}
	for _, al := range missed {
		if send(al) != nil {
			return nil
		}
	}
	if rc.Flush() != nil {
		return nil
	}
	t := time.NewTicker(streamKeepAlive)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case al, ok := <-sub.C:
			if !ok || send(al) != nil {
				return nil
			}
		case <-t.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return nil
			}
		}
	}
}

func (a *api) getAlertPreferences(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	svc, hh, _, err := opening(a.alerts, r, p, input{who: alertHousehold})
	if err != nil {
		return err
	}
	prefs, err := svc.Preferences(r.Context(), hh)
	return answer(w, http.StatusOK, prefs, err)
}

func (a *api) putAlertPreferences(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req struct {
		Channels   map[alert.Kind][]alert.Channel `json:"channels"`
		QuietHours *alert.QuietHours              `json:"quiet_hours"`
	}
	svc, hh, _, err := opening(a.alerts, r, p, input{who: namedAlertHousehold, body: &req})
	if err != nil {
		return err
	}
	prefs, err := svc.SetPreferences(r.Context(), hh, alert.Preferences{Channels: req.Channels, QuietHours: req.QuietHours})
	return answer(w, http.StatusOK, prefs, err)
}

func (a *api) listAlarms(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	svc, err := a.alerts()
	if err != nil {
		return err
	}
	limit, before, err := intPage(r)
	if err != nil {
		return err
	}
	as, err := svc.Alarms(r.Context(), alert.AlarmState(r.URL.Query().Get("state")), before, limit+1)
	if err != nil {
		return err
	}
	writePage(w, as, limit, func(x alert.Alarm) string { return strconv.FormatInt(x.ID, 10) })
	return nil
}

func (a *api) ackAlarm(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req struct {
		Note string `json:"note"`
	}
	svc, _, id, err := opening(a.alerts, r, p, input{param: "alarm", body: &req, bodyOptional: true})
	if err != nil {
		return err
	}
	al, err := svc.Acknowledge(r.Context(), id, p.UserID, req.Note)
	return answer(w, http.StatusOK, al, err)
}
