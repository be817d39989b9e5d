package protocol

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
)

var update = flag.Bool("update", false, "rewrite testdata/*/*.golden from the decoder's output")

// TestGolden decodes every testdata/{valid,invalid}/NAME.json as a payload
// of meter MTR-000001 received at testNow and compares a text rendering of
// the result with NAME.golden. The utility is water or gas when NAME
// starts with "water-" or "gas-", electricity otherwise. Run
// `go test -run TestGolden -update` after an intended change and review
// the diff.
func TestGolden(t *testing.T) {
	for _, dir := range []string{"valid", "invalid"} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		require.NoError(t, err)
		require.NotEmpty(t, files)
		for _, file := range files {
			name := strings.TrimSuffix(filepath.Base(file), ".json")
			t.Run(dir+"/"+name, func(t *testing.T) {
				payload, err := os.ReadFile(file)
				require.NoError(t, err)
				ms, err := Decoder{}.Decode(nil, testMeter, goldenUtility(name), payload, testNow)
				if dir == "valid" {
					require.NoError(t, err)
				} else {
					require.Error(t, err)
				}
				got := render(ms, err)
				golden := strings.TrimSuffix(file, ".json") + ".golden"
				if *update {
					require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
					return
				}
				want, err := os.ReadFile(golden)
				require.NoError(t, err, "run go test -run TestGolden -update to create it")
				assert.Equal(t, string(want), got)
			})
		}
	}
}

func goldenUtility(name string) meter.Utility {
	switch {
	case strings.HasPrefix(name, "water-"):
		return meter.Water
	case strings.HasPrefix(name, "gas-"):
		return meter.Gas
	}
	return meter.Electricity
}

// render writes decoded messages one reading a line, or the error.
func render(ms []meter.Message, err error) string {
	var b strings.Builder
	if err != nil {
		fmt.Fprintf(&b, "error %s\n", err)
		return b.String()
	}
	for _, m := range ms {
		fmt.Fprintf(&b, "message meter=%s seq=%d\n", m.Meter, m.Seq)
		for _, r := range m.Readings {
			fmt.Fprintf(&b, "  %s %-10s %s\n", r.Time.Format("2006-01-02T15:04:05.000Z07:00"), r.Channel, r.Value)
		}
	}
	return b.String()
}
