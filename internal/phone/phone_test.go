package phone

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
)

func TestNormalize(t *testing.T) {
	cases := []struct {
		name, raw, region, want string
	}{
		{"gb national", "07911 123456", "GB", "+447911123456"},
		{"gb international", "+44 (0)7911-123456", "US", "+447911123456"},
		{"us", "(201) 555-0123", "US", "+12015550123"},
		{"00 prefix", "0044 7911 123456", "GB", "+447911123456"},
		{"letters", "hello", "GB", ""},
		{"too short", "0770", "GB", ""},
		{"gb landline", "020 7946 0018", "GB", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Normalize(tc.raw, tc.region)
			if tc.want == "" {
				require.Error(t, err)
				assert.True(t, apperr.Is(err, apperr.Invalid))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestIsE164(t *testing.T) {
	for s, want := range map[string]bool{
		"+447911123456":     true,
		"+1201555012":       true,
		"+1234567":          true,
		"+123456":           false, // 6 digits
		"+1234567890123456": false, // 16 digits
		"447911123456":      false,
		"+047911123456":     false,
		"+44 7911 123456":   false,
		"+44791112345a":     false,
		"":                  false,
		"+":                 false,
	} {
		assert.Equal(t, want, IsE164(s), s)
	}
}
