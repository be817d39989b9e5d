package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
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
	"github.com/meterflow/meterflow/internal/otp"
	"github.com/meterflow/meterflow/internal/outbox"
	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/payment/sandbox"
	"github.com/meterflow/meterflow/internal/payment/stripegw"
	"github.com/meterflow/meterflow/internal/phone"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/sms"
	"github.com/meterflow/meterflow/internal/vee"
	"github.com/meterflow/meterflow/internal/web"
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
	MQTTWSAddr   string        `name:"mqtt-ws-addr" env:"MF_MQTT_WS_ADDR" default:"" help:"MQTT over WebSocket listen address (plain ws; put TLS in front) (${env})."`
	MQTTClientCA string        `name:"mqtt-tls-client-ca" env:"MF_MQTT_TLS_CLIENT_CA" default:"" help:"CA whose certificates authenticate meters by Common Name (${env})."`
	MaxPayload   int           `name:"max-payload-bytes" env:"MF_MAX_PAYLOAD_BYTES" default:"65536" help:"Largest reading payload accepted (${env})."`
	AuthCacheTTL time.Duration `name:"auth-cache-ttl" env:"MF_AUTH_CACHE_TTL" default:"5m" help:"How long a meter credential is cached (${env})."`

	JournalDir      string        `name:"journal-dir" env:"MF_JOURNAL_DIR" default:"./data/journal" help:"Directory of the durable ingest journal (${env})."`
	JournalMaxBytes int64         `name:"journal-max-bytes" env:"MF_JOURNAL_MAX_BYTES" default:"4294967296" help:"Disk budget for readings not yet in the stores; past it meters are not acknowledged (${env})."`
	SlowFrom        float64       `name:"ingest-slow-from" env:"MF_INGEST_SLOW_FROM" default:"0.25" help:"Fraction of the journal budget from which meters are slowed down (backpressure) (${env})."`
	MaxHold         time.Duration `name:"ingest-max-hold" env:"MF_INGEST_MAX_HOLD" default:"200ms" help:"Hold per payload when the journal reaches its budget (${env})."`
	Workers         int           `name:"ingest-workers" env:"MF_INGEST_WORKERS" default:"8" help:"Ingest worker partitions (${env})."`
	BatchSize       int           `name:"ingest-batch-size" env:"MF_INGEST_BATCH_SIZE" default:"5000" help:"Rows per store write (${env})."`
	FlushInterval   time.Duration `name:"ingest-flush-interval" env:"MF_INGEST_FLUSH_INTERVAL" default:"250ms" help:"Longest wait before a partial batch is written (${env})."`
	SnapshotEvery   time.Duration `name:"ingest-snapshot-interval" env:"MF_INGEST_SNAPSHOT_INTERVAL" default:"5s" help:"How often meter states are saved and the journal trimmed (${env})."`
	VEERules        string        `name:"vee-rules" env:"MF_VEE_RULES" default:"" help:"YAML file of VEE rule overrides per utility and meter model (docs/vee.md); empty: the defaults (${env})."`
	RollupEvery     time.Duration `name:"rollup-interval" env:"MF_ROLLUP_INTERVAL" default:"30s" help:"How often hourly and daily rollups are recomputed for changed windows (${env})."`

	Auth     AuthFlags     `embed:"" group:"Sign-in"`
	Payments PaymentsFlags `embed:"" group:"Payments"`
	Alerts   AlertFlags    `embed:"" group:"Alerts and alarms"`
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

