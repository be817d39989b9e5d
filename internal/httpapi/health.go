package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Check is one dependency the server needs to be ready.
type Check struct {
	Name string
	// Probe returns nil when the dependency answers.
	Probe func(context.Context) error
}

// readiness runs every check concurrently, each bounded by timeout.
func readiness(ctx context.Context, checks []Check, timeout time.Duration) (ok bool, report map[string]string) {
	report = make(map[string]string, len(checks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	ok = true
	for _, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			err := c.Probe(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				ok = false
				report[c.Name] = "down: " + err.Error()
				return
			}
			report[c.Name] = "ok"
		}()
	}
	wg.Wait()
	return ok, report
}

type readyBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	Down   []string          `json:"down,omitempty"`
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ok, report := readiness(r.Context(), s.cfg.Checks, s.cfg.CheckTimeout)
	body := readyBody{Status: "ready", Checks: report}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
		body.Status = "unavailable"
		for name, v := range report {
			if v != "ok" {
				body.Down = append(body.Down, name)
			}
		}
		sort.Strings(body.Down)
	}
	writeJSON(w, status, body)
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "up"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
