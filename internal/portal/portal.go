// Package portal holds the read models the HTTP API shows households and
// operators: households, accounts, premises with their service points and
// meters, bill summaries, accruals, tariffs, VEE exceptions, fleet
// statistics, bill runs and usage series. It owns no rules; billing, device and
// ingest own the data, and the adapters read it for display.
package portal

import (
	"context"
	"encoding/json"
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
	// Step1mo is a calendar month in the account's time zone. No rollup
	// holds it: the API sums daily points (see UsageSource).
	Step1mo Step = "1mo"
)

// Household is a household with (when read as one) its accounts and
// premises.
type Household struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// AccountCount is set in lists, Accounts and Premises when read as one.
	AccountCount int       `json:"account_count"`
	Accounts     []Account `json:"accounts,omitempty"`
	Premises     []Premise `json:"premises,omitempty"`
}

// Premise is a supply address of an account, with its service points.
type Premise struct {
	ID            int64          `json:"id"`
	AccountID     int64          `json:"account_id"`
	HouseholdID   int64          `json:"household_id"`
	Address       string         `json:"address"`
	Region        string         `json:"region"`
	TimeZone      string         `json:"time_zone"`
	CreatedAt     time.Time      `json:"created_at"`
	ServicePoints []ServicePoint `json:"service_points"`
}

// ServicePoint is one utility supplied at a premise: its tariff and meters.
type ServicePoint struct {
	ID      int64  `json:"id"`
	Utility string `json:"utility"`
	// TariffCode is the service point's own tariff code (used throughout
	// when it has no dated assignments); CurrentTariff is the one in force
	// today in the account's time zone ("" for none).
	TariffCode    string             `json:"tariff_code,omitempty"`
	CurrentTariff string             `json:"current_tariff,omitempty"`
	Tariffs       []TariffAssignment `json:"tariffs"`
	Meters        []MeterInfo        `json:"meters"`
}

// TariffAssignment puts a service point on a tariff from a local day on.
type TariffAssignment struct {
	EffectiveFrom string `json:"effective_from"`
	TariffCode    string `json:"tariff_code"`
}

// TariffOn returns the tariff code in force on day (YYYY-MM-DD): the latest
// assignment from that day or before; with no assignments, the service
// point's own code; before the first assignment, none.
func (sp ServicePoint) TariffOn(day string) string {
	if len(sp.Tariffs) == 0 {
		return sp.TariffCode
	}
	code := ""
	for _, a := range sp.Tariffs {
		if a.EffectiveFrom <= day {
			code = a.TariffCode
		}
	}
	return code
}

// MeterInfo is a meter with its state: provisioning status, where it is
// installed, when it last reported (its ingest state was last saved), and
// how many VEE exceptions it has raised.
type MeterInfo struct {
	ID              string     `json:"id"`
	Utility         string     `json:"utility"`
	Status          string     `json:"status"`
	ServicePointID  *int64     `json:"service_point_id,omitempty"`
	PremiseID       int64      `json:"premise_id,omitempty"`
	AccountID       int64      `json:"account_id,omitempty"`
	HouseholdID     int64      `json:"household_id,omitempty"`
	IntervalSeconds int        `json:"interval_seconds"`
	CreatedAt       time.Time  `json:"created_at"`
	RevokedAt       *time.Time `json:"revoked_at,omitempty"`
	LastReadingAt   *time.Time `json:"last_reading_at"`
	VEEExceptions   int64      `json:"vee_exceptions"`
}

// Tariff is the latest revision of a tariff as listed, with its versions.
type Tariff struct {
	Code     string          `json:"code"`
	Name     string          `json:"name"`
	Utility  string          `json:"utility"`
	Currency string          `json:"currency"`
	Unit     string          `json:"unit"`
	Revision int             `json:"revision"`
	LoadedAt time.Time       `json:"loaded_at"`
	Versions []TariffVersion `json:"versions"`
}

// TariffVersion is one version of a tariff: when it is in force and how it
// prices energy (flat, tiers or tou). Amounts are the file's exact decimal
// text.
type TariffVersion struct {
	EffectiveFrom string `json:"effective_from"`
	// EffectiveTo is the next version's EffectiveFrom (exclusive); empty
	// for the last version.
	EffectiveTo          string `json:"effective_to,omitempty"`
	StandingChargePerDay string `json:"standing_charge_per_day"`
	Pricing              string `json:"pricing"`
	FlatRate             string `json:"flat_rate,omitempty"`
}

