package billing

import (
	"embed"
	"fmt"
	"html/template"
	"io"
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/tariff"
)

//go:embed templates/bill.html
var templateFiles embed.FS

var billTemplate = template.Must(template.New("bill.html").Funcs(template.FuncMap{
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", n, many)
	},
	"title": func(u meter.Utility) string {
		if u == "" {
			return "Account"
		}
		s := string(u)
		return string(s[0]-'a'+'A') + s[1:]
	},
}).ParseFS(templateFiles, "templates/bill.html"))

// billView is the bill as the template shows it: amounts already formatted
// to the currency's minor unit, times in the bill's time zone.
type billView struct {
	Bill
	Minor        int32
	LastDay      tariff.Date
	Sections     []sectionView
	Adjustments  []lineView
	Registers    []registerView
	Corrections  []registerView
	Subtotal     string
	Tax          string
	Total        string
	Issued       string
	Missing      bool
	StatusPretty string
}

type sectionView struct {
	Utility meter.Utility
	Address string
	ID      int64
	Lines   []lineView
	Amount  string
	Tariffs []string
}

type lineView struct {
	Line
	QuantityText  string
	UnitPriceText string
	AmountText    string
	VersionText   string
}

type registerView struct {
	Register
	Utility   meter.Utility
	Unit      string
	Quantity  string
	First     string
	Last      string
	Missing   int
	Complete  bool
	Adjusts   int64
	PeriodTxt string
}

// RenderBill writes b as a self-contained HTML page laid out to print on
// A4 or Letter: the account and period, a section per service point with
// its lines (estimated lines marked, each with the tariff version that
// priced it), adjustments to earlier bills, the registers behind the
// lines with their completeness, and the totals.
func RenderBill(w io.Writer, b Bill) error {
	minor, ok := tariff.MinorUnits(b.Currency)
	if !ok {
		return fmt.Errorf("render bill %d: unknown currency %q", b.ID, b.Currency)
	}
	loc, err := time.LoadLocation(b.TimeZone)
	if err != nil {
		return fmt.Errorf("render bill %d: %w", b.ID, err)
	}
	money := func(d decimal.Decimal) string { return d.StringFixed(minor) }
	v := billView{
		Bill: b, Minor: minor, LastDay: b.PeriodEnd.AddDays(-1),
		Subtotal: money(b.Subtotal), Tax: money(b.Tax), Total: money(b.Total),
		Issued: b.IssuedAt.In(loc).Format("2 January 2006"), Missing: b.MissingIntervals > 0,
	}
	info := map[int64]ServicePointInfo{}
	for _, sp := range b.ServicePoints {
		info[sp.ID] = sp
	}
	idx := map[int64]int{}
	for _, l := range b.Lines {
		lv := lineView{Line: l, AmountText: money(l.Amount), QuantityText: l.Quantity.String(), UnitPriceText: l.UnitPrice.String()}
		if !l.TariffVersion.IsZero() {
			lv.VersionText = fmt.Sprintf("%s r%d, version of %s", l.TariffCode, l.TariffRevision, l.TariffVersion)
		}
		if l.Kind == KindAdjustment || l.Kind == KindAdjustmentTax {
			lv.QuantityText, lv.UnitPriceText = "", ""
			v.Adjustments = append(v.Adjustments, lv)
			continue
		}
		i, ok := idx[l.ServicePointID]
		if !ok {
			i = len(v.Sections)
			idx[l.ServicePointID] = i
			sp := info[l.ServicePointID]
			v.Sections = append(v.Sections, sectionView{Utility: l.Utility, Address: sp.Address, ID: l.ServicePointID})
		}
		sec := &v.Sections[i]
		sec.Lines = append(sec.Lines, lv)
		if lv.VersionText != "" && !slices.Contains(sec.Tariffs, lv.VersionText) {
			sec.Tariffs = append(sec.Tariffs, lv.VersionText)
		}
	}
	for i := range v.Sections {
		sum := decimal.Zero
		for _, l := range v.Sections[i].Lines {
			sum = sum.Add(l.Amount)
		}
		v.Sections[i].Amount = money(sum)
	}
	for _, r := range b.Registers {
		rv := registerView{Register: r, Utility: info[r.ServicePointID].Utility, Missing: r.Missing(), Complete: r.Missing() == 0, Adjusts: r.AdjustsBillID}
		if ci, ok := meter.Lookup(r.Channel); ok {
			rv.Unit = ci.Unit
			rv.Utility = ci.Utility
		}
		rv.Quantity = r.Quantity.String()
		if !r.FirstInterval.IsZero() {
			rv.First = r.FirstInterval.In(loc).Format("2006-01-02 15:04 MST")
			rv.Last = r.LastInterval.In(loc).Format("2006-01-02 15:04 MST")
		}
		rv.PeriodTxt = fmt.Sprintf("%s to %s", tariff.DateOf(r.Start.In(loc)), tariff.DateOf(r.End.In(loc)).AddDays(-1))
		if r.AdjustsBillID != 0 {
			v.Corrections = append(v.Corrections, rv)
		} else {
			v.Registers = append(v.Registers, rv)
		}
	}
	v.StatusPretty = string(b.Status)
	return billTemplate.Execute(w, v)
}
