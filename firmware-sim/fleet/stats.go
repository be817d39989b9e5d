package fleet

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// stats are the fleet's counters, shared by every meter goroutine.
//
// Counting rules, so that nothing is counted twice: sent counts PUBLISH
// packets handed to a connection (paho never resends by itself, see
// nullStore); each ends as exactly one of acked (PUBACK arrived), failed
// (the connection went away first; the messages stay in the backlog and a
// later publish resends them) or rejected (no PUBACK within the ack
// timeout on a live connection). Message and reading counts are of
// protocol messages (one seq) and of channel values.
type stats struct {
	connected atomic.Int64

	generated  atomic.Int64 // messages generated
	sent       atomic.Int64 // publishes
	acked      atomic.Int64
	failed     atomic.Int64
	rejected   atomic.Int64
	msgsSent   atomic.Int64 // messages in publishes sent, resends included
	resent     atomic.Int64 // messages sent again after a failed publish
	msgsAcked  atomic.Int64 // distinct messages acknowledged
	readsSent  atomic.Int64 // readings in publishes sent
	readsAcked atomic.Int64
	msgsLost   atomic.Int64 // messages rejected (no PUBACK) and dropped
	dropped    atomic.Int64 // messages dropped from a full backlog
	pending    atomic.Int64 // messages still held when the meters stopped
	batches    atomic.Int64 // publishes in the b (backlog) form

	connects         atomic.Int64
	connectRefused   atomic.Int64
	connectErrors    atomic.Int64
	connectionLosses atomic.Int64

	duplicates   atomic.Int64
	outOfOrder   atomic.Int64
	spikes       atomic.Int64
	offline      atomic.Int64
	corrupted    atomic.Int64
	skewedMeters atomic.Int64
	rollMeters   atomic.Int64
	wrongCreds   atomic.Int64

	latency histogram
}

// ackLog writes one line per acknowledged message: meter_id,seq,time
// (the time the message carries, RFC 3339 in UTC with milliseconds). An
// end-to-end benchmark reads it to check that the stores hold every
// acknowledged reading. It is safe for concurrent use.
type ackLog struct {
	mu  sync.Mutex
	f   *os.File
	w   *bufio.Writer
	buf []byte
	err error
}

func openAckLog(path string) (*ackLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create acked log: %w", err)
	}
	l := &ackLog{f: f, w: bufio.NewWriterSize(f, 256<<10)}
	_, l.err = l.w.WriteString("meter_id,seq,time\n")
	return l, nil
}

func (l *ackLog) write(meterID string, entries []entry) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range entries {
		b := l.buf[:0]
		b = append(b, meterID...)
		b = append(b, ',')
		b = strconv.AppendUint(b, entries[i].seq, 10)
		b = append(b, ',')
		b = time.UnixMilli(entries[i].ms).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, '\n')
		l.buf = b
		if _, err := l.w.Write(b); err != nil && l.err == nil {
			l.err = err
		}
	}
}

func (l *ackLog) close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.w.Flush(); err != nil && l.err == nil {
		l.err = err
	}
	if err := l.f.Close(); err != nil && l.err == nil {
		l.err = err
	}
	if l.err != nil {
		return fmt.Errorf("acked log: %w", l.err)
	}
	return nil
}

// Summary is the result of a run, printed as JSON at its end.
type Summary struct {
	Meters        int     `json:"meters"`
	Connected     int64   `json:"connected"`
	Sent          int64   `json:"sent"`
	Acked         int64   `json:"acked"`
	Failed        int64   `json:"failed"`
	Rejected      int64   `json:"rejected"`
	DurationS     float64 `json:"duration_s"`
	MsgsPerS      float64 `json:"msgs_per_s"`
	ReadingsPerS  float64 `json:"readings_per_s"`
	AckLatencyMs  Latency `json:"ack_latency_ms"`
	QoS           byte    `json:"qos"`
	Generated     int64   `json:"generated"`
	MessagesSent  int64   `json:"messages_sent"`
	MessagesAcked int64   `json:"messages_acked"`
	ReadingsAcked int64   `json:"readings_acked"`
	Resent        int64   `json:"resent"`
	Batches       int64   `json:"batches"`
	Pending       int64   `json:"pending"`
	Dropped       int64   `json:"dropped"`
	Lost          int64   `json:"rejected_messages"`

	Connects         int64 `json:"connects"`
	ConnectRefused   int64 `json:"connect_refused"`
	ConnectErrors    int64 `json:"connect_errors"`
	ConnectionLosses int64 `json:"connection_losses"`

	Faults FaultCounts `json:"faults"`
	Memory Memory      `json:"memory"`
}

// Latency percentiles of the PUBACKs, in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// FaultCounts say how many faults were injected.
type FaultCounts struct {
	Duplicates       int64 `json:"duplicates"`
	OutOfOrder       int64 `json:"out_of_order"`
	Spikes           int64 `json:"spikes"`
	OfflinePeriods   int64 `json:"offline_periods"`
	Corrupted        int64 `json:"corrupted"`
	SkewedMeters     int64 `json:"skewed_meters"`
	RolloverMeters   int64 `json:"rollover_meters"`
	WrongCredentials int64 `json:"wrong_credentials_meters"`
}

// Memory is what the process held with the fleet running (measured when
// generation stopped, before the drain): the cost of a connection.
type Memory struct {
	HeapBytes     uint64 `json:"heap_bytes"`
	StackBytes    uint64 `json:"stack_bytes"`
	Goroutines    int    `json:"goroutines"`
	BytesPerMeter uint64 `json:"bytes_per_meter"`
}

// memNow reads the memory in use (heap and goroutine stacks).
func memNow() (heap, stack uint64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse
}
