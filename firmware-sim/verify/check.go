package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/meterflow/meterflow/internal/influx"
)

// CheckResult is what `verify check` prints.
type CheckResult struct {
	OK bool `json:"ok"`
	// Acked is the number of distinct (meter, seq) in the acknowledged log.
	Acked             int64 `json:"acked"`
	Meters            int   `json:"meters"`
	DuplicateLogLines int64 `json:"duplicate_log_lines"`
	// FoundInflux is how many acknowledged (meter, seq) have a `reading`
	// point in InfluxDB; Missing = Acked - FoundInflux is the loss.
	FoundInflux     int64    `json:"found_influx"`
	Missing         int64    `json:"missing"`
	MissingExamples []string `json:"missing_examples,omitempty"`
	// Extra counts seq values InfluxDB holds, within each meter's
	// acknowledged time range, that the log does not: messages stored
	// whose PUBACK the simulator did not see (not a loss).
	Extra int64 `json:"extra"`
	// PostgreSQL: interval_usage rows of the fleet's meters, and the
	// acknowledged readings without the interval starting at their time
	// on the primary register channel (each meter's newest reading opens
	// no interval yet and is not counted).
	PGIntervalRows         int64    `json:"pg_interval_rows"`
	PGMetersWithIntervals  int      `json:"pg_meters_with_intervals"`
	PGMissingIntervals     int64    `json:"pg_missing_intervals"`
	PGMissingExamples      []string `json:"pg_missing_examples,omitempty"`
	InfluxQueries          int64    `json:"influx_queries"`
	InfluxQueryRetries     int64    `json:"influx_query_retries"`
	ElapsedS               float64  `json:"elapsed_s"`
	PrimaryRegisterChannel string   `json:"primary_register_channel"`
}

// acks is one meter's acknowledged messages: seq → time in Unix ms.
type acks struct {
	seqs           map[uint64]int64
	minMs, maxMs   int64
	found, extra   int64
	missingSamples []uint64
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ackedLog := fs.String("acked-log", "", "firmware-sim's acknowledged log (meter_id,seq,time); required")
	influxURL := fs.String("influx-url", "http://127.0.0.1:8086", "InfluxDB URL")
	bucket := fs.String("influx-bucket", "meterflow/autogen", "InfluxDB bucket (1.8: database/retention-policy)")
	org := fs.String("influx-org", "", "InfluxDB 2.x organisation (empty for 1.8)")
	token := fs.String("influx-token", "", "InfluxDB token (1.8 with auth: user:password)")
	pgURL := fs.String("postgres-url", "", "PostgreSQL URL of the run's database (empty: skip the PostgreSQL check)")
	channel := fs.String("channel", "1-0:1.8.0", "primary register channel whose intervals must exist in PostgreSQL")
	concurrency := fs.Int("concurrency", 4, "InfluxDB queries in flight")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ackedLog == "" {
		return fmt.Errorf("--acked-log is required")
	}
	start := time.Now()
	res := CheckResult{PrimaryRegisterChannel: *channel}
	meters, dups, err := readAckedLog(*ackedLog)
	if err != nil {
		return err
	}
	res.DuplicateLogLines = dups
	res.Meters = len(meters)
	ids := make([]string, 0, len(meters))
	for id, a := range meters {
		ids = append(ids, id)
		res.Acked += int64(len(a.seqs))
	}
	slices.Sort(ids)

	ic, err := influx.Open(influx.Config{URL: *influxURL, Org: *org, Bucket: *bucket, Token: *token, Timeout: 120 * time.Second})
	if err != nil {
		return err
	}
	defer ic.Close()
	var queries, retries atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, *concurrency))
	for _, id := range ids {
		a := meters[id]
		g.Go(func() error {
			var err error
			for attempt := 1; attempt <= 4; attempt++ {
				queries.Add(1)
				if err = a.checkInflux(gctx, ic, *bucket, id); err == nil {
					return nil
				}
				if gctx.Err() != nil {
					return gctx.Err()
				}
				retries.Add(1)
				time.Sleep(time.Duration(attempt) * time.Second)
			}
			return fmt.Errorf("influxdb query for meter %s: %w", id, err)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	res.InfluxQueries, res.InfluxQueryRetries = queries.Load(), retries.Load()
	for _, id := range ids {
		a := meters[id]
		res.FoundInflux += a.found
		res.Extra += a.extra
		for _, s := range a.missingSamples {
			if len(res.MissingExamples) < 10 {
				res.MissingExamples = append(res.MissingExamples, id+":"+strconv.FormatUint(s, 10))
			}
		}
	}
	res.Missing = res.Acked - res.FoundInflux

	if *pgURL != "" {
		if err := checkPostgres(ctx, *pgURL, *channel, ids, meters, &res); err != nil {
			return err
		}
	}
	res.OK = res.Missing == 0 && res.DuplicateLogLines == 0 && (*pgURL == "" || res.PGMissingIntervals == 0)
	res.ElapsedS = time.Since(start).Seconds()
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return err
	}
	if !res.OK {
		return errFailed
	}
	return nil
}

// readAckedLog reads meter_id,seq,time lines; a repeated (meter, seq) is
// counted, not added twice.
func readAckedLog(path string) (map[string]*acks, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	meters := map[string]*acks{}
	var dups int64
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if line == 1 && strings.HasPrefix(text, "meter_id,") {
			continue
		}
		if text == "" {
			continue
		}
		id, rest, ok1 := strings.Cut(text, ",")
		seqText, timeText, ok2 := strings.Cut(rest, ",")
		if !ok1 || !ok2 {
			return nil, 0, fmt.Errorf("%s line %d: want meter_id,seq,time", path, line)
		}
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("%s line %d: seq: %w", path, line, err)
		}
		t, err := time.Parse(time.RFC3339Nano, timeText)
		if err != nil {
			return nil, 0, fmt.Errorf("%s line %d: time: %w", path, line, err)
		}
		ms := t.UnixMilli()
		a := meters[id]
		if a == nil {
			a = &acks{seqs: map[uint64]int64{}, minMs: ms, maxMs: ms}
			meters[id] = a
		}
		if _, dup := a.seqs[seq]; dup {
			dups++
			continue
		}
		a.seqs[seq] = ms
		a.minMs, a.maxMs = min(a.minMs, ms), max(a.maxMs, ms)
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	return meters, dups, nil
}

