package billing

import (
	"context"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/tariff"
)

// Store is the system of record as billing sees it. Each method is one
// transaction: what must be atomic (a batch of bills with their lines,
// registers and events; accruals with their threshold events) is one call.
// Implementations must be safe for concurrent use: a bill run calls them
// from several workers, and several bill runs may run at once.
type Store interface {
	TariffStore
	BillStore
	AccrualStore
}

// TariffStore keeps tariff revisions and calorific values.
type TariffStore interface {
	// SaveTariff records t (whose file form is definition, JSON) as the next
	// revision of its code, unless the latest revision has the same
	// definition; created reports whether a revision was added.
	SaveTariff(ctx context.Context, t tariff.Tariff, definition []byte) (st StoredTariff, created bool, err error)
	// Tariffs returns every revision of every tariff.
	Tariffs(ctx context.Context) ([]StoredTariff, error)
	// CalorificValues returns the daily values in [from, to).
	CalorificValues(ctx context.Context, from, to tariff.Date) (map[tariff.Date]decimal.Decimal, error)
}

// BillStore reads what a bill run needs and issues bills.
type BillStore interface {
	// CountAccounts counts every account, for progress reports.
	CountAccounts(ctx context.Context) (int, error)
	// Accounts returns up to limit accounts with ids above after, in id
	// order, each with the end of its latest billed period.
	Accounts(ctx context.Context, after int64, limit int) ([]Account, error)
	// ServicePoints returns the service points of the accounts, with their
	// meters and tariff assignments.
	ServicePoints(ctx context.Context, accountIDs []int64) ([]ServicePoint, error)
	// Usage answers each query; result i answers qs[i], rows in time order.
	Usage(ctx context.Context, qs []UsageQuery) ([][]UsageRow, error)
	// BilledRegisters returns, for the accounts' bills whose period ended
	// after since, the latest billed quantity of each meter.
	BilledRegisters(ctx context.Context, accountIDs []int64, since time.Time) ([]BilledRegister, error)
	// BilledCharges returns what a bill and its later corrections charged
	// for one service point.
	BilledCharges(ctx context.Context, billID, servicePointID int64) (BilledCharges, error)

	// StartBillRun records a run starting.
	StartBillRun(ctx context.Context, asOf, started time.Time) (int64, error)
	// NextBillIDs reserves n bill ids.
	NextBillIDs(ctx context.Context, n int) ([]int64, error)
	// IssueBills records the bills, each with its lines and registers, and
	// the events, in one transaction. A bill whose account and period
	// already have one is skipped with its lines, registers and events (an
	// event with BillID set goes with its bill). Bills whose lines adjust an
	// earlier bill mark it adjusted. It returns the ids of the bills issued.
	IssueBills(ctx context.Context, bills []*Bill, events []Event) (issued []int64, err error)
	// MarkOverdue marks issued bills whose due date has passed in their
	// account's time zone at now as overdue, with a bill.overdue event each
	// in the same transaction, and returns how many it marked.
	MarkOverdue(ctx context.Context, now time.Time) (int, error)
	// FinishBillRun records how a run ended.
	FinishBillRun(ctx context.Context, s RunSummary) error
	// Bill returns an issued bill with its lines, registers and service
	// points; apperr.NotFound if there is none.
	Bill(ctx context.Context, id int64) (Bill, error)
}

// AccrualStore keeps accruals and thresholds.
type AccrualStore interface {
	// StartAccrualRun records a run starting and returns the watermark of
	// the last finished one (zero if none) and this run's, both on the
	// store's clock, which is the clock of interval_usage.updated_at.
	StartAccrualRun(ctx context.Context) (id int64, since, watermark time.Time, err error)
	// AccrualAccounts returns up to limit accounts above after, in id
	// order, that need their accrual recomputed as of now: usage changed
	// after changedSince, or no accrual for the local day of now.
	AccrualAccounts(ctx context.Context, changedSince, now time.Time, after int64, limit int) ([]Account, error)
	// Thresholds returns the budgets and thresholds of the accounts.
	Thresholds(ctx context.Context, accountIDs []int64) ([]Budget, []Thresholds, error)
	// ReplaceBudgets replaces every budget of an account with bs, in one
	// transaction.
	ReplaceBudgets(ctx context.Context, accountID int64, bs []Budget) error
	// SaveAccruals upserts the accruals and records the events whose keys
	// are new, in one transaction; it returns how many events were new.
	SaveAccruals(ctx context.Context, accruals []Accrual, events []Event) (int, error)
	// FinishAccrualRun records a run's end and its watermark.
	FinishAccrualRun(ctx context.Context, id int64, watermark time.Time, accounts, events int) error
}
