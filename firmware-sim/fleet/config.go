package fleet

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"time"

	"github.com/meterflow/meterflow/firmware-sim/profile"
)

// Config is everything a fleet run needs. Start from DefaultConfig; flags
// map onto it one to one (see firmware-sim --help).
type Config struct {
	// Broker is the server's URL: tcp://host:1883, or tls://host:8883
	// (also ssl:// and mqtts://) for TLS.
	Broker string
	// QoS of the readings: 1 (acknowledged, the default) or 0.
	QoS byte
	// Persistent asks the broker to keep each meter's session across
	// connections (CleanSession false).
	Persistent bool
	// KeepAlive is the MQTT keep-alive; 0 disables it (one goroutine
	// fewer per connection, but dead connections are then noticed only
	// when a publish fails).
	KeepAlive time.Duration
	// ConnectTimeout bounds the TCP/TLS and MQTT handshakes.
	ConnectTimeout time.Duration
	// AckTimeout is how long a meter waits for a PUBACK. A publish not
	// acknowledged in time on a connection that stays up was refused by
	// the server (MQTT 3.1.1 has no negative acknowledgement): it counts
	// as rejected and is not resent unchanged.
	AckTimeout time.Duration

	// TLS settings, used with a tls:// broker.
	CAFile             string // CA bundle to verify the server; empty means the system roots
	CertFile, KeyFile  string // one client certificate for every meter, optional
	InsecureSkipVerify bool   // for development only
	ServerName         string // overrides the broker host name for verification
	// CertDir holds each meter's own client certificate and key,
	// {id}.pem and {id}-key.pem (as `meterflow meters certs` writes
	// them). Meters then authenticate by certificate and send no password,
	// so the credentials need no tokens. Needs a tls:// broker.
	CertDir string

	// SourceAddrs are local addresses to connect from, used round-robin
	// by meter. One source address reaches one server address with at
	// most about 28,000 connections (the ephemeral port range), so a
	// fleet of 100,000 needs four or more (on Linux any 127.0.0.x works
	// for a server on loopback).
	SourceAddrs []net.IP

	// Interval between a meter's readings (simulated time).
	Interval time.Duration
	// Speed is how much faster than real time the simulation runs:
	// 1440 is a simulated day per real minute. The simulated clock never
	// runs ahead of the wall clock.
	Speed float64
	// Start is the simulated time the meters are installed at. Zero
	// means now at speed 1; otherwise Duration×Speed before now (seven
	// days when Duration is 0), and a year before now in load mode.
	Start time.Time
	// Burst makes every meter send on the interval boundary instead of
	// at its own offset into the interval.
	Burst bool
	// Seed makes the run reproducible: readings and faults depend only on
	// it, the meter IDs and the simulated time.
	Seed uint64
	// Profile shapes the households.
	Profile profile.Options

	// Rate switches to load mode when 0 or more: meters publish one
	// reading after another as fast as their acknowledgements come back,
	// their simulated clocks running ahead independently (but never past
	// the wall clock), limited to Rate messages per second across the
	// fleet (0: no limit). A negative Rate (the default) paces meters by
	// the simulated clock.
	Rate float64
	// Duration of the run (real time); 0 runs until the context ends.
	Duration time.Duration
	// Drain is how long meters may take after the run to send what they
	// still hold before they are stopped.
	Drain time.Duration
	// Meters limits the fleet to the first Meters credentials; 0 means
	// all of them.
	Meters int
	// ConnectRate limits new connections per second across the fleet,
	// reconnections included; 0 means no limit.
	ConnectRate float64
	// ReconnectMin and ReconnectMax bound the jittered exponential
	// backoff between connection attempts of one meter.
	ReconnectMin, ReconnectMax time.Duration
	// Buffer is the most messages a meter keeps unacknowledged; past it
	// the oldest are dropped.
	Buffer int
	// BatchMax is the most messages one backlog publish carries (the
	// protocol allows 96).
	BatchMax int

	// Faults to inject.
	Faults Faults

	// AckedLog, when set, is a file that receives one line per
	// acknowledged message: meter_id,seq,time.
	AckedLog string
	// Progress, when set, receives a live one-line status every second.
	Progress io.Writer
	// Logger receives warnings and errors; nil discards them.
	Logger *slog.Logger
}

// Faults are the faults a fleet injects. Probabilities are per message
// generated unless said otherwise; shares are of meters, chosen by seed.
type Faults struct {
	// Duplicate is the probability that a publish is sent a second time
	// after its acknowledgement (same payload, same seq).
	Duplicate float64
	// OutOfOrder is the probability that a message is held back and sent
	// after the next one.
	OutOfOrder float64
	// Rollover is the share of meters whose register starts a day or two
	// short of its width.
	Rollover float64
	// Spike is the probability that a message carries an implausible
	// jump of the primary register (and of the first instantaneous value)
	// that the next message does not.
	Spike float64
	// ClockSkew is the share of meters whose clock is off by up to
	// MaxSkew either way.
	ClockSkew float64
	MaxSkew   time.Duration
	// Offline is the probability, at each reading, that a connected meter
	// loses its network for one interval to OfflineMax of simulated time
	// (in load mode, that time divided by Speed). Outages end when the run
	// does, so that meters can hand over their backlog in the drain.
	Offline    float64
	OfflineMax time.Duration
	// Corrupt is the probability that a message is preceded by a
	// corrupted copy of it (truncated, wrong version, unknown channel or
	// not JSON), which the server must refuse.
	Corrupt float64
	// WrongCredentials is the share of meters that connect with a wrong
	// token, which the server must refuse.
	WrongCredentials float64
}

// DefaultConfig returns the defaults of every setting.
func DefaultConfig() Config {
	return Config{
		Broker:         "tcp://127.0.0.1:1883",
		QoS:            1,
		KeepAlive:      60 * time.Second,
		ConnectTimeout: 10 * time.Second,
		AckTimeout:     30 * time.Second,
		Interval:       15 * time.Minute,
		Speed:          1,
		Seed:           1,
		Profile:        profile.DefaultOptions(),
		Rate:           -1,
		Drain:          10 * time.Second,
		ConnectRate:    500,
		ReconnectMin:   time.Second,
		ReconnectMax:   2 * time.Minute,
		Buffer:         960,
		BatchMax:       96,
		Faults: Faults{
			MaxSkew:    5 * time.Minute,
			OfflineMax: 2 * time.Hour,
		},
	}
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if u, err := url.Parse(c.Broker); err != nil || u.Host == "" {
		add("broker %q is not a URL such as tcp://host:1883", c.Broker)
	} else if !isTLSScheme(u.Scheme) && u.Scheme != "tcp" && u.Scheme != "mqtt" {
		add("broker scheme %q is not tcp, mqtt, tls, ssl or mqtts", u.Scheme)
	}
	if c.QoS > 1 {
		add("qos %d is not 0 or 1", c.QoS)
	}
	if c.KeepAlive < 0 || (c.KeepAlive > 0 && c.KeepAlive < time.Second) || c.KeepAlive > 18*time.Hour {
		add("keep-alive %v is not 0 or between 1s and 18h", c.KeepAlive)
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			add("%s %v is not positive", name, d)
		}
	}
	positive("connect timeout", c.ConnectTimeout)
	positive("ack timeout", c.AckTimeout)
	positive("reconnect min", c.ReconnectMin)
	if c.ReconnectMax < c.ReconnectMin {
		add("reconnect max %v is below reconnect min %v", c.ReconnectMax, c.ReconnectMin)
	}
	if c.Interval < time.Second {
		add("interval %v is below 1s", c.Interval)
	}
	if !(c.Speed >= 1e-3 && c.Speed <= 1e9) {
		add("speed %v is not between 0.001 and 1e9", c.Speed)
	}
	if c.Duration < 0 {
		add("duration %v is negative", c.Duration)
	}
	if c.Drain < 0 {
		add("drain %v is negative", c.Drain)
	}
	if c.Meters < 0 {
		add("meters %d is negative", c.Meters)
	}
	if c.ConnectRate < 0 {
		add("connect rate %v is negative", c.ConnectRate)
	}
	if c.Buffer < 1 {
		add("buffer %d is below 1", c.Buffer)
	}
	if c.BatchMax < 1 || c.BatchMax > 96 {
		add("batch max %d is not between 1 and 96", c.BatchMax)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		add("a client certificate needs both a cert and a key file")
	}
	if c.CertDir != "" {
		if c.CertFile != "" {
			add("a certificate directory and a single client certificate exclude each other")
		}
		if u, err := url.Parse(c.Broker); err == nil && !isTLSScheme(u.Scheme) {
			add("a certificate directory needs a tls:// broker, not %s://", u.Scheme)
		}
	}
	if err := c.Profile.Validate(); err != nil {
		errs = append(errs, err)
	}
	f := c.Faults
	for _, p := range []struct {
		name string
		v    float64
	}{
		{"duplicate", f.Duplicate}, {"out-of-order", f.OutOfOrder}, {"rollover", f.Rollover},
		{"spike", f.Spike}, {"clock skew", f.ClockSkew}, {"offline", f.Offline},
		{"corrupt", f.Corrupt}, {"wrong credentials", f.WrongCredentials},
	} {
		if !(p.v >= 0 && p.v <= 1) {
			add("%s fault %v is not a probability between 0 and 1", p.name, p.v)
		}
	}
	if f.ClockSkew > 0 && f.MaxSkew <= 0 {
		add("clock skew needs a positive max skew")
	}
	if f.Offline > 0 && f.OfflineMax <= 0 {
		add("offline periods need a positive offline max")
	}
	return errors.Join(errs...)
}

func isTLSScheme(s string) bool {
	switch s {
	case "tls", "ssl", "mqtts", "tcps", "mqtt+ssl":
		return true
	}
	return false
}

// loadMode reports whether the run is a load test (see Config.Rate).
func (c Config) loadMode() bool { return c.Rate >= 0 }

// start returns the simulated start time of a run beginning at now.
func (c Config) start(now time.Time) time.Time {
	switch {
	case !c.Start.IsZero():
		return c.Start
	case c.loadMode():
		return now.AddDate(-1, 0, 0)
	case c.Speed == 1:
		return now
	case c.Duration > 0:
		back := math.Min(float64(c.Duration)*c.Speed, float64(50*365*24*time.Hour))
		return now.Add(-time.Duration(back))
	default:
		return now.AddDate(0, 0, -7)
	}
}
