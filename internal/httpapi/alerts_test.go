package httpapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/alert"
	"github.com/meterflow/meterflow/internal/apperr"
)

func TestAlertsAPI(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("inbox shows the household's own alerts", func(t *testing.T) {
		r := e.do("GET", "/api/v1/alerts", nil, &e.a, false, nil)
		require.Equal(t, http.StatusOK, r.code, string(r.body))
		var pg struct{ Items []alert.Alert }
		require.NoError(t, json.Unmarshal(r.body, &pg))
		require.Len(t, pg.Items, 1)
		assert.Equal(t, e.a.alertID, pg.Items[0].ID)

		r = e.do("GET", fmt.Sprintf("/api/v1/alerts?household_id=%d", e.b.id), nil, &e.a, false, nil)
		require.NoError(t, json.Unmarshal(r.body, &pg))
		require.Len(t, pg.Items, 1, "a household cannot ask for another's")
		assert.Equal(t, e.a.alertID, pg.Items[0].ID)

		r = e.do("GET", fmt.Sprintf("/api/v1/alerts?household_id=%d", e.b.id), nil, &e.op, false, nil)
		require.NoError(t, json.Unmarshal(r.body, &pg))
		require.Len(t, pg.Items, 1)
		assert.Equal(t, e.b.alertID, pg.Items[0].ID)
	})
	t.Run("marking read", func(t *testing.T) {
		r := e.do("POST", fmt.Sprintf("/api/v1/alerts/%d/read", e.b.alertID), nil, &e.a, false, nil)
		assert.Equal(t, http.StatusNotFound, r.code, "A cannot mark B's alert")
		r = e.do("POST", fmt.Sprintf("/api/v1/alerts/%d/read", e.a.alertID), nil, &e.a, false, nil)
		require.Equal(t, http.StatusOK, r.code, string(r.body))
		var al alert.Alert
		require.NoError(t, json.Unmarshal(r.body, &al))
		assert.NotNil(t, al.ReadAt)
		r = e.do("POST", fmt.Sprintf("/api/v1/alerts/%d/read", e.b.alertID), nil, &e.b, false, nil)
		require.Equal(t, http.StatusOK, r.code)
		require.NoError(t, json.Unmarshal(r.body, &al))
		assert.NotNil(t, al.ReadAt)
	})
	t.Run("preferences", func(t *testing.T) {
		body := map[string]any{"channels": map[string][]string{"leak": {"inapp"}}, "quiet_hours": map[string]string{"start": "22:00", "end": "07:00"}}
		r := e.do("PUT", "/api/v1/alert-preferences", body, &e.a, false, nil)
		require.Equal(t, http.StatusOK, r.code, string(r.body))
		r = e.do("GET", "/api/v1/alert-preferences", nil, &e.a, false, nil)
		var p alert.Preferences
		require.NoError(t, json.Unmarshal(r.body, &p))
		assert.Equal(t, []alert.Channel{alert.InApp}, p.Channels[alert.KindLeak])
		assert.Equal(t, &alert.QuietHours{Start: "22:00", End: "07:00"}, p.QuietHours)
		assert.Equal(t, "Europe/London", p.TimeZone)

		r = e.do("GET", "/api/v1/alert-preferences", nil, &e.b, false, nil)
		p = alert.Preferences{}
		require.NoError(t, json.Unmarshal(r.body, &p))
		assert.Nil(t, p.QuietHours, "B's are untouched")
		assert.Equal(t, []alert.Channel{alert.InApp, alert.SMS}, p.Channels[alert.KindLeak])

		r = e.do("PUT", "/api/v1/alert-preferences", map[string]any{"channels": map[string][]string{"leak": {"pigeon"}}}, &e.a, false, nil)
		assert.Equal(t, http.StatusBadRequest, r.code)
		assert.Equal(t, apperr.Invalid, r.errCode())
		r = e.do("PUT", "/api/v1/alert-preferences", body, &e.op, false, nil)
		assert.Equal(t, http.StatusBadRequest, r.code, "an operator names the household")
	})
	t.Run("alarms", func(t *testing.T) {
		r := e.do("GET", "/api/v1/alarms", nil, &e.a, false, nil)
		assert.Equal(t, http.StatusForbidden, r.code)
		r = e.do("GET", "/api/v1/alarms?state=active", nil, &e.op, false, nil)
		require.Equal(t, http.StatusOK, r.code, string(r.body))
		var pg struct{ Items []alert.Alarm }
		require.NoError(t, json.Unmarshal(r.body, &pg))
		require.Len(t, pg.Items, 1)
		r = e.do("POST", fmt.Sprintf("/api/v1/alarms/%d/ack", e.alarm), map[string]string{"note": "on it"}, &e.op, false, nil)
		require.Equal(t, http.StatusOK, r.code, string(r.body))
		var al alert.Alarm
		require.NoError(t, json.Unmarshal(r.body, &al))
		assert.Equal(t, alert.AlarmAcknowledged, al.State)
		require.Len(t, al.History, 1)
		assert.Equal(t, "on it", al.History[0].Note)
		r = e.do("POST", fmt.Sprintf("/api/v1/alarms/%d/ack", e.alarm), nil, &e.op, false, nil)
		assert.Equal(t, http.StatusConflict, r.code)
		r = e.do("GET", "/api/v1/alarms?state=active", nil, &e.op, false, nil)
		require.NoError(t, json.Unmarshal(r.body, &pg))
		assert.Empty(t, pg.Items)
		r = e.do("GET", "/api/v1/alarms?state=acknowledged", nil, &e.op, false, nil)
		require.NoError(t, json.Unmarshal(r.body, &pg))
		assert.Len(t, pg.Items, 1)
		r = e.do("GET", "/api/v1/alarms?state=open", nil, &e.op, false, nil)
		assert.Equal(t, http.StatusBadRequest, r.code)
	})
}

