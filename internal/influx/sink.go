package influx

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"

	"github.com/meterflow/meterflow/internal/ingest"
	"github.com/meterflow/meterflow/internal/meter"
)

// Measurements written by the ingest sink.
const (
	// MeasurementReading holds raw and validated readings: one point per
	// meter and time, one field per channel.
	MeasurementReading = "reading"
	// MeasurementUsage holds 15-minute interval consumption per meter and
	// register channel, with its quality. Tags: channel, meter, utility, and
	// region when the meter's premise has one.
	MeasurementUsage = "usage_15m"
)

// Sink writes the ingest pipeline's time series.
type Sink struct {
	c    *Client
	pool sync.Pool
	// Rollups, when set, learns which hours each write touched.
	Rollups *Rollups
}

var _ ingest.SeriesSink = (*Sink)(nil)

// NewSink returns a sink writing through c.
func NewSink(c *Client) *Sink {
	s := &Sink{c: c}
	s.pool.New = func() any { return new(strings.Builder) }
	return s
}

// WriteSeries writes one batch as line protocol. Points are keyed by meter,
// channel and timestamp, so writing a batch twice changes nothing.
func (s *Sink) WriteSeries(ctx context.Context, b *ingest.Batch) error {
	sb := s.pool.Get().(*strings.Builder)
	defer func() { sb.Reset(); s.pool.Put(sb) }()
	AppendReadings(sb, b.Readings)
	for _, iv := range b.Intervals {
		sb.WriteString(MeasurementUsage)
		sb.WriteString(",channel=")
		writeEscaped(sb, string(iv.Channel))
		sb.WriteString(",meter=")
		writeEscaped(sb, iv.Meter)
		// Region is a tag so that fleet rollups can group by it. It adds
		// no series: a meter has one region, so the series stay one per
		// meter and channel, and regions are few (a utility's service
		// areas), which keeps fleet_1h and fleet_1d small. Line protocol
		// has no empty tag values: without a region the tag is left out.
		if iv.Region != "" {
			sb.WriteString(",region=")
			writeEscaped(sb, iv.Region)
		}
		sb.WriteString(",utility=")
		sb.WriteString(string(iv.Utility))
		sb.WriteString(" quantity=")
		sb.WriteString(strconv.FormatFloat(iv.Quantity.Float(), 'f', -1, 64))
		sb.WriteString(",quality=")
		sb.WriteString(strconv.Itoa(int(iv.Quality)))
		sb.WriteString("i ")
		sb.WriteString(strconv.FormatInt(iv.Start.UnixMilli(), 10))
		sb.WriteByte('\n')
	}
	if err := s.c.WriteLines(ctx, sb.String()); err != nil {
		return classify(err)
	}
	if s.Rollups != nil {
		last := int64(-1)
		for _, iv := range b.Intervals {
			if h := iv.Start.Unix() / 3600; h != last {
				s.Rollups.Touch(iv.Start)
				last = h
			}
		}
	}
	return nil
}

// AppendReadings writes readings grouped into one point per meter and time.
// The batch keeps a message's readings together, so grouping consecutive
// readings is enough.
func AppendReadings(sb *strings.Builder, rs []ingest.Reading) {
	for i := 0; i < len(rs); {
		j := i + 1
		for j < len(rs) && rs[j].Meter == rs[i].Meter && rs[j].Time.Equal(rs[i].Time) {
			j++
		}
		r := rs[i]
		sb.WriteString(MeasurementReading)
		sb.WriteString(",meter=")
		writeEscaped(sb, r.Meter)
		sb.WriteString(",utility=")
		sb.WriteString(string(r.Utility))
		sb.WriteByte(' ')
		for k := i; k < j; k++ {
			v := rs[k]
			if k > i {
				sb.WriteByte(',')
			}
			writeEscaped(sb, string(v.Channel))
			sb.WriteByte('=')
			sb.WriteString(formatValue(v.Value))
			if v.Raw != v.Value {
				sb.WriteByte(',')
				writeEscaped(sb, string(v.Channel))
				sb.WriteString("_raw=")
				sb.WriteString(formatValue(v.Raw))
			}
			if v.Flags != 0 {
				sb.WriteByte(',')
				writeEscaped(sb, string(v.Channel))
				sb.WriteString("_flags=")
				sb.WriteString(strconv.FormatUint(uint64(v.Flags), 10))
				sb.WriteByte('i')
			}
		}
		sb.WriteString(",seq=")
		sb.WriteString(strconv.FormatUint(r.Seq, 10))
		sb.WriteString("i ")
		sb.WriteString(strconv.FormatInt(r.Time.UnixMilli(), 10))
		sb.WriteByte('\n')
		i = j
	}
}

func formatValue(v meter.Value) string { return strconv.FormatFloat(v.Float(), 'f', -1, 64) }

// writeEscaped escapes a tag value or field key for line protocol.
func writeEscaped(sb *strings.Builder, s string) {
	if !strings.ContainsAny(s, ", =\\\n") {
		sb.WriteString(s)
		return
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ',', ' ', '=', '\\':
			sb.WriteByte('\\')
			sb.WriteByte(c)
		case '\n':
			sb.WriteString(`\n`)
		default:
			sb.WriteByte(c)
		}
	}
}

// classify turns a write error into the pipeline's kinds: a 400 (points the
// server will never take; the others were written) is unwritable;
// everything else is retried.
func classify(err error) error {
	var he *ihttp.Error
	if errors.As(err, &he) && he.StatusCode == 400 {
		return &ingest.Unwritable{Err: fmt.Errorf("influxdb refused points: %w", err)}
	}
	return fmt.Errorf("influxdb write: %w", err)
}