// TariffDetail is a tariff with its definition (the tariff file format as
// JSON) and every revision loaded.
type TariffDetail struct {
	Tariff
	Definition json.RawMessage  `json:"definition"`
	Revisions  []TariffRevision `json:"revisions"`
}

// TariffRevision is one loaded revision of a tariff.
type TariffRevision struct {
	Revision int             `json:"revision"`
	LoadedAt time.Time       `json:"loaded_at"`
	Versions []TariffVersion `json:"versions"`
}

// FleetStats is the state of the meter fleet at one time.
type FleetStats struct {
	At time.Time `json:"at"`
	// Meters counts meters by utility and status.
	Meters []MeterCount `json:"meters"`
	// Silent counts active meters whose last reading is older than
	// SilentAfter; NeverReported counts active meters with none.
	SilentAfter   string `json:"silent_after"`
	Silent        int64  `json:"silent"`
	NeverReported int64  `json:"never_reported"`
	// IntervalsLastHour counts billing-register intervals written in the
	// last hour; MetersReportedLastHour counts meters whose state was saved
	// in it.
	IntervalsLastHour      int64 `json:"intervals_last_hour"`
	MetersReportedLastHour int64 `json:"meters_reported_last_hour"`
	// VEELastDay counts, by rule, the meter channels whose latest exception
	// of that rule is from the last 24 hours.
	VEELastDay []RuleCount `json:"vee_last_24h"`
}

// MeterCount is a number of meters of one utility and status.
type MeterCount struct {
	Utility string `json:"utility"`
	Status  string `json:"status"`
	Count   int64  `json:"count"`
}

// RuleCount is a VEE rule's recent exceptions.
type RuleCount struct {
	Rule string `json:"rule"`
	// Meters counts the meter channels with an exception of the rule in
	// the window; Exceptions is their running count of it, all time.
	Meters     int64 `json:"meters"`
	Exceptions int64 `json:"exceptions"`
}

// BillRun is one bill run and how it ended.
type BillRun struct {
	ID            int64      `json:"id"`
	AsOf          time.Time  `json:"as_of"`
	StartedAt     time.Time  `json:"started_at"`
	FinishedAt    *time.Time `json:"finished_at,omitempty"`
	Accounts      int        `json:"accounts"`
	BillsIssued   int        `json:"bills_issued"`
	AlreadyBilled int        `json:"already_billed"`
	NothingToBill int        `json:"nothing_to_bill"`
	Failed        int        `json:"failed"`
	Adjustments   int        `json:"adjustments"`
	Outcome       string     `json:"outcome"`
	Error         string     `json:"error,omitempty"`
}

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

	// Households lists households by id (AccountCount set, no accounts or
	// premises); Household returns one with its accounts and premises.
	Households(ctx context.Context, after int64, limit int) ([]Household, error)
	Household(ctx context.Context, id int64) (Household, error)
	// Premises lists a household's premises, or every premise for
	// householdID 0, by id, each with its service points and meters.
	Premises(ctx context.Context, householdID, after int64, limit int) ([]Premise, error)
	Premise(ctx context.Context, id int64) (Premise, error)
	// MeterInfo returns one meter with its state; AccountMeterInfos lists
	// an account's meters by id (after is a meter id).
	MeterInfo(ctx context.Context, id string) (MeterInfo, error)
	AccountMeterInfos(ctx context.Context, accountID int64, after string, limit int) ([]MeterInfo, error)
	// Tariffs lists the latest revision of each tariff by code (after is a
	// code); Tariff returns one code's latest revision with every revision.
	Tariffs(ctx context.Context, after string, limit int) ([]Tariff, error)
	Tariff(ctx context.Context, code string) (TariffDetail, error)
	// FleetStats counts the fleet as of now: meters silent for longer than
	// silentAfter, what was written in the last hour, and VEE exceptions
	// of the last 24 hours.
	FleetStats(ctx context.Context, now time.Time, silentAfter time.Duration) (FleetStats, error)
	// BillRuns lists bill runs, newest first (after is a run id).
	BillRuns(ctx context.Context, after int64, limit int) ([]BillRun, error)
}

// UsageSource reads usage series from the time-series store, at the steps
// it keeps (15m, 1h, 1d); Step1mo is derived from 1d by the caller.
type UsageSource interface {
	Usage(ctx context.Context, meters []string, utility string, from, to time.Time, step Step) ([]UsagePoint, error)
}
