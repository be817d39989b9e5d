package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/docs"
	"github.com/meterflow/meterflow/internal/alert"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/broker"
	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/httpapi"
	"github.com/meterflow/meterflow/internal/influx"
	"github.com/meterflow/meterflow/internal/ingest"
	"github.com/meterflow/meterflow/internal/journal"
	"github.com/meterflow/meterflow/internal/postgres"
)

// InfluxFlags address the InfluxDB bucket.
type InfluxFlags struct {
	URL    string `name:"influx-url" env:"MF_INFLUX_URL" default:"http://127.0.0.1:8086" help:"InfluxDB URL (${env})."`
	Org    string `name:"influx-org" env:"MF_INFLUX_ORG" default:"" help:"InfluxDB 2.x organisation; empty for 1.8 (${env})."`
	Bucket string `name:"influx-bucket" env:"MF_INFLUX_BUCKET" default:"meterflow/autogen" help:"InfluxDB 2.x bucket, or database/retention-policy for 1.8 (${env})."`
	Token  string `name:"influx-token" env:"MF_INFLUX_TOKEN" default:"" help:"InfluxDB 2.x token, or user:password for 1.8 with auth (${env})."`
}

// Config returns the adapter configuration.
func (f InfluxFlags) Config() influx.Config {
	return influx.Config{URL: f.URL, Org: f.Org, Bucket: f.Bucket, Token: f.Token}
}

// ServeCmd is the configuration of `meterflow serve`.
type ServeCmd struct {
	HTTPAddr string        `name:"http-addr" env:"MF_HTTP_ADDR" default:"127.0.0.1:8080" help:"HTTP listen address: API, portal, /healthz, /readyz, /metrics (${env})."`
	Migrate  bool          `name:"migrate" env:"MF_MIGRATE" default:"false" help:"Apply database migrations at start-up (${env})."`
	Shutdown time.Duration `name:"shutdown-timeout" env:"MF_SHUTDOWN_TIMEOUT" default:"20s" help:"How long a graceful shutdown may take (${env})."`
	Pprof    bool          `name:"pprof" env:"MF_PPROF" default:"false" help:"Serve Go profiles under /debug/pprof/ on the HTTP address (${env}); for profiling, never on a public address."`

	Postgres PostgresFlags `embed:"" group:"PostgreSQL"`
	Influx   InfluxFlags   `embed:"" group:"InfluxDB"`

	MQTTAddr     string        `name:"mqtt-addr" env:"MF_MQTT_ADDR" default:"127.0.0.1:1883" help:"MQTT listen address; empty disables plain MQTT (${env})."`
	MQTTTLSAddr  string        `name:"mqtt-tls-addr" env:"MF_MQTT_TLS_ADDR" default:"" help:"MQTT over TLS listen address (${env})."`
	MQTTTLSCert  string        `name:"mqtt-tls-cert" env:"MF_MQTT_TLS_CERT" default:"" help:"TLS certificate file (PEM) (${env})."`
	MQTTTLSKey   string        `name:"mqtt-tls-key" env:"MF_MQTT_TLS_KEY" default:"" help:"TLS private key file (PEM) (${env})."`
	MQTTClientCA string        `name:"mqtt-tls-client-ca" env:"MF_MQTT_TLS_CLIENT_CA" default:"" help:"CA whose certificates authenticate meters by Common Name (${env})."`
	MaxPayload   int           `name:"max-payload-bytes" env:"MF_MAX_PAYLOAD_BYTES" default:"65536" help:"Largest reading payload accepted (${env})."`
	AuthCacheTTL time.Duration `name:"auth-cache-ttl" env:"MF_AUTH_CACHE_TTL" default:"5m" help:"How long a meter credential is cached (${env})."`

	JournalDir      string        `name:"journal-dir" env:"MF_JOURNAL_DIR" default:"./data/journal" help:"Directory of the durable ingest journal (${env})."`
	JournalMaxBytes int64         `name:"journal-max-bytes" env:"MF_JOURNAL_MAX_BYTES" default:"4294967296" help:"Disk budget for readings not yet in the stores; past it meters are not acknowledged (${env})."`
	Workers         int           `name:"ingest-workers" env:"MF_INGEST_WORKERS" default:"8" help:"Ingest worker partitions (${env})."`
	BatchSize       int           `name:"ingest-batch-size" env:"MF_INGEST_BATCH_SIZE" default:"5000" help:"Rows per store write (${env})."`
	FlushInterval   time.Duration `name:"ingest-flush-interval" env:"MF_INGEST_FLUSH_INTERVAL" default:"250ms" help:"Longest wait before a partial batch is written (${env})."`
	SnapshotEvery   time.Duration `name:"ingest-snapshot-interval" env:"MF_INGEST_SNAPSHOT_INTERVAL" default:"5s" help:"How often meter states are saved and the journal trimmed (${env})."`
	RollupEvery     time.Duration `name:"rollup-interval" env:"MF_ROLLUP_INTERVAL" default:"30s" help:"How often hourly and daily rollups are recomputed for changed windows (${env})."`

	Auth AuthFlags `embed:"" group:"Sign-in"`

	Alerts AlertFlags `embed:"" group:"Alerts and alarms"`
}

