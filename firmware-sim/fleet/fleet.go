package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meterflow/meterflow/firmware-sim/profile"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/pki"
)

// keyFaults seeds a meter's fault and jitter generator, apart from its
// household's.
const keyFaults uint64 = 0x6661756c74732d31

// Fleet is a simulated fleet of meters. Create it with New and use it for
// one Run.
type Fleet struct {
	cfg   Config
	creds []Credential
	log   *slog.Logger
	dial  *dialing

	clock     simClock
	rate      *limiter // messages, in load mode
	connLimit *limiter // new connections
	meters    []*sim
	stats     stats
	acked     *ackLog
	strays    sync.WaitGroup

	warnedRefused, warnedConnect atomic.Bool
}

// New checks cfg and prepares a fleet of the meters of creds (the first
// cfg.Meters of them when that is set).
func New(cfg Config, creds []Credential) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(creds) == 0 {
		return nil, fmt.Errorf("no meters")
	}
	if cfg.Meters > 0 && cfg.Meters < len(creds) {
		creds = creds[:cfg.Meters]
	}
	dial, err := newDialing(cfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	f := &Fleet{cfg: cfg, creds: creds, log: log, dial: dial}
	if cfg.loadMode() {
		f.rate = newLimiter(cfg.Rate, int(cfg.Rate/20))
	}
	f.connLimit = newLimiter(cfg.ConnectRate, int(cfg.ConnectRate/10))
	return f, nil
}

// Run runs the fleet until cfg.Duration has passed or ctx ends, then lets
// the meters send what they hold for up to cfg.Drain, disconnects them
// and returns the summary. An error means the run could not start or its
// acknowledged log could not be written; the summary is valid either way
// when the run started.
func (f *Fleet) Run(ctx context.Context) (Summary, error) {
	cfg := f.cfg
	if cfg.AckedLog != "" {
		l, err := openAckLog(cfg.AckedLog)
		if err != nil {
			return Summary{}, err
		}
		f.acked = l
	}
	runtime.GC()
	heap0, stack0 := memNow()

	realStart := time.Now()
	f.clock = simClock{realStart: realStart, simStart: cfg.start(realStart), speed: cfg.Speed}
	if err := f.buildMeters(); err != nil {
		_ = f.acked.close()
		return Summary{}, err
	}
	if n := len(f.meters); n > 28000*max(1, len(cfg.SourceAddrs)) {
		f.log.Warn("more meters than one source address can connect to one server address; use more source addresses",
			"meters", n, "source_addrs", len(cfg.SourceAddrs))
	}

	// hard ends the meters; it outlives ctx by the drain.
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range f.meters {
		wg.Go(func() { s.run(hard, stop) })
	}
	progCtx, stopProgress := context.WithCancel(hard)
	var progWG sync.WaitGroup
	if cfg.Progress != nil {
		progWG.Go(func() { f.progress(progCtx, cfg.Progress) })
	}

	var deadline <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	select {
	case <-ctx.Done():
	case <-deadline:
	}

	connected := f.stats.connected.Load()
	runtime.GC()
	heap1, stack1 := memNow()
	goroutines := runtime.NumGoroutine()
	close(stop)

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	drain := time.NewTimer(cfg.Drain)
	select {
	case <-done:
	case <-drain.C:
		f.log.Warn("drain time is up; stopping meters that still hold messages", "drain", cfg.Drain)
		cancelHard()
		<-done
	}
	drain.Stop()
	// Stray publishes (duplicates, corrupted copies) end within the ack
	// timeout; a run that ran out of drain time does not wait for them.
	strays := make(chan struct{})
	go func() { f.strays.Wait(); close(strays) }()
	select {
	case <-strays:
	case <-time.After(cfg.Drain):
		cancelHard()
		<-strays
	}
	end := time.Now()
	stopProgress()
	progWG.Wait()

	sum := f.summary(end.Sub(realStart), connected)
	sum.Memory = Memory{
		HeapBytes:  heap1,
		StackBytes: stack1,
		Goroutines: goroutines,
	}
	if grown := int64(heap1+stack1) - int64(heap0+stack0); grown > 0 && len(f.meters) > 0 {
		sum.Memory.BytesPerMeter = uint64(grown) / uint64(len(f.meters))
	}
	return sum, f.acked.close()
}

