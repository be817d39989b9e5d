package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/portal"
)

func decodeBody[T any](t *testing.T, r resp) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(r.body, &v), string(r.body))
	return v
}

func (r resp) errField() string {
	var b errorBody
	_ = json.Unmarshal(r.body, &b)
	return b.Error.Field
}

func TestHouseholdsAndPremises(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	// A moves to a new tariff from a date in the past, and A's meter has
	// reported and raised VEE exceptions.
	_, err := e.db.Pool.Exec(ctx, `insert into service_point_tariffs (service_point_id, effective_from, tariff_code)
		values ($1, '2021-01-01', 'OLD'), ($1, '2022-06-01', $2), ($1, '2999-01-01', 'FUTURE')`, e.a.servicePoint, flatTariffCode)
	require.NoError(t, err)
	reported := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	_, err = e.db.Pool.Exec(ctx, `insert into meter_state (meter_id, state, updated_at) values ($1, '\x00', $2)`, e.a.meterID, reported)
	require.NoError(t, err)
	_, err = e.db.Pool.Exec(ctx, `insert into vee_exceptions (meter_id, rule, channel, count, last_at) values
		($1, 'spike', '1-0:1.8.0', 3, now()), ($1, 'gap', '1-0:1.8.0', 2, now())`, e.a.meterID)
	require.NoError(t, err)

	r := e.do("GET", "/api/v1/household", nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	h := decodeBody[portal.Household](t, r)
	assert.Equal(t, e.a.id, h.ID)
	assert.Equal(t, "HACC-1", h.Name)
	require.Len(t, h.Accounts, 1)
	assert.Equal(t, e.a.accountNumber, h.Accounts[0].Number)
	require.Len(t, h.Premises, 1)
	pr := h.Premises[0]
	assert.Equal(t, "1 Acacia Avenue", pr.Address)
	assert.Equal(t, "GB-LND", pr.Region)
	require.Len(t, pr.ServicePoints, 1)
	sp := pr.ServicePoints[0]
	assert.Equal(t, "electricity", sp.Utility)
	assert.Equal(t, flatTariffCode, sp.CurrentTariff, "the assignment in force today, not the past or future one")
	assert.Len(t, sp.Tariffs, 3)
	require.Len(t, sp.Meters, 1)
	m := sp.Meters[0]
	assert.Equal(t, e.a.meterID, m.ID)
	assert.Equal(t, "active", m.Status)
	require.NotNil(t, m.LastReadingAt)
	assert.True(t, reported.Equal(*m.LastReadingAt))
	assert.Equal(t, int64(5), m.VEEExceptions)

	// The same household by id, for itself and for an operator.
	for _, who := range []*household{&e.a, &e.op} {
		r = e.do("GET", fmt.Sprintf("/api/v1/households/%d", e.a.id), nil, who, false, nil)
		require.Equal(t, http.StatusOK, r.code, string(r.body))
		assert.Equal(t, h, decodeBody[portal.Household](t, r))
	}
	assert.Equal(t, http.StatusNotFound, e.do("GET", "/api/v1/households/999999", nil, &e.op, false, nil).code)
	assert.Equal(t, http.StatusNotFound, e.do("GET", "/api/v1/households/abc", nil, &e.op, false, nil).code)

	// Operators page through every household.
	r = e.do("GET", "/api/v1/households?limit=1", nil, &e.op, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	pg := decodeBody[struct {
		Items     []portal.Household `json:"items"`
		NextAfter string             `json:"next_after"`
	}](t, r)
	require.Len(t, pg.Items, 1)
	assert.Equal(t, e.a.id, pg.Items[0].ID)
	assert.Equal(t, 1, pg.Items[0].AccountCount)
	r = e.do("GET", "/api/v1/households?limit=1&after="+pg.NextAfter, nil, &e.op, false, nil)
	pg2 := decodeBody[struct {
		Items []portal.Household `json:"items"`
	}](t, r)
	require.Len(t, pg2.Items, 1)
	assert.Equal(t, e.b.id, pg2.Items[0].ID)
	assert.Equal(t, http.StatusBadRequest, e.do("GET", "/api/v1/households?after=x", nil, &e.op, false, nil).code)

	// Premises: a household sees its own, operators all.
	r = e.do("GET", "/api/v1/premises", nil, &e.a, false, nil)
	prs := decodeBody[struct {
		Items []portal.Premise `json:"items"`
	}](t, r)
	require.Len(t, prs.Items, 1)
	assert.Equal(t, e.a.premise, prs.Items[0].ID)
	r = e.do("GET", "/api/v1/premises", nil, &e.op, false, nil)
	prs = decodeBody[struct {
		Items []portal.Premise `json:"items"`
	}](t, r)
	assert.Len(t, prs.Items, 2)
	r = e.do("GET", fmt.Sprintf("/api/v1/premises/%d", e.b.premise), nil, &e.op, false, nil)
	require.Equal(t, http.StatusOK, r.code)
	assert.Equal(t, "2 Acacia Avenue", decodeBody[portal.Premise](t, r).Address)

	// Meters: an account's, and one for operators.
	r = e.do("GET", fmt.Sprintf("/api/v1/accounts/%d/meters", e.a.account), nil, &e.a, false, nil)
	ms := decodeBody[struct {
		Items []portal.MeterInfo `json:"items"`
	}](t, r)
	require.Len(t, ms.Items, 1)
	assert.Equal(t, m, ms.Items[0])
	r = e.do("GET", "/api/v1/meters/"+e.a.meterID, nil, &e.op, false, nil)
	require.Equal(t, http.StatusOK, r.code)
	assert.Equal(t, m, decodeBody[portal.MeterInfo](t, r))
	assert.Equal(t, http.StatusNotFound, e.do("GET", "/api/v1/meters/NOPE", nil, &e.op, false, nil).code)
	assert.Equal(t, http.StatusNotFound, e.do("GET", "/api/v1/meters/bad%20id", nil, &e.op, false, nil).code)
}

func TestTariffs(t *testing.T) {
	e := newEnv(t, nil)
	yamlHdr := map[string]string{"Content-Type": "application/yaml"}
	r := e.do("GET", "/api/v1/tariffs", nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	list := decodeBody[struct {
		Items []portal.Tariff `json:"items"`
	}](t, r)
	require.Len(t, list.Items, 1)
	tr := list.Items[0]
	assert.Equal(t, flatTariffCode, tr.Code)
	assert.Equal(t, "Test flat electricity", tr.Name)
	assert.Equal(t, 1, tr.Revision)
	require.Len(t, tr.Versions, 2)
	assert.Equal(t, portal.TariffVersion{EffectiveFrom: "2020-01-01", EffectiveTo: "2026-04-01", StandingChargePerDay: "0.50", Pricing: "flat", FlatRate: "0.2450"}, tr.Versions[0])
	assert.Equal(t, "2026-04-01", tr.Versions[1].EffectiveFrom)
	assert.Empty(t, tr.Versions[1].EffectiveTo)

	// Loading the same file is idempotent, as in the CLI.
	r = e.do("POST", "/api/v1/tariffs", []byte(flatTariff), &e.op, false, yamlHdr)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	lr := decodeBody[loadTariffResponse](t, r)
	assert.False(t, lr.Created)
	assert.Equal(t, 1, lr.Revision)

	// A changed tariff, as JSON, is the next revision.
	changed := map[string]any{"code": flatTariffCode, "name": "Test flat electricity", "utility": "electricity", "currency": "GBP", "unit": "kWh",
		"versions": []map[string]any{{"effective_from": "2020-01-01", "standing_charge_per_day": "0.50", "flat_rate": "0.2600"}}}
	r = e.do("POST", "/api/v1/tariffs", changed, &e.op, false, map[string]string{"Content-Type": "application/json; charset=utf-8"})
	require.Equal(t, http.StatusCreated, r.code, string(r.body))
	lr = decodeBody[loadTariffResponse](t, r)
	assert.True(t, lr.Created)
	assert.Equal(t, 2, lr.Revision)
	assert.Equal(t, 1, lr.Versions)
	r = e.do("POST", "/api/v1/tariffs", changed, &e.op, false, map[string]string{"Content-Type": "application/json"})
	assert.Equal(t, http.StatusOK, r.code, "the JSON again changes nothing")

	r = e.do("GET", "/api/v1/tariffs/"+flatTariffCode, nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	d := decodeBody[portal.TariffDetail](t, r)
	assert.Equal(t, 2, d.Revision)
	require.Len(t, d.Revisions, 2)
	assert.Len(t, d.Revisions[0].Versions, 2)
	assert.Len(t, d.Revisions[1].Versions, 1)
	assert.Contains(t, string(d.Definition), `"flat_rate":"0.2600"`)
	assert.Equal(t, http.StatusNotFound, e.do("GET", "/api/v1/tariffs/NOPE", nil, &e.a, false, nil).code)

	// A bad tariff names the field and every reason; nothing is stored.
	bad := strings.Replace(strings.Replace(flatTariff, "TEST-E-FLAT", "TEST-BAD", 1), "utility: electricity", "utility: steam", 1)
	bad = strings.Replace(bad, "flat_rate: 0.2500", "flat_rate: -1", 1)
	r = e.do("POST", "/api/v1/tariffs", []byte(bad), &e.op, false, yamlHdr)
	require.Equal(t, http.StatusBadRequest, r.code, string(r.body))
	assert.Equal(t, apperr.Invalid, r.errCode())
	assert.Equal(t, "utility", r.errField())
	assert.Contains(t, string(r.body), "steam")
	assert.Contains(t, string(r.body), "versions[1].flat_rate")
	assert.Equal(t, http.StatusNotFound, e.do("GET", "/api/v1/tariffs/TEST-BAD", nil, &e.a, false, nil).code)

	r = e.do("POST", "/api/v1/tariffs", []byte("code: [unclosed"), &e.op, false, yamlHdr)
	assert.Equal(t, http.StatusBadRequest, r.code, string(r.body))
	r = e.do("POST", "/api/v1/tariffs", []byte(flatTariff), &e.op, false, map[string]string{"Content-Type": "application/json"})
	assert.Equal(t, http.StatusBadRequest, r.code, "YAML sent as JSON")
	r = e.do("POST", "/api/v1/tariffs", []byte(flatTariff), &e.op, false, map[string]string{"Content-Type": "text/plain"})
	assert.Equal(t, http.StatusBadRequest, r.code)
	assert.Equal(t, "Content-Type", r.errField())
	r = e.do("POST", "/api/v1/tariffs", []byte(flatTariff), &e.a, false, yamlHdr)
	assert.Equal(t, http.StatusForbidden, r.code)
}

func TestBudgetsAndAccrual(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	path := fmt.Sprintf("/api/v1/accounts/%d/budgets", e.a.account)
	put := func(body any) resp { return e.do("PUT", path, body, &e.a, false, nil) }

	r := e.do("GET", path, nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code)
	assert.JSONEq(t, fmt.Sprintf(`{"account_id":%d,"currency":"GBP","budgets":[]}`, e.a.account), string(r.body))

	// Amounts come back with the currency's minor units, whether they were
	// sent as a string, with or without trailing zeros, or a number.
	r = put([]byte(`{"budgets":[{"scope":"electricity","amount":"60.5","percents":[80,100,150]},{"scope":"account","amount":100},
		{"scope":"gas","amount":120.50}]}`))
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	want := fmt.Sprintf(`{"account_id":%d,"currency":"GBP","budgets":[
		{"scope":"account","amount":"100.00","percents":[50,80,100]},
		{"scope":"electricity","amount":"60.50","percents":[80,100,150]},
		{"scope":"gas","amount":"120.50","percents":[50,80,100]}]}`, e.a.account)
	assert.JSONEq(t, want, string(r.body))
	r = e.do("GET", path, nil, &e.a, false, nil)
	assert.JSONEq(t, want, string(r.body))

	for _, c := range []struct {
		name, body, field string
	}{
		{"negative amount", `{"budgets":[{"scope":"account","amount":"-5"}]}`, "budgets[0].amount"},
		{"zero amount", `{"budgets":[{"scope":"account","amount":0}]}`, "budgets[0].amount"},
		{"too many decimals", `{"budgets":[{"scope":"account","amount":"1.005"}]}`, "budgets[0].amount"},
		{"unknown scope", `{"budgets":[{"scope":"steam","amount":"5"}]}`, "budgets[0].scope"},
		{"scope twice", `{"budgets":[{"scope":"gas","amount":"5"},{"scope":"gas","amount":"6"}]}`, "budgets[1].scope"},
		{"percent above 200", `{"budgets":[{"scope":"gas","amount":"5","percents":[50,201]}]}`, "budgets[0].percents[1]"},
		{"percent zero", `{"budgets":[{"scope":"gas","amount":"5","percents":[0]}]}`, "budgets[0].percents[0]"},
		{"percents unsorted", `{"budgets":[{"scope":"gas","amount":"5","percents":[80,50]}]}`, "budgets[0].percents[1]"},
		{"percents repeated", `{"budgets":[{"scope":"gas","amount":"5","percents":[80,80]}]}`, "budgets[0].percents[1]"},
		{"empty percents", `{"budgets":[{"scope":"gas","amount":"5","percents":[]}]}`, "budgets[0].percents"},
		{"no list", `{}`, "budgets"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := put([]byte(c.body))
			assert.Equal(t, http.StatusBadRequest, r.code, string(r.body))
			assert.Equal(t, c.field, r.errField(), string(r.body))
		})
	}
	r = put([]byte(`{"budgets":[{"scope":"water","amount":"-1"},{"scope":"gas","amount":"1","percents":[300]}]}`))
	assert.Contains(t, string(r.body), "budgets[1].percents[0]", "every problem is listed")
	r = e.do("GET", path, nil, &e.a, false, nil)
	assert.JSONEq(t, want, string(r.body), "refused updates change nothing")

	// The accrual shows so far, forecast and budget per scope.
	_, err := e.db.Pool.Exec(ctx, `insert into accruals (account_id, utility, cycle_start, cycle_end, through, currency, quantity, amount, projected, updated_at)
		values ($1, 'electricity', '2026-03-01', '2026-04-01', '2026-03-11', 'GBP', 123456, 20.10, 61.90, now()),
		       ($1, 'water', '2026-03-01', '2026-04-01', '2026-03-11', 'GBP', 5000, 5, 15.5, now())`, e.a.account)
	require.NoError(t, err)
	r = e.do("GET", fmt.Sprintf("/api/v1/accounts/%d/accrual", e.a.account), nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	var ac struct {
		CycleStart string `json:"cycle_start"`
		CycleEnd   string `json:"cycle_end"`
		Utilities  []struct {
			Utility, Amount, Projected string
			Budget                     *string
			Quantity                   float64
		}
		Total struct {
			Amount, Projected string
			Budget            *string
		}
		Budgets []budgetView
	}
	require.NoError(t, json.Unmarshal(r.body, &ac))
	assert.Equal(t, "2026-03-01", ac.CycleStart)
	assert.Equal(t, "2026-04-01", ac.CycleEnd)
	require.Len(t, ac.Utilities, 2)
	assert.Equal(t, "electricity", ac.Utilities[0].Utility)
	assert.Equal(t, "20.10", ac.Utilities[0].Amount)
	assert.Equal(t, "61.90", ac.Utilities[0].Projected)
	require.NotNil(t, ac.Utilities[0].Budget)
	assert.Equal(t, "60.50", *ac.Utilities[0].Budget)
	assert.Equal(t, 123.456, ac.Utilities[0].Quantity)
	assert.Equal(t, "water", ac.Utilities[1].Utility)
	assert.Equal(t, "5.00", ac.Utilities[1].Amount)
	assert.Equal(t, "15.50", ac.Utilities[1].Projected)
	assert.Nil(t, ac.Utilities[1].Budget, "water has no budget")
	assert.Equal(t, "25.10", ac.Total.Amount)
	assert.Equal(t, "77.40", ac.Total.Projected)
	require.NotNil(t, ac.Total.Budget)
	assert.Equal(t, "100.00", *ac.Total.Budget)
	assert.Equal(t, []budgetView{{"account", "100.00", []int{50, 80, 100}}, {"electricity", "60.50", []int{80, 100, 150}},
		{"gas", "120.50", []int{50, 80, 100}}}, ac.Budgets)

	// An empty list removes every budget.
	r = put(budgetsBody{Budgets: []budgetInput{}})
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	bs, err := e.bills.Budgets(ctx, e.a.account)
	require.NoError(t, err)
	assert.Empty(t, bs)
}

func TestFleetStatsAndBillRuns(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	now := e.clock.Now()
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := e.db.Pool.Exec(ctx, sql, args...)
		require.NoError(t, err, sql)
	}
	exec(`insert into meters (id, utility, token_hash) values ('W-1', 'water', '\x00'), ('G-1', 'gas', '\x00'), ('G-2', 'gas', '\x00')`)
	exec(`update meters set status = 'revoked', revoked_at = now() where id = 'G-2'`)
	// M-1 reported a minute ago, M-2 two hours ago; W-1 and G-1 never.
	exec(`insert into meter_state (meter_id, state, updated_at) values ($1, '\x00', $2), ($3, '\x00', $4)`,
		e.a.meterID, now.Add(-time.Minute), e.b.meterID, now.Add(-2*time.Hour))
	exec(`insert into interval_usage (meter_id, channel, start_at, quantity, quality, updated_at) values
		($1, '1-0:1.8.0', $2, 100, 0, $3), ($1, '1-0:1.8.0', $4, 120, 0, $3), ($5, '1-0:1.8.0', $2, 90, 0, $6)`,
		e.a.meterID, now.Truncate(15*time.Minute).Add(-time.Hour), now.Add(-10*time.Minute), now.Truncate(15*time.Minute).Add(-45*time.Minute),
		e.b.meterID, now.Add(-3*time.Hour))
	exec(`insert into vee_exceptions (meter_id, rule, channel, count, last_at) values
		($1, 'spike', '1-0:1.8.0', 3, $3), ($2, 'spike', '1-0:1.8.0', 4, $3), ($1, 'gap', '1-0:1.8.0', 7, $4)`,
		e.a.meterID, e.b.meterID, now.Add(-time.Hour), now.Add(-48*time.Hour))

	r := e.do("GET", "/api/v1/fleet/stats", nil, &e.op, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	st := decodeBody[portal.FleetStats](t, r)
	assert.Equal(t, []portal.MeterCount{
		{Utility: "electricity", Status: "active", Count: 2},
		{Utility: "gas", Status: "active", Count: 1},
		{Utility: "gas", Status: "revoked", Count: 1},
		{Utility: "water", Status: "active", Count: 1},
	}, st.Meters)
	assert.Equal(t, int64(1), st.Silent, "M-2")
	assert.Equal(t, int64(2), st.NeverReported, "W-1 and G-1")
	assert.Equal(t, int64(2), st.IntervalsLastHour)
	assert.Equal(t, int64(1), st.MetersReportedLastHour)
	assert.Equal(t, []portal.RuleCount{{Rule: "spike", Meters: 2, Exceptions: 7}}, st.VEELastDay, "the gap is two days old")

	// Bill runs, newest first, paged.
	for i := range 3 {
		exec(`insert into bill_runs (as_of, started_at, finished_at, accounts, bills_issued, failed, outcome)
			values ($1, $1, $1, 10, $2, $3, $4)`, now.Add(time.Duration(i)*time.Hour), 10-i, i, []string{"succeeded", "partial", "failed"}[i])
	}
	r = e.do("GET", "/api/v1/bill-runs?limit=2", nil, &e.op, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	pg := decodeBody[struct {
		Items     []portal.BillRun `json:"items"`
		NextAfter string           `json:"next_after"`
	}](t, r)
	require.Len(t, pg.Items, 2)
	assert.Equal(t, "failed", pg.Items[0].Outcome)
	assert.Equal(t, 8, pg.Items[0].BillsIssued)
	assert.Equal(t, 2, pg.Items[0].Failed)
	assert.Equal(t, "partial", pg.Items[1].Outcome)
	r = e.do("GET", "/api/v1/bill-runs?after="+pg.NextAfter, nil, &e.op, false, nil)
	pg = decodeBody[struct {
		Items     []portal.BillRun `json:"items"`
		NextAfter string           `json:"next_after"`
	}](t, r)
	require.Len(t, pg.Items, 1)
	assert.Equal(t, "succeeded", pg.Items[0].Outcome)
	assert.Empty(t, pg.NextAfter)
}
