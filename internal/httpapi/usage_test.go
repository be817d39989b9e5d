package httpapi

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/influx"
	"github.com/meterflow/meterflow/internal/portal"
	"github.com/meterflow/meterflow/internal/testenv"
)

// usageEnv is an env whose usage comes from a fresh InfluxDB database.
func usageEnv(t *testing.T) (*env, *influx.Client) {
	t.Helper()
	inf := testenv.InfluxDB(t)
	c, err := influx.Open(influx.Config{URL: inf.URL, Org: inf.Org, Bucket: inf.Bucket, Token: inf.Token})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	e := newEnv(t, func(cfg *APIConfig) { cfg.Usage = c })
	return e, c
}

// point is one usage point as the rollups write it.
type point struct {
	measurement, meter, channel string
	at                          time.Time
	quantity                    string
}

func writePoints(t *testing.T, c *influx.Client, pts ...point) {
	t.Helper()
	var b strings.Builder
	for _, p := range pts {
		fmt.Fprintf(&b, "%s,channel=%s,meter=%s,utility=electricity quantity=%s %d\n", p.measurement, p.channel, p.meter, p.quantity, p.at.UnixMilli())
	}
	require.NoError(t, c.WriteLines(context.Background(), b.String()))
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func q(vals ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(vals); i += 2 {
		v.Set(vals[i], vals[i+1])
	}
	return "?" + v.Encode()
}

func TestUsageByMonthAndMeter(t *testing.T) {
	e, c := usageEnv(t)
	const imp = "1-0:1.8.0"
	writePoints(t, c,
		point{"usage_1d", e.a.meterID, imp, day("2025-12-31"), "9"},
		point{"usage_1d", e.a.meterID, imp, day("2026-01-30"), "1.5"},
		point{"usage_1d", e.a.meterID, imp, day("2026-01-31"), "2.25"},
		point{"usage_1d", e.a.meterID, imp, day("2026-02-01"), "3.125"},
		point{"usage_1d", e.a.meterID, imp, day("2026-02-02"), "4.001"},
		point{"usage_1d", e.b.meterID, imp, day("2026-01-30"), "100"},
		point{"usage_1h", e.a.meterID, imp, day("2026-02-01").Add(time.Hour), "0.125"},
		point{"usage_1h", e.a.meterID, imp, day("2026-02-01").Add(2 * time.Hour), "0.25"},
	)
	type usage struct {
		Step   string              `json:"step"`
		From   time.Time           `json:"from"`
		To     time.Time           `json:"to"`
		Points []portal.UsagePoint `json:"points"`
	}

	// Months: January and February in the account's zone; from and to
	// widen to whole months, and December is outside.
	r := e.do("GET", fmt.Sprintf("/api/v1/accounts/%d/usage", e.a.account)+q("step", "1mo", "from", "2026-01-15T00:00:00Z", "to", "2026-02-10T00:00:00Z"), nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	u := decodeBody[usage](t, r)
	assert.Equal(t, "1mo", u.Step)
	assert.True(t, day("2026-01-01").Equal(u.From), u.From)
	assert.True(t, day("2026-03-01").Equal(u.To), u.To)
	require.Len(t, u.Points, 2, "%+v", u.Points)
	assert.True(t, day("2026-01-01").Equal(u.Points[0].Time))
	assert.Equal(t, 3.75, u.Points[0].Quantity)
	assert.True(t, day("2026-02-01").Equal(u.Points[1].Time))
	assert.Equal(t, 7.126, u.Points[1].Quantity)
	assert.Equal(t, e.a.meterID, u.Points[1].Meter)

	// One meter's hourly series, for its household and for operators; a
	// month of it too.
	for _, who := range []*household{&e.a, &e.op} {
		r = e.do("GET", "/api/v1/meters/"+e.a.meterID+"/usage"+q("step", "1h", "from", "2026-02-01T00:00:00Z", "to", "2026-02-02T00:00:00Z"), nil, who, false, nil)
		require.Equal(t, http.StatusOK, r.code, string(r.body))
		u = decodeBody[usage](t, r)
		require.Len(t, u.Points, 2)
		assert.Equal(t, 0.125, u.Points[0].Quantity)
		assert.Equal(t, 0.25, u.Points[1].Quantity)
	}
	r = e.do("GET", "/api/v1/meters/"+e.a.meterID+"/usage"+q("step", "1mo", "from", "2026-02-01T00:00:00Z", "to", "2026-03-01T00:00:00Z"), nil, &e.a, false, nil)
	u = decodeBody[usage](t, r)
	require.Len(t, u.Points, 1)
	assert.Equal(t, 7.126, u.Points[0].Quantity)
	r = e.do("GET", "/api/v1/meters/"+e.b.meterID+"/usage", nil, &e.a, false, nil)
	assert.Equal(t, http.StatusNotFound, r.code, "B's meter")

	for _, c := range []struct{ query, field string }{
		{q("step", "1w"), "step"},
		{q("utility", "steam"), "utility"},
		{q("utility", "gas"), "utility"},
		{q("from", "yesterday"), "from"},
		{q("to", "2026-01-01"), "to"},
		{q("from", "2026-02-01T00:00:00Z", "to", "2026-01-01T00:00:00Z"), "from"},
		{q("step", "15m", "from", "2026-01-01T00:00:00Z", "to", "2026-03-01T00:00:00Z"), "from"},
		{q("step", "1mo", "from", "2020-01-01T00:00:00Z", "to", "2026-03-01T00:00:00Z"), "from"},
	} {
		r = e.do("GET", "/api/v1/meters/"+e.a.meterID+"/usage"+c.query, nil, &e.a, false, nil)
		assert.Equal(t, http.StatusBadRequest, r.code, c.query)
		assert.Equal(t, c.field, r.errField(), c.query)
	}
}

func TestMonthlyInTimeZone(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, ny)
	qq := usageQuery{From: from, To: from.AddDate(0, 2, 0), Step: portal.Step1mo, Loc: ny}
	pts := monthly([]portal.UsagePoint{
		{Time: day("2026-01-01"), Meter: "M", Channel: "c", Quantity: 1},     // Jan 1 07:00 in New York at noon UTC
		{Time: day("2026-01-31"), Meter: "M", Channel: "c", Quantity: 0.1},   // January
		{Time: day("2026-02-01"), Meter: "M", Channel: "c", Quantity: 0.2},   // February, though it starts on Jan 31 locally
		{Time: day("2026-03-01"), Meter: "M", Channel: "c", Quantity: 50},    // March: outside
		{Time: day("2025-12-31"), Meter: "M", Channel: "c", Quantity: 70},    // December: outside
		{Time: day("2026-02-10"), Meter: "N", Channel: "c", Quantity: 0.003}, // another meter
	}, qq)
	require.Len(t, pts, 3)
	assert.Equal(t, portal.UsagePoint{Time: from, Meter: "M", Channel: "c", Quantity: 1.1}, pts[0])
	assert.True(t, from.AddDate(0, 1, 0).Equal(pts[1].Time))
	assert.Equal(t, 0.2, pts[1].Quantity)
	assert.Equal(t, "N", pts[2].Meter)
	assert.Equal(t, 0.003, pts[2].Quantity)
}

func TestExportCSV(t *testing.T) {
	e, c := usageEnv(t)
	const imp, exp = "1-0:1.8.0", "1-0:2.8.0"
	start := day("2026-01-05")
	writePoints(t, c,
		point{"usage_15m", e.a.meterID, imp, start.Add(15 * time.Minute), "0.1"},
		point{"usage_15m", e.a.meterID, exp, start.Add(15 * time.Minute), "0.02"},
		point{"usage_15m", e.a.meterID, imp, start, "0.125"},
		// Nine days later, in the second chunk the export reads.
		point{"usage_15m", e.a.meterID, imp, start.Add(9 * 24 * time.Hour), "12.5"},
		point{"usage_15m", e.b.meterID, imp, start, "7"},
	)
	path := fmt.Sprintf("/api/v1/accounts/%d/export.csv", e.a.account)
	r := e.do("GET", path+q("step", "15m", "from", "2026-01-05T00:00:00Z", "to", "2026-01-15T00:00:00Z"), nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	require.NoError(t, err)
	assert.Equal(t, [][]string{
		{"time", "meter", "utility", "channel", "quantity", "unit"},
		{"2026-01-05T00:00:00Z", e.a.meterID, "electricity", imp, "0.125", "kWh"},
		{"2026-01-05T00:15:00Z", e.a.meterID, "electricity", imp, "0.100", "kWh"},
		{"2026-01-05T00:15:00Z", e.a.meterID, "electricity", exp, "0.020", "kWh"},
		{"2026-01-14T00:00:00Z", e.a.meterID, "electricity", imp, "12.500", "kWh"},
	}, rows)

	// Months, with UTC times of the local month starts.
	writePoints(t, c, point{"usage_1d", e.a.meterID, imp, day("2026-06-10"), "2.5"}, point{"usage_1d", e.a.meterID, imp, day("2026-06-11"), "0.001"})
	r = e.do("GET", path+q("step", "1mo", "from", "2026-06-01T00:00:00Z", "to", "2026-06-30T00:00:00Z"), nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	rows, err = csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 2)
	assert.Equal(t, []string{"2026-05-31T23:00:00Z", e.a.meterID, "electricity", imp, "2.501", "kWh"}, rows[1], "June starts at 23:00 UTC in London")

	r = e.do("GET", path+q("step", "2h"), nil, &e.a, false, nil)
	assert.Equal(t, http.StatusBadRequest, r.code)
}

// Green Button shapes the test reads back.
type gbFeed struct {
	XMLName xml.Name  `xml:"http://www.w3.org/2005/Atom feed"`
	Entries []gbEntry `xml:"entry"`
}

type gbEntry struct {
	Title   string `xml:"title"`
	Content struct {
		UsagePoint *struct {
			Kind int `xml:"ServiceCategory>kind"`
		} `xml:"http://naesb.org/espi UsagePoint"`
		ReadingType *struct {
			FlowDirection        int `xml:"flowDirection"`
			IntervalLength       int `xml:"intervalLength"`
			PowerOfTenMultiplier int `xml:"powerOfTenMultiplier"`
			UOM                  int `xml:"uom"`
		} `xml:"http://naesb.org/espi ReadingType"`
		IntervalBlocks []struct {
			Start    int64 `xml:"interval>start"`
			Duration int64 `xml:"interval>duration"`
			Readings []struct {
				Start    int64 `xml:"timePeriod>start"`
				Duration int64 `xml:"timePeriod>duration"`
				Value    int64 `xml:"value"`
			} `xml:"IntervalReading"`
		} `xml:"http://naesb.org/espi IntervalBlock"`
	} `xml:"content"`
}

func TestGreenButton(t *testing.T) {
	e, c := usageEnv(t)
	const imp, exp = "1-0:1.8.0", "1-0:2.8.0"
	h0 := time.Date(2026, 1, 5, 22, 0, 0, 0, time.UTC)
	writePoints(t, c,
		point{"usage_1h", e.a.meterID, imp, h0, "0.5"},
		point{"usage_1h", e.a.meterID, imp, h0.Add(time.Hour), "1.234"},
		point{"usage_1h", e.a.meterID, imp, h0.Add(2 * time.Hour), "0.001"}, // the next UTC day
		point{"usage_1h", e.a.meterID, exp, h0, "0.3"},
		point{"usage_1h", e.b.meterID, imp, h0, "99"},
	)
	r := e.do("GET", fmt.Sprintf("/api/v1/accounts/%d/greenbutton.xml", e.a.account)+q("from", "2026-01-05T00:00:00Z", "to", "2026-01-07T00:00:00Z"), nil, &e.a, false, nil)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	assert.True(t, bytes.HasPrefix(r.body, []byte(xml.Header)), "starts with the XML declaration")

	// Well-formed: the whole document tokenizes.
	dec := xml.NewDecoder(bytes.NewReader(r.body))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
	}
	var f gbFeed
	require.NoError(t, xml.Unmarshal(r.body, &f))
	require.Len(t, f.Entries, 7, "a usage point, then a reading, its type and its blocks per channel")
	require.NotNil(t, f.Entries[0].Content.UsagePoint)
	assert.Equal(t, 0, f.Entries[0].Content.UsagePoint.Kind)

	rt := f.Entries[2].Content.ReadingType
	require.NotNil(t, rt)
	assert.Equal(t, 72, rt.UOM)
	assert.Equal(t, 0, rt.PowerOfTenMultiplier)
	assert.Equal(t, 3600, rt.IntervalLength)
	assert.Equal(t, 1, rt.FlowDirection)
	blocks := f.Entries[3].Content.IntervalBlocks
	require.Len(t, blocks, 2, "one block per UTC day")
	require.Len(t, blocks[0].Readings, 2)
	assert.Equal(t, h0.Unix(), blocks[0].Start)
	assert.Equal(t, int64(7200), blocks[0].Duration)
	assert.Equal(t, h0.Unix(), blocks[0].Readings[0].Start)
	assert.Equal(t, int64(3600), blocks[0].Readings[0].Duration)
	assert.Equal(t, int64(500), blocks[0].Readings[0].Value)
	assert.Equal(t, int64(1234), blocks[0].Readings[1].Value)
	require.Len(t, blocks[1].Readings, 1)
	assert.Equal(t, int64(1), blocks[1].Readings[0].Value)

	require.NotNil(t, f.Entries[5].Content.ReadingType)
	assert.Equal(t, 19, f.Entries[5].Content.ReadingType.FlowDirection, "exported energy")
	assert.Equal(t, int64(300), f.Entries[6].Content.IntervalBlocks[0].Readings[0].Value)
	assert.NotContains(t, string(r.body), "99000", "nothing of B's meter")

	r = e.do("GET", fmt.Sprintf("/api/v1/accounts/%d/greenbutton.xml", e.a.account)+q("step", "1mo"), nil, &e.a, false, nil)
	assert.Equal(t, http.StatusBadRequest, r.code)
	r = e.do("GET", fmt.Sprintf("/api/v1/accounts/%d/greenbutton.xml", e.a.account)+q("utility", "gas"), nil, &e.a, false, nil)
	assert.Equal(t, http.StatusBadRequest, r.code)
}
