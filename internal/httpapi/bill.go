package httpapi

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/billing"
	"github.com/meterflow/meterflow/internal/portal"
	"github.com/meterflow/meterflow/internal/tariff"
)

// billView is a bill as the API shows it. Amounts of money are written
// with the currency's minor units ("120.50"); quantities and unit prices
// are exact decimals.
type billView struct {
	ID               int64      `json:"id"`
	AccountID        int64      `json:"account_id"`
	AccountNumber    string     `json:"account_number"`
	HouseholdID      int64      `json:"household_id"`
	PeriodStart      string     `json:"period_start"`
	PeriodEnd        string     `json:"period_end"`
	TimeZone         string     `json:"time_zone"`
	Currency         string     `json:"currency"`
	Subtotal         string     `json:"subtotal"`
	Tax              string     `json:"tax"`
	Total            string     `json:"total"`
	Status           string     `json:"status"`
	IssuedAt         time.Time  `json:"issued_at"`
	DueDate          string     `json:"due_date"`
	Estimated        bool       `json:"estimated"`
	MissingIntervals int        `json:"missing_intervals"`
	Lines            []lineView `json:"lines"`
}

type lineView struct {
	No          int             `json:"no"`
	Utility     string          `json:"utility,omitempty"`
	Kind        string          `json:"kind"`
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description"`
	Quantity    decimal.Decimal `json:"quantity"`
	Unit        string          `json:"unit"`
	UnitPrice   decimal.Decimal `json:"unit_price"`
	Amount      string          `json:"amount"`
	Estimated   bool            `json:"estimated"`
	Meters      []string        `json:"meters,omitempty"`
}

func billJSON(b billing.Bill) billView {
	money := func(d decimal.Decimal) string { return tariff.FormatMoney(d, b.Currency) }
	v := billView{
		ID: b.ID, AccountID: b.AccountID, AccountNumber: b.AccountNumber, HouseholdID: b.HouseholdID,
		PeriodStart: b.PeriodStart.String(), PeriodEnd: b.PeriodEnd.String(), TimeZone: b.TimeZone, Currency: b.Currency,
		Subtotal: money(b.Subtotal), Tax: money(b.Tax), Total: money(b.Total), Status: string(b.Status), IssuedAt: b.IssuedAt,
		DueDate: b.DueDate.String(), Estimated: b.Estimated, MissingIntervals: b.MissingIntervals,
		Lines: make([]lineView, len(b.Lines)),
	}
	for i, l := range b.Lines {
		v.Lines[i] = lineView{No: l.No, Utility: string(l.Utility), Kind: string(l.Kind), Name: l.Name, Description: l.Description,
			Quantity: l.Quantity, Unit: l.Unit, UnitPrice: l.UnitPrice, Amount: money(l.Amount), Estimated: l.Estimated, Meters: l.Meters}
	}
	return v
}

// billSummaryView is a bill without its lines, as the API lists them, its
// total in the currency's minor units (taking the place of the summary's
// own decimal).
type billSummaryView struct {
	portal.BillSummary
	Total string `json:"total"`
}

func billSummaryJSON(b portal.BillSummary) billSummaryView {
	return billSummaryView{BillSummary: b, Total: tariff.FormatMoney(b.Total, b.Currency)}
}
