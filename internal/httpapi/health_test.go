package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadiness(t *testing.T) {
	up := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("connection refused") }
	cases := []struct {
		name     string
		checks   []Check
		status   int
		wantDown []string
	}{
		{"all up", []Check{{"postgres", up}, {"influxdb", up}}, 200, nil},
		{"postgres down", []Check{{"postgres", down}, {"influxdb", up}}, 503, []string{"postgres"}},
		{"both down", []Check{{"postgres", down}, {"influxdb", down}}, 503, []string{"influxdb", "postgres"}},
		{"slow probe times out", []Check{{"influxdb", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}}, 503, []string{"influxdb"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := New(Config{Checks: c.checks, CheckTimeout: 50_000_000})
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			assert.Equal(t, c.status, rec.Code)
			var body readyBody
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.Equal(t, c.wantDown, body.Down)
			if c.status != 200 {
				assert.Contains(t, body.Checks[c.wantDown[0]], "down: ")
			}
		})
	}
}

func TestHealthAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cnt := prometheus.NewCounter(prometheus.CounterOpts{Name: "mf_test_total", Help: "test"})
	reg.MustRegister(cnt)
	cnt.Inc()
	s := New(Config{Gatherer: reg})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Contains(t, rec.Body.String(), "mf_test_total 1")
}