// AlertFlags configure household alerts and operator alarms
// (docs/alerts.md). A zero value takes the default of alert.DefaultConfig.
type AlertFlags struct {
	Off              bool          `name:"alerts-off" env:"MF_ALERTS_OFF" default:"false" help:"Do not evaluate or send alerts and alarms on this node (${env}); the API still serves them."`
	EvaluateEvery    time.Duration `name:"alert-evaluate-interval" env:"MF_ALERT_EVALUATE_INTERVAL" default:"5m" help:"How often the periodic alert rules and the alarms run (${env})."`
	UpcomingBillDays int           `name:"alert-upcoming-bill-days" env:"MF_ALERT_UPCOMING_BILL_DAYS" default:"3" help:"Alert this many days before an unpaid bill is due (${env})."`
	SilentAfter      time.Duration `name:"alert-silent-after" env:"MF_ALERT_SILENT_AFTER" default:"24h" help:"Alert a household when its meter is silent this long (${env})."`
	AbnormalFactor   string        `name:"alert-abnormal-factor" env:"MF_ALERT_ABNORMAL_FACTOR" default:"2" help:"Today's usage at least this many times the same-weekday median is abnormal (${env})."`
	OfflineAfter     time.Duration `name:"alarm-offline-after" env:"MF_ALARM_OFFLINE_AFTER" default:"6h" help:"Raise meter_offline when a meter is silent this long (${env})."`
	VEEPerHour       float64       `name:"alarm-vee-per-hour" env:"MF_ALARM_VEE_PER_HOUR" default:"12" help:"Raise vee_rate above this many VEE exceptions per meter and hour (${env})."`
	MaxIngestLag     uint64        `name:"alarm-ingest-lag" env:"MF_ALARM_INGEST_LAG" default:"100000" help:"Raise ingest_lag above this many journal records waiting for the stores (${env})."`
	PaymentFailRatio float64       `name:"alarm-payment-failure-ratio" env:"MF_ALARM_PAYMENT_FAILURE_RATIO" default:"0.25" help:"Raise payment_failure_rate when more than this fraction of the last hour's payments failed (${env})."`
	PaymentMinCount  int           `name:"alarm-payment-min-count" env:"MF_ALARM_PAYMENT_MIN_COUNT" default:"10" help:"Raise payment_failure_rate only when at least this many payments settled in the last hour (${env})."`
}

// Config returns the alert configuration, defaults filled in.
func (f AlertFlags) Config() (alert.Config, error) {
	c := alert.DefaultConfig()
	if f.EvaluateEvery != 0 {
		c.EvaluateEvery = f.EvaluateEvery
	}
	if f.UpcomingBillDays != 0 {
		c.UpcomingBillDays = f.UpcomingBillDays
	}
	if f.SilentAfter != 0 {
		c.SilentAfter = f.SilentAfter
	}
	if f.AbnormalFactor != "" {
		d, err := decimal.NewFromString(f.AbnormalFactor)
		if err != nil {
			return c, fmt.Errorf("alert-abnormal-factor: %q is not a number", f.AbnormalFactor)
		}
		c.AbnormalFactor = d
	}
	if f.OfflineAfter != 0 {
		c.OfflineAfter = f.OfflineAfter
	}
	if f.VEEPerHour != 0 {
		c.VEEPerHour = f.VEEPerHour
	}
	if f.MaxIngestLag != 0 {
		c.MaxIngestLag = f.MaxIngestLag
	}
	if f.PaymentFailRatio != 0 {
		c.PaymentMaxFailure = f.PaymentFailRatio
	}
	if f.PaymentMinCount != 0 {
		c.PaymentMinCount = f.PaymentMinCount
	}
	return c, c.Validate()
}

