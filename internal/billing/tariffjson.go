package billing

import (
	"encoding/json"
	"fmt"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/tariff"
)

// EncodeTariff writes t in the tariff file format (docs/billing.md) as
// JSON, which tariff.Parse reads back to an equal tariff. Numbers are
// written as strings of their exact decimal text, so the stored definition
// never passes through binary floating point.
func EncodeTariff(t tariff.Tariff) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("encode tariff %q: %w", t.Code, err)
	}
	f := fileTariff{Code: t.Code, Name: t.Name, Utility: string(t.Utility), Currency: t.Currency, Unit: t.Unit}
	for _, v := range t.Versions {
		fv := fileVersion{EffectiveFrom: v.EffectiveFrom.String(), StandingChargePerDay: exact(v.StandingChargePerDay)}
		if v.FlatRate != nil {
			fv.FlatRate = exact(*v.FlatRate)
		}
		if v.Tiers != nil {
			ft := &fileTiers{Per: string(v.Tiers.Basis)}
			for _, b := range v.Tiers.Blocks {
				fb := fileBlock{Rate: exact(b.Rate)}
				if b.UpTo != nil {
					fb.UpTo = exact(*b.UpTo)
				}
				ft.Blocks = append(ft.Blocks, fb)
			}
			fv.Tiers = ft
		}
		if v.TOU != nil {
			fu := &fileTOU{Bands: fileBands(v.TOU.Bands)}
			for _, s := range v.TOU.Seasons {
				fu.Seasons = append(fu.Seasons, fileSeason{Name: s.Name, FromMonth: int(s.FromMonth), ToMonth: int(s.ToMonth), Bands: fileBands(s.Bands)})
			}
			fv.TOU = fu
		}
		if v.Demand != nil {
			fv.Demand = &fileDemand{RatePerKW: exact(v.Demand.RatePerKW), WindowMinutes: v.Demand.WindowMinutes}
		}
		for _, l := range v.Levies {
			fl := fileLevy{Name: l.Name}
			if l.Basis == tariff.PerBill {
				fl.PerBill = exact(l.Rate)
			} else {
				fl.PerUnit = exact(l.Rate)
			}
			fv.Levies = append(fv.Levies, fl)
		}
		for _, x := range v.Taxes {
			fv.Taxes = append(fv.Taxes, fileTax{Name: x.Name, Percent: exact(x.Percent)})
		}
		if !v.MinimumCharge.Equal(decimal.Zero) {
			fv.MinimumCharge = exact(v.MinimumCharge)
		}
		f.Versions = append(f.Versions, fv)
	}
	return json.Marshal(f)
}

func fileBands(bs []tariff.Band) []fileBand {
	var out []fileBand
	for _, b := range bs {
		out = append(out, fileBand{Name: b.Name, From: b.From, To: b.To, Days: string(b.Days), Rate: exact(b.Rate)})
	}
	return out
}

type fileTariff struct {
	Code     string        `json:"code"`
	Name     string        `json:"name"`
	Utility  string        `json:"utility"`
	Currency string        `json:"currency"`
	Unit     string        `json:"unit"`
	Versions []fileVersion `json:"versions"`
}

type fileVersion struct {
	EffectiveFrom        string      `json:"effective_from"`
	StandingChargePerDay string      `json:"standing_charge_per_day"`
	FlatRate             string      `json:"flat_rate,omitempty"`
	Tiers                *fileTiers  `json:"tiers,omitempty"`
	TOU                  *fileTOU    `json:"tou,omitempty"`
	Demand               *fileDemand `json:"demand,omitempty"`
	Levies               []fileLevy  `json:"levies,omitempty"`
	Taxes                []fileTax   `json:"taxes,omitempty"`
	MinimumCharge        string      `json:"minimum_charge,omitempty"`
}

type fileTiers struct {
	Per    string      `json:"per,omitempty"`
	Blocks []fileBlock `json:"blocks"`
}

type fileBlock struct {
	UpTo string `json:"up_to,omitempty"`
	Rate string `json:"rate"`
}

type fileTOU struct {
	Bands   []fileBand   `json:"bands,omitempty"`
	Seasons []fileSeason `json:"seasons,omitempty"`
}

type fileSeason struct {
	Name      string     `json:"name"`
	FromMonth int        `json:"from_month"`
	ToMonth   int        `json:"to_month"`
	Bands     []fileBand `json:"bands"`
}

type fileBand struct {
	Name string `json:"name"`
	From int    `json:"from"`
	To   int    `json:"to"`
	Days string `json:"days,omitempty"`
	Rate string `json:"rate"`
}

type fileDemand struct {
	RatePerKW     string `json:"rate_per_kw"`
	WindowMinutes int    `json:"window_minutes,omitempty"`
}

type fileLevy struct {
	Name    string `json:"name"`
	PerUnit string `json:"per_unit,omitempty"`
	PerBill string `json:"per_bill,omitempty"`
}

type fileTax struct {
	Name    string `json:"name"`
	Percent string `json:"percent"`
}

// exact writes d with as many decimals as it was written with ("1.10"
// stays "1.10"), so a stored definition reads back to the same decimal.
func exact(d decimal.Decimal) string {
	if e := d.Exponent(); e < 0 {
		return d.StringFixed(-e)
	}
	return d.String()
}
