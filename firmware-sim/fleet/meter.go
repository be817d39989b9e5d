package fleet

import (
	"context"
	"crypto/tls"
	"math/rand/v2"
	"net"
	"time"

	"github.com/meterflow/meterflow/firmware-sim/profile"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/protocol"
)

// maxAbandoned is how many unacknowledged publishes a connection may
// collect before the meter reconnects: paho keeps the packet ID of each
// until its client goes away, and has 65,535 of them.
const maxAbandoned = 1000

// spikeJump is the implausible register jump of a spike fault: 1,000
// canonical units (kWh or m³) in one interval.
const spikeJump = 1_000_000

// sim is one simulated meter. Everything in it is owned by the meter's
// goroutine (run); it shares only the fleet's counters and limiters.
type sim struct {
	f        *Fleet
	id       string
	password string
	tls      *tls.Config // the meter's own, with its client certificate; nil: the fleet's
	topic    string
	model    *profile.Model
	channels []meter.Channel
	firstIn  int // index of the first instantaneous channel
	rng      *rand.Rand
	skew     time.Duration // clock skew fault
	offset   time.Duration // send offset into the interval (simulated time)
	dialer   *net.Dialer

	next    time.Time // boundary of the next reading (simulated time)
	queue   backlog
	held    *entry // held back by the out-of-order fault
	corrupt int    // corrupted copies to send before the next publish

	conn       *connection
	failures   int       // consecutive failed connection attempts
	retryAt    time.Time // earliest next connection attempt (real time)
	offlineEnd time.Time // end of a simulated outage (real time)
	refused    bool      // the server refused the credentials
	timer      *time.Timer
}

// seqOf is the sequence number of the reading at boundary t: the number
// of intervals since the Unix epoch. It goes up by one per message as
// the protocol asks, a rerun over the same simulated time sends the same
// messages under the same numbers (which the server deduplicates), and a
// run over other times never reuses one.
func (s *sim) seqOf(t time.Time) uint64 {
	return uint64(t.UnixMilli() / s.f.cfg.Interval.Milliseconds())
}

// run is the meter's life: measure when due, connect when disconnected,
// publish what the backlog holds, wait. When stop closes it sends what it
// still holds and returns; when ctx ends it returns at once.
func (s *sim) run(ctx context.Context, stop <-chan struct{}) {
	s.timer = time.NewTimer(time.Hour)
	s.timer.Stop()
	defer s.shutdown()
	stopping := false
	for ctx.Err() == nil {
		if !stopping {
			select {
			case <-stop:
				// The run is over: a simulated outage ends, so that the
				// meter can hand over what it holds.
				stopping = true
				s.release()
				s.offlineEnd = time.Time{}
			default:
			}
		}
		if s.conn != nil {
			select {
			case <-s.conn.lost:
				s.dropConn(true)
			default:
			}
		}
		now := time.Now()
		if !stopping {
			s.generateDue(now)
		}
		if stopping && (s.queue.len() == 0 || s.refused) {
			return
		}
		if s.conn == nil && !now.Before(s.retryAt) && !now.Before(s.offlineEnd) {
			s.connect(ctx)
			continue
		}
		if s.conn != nil && s.queue.len() > 0 {
			s.publishBacklog(ctx)
			continue
		}

		wake := now.Add(24 * time.Hour)
		if !stopping && (s.queue.len() == 0 || !s.f.cfg.loadMode()) {
			// (A load-mode meter measures only once its backlog is
			// empty: until then its due time does not wake it.)
			wake = s.due()
		}
		if s.conn == nil {
			wake = earliest(wake, later(s.retryAt, s.offlineEnd))
		}
		var lost <-chan struct{}
		if s.conn != nil {
			lost = s.conn.lost
		}
		stopC := stop
		if stopping {
			stopC = nil
		}
		s.timer.Reset(time.Until(wake))
		select {
		case <-s.timer.C:
		case <-lost:
		case <-stopC:
		case <-ctx.Done():
		}
		s.timer.Stop()
	}
}

// due returns the real time the next reading is due.
func (s *sim) due() time.Time {
	if s.f.cfg.loadMode() {
		return s.next
	}
	return s.f.clock.realAt(s.next.Add(s.offset))
}

// generateDue measures every reading that is due at real time now. In
// load mode a meter measures its next reading as soon as the last one is
// acknowledged, as long as it is not in the future.
func (s *sim) generateDue(now time.Time) {
	if s.f.cfg.loadMode() {
		for s.queue.len() == 0 && !s.next.After(now) {
			s.generate()
		}
		return
	}
	for !s.due().After(now) {
		s.generate()
	}
}

