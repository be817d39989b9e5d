package billing

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/tariff"
)

// Account is a billed account with what billing needs to know of it.
type Account struct {
	ID            int64
	HouseholdID   int64
	HouseholdName string
	Number        string
	// Currency is the ISO 4217 code every tariff of the account must use.
	Currency string
	// TimeZone is an IANA zone name; cycles, days and time-of-use bands are
	// local to it.
	TimeZone string
	// AnchorDay (1..28) is the local day of the month each cycle starts on.
	AnchorDay int
	// BillingFrom, when set, is the first local day billed (a move-in).
	BillingFrom tariff.Date
	// LastBilledEnd is the end (exclusive) of the latest billed period; zero
	// when the account has never been billed.
	LastBilledEnd tariff.Date
}

// ServicePoint is one utility supplied at one premise of an account, with
// its meters and tariff history.
type ServicePoint struct {
	ID        int64
	AccountID int64
	PremiseID int64
	Address   string
	Utility   meter.Utility
	// TariffCode is the current tariff (service_points.tariff_code); it
	// applies throughout when Assignments is empty.
	TariffCode string
	// Assignments are in EffectiveFrom order.
	Assignments []Assignment
	Meters      []Meter
}

// Assignment puts a service point on a tariff from a local day on.
type Assignment struct {
	EffectiveFrom tariff.Date
	TariffCode    string
}

// Meter is a meter of a service point.
type Meter struct {
	ID string
	// Interval is the grid its billing registers are written on: 15, 30 or
	// 60 minutes, or a day for meters read once a day.
	Interval time.Duration
}

// StoredTariff is one revision of a tariff as loaded into the store. A
// revision is immutable; loading a changed file adds a revision.
type StoredTariff struct {
	Revision int
	tariff.Tariff
	LoadedAt time.Time
}

// Status is where a bill is in its life.
type Status string

const (
	Issued   Status = "issued"
	Paid     Status = "paid"
	Overdue  Status = "overdue"
	Adjusted Status = "adjusted" // a later bill carries corrections to it
)

// Line kinds billing adds to tariff.LineKind.
const (
	// KindAdjustment corrects the untaxed charges of an earlier bill for one
	// service point; KindAdjustmentTax corrects its tax.
	KindAdjustment    tariff.LineKind = "adjustment"
	KindAdjustmentTax tariff.LineKind = "adjustment_tax"
)

// Bill is an issued (or about to be issued) consolidated bill of one account
// for one billing period.
type Bill struct {
	ID            int64
	AccountID     int64
	AccountNumber string
	HouseholdID   int64
	HouseholdName string
	// PeriodStart and PeriodEnd are local days, PeriodEnd exclusive;
	// StartAt and EndAt are the same as instants.
	PeriodStart, PeriodEnd tariff.Date
	StartAt, EndAt         time.Time
	TimeZone               string
	Currency               string
	// Subtotal is the sum of every line but taxes and tax adjustments, Tax
	// the sum of those, Total their sum. Adjustments may make Total negative.
	Subtotal, Tax, Total decimal.Decimal
	Status               Status
	IssuedAt             time.Time
	DueDate              tariff.Date
	// Estimated is set when any interval billed was estimated or missing.
	Estimated bool
	// MissingIntervals counts the intervals of the period with no register
	// value, over every service point.
	MissingIntervals int
	RunID            int64
	Lines            []Line
	Registers        []Register
	// ServicePoints describes the service points the lines refer to.
	ServicePoints []ServicePointInfo
}

// ServicePointInfo is what a printed bill shows of a service point.
type ServicePointInfo struct {
	ID      int64
	Utility meter.Utility
	Address string
}

// Line is one line of a bill. Quantity × UnitPrice rounds to Amount.
type Line struct {
	No             int
	ServicePointID int64 // 0 for lines of the whole account
	Utility        meter.Utility
	Kind           tariff.LineKind
	Name           string
	Description    string
	Quantity       decimal.Decimal
	Unit           string
	UnitPrice      decimal.Decimal
	Amount         decimal.Decimal
	Estimated      bool
	// TariffCode, TariffRevision and TariffVersion name the tariff that
	// priced the line (the version by its effective date).
	TariffCode     string
	TariffRevision int
	TariffVersion  tariff.Date
	// Meters, Channel, FirstInterval, LastInterval and MeteredQuantity
	// trace the line to the registers it priced: the meters' primary
	// register over the part of the period the line covers.
	Meters          []string
	Channel         meter.Channel
	FirstInterval   time.Time
	LastInterval    time.Time
	MeteredQuantity meter.Value
	// AdjustsBillID is the earlier bill an adjustment line corrects.
	AdjustsBillID int64
}

