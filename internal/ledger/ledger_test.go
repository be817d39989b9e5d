package ledger

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
)

func TestValidate(t *testing.T) {
	d := decimal.RequireFromString
	ok := Transfer("payment:1", "", time.Now(), GatewayClearing, Receivable(7), d("96.68"), "GBP")
	assert.NoError(t, ok.Validate())
	assert.Equal(t, "receivable:household:7", ok.Postings[1].Account)

	cases := map[string]Entry{
		"unbalanced":       {Key: "k", Postings: []Posting{{GatewayClearing, d("1"), "GBP"}, {Prepaid(1), d("-0.99"), "GBP"}}},
		"one posting":      {Key: "k", Postings: []Posting{{GatewayClearing, d("0"), "GBP"}}},
		"no key":           {Postings: ok.Postings},
		"bad account":      {Key: "k", Postings: []Posting{{"Cash", d("1"), "GBP"}, {Prepaid(1), d("-1"), "GBP"}}},
		"mixed currencies": {Key: "k", Postings: []Posting{{GatewayClearing, d("1"), "GBP"}, {Prepaid(1), d("-1"), "EUR"}}},
	}
	for name, e := range cases {
		assert.Error(t, e.Validate(), name)
	}
	r := Report{Totals: map[string]decimal.Decimal{"GBP": decimal.Zero}}
	assert.True(t, r.OK())
	r.Totals["GBP"] = d("0.01")
	assert.False(t, r.OK())
}