// AuthFlags configure sign-in and the API's cookies.
type AuthFlags struct {
	Key          string        `name:"auth-key" env:"MF_AUTH_KEY" default:"" help:"Hex server key (at least 32 bytes) for sign-in codes and CSRF tokens; empty: a random key per start, for development only (${env})."`
	CookieSecure bool          `name:"cookie-secure" env:"MF_COOKIE_SECURE" default:"true" negatable:"" help:"Mark session cookies Secure; --no-cookie-secure for plain http on localhost (${env})."`
	SessionTTL   time.Duration `name:"session-ttl" env:"MF_SESSION_TTL" default:"12h" help:"How long a signed-in session lasts (${env})."`
	// Argon2MemoryKiB lowers the password hash cost in tests.
	Argon2MemoryKiB uint32 `name:"argon2-memory-kib" env:"MF_ARGON2_MEMORY_KIB" default:"65536" hidden:""`
}

// key returns the server key, or a random one (and says so) when unset.
func (f AuthFlags) key(log *slog.Logger) ([]byte, error) {
	if f.Key == "" {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		log.Warn("MF_AUTH_KEY is not set: using a random key; sign-in codes in flight and CSRF tokens do not survive a restart and differ between nodes. Set it in production.")
		return k, nil
	}
	k, err := hex.DecodeString(f.Key)
	if err != nil || len(k) < 32 {
		return nil, errors.New("auth-key: want at least 64 hex digits (32 bytes)")
	}
	return k, nil
}

// Validate checks every setting and reports all problems at once.
func (c *ServeCmd) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http-addr: %w", err))
	}
	errs = append(errs, c.Postgres.Config().Validate(), c.Influx.Config().Validate(), c.brokerConfig().Validate())
	if c.MaxPayload < 256 || c.MaxPayload > 1<<20 {
		errs = append(errs, fmt.Errorf("max-payload-bytes: %d is outside 256..1048576", c.MaxPayload))
	}
	if c.JournalDir == "" {
		errs = append(errs, errors.New("journal-dir: must be set"))
	}
	if c.JournalMaxBytes < 64<<20 {
		errs = append(errs, fmt.Errorf("journal-max-bytes: %d is below the 64 MiB minimum", c.JournalMaxBytes))
	}
	if c.Workers < 1 || c.Workers > 256 {
		errs = append(errs, fmt.Errorf("ingest-workers: %d is outside 1..256", c.Workers))
	}
	if c.BatchSize < 1 {
		errs = append(errs, errors.New("ingest-batch-size: must be positive"))
	}
	if c.Auth.Key != "" {
		if k, err := hex.DecodeString(c.Auth.Key); err != nil || len(k) < 32 {
			errs = append(errs, errors.New("auth-key: want at least 64 hex digits (32 bytes)"))
		}
	}
	if c.Auth.SessionTTL != 0 && (c.Auth.SessionTTL < time.Minute || c.Auth.SessionTTL > 30*24*time.Hour) {
		errs = append(errs, fmt.Errorf("session-ttl: %s is outside 1m..720h", c.Auth.SessionTTL))
	}
	if _, err := c.Alerts.Config(); err != nil {
		errs = append(errs, err)
	}
	if c.FlushInterval <= 0 || c.SnapshotEvery <= 0 || c.RollupEvery <= 0 {
		errs = append(errs, errors.New("ingest-flush-interval, ingest-snapshot-interval and rollup-interval: must be positive"))
	}
	return errors.Join(errs...)
}

func (c *ServeCmd) brokerConfig() broker.Config {
	return broker.Config{
		TCPAddr: c.MQTTAddr, TLSAddr: c.MQTTTLSAddr,
		CertFile: c.MQTTTLSCert, KeyFile: c.MQTTTLSKey, ClientCAFile: c.MQTTClientCA,
		// Payloads up to twice the limit reach the decoder, which refuses
		// and counts them as too_large; only larger packets make the broker
		// drop the connection.
		MaxPacketBytes: 2*uint32(c.MaxPayload) + 4096,
	}
}

