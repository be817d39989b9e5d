package httpapi

import (
	"cmp"
	"crypto/sha1"
	"encoding/xml"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/portal"
)

// Green Button Download My Data: the NAESB REQ.21 Energy Services Provider
// Interface (ESPI) as an Atom feed. Each electricity meter is a UsagePoint;
// each of its energy registers (imported, exported) a MeterReading with its
// ReadingType; the intervals are IntervalReadings in one IntervalBlock per
// UTC day. Quantities are in Wh (uom 72, power of ten 0): the meters'
// resolution is a thousandth of a kWh, so every value is an exact integer.
type atomFeed struct {
	XMLName xml.Name    `xml:"http://www.w3.org/2005/Atom feed"`
	ID      string      `xml:"id"`
	Title   string      `xml:"title"`
	Updated string      `xml:"updated"`
	Links   []atomLink  `xml:"link"`
	Entries []atomEntry `xml:"entry"`
}

type atomLink struct {
	Rel  string `xml:"rel,attr"`
	Href string `xml:"href,attr"`
}

type atomEntry struct {
	ID        string      `xml:"id"`
	Links     []atomLink  `xml:"link"`
	Title     string      `xml:"title"`
	Content   atomContent `xml:"content"`
	Published string      `xml:"published"`
	Updated   string      `xml:"updated"`
}

type atomContent struct {
	UsagePoint     *espiUsagePoint     `xml:"http://naesb.org/espi UsagePoint,omitempty"`
	MeterReading   *espiMeterReading   `xml:"http://naesb.org/espi MeterReading,omitempty"`
	ReadingType    *espiReadingType    `xml:"http://naesb.org/espi ReadingType,omitempty"`
	IntervalBlocks []espiIntervalBlock `xml:"http://naesb.org/espi IntervalBlock,omitempty"`
}

type espiUsagePoint struct {
	ServiceCategory struct {
		Kind int `xml:"kind"`
	} `xml:"ServiceCategory"`
}

type espiMeterReading struct{}

// espiReadingType lists its elements in the order of the ESPI schema.
type espiReadingType struct {
	AccumulationBehaviour int   `xml:"accumulationBehaviour"`
	Commodity             int   `xml:"commodity"`
	DataQualifier         int   `xml:"dataQualifier"`
	FlowDirection         int   `xml:"flowDirection"`
	IntervalLength        int64 `xml:"intervalLength"`
	Kind                  int   `xml:"kind"`
	Phase                 int   `xml:"phase"`
	PowerOfTenMultiplier  int   `xml:"powerOfTenMultiplier"`
	TimeAttribute         int   `xml:"timeAttribute"`
	UOM                   int   `xml:"uom"`
}

type espiInterval struct {
	Duration int64 `xml:"duration"`
	Start    int64 `xml:"start"`
}

type espiIntervalBlock struct {
	Interval         espiInterval          `xml:"interval"`
	IntervalReadings []espiIntervalReading `xml:"IntervalReading"`
}

type espiIntervalReading struct {
	TimePeriod espiInterval `xml:"timePeriod"`
	Value      int64        `xml:"value"`
}

// ESPI codes used here.
const (
	espiServiceElectricity  = 0
	espiDeltaData           = 4  // accumulationBehaviour: the interval's consumption
	espiCommodityElectric   = 1  // electricity, secondary metered
	espiQualifierNormal     = 12 // dataQualifier
	espiFlowForward         = 1  // delivered to the customer
	espiFlowReverse         = 19 // received from the customer
	espiKindEnergy          = 12
	espiPhaseS1N            = 769
	espiUOMWattHours        = 72
	espiTimeAttributeNone   = 0
	espiPowerOfTenMultipler = 0
)

// greenButtonChannels are the registers exported, with their flow
// direction.
var greenButtonChannels = []struct {
	channel meter.Channel
	flow    int
	title   string
}{
	{"1-0:1.8.0", espiFlowForward, "energy imported"},
	{"1-0:2.8.0", espiFlowReverse, "energy exported"},
}

