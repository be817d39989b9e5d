package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/portal"
)

// FleetCounters are the live figures of the ingest path at one moment.
// Counts only grow; the live stream turns them into rates.
type FleetCounters struct {
	// ConnectedMeters is how many MQTT clients are connected now.
	ConnectedMeters int64
	// Readings counts the readings accepted into the journal since the
	// server started, by utility.
	Readings map[string]uint64
	// LagRecords is how many journal records wait for the stores.
	LagRecords uint64
	// StoreDelay is how long the last written batch took from receipt to
	// being stored.
	StoreDelay time.Duration
	// JournalPendingBytes is what the journal holds that the stores have
	// not confirmed (counted against its disk budget).
	JournalPendingBytes int64
}

// Fleet reports the live state of the ingest path. cmd/meterflow implements
// it from the broker's and the pipeline's counters; it must be cheap and
// safe to call from many goroutines, once a second per open stream.
type Fleet interface {
	FleetCounters() FleetCounters
}

// fleetRoutes are the operators' live and fleet-wide views.
func (a *api) fleetRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/fleet/live", Rule: Operator, Summary: "Server-sent events: a snapshot of the ingest path every second", handler: a.fleetLive},
		{Method: "GET", Pattern: "/fleet/regions", Rule: Operator, Summary: "Recent consumption by region and utility", handler: a.fleetRegions},
	}
}

// LiveSnapshot is one event of GET /fleet/live.
type LiveSnapshot struct {
	At                         time.Time          `json:"at"`
	ConnectedMeters            int64              `json:"connected_meters"`
	ReadingsTotal              uint64             `json:"readings_total"`
	ReadingsPerSecond          float64            `json:"readings_per_second"`
	ReadingsByUtility          map[string]uint64  `json:"readings_by_utility"`
	ReadingsPerSecondByUtility map[string]float64 `json:"readings_per_second_by_utility"`
	IngestLagRecords           uint64             `json:"ingest_lag_records"`
	IngestLagSeconds           float64            `json:"ingest_lag_seconds"`
	JournalPendingBytes        int64              `json:"journal_pending_bytes"`
}

func snapshot(at time.Time, cur, prev FleetCounters, elapsed time.Duration) LiveSnapshot {
	s := LiveSnapshot{
		At: at.UTC(), ConnectedMeters: cur.ConnectedMeters,
		ReadingsByUtility: map[string]uint64{}, ReadingsPerSecondByUtility: map[string]float64{},
		IngestLagRecords: cur.LagRecords, IngestLagSeconds: cur.StoreDelay.Seconds(),
		JournalPendingBytes: cur.JournalPendingBytes,
	}
	var prevTotal uint64
	for u, n := range cur.Readings {
		s.ReadingsByUtility[u] = n
		s.ReadingsTotal += n
		prevTotal += prev.Readings[u]
		rate := 0.0
		if elapsed > 0 && n >= prev.Readings[u] {
			rate = float64(n-prev.Readings[u]) / elapsed.Seconds()
		}
		s.ReadingsPerSecondByUtility[u] = rate
	}
	if elapsed > 0 && s.ReadingsTotal >= prevTotal {
		s.ReadingsPerSecond = float64(s.ReadingsTotal-prevTotal) / elapsed.Seconds()
	}
	return s
}

// fleetLive streams a snapshot as soon as the stream opens and then every
// LiveEvery. A stream lasts until the client goes or the request timeout
// ends it; browsers' EventSource reconnects by itself (the retry field).
func (a *api) fleetLive(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	if a.cfg.Fleet == nil {
		return apperr.New(apperr.Unavailable, "live fleet figures are not enabled on this server")
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(w, "retry: %d\n\n", a.cfg.LiveEvery.Milliseconds()); err != nil {
		return nil
	}
	prev, prevAt := a.cfg.Fleet.FleetCounters(), time.Now()
	send := func(s LiveSnapshot) bool {
		b, err := json.Marshal(s)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(snapshot(a.cfg.Now(), prev, prev, 0)) {
		return nil
	}
	t := time.NewTicker(a.cfg.LiveEvery)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-t.C:
		}
		cur, at := a.cfg.Fleet.FleetCounters(), time.Now()
		if !send(snapshot(a.cfg.Now(), cur, prev, at.Sub(prevAt))) {
			return nil
		}
		prev, prevAt = cur, at
	}
}

// maxRegionHours bounds the window of /fleet/regions (see
// postgres.Portal.UsageByRegion).
const maxRegionHours = 31 * 24

func (a *api) fleetRegions(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	fs, ok := a.cfg.Portal.(portal.FleetStore)
	if !ok {
		return apperr.New(apperr.Unavailable, "consumption by region is not available on this server")
	}
	hours := 24
	if s := r.URL.Query().Get("hours"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxRegionHours {
			return apperr.Field("hours", "want 1 to %d", maxRegionHours)
		}
		hours = n
	}
	until := a.cfg.Now().UTC()
	since := until.Add(-time.Duration(hours) * time.Hour)
	items, err := fs.UsageByRegion(r.Context(), since, until)
	if err != nil {
		return err
	}
	if items == nil {
		items = []portal.RegionUsage{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"since": since, "until": until, "hours": hours, "items": items})
	return nil
}