// PaymentsFlags configure payments, auto-pay and the billing loops that
// raise their events.
type PaymentsFlags struct {
	Gateway         string        `name:"payment-gateway" env:"MF_PAYMENT_GATEWAY" default:"sandbox" enum:"sandbox,stripe" help:"Payment gateway: sandbox (test cards, no real money) or stripe (${env})."`
	Payee           string        `name:"payee" env:"MF_PAYEE" default:"Meterflow Energy" help:"Who households pay, as codes and receipts name it (${env})."`
	PhoneRegion     string        `name:"phone-region" env:"MF_PHONE_REGION" default:"GB" help:"Country assumed for phone numbers written without a country code (${env})."`
	SMS             string        `name:"sms-provider" env:"MF_SMS_PROVIDER" default:"dev" enum:"dev,twilio" help:"SMS provider: dev stores messages in the development inbox, readable in the portal; twilio sends them (${env})."`
	RecoverEvery    time.Duration `name:"payment-recover-interval" env:"MF_PAYMENT_RECOVER_INTERVAL" default:"30s" help:"How often unsettled charges are re-issued and unconfirmed payments expired (${env})."`
	AccrualEvery    time.Duration `name:"accrual-interval" env:"MF_ACCRUAL_INTERVAL" default:"15m" help:"How often the cost so far of running cycles is recomputed, thresholds checked and unpaid bills past due marked overdue; 0 turns it off (${env})."`
	OutboxPoll      time.Duration `name:"outbox-poll" env:"MF_OUTBOX_POLL" default:"1s" help:"How often auto-pay and the ledger look for new billing events (${env})."`
	ConfirmDeadline time.Duration `name:"payment-confirm-within" env:"MF_PAYMENT_CONFIRM_WITHIN" default:"48h" help:"How long a payment waits for its code before it expires (${env})."`

	StripeKey     string `name:"stripe-secret-key" env:"MF_STRIPE_SECRET_KEY" default:"" help:"Stripe secret or restricted key, for --payment-gateway stripe (${env})."`
	StripeBackend string `name:"stripe-backend-url" env:"MF_STRIPE_BACKEND_URL" default:"https://api.stripe.com" help:"Stripe API address (a proxy, or stripe-mock on loopback for tests) (${env})."`

	TwilioAccountSID string `name:"twilio-account-sid" env:"MF_TWILIO_ACCOUNT_SID" default:"" help:"Twilio account SID, for --sms-provider twilio (${env})."`
	TwilioAuthToken  string `name:"twilio-auth-token" env:"MF_TWILIO_AUTH_TOKEN" default:"" help:"Twilio auth token: API password and the key of delivery-report signatures (${env})."`
	TwilioFrom       string `name:"twilio-from" env:"MF_TWILIO_FROM" default:"" help:"Sender: an E.164 number or an alphanumeric sender id (${env})."`
	TwilioService    string `name:"twilio-messaging-service-sid" env:"MF_TWILIO_MESSAGING_SERVICE_SID" default:"" help:"Messaging service SID, instead of --twilio-from (${env})."`
	TwilioBaseURL    string `name:"twilio-base-url" env:"MF_TWILIO_BASE_URL" default:"https://api.twilio.com" help:"Twilio API address (${env})."`
	TwilioCallback   string `name:"twilio-status-callback-url" env:"MF_TWILIO_STATUS_CALLBACK_URL" default:"" help:"Public URL of this server's delivery-report endpoint, /hooks/sms/status; empty: no delivery reports (${env})."`
}

// smsCallbackPath is where the SMS provider reports delivery.
const smsCallbackPath = "/hooks/sms/status"

func (f PaymentsFlags) smsConfig() sms.Config {
	c := sms.DefaultConfig()
	c.AccountSID, c.AuthToken, c.From, c.MessagingServiceSID = f.TwilioAccountSID, f.TwilioAuthToken, f.TwilioFrom, f.TwilioService
	c.BaseURL, c.StatusCallbackURL, c.Provider = f.TwilioBaseURL, f.TwilioCallback, "twilio"
	return c
}