// generate measures the reading at the next boundary and applies the
// faults that strike messages.
func (s *sim) generate() {
	st := &s.f.stats
	fl := s.f.cfg.Faults
	t := s.next
	s.next = s.next.Add(s.f.cfg.Interval)
	readings := s.model.Advance(t)
	e := entry{seq: s.seqOf(t), ms: t.Add(s.skew).UnixMilli()}
	for i, r := range readings {
		e.vals[i] = r.Value
	}
	st.generated.Add(1)

	// Every draw is made whether or not its fault is on, so that turning
	// one fault on does not move the others.
	spike, corrupt, offline, reorder := s.rng.Float64(), s.rng.Float64(), s.rng.Float64(), s.rng.Float64()
	outage := time.Duration(s.rng.Int64N(int64(max(fl.OfflineMax, s.f.cfg.Interval)-s.f.cfg.Interval) + 1))
	if spike < fl.Spike {
		mod := s.model.RegisterMax() + 1
		e.vals[0] = (e.vals[0] + spikeJump) % mod
		if s.firstIn < len(readings) {
			e.vals[s.firstIn] *= 50
		}
		st.spikes.Add(1)
	}
	if corrupt < fl.Corrupt {
		s.corrupt++
	}
	if offline < fl.Offline && s.conn != nil {
		// The network goes away for one interval to OfflineMax of
		// simulated time; the meter keeps measuring. (A load-mode meter
		// has its own clock, so its outage lasts that time divided by
		// the speed.)
		length := s.f.cfg.Interval + outage
		s.conn.raw.cutOff()
		s.dropConn(true)
		if s.f.cfg.loadMode() {
			s.offlineEnd = time.Now().Add(time.Duration(float64(length) / s.f.cfg.Speed))
		} else {
			s.offlineEnd = s.f.clock.realAt(s.f.clock.now(time.Now()).Add(length))
		}
		st.offline.Add(1)
	}
	if reorder < fl.OutOfOrder && s.held == nil {
		s.held = &e
		st.outOfOrder.Add(1)
		return
	}
	s.push(e)
	s.release()
}

// release queues the message held back by the out-of-order fault.
func (s *sim) release() {
	if s.held != nil {
		s.push(*s.held)
		s.held = nil
	}
}

func (s *sim) push(e entry) {
	if s.queue.push(e) {
		s.f.stats.dropped.Add(1)
	}
}

// backoff returns the wait before the next connection attempt: equal
// jitter over an exponentially growing ceiling, so that a fleet that lost
// its server does not come back all at once.
func (s *sim) backoff() time.Duration {
	lo, hi := s.f.cfg.ReconnectMin, s.f.cfg.ReconnectMax
	ceiling := lo
	for i := 0; i < s.failures && ceiling < hi; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, hi)
	return ceiling/2 + time.Duration(s.rng.Int64N(int64(ceiling/2)+1))
}

func (s *sim) connect(ctx context.Context) {
	st := &s.f.stats
	if s.f.connLimit.wait(ctx) != nil {
		return
	}
	c, res, err := s.f.dial.connect(ctx, s.id, s.password, s.dialer, s.tls)
	switch res {
	case connectOK:
		s.conn, s.failures, s.refused = c, 0, false
		st.connects.Add(1)
		st.connected.Add(1)
		return
	case connectRefused:
		s.refused = true
		st.connectRefused.Add(1)
		s.f.warnOnce(&s.f.warnedRefused, "server refused a meter's credentials", "meter", s.id, "err", err)
	default:
		if ctx.Err() != nil {
			return
		}
		st.connectErrors.Add(1)
		s.f.warnOnce(&s.f.warnedConnect, "connection attempt failed", "meter", s.id, "err", err)
	}
	s.failures++
	s.retryAt = time.Now().Add(s.backoff())
}

// dropConn forgets the connection; lost says the network or the server
// ended it.
func (s *sim) dropConn(lost bool) {
	if s.conn == nil {
		return
	}
	s.conn = nil
	s.f.stats.connected.Add(-1)
	if lost {
		s.f.stats.connectionLosses.Add(1)
	}
	s.retryAt = time.Now().Add(s.backoff())
}

