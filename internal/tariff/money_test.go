package tariff

import (
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
)

func TestFormatMoney(t *testing.T) {
	cases := []struct {
		name, amount, currency, want string
	}{
		{"trailing zero kept", "120.5", "GBP", "120.50"},
		{"whole amount", "100", "GBP", "100.00"},
		{"already fixed", "25.15", "EUR", "25.15"},
		{"stored with more zeros", "7.5000", "USD", "7.50"},
		{"zero", "0", "GBP", "0.00"},
		{"negative", "-3.1", "GBP", "-3.10"},
		{"no minor unit", "1200", "JPY", "1200"},
		{"three decimals", "4.5", "KWD", "4.500"},
		{"more decimals than the minor unit are not rounded", "0.245123", "GBP", "0.245123"},
		{"unknown currency written exactly", "12.5", "XXX", "12.5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, FormatMoney(decimal.RequireFromString(c.amount), c.currency))
		})
	}
}
