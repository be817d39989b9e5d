package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/meterflow/meterflow/firmware-sim/fleet"
	"github.com/meterflow/meterflow/internal/influx"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/protocol"
)

// ProbeResult is what `verify probe` prints.
type ProbeResult struct {
	Meter      string  `json:"meter"`
	IntervalMs float64 `json:"interval_ms"`
	Published  int     `json:"published"`
	Acked      int     `json:"acked"`
	// PublishErrors are publishes without a PUBACK (timeout or error).
	PublishErrors int `json:"publish_errors"`
	// Seen are acknowledged probe readings found in InfluxDB; Unseen were
	// acknowledged but not found before the probe gave up (--settle).
	Seen   int `json:"seen"`
	Unseen int `json:"unseen"`
	// QueryableMs is publish → end of the first query that returned the
	// point: an upper bound, at most one poll cycle (PollCycleMs) above
	// the true figure.
	QueryableMs Percentiles `json:"queryable_ms"`
	AckMs       Percentiles `json:"ack_ms"`
	QueryMs     Percentiles `json:"query_ms"`
	PollCycleMs float64     `json:"poll_cycle_ms"`
	Queries     int         `json:"queries"`
	QueryErrors int         `json:"query_errors"`
	Method      string      `json:"method"`
}

// Percentiles of a sample, in milliseconds.
type Percentiles struct {
	N   int     `json:"n"`
	Min float64 `json:"min"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	ms := func(x time.Duration) float64 { return math.Round(float64(x)/float64(time.Microsecond)) / 1000 }
	// Nearest rank.
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return ms(s[max(0, min(i, len(s)-1))])
	}
	return Percentiles{N: len(s), Min: ms(s[0]), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: ms(s[len(s)-1])}
}

type probeMsg struct {
	published time.Time
	acked     bool
	ackAfter  time.Duration
	seen      bool
	seenAfter time.Duration
}

func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	broker := fs.String("broker", "tcp://127.0.0.1:1883", "broker URL")
	credentials := fs.String("credentials", "", "CSV meter_id,utility,token of the probe meter (the first row is used); required")
	influxURL := fs.String("influx-url", "http://127.0.0.1:8086", "InfluxDB URL")
	bucket := fs.String("influx-bucket", "meterflow/autogen", "InfluxDB bucket (1.8: database/retention-policy)")
	org := fs.String("influx-org", "", "InfluxDB 2.x organisation (empty for 1.8)")
	token := fs.String("influx-token", "", "InfluxDB token (1.8 with auth: user:password)")
	interval := fs.Duration("interval", 200*time.Millisecond, "time between probe publishes")
	duration := fs.Duration("duration", time.Minute, "how long to publish")
	poll := fs.Duration("poll", 50*time.Millisecond, "time between InfluxDB polls")
	settle := fs.Duration("settle", 3*time.Minute, "how long to keep polling after the last publish for readings not yet queryable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *credentials == "" {
		return errors.New("--credentials is required")
	}
	creds, err := fleet.LoadCredentials(*credentials, true)
	if err != nil {
		return err
	}
	c := creds[0]
	if c.Utility != meter.Electricity {
		return fmt.Errorf("probe meter %s: want an electricity meter, not %s", c.MeterID, c.Utility)
	}
	ic, err := influx.Open(influx.Config{URL: *influxURL, Org: *org, Bucket: *bucket, Token: *token, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	defer ic.Close()

	o := mqtt.NewClientOptions().AddBroker(*broker).SetClientID(c.MeterID).
		SetUsername(c.MeterID).SetPassword(c.Token).SetProtocolVersion(4).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetOrderMatters(false).SetKeepAlive(30 * time.Second).SetConnectTimeout(10 * time.Second)
	client := mqtt.NewClient(o)
	if tok := client.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return fmt.Errorf("connect probe meter %s: %v", c.MeterID, tok.Error())
	}
	defer client.Disconnect(250)

	var (
		mu   sync.Mutex
		msgs = map[uint64]*probeMsg{}
		acks sync.WaitGroup
	)
	start := time.Now()
	seq0 := uint64(start.UnixMilli())
	topic := "meters/" + c.MeterID + "/readings"
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		t := time.NewTicker(*interval)
		defer t.Stop()
		end := time.After(*duration)
		for i := uint64(0); ; i++ {
			now := time.Now()
			ts := now.Truncate(time.Millisecond)
			seq := seq0 + i
			payload := protocol.AppendCompact(nil, meter.Message{Meter: c.MeterID, Seq: seq, Readings: []meter.Reading{
				{Channel: "1-0:1.8.0", Time: ts, Value: meter.Value(1_000_000 + int64(i))},
				{Channel: "1-0:1.7.0", Time: ts, Value: 500},
				{Channel: "1-0:32.7.0", Time: ts, Value: 230_000},
				{Channel: "1-0:31.7.0", Time: ts, Value: 2_000},
			}})
			m := &probeMsg{published: now}
			mu.Lock()
			msgs[seq] = m
			mu.Unlock()
			tok := client.Publish(topic, 1, false, payload)
			acks.Go(func() {
				ok := tok.WaitTimeout(30*time.Second) && tok.Error() == nil
				mu.Lock()
				defer mu.Unlock()
				m.acked, m.ackAfter = ok, time.Since(m.published)
			})
			select {
			case <-ctx.Done():
				return
			case <-end:
				return
			case <-t.C:
			}
		}
	}()

	// Poll: every --poll, read the probe meter's seq values since the
	// start and note when each first shows up.
	var (
		queryTimes []time.Duration
		queryErrs  int
		cycles     []time.Duration
		lastCycle  time.Time
		deadline   time.Time
	)
	fromText := start.Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	q := fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s)
  |> filter(fn: (r) => r._measurement == "reading" and r.meter == %s and r._field == "seq")
  |> keep(columns: ["_value"])`, strconv.Quote(*bucket), fromText, strconv.Quote(c.MeterID))
	published := false
	for {
		if !published {
			select {
			case <-pubDone:
				published = true
				acks.Wait()
				deadline = time.Now().Add(*settle)
			default:
			}
		}
		if published {
			mu.Lock()
			pending := 0
			for _, m := range msgs {
				if m.acked && !m.seen {
					pending++
				}
			}
			mu.Unlock()
			if pending == 0 || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
		}
		qs := time.Now()
		if !lastCycle.IsZero() {
			cycles = append(cycles, qs.Sub(lastCycle))
		}
		lastCycle = qs
		seqs, err := querySeqs(ctx, ic, q)
		qe := time.Now()
		if err != nil {
			queryErrs++
		} else {
			queryTimes = append(queryTimes, qe.Sub(qs))
			mu.Lock()
			for _, s := range seqs {
				if m := msgs[s]; m != nil && !m.seen {
					m.seen, m.seenAfter = true, qe.Sub(m.published)
				}
			}
			mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(qs.Add(*poll))):
		}
	}

	res := ProbeResult{Meter: c.MeterID, IntervalMs: float64(*interval) / float64(time.Millisecond), Queries: len(queryTimes) + queryErrs, QueryErrors: queryErrs,
		Method: "publish at QoS 1 every interval; poll InfluxDB every poll; queryable = end of the first query returning the point's seq (upper bound, resolution one poll cycle)"}
	var lat, ack []time.Duration
	mu.Lock()
	for _, m := range msgs {
		res.Published++
		if !m.acked {
			res.PublishErrors++
			continue
		}
		res.Acked++
		ack = append(ack, m.ackAfter)
		if m.seen {
			res.Seen++
			lat = append(lat, m.seenAfter)
		} else {
			res.Unseen++
		}
	}
	mu.Unlock()
	res.QueryableMs, res.AckMs, res.QueryMs = percentiles(lat), percentiles(ack), percentiles(queryTimes)
	if len(cycles) > 0 {
		var sum time.Duration
		for _, d := range cycles {
			sum += d
		}
		res.PollCycleMs = math.Round(float64(sum)/float64(len(cycles))/float64(time.Microsecond)) / 1000
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

func querySeqs(ctx context.Context, ic *influx.Client, q string) ([]uint64, error) {
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := ic.Query(qctx, q)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []uint64
	for r.Next() {
		if s, ok := asUint(r.Record().Value()); ok {
			out = append(out, s)
		}
	}
	return out, r.Err()
}