// Run serves until ctx ends (SIGINT or SIGTERM), then shuts down in order.
func (c *ServeCmd) Run(ctx context.Context, log *slog.Logger) error {
	m := &Main{Config: *c, Logger: log}
	if err := m.Run(ctx); err != nil {
		_ = m.Close()
		return err
	}
	log.Info("meterflow serving", "http", m.HTTPAddr(), "mqtt", addrString(m.Broker.TCPAddr()), "mqtt_tls", addrString(m.Broker.TLSAddr()))
	<-ctx.Done()
	log.Info("shutting down")
	return m.Close()
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Main is the running server. Tests start it with port 0 addresses and
// read the bound addresses back.
type Main struct {
	Config ServeCmd
	Logger *slog.Logger

	Registry *prometheus.Registry
	DB       *postgres.DB
	Influx   *influx.Client
	Journal  *journal.Journal
	Devices  *device.Registry
	Pipeline *ingest.Pipeline
	Rollups  *influx.Rollups
	Broker   *broker.Broker
	Auth     *auth.Service
	Billing  *billing.Service
	Alerts   *alert.Service

	httpLn  net.Listener
	httpSrv *http.Server
	// stopBG ends the background loops started by Run.
	stopBG context.CancelFunc
	bgDone chan struct{}
	// alertsDone is closed when the alert service has stopped (nil when it
	// never started).
	alertsDone chan struct{}
}

// Run opens the stores, replays the journal and starts the listeners. It
// returns once everything serves.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.Config
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := m.Logger
	m.Registry = prometheus.NewRegistry()
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if cfg.Migrate {
		from, to, err := postgres.Migrate(ctx, cfg.Postgres.URL)
		if err != nil {
			return err
		}
		log.Info("database migrated", "from_version", from, "to_version", to)
	}
	var err error
	if m.DB, err = postgres.Open(ctx, cfg.Postgres.Config()); err != nil {
		return err
	}
	if m.Influx, err = influx.Open(cfg.Influx.Config()); err != nil {
		return err
	}
	if m.Journal, err = journal.Open(journal.Options{Dir: cfg.JournalDir, MaxBytes: cfg.JournalMaxBytes, Logger: log.With("component", "journal")}); err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	j := m.Journal
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mf_journal_disk_bytes", Help: "Bytes the journal holds on disk."},
			func() float64 { return float64(j.Stats().DiskBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mf_journal_pending_bytes", Help: "Journal bytes not yet confirmed by the stores (counted against the disk budget)."},
			func() float64 { return float64(j.Stats().PendingBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mf_journal_head_offset", Help: "Offset of the last durable journal record."},
			func() float64 { return float64(j.Head()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mf_journal_checkpoint_offset", Help: "Offset up to which the stores have confirmed everything."},
			func() float64 { return float64(j.Checkpointed()) }),
	)
	m.Devices = device.NewRegistry(&postgres.Meters{DB: m.DB}, device.Config{CacheTTL: cfg.AuthCacheTTL, Logger: log})

	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	m.stopBG, m.bgDone = stop, make(chan struct{})
	m.Rollups = influx.NewRollups(m.Influx, log.With("component", "rollups"), time.Now())
	sink := influx.NewSink(m.Influx)
	sink.Rollups = m.Rollups
	m.Pipeline = ingest.NewPipeline(ingest.PipelineConfig{
		Workers: cfg.Workers, BatchSize: cfg.BatchSize, FlushInterval: cfg.FlushInterval,
		SnapshotInterval: cfg.SnapshotEvery, Logger: log.With("component", "ingest"),
	}, m.Journal, sink, &postgres.IngestSink{DB: m.DB}, m.Registry)
	if err := m.Pipeline.Start(bg); err != nil {
		return err
	}
	go func() {
		defer close(m.bgDone)
		m.Rollups.Run(bg, cfg.RollupEvery)
	}()
	alertCfg, err := cfg.Alerts.Config()
	if err != nil {
		return err
	}
	alertCfg.Logger = log.With("component", "alerts")
	// The development SMS sender is the only one wired so far, as for
	// sign-in and payments.
	if m.Alerts, err = alert.New(alert.Deps{
		Store: &postgres.Alerts{DB: m.DB}, Outbox: &postgres.Outbox{DB: m.DB}, Sender: &postgres.DevSMS{DB: m.DB},
		Lag: m.Pipeline, Probes: []alert.Probe{{Name: "postgres", Check: m.DB.Ping}, {Name: "influxdb", Check: m.Influx.Ping}},
	}, alertCfg); err != nil {
		return err
	}
	if !cfg.Alerts.Off {
		m.alertsDone = make(chan struct{})
		go func() {
			defer close(m.alertsDone)
			m.Alerts.Run(bg)
		}()
	}
	front := ingest.NewFront(ingest.FrontConfig{MaxPayloadBytes: cfg.MaxPayload}, m.Journal, m.Registry)
	if m.Broker, err = broker.New(cfg.brokerConfig(), m.Devices, front, log, m.Registry); err != nil {
		return err
	}
	if err := m.Broker.Start(); err != nil {
		return err
	}

	apiCfg, err := m.apiConfig(ctx)
	if err != nil {
		return err
	}
	api := httpapi.New(httpapi.Config{
		Logger:   log,
		API:      apiCfg,
		Gatherer: m.Registry,
		Checks: []httpapi.Check{
			{Name: "postgres", Probe: m.DB.Ping},
			{Name: "influxdb", Probe: m.Influx.Ping},
		},
	})
	if cfg.Pprof {
		api.Handle("/debug/pprof/", http.HandlerFunc(pprof.Index))
		api.Handle("/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
		api.Handle("/debug/pprof/trace", http.HandlerFunc(pprof.Trace))
		api.Handle("/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	}
	if m.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return fmt.Errorf("http listen %s: %w", cfg.HTTPAddr, err)
	}
	m.httpSrv = &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Open alert streams end when the server shuts down, not at its timeout.
	m.httpSrv.RegisterOnShutdown(m.Alerts.Hub().Close)
	go func() {
		if err := m.httpSrv.Serve(m.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	return nil
}

// apiConfig builds the services behind the JSON API.
func (m *Main) apiConfig(context.Context) (*httpapi.APIConfig, error) {
	cfg, log := m.Config, m.Logger
	key, err := cfg.Auth.key(log)
	if err != nil {
		return nil, err
	}
	argon := auth.DefaultArgon2
	if cfg.Auth.Argon2MemoryKiB != 0 {
		argon.Memory = cfg.Auth.Argon2MemoryKiB
	}
	// The development SMS sender is the only one wired so far: codes land
	// in the sms_dev_inbox table.
	if m.Auth, err = auth.New(&postgres.Auth{DB: m.DB}, &postgres.DevSMS{DB: m.DB}, auth.Config{
		Key: key, KeyID: "k1", SessionTTL: cfg.Auth.SessionTTL, Argon2: argon, Logger: log.With("component", "auth"),
	}); err != nil {
		return nil, err
	}
	if m.Billing, err = billing.New(&postgres.Billing{DB: m.DB}, billing.Config{}, log.With("component", "billing")); err != nil {
		return nil, err
	}
	return &httpapi.APIConfig{
		Auth: m.Auth, Portal: &postgres.Portal{DB: m.DB}, Usage: m.Influx, Bills: m.Billing, Devices: m.Devices,
		Alerts: m.Alerts, OpenAPI: docs.OpenAPI, CookieSecure: cfg.Auth.CookieSecure,
	}, nil
}

// HTTPAddr is the bound HTTP address.
func (m *Main) HTTPAddr() string {
	if m.httpLn == nil {
		return ""
	}
	return m.httpLn.Addr().String()
}

// Close shuts down in order: stop taking requests and readings, drain the
// pipeline into the stores, then close the journal and the stores.
func (m *Main) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), m.Config.Shutdown)
	defer cancel()
	var errs []error
	if m.httpSrv != nil {
		errs = append(errs, m.httpSrv.Shutdown(ctx))
	}
	if m.Broker != nil {
		errs = append(errs, m.Broker.Close())
	}
	if m.Pipeline != nil {
		errs = append(errs, m.Pipeline.Stop())
	}
	if m.stopBG != nil {
		m.stopBG()
		<-m.bgDone
		if m.alertsDone != nil {
			<-m.alertsDone
		}
	}
	if m.Journal != nil {
		errs = append(errs, m.Journal.Close())
	}
	if m.Influx != nil {
		m.Influx.Close()
	}
	if m.DB != nil {
		m.DB.Close()
	}
	return errors.Join(errs...)
}