// buildMeters creates the simulated meters and draws their per-meter
// faults.
func (f *Fleet) buildMeters() error {
	cfg := f.cfg
	opts := cfg.Profile
	opts.RolloverShare = max(opts.RolloverShare, cfg.Faults.Rollover)
	simStart := f.clock.simStart
	first := simStart.Truncate(cfg.Interval).Add(cfg.Interval)
	f.meters = make([]*sim, 0, len(f.creds))
	var certErrs []error
	for i, c := range f.creds {
		model, err := profile.New(c.Utility, c.MeterID, cfg.Seed, opts)
		if err != nil {
			return fmt.Errorf("meter %s: %w", c.MeterID, err)
		}
		model.Advance(simStart)
		rng := rand.New(rand.NewPCG(profile.MeterSeed(cfg.Seed, c.MeterID), keyFaults))
		s := &sim{
			f:        f,
			id:       c.MeterID,
			password: c.Token,
			topic:    "meters/" + c.MeterID + "/readings",
			model:    model,
			channels: model.Channels(),
			rng:      rng,
			dialer:   f.dial.dialers[i%len(f.dial.dialers)],
			next:     first,
			queue:    newBacklog(cfg.Buffer),
		}
		for s.firstIn < len(s.channels) {
			if info, _ := meter.Lookup(s.channels[s.firstIn]); info.Kind != meter.Register {
				break
			}
			s.firstIn++
		}
		if model.Traits().NearRollover {
			f.stats.rollMeters.Add(1)
		}
		wrong, skewed := rng.Float64(), rng.Float64()
		skew := time.Duration((2*rng.Float64() - 1) * float64(cfg.Faults.MaxSkew)).Truncate(time.Millisecond)
		offset := time.Duration(rng.Int64N(int64(cfg.Interval))).Truncate(time.Millisecond)
		wrongCreds := wrong < cfg.Faults.WrongCredentials
		if wrongCreds {
			s.password = c.Token + "-not-my-token"
			f.stats.wrongCreds.Add(1)
		}
		if cfg.CertDir != "" {
			// Meters authenticate by certificate; a meter with wrong
			// credentials presents the next meter's, which names another
			// meter (a fleet of one presents none).
			s.password = ""
			certOf := c.MeterID
			if wrongCreds {
				certOf = f.creds[(i+1)%len(f.creds)].MeterID
			}
			if !wrongCreds || certOf != c.MeterID {
				cert, err := tls.LoadX509KeyPair(pki.CertPath(cfg.CertDir, certOf), pki.KeyPath(cfg.CertDir, certOf))
				if err != nil {
					certErrs = append(certErrs, fmt.Errorf("meter %s: %w", certOf, err))
					if len(certErrs) >= 10 {
						return fmt.Errorf("client certificates: %w", errors.Join(append(certErrs, errors.New("too many errors"))...))
					}
					continue
				}
				s.tls = f.dial.meterTLS(cert)
			}
		}
		if skewed < cfg.Faults.ClockSkew {
			if skew == 0 {
				skew = time.Second
			}
			s.skew = skew
			f.stats.skewedMeters.Add(1)
		}
		if !cfg.Burst {
			s.offset = offset
		}
		f.meters = append(f.meters, s)
	}
	if err := errors.Join(certErrs...); err != nil {
		return fmt.Errorf("client certificates: %w", err)
	}
	return nil
}

func (f *Fleet) summary(d time.Duration, connected int64) Summary {
	s := &f.stats
	lat := s.latency.snapshot()
	sum := Summary{
		Meters:        len(f.meters),
		Connected:     connected,
		Sent:          s.sent.Load(),
		Acked:         s.acked.Load(),
		Failed:        s.failed.Load(),
		Rejected:      s.rejected.Load(),
		DurationS:     d.Seconds(),
		QoS:           f.cfg.QoS,
		Generated:     s.generated.Load(),
		MessagesSent:  s.msgsSent.Load(),
		MessagesAcked: s.msgsAcked.Load(),
		ReadingsAcked: s.readsAcked.Load(),
		Resent:        s.resent.Load(),
		Batches:       s.batches.Load(),
		Pending:       s.pending.Load(),
		Dropped:       s.dropped.Load(),
		Lost:          s.msgsLost.Load(),
		AckLatencyMs: Latency{
			P50: lat.quantile(0.50),
			P90: lat.quantile(0.90),
			P99: lat.quantile(0.99),
			Max: float64(lat.maxUs) / 1000,
		},
		Connects:         s.connects.Load(),
		ConnectRefused:   s.connectRefused.Load(),
		ConnectErrors:    s.connectErrors.Load(),
		ConnectionLosses: s.connectionLosses.Load(),
		Faults: FaultCounts{
			Duplicates:       s.duplicates.Load(),
			OutOfOrder:       s.outOfOrder.Load(),
			Spikes:           s.spikes.Load(),
			OfflinePeriods:   s.offline.Load(),
			Corrupted:        s.corrupted.Load(),
			SkewedMeters:     s.skewedMeters.Load(),
			RolloverMeters:   s.rollMeters.Load(),
			WrongCredentials: s.wrongCreds.Load(),
		},
	}
	if secs := d.Seconds(); secs > 0 {
		msgs, reads := sum.Acked, sum.ReadingsAcked
		if f.cfg.QoS == 0 {
			// Nothing is acknowledged at QoS 0: count what was written.
			msgs, reads = sum.Sent, s.readsSent.Load()
		}
		sum.MsgsPerS = float64(msgs) / secs
		sum.ReadingsPerS = float64(reads) / secs
	}
	return sum
}

// warnOnce logs msg the first time flag is raised: a fleet of 100,000
// meters would otherwise repeat it 100,000 times. The counters in the
// progress line and the summary carry the rest.
func (f *Fleet) warnOnce(flag *atomic.Bool, msg string, args ...any) {
	if flag.CompareAndSwap(false, true) {
		f.log.Warn(msg+" (further ones are only counted)", args...)
	}
}
