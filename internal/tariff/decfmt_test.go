package tariff

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fast formatters must write exactly what the library writes, for
// every coefficient and exponent, including the ones they hand back to it.
func TestFormatDecimalMatchesLibrary(t *testing.T) {
	cases := []decimal.Decimal{
		decimal.Zero, decimal.New(0, -3), decimal.New(0, 4), decimal.New(1650, -2), decimal.New(-1650, -2),
		decimal.New(5, -1), decimal.New(-5, -1), decimal.New(5, -7), decimal.New(12, 3), decimal.New(-12, 3),
		decimal.New(100, -2), decimal.New(999999999999999999, -18), decimal.New(-999999999999999999, -3),
		decimal.New(1, 18), decimal.New(1, 19), decimal.New(1, -19), decimal.New(125, -3), decimal.New(-125, -3),
		decimal.RequireFromString("123456789012345678901234.5678"), decimal.RequireFromString("0.32854"),
		decimal.RequireFromString("-0.005"), decimal.RequireFromString("16.50"),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		c := r.Int64N(2_000_000_000_000) - 1_000_000_000_000
		if r.IntN(4) == 0 {
			c = r.Int64N(2000) - 1000
		}
		cases = append(cases, decimal.New(c, int32(r.IntN(30)-20)))
	}
	for _, d := range cases {
		desc := fmt.Sprintf("%s (coefficient %s, exponent %d)", d.String(), d.Coefficient(), d.Exponent())
		require.Equal(t, d.String(), FormatDecimal(d), desc)
		for places := int32(0); places <= 8; places++ {
			require.Equal(t, d.StringFixed(places), FormatFixed(d, places), "%s to %d places", desc, places)
		}
	}
}

func TestAppendDate(t *testing.T) {
	for _, d := range []Date{{2025, 1, 1}, {999, 12, 31}, {2024, 2, 29}, {12345, 6, 7}} {
		assert.Equal(t, d.String(), string(AppendDate(nil, d)))
	}
}

func BenchmarkFormatDecimal(b *testing.B) {
	d := decimal.New(7564, -2)
	b.Run("library", func(b *testing.B) {
		for range b.N {
			_ = d.String()
		}
	})
	b.Run("fast", func(b *testing.B) {
		var buf []byte
		for range b.N {
			buf = AppendDecimal(buf[:0], d)
		}
	})
}