// Register is what a bill billed of one meter's primary register over a
// period. A bill correcting an earlier one records the corrected quantity of
// the earlier period with AdjustsBillID set.
type Register struct {
	MeterID        string
	Channel        meter.Channel
	ServicePointID int64
	Start, End     time.Time
	Quantity       meter.Value
	Intervals      int
	Estimated      int
	Expected       int
	FirstInterval  time.Time
	LastInterval   time.Time
	AdjustsBillID  int64
}

// Missing is the number of expected intervals without a value.
func (r Register) Missing() int { return max(0, r.Expected-r.Intervals) }

// Event kinds written to the outbox.
const (
	EventBillIssued    = "bill.issued"
	EventBillOverdue   = "bill.overdue"
	EventBudgetCrossed = "budget.crossed"
	EventAccruedAbove  = "accrued.above"
	EventBalanceBelow  = "balance.below"
)

// Event is an outbox event. Key names the condition and its period; the
// store records each key once.
type Event struct {
	Key        string
	Kind       string
	AccountID  int64
	OccurredAt time.Time
	// Payload is marshalled to JSON.
	Payload any
	// BillID ties a bill event to its bill: it is recorded only if the bill
	// is.
	BillID int64
}

// UsageMode says how much detail of a register a query returns.
type UsageMode int

const (
	// Raw returns every interval.
	Raw UsageMode = iota
	// Daily returns one row per local day: enough to price tariffs that do
	// not look at the time of day.
	Daily
	// Total returns one row for the whole span.
	Total
)

// UsageQuery asks for one meter's register over [From, To).
type UsageQuery struct {
	MeterID  string
	Channel  meter.Channel
	From, To time.Time
	// TimeZone groups Daily rows by local day.
	TimeZone string
	Mode     UsageMode
}

// UsageRow is an interval (Raw), a local day (Daily, Start is the first
// interval's start) or the whole span (Total).
type UsageRow struct {
	Start     time.Time
	Day       tariff.Date // Daily only
	Quantity  meter.Value
	Intervals int
	Estimated int
	// First and Last are the starts of the first and last intervals summed.
	First, Last time.Time
}

// BilledRegister is the latest billed quantity of one meter for the period
// of one earlier bill (the bill's own register, or the latest correction).
type BilledRegister struct {
	AccountID              int64
	BillID                 int64
	PeriodStart, PeriodEnd tariff.Date
	Register
}

// BilledCharges is what an earlier bill (with its corrections so far)
// charged for one service point.
type BilledCharges struct {
	Subtotal, Tax decimal.Decimal
	// Revisions maps each tariff code that priced the service point on the
	// bill to the revision used.
	Revisions map[string]int
}

// Budget is a spending budget per cycle for an account (Scope "account")
// or one utility, with the percentages that notify.
type Budget struct {
	AccountID int64
	Scope     string
	Amount    decimal.Decimal
	Percents  []int
}

// BudgetScopeAccount is the scope of an account-wide budget.
const BudgetScopeAccount = "account"

// Thresholds are an account's auto-pay and notification thresholds.
type Thresholds struct {
	AccountID int64
	// AccruedAbove notifies when the cycle's accrued cost exceeds it.
	AccruedAbove *decimal.Decimal
	// BalanceBelow notifies when the prepaid balance available (balance
	// less the cycle's accrued cost) drops below it.
	BalanceBelow *decimal.Decimal
	// Balance is the prepaid balance, nil when the account has none.
	Balance *decimal.Decimal
}

// Accrual is the cost so far of an account's running cycle for one utility.
type Accrual struct {
	AccountID  int64
	Utility    meter.Utility
	CycleStart tariff.Date
	CycleEnd   tariff.Date
	// Through is the end (exclusive) of the days priced: tomorrow, since
	// today's usage so far and standing charge are included.
	Through   tariff.Date
	Currency  string
	Quantity  meter.Value
	Amount    decimal.Decimal
	Projected decimal.Decimal
	Estimated bool
	UpdatedAt time.Time
}

// RunSummary is what a bill run did.
type RunSummary struct {
	RunID    int64
	AsOf     time.Time
	Started  time.Time
	Finished time.Time
	// Accounts counts every account looked at.
	Accounts int
	// BillsIssued counts the bills this run issued.
	BillsIssued int
	// AlreadyBilled counts accounts with nothing due (billed through the
	// last cycle that ended, or not billed from yet) and bills a
	// concurrent run issued first.
	AlreadyBilled int
	// NothingToBill counts accounts with a period due but no charges
	// (no service point, or none with a tariff and usage).
	NothingToBill int
	// Failed counts accounts that could not be priced (FailedAccounts).
	Failed int
	// Adjustments counts corrections of earlier bills carried by the bills
	// issued.
	Adjustments    int
	Outcome        string // succeeded, partial or failed
	Error          string
	FailedAccounts []int64
}

// AccrualSummary is what an accrual update did.
type AccrualSummary struct {
	RunID    int64
	Accounts int
	Accruals int
	Events   int
	Failed   int
}