// publishBacklog publishes the oldest messages of the backlog, up to
// BatchMax of them, and waits for the outcome.
func (s *sim) publishBacklog(ctx context.Context) {
	st := &s.f.stats
	k := min(s.queue.len(), s.f.cfg.BatchMax)
	entries := make([]entry, k)
	for i := range k {
		e := s.queue.at(i)
		if e.sent {
			st.resent.Add(1)
		}
		e.sent = true
		entries[i] = *e
	}
	payload := s.encode(entries)
	if s.corrupt > 0 {
		s.corrupt--
		st.corrupted.Add(1)
		s.publishStray(ctx, corrupt(payload, s.rng))
		if s.conn == nil {
			return
		}
	}
	if k > 1 {
		st.batches.Add(1)
	}
	st.msgsSent.Add(int64(k))
	st.readsSent.Add(int64(k * len(s.channels)))

	switch res := s.publish(ctx, payload); res {
	case pubAcked:
		s.queue.pop(k)
		if s.f.cfg.QoS == 0 {
			return
		}
		st.msgsAcked.Add(int64(k))
		st.readsAcked.Add(int64(k * len(s.channels)))
		s.f.acked.write(s.id, entries)
		if s.rng.Float64() < s.f.cfg.Faults.Duplicate {
			st.duplicates.Add(1)
			s.publishStray(ctx, payload)
		}
	case pubTimeout:
		// Refused by the server: the protocol forbids sending the same
		// payload again, so the messages are given up.
		s.queue.pop(k)
		st.msgsLost.Add(int64(k))
		s.conn.abandoned++
		if s.conn.abandoned >= maxAbandoned {
			s.conn.client.Disconnect(0)
			s.dropConn(false)
			s.retryAt = time.Now()
		}
	case pubLost:
		s.dropConn(true)
	}
}

type pubResult int

const (
	pubAcked pubResult = iota
	pubLost
	pubTimeout
	pubAborted
)

// publish sends payload on the meter's connection and waits for its
// PUBACK (at QoS 0, for it to be written), the connection's loss, the ack
// timeout or the end of ctx, counting the outcome.
func (s *sim) publish(ctx context.Context, payload []byte) pubResult {
	st := &s.f.stats
	if s.f.rate.wait(ctx) != nil {
		return pubAborted
	}
	c := s.conn
	start := time.Now()
	tok := c.client.Publish(s.topic, s.f.cfg.QoS, false, payload)
	st.sent.Add(1)
	s.timer.Reset(s.f.cfg.AckTimeout)
	defer s.timer.Stop()
	select {
	case <-tok.Done():
		if tok.Error() != nil {
			st.failed.Add(1)
			return pubLost
		}
		if s.f.cfg.QoS > 0 {
			st.acked.Add(1)
			st.latency.record(time.Since(start))
		}
		return pubAcked
	case <-c.lost:
		st.failed.Add(1)
		return pubLost
	case <-s.timer.C:
		select {
		case <-c.lost:
			st.failed.Add(1)
			return pubLost
		default:
		}
		st.rejected.Add(1)
		return pubTimeout
	case <-ctx.Done():
		st.failed.Add(1)
		return pubAborted
	}
}

// publishStray sends a payload that is not in the backlog (a duplicate or
// a corrupted copy) and counts its outcome in the background, so that a
// server that rightly never acknowledges it does not hold the meter up.
func (s *sim) publishStray(ctx context.Context, payload []byte) {
	st := &s.f.stats
	if s.f.rate.wait(ctx) != nil {
		return
	}
	c := s.conn
	start := time.Now()
	tok := c.client.Publish(s.topic, s.f.cfg.QoS, false, payload)
	st.sent.Add(1)
	qos, timeout := s.f.cfg.QoS, s.f.cfg.AckTimeout
	s.f.strays.Go(func() {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-tok.Done():
			switch {
			case tok.Error() != nil:
				st.failed.Add(1)
			case qos > 0:
				st.acked.Add(1)
				st.latency.record(time.Since(start))
			}
		case <-c.lost:
			st.failed.Add(1)
		case <-t.C:
			st.rejected.Add(1)
		case <-ctx.Done():
			st.failed.Add(1)
		}
	})
}

// encode writes entries as one compact payload: the single form for one
// message, the backlog (b) form for several.
func (s *sim) encode(entries []entry) []byte {
	n := len(s.channels)
	msgs := make([]meter.Message, len(entries))
	reads := make([]meter.Reading, len(entries)*n)
	for i, e := range entries {
		t := time.UnixMilli(e.ms)
		for j, ch := range s.channels {
			reads[i*n+j] = meter.Reading{Channel: ch, Time: t, Value: e.vals[j]}
		}
		msgs[i] = meter.Message{Meter: s.id, Seq: e.seq, Readings: reads[i*n : (i+1)*n]}
	}
	if len(msgs) == 1 {
		return protocol.AppendCompact(make([]byte, 0, 64+40*n), msgs[0])
	}
	return protocol.AppendCompactBatch(make([]byte, 0, len(msgs)*(48+40*n)), msgs)
}

// shutdown disconnects the meter and counts what it could not send.
func (s *sim) shutdown() {
	s.release()
	s.f.stats.pending.Add(int64(s.queue.len()))
	if s.conn != nil {
		s.conn.client.Disconnect(100)
		s.dropConn(false)
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
