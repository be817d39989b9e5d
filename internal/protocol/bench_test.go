package protocol

import (
	"testing"

	"github.com/meterflow/meterflow/internal/meter"
)

// benchCompact is a typical electricity message: four channels at one time.
var benchCompact = []byte(`{"v":1,"seq":1042,"t":1763769600,"r":[{"c":"1-0:1.8.0","v":12345.678},{"c":"1-0:1.7.0","v":0.42},{"c":"1-0:32.7.0","v":231.4},{"c":"1-0:31.7.0","v":1.83}]}`)

var benchSenML = []byte(`[{"bn":"urn:dev:mf:MTR-000001:","bt":1763769600,"bver":10,"n":"1-0:1.8.0","u":"kWh","s":12345.678},{"n":"1-0:1.7.0","u":"kW","v":0.42},{"n":"1-0:32.7.0","u":"V","v":231.4},{"n":"1-0:31.7.0","u":"A","v":1.83}]`)

// benchDecode decodes payload b.N times, reporting messages per second.
func benchDecode(b *testing.B, payload []byte) {
	dec := Decoder{}
	var dst []meter.Message
	var err error
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		dst, err = dec.Decode(dst[:0], testMeter, meter.Electricity, payload, testNow)
		if err != nil {
			b.Fatal(err)
		}
		n += len(dst)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkDecodeCompact(b *testing.B) { benchDecode(b, benchCompact) }

// BenchmarkDecodeCompactBacklog decodes a full backlog: 96 messages of
// four readings.
func BenchmarkDecodeCompactBacklog(b *testing.B) {
	ms, err := Decoder{}.Decode(nil, testMeter, meter.Electricity, benchCompact, testNow)
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]meter.Message, MaxEntries)
	for i := range batch {
		batch[i] = ms[0]
		batch[i].Seq += uint64(i)
	}
	benchDecode(b, AppendCompactBatch(nil, batch))
}

func BenchmarkDecodeSenML(b *testing.B) { benchDecode(b, benchSenML) }

func BenchmarkEncode(b *testing.B) {
	ms, err := Decoder{}.Decode(nil, testMeter, meter.Electricity, benchCompact, testNow)
	if err != nil {
		b.Fatal(err)
	}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendCompact(buf[:0], ms[0])
	}
	b.SetBytes(int64(len(buf)))
}