func (f PaymentsFlags) stripeConfig() stripegw.Config {
	c := stripegw.DefaultConfig()
	c.SecretKey, c.BackendURL = f.StripeKey, f.StripeBackend
	return c
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
	if c.SlowFrom <= 0 || c.SlowFrom >= 1 {
		errs = append(errs, fmt.Errorf("ingest-slow-from: %g is outside (0, 1)", c.SlowFrom))
	}
	if c.MaxHold <= 0 || c.MaxHold > 10*time.Second {
		errs = append(errs, fmt.Errorf("ingest-max-hold: %s is outside (0, 10s]", c.MaxHold))
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
	if c.Payments.RecoverEvery <= 0 || c.Payments.OutboxPoll <= 0 || c.Payments.AccrualEvery < 0 {
		errs = append(errs, errors.New("payment-recover-interval and outbox-poll: must be positive; accrual-interval: not negative"))
	}
	if c.Payments.SMS == "twilio" {
		if err := c.Payments.smsConfig().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("twilio: %w", err))
		}
	}
	if c.Payments.Gateway == "stripe" {
		if err := c.Payments.stripeConfig().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("stripe: %w", err))
		}
	}
	if c.Payments.ConfirmDeadline < time.Minute {
		errs = append(errs, fmt.Errorf("payment-confirm-within: %s is below a minute", c.Payments.ConfirmDeadline))
	}
	if _, err := phone.Normalize("+447400123456", c.Payments.PhoneRegion); err != nil || len(c.Payments.PhoneRegion) != 2 {
		errs = append(errs, fmt.Errorf("phone-region: %q is not a two-letter region", c.Payments.PhoneRegion))
	}
	if _, err := c.veeRules(); err != nil {
		errs = append(errs, fmt.Errorf("vee-rules: %w", err))
	}
	if c.FlushInterval <= 0 || c.SnapshotEvery <= 0 || c.RollupEvery <= 0 {
		errs = append(errs, errors.New("ingest-flush-interval, ingest-snapshot-interval and rollup-interval: must be positive"))
	}
	return errors.Join(errs...)
}

// veeRules reads the VEE rule set, or returns the defaults.
func (c *ServeCmd) veeRules() (*vee.RuleSet, error) {
	if c.VEERules == "" {
		return vee.DefaultRuleSet(), nil
	}
	data, err := os.ReadFile(c.VEERules)
	if err != nil {
		return nil, err
	}
	return vee.ParseRuleSet(data)
}

