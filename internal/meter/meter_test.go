package meter

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseValue(t *testing.T) {
	cases := []struct {
		name string
		in   string
		exp  int
		want Value
		err  bool
	}{
		{"integer", "12", 0, 12000, false},
		{"three decimals", "12345.678", 0, 12345678, false},
		{"rounds half up", "0.0005", 0, 1, false},
		{"rounds down", "0.0004", 0, 0, false},
		{"negative rounds away", "-0.0005", 0, -1, false},
		{"exponent", "1.5e3", 0, 1500000, false},
		{"negative exponent", "15e-1", 0, 1500, false},
		{"Wh to kWh", "1500", -3, 1500, false},
		{"litres to m3", "2.5", -3, 3, false},
		{"zero", "0.000", 0, 0, false},
		{"leading zeros", "0007.1", 0, 7100, false},
		{"max register", "999999.999", 0, 999999999, false},
		{"tiny exponent", "1e-300", 0, 0, false},
		{"empty", "", 0, 0, true},
		{"dot only", ".", 0, 0, true},
		{"letters", "12a", 0, 0, true},
		{"huge", "1e30", 0, 0, true},
		{"bad exponent", "1e", 0, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseScaled(c.in, c.exp)
			if c.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}

func TestValueString(t *testing.T) {
	assert.Equal(t, "12345.678", Value(12345678).String())
	assert.Equal(t, "-0.005", Value(-5).String())
	assert.Equal(t, "0.000", Value(0).String())
}

func FuzzParseValue(f *testing.F) {
	for _, s := range []string{"1", "-1.5", "1e3", "0.0005", "999999.999", "1e-5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseValue(s)
		if err != nil {
			return
		}
		// A parsed value prints and parses back to itself.
		back, err := ParseValue(v.String())
		require.NoError(t, err)
		require.Equal(t, v, back)
	})
}
