package broker_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meterflow/meterflow/internal/broker"
	"github.com/meterflow/meterflow/internal/device"
	"github.com/meterflow/meterflow/internal/ingest"
	"github.com/meterflow/meterflow/internal/journal"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/protocol"
)

// openAuth lets every meter in as an electricity meter, so that a
// benchmark needs no database.
type openAuth struct{}

func (openAuth) Authenticate(_ context.Context, id, _ string) (device.Identity, error) {
	return device.Identity{ID: id, Utility: meter.Electricity}, nil
}

func (openAuth) Lookup(context.Context, string) (device.Credential, error) {
	return device.Credential{}, device.ErrAuth
}

// noopIngester takes every payload at once: the broker's own cost.
type noopIngester struct{}

func (noopIngester) Ingest(context.Context, device.Identity, []byte, time.Time) error { return nil }

// rawMeter is a minimal MQTT 3.1.1 client on one goroutine with one
// message in flight, as meters publish: a benchmark's clients then add as
// little as possible of their own to the process's goroutine stacks.
type rawMeter struct {
	conn net.Conn
	r    *bufio.Reader
	id   string
	pid  uint16
	buf  []byte
	ack  [4]byte
}

func appendLength(b []byte, n int) []byte {
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func dialRaw(addr, id string) (*rawMeter, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var body []byte
	body = appendString(body, "MQTT")
	body = append(body, 4, 0xC2) // 3.1.1; username, password, clean session
	body = binary.BigEndian.AppendUint16(body, 60)
	body = appendString(body, id)
	body = appendString(body, id)
	body = appendString(body, "token")
	pk := appendLength([]byte{0x10}, len(body))
	if _, err := conn.Write(append(pk, body...)); err != nil {
		conn.Close()
		return nil, err
	}
	m := &rawMeter{conn: conn, r: bufio.NewReaderSize(conn, 64), id: id}
	if _, err := io.ReadFull(m.r, m.ack[:]); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connack: %w", err)
	}
	if m.ack[0] != 0x20 || m.ack[3] != 0 {
		conn.Close()
		return nil, fmt.Errorf("connack % x", m.ack)
	}
	return m, nil
}

// publish sends payload at QoS 1 to the meter's readings topic and waits
// for its PUBACK.
func (m *rawMeter) publish(payload []byte) error {
	m.pid++
	if m.pid == 0 {
		m.pid = 1
	}
	topic := broker.ReadingsTopic(m.id)
	m.buf = appendLength(append(m.buf[:0], 0x32), 2+len(topic)+2+len(payload))
	m.buf = appendString(m.buf, topic)
	m.buf = binary.BigEndian.AppendUint16(m.buf, m.pid)
	m.buf = append(m.buf, payload...)
	if _, err := m.conn.Write(m.buf); err != nil {
		return err
	}
	if _, err := io.ReadFull(m.r, m.ack[:]); err != nil {
		return fmt.Errorf("puback: %w", err)
	}
	if m.ack[0] != 0x40 || binary.BigEndian.Uint16(m.ack[2:]) != m.pid {
		return fmt.Errorf("puback % x for packet %d", m.ack, m.pid)
	}
	return nil
}

// stackBytes is the memory of all goroutine stacks, read without stopping
// the world.
func stackBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkPublishStacks measures goroutine stack memory per connection
// while meters publish through the broker as fast as their PUBACKs come
// back (one message in flight each), and the messages per second that
// takes. "noop" takes payloads at once (the broker alone); "front" is the
// real front: decode, journal record, fsynced group-committed append.
//
// stack-B/conn is the largest stack memory of the process seen during the
// load divided by the connections (it includes the clients' own
// goroutines, one each, and the broker's writer goroutine per connection);
// grown-B/conn is how much it grew per connection from idle. Run one
// sub-benchmark per process: the runtime sizes new goroutines' stacks by
// what it has seen before.
//
// Goroutine stacks double when they grow (8, 16, 32 KiB), so which
// goroutine needs how much is best found with MF_BENCH_MAX_STACK (see
// below): at 16384 the "noop" run already crashes, in mochi's read
// goroutine entering the OnPublish hooks, and at 32768 both runs pass.
func BenchmarkPublishStacks(b *testing.B) {
	for _, c := range []struct {
		name string
		ing  func(b *testing.B) broker.Ingester
	}{
		{"noop", func(*testing.B) broker.Ingester { return noopIngester{} }},
		{"front", func(b *testing.B) broker.Ingester {
			j, err := journal.Open(journal.Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { j.Close() })
			f := ingest.NewFront(ingest.FrontConfig{}, j, nil)
			return f
		}},
	} {
		b.Run(c.name, func(b *testing.B) { benchPublishStacks(b, c.ing(b)) })
	}
}

func benchPublishStacks(b *testing.B, ing broker.Ingester) {
	const conns = 256
	br, err := broker.New(broker.Config{TCPAddr: "127.0.0.1:0"}, openAuth{}, ing, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(); err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	meters := make([]*rawMeter, conns)
	for i := range meters {
		if meters[i], err = dialRaw(br.TCPAddr().String(), fmt.Sprintf("M-%04d", i)); err != nil {
			b.Fatal(err)
		}
		defer meters[i].conn.Close()
	}
	for br.Connected() < conns {
		time.Sleep(time.Millisecond)
	}
	idle := stackBytes()
	if v := os.Getenv("MF_BENCH_MAX_STACK"); v != "" {
		// Diagnosis: the first goroutine whose stack needs more than this
		// many bytes crashes the benchmark with its stack trace, frame
		// sizes included (fp - sp).
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("MF_BENCH_MAX_STACK: %v", err)
		}
		defer debug.SetMaxStack(debug.SetMaxStack(n))
	}

	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if s := stackBytes(); s > peak.Load() {
					peak.Store(s)
				}
			}
		}
	}()

	now := time.Now().Truncate(time.Second)
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	b.ResetTimer()
	for _, m := range meters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p []byte
			for seq := uint64(1); left.Add(-1) >= 0; seq++ {
				p = protocol.AppendCompact(p[:0], meter.Message{Meter: m.id, Seq: seq, Readings: []meter.Reading{
					{Channel: "1-0:1.8.0", Time: now, Value: meter.Value(seq)},
					{Channel: "1-0:1.7.0", Time: now, Value: 420},
					{Channel: "1-0:32.7.0", Time: now, Value: 231_400},
					{Channel: "1-0:31.7.0", Time: now, Value: 1_830},
				}})
				if err := m.publish(p); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(stop)
	<-sampled
	close(errs)
	if err := errors.Join(func() (all []error) {
		for e := range errs {
			all = append(all, e)
		}
		return all
	}()...); err != nil {
		b.Fatal(err)
	}
	if s := stackBytes(); s > peak.Load() {
		peak.Store(s)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(peak.Load())/conns, "stack-B/conn")
	b.ReportMetric((float64(peak.Load())-float64(idle))/conns, "grown-B/conn")
}
