package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMoneyHasMinorUnits reads every kind of amount the API shows and
// checks its exact text: the currency's minor units, trailing zeros kept
// ("12.00", not "12"), none for a currency without them (JPY), and rates
// and quantities left as exact decimals.
func TestMoneyHasMinorUnits(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := e.db.Pool.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	get := func(path string, h *household) resp {
		t.Helper()
		r := e.do("GET", path, nil, h, false, nil)
		require.Equal(t, http.StatusOK, r.code, "%s: %s", path, r.body)
		return r
	}

	// The fixture's bill is 10 + 2 = 12, stored without decimals.
	exec(`insert into bill_lines (bill_id, line_no, kind, description, quantity, unit, unit_price, amount)
		values ($1, 1, 'energy', 'Energy', 40.816, 'kWh', 0.245, 10)`, e.a.bill)
	bill := decodeAs[struct {
		Subtotal, Tax, Total string
		Lines                []struct {
			Quantity, Amount string
			UnitPrice        string `json:"unit_price"`
		}
	}](t, get(fmt.Sprintf("/api/v1/bills/%d", e.a.bill), &e.a))
	assert.Equal(t, "10.00", bill.Subtotal)
	assert.Equal(t, "2.00", bill.Tax)
	assert.Equal(t, "12.00", bill.Total)
	require.Len(t, bill.Lines, 1)
	assert.Equal(t, "10.00", bill.Lines[0].Amount)
	assert.Equal(t, "40.816", bill.Lines[0].Quantity, "a quantity is not money")
	assert.Equal(t, "0.245", bill.Lines[0].UnitPrice, "a rate keeps its own decimals")

	bills := decodeAs[struct{ Items []struct{ Total string } }](t, get(fmt.Sprintf("/api/v1/accounts/%d/bills", e.a.account), &e.a))
	require.Len(t, bills.Items, 1)
	assert.Equal(t, "12.00", bills.Items[0].Total)

	// Payments: amount and fee; operators' totals per state.
	exec(`update payments set fee = 0.4 where id = $1`, e.a.paymentID)
	pay := decodeAs[paymentJSON](t, get(fmt.Sprintf("/api/v1/payments/%d", e.a.paymentID), &e.a))
	assert.Equal(t, "12.00", pay.Amount)
	assert.Equal(t, "0.40", pay.Fee)
	stats := decodeAs[struct{ States []map[string]any }](t, get("/api/v1/payments-stats", &e.op))
	require.Len(t, stats.States, 1)
	assert.Equal(t, map[string]any{"state": "created", "currency": "GBP", "count": 2.0, "amount": "24.00"}, stats.States[0])

	// Auto-pay rules: set amounts only, each with minor units.
	rules := decodeAs[struct {
		Items []map[string]any
	}](t, get(fmt.Sprintf("/api/v1/accounts/%d/autopay", e.a.account), &e.a))
	require.Len(t, rules.Items, 1)
	assert.Equal(t, "100.00", rules.Items[0]["max_amount"])
	assert.NotContains(t, rules.Items[0], "accrued_above", "unset amounts are left out")
	r := e.do("POST", fmt.Sprintf("/api/v1/accounts/%d/autopay", e.a.account), map[string]any{
		"trigger": "balance_below", "balance_below": "5", "topup_amount": "20.5", "max_amount": "40", "otp_free_below": "20.5",
		"payment_method_id": e.a.methodID}, &e.a, false, nil)
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	rule := decodeAs[map[string]any](t, r)
	assert.Equal(t, "5.00", rule["balance_below"])
	assert.Equal(t, "20.50", rule["topup_amount"])
	assert.Equal(t, "40.00", rule["max_amount"])
	assert.Equal(t, "20.50", rule["otp_free_below"])

	// An account in yen: no minor unit, so no decimals.
	var yen int64
	require.NoError(t, e.db.Pool.QueryRow(ctx, `insert into accounts (household_id, number, currency, time_zone)
		values ($1, 'ACC-JPY', 'JPY', 'Asia/Tokyo') returning id`, e.a.id).Scan(&yen))
	r = e.do("PUT", fmt.Sprintf("/api/v1/accounts/%d/budgets", yen), []byte(`{"budgets":[{"scope":"account","amount":"12000"}]}`), &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	assert.JSONEq(t, fmt.Sprintf(`{"account_id":%d,"currency":"JPY","budgets":[{"scope":"account","amount":"12000","percents":[50,80,100]}]}`, yen), string(r.body))
	exec(`insert into accruals (account_id, utility, cycle_start, cycle_end, through, currency, quantity, amount, projected, updated_at)
		values ($1, 'electricity', '2026-03-01', '2026-04-01', '2026-03-11', 'JPY', 1000, 3100, 9300, now())`, yen)
	ac := decodeAs[struct {
		Utilities []struct{ Amount, Projected string }
		Total     struct {
			Amount, Projected string
			Budget            *string
		}
	}](t, get(fmt.Sprintf("/api/v1/accounts/%d/accrual", yen), &e.a))
	require.Len(t, ac.Utilities, 1)
	assert.Equal(t, "3100", ac.Utilities[0].Amount)
	assert.Equal(t, "9300", ac.Utilities[0].Projected)
	assert.Equal(t, "3100", ac.Total.Amount)
	require.NotNil(t, ac.Total.Budget)
	assert.Equal(t, "12000", *ac.Total.Budget)
}
