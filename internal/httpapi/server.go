package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config wires the HTTP edge to the rest of the server.
type Config struct {
	Logger *slog.Logger
	// Checks decide /readyz.
	Checks []Check
	// CheckTimeout bounds each readiness probe (default 2 s).
	CheckTimeout time.Duration
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	// API, when set, serves the JSON API under /api/v1.
	API *APIConfig
}

// Server routes HTTP requests. It is safe for concurrent use.
type Server struct {
	cfg Config
	mux *http.ServeMux
	api *api
}

// New builds the router.
func New(cfg Config) *Server {
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", s.handleHealth)
	s.mux.HandleFunc("GET /readyz", s.handleReady)
	if cfg.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}))
	}
	if cfg.API != nil {
		s.api = newAPI(*cfg.API, cfg.Logger)
		s.api.mount(s.mux)
	}
	return s
}

// Handle adds a route, for packages that own their own endpoints.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }
