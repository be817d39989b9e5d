// Command firmware-sim is a fleet of simulated smart meters and a load
// generator for the Meterflow broker: each meter connects with its own
// credentials, measures a realistic household (package profile) and
// publishes its readings in protocol v1, keeping them through outages
// (package fleet).
//
//	go run ./firmware-sim --credentials meters.csv --speed 1440 --duration 10m
//	go run ./firmware-sim --credentials meters.csv --rate 20000 --duration 1m --acked-log acked.csv
//	go run ./firmware-sim --credentials meters.csv --broker tls://host:8883 --tls-ca ca.pem --tls-cert-dir certs/
//
// It prints a live status line on stderr when stderr is a terminal and a
// JSON summary on stdout at the end. At start it raises its open file
// limit to the hard limit (every meter holds a socket); raise the hard
// limit itself (ulimit -Hn, LimitNOFILE) for fleets past it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/meterflow/meterflow/firmware-sim/fleet"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "firmware-sim:", err)
		os.Exit(1)
	}
}

// options are the flags that do not map straight onto fleet.Config.
type options struct {
	credentials string
	sourceAddrs string
	start       string
	timezone    string
	progress    string
	logLevel    string
}

func parseFlags(args []string, stderr io.Writer) (fleet.Config, options, error) {
	cfg := fleet.DefaultConfig()
	var o options
	fs := flag.NewFlagSet("firmware-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: firmware-sim --credentials FILE [flags]\n\n"+
			"Simulates a fleet of smart meters publishing readings to a Meterflow broker\n"+
			"and prints a JSON summary of the run on stdout.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	qos := uint(cfg.QoS)

	fs.StringVar(&o.credentials, "credentials", "", "CSV `file` with header meter_id,utility,token (from `meterflow meters provision-bulk`; the token may be left out with --tls-cert-dir); required")
	fs.IntVar(&cfg.Meters, "meters", 0, "use only the first `N` meters of the credentials (0: all)")
	fs.StringVar(&cfg.Broker, "broker", cfg.Broker, "broker `URL`: tcp://host:1883 or tls://host:8883")
	fs.UintVar(&qos, "qos", qos, "QoS of the readings, 0 or 1 (only 1 is acknowledged)")
	fs.BoolVar(&cfg.Persistent, "persistent", cfg.Persistent, "persistent sessions (CleanSession false)")
	fs.DurationVar(&cfg.KeepAlive, "keepalive", cfg.KeepAlive, "MQTT keep-alive (0 disables it and saves a goroutine per connection)")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", cfg.ConnectTimeout, "timeout of the TCP, TLS and MQTT handshakes")
	fs.DurationVar(&cfg.AckTimeout, "ack-timeout", cfg.AckTimeout, "wait for a PUBACK; a publish not acknowledged in time on a live connection counts as rejected")
	fs.StringVar(&cfg.CAFile, "tls-ca", "", "CA bundle `file` to verify the broker (default: system roots)")
	fs.StringVar(&cfg.CertFile, "tls-cert", "", "client certificate `file` (PEM) for every meter")
	fs.StringVar(&cfg.CertDir, "tls-cert-dir", "", "`directory` of per-meter client certificates, {id}.pem and {id}-key.pem (from `meterflow meters certs`): each meter authenticates with its own and sends no password")
	fs.StringVar(&cfg.KeyFile, "tls-key", "", "client key `file` (PEM)")
	fs.BoolVar(&cfg.InsecureSkipVerify, "tls-insecure", false, "skip verifying the broker's certificate (development only)")
	fs.StringVar(&cfg.ServerName, "tls-server-name", "", "`name` to verify the broker's certificate against (default: the broker host)")
	fs.StringVar(&o.sourceAddrs, "source-addrs", "", "comma-separated local `addresses` to connect from, round-robin by meter (about 28,000 connections each to one server address)")

	fs.DurationVar(&cfg.Interval, "interval", cfg.Interval, "interval between a meter's readings (simulated time)")
	fs.Float64Var(&cfg.Speed, "speed", cfg.Speed, "simulated time per real time: 1440 is a day per minute (never ahead of the wall clock)")
	fs.StringVar(&o.start, "start", "", "simulated start `time`, RFC 3339 (default: now at speed 1, else duration×speed ago, a year ago in load mode)")
	fs.BoolVar(&cfg.Burst, "burst", cfg.Burst, "send on the interval boundary instead of spreading meters across the interval")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of households and faults")
	fs.StringVar(&o.timezone, "timezone", "UTC", "households' time `zone` (IANA name)")
	fs.Float64Var(&cfg.Profile.MeanDailyKWh, "mean-daily-kwh", cfg.Profile.MeanDailyKWh, "fleet mean electricity use per household per day (kWh)")
	fs.Float64Var(&cfg.Profile.SolarShare, "solar-share", cfg.Profile.SolarShare, "share of electricity meters with solar export (1-0:2.8.0)")
	fs.Float64Var(&cfg.Profile.ElectricHeatingShare, "electric-heating-share", cfg.Profile.ElectricHeatingShare, "share of electrically heated homes")
	fs.Float64Var(&cfg.Profile.CoolingShare, "cooling-share", cfg.Profile.CoolingShare, "share of homes with air conditioning")
	fs.Float64Var(&cfg.Profile.MeanLitresPerPerson, "litres-per-person", cfg.Profile.MeanLitresPerPerson, "mean water use per person per day (l)")
	fs.Float64Var(&cfg.Profile.LeakShare, "leak-share", cfg.Profile.LeakShare, "share of water meters behind a leak")
	fs.Float64Var(&cfg.Profile.MeanYearlyGasM3, "gas-m3-per-year", cfg.Profile.MeanYearlyGasM3, "fleet mean gas use per household per year (m3)")

	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "load mode: messages per second across the fleet, 0 as fast as acknowledgements allow; negative: paced by the simulated clock")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of the run (0: until interrupted)")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "time meters get after the run to send what they hold")
	fs.Float64Var(&cfg.ConnectRate, "connect-rate", cfg.ConnectRate, "new connections per second across the fleet, reconnections included (0: no limit)")
	fs.DurationVar(&cfg.ReconnectMin, "reconnect-min", cfg.ReconnectMin, "first reconnect backoff (jittered, doubling)")
	fs.DurationVar(&cfg.ReconnectMax, "reconnect-max", cfg.ReconnectMax, "largest reconnect backoff")
	fs.IntVar(&cfg.Buffer, "buffer", cfg.Buffer, "messages a meter keeps unacknowledged before dropping the oldest")
	fs.IntVar(&cfg.BatchMax, "batch-max", cfg.BatchMax, "messages per backlog publish (b form, at most 96)")

	fs.Float64Var(&cfg.Faults.Duplicate, "fault-duplicate", 0, "probability that a publish is sent twice (same seq)")
	fs.Float64Var(&cfg.Faults.OutOfOrder, "fault-out-of-order", 0, "probability that a message is sent after the next one")
	fs.Float64Var(&cfg.Faults.Rollover, "fault-rollover", 0, "share of meters whose register starts just short of rolling over")
	fs.Float64Var(&cfg.Faults.Spike, "fault-spike", 0, "probability that a message carries an implausible register jump")
	fs.Float64Var(&cfg.Faults.ClockSkew, "fault-clock-skew", 0, "share of meters whose clock is off by up to --max-skew")
	fs.DurationVar(&cfg.Faults.MaxSkew, "max-skew", cfg.Faults.MaxSkew, "largest clock skew")
	fs.Float64Var(&cfg.Faults.Offline, "fault-offline", 0, "probability per reading that a meter loses its network")
	fs.DurationVar(&cfg.Faults.OfflineMax, "offline-max", cfg.Faults.OfflineMax, "longest offline period (simulated time)")
	fs.Float64Var(&cfg.Faults.Corrupt, "fault-corrupt", 0, "probability that a message is preceded by a corrupted copy")
	fs.Float64Var(&cfg.Faults.WrongCredentials, "fault-wrong-credentials", 0, "share of meters connecting with a wrong token (with --tls-cert-dir: with another meter's certificate)")

	fs.StringVar(&cfg.AckedLog, "acked-log", "", "write each acknowledged message (meter_id,seq,time) to `file`")
	fs.StringVar(&o.progress, "progress", "auto", "live status line on stderr: auto (when a terminal), on or off")
	fs.StringVar(&o.logLevel, "log-level", "warn", "log level on stderr: debug, info, warn or error")

	if err := fs.Parse(args); err != nil {
		return cfg, o, err
	}
	if fs.NArg() > 0 {
		return cfg, o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if qos > 1 {
		return cfg, o, fmt.Errorf("qos %d is not 0 or 1", qos)
	}
	cfg.QoS = byte(qos)

	var errs []error
	if o.credentials == "" {
		errs = append(errs, errors.New("--credentials is required"))
	}
	for _, a := range strings.Split(o.sourceAddrs, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		ip := net.ParseIP(a)
		if ip == nil {
			errs = append(errs, fmt.Errorf("source address %q is not an IP address", a))
			continue
		}
		cfg.SourceAddrs = append(cfg.SourceAddrs, ip)
	}
	if o.start != "" {
		t, err := time.Parse(time.RFC3339, o.start)
		if err != nil {
			errs = append(errs, fmt.Errorf("--start: %w", err))
		}
		cfg.Start = t
	}
	loc, err := time.LoadLocation(o.timezone)
	if err != nil {
		errs = append(errs, fmt.Errorf("--timezone: %w", err))
	}
	cfg.Profile.Location = loc
	return cfg, o, errors.Join(errs...)
}

func run(args []string, stdout, stderr io.Writer) error {
	cfg, o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	switch o.progress {
	case "on":
		cfg.Progress = stderr
	case "auto":
		if isTerminal(stderr) {
			cfg.Progress = stderr
		}
	case "off":
	default:
		return fmt.Errorf("--progress %q is not auto, on or off", o.progress)
	}

	creds, err := fleet.LoadCredentials(o.credentials, cfg.CertDir == "")
	if err != nil {
		return err
	}
	meters := len(creds)
	if cfg.Meters > 0 {
		meters = min(meters, cfg.Meters)
	}
	limit, err := fleet.RaiseFileLimit()
	switch {
	case err != nil:
		cfg.Logger.Warn("could not raise the open file limit", "err", err)
	case limit < uint64(meters)+64:
		cfg.Logger.Warn("open file limit is below the fleet size; raise the hard limit (ulimit -Hn)", "limit", limit, "meters", meters)
	}

	f, err := fleet.New(cfg, creds)
	if err != nil {
		return err
	}
	// The first interrupt ends the run (the meters drain); a second one
	// kills the process.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()

	sum, runErr := f.Run(ctx)
	if sum.Meters == 0 {
		return runErr // the run did not start
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sum); err != nil {
		return err
	}
	return runErr
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