// urnUUID makes a stable urn:uuid from a name (a name-based, SHA-1 UUID as
// in RFC 9562 version 5), so the same resource keeps its id across
// downloads.
func urnUUID(name string) string {
	h := sha1.Sum([]byte("meterflow:greenbutton:" + name))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// greenButton writes an account's electricity usage over [from, to) as a
// Green Button feed (default step 1h; 15m and 1d also).
func (a *api) greenButton(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	acc, err := a.account(r, p)
	if err != nil {
		return err
	}
	q, err := a.parseUsage(r, location(acc.TimeZone), portal.Step1h, portal.Step15m, portal.Step1d)
	if err != nil {
		return err
	}
	if q.Utility != "" && q.Utility != string(meter.Electricity) {
		return apperr.Field("utility", "Green Button covers electricity only")
	}
	q.Utility = string(meter.Electricity)
	_, ids, err := a.accountMeterIDs(r.Context(), acc.ID, q.Utility)
	if err != nil {
		return err
	}
	pts, err := a.series(r.Context(), ids, q)
	if err != nil {
		return err
	}
	feed := buildGreenButton(acc, ids, pts, q, a.cfg.Now())
	w.Header().Set("Content-Type", "application/atom+xml; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", `attachment; filename="greenbutton-`+safeFilename(acc.Number)+`.xml"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(xml.Header))
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(feed); err != nil {
		a.log.WarnContext(r.Context(), "green button export cut short", "account", acc.ID, "err", err)
	}
	return nil
}

func buildGreenButton(acc portal.Account, meterIDs []string, pts []portal.UsagePoint, q usageQuery, now time.Time) atomFeed {
	stamp := now.UTC().Format(time.RFC3339)
	base := fmt.Sprintf("RetailCustomer/%d", acc.ID)
	feed := atomFeed{
		ID:      urnUUID(fmt.Sprintf("account:%d:%s:%s:%s", acc.ID, q.From.UTC().Format(time.RFC3339), q.To.UTC().Format(time.RFC3339), q.Step)),
		Title:   fmt.Sprintf("Account %s electricity usage", acc.Number),
		Updated: stamp,
		Links:   []atomLink{{Rel: "self", Href: base + "/UsagePoint"}},
	}
	entry := func(name, title string, links []atomLink, c atomContent) atomEntry {
		return atomEntry{ID: urnUUID(fmt.Sprintf("account:%d:%s", acc.ID, name)), Links: links, Title: title, Content: c, Published: stamp, Updated: stamp}
	}
	byKey := map[[2]string][]portal.UsagePoint{}
	for _, pt := range pts {
		k := [2]string{pt.Meter, pt.Channel}
		byKey[k] = append(byKey[k], pt)
	}
	ids := slices.Clone(meterIDs)
	slices.Sort(ids)
	length := stepSeconds(q.Step)
	for n, id := range ids {
		up := fmt.Sprintf("%s/UsagePoint/%d", base, n+1)
		upc := &espiUsagePoint{}
		upc.ServiceCategory.Kind = espiServiceElectricity
		feed.Entries = append(feed.Entries, entry("meter:"+id, "Meter "+id,
			[]atomLink{{Rel: "self", Href: up}, {Rel: "up", Href: base + "/UsagePoint"}, {Rel: "related", Href: up + "/MeterReading"}},
			atomContent{UsagePoint: upc}))
		for k, ch := range greenButtonChannels {
			series := byKey[[2]string{id, string(ch.channel)}]
			if len(series) == 0 {
				continue
			}
			slices.SortFunc(series, func(x, y portal.UsagePoint) int { return x.Time.Compare(y.Time) })
			mr := fmt.Sprintf("%s/MeterReading/%d", up, k+1)
			rt := fmt.Sprintf("ReadingType/%d/%d/%d", acc.ID, n+1, k+1)
			name := fmt.Sprintf("meter:%s:%s", id, ch.channel)
			feed.Entries = append(feed.Entries,
				entry(name+":reading", fmt.Sprintf("Meter %s %s", id, ch.title),
					[]atomLink{{Rel: "self", Href: mr}, {Rel: "up", Href: up + "/MeterReading"}, {Rel: "related", Href: mr + "/IntervalBlock"}, {Rel: "related", Href: rt}},
					atomContent{MeterReading: &espiMeterReading{}}),
				entry(name+":type", fmt.Sprintf("Wh, %d s intervals", length),
					[]atomLink{{Rel: "self", Href: rt}, {Rel: "up", Href: "ReadingType"}},
					atomContent{ReadingType: &espiReadingType{
						AccumulationBehaviour: espiDeltaData, Commodity: espiCommodityElectric, DataQualifier: espiQualifierNormal,
						FlowDirection: ch.flow, IntervalLength: length, Kind: espiKindEnergy, Phase: espiPhaseS1N,
						PowerOfTenMultiplier: espiPowerOfTenMultipler, TimeAttribute: espiTimeAttributeNone, UOM: espiUOMWattHours,
					}}),
				entry(name+":blocks", fmt.Sprintf("Meter %s %s intervals", id, ch.title),
					[]atomLink{{Rel: "self", Href: mr + "/IntervalBlock"}, {Rel: "up", Href: mr + "/IntervalBlock"}},
					atomContent{IntervalBlocks: intervalBlocks(series, length)}))
		}
	}
	return feed
}

// intervalBlocks groups readings by UTC day; each block's interval spans
// its readings.
func intervalBlocks(series []portal.UsagePoint, length int64) []espiIntervalBlock {
	var out []espiIntervalBlock
	for _, pt := range series {
		start := pt.Time.Unix()
		day := pt.Time.UTC().Truncate(24 * time.Hour).Unix()
		if len(out) == 0 || out[len(out)-1].Interval.Start/86400 != day/86400 || start < out[len(out)-1].Interval.Start {
			out = append(out, espiIntervalBlock{Interval: espiInterval{Start: start}})
		}
		b := &out[len(out)-1]
		// Wh: the value in thousandths of a kWh.
		b.IntervalReadings = append(b.IntervalReadings, espiIntervalReading{TimePeriod: espiInterval{Duration: length, Start: start}, Value: int64(thousandths(pt.Quantity))})
		b.Interval.Duration = start + length - b.Interval.Start
	}
	slices.SortFunc(out, func(x, y espiIntervalBlock) int { return cmp.Compare(x.Interval.Start, y.Interval.Start) })
	return out
}