// TestAlertStream opens real SSE connections: each household receives its
// own alerts and never another household's.
func TestAlertStream(t *testing.T) {
	e := newEnv(t, nil)
	ts := httptest.NewServer(e.srv)
	defer ts.Close()
	open := func(h *household, lastID string) (*bufio.Reader, func()) {
		req, err := http.NewRequest("GET", ts.URL+"/api/v1/alerts/stream", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+h.token)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		res, err := ts.Client().Do(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode)
		assert.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
		rd := bufio.NewReader(res.Body)
		return rd, func() { _ = res.Body.Close() }
	}
	// next reads the next event, skipping comments and the retry line.
	next := func(rd *bufio.Reader) (id string, a alert.Alert) {
		for {
			line, err := rd.ReadString('\n')
			require.NoError(t, err)
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "id: "):
				id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &a))
			case line == "" && id != "":
				return id, a
			}
		}
	}
	// waitConnected reads up to the end of the stream's preamble, after
	// which the subscription is open.
	waitConnected := func(rd *bufio.Reader) {
		for {
			line, err := rd.ReadString('\n')
			require.NoError(t, err)
			if line == ": connected\n" {
				_, err = rd.ReadString('\n')
				require.NoError(t, err)
				return
			}
		}
	}
	ra, closeA := open(&e.a, "")
	defer closeA()
	waitConnected(ra)
	rb, closeB := open(&e.b, "")
	defer closeB()
	waitConnected(rb)

	// B's alert is published first: were A's stream to leak, it would see it.
	e.alerts.Hub().Publish(alert.Alert{ID: 900, HouseholdID: e.b.id, Kind: alert.KindLeak, Title: "B's"})
	e.alerts.Hub().Publish(alert.Alert{ID: 901, HouseholdID: e.a.id, Kind: alert.KindLeak, Title: "A's"})
	id, got := next(ra)
	assert.Equal(t, "901", id)
	assert.Equal(t, e.a.id, got.HouseholdID)
	id, got = next(rb)
	assert.Equal(t, "900", id)
	assert.Equal(t, e.b.id, got.HouseholdID)

	// Reconnecting after an event id replays the inbox alerts after it.
	ra2, closeA2 := open(&e.a, fmt.Sprint(e.a.alertID-1))
	defer closeA2()
	id, got = next(ra2)
	assert.Equal(t, fmt.Sprint(e.a.alertID), id)
	assert.Equal(t, e.a.id, got.HouseholdID)
}
