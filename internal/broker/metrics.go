package broker

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	authFailures *prometheus.CounterVec
	aclDenied    prometheus.Counter
	rejected     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, srv *mqtt.Server) *metrics {
	m := &metrics{
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mf_mqtt_auth_failures_total", Help: "Meter connections refused, by reason.",
		}, []string{"reason"}),
		aclDenied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mf_mqtt_acl_denied_total", Help: "Publishes and subscriptions refused by the topic ACL.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mf_ingest_rejected_total", Help: "Reading payloads refused, by reason.",
		}, []string{"reason"}),
	}
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mf_mqtt_connected_meters", Help: "Meters connected to the broker now.",
	}, func() float64 { return float64(atomic.LoadInt64(&srv.Info.ClientsConnected)) })
	if reg != nil {
		reg.MustRegister(m.authFailures, m.aclDenied, m.rejected, connected)
	}
	return m
}

// throttle logs at most one line per key and interval, and says how many
// it held back, so a misbehaving fleet cannot flood the log.
type throttle struct {
	every time.Duration
	mu    sync.Mutex
	keys  map[string]*throttled
}

type throttled struct {
	last       time.Time
	suppressed int
}

func newThrottle(every time.Duration) *throttle {
	return &throttle{every: every, keys: make(map[string]*throttled)}
}

func (t *throttle) log(l *slog.Logger, key, msg string, args ...any) {
	now := time.Now()
	t.mu.Lock()
	k := t.keys[key]
	if k == nil {
		if len(t.keys) > 1000 {
			clear(t.keys)
		}
		k = &throttled{}
		t.keys[key] = k
	}
	if now.Sub(k.last) < t.every {
		k.suppressed++
		t.mu.Unlock()
		return
	}
	n := k.suppressed
	k.last, k.suppressed = now, 0
	t.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	l.Warn(msg, args...)
}