func (c *ServeCmd) brokerConfig() broker.Config {
	return broker.Config{
		TCPAddr: c.MQTTAddr, TLSAddr: c.MQTTTLSAddr, WSAddr: c.MQTTWSAddr,
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
	Front    *ingest.Front
	Auth     *auth.Service
	Billing  *billing.Service
	Payments *payment.Service
	Setup    *payment.Setup
	Alerts   *alert.Service

	httpLn  net.Listener
	httpSrv *http.Server
	// stopBG ends the background loops started by Run; bgWG waits for
	// them.
	stopBG context.CancelFunc
	bgCtx  context.Context
	bgWG   sync.WaitGroup
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
	m.stopBG, m.bgCtx = stop, bg
	m.Rollups = influx.NewRollups(m.Influx, log.With("component", "rollups"), time.Now())
	sink := influx.NewSink(m.Influx)
	sink.Rollups = m.Rollups
	rules, err := cfg.veeRules()
	if err != nil {
		return fmt.Errorf("vee-rules: %w", err)
	}
	m.Pipeline = ingest.NewPipeline(ingest.PipelineConfig{
		Rules:   rules,
		Workers: cfg.Workers, BatchSize: cfg.BatchSize, FlushInterval: cfg.FlushInterval,
		SnapshotInterval: cfg.SnapshotEvery, Logger: log.With("component", "ingest"),
	}, m.Journal, sink, &postgres.IngestSink{DB: m.DB}, m.Registry)
	if err := m.Pipeline.Start(bg); err != nil {
		return err
	}
	m.background(func(ctx context.Context) { m.Rollups.Run(ctx, cfg.RollupEvery) })
	m.Front = ingest.NewFront(ingest.FrontConfig{
		MaxPayloadBytes: cfg.MaxPayload,
		Backlog:         func() (int64, int64) { return j.Stats().PendingBytes, cfg.JournalMaxBytes },
		SlowFrom:        cfg.SlowFrom, MaxDelay: cfg.MaxHold,
	}, m.Journal, m.Registry)
	if m.Broker, err = broker.New(cfg.brokerConfig(), m.Devices, m.Front, log, m.Registry); err != nil {
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
	site := web.New()
	for _, p := range web.Routes {
		api.Handle(p, site)
	}
	if cfg.Payments.SMS == "twilio" && cfg.Payments.TwilioCallback != "" {
		cb, err := sms.NewCallback(cfg.Payments.smsConfig(), &postgres.Payments{DB: m.DB}, log.With("component", "sms"))
		if err != nil {
			return err
		}
		api.Handle("POST "+smsCallbackPath, cb)
	}
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
	devSMS := &postgres.DevSMS{DB: m.DB}
	var sender payment.Sender = devSMS
	if cfg.Payments.SMS == "twilio" {
		tw, err := sms.New(cfg.Payments.smsConfig(), log.With("component", "sms"))
		if err != nil {
			return nil, err
		}
		sender = tw
	}
	if m.Auth, err = auth.New(&postgres.Auth{DB: m.DB}, sender, auth.Config{
		Key: key, KeyID: "k1", SessionTTL: cfg.Auth.SessionTTL, Argon2: argon, Logger: log.With("component", "auth"),
	}); err != nil {
		return nil, err
	}
	if m.Billing, err = billing.New(&postgres.Billing{DB: m.DB}, billing.Config{}, log.With("component", "billing")); err != nil {
		return nil, err
	}
	pays := &postgres.Payments{DB: m.DB}
	if err := m.startPayments(pays, sender, key); err != nil {
		return nil, err
	}
	if err := m.startAlerts(sender); err != nil {
		return nil, err
	}
	api := &httpapi.APIConfig{
		Auth: m.Auth, Portal: &postgres.Portal{DB: m.DB}, Usage: m.Influx, Bills: m.Billing, Devices: m.Devices,
		Payments: m.Payments, PaymentSetup: m.Setup, PaymentLog: pays,
		Fleet: fleet{m}, Alerts: m.Alerts,
		OpenAPI: docs.OpenAPI, CookieSecure: cfg.Auth.CookieSecure,
	}
	if cfg.Payments.SMS == "dev" {
		api.DevInbox = devSMS
	}
	return api, nil
}

// startAlerts builds the alert service and, unless alerts are off on this
// node, runs it: outbox events to alerts, the periodic rules and alarms,
// and the notification sender (SMS through the same sender as payments).
func (m *Main) startAlerts(sender payment.Sender) error {
	cfg, err := m.Config.Alerts.Config()
	if err != nil {
		return err
	}
	cfg.Logger, cfg.SMSProvider = m.Logger.With("component", "alerts"), m.Config.Payments.SMS
	if m.Alerts, err = alert.New(alert.Deps{
		Store: &postgres.Alerts{DB: m.DB}, Outbox: &postgres.Outbox{DB: m.DB}, Sender: sender, Lag: m.Pipeline,
		Probes: []alert.Probe{{Name: "postgres", Check: m.DB.Ping}, {Name: "influxdb", Check: m.Influx.Ping}},
	}, cfg); err != nil {
		return err
	}
	if !m.Config.Alerts.Off {
		m.background(m.Alerts.Run)
	}
	return nil
}

// startPayments builds the payment service and starts its loops: auto-pay
// and ledger postings from the outbox, re-issue of unsettled charges and
// expiry of unconfirmed payments, and the accrual of running cycles that
// raises threshold events.
func (m *Main) startPayments(store *postgres.Payments, sender payment.Sender, key []byte) error {
	cfg, log := m.Config.Payments, m.Logger.With("component", "payments")
	// The OTP key is derived from the server key, so payment codes and
	// sign-in codes never share a MAC key.
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("meterflow payment codes"))
	issuer, err := otp.NewIssuer(otp.DefaultPolicy(), mac.Sum(nil), "k1", time.Now)
	if err != nil {
		return err
	}
	pc := payment.DefaultConfig()
	pc.Payee, pc.ConfirmWithin, pc.SMSProvider, pc.Gateway = cfg.Payee, cfg.ConfirmDeadline, cfg.SMS, cfg.Gateway
	var gw payment.Gateway
	switch cfg.Gateway {
	case "sandbox":
		log.Warn("payments go through the sandbox gateway: no real money moves")
		gw = &sandbox.Gateway{}
	case "stripe":
		if gw, err = stripegw.New(cfg.stripeConfig(), log.With("gateway", "stripe")); err != nil {
			return err
		}
	default:
		return fmt.Errorf("payment-gateway: %q is not known", cfg.Gateway)
	}
	if m.Payments, err = payment.New(store, gw, sender, issuer, pc, log, nil); err != nil {
		return err
	}
	m.Setup = m.Payments.NewSetup(store, cfg.PhoneRegion)
	if in, ok := gw.(payment.MethodInspector); ok {
		m.Setup.Inspector = in
	}
	ob := &postgres.Outbox{DB: m.DB}
	autopay, err := outbox.New(ob, outbox.Config{Name: "autopay", Poll: cfg.OutboxPoll, Logger: log}, m.Setup.HandleAutopayEvent)
	if err != nil {
		return err
	}
	ledgerPoster, err := outbox.New(ob, outbox.Config{Name: "ledger", Poll: cfg.OutboxPoll, Batch: 500, Logger: log}, payment.PostBillHandler(store))
	if err != nil {
		return err
	}
	m.background(func(ctx context.Context) {
		every(ctx, time.Hour, func() {
			if n, err := m.Auth.Cleanup(ctx); err != nil {
				log.Warn("sign-in cleanup", "err", err)
			} else {
				log.Debug("sign-in cleanup", "removed", n)
			}
		})
	})
	m.background(autopay.Run)
	m.background(ledgerPoster.Run)
	m.background(func(ctx context.Context) {
		every(ctx, cfg.RecoverEvery, func() {
			if n, err := m.Payments.Recover(ctx); err != nil {
				log.Warn("payment recovery", "err", err)
			} else if n > 0 {
				log.Info("charges re-issued", "payments", n)
			}
			if n, err := m.Payments.ExpireDue(ctx); err != nil {
				log.Warn("payment expiry", "err", err)
			} else if n > 0 {
				log.Info("payments expired", "payments", n)
			}
		})
	})
	if cfg.AccrualEvery > 0 {
		m.background(func(ctx context.Context) {
			every(ctx, cfg.AccrualEvery, func() {
				if sum, err := m.Billing.UpdateAccruals(ctx); err != nil {
					log.Warn("accrual update", "err", err)
				} else {
					log.Debug("accruals updated", "summary", sum)
				}
				if n, err := m.Billing.MarkOverdue(ctx); err != nil {
					log.Warn("overdue bills", "err", err)
				} else if n > 0 {
					log.Info("bills overdue", "bills", n)
				}
			})
		})
	}
	return nil
}

// background runs fn until the server closes; Close waits for it.
func (m *Main) background(fn func(context.Context)) {
	m.bgWG.Add(1)
	go func() {
		defer m.bgWG.Done()
		fn(m.bgCtx)
	}()
}

// every runs fn now and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		fn()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fleet reads the live figures of the running server for the operators'
// stream (/api/v1/fleet/live): every value is an atomic read of a counter
// the broker, the front, the pipeline or the journal keeps anyway.
type fleet struct{ m *Main }

var _ httpapi.Fleet = fleet{}

func (f fleet) FleetCounters() httpapi.FleetCounters {
	c := httpapi.FleetCounters{Readings: map[string]uint64{}}
	if f.m.Broker != nil {
		c.ConnectedMeters = f.m.Broker.Connected()
	}
	if f.m.Front != nil {
		for u, n := range f.m.Front.Readings() {
			c.Readings[string(u)] = n
		}
	}
	if f.m.Pipeline != nil {
		c.LagRecords = f.m.Pipeline.Lag()
		c.StoreDelay = f.m.Pipeline.StoreDelay()
	}
	if f.m.Journal != nil {
		c.JournalPendingBytes = f.m.Journal.Stats().PendingBytes
	}
	return c
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
		m.bgWG.Wait()
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