// checkInflux reads the seq values of the meter's `reading` points within
// its acknowledged time range and compares them with the log.
func (a *acks) checkInflux(ctx context.Context, ic *influx.Client, bucket, id string) error {
	q := fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == "reading" and r.meter == %s and r._field == "seq")
  |> keep(columns: ["_value"])`,
		strconv.Quote(bucket),
		time.UnixMilli(a.minMs).UTC().Format(time.RFC3339Nano),
		time.UnixMilli(a.maxMs+1).UTC().Format(time.RFC3339Nano),
		strconv.Quote(id))
	qctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	r, err := ic.Query(qctx, q)
	if err != nil {
		return err
	}
	defer r.Close()
	seen := make(map[uint64]bool, len(a.seqs))
	for r.Next() {
		seq, ok := asUint(r.Record().Value())
		if !ok {
			return fmt.Errorf("seq value %v (%T) is not an integer", r.Record().Value(), r.Record().Value())
		}
		seen[seq] = true
	}
	if err := r.Err(); err != nil {
		return err
	}
	a.found, a.extra, a.missingSamples = 0, 0, nil
	for seq := range seen {
		if _, ok := a.seqs[seq]; ok {
			a.found++
		} else {
			a.extra++
		}
	}
	if a.found < int64(len(a.seqs)) {
		for seq := range a.seqs {
			if !seen[seq] && len(a.missingSamples) < 3 {
				a.missingSamples = append(a.missingSamples, seq)
			}
		}
	}
	return nil
}

func asUint(v any) (uint64, bool) {
	switch x := v.(type) {
	case int64:
		return uint64(x), x >= 0
	case uint64:
		return x, true
	case float64:
		return uint64(x), x >= 0 && x == float64(uint64(x))
	}
	return 0, false
}

// checkPostgres counts the fleet's interval_usage rows and checks that the
// interval starting at each acknowledged reading's time exists on the
// primary register channel. Load-mode readings are on the interval grid,
// so the span from one reading to the next is exactly the interval that
// starts at the first (docs/vee.md); a meter's newest reading has no span
// after it yet and is left out.
func checkPostgres(ctx context.Context, url, channel string, ids []string, meters map[string]*acks, res *CheckResult) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(context.Background())
	have := map[string]map[int64]bool{}
	for i := 0; i < len(ids); i += 1000 {
		part := ids[i:min(i+1000, len(ids))]
		var n int64
		if err := conn.QueryRow(ctx, `select count(*) from interval_usage where meter_id = any($1)`, part).Scan(&n); err != nil {
			return fmt.Errorf("count intervals: %w", err)
		}
		res.PGIntervalRows += n
		rows, err := conn.Query(ctx, `select meter_id, (extract(epoch from start_at) * 1000)::bigint
			from interval_usage where channel = $2 and meter_id = any($1)`, part, channel)
		if err != nil {
			return fmt.Errorf("read intervals: %w", err)
		}
		var id string
		var ms int64
		_, err = pgx.ForEachRow(rows, []any{&id, &ms}, func() error {
			m := have[id]
			if m == nil {
				m = map[int64]bool{}
				have[id] = m
			}
			m[ms] = true
			return nil
		})
		if err != nil {
			return fmt.Errorf("read intervals: %w", err)
		}
	}
	res.PGMetersWithIntervals = len(have)
	for _, id := range ids {
		a := meters[id]
		for seq, ms := range a.seqs {
			if ms != a.maxMs && !have[id][ms] {
				res.PGMissingIntervals++
				if len(res.PGMissingExamples) < 10 {
					res.PGMissingExamples = append(res.PGMissingExamples,
						fmt.Sprintf("%s:%d@%s", id, seq, time.UnixMilli(ms).UTC().Format(time.RFC3339)))
				}
			}
		}
	}
	return nil
}
