// Package portal holds the read models the HTTP API shows households and
// operators: accounts, bill summaries, accruals, the meters of an account,
// VEE exceptions and usage series. It owns no rules; billing, device and
// ingest own the data, and the adapters read it for display.
package portal

import (
	"context"
	"time"

	"github.com/shopspring/decimal"
)

// Account is an account as a household sees it.
type Account struct {
	ID          int64     `json:"id"`
	HouseholdID int64     `json:"household_id"`
	Number      string    `json:"number"`
	Currency    string    `json:"currency"`
	TimeZone    string    `json:"time_zone"`
	AnchorDay   int       `json:"cycle_anchor_day"`
	CreatedAt   time.Time `json:"created_at"`
}

// BillSummary is a bill without its lines.
type BillSummary struct {
	ID          int64           `json:"id"`
	AccountID   int64           `json:"account_id"`
	PeriodStart string          `json:"period_start"`
	PeriodEnd   string          `json:"period_end"`
	Currency    string          `json:"currency"`
	Total       decimal.Decimal `json:"total"`
	Status      string          `json:"status"`
	IssuedAt    time.Time       `json:"issued_at"`
	DueDate     string          `json:"due_date"`
	Estimated   bool            `json:"estimated"`
}

// Accrual is the cost so far of an account's running cycle for one utility.
type Accrual struct {
	Utility    string          `json:"utility"`
	CycleStart string          `json:"cycle_start"`
	CycleEnd   string          `json:"cycle_end"`
	Through    string          `json:"through"`
	Currency   string          `json:"currency"`
	Quantity   float64         `json:"quantity"`
	Amount     decimal.Decimal `json:"amount"`
	Projected  decimal.Decimal `json:"projected"`
	Estimated  bool            `json:"estimated"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

// Meter is a meter of an account.
type Meter struct {
	ID      string `json:"id"`
	Utility string `json:"utility"`
}

// VEEException is one meter's count of one validation rule's findings.
type VEEException struct {
	MeterID    string    `json:"meter_id"`
	Rule       string    `json:"rule"`
	Channel    string    `json:"channel"`
	Count      int64     `json:"count"`
	LastAt     time.Time `json:"last_at"`
	LastDetail string    `json:"last_detail"`
}

// Cursor returns the pagination key of e.
func (e VEEException) Cursor() string { return e.MeterID + "|" + e.Rule + "|" + e.Channel }

// UsagePoint is the consumption of one meter channel over one step.
type UsagePoint struct {
	Time     time.Time `json:"time"`
	Meter    string    `json:"meter"`
	Utility  string    `json:"utility"`
	Channel  string    `json:"channel"`
	Quantity float64   `json:"quantity"`
}

// Step is a usage series resolution, each backed by a rollup.
type Step string

const (
	Step15m Step = "15m"
	Step1h  Step = "1h"
	Step1d  Step = "1d"
)

// Store reads what the portal shows. Lookups of one item return an apperr
// NotFound error when it does not exist. Lists take a keyset cursor (after)
// and a limit.
type Store interface {
	// Accounts lists a household's accounts, or every account for
	// householdID 0, by id.
	Accounts(ctx context.Context, householdID, after int64, limit int) ([]Account, error)
	Account(ctx context.Context, id int64) (Account, error)
	// Bills lists an account's bills, newest first (after is a bill id).
	Bills(ctx context.Context, accountID, after int64, limit int) ([]BillSummary, error)
	Accruals(ctx context.Context, accountID int64) ([]Accrual, error)
	// AccountMeters lists the meters of an account's service points.
	AccountMeters(ctx context.Context, accountID int64) ([]Meter, error)
	// VEEExceptions lists exceptions by meter, rule and channel; after is
	// an exception's Cursor.
	VEEExceptions(ctx context.Context, after string, limit int) ([]VEEException, error)
}

// UsageSource reads usage series from the time-series store.
type UsageSource interface {
	Usage(ctx context.Context, meters []string, utility string, from, to time.Time, step Step) ([]UsagePoint, error)
}
