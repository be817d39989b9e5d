package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
)

// counters is a Fleet whose readings the test moves.
type counters struct {
	mu sync.Mutex
	c  FleetCounters
}

func (f *counters) FleetCounters() FleetCounters {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.c
	c.Readings = map[string]uint64{}
	for k, v := range f.c.Readings {
		c.Readings[k] = v
	}
	return c
}

func (f *counters) add(utility string, n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.c.Readings[utility] += n
}

func TestFleetLiveStreamsSnapshots(t *testing.T) {
	fl := &counters{c: FleetCounters{ConnectedMeters: 3, Readings: map[string]uint64{"electricity": 100, "gas": 0},
		LagRecords: 7, StoreDelay: 1500 * time.Millisecond, JournalPendingBytes: 4096}}
	e := newEnv(t, func(c *APIConfig) { c.Fleet, c.LiveEvery = fl, 100*time.Millisecond })
	ts := httptest.NewServer(e.srv)
	defer ts.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/v1/fleet/live", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.op.token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))

	rd := bufio.NewReader(resp.Body)
	next := func() LiveSnapshot {
		t.Helper()
		for {
			line, err := rd.ReadString('\n')
			require.NoError(t, err)
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var s LiveSnapshot
				require.NoError(t, json.Unmarshal([]byte(data), &s))
				return s
			}
		}
	}
	first := next()
	assert.Equal(t, int64(3), first.ConnectedMeters)
	assert.Equal(t, uint64(100), first.ReadingsTotal)
	assert.Zero(t, first.ReadingsPerSecond, "no rate before a second snapshot")
	assert.Equal(t, uint64(7), first.IngestLagRecords)
	assert.InDelta(t, 1.5, first.IngestLagSeconds, 1e-9)
	assert.Equal(t, int64(4096), first.JournalPendingBytes)

	fl.add("gas", 50)
	var s LiveSnapshot
	for s = next(); s.ReadingsTotal < 150; s = next() {
	}
	assert.Equal(t, uint64(150), s.ReadingsTotal)
	assert.Equal(t, uint64(50), s.ReadingsByUtility["gas"])
	assert.Positive(t, s.ReadingsPerSecond)
	assert.Positive(t, s.ReadingsPerSecondByUtility["gas"])
	assert.Zero(t, s.ReadingsPerSecondByUtility["electricity"])
	s = next()
	assert.Zero(t, s.ReadingsPerSecond, "nothing new since the last snapshot")
}

func TestFleetLiveWithoutFleetIsUnavailable(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("GET", "/api/v1/fleet/live", nil, &e.op, false, nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.code)
	assert.Equal(t, apperr.Unavailable, r.errCode())
}

func TestFleetRegions(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	_, err := e.db.Pool.Exec(ctx, `update premises set region = 'north' where account_id = $1`, e.a.account)
	require.NoError(t, err)
	now := e.clock.Now().UTC().Truncate(time.Hour)
	for i, q := range []int64{1500, 2500} {
		_, err := e.db.Pool.Exec(ctx, `insert into interval_usage (meter_id, channel, start_at, quantity, quality) values ($1, '1-0:1.8.0', $2, $3, 0)`,
			e.a.meterID, now.Add(-time.Duration(i+1)*time.Hour), q)
		require.NoError(t, err)
	}
	// Outside the window, and another channel: not counted.
	_, err = e.db.Pool.Exec(ctx, `insert into interval_usage (meter_id, channel, start_at, quantity, quality) values
		($1, '1-0:1.8.0', $2, 9000, 0), ($1, '1-0:2.8.0', $3, 9000, 0)`, e.a.meterID, now.Add(-48*time.Hour), now.Add(-time.Hour))
	require.NoError(t, err)

	r := e.do("GET", "/api/v1/fleet/regions?hours=24", nil, &e.op, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	var out struct {
		Hours int `json:"hours"`
		Items []struct {
			Region, Utility, Unit string
			Quantity              float64
			Meters                int64
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal(r.body, &out))
	assert.Equal(t, 24, out.Hours)
	require.Len(t, out.Items, 1)
	assert.Equal(t, "north", out.Items[0].Region)
	assert.Equal(t, "electricity", out.Items[0].Utility)
	assert.Equal(t, "kWh", out.Items[0].Unit)
	assert.InDelta(t, 4.0, out.Items[0].Quantity, 1e-9)
	assert.Equal(t, int64(1), out.Items[0].Meters)

	r = e.do("GET", "/api/v1/fleet/regions?hours=0", nil, &e.op, false, nil)
	assert.Equal(t, http.StatusBadRequest, r.code)
}
